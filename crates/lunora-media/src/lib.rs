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
mod window;

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
pub use window::RecentCount;

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
/// For HEVC the frame rate comes from a VPS ahead of the SPS, when it signals one. This is what
/// every input kind reports as its video format: the MPEG-TS demuxer reads the same parameter
/// sets, and an RTMP input's frames carry its decoder configuration record's SPS on keyframes.
pub fn keyframe_video_format(codec: Codec, access_unit: &[u8]) -> Option<VideoFormat> {
    let mut hevc_frame_rate = None;
    for nal in AnnexBNalUnits::new(access_unit) {
        let Some(&header) = nal.first() else { continue };
        match codec {
            Codec::H264 => match H264NalType::from_header(header) {
                H264NalType::Sps => return parse_h264_sps(nal).ok().map(|s| s.format),
                // Parameter sets precede the first slice.
                H264NalType::IdrSlice | H264NalType::NonIdrSlice => return None,
                _ => {}
            },
            Codec::Hevc => match HevcNalType::from_header(header) {
                HevcNalType::Vps => {
                    hevc_frame_rate = parse_hevc_vps(nal).ok().and_then(|v| v.frame_rate);
                }
                HevcNalType::Sps => {
                    return parse_hevc_sps(nal).ok().map(|s| VideoFormat {
                        frame_rate: s.format.frame_rate.or(hevc_frame_rate),
                        ..s.format
                    });
                }
                HevcNalType::Irap(_) => return None,
                HevcNalType::Other(t) if t < 32 => return None,
                _ => {}
            },
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Annex-B access unit: each NAL unit behind a 4-byte start code.
    fn annex_b(units: &[&[u8]]) -> Vec<u8> {
        units
            .iter()
            .flat_map(|u| [&[0u8, 0, 0, 1][..], u].concat())
            .collect()
    }

    /// A VPS (one layer, one sub-layer, Main profile) that signals `time_scale /
    /// num_units_in_tick` frames per second, with emulation prevention applied.
    fn vps_with_rate(time_scale: u32, num_units_in_tick: u32) -> Vec<u8> {
        let mut bits: Vec<bool> = Vec::new();
        let mut put = |value: u64, count: usize| {
            bits.extend((0..count).rev().map(|i| (value >> i) & 1 == 1));
        };
        put(0, 4); // vps_video_parameter_set_id
        put(0b11, 2); // base layer internal, available
        put(0, 6); // max_layers_minus1
        put(0, 3); // max_sub_layers_minus1
        put(1, 1); // temporal_id_nesting
        put(0xffff, 16);
        put(1, 8); // profile space, tier, profile_idc 1
        put(0x6000_0000, 32); // compatible with profiles 1 and 2
        put(0b10, 2); // progressive source
        put(0, 2 + 43 + 1);
        put(120, 8); // level 4
        put(1, 1); // sub_layer_ordering_info_present
        put(0b111, 3); // three ue(0)
        put(0, 6); // max_layer_id
        put(1, 1); // num_layer_sets_minus1 = ue(0)
        put(1, 1); // timing info present
        put(u64::from(num_units_in_tick), 32);
        put(u64::from(time_scale), 32);
        put(0b1000_0000, 8); // the rest is not read: stop bit and padding
        let rbsp: Vec<u8> = bits
            .chunks(8)
            .map(|byte| byte.iter().fold(0u8, |acc, &b| acc << 1 | u8::from(b)))
            .collect();
        let mut nal = vec![0x40, 0x01];
        let mut zeros = 0;
        for byte in rbsp {
            if zeros >= 2 && byte <= 3 {
                nal.push(3);
                zeros = 0;
            }
            zeros = if byte == 0 { zeros + 1 } else { 0 };
            nal.push(byte);
        }
        nal
    }

    #[test]
    fn an_hevc_keyframe_takes_its_frame_rate_from_the_vps() {
        let vps = vps_with_rate(50, 1);
        assert_eq!(parse_hevc_vps(&vps).map(|v| v.frame_rate), Ok(Some(50.0)));
        let sps = hevc::tests::SPS;
        let irap = [0x26u8, 0x01, 0xaf];
        let format = keyframe_video_format(Codec::Hevc, &annex_b(&[&vps, &sps, &irap]))
            .expect("parameter sets");
        assert_eq!((format.width, format.height), (1920, 1080));
        assert_eq!(format.frame_rate, Some(50.0));
        assert!(!format.interlaced);
        // Without the VPS the size is still known, the rate is not.
        let format = keyframe_video_format(Codec::Hevc, &annex_b(&[&sps, &irap])).expect("sps");
        assert_eq!(format.frame_rate, None);
        // A picture without parameter sets says nothing.
        assert_eq!(keyframe_video_format(Codec::Hevc, &annex_b(&[&irap])), None);
    }
}
