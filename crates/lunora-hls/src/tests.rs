use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hls_m3u8::MediaPlaylist;
use lunora_media::{Codec, Frame, MpegTime, Program};
use lunora_ts::{AnalyserSettings, TsInput};

use super::*;

const FIXTURE: &[u8] = include_bytes!("../../lunora-ts/testdata/h264_aac_2s.ts");
/// The fixture is 2 s long: 25 fps H.264 with a keyframe every second, plus AAC.
const FIXTURE_TICKS: i64 = 2 * 90_000;

fn demux(data: &[u8]) -> (Vec<Program>, Vec<Frame>) {
    TsInput::from_recording(AnalyserSettings::default(), data).take_programs_and_frames()
}

/// Feeds the fixture `loops` times back to back (a continuous timeline), each frame arriving
/// at its stream time; `tweak` may change frames of a given loop.
fn feed(segmenter: &mut Segmenter, loops: i64, tweak: impl Fn(i64, &mut Frame)) {
    let (programs, frames) = demux(FIXTURE);
    segmenter.set_program(&programs[0]);
    let origin = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_500_000);
    let first = frames[0].dts.0;
    for lap in 0..loops {
        for frame in &frames {
            let mut frame = frame.clone();
            frame.dts = MpegTime(frame.dts.0 + lap * FIXTURE_TICKS);
            frame.pts = MpegTime(frame.pts.0 + lap * FIXTURE_TICKS);
            tweak(lap, &mut frame);
            let at =
                origin + Duration::from_micros(((frame.dts.0 - first).max(0) as u64) * 100 / 9);
            segmenter.push(&frame, at);
        }
    }
}

fn parse(playlist: &str) -> MediaPlaylist<'_> {
    MediaPlaylist::try_from(playlist).unwrap_or_else(|e| panic!("{e}: {playlist}"))
}

#[test]
fn segments_start_on_keyframes_decode_alone_and_the_window_slides() {
    let mut segmenter = Segmenter::new(HlsSettings::default());
    feed(&mut segmenter, 10, |_, _| {});
    let playlist = parse(segmenter.playlist());
    assert_eq!(playlist.target_duration, Duration::from_secs(1));
    assert_eq!(
        playlist.segments.num_elements(),
        6,
        "{}",
        segmenter.playlist()
    );
    // 20 s of 1 s GOPs: the last GOP is still open, so 19 closed, the first 13 slid out.
    assert_eq!(playlist.media_sequence, 13);
    assert!(
        !segmenter.playlist().contains("DISCONTINUITY:")
            && !segmenter.playlist().contains("#EXT-X-DISCONTINUITY\n")
    );
    assert!(
        segmenter
            .playlist()
            .contains("#EXT-X-PROGRAM-DATE-TIME:2026-11-24T")
    );
    for segment in segmenter.segments() {
        assert!(
            (segment.duration.as_secs_f64() - 1.0).abs() < 0.001,
            "segment {} lasts {:?}",
            segment.sequence,
            segment.duration
        );
        let (programs, frames) = demux(&segment.data);
        assert_eq!(
            programs.len(),
            1,
            "PAT/PMT at the start of segment {}",
            segment.sequence
        );
        let video: Vec<&Frame> = frames.iter().filter(|f| f.codec == Codec::H264).collect();
        assert_eq!(
            video.len(),
            25,
            "one whole GOP in segment {}",
            segment.sequence
        );
        assert!(video[0].keyframe && video.iter().skip(1).all(|f| !f.keyframe));
        assert!(
            lunora_media::keyframe_video_format(Codec::H264, &video[0].data).is_some(),
            "SPS in band"
        );
        assert!(frames.iter().any(|f| f.codec == Codec::AacAdts));
    }
    // Segments 6..=12 have left the playlist but stay fetchable for a while (RFC 8216 §6.2.2);
    // older ones are gone.
    assert!(segmenter.segment(12).is_some() && segmenter.segment(6).is_some());
    assert_eq!(segmenter.segment(5), None);
    assert!(segmenter.segment(18).is_some());
    let stats = segmenter.stats();
    assert_eq!(
        (
            stats.segments,
            stats.media_sequence,
            stats.discontinuities_total
        ),
        (6, 13, 0)
    );
}

