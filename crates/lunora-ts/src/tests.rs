//! Crate-level tests: fixture demux, demux → mux → demux round trip, and one crafted stream per
//! TR 101 290 indicator.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use lunora_media::{Codec, Frame, MpegTime, Program, Track, TrackId};

use super::*;

const FIXTURE: &[u8] = include_bytes!("../testdata/h264_aac_2s.ts");

fn demux_all(data: &[u8]) -> (Vec<Program>, Vec<Frame>, TsInput) {
    let mut input = TsInput::from_recording(AnalyserSettings::default(), data);
    let (programs, frames) = input.take_programs_and_frames();
    (programs, frames, input)
}

fn count(frames: &[Frame], codec: Codec) -> usize {
    frames.iter().filter(|f| f.codec == codec).count()
}

#[test]
fn fixture_demuxes_to_the_frames_ffprobe_counts() {
    let (programs, frames, input) = demux_all(FIXTURE);
    assert_eq!(programs.len(), 1, "one PMT version");
    let codecs: Vec<Codec> = programs[0].tracks.iter().map(|t| t.codec).collect();
    assert_eq!(codecs, vec![Codec::H264, Codec::AacAdts]);
    // testdata/h264_aac_2s.txt: 50 video frames, 95 audio frames.
    assert_eq!(count(&frames, Codec::H264), 50);
    assert_eq!(count(&frames, Codec::AacAdts), 95);
    let keyframes = frames
        .iter()
        .filter(|f| f.codec == Codec::H264 && f.keyframe)
        .count();
    assert_eq!(keyframes, 2, "GOP of 25 frames over 50 frames");
    let format = input.video_format().expect("SPS parsed");
    assert_eq!(
        (format.width, format.height, format.frame_rate),
        (320, 180, Some(25.0))
    );
    assert_eq!(
        input.counters(),
        Tr101290Counters::default(),
        "clean fixture has no TR 101 290 errors"
    );
}

#[test]
fn demux_mux_demux_round_trip_preserves_frames() {
    let (programs, frames, _) = demux_all(FIXTURE);
    let mut muxer = Muxer::new(MuxSettings::default());
    muxer.set_program(&programs[0]);
    let mut out = BytesMut::new();
    for frame in &frames {
        assert!(muxer.write_frame(frame, &mut out));
    }
    assert_eq!(out.len() % PACKET_SIZE, 0);
    let (programs2, frames2, input2) = demux_all(&out);
    assert_eq!(
        input2.counters(),
        Tr101290Counters::default(),
        "muxer output is TR 101 290 clean"
    );
    assert_eq!(programs2.len(), 1);
    assert_eq!(frames2.len(), frames.len());
    // Interleaving may differ (audio PES with a length completes before the video PES that
    // ends at the next start); each track's own sequence must be identical.
    for codec in [Codec::H264, Codec::AacAdts] {
        let a: Vec<_> = frames
            .iter()
            .filter(|f| f.codec == codec)
            .map(|f| (f.pts, f.dts, f.keyframe, &f.data))
            .collect();
        let b: Vec<_> = frames2
            .iter()
            .filter(|f| f.codec == codec)
            .map(|f| (f.pts, f.dts, f.keyframe, &f.data))
            .collect();
        assert_eq!(a, b, "{codec:?}");
    }
    // Stable PIDs: video first from 0x100.
    assert_eq!(programs2[0].tracks[0].id, TrackId(0x100));
    assert_eq!(programs2[0].tracks[1].id, TrackId(0x101));
}

