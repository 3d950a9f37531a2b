//! One channel: takes its inputs' events, picks the input on air, keeps the output timeline
//! continuous and publishes onto the channel's bus.
//!
//! Until automatic failover lands, a main-backup channel forwards its main input.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lunora_egress::Bus;
use lunora_ingest::InputEvent;
use lunora_media::{Frame, MpegTime, Program, TrackId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Keeps output timestamps continuous across input reconnects (an encoder reboot restarts its
/// clock). Pure; fed frames, returns them re-timed or `None` to drop.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    offset: Option<i64>,
    waiting_for_keyframe: bool,
    has_video: bool,
    last_dts: HashMap<TrackId, MpegTime>,
    latest: Option<MpegTime>,
    /// Frames dropped: before the first keyframe of a segment, or going backwards in time.
    pub(crate) dropped: u64,
}

/// One 59.94 Hz frame in 90 kHz ticks: the gap placed between two segments.
const SEGMENT_GAP: i64 = 1_501;

impl Timeline {
    pub(crate) fn new() -> Self {
        Timeline { waiting_for_keyframe: true, ..Default::default() }
    }

    /// The source starts over (new connection): re-anchor on its next keyframe.
    pub(crate) fn new_segment(&mut self) {
        self.offset = None;
        self.waiting_for_keyframe = true;
    }

    pub(crate) fn set_program(&mut self, program: &Program) {
        self.has_video = program.tracks.iter().any(|t| t.codec.is_video());
    }

    pub(crate) fn map(&mut self, mut frame: Frame) -> Option<Frame> {
        if self.waiting_for_keyframe {
            let can_start = if self.has_video { frame.codec.is_video() && frame.keyframe } else { frame.keyframe };
            if !can_start {
                self.dropped += 1;
                return None;
            }
            self.waiting_for_keyframe = false;
        }
        let latest = self.latest;
        let offset = *self.offset.get_or_insert_with(|| latest.map_or(0, |l| l.0 + SEGMENT_GAP - frame.dts.0));
        frame.dts = frame.dts + offset;
        frame.pts = frame.pts + offset;
        if self.last_dts.get(&frame.track).is_some_and(|last| frame.dts <= *last) {
            self.dropped += 1;
            return None;
        }
        self.last_dts.insert(frame.track, frame.dts);
        self.latest = Some(self.latest.map_or(frame.dts, |l| l.max(frame.dts)));
        Some(frame)
    }
}

/// What the API shows about the channel's switching state.
#[derive(Debug, Default)]
pub(crate) struct ChannelRuntime {
    pub(crate) active_input: Option<String>,
}

pub(crate) struct ChannelTask {
    pub(crate) id: String,
    /// Index (into the channel's inputs) of the input on air.
    pub(crate) on_air: usize,
    pub(crate) on_air_id: String,
    pub(crate) bus: Arc<Bus>,
    pub(crate) runtime: Arc<Mutex<ChannelRuntime>>,
}

impl ChannelTask {
    pub(crate) async fn run(self, mut events: mpsc::Receiver<(usize, InputEvent)>, cancel: CancellationToken) {
        let mut timeline = Timeline::new();
        loop {
            let (index, event) = tokio::select! {
                _ = cancel.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            if index != self.on_air {
                continue;
            }
            match event {
                InputEvent::Connected { peer } => {
                    info!(channel = %self.id, input = %self.on_air_id, %peer, "input on air");
                    timeline.new_segment();
                    self.set_active(Some(self.on_air_id.clone()));
                }
                InputEvent::Disconnected => self.set_active(None),
                InputEvent::Program(program) => {
                    timeline.set_program(&program);
                    self.bus.publish_program(program);
                }
                InputEvent::Frame(frame) => {
                    if let Some(frame) = timeline.map(frame) {
                        self.bus.publish_frame(frame);
                    }
                }
            }
        }
    }

    fn set_active(&self, input: Option<String>) {
        self.runtime.lock().unwrap_or_else(|p| p.into_inner()).active_input = input;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use lunora_media::{Codec, Track};

    use super::*;

    fn frame(track: u16, codec: Codec, dts: i64, keyframe: bool) -> Frame {
        Frame { track: TrackId(track), codec, pts: MpegTime(dts + 3003), dts: MpegTime(dts), keyframe, data: Bytes::new() }
    }

    #[test]
    fn encoder_reboot_keeps_the_timeline_moving_forward() {
        let mut t = Timeline::new();
        t.set_program(&Program {
            tracks: vec![
                Track { id: TrackId(1), codec: Codec::H264, language: None, descriptors: Bytes::new() },
                Track { id: TrackId(2), codec: Codec::AacAdts, language: None, descriptors: Bytes::new() },
            ],
        });
        assert!(t.map(frame(2, Codec::AacAdts, 0, true)).is_none(), "audio before the first keyframe waits");
        let first = t.map(frame(1, Codec::H264, 900_000, true)).expect("keyframe starts");
        assert_eq!(first.dts, MpegTime(900_000), "the first segment keeps its own clock");
        t.map(frame(1, Codec::H264, 903_003, false));
        // The encoder restarts with a clock far in the past.
        t.new_segment();
        assert!(t.map(frame(1, Codec::H264, 10, false)).is_none());
        let resumed = t.map(frame(1, Codec::H264, 3013, true)).expect("keyframe resumes");
        assert_eq!(resumed.dts, MpegTime(903_003 + SEGMENT_GAP));
        assert_eq!(resumed.pts - resumed.dts, 3003, "PTS keeps its offset from DTS");
        assert_eq!(t.dropped, 2);
    }
}
