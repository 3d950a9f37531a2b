//! Whatever an SRT encoder sends, demultiplexed and fed to the HLS segmenter with arbitrary
//! arrival times. Nothing may panic, the playlist must always parse, every listed segment must
//! be fetchable, and memory must stay inside its bound.
//!
//! Run: `cargo fuzz run hls_segmenter` from this directory.

#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use lunora_hls::{HlsSettings, Segmenter};
use lunora_ts::{AnalyserSettings, DemuxEvent, TsInput};

fuzz_target!(|data: &[u8]| {
    let settings = HlsSettings { window: 3, max_segment_bytes: 64 * 1024, ..HlsSettings::default() };
    let mut segmenter = Segmenter::new(settings);
    let mut input = TsInput::new(AnalyserSettings::default());
    for (i, piece) in data.chunks(1316).enumerate() {
        input.handle_bytes(Duration::from_millis(i as u64), piece);
        while let Some(event) = input.poll_event() {
            match event {
                DemuxEvent::Program(program) => segmenter.set_program(&program),
                DemuxEvent::Frame(frame) => segmenter.push(&frame, SystemTime::UNIX_EPOCH + Duration::from_millis(i as u64)),
            }
        }
        if piece.first() == Some(&0xFF) {
            segmenter.pause();
        }
    }
    let playlist = segmenter.playlist().to_string();
    assert!(hls_m3u8::MediaPlaylist::try_from(playlist.as_str()).is_ok(), "playlist does not parse:\n{playlist}");
    for segment in segmenter.segments() {
        assert!(segmenter.segment(segment.sequence).is_some());
    }
    let stats = segmenter.stats();
    assert!(stats.bytes <= (2 * 3 + 2) * (64 * 1024 + 1316 * 64), "{stats:?}");
});
