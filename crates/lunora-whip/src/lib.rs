//! WebRTC ingest (WHIP, RFC 9725): a publisher POSTs an SDP offer, gets an answer carrying the
//! box's ICE candidates, and sends H.264/HEVC + Opus over one UDP port the box shares between
//! every session.
//!
//! `registry` (the session table and its limits), `media` (RTP time → 90 kHz, the video
//! gate after loss) and `sync` (lip sync from RTCP sender reports, A/V interleaving) are
//! sans-IO; `server` is the tokio shell around str0m, itself sans-IO.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod media;
mod registry;
mod server;
mod sync;

pub use media::{Gate, MAX_ACCESS_UNIT, TrackClock, VideoCodec, VideoGate};
pub use registry::{CREDENTIAL_LIFETIME, MAX_CREDENTIALS, Refusal, Registry, SessionId};
pub use server::{
    Counters, HANDSHAKE_TIMEOUT, InputHandle, KeyframeRequester, Media, PublishError, Published,
    SessionState, WhipServer, WhipSettings,
};
pub use sync::{Interleaver, LipSync, MAX_HOLD, SenderReport};
