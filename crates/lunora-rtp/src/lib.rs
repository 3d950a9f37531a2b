//! RTP, sans I/O: header parsing, RTCP sender reports, the reorder buffer (which is also the SMPTE 2022-7 merger of
//! two paths), SMPTE 2022-1 FEC recovery, the H.264 (RFC 6184) and AAC (RFC 3640
//! `mpeg4-generic`, RFC 6416 `MP4A-LATM`) depacketizers, decode times for H.264 that carries
//! presentation times only, and the few SDP
//! attributes they need.
//!
//! Architecture invariant: no I/O, no clock, no runtime. Time is passed in as a `Duration`
//! since any fixed origin, so every behaviour can be tested on a virtual clock.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod aac;
mod dts;
mod fec;
mod h264;
mod header;
mod latm;
mod resequencer;
mod rtcp;
mod sdp;
mod session;

pub use aac::{AacDepacketizer, AacFrame, AacMode};
pub use dts::{DecodeTimes, reorder_depth};
pub use fec::{
    FEC_HEADER_LEN, FecDecoder, FecDirection, FecError, FecHeader, FecMatrix, FecStats,
    MATRIX_PACKETS_MAX, MATRIX_SIDE_MAX,
};
pub use h264::{AccessUnit, H264Depacketizer};
pub use header::{HeaderError, RtpPacket};
pub use latm::{LatmConfig, LatmDepacketizer, LatmError};
pub use resequencer::{PathStats, Released, Resequencer, ResequencerStats};
pub use rtcp::SenderReport;
pub use sdp::{Media, SDP_CAP, SdpError, SessionDescription};
pub use session::{
    Placement, Rejected, SdpSession, SessionStats, StreamError, StreamKind, StreamSpec,
    usable_streams,
};

/// RTP payload type 33: MPEG-2 transport stream (RFC 3551), what `rtp_mpegts` senders use.
pub const PAYLOAD_TYPE_MP2T: u8 = 33;
