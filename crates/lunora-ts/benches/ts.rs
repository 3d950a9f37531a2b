//! Throughput of the TS core on a synthetic 50 Mbit/s-class stream (1080p-sized frames).
//!
//! `cargo bench -p lunora-ts` prints MB/s; criterion's `Throughput::Bytes` makes the figures
//! comparable with the link rate (50 Mbit/s = 6.25 MB/s).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lunora_media::{AudioSpecificConfig, Codec, Frame, MpegTime, Program, Track, TrackId};
use lunora_ts::{AnalyserSettings, DATAGRAM_SIZE, DemuxEvent, MuxSettings, Muxer, TsInput};

fn program() -> Program {
    Program {
        tracks: vec![
            Track::new(TrackId(1), Codec::H264),
            Track::new(TrackId(2), Codec::AacAdts),
        ],
    }
}

/// One second of 29.97 fps video at about 50 Mbit/s plus 48 kHz AAC.
fn frames() -> Vec<Frame> {
    let asc = AudioSpecificConfig {
        audio_object_type: 2,
        sampling_frequency_index: 3,
        channel_configuration: 2,
    };
    let mut frames = Vec::new();
    let mut audio_t = 0;
    for n in 0..30i64 {
        let dts = n * 3003;
        let keyframe = n == 0;
        let size = if keyframe { 600_000 } else { 190_000 };
        let mut data = vec![0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }];
        data.resize(size, 0x5A);
        frames.push(Frame {
            track: TrackId(1),
            codec: Codec::H264,
            pts: MpegTime(dts + 6006),
            dts: MpegTime(dts),
            keyframe,
            data: data.into(),
        });
        while audio_t <= dts {
            let mut adts = asc.adts_header(380).to_vec();
            adts.resize(387, 0x11);
            frames.push(Frame {
                track: TrackId(2),
                codec: Codec::AacAdts,
                pts: MpegTime(audio_t),
                dts: MpegTime(audio_t),
                keyframe: true,
                data: adts.into(),
            });
            audio_t += 1920;
        }
    }
    frames
}

fn mux_all(frames: &[Frame]) -> BytesMut {
    let mut muxer = Muxer::new(MuxSettings::default());
    muxer.set_program(&program());
    let mut out = BytesMut::with_capacity(8 << 20);
    for frame in frames {
        muxer.write_frame(frame, &mut out);
    }
    out
}

fn bench(c: &mut Criterion) {
    let frames = frames();
    let stream = mux_all(&frames);
    let mut group = c.benchmark_group("ts");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("analyse_and_demux_1s_50mbit", |b| {
        b.iter(|| {
            let mut input = TsInput::new(AnalyserSettings::default());
            let mut produced = 0;
            for (i, datagram) in stream.chunks(DATAGRAM_SIZE).enumerate() {
                input.handle_bytes(Duration::from_micros(i as u64 * 200), datagram);
                while let Some(event) = input.poll_event() {
                    if let DemuxEvent::Frame(f) = event {
                        produced += f.data.len();
                    }
                }
            }
            black_box(produced)
        })
    });
    group.bench_function("mux_1s_50mbit", |b| {
        b.iter(|| black_box(mux_all(&frames).len()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