#[test]
fn a_program_whose_descriptors_do_not_fit_still_gets_a_valid_pmt() {
    // Descriptors longer than their 12-bit length field, and than the 1021 bytes a PMT
    // section may hold: cutting the lengths would corrupt the PMT.
    let track = |id, codec, descriptors| Track {
        descriptors: Bytes::from(vec![0x05; descriptors]),
        ..Track::new(TrackId(id), codec)
    };
    let program = Program {
        tracks: vec![track(1, Codec::H264, 5000), track(2, Codec::AacAdts, 900)],
    };
    let mut muxer = Muxer::new(MuxSettings::default());
    muxer.set_program(&program);
    let mut out = BytesMut::new();
    let frame = Frame {
        track: TrackId(1),
        codec: Codec::H264,
        pts: MpegTime(0),
        dts: MpegTime(0),
        keyframe: true,
        data: Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88]),
    };
    assert!(muxer.write_frame(&frame, &mut out));
    let (programs, frames, input) = demux_all(&out);
    assert_eq!(
        input.counters().priority_total(1),
        0,
        "{:?}",
        input.counters()
    );
    let codecs: Vec<Codec> = programs[0].tracks.iter().map(|t| t.codec).collect();
    assert_eq!(codecs, [Codec::H264, Codec::AacAdts], "every track kept");
    assert_eq!(frames.len(), 1);
}

#[test]
fn muxer_keeps_pids_and_version_for_an_identical_program() {
    let program = Program {
        tracks: vec![Track::new(TrackId(7), Codec::H264)],
    };
    let mut muxer = Muxer::new(MuxSettings::default());
    muxer.set_program(&program);
    let pid = muxer.pid_of(TrackId(7));
    muxer.set_program(&program);
    assert_eq!(muxer.pid_of(TrackId(7)), pid);
}

#[test]
fn scte35_sections_are_carried() {
    let program = Program {
        tracks: vec![
            Track::new(TrackId(1), Codec::H264),
            Track::new(TrackId(2), Codec::Scte35),
        ],
    };
    // A splice_null() splice_info_section with a valid CRC.
    let mut section = vec![
        0xFC, 0x30, 0x11, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0xFF, 0xF0, 0x00, 0x00, 0x00, 0x00,
    ];
    section[2] = (section.len() - 3 + 4) as u8;
    let crc = crc32_mpeg2(&section);
    section.extend(crc.to_be_bytes());
    let mut muxer = Muxer::new(MuxSettings::default());
    muxer.set_program(&program);
    let mut out = BytesMut::new();
    let video = Frame {
        track: TrackId(1),
        codec: Codec::H264,
        pts: MpegTime(9000),
        dts: MpegTime(9000),
        keyframe: true,
        data: Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88]),
    };
    muxer.write_frame(&video, &mut out);
    let cue = Frame {
        track: TrackId(2),
        codec: Codec::Scte35,
        pts: MpegTime(9000),
        dts: MpegTime(9000),
        keyframe: true,
        data: Bytes::from(section.clone()),
    };
    muxer.write_frame(&cue, &mut out);
    let (_, frames, _) = demux_all(&out);
    let cues: Vec<&Frame> = frames.iter().filter(|f| f.codec == Codec::Scte35).collect();
    assert_eq!(cues.len(), 1);
    assert_eq!(&cues[0].data[..], &section[..]);
}

// ---- TR 101 290: one crafted stream per indicator --------------------------------------------

/// Muxes `seconds` of a synthetic 25 fps video + 48 kHz AAC stream into packets.
fn synthetic_stream(seconds: i64) -> Vec<[u8; PACKET_SIZE]> {
    let program = Program {
        tracks: vec![
            Track::new(TrackId(1), Codec::H264),
            Track::new(TrackId(2), Codec::AacAdts),
        ],
    };
    let mut muxer = Muxer::new(MuxSettings::default());
    muxer.set_program(&program);
    let asc = lunora_media::AudioSpecificConfig {
        audio_object_type: 2,
        sampling_frequency_index: 3,
        channel_configuration: 2,
    };
    let mut out = BytesMut::new();
    let (mut video_t, mut audio_t) = (0i64, 0i64);
    while video_t < seconds * 90_000 {
        let keyframe = video_t % 90_000 == 0;
        let mut data = vec![0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }];
        data.extend(std::iter::repeat_n(0xAB, 600));
        let frame = Frame {
            track: TrackId(1),
            codec: Codec::H264,
            pts: MpegTime(video_t),
            dts: MpegTime(video_t),
            keyframe,
            data: data.into(),
        };
        muxer.write_frame(&frame, &mut out);
        while audio_t <= video_t {
            let mut adts = asc.adts_header(50).to_vec();
            adts.extend([0x11; 50]);
            let frame = Frame {
                track: TrackId(2),
                codec: Codec::AacAdts,
                pts: MpegTime(audio_t),
                dts: MpegTime(audio_t),
                keyframe: true,
                data: adts.into(),
            };
            muxer.write_frame(&frame, &mut out);
            audio_t += 1920;
        }
        video_t += 3600;
    }
    out.chunks_exact(PACKET_SIZE)
        .map(|c| c.try_into().expect("188 bytes"))
        .collect()
}

