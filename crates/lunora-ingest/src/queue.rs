//! The queue from a channel's inputs to its task.
//!
//! Frames (and the periodic link statistics) are lossy: when the channel is behind, a full
//! queue drops them and the input counts the drop. Control events (connected, disconnected, a
//! new program) are never dropped: a lost `Program` would leave the input unable to go on air
//! until its encoder changed its stream, a lost `Disconnected` would leave it "connected"
//! forever. Both kinds travel on one FIFO, so a frame that follows a new program can never be
//! applied before it; only the number of lossy items in flight is bounded.
//!
//! Control events are few (a handful per connection, plus one per stream change) and the
//! channel task handles each without waiting on anything, so leaving them unbounded does not
//! let a peer grow memory faster than it can send.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::InputEvent;

/// An event tagged with the switcher slot of the input that raised it.
pub type SlotEvent = (usize, InputEvent);

/// Makes a queue that holds at most `frame_capacity` frames and statistics at once, and any
/// number of control events.
pub fn input_queue(frame_capacity: usize) -> (InputSender, InputReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let lossy = Arc::new(AtomicUsize::new(0));
    (
        InputSender {
            tx,
            lossy: lossy.clone(),
            frame_capacity,
        },
        InputReceiver { rx, lossy },
    )
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A frame or statistics update while the queue already held `frame_capacity` of them.
    #[error("the channel is behind: frame dropped")]
    Full,
    /// The channel has stopped.
    #[error("the channel has stopped")]
    Closed,
}

/// The inputs' end; cheap to clone (one per input).
#[derive(Debug, Clone)]
pub struct InputSender {
    tx: mpsc::UnboundedSender<SlotEvent>,
    /// Lossy items queued and not yet received.
    lossy: Arc<AtomicUsize>,
    frame_capacity: usize,
}

impl InputSender {
    /// Queues `event` from input `slot` without waiting. A control event is always queued
    /// (while the channel runs); a frame or statistics update only while fewer than the
    /// capacity are in flight.
    pub fn send(&self, slot: usize, event: InputEvent) -> Result<(), SendError> {
        let lossy = event.is_lossy();
        if lossy {
            let before = self.lossy.fetch_add(1, Ordering::AcqRel);
            if before >= self.frame_capacity {
                self.lossy.fetch_sub(1, Ordering::AcqRel);
                return Err(SendError::Full);
            }
        }
        self.tx.send((slot, event)).map_err(|_| {
            if lossy {
                self.lossy.fetch_sub(1, Ordering::AcqRel);
            }
            SendError::Closed
        })
    }
}

/// The channel task's end.
#[derive(Debug)]
pub struct InputReceiver {
    rx: mpsc::UnboundedReceiver<SlotEvent>,
    lossy: Arc<AtomicUsize>,
}

impl InputReceiver {
    /// The next event in the order the inputs sent them; `None` once every sender is gone.
    /// Cancel-safe (usable in `select!`).
    pub async fn recv(&mut self) -> Option<SlotEvent> {
        let item = self.rx.recv().await?;
        Some(self.took(item))
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<SlotEvent> {
        let item = self.rx.try_recv().ok()?;
        Some(self.took(item))
    }

    fn took(&self, item: SlotEvent) -> SlotEvent {
        if item.1.is_lossy() {
            self.lossy.fetch_sub(1, Ordering::AcqRel);
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lunora_media::{Codec, Frame, MpegTime, Program, Track, TrackId};

    fn frame(n: i64) -> InputEvent {
        InputEvent::Frame(Frame {
            track: TrackId(256),
            codec: Codec::H264,
            pts: MpegTime(n),
            dts: MpegTime(n),
            keyframe: n == 0,
            data: Default::default(),
        })
    }

    fn program(codec: Codec) -> InputEvent {
        InputEvent::Program(Program {
            tracks: vec![Track::new(TrackId(256), codec)],
        })
    }

    fn stats() -> InputEvent {
        InputEvent::Stats {
            packets_received: 1,
            packets_lost: 0,
            tr101290_priority1: 0,
        }
    }

    fn peer() -> std::net::SocketAddr {
        std::net::SocketAddr::from(([192, 0, 2, 7], 4000))
    }

    /// What arrived, as short names in order.
    fn drain(rx: &mut InputReceiver) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv())
            .map(|(slot, event)| {
                let what = match event {
                    InputEvent::Connected { .. } => "connected".to_string(),
                    InputEvent::Disconnected => "disconnected".to_string(),
                    InputEvent::Program(p) => format!("program {}", p.tracks[0].codec.name()),
                    InputEvent::Frame(f) => format!("frame {}", f.pts.0),
                    InputEvent::Stats { .. } => "stats".to_string(),
                };
                format!("{slot}:{what}")
            })
            .collect()
    }

    #[test]
    fn control_events_get_through_a_full_frame_queue_in_order() {
        let (tx, mut rx) = input_queue(3);
        for n in 0..3 {
            tx.send(1, frame(n)).unwrap();
        }
        // The channel is behind: frames and statistics are refused...
        assert_eq!(tx.send(1, frame(3)), Err(SendError::Full));
        assert_eq!(tx.send(1, stats()), Err(SendError::Full));
        // ...control events are not, from this input or another.
        tx.send(
            1,
            InputEvent::Connected {
                peer: peer().to_string(),
            },
        )
        .unwrap();
        tx.send(1, program(Codec::Hevc)).unwrap();
        assert_eq!(tx.send(1, frame(4)), Err(SendError::Full));
        tx.send(
            2,
            InputEvent::Connected {
                peer: peer().to_string(),
            },
        )
        .unwrap();
        tx.send(1, InputEvent::Disconnected).unwrap();
        assert_eq!(
            drain(&mut rx),
            [
                "1:frame 0",
                "1:frame 1",
                "1:frame 2",
                "1:connected",
                "1:program hevc",
                "2:connected",
                "1:disconnected",
            ]
        );
    }

    #[test]
    fn frames_after_a_new_program_arrive_after_it() {
        let (tx, mut rx) = input_queue(2);
        tx.send(0, frame(0)).unwrap();
        tx.send(0, frame(1)).unwrap();
        tx.send(0, program(Codec::Hevc)).unwrap();
        assert_eq!(tx.send(0, frame(2)), Err(SendError::Full));
        // The channel takes one frame: there is room for one more, and it lands behind the
        // program it belongs to.
        assert_eq!(drain_one(&mut rx), "0:frame 0");
        tx.send(0, frame(3)).unwrap();
        assert_eq!(tx.send(0, frame(4)), Err(SendError::Full));
        assert_eq!(drain(&mut rx), ["0:frame 1", "0:program hevc", "0:frame 3"]);
        // Empty again: the whole capacity is back.
        tx.send(0, frame(5)).unwrap();
        tx.send(0, stats()).unwrap();
        assert_eq!(drain(&mut rx), ["0:frame 5", "0:stats"]);
    }

    fn drain_one(rx: &mut InputReceiver) -> String {
        let (slot, event) = rx.try_recv().expect("an event");
        match event {
            InputEvent::Frame(f) => format!("{slot}:frame {}", f.pts.0),
            other => format!("{slot}:{other:?}"),
        }
    }

    #[test]
    fn a_stopped_channel_is_reported_and_frees_the_capacity() {
        let (tx, rx) = input_queue(1);
        drop(rx);
        assert_eq!(tx.send(0, frame(0)), Err(SendError::Closed));
        assert_eq!(tx.send(0, InputEvent::Disconnected), Err(SendError::Closed));
        assert_eq!(tx.lossy.load(Ordering::Acquire), 0);
    }
}
