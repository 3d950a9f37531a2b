//! The channel bus: a broadcast of frames with a GOP cache, so a reader that joins late (a
//! caller connecting, a destination restarting) starts on a keyframe at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use lunora_media::{Frame, Program};
use tokio::sync::broadcast;

#[derive(Debug, Clone)]
pub enum BusItem {
    Program(Arc<Program>),
    Frame(Arc<Frame>),
}

#[derive(Debug, Default)]
struct GopCache {
    program: Option<Arc<Program>>,
    /// Frames since the last video keyframe (or, without video, a short tail).
    frames: Vec<Arc<Frame>>,
    bytes: usize,
}

/// Upper bound on the GOP cache; a stream without keyframes must not grow it forever.
const GOP_CACHE_MAX_BYTES: usize = 48 << 20;
const GOP_CACHE_MAX_FRAMES: usize = 4096;
/// Without video, late joiners get this many recent frames.
const AUDIO_ONLY_TAIL: usize = 16;

#[derive(Debug)]
pub struct Bus {
    sender: broadcast::Sender<BusItem>,
    cache: Mutex<GopCache>,
}

impl Bus {
    /// `capacity` items are kept for readers that are behind; past that they lag and skip.
    pub fn new(capacity: usize) -> Arc<Bus> {
        let (sender, _) = broadcast::channel(capacity.max(16));
        Arc::new(Bus {
            sender,
            cache: Mutex::new(GopCache::default()),
        })
    }

    fn cache(&self) -> MutexGuard<'_, GopCache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn publish_program(&self, program: Program) {
        let program = Arc::new(program);
        let mut cache = self.cache();
        cache.program = Some(program.clone());
        // Sent under the lock so a subscriber sees either the cache or the live item, never
        // both and never neither.
        let _ = self.sender.send(BusItem::Program(program));
    }

    pub fn publish_frame(&self, frame: Frame) {
        let frame = Arc::new(frame);
        let mut cache = self.cache();
        let has_video = cache
            .program
            .as_ref()
            .is_some_and(|p| p.tracks.iter().any(|t| t.codec.is_video()));
        if frame.codec.is_video() && frame.keyframe {
            cache.frames.clear();
            cache.bytes = 0;
        }
        cache.bytes += frame.data.len();
        cache.frames.push(frame.clone());
        if !has_video && cache.frames.len() > AUDIO_ONLY_TAIL {
            let excess = cache.frames.len() - AUDIO_ONLY_TAIL;
            let removed: usize = cache.frames.drain(..excess).map(|f| f.data.len()).sum();
            cache.bytes -= removed;
        }
        if cache.bytes > GOP_CACHE_MAX_BYTES || cache.frames.len() > GOP_CACHE_MAX_FRAMES {
            cache.frames.clear();
            cache.bytes = 0;
        }
        let _ = self.sender.send(BusItem::Frame(frame));
    }

    /// A reader that first gets the current program and the cached GOP, then live items.
    pub fn subscribe(self: &Arc<Self>) -> BusReceiver {
        let cache = self.cache();
        let mut backlog = VecDeque::with_capacity(cache.frames.len() + 1);
        if let Some(program) = &cache.program {
            backlog.push_back(BusItem::Program(program.clone()));
        }
        backlog.extend(cache.frames.iter().cloned().map(BusItem::Frame));
        let receiver = self.sender.subscribe();
        drop(cache);
        BusReceiver {
            bus: self.clone(),
            receiver,
            backlog,
            waiting_for_keyframe: true,
            dropped_frames: 0,
        }
    }

    pub fn current_program(&self) -> Option<Arc<Program>> {
        self.cache().program.clone()
    }
}

/// One reader's cursor on the bus.
#[derive(Debug)]
pub struct BusReceiver {
    bus: Arc<Bus>,
    receiver: broadcast::Receiver<BusItem>,
    backlog: VecDeque<BusItem>,
    waiting_for_keyframe: bool,
    dropped_frames: u64,
}

impl BusReceiver {
    /// True while the reader is still being handed the cached GOP it joined with.
    pub fn catching_up(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Frames this reader skipped because it fell behind (or joined mid-GOP).
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// The next item; `None` once the bus is gone. After falling behind, frames are skipped
    /// until the next point a decoder can start from.
    pub async fn recv(&mut self) -> Option<BusItem> {
        loop {
            let item = match self.backlog.pop_front() {
                Some(item) => item,
                None => match self.receiver.recv().await {
                    Ok(item) => item,
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        self.dropped_frames += skipped;
                        self.waiting_for_keyframe = true;
                        // The program may have changed in what was skipped.
                        if let Some(program) = self.bus.current_program() {
                            self.backlog.push_back(BusItem::Program(program));
                        }
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            if let BusItem::Frame(frame) = &item
                && self.waiting_for_keyframe
            {
                if self.can_start_at(frame) {
                    self.waiting_for_keyframe = false;
                } else {
                    self.dropped_frames += 1;
                    continue;
                }
            }
            return Some(item);
        }
    }

    fn can_start_at(&self, frame: &Frame) -> bool {
        let has_video = self
            .bus
            .current_program()
            .is_some_and(|p| p.tracks.iter().any(|t| t.codec.is_video()));
        if has_video {
            frame.codec.is_video() && frame.keyframe
        } else {
            frame.keyframe
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use lunora_media::{Codec, MpegTime, Track, TrackId};

    use super::*;

    fn program() -> Program {
        Program {
            tracks: vec![
                Track::new(TrackId(1), Codec::H264),
                Track::new(TrackId(2), Codec::AacAdts),
            ],
        }
    }

    fn video(t: i64, keyframe: bool) -> Frame {
        Frame {
            track: TrackId(1),
            codec: Codec::H264,
            pts: MpegTime(t),
            dts: MpegTime(t),
            keyframe,
            data: Bytes::from_static(b"v"),
        }
    }

    async fn next_frame(rx: &mut BusReceiver) -> Arc<Frame> {
        loop {
            if let Some(BusItem::Frame(f)) = rx.recv().await {
                return f;
            }
        }
    }

    #[tokio::test]
    async fn late_joiner_starts_at_the_cached_keyframe() {
        let bus = Bus::new(64);
        bus.publish_program(program());
        bus.publish_frame(video(0, false));
        bus.publish_frame(video(1, true));
        bus.publish_frame(video(2, false));
        let mut rx = bus.subscribe();
        assert!(matches!(rx.recv().await, Some(BusItem::Program(_))));
        assert_eq!(next_frame(&mut rx).await.dts, MpegTime(1));
        assert_eq!(next_frame(&mut rx).await.dts, MpegTime(2));
        bus.publish_frame(video(3, false));
        assert_eq!(next_frame(&mut rx).await.dts, MpegTime(3));
    }

    #[tokio::test]
    async fn a_slow_reader_skips_to_the_next_keyframe_and_counts() {
        let bus = Bus::new(16);
        bus.publish_program(program());
        bus.publish_frame(video(0, true));
        let mut rx = bus.subscribe();
        for t in 1..100 {
            bus.publish_frame(video(t, t == 95));
        }
        let mut first = None;
        while let Some(item) = rx.recv().await {
            if let BusItem::Frame(f) = item
                && f.dts > MpegTime(0)
            {
                first = Some(f.dts);
                break;
            }
        }
        assert_eq!(first, Some(MpegTime(95)));
        assert!(rx.dropped_frames() > 0);
    }
}
