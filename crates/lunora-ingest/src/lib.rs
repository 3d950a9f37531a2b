//! Input adapters: each turns a protocol (SRT, RTMP, RTP/UDP) into `Frame`s plus link statistics for
//! its channel.
//!
//! Architecture invariant: no peer can take down a listener, whatever it sends. Every caller is
//! accepted or rejected explicitly, with the reason logged and counted.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod queue;
mod rtmp;
mod rtp;
mod rtp_sdp;
mod srt;
mod stats;
mod tls;
mod ts_feed;

pub use queue::{InputReceiver, InputSender, SendError, SlotEvent, input_queue};
pub use rtmp::{RtmpInput, RtmpInputs, RtmpServer, RtmpsError, RtmpsSettings};
pub use rtp::{BoundRtpInput, MergePaths, PathDatagram, RtpFormat, RtpInputSettings, RtpRole};
pub use rtp_sdp::{BoundSdpInput, SdpInputSettings};
pub use srt::{BoundSrtInput, SrtInputSettings};
pub use stats::{
    ConnectionState, FrameCounts, InputStats, LipSyncSource, RejectCounts, RtpPathStats, RtpStats,
    StatsHandle, VideoInfo,
};
pub use tls::{TlsError, tls_acceptor};

use lunora_media::{Frame, Program};

/// What an input tells its channel. `Connected`, `Disconnected` and `Program` are control
/// events, never dropped; `Frame` and `Stats` may be (see [`input_queue`]).
#[derive(Debug, Clone)]
pub enum InputEvent {
    Connected {
        /// Who is sending: the caller's address, or what an engine source plays.
        peer: String,
    },
    Disconnected,
    Program(Program),
    Frame(Frame),
    /// Link and analyser totals, a few times a second, for the channel's health model.
    Stats {
        packets_received: u64,
        packets_lost: u64,
        tr101290_priority1: u64,
    },
}

impl InputEvent {
    /// Frames and statistics: dropped (and counted) when the channel is behind.
    pub fn is_lossy(&self) -> bool {
        matches!(self, InputEvent::Frame(_) | InputEvent::Stats { .. })
    }
}
