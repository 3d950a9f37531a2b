//! FLV tag bodies ↔ `Frame`s, as RTMP carries them: AVC (sequence header ↔ SPS/PPS, AVCC ↔
//! Annex-B), HEVC through enhanced RTMP (`hvc1`), AAC (AudioSpecificConfig ↔ ADTS).
//!
//! Architecture invariant: pure; no I/O, no clock. RTMP's 32-bit millisecond timestamps are
//! unwrapped here and turned into 90 kHz ticks.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod demux;
mod mux;
mod record;

pub use demux::{FlvDemux, FlvEvent};
pub use mux::{FlvMux, FlvTag, TagKind};
pub use record::{AvcDecoderConfig, HevcDecoderConfig, hevc_decoder_config_record};

/// FLV's track ids in the `Program` a demuxer announces.
pub const VIDEO_TRACK: lunora_media::TrackId = lunora_media::TrackId(1);
pub const AUDIO_TRACK: lunora_media::TrackId = lunora_media::TrackId(2);

/// Why a tag could not be used. Broken media is reported, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("tag body too short ({0} bytes)")]
    Truncated(usize),
    #[error("unsupported video codec id {0} (H.264 and enhanced-RTMP HEVC are supported)")]
    UnsupportedVideoCodec(u8),
    #[error("unsupported enhanced-RTMP FourCC {0:?}")]
    UnsupportedFourCc([u8; 4]),
    #[error("unsupported sound format {0} (AAC is supported)")]
    UnsupportedAudioFormat(u8),
    #[error("malformed decoder configuration record")]
    BadConfig,
    #[error("a parameter set is too long (or there are too many) for the configuration record")]
    ParameterSetTooLong,
    #[error("coded frame before its sequence header")]
    NoConfig,
}
