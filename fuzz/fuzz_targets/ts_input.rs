//! Arbitrary bytes through resync, the TR 101 290 analyser and the demuxer, then every frame
//! that comes out through the muxer and back through a second demuxer. Nothing may panic, and
//! the muxer's own output must be TR 101 290 clean at the packet level (sync, CC, CRC).
//!
//! Run: `cargo fuzz run ts_input` from this directory.

#![no_main]

use std::time::Duration;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use lunora_ts::{AnalyserSettings, DemuxEvent, Indicator, MuxSettings, Muxer, TsInput};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunking so both aligned and byte-stream paths are explored.
    let Some((&shape, body)) = data.split_first() else { return };
    let chunk = match shape % 4 {
        0 => 1316,
        1 => 188,
        2 => 1456,
        _ => usize::from(shape).max(1),
    };
    let mut input = TsInput::new(AnalyserSettings::default());
    let mut muxer = Muxer::new(MuxSettings::default());
    let mut out = BytesMut::new();
    let mut last_dts = std::collections::HashMap::new();
    for (i, piece) in body.chunks(chunk).enumerate() {
        input.handle_bytes(Duration::from_millis(i as u64), piece);
        while let Some(event) = input.poll_event() {
            match event {
                DemuxEvent::Program(program) => muxer.set_program(&program),
                DemuxEvent::Frame(frame) => {
                    // The muxer expects increasing DTS per track, as the channel provides.
                    if last_dts.get(&frame.track).is_none_or(|d| frame.dts > *d) {
                        last_dts.insert(frame.track, frame.dts);
                        muxer.write_frame(&frame, &mut out);
                    }
                }
            }
        }
        while input.poll_tr101290_event().is_some() {}
    }
    input.flush();
    let mut check = TsInput::new(AnalyserSettings::default());
    for piece in out.chunks(1316) {
        check.handle_bytes(Duration::ZERO, piece);
    }
    while check.poll_event().is_some() {}
    let counters = check.counters();
    for indicator in [Indicator::SyncByteError, Indicator::TsSyncLoss, Indicator::ContinuityCountError, Indicator::CrcError] {
        assert_eq!(counters.get(indicator), 0, "muxer output has {}", indicator.name());
    }
});