/// Feeds packets spread evenly over `seconds` of virtual time; returns the counters.
fn analyse(packets: &[[u8; PACKET_SIZE]], seconds: u64) -> Tr101290Counters {
    let mut input = TsInput::new(AnalyserSettings::default());
    let step = Duration::from_secs(seconds) / packets.len().max(1) as u32;
    for (i, packet) in packets.iter().enumerate() {
        input.handle_bytes(step * i as u32, packet);
    }
    input.counters()
}

fn only(counters: Tr101290Counters, indicator: Indicator) -> u64 {
    for (other, n) in counters.iter() {
        if other != indicator {
            assert_eq!(
                n,
                0,
                "{} should be 0 while testing {}",
                other.name(),
                indicator.name()
            );
        }
    }
    counters.get(indicator)
}

fn pid_of(packet: &[u8; PACKET_SIZE]) -> u16 {
    Packet::new(packet).pid().value()
}

#[test]
fn clean_synthetic_stream_has_no_errors() {
    let packets = synthetic_stream(3);
    assert_eq!(analyse(&packets, 3), Tr101290Counters::default());
}

#[test]
fn sync_byte_error_and_sync_loss() {
    let mut packets = synthetic_stream(2);
    packets[40][0] = 0x00;
    let counters = analyse(&packets, 2);
    assert_eq!(counters.get(Indicator::SyncByteError), 1);
    assert_eq!(counters.get(Indicator::TsSyncLoss), 0);
    packets[80][0] = 0x00;
    packets[81][0] = 0x00;
    let counters = analyse(&packets, 2);
    assert_eq!(counters.get(Indicator::TsSyncLoss), 1);
    assert_eq!(counters.get(Indicator::SyncByteError), 3);
}

#[test]
fn pat_error_when_pat_missing_for_more_than_500ms() {
    let packets: Vec<_> = synthetic_stream(3)
        .into_iter()
        .filter(|p| pid_of(p) != 0)
        .collect();
    assert!(only(analyse(&packets, 3), Indicator::PatError) >= 4);
}

#[test]
fn pat_error_on_wrong_table_id() {
    let mut packets = synthetic_stream(2);
    let pat = packets.iter().position(|p| pid_of(p) == 0).expect("a PAT");
    packets[pat][5] = 0x42; // table_id; the CRC stays as computed for 0x00
    let counters = analyse(&packets, 2);
    assert!(counters.get(Indicator::PatError) + counters.get(Indicator::CrcError) >= 1);
}

#[test]
fn continuity_count_error_on_lost_packet() {
    let mut packets = synthetic_stream(2);
    let video = packets
        .iter()
        .enumerate()
        .filter(|(_, p)| pid_of(p) == 0x100)
        .nth(10)
        .map(|(i, _)| i)
        .expect("video");
    packets.remove(video);
    assert_eq!(
        only(analyse(&packets, 2), Indicator::ContinuityCountError),
        1
    );
}

#[test]
fn one_duplicate_is_allowed_a_third_copy_is_not() {
    let mut packets = synthetic_stream(2);
    let video = packets
        .iter()
        .position(|p| pid_of(p) == 0x100)
        .expect("video");
    let copy = packets[video + 1];
    let at = video + 1;
    packets.insert(at, copy);
    assert_eq!(analyse(&packets, 2), Tr101290Counters::default());
    packets.insert(at, copy);
    assert_eq!(
        only(analyse(&packets, 2), Indicator::ContinuityCountError),
        1
    );
}

#[test]
fn pmt_error_when_pmt_missing() {
    let packets: Vec<_> = synthetic_stream(3)
        .into_iter()
        .filter(|p| pid_of(p) != 0x1000)
        .collect();
    assert!(only(analyse(&packets, 3), Indicator::PmtError) >= 4);
}