#[test]
fn a_parameter_change_and_only_that_is_a_discontinuity() {
    let mut segmenter = Segmenter::new(HlsSettings::default());
    // From lap 3 on, the audio says 44.1 kHz instead of 48 kHz (ADTS sampling index 3 → 4).
    feed(&mut segmenter, 6, |lap, frame| {
        if lap >= 3 && frame.codec == Codec::AacAdts {
            let mut data = frame.data.to_vec();
            data[2] = (data[2] & !0x3C) | (4 << 2);
            frame.data = Bytes::from(data);
        }
    });
    let marked: Vec<u64> = segmenter
        .segments()
        .filter(|s| s.discontinuity)
        .map(|s| s.sequence)
        .collect();
    assert_eq!(marked.len(), 1, "{}", segmenter.playlist());
    assert_eq!(
        segmenter
            .playlist()
            .matches("#EXT-X-DISCONTINUITY\n")
            .count(),
        1
    );
    assert_eq!(parse(segmenter.playlist()).segments.num_elements(), 6);
    // Once they leave the window, the discontinuity sequence counts them.
    let mut later = Segmenter::new(HlsSettings {
        window: 2,
        ..HlsSettings::default()
    });
    feed(&mut later, 6, |lap, frame| {
        if lap == 1 && frame.codec == Codec::AacAdts {
            let mut data = frame.data.to_vec();
            data[2] = (data[2] & !0x3C) | (4 << 2);
            frame.data = Bytes::from(data);
        }
    });
    // Lap 1 changes the rate (one discontinuity), lap 2 changes it back (another).
    assert_eq!(later.stats().discontinuities_total, 2);
    assert_eq!(parse(later.playlist()).discontinuity_sequence, 2);
}

#[test]
fn a_broken_timeline_is_a_discontinuity_not_a_giant_segment() {
    let mut segmenter = Segmenter::new(HlsSettings::default());
    feed(&mut segmenter, 4, |lap, frame| {
        if lap >= 2 {
            frame.dts = MpegTime(frame.dts.0 + 3_600 * 90_000);
            frame.pts = MpegTime(frame.pts.0 + 3_600 * 90_000);
        }
    });
    assert!(
        segmenter
            .segments()
            .all(|s| s.duration < Duration::from_secs(2))
    );
    assert_eq!(segmenter.stats().discontinuities_total, 1);
    assert_eq!(segmenter.stats().target_duration_seconds, 1);
}

#[test]
fn memory_is_bounded_by_the_window_and_the_segment_limit() {
    let limit = 16 * 1024;
    let mut segmenter = Segmenter::new(HlsSettings {
        max_segment_bytes: limit,
        ..HlsSettings::default()
    });
    feed(&mut segmenter, 20, |_, _| {});
    let stats = segmenter.stats();
    assert!(stats.segments <= 6);
    // Six listed, seven retired, one open; a segment may overshoot by one frame before it is cut.
    assert!(stats.bytes <= 14 * (limit + 8 * 1024), "{stats:?}");
    assert!(
        stats.skipped_frames_total > 0,
        "frames between the cut and the next keyframe are skipped"
    );
    for segment in segmenter.segments() {
        let (_, frames) = demux(&segment.data);
        assert!(
            frames
                .iter()
                .find(|f| f.codec.is_video())
                .is_some_and(|f| f.keyframe),
            "segment {} starts on a keyframe",
            segment.sequence
        );
    }
}

#[test]
fn an_empty_segmenter_serves_a_valid_waiting_playlist() {
    let segmenter = Segmenter::new(HlsSettings::default());
    let playlist = parse(segmenter.playlist());
    assert!(playlist.segments.is_empty());
    assert_eq!(
        segmenter.stats(),
        HlsStats {
            target_duration_seconds: 1,
            ..HlsStats::default()
        }
    );
}

#[test]
fn a_pause_frees_the_segments_and_numbering_goes_on() {
    let mut segmenter = Segmenter::new(HlsSettings {
        first_sequence: 1_000,
        ..HlsSettings::default()
    });
    feed(&mut segmenter, 2, |_, _| {});
    assert_eq!(segmenter.segments().next().map(|s| s.sequence), Some(1_000));
    segmenter.pause();
    assert_eq!(segmenter.stats().bytes, 0);
    assert!(parse(segmenter.playlist()).segments.is_empty());
    feed(&mut segmenter, 3, |_, _| {});
    let first = segmenter.segments().next().expect("segments again");
    assert!(
        first.sequence > 1_002 && first.discontinuity,
        "{}",
        segmenter.playlist()
    );
}
