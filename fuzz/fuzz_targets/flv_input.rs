//! What an RTMP publisher can send: arbitrary FLV tag bodies (classic and enhanced-RTMP video,
//! audio) with arbitrary timestamps into the demuxer. Nothing may panic; every frame that comes
//! out must go back through the muxer and be read again without an error.
//!
//! Run: `cargo fuzz run flv_input` from this directory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lunora_flv::{FlvDemux, FlvEvent, FlvMux, TagKind};

fuzz_target!(|data: &[u8]| {
    let mut demux = FlvDemux::new();
    let mut events = Vec::new();
    let mut rest = data;
    // Each tag: kind (1 byte), timestamp (2 bytes, in 10 ms steps), length (1 byte), body.
    while let [kind, t0, t1, length, tail @ ..] = rest {
        let length = usize::from(*length).min(tail.len());
        let (body, after) = tail.split_at(length);
        let timestamp = u32::from(u16::from_be_bytes([*t0, *t1])) * 10;
        let _ = if kind % 2 == 0 { demux.handle_video(timestamp, body, &mut events) } else { demux.handle_audio(timestamp, body, &mut events) };
        rest = after;
    }
    let mut mux = FlvMux::new();
    let mut tags = Vec::new();
    for event in &events {
        if let FlvEvent::Frame(frame) = event {
            mux.write_frame(frame, &mut tags);
        }
    }
    let mut again = FlvDemux::new();
    let mut out = Vec::new();
    for tag in &tags {
        let result = match tag.kind {
            TagKind::Video => again.handle_video(tag.timestamp_ms, &tag.body, &mut out),
            TagKind::Audio => again.handle_audio(tag.timestamp_ms, &tag.body, &mut out),
        };
        assert!(result.is_ok(), "the muxer wrote a tag its own demuxer refuses: {result:?}");
    }
});
