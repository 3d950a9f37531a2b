//! Codec-agnostic media types shared by every Lunora crate.
//!
//! Architecture invariant: this crate does no I/O, reads no clock and depends on no runtime.
//! Everything here is a pure function of its inputs.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod aac;
mod bits;
mod frame;
mod h264;
mod hevc;
mod logline;
mod mpega;
mod nal;
mod secret;
mod time;

pub use aac::{AAC_SAMPLES_PER_FRAME, AdtsHeader, AudioSpecificConfig, split_adts_frames};
pub use bits::{BitReader, BitReaderError};
pub use frame::{Codec, Frame, Program, Track, TrackId};
pub use h264::{H264Sps, parse_h264_sps};
pub use hevc::{HevcSps, HevcVps, parse_hevc_sps, parse_hevc_vps};
pub use logline::{LogThrottle, Printable, printable};
pub use mpega::MpegAudioHeader;
pub use nal::{AnnexBNalUnits, H264NalType, HevcNalType, remove_emulation_prevention};
pub use secret::{STREAM_KEY_RULE, Secret, exposed_secret, valid_stream_key};
pub use time::{MpegTime, Unwrap33, WRAP_33_BIT, rfc3339};

/// Video properties read from a sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoFormat {
    pub width: u32,
    pub height: u32,
    /// Frames per second when the stream signals it (VUI timing), else `None`.
    pub frame_rate: Option<f64>,
    /// True when pictures are coded as fields (1080i and friends).
    pub interlaced: bool,
}

/// The picture format described by the SPS a video access unit carries (keyframes do), if any.
pub fn keyframe_video_format(codec: Codec, access_unit: &[u8]) -> Option<VideoFormat> {
    AnnexBNalUnits::new(access_unit).find_map(|nal| {
        let header = *nal.first()?;
        match codec {
            Codec::H264 if H264NalType::from_header(header) == H264NalType::Sps => {
                parse_h264_sps(nal).ok().map(|s| s.format)
            }
            Codec::Hevc if HevcNalType::from_header(header) == HevcNalType::Sps => {
                parse_hevc_sps(nal).ok().map(|s| s.format)
            }
            _ => None,
        }
    })
}