#[test]
fn pid_error_when_an_elementary_pid_goes_silent() {
    let packets: Vec<_> = synthetic_stream(12)
        .into_iter()
        .filter(|p| pid_of(p) != 0x101)
        .collect();
    assert!(only(analyse(&packets, 12), Indicator::PidError) >= 1);
}

#[test]
fn transport_error_indicator_is_counted() {
    let mut packets = synthetic_stream(2);
    let video = packets
        .iter()
        .position(|p| pid_of(p) == 0x100)
        .expect("video");
    packets[video][1] |= 0x80;
    assert_eq!(only(analyse(&packets, 2), Indicator::TransportError), 1);
}

#[test]
fn crc_error_in_pmt() {
    let mut packets = synthetic_stream(2);
    let pmt = packets
        .iter()
        .position(|p| pid_of(p) == 0x1000)
        .expect("pmt");
    packets[pmt][20] ^= 0x01;
    assert!(only(analyse(&packets, 2), Indicator::CrcError) == 1);
}

fn first_pcr_packet(packets: &[[u8; PACKET_SIZE]], skip: usize) -> usize {
    packets
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            Packet::new(p)
                .adaptation_field()
                .and_then(|af| af.pcr())
                .is_some()
        })
        .nth(skip)
        .map(|(i, _)| i)
        .expect("pcr packet")
}

fn shift_pcr(packet: &mut [u8; PACKET_SIZE], ticks_27mhz: i64) {
    let pcr = Packet::new(packet)
        .adaptation_field()
        .and_then(|af| af.pcr())
        .expect("pcr");
    let shifted = Pcr::from_27mhz(pcr.as_27mhz() + ticks_27mhz);
    shifted.write((&mut packet[6..12]).try_into().expect("6 bytes"));
}

#[test]
fn pcr_discontinuity_without_indicator() {
    let mut packets = synthetic_stream(2);
    let index = first_pcr_packet(&packets, 10);
    // Jump 200 ms forward: both this step and the step back after it exceed 100 ms.
    shift_pcr(&mut packets[index], 200 * 27_000);
    assert_eq!(
        only(
            analyse(&packets, 2),
            Indicator::PcrDiscontinuityIndicatorError
        ),
        2
    );
}

#[test]
fn pcr_repetition_over_40ms() {
    let mut packets = synthetic_stream(2);
    // Clear the PCR flag on one PCR packet: its neighbours end up 80 ms apart.
    let index = first_pcr_packet(&packets, 11);
    packets[index][5] &= !0x10;
    assert_eq!(only(analyse(&packets, 2), Indicator::PcrRepetitionError), 1);
}

#[test]
fn pts_error_when_pts_gap_exceeds_700ms() {
    let packets = synthetic_stream(3);
    // Audio PES starts vanish for a second, but other audio packets keep the PID alive.
    let mut kept = Vec::new();
    let mut removed = 0;
    for (i, p) in packets.iter().enumerate() {
        let packet = Packet::new(p);
        let in_gap = (packets.len() / 3..packets.len() * 2 / 3).contains(&i);
        if in_gap && packet.pid().value() == 0x101 && packet.payload_unit_start_indicator() {
            removed += 1;
            continue;
        }
        kept.push(*p);
    }
    assert!(removed > 10);
    let counters = analyse(&kept, 3);
    assert_eq!(counters.get(Indicator::PtsError), 1);
}

#[test]
fn garbage_between_packets_never_panics_and_is_counted() {
    let packets = synthetic_stream(1);
    let mut data = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        data.extend(p);
        if i % 50 == 25 {
            data.extend([0x47, 0x00, 0x13, 0x37, 0xFF, 0x00, 0x47]);
        }
    }
    let mut input = TsInput::new(AnalyserSettings::default());
    for chunk in data.chunks(1000) {
        input.handle_bytes(Duration::ZERO, chunk);
    }
    assert!(input.counters().get(Indicator::SyncByteError) > 0);
    assert!(input.counters().get(Indicator::TsSyncLoss) > 0);
}
