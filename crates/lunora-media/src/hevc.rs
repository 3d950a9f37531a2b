//! HEVC video and sequence parameter sets (ITU-T H.265 §7.3.2.1–2): picture size, scan type and
//! frame rate.

use crate::VideoFormat;
use crate::bits::{BitReader, BitReaderError};
use crate::nal::remove_emulation_prevention;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HevcSps {
    pub general_profile_idc: u8,
    pub general_tier_flag: bool,
    pub general_level_idc: u8,
    /// The general profile_tier_level() bytes as coded (profile space … level_idc): what an
    /// HEVCDecoderConfigurationRecord repeats.
    pub general_profile_tier_level: [u8; 12],
    pub max_sub_layers: u8,
    pub temporal_id_nesting: bool,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Frame rate is carried in the VPS (or deep in the SPS VUI); this is `None` here and
    /// filled from [`HevcVps::frame_rate`] by callers that have both.
    pub format: VideoFormat,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HevcVps {
    pub frame_rate: Option<f64>,
}

struct ProfileTierLevel {
    profile_idc: u8,
    tier: bool,
    level_idc: u8,
    interlaced_source: bool,
    progressive_source: bool,
}

fn read_profile_tier_level(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u8,
) -> Result<ProfileTierLevel, BitReaderError> {
    r.skip_bits(2)?; // general_profile_space
    let tier = r.read_bit()?;
    let profile_idc = r.read_bits(5)? as u8;
    r.skip_bits(32)?; // general_profile_compatibility_flags
    let progressive_source = r.read_bit()?;
    let interlaced_source = r.read_bit()?;
    r.skip_bits(2 + 43 + 1)?; // non_packed, frame_only, reserved/constraint bits, inbld
    let level_idc = r.read_bits(8)? as u8;
    let mut sub_layer_profile = [false; 8];
    let mut sub_layer_level = [false; 8];
    for i in 0..usize::from(max_sub_layers_minus1) {
        sub_layer_profile[i] = r.read_bit()?;
        sub_layer_level[i] = r.read_bit()?;
    }
    if max_sub_layers_minus1 > 0 {
        r.skip_bits(2 * (8 - usize::from(max_sub_layers_minus1)))?;
    }
    for i in 0..usize::from(max_sub_layers_minus1) {
        if sub_layer_profile[i] {
            r.skip_bits(88)?;
        }
        if sub_layer_level[i] {
            r.skip_bits(8)?;
        }
    }
    Ok(ProfileTierLevel {
        profile_idc,
        tier,
        level_idc,
        interlaced_source,
        progressive_source,
    })
}

/// Parses an SPS NAL unit (two-byte header included).
pub fn parse_hevc_sps(nal: &[u8]) -> Result<HevcSps, BitReaderError> {
    let rbsp = remove_emulation_prevention(nal.get(2..).unwrap_or_default());
    let mut r = BitReader::new(&rbsp);
    r.skip_bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.read_bits(3)? as u8;
    let temporal_id_nesting = r.read_bit()?;
    let mut general_profile_tier_level = [0; 12];
    general_profile_tier_level.copy_from_slice(
        rbsp.get(1..13)
            .ok_or(BitReaderError::EndOfData { needed: 8 * 13 })?,
    );
    let ptl = read_profile_tier_level(&mut r, max_sub_layers_minus1)?;
    r.read_ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.read_ue()?;
    if chroma_format_idc == 3 {
        r.skip_bits(1)?; // separate_colour_plane_flag
    }
    let mut width = u64::from(r.read_ue()?);
    let mut height = u64::from(r.read_ue()?);
    if r.read_bit()? {
        let (sub_width, sub_height) = match chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let left = u64::from(r.read_ue()?);
        let right = u64::from(r.read_ue()?);
        let top = u64::from(r.read_ue()?);
        let bottom = u64::from(r.read_ue()?);
        width = width.saturating_sub(sub_width * (left + right));
        height = height.saturating_sub(sub_height * (top + bottom));
    }
    let bit_depth_luma = 8 + r.read_ue()?.min(8) as u8;
    let bit_depth_chroma = 8 + r.read_ue()?.min(8) as u8;
    Ok(HevcSps {
        general_profile_idc: ptl.profile_idc,
        general_tier_flag: ptl.tier,
        general_level_idc: ptl.level_idc,
        general_profile_tier_level,
        max_sub_layers: max_sub_layers_minus1 + 1,
        temporal_id_nesting,
        chroma_format_idc: chroma_format_idc.min(3) as u8,
        bit_depth_luma,
        bit_depth_chroma,
        format: VideoFormat {
            width: width as u32,
            height: height as u32,
            frame_rate: None,
            interlaced: ptl.interlaced_source && !ptl.progressive_source,
        },
    })
}

/// Parses a VPS NAL unit (two-byte header included) for its timing information.
pub fn parse_hevc_vps(nal: &[u8]) -> Result<HevcVps, BitReaderError> {
    let rbsp = remove_emulation_prevention(nal.get(2..).unwrap_or_default());
    let mut r = BitReader::new(&rbsp);
    r.skip_bits(4 + 1 + 1 + 6)?; // id, base_layer_internal/available, max_layers_minus1
    let max_sub_layers_minus1 = r.read_bits(3)? as u8;
    r.skip_bits(1 + 16)?; // temporal_id_nesting, reserved 0xffff
    read_profile_tier_level(&mut r, max_sub_layers_minus1)?;
    let ordering_info_for_all = r.read_bit()?;
    let first = if ordering_info_for_all {
        0
    } else {
        max_sub_layers_minus1
    };
    for _ in first..=max_sub_layers_minus1 {
        r.read_ue()?;
        r.read_ue()?;
        r.read_ue()?;
    }
    let max_layer_id = r.read_bits(6)? as usize;
    let num_layer_sets_minus1 = r.read_ue()? as usize;
    r.skip_bits(num_layer_sets_minus1.min(1024) * (max_layer_id + 1))?;
    let frame_rate = if r.read_bit()? {
        let num_units_in_tick = r.read_bits(32)?;
        let time_scale = r.read_bits(32)?;
        (num_units_in_tick != 0).then(|| time_scale as f64 / num_units_in_tick as f64)
    } else {
        None
    };
    Ok(HevcVps { frame_rate })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// VPS and SPS from `ffmpeg -f lavfi -i testsrc=size=1920x1080:rate=25 -c:v libx265`.
    pub(crate) const VPS: [u8; 24] = [
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x03, 0x00, 0x78, 0x95, 0x98, 0x09,
    ];
    pub(crate) const SPS: [u8; 42] = [
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56, 0x69, 0x24, 0xca, 0xf0,
        0x16, 0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84,
    ];

    #[test]
    fn parses_x265_1080p25() {
        let sps = parse_hevc_sps(&SPS).expect("valid sps");
        assert_eq!(sps.general_profile_idc, 1);
        assert_eq!(sps.general_level_idc, 120);
        assert_eq!((sps.format.width, sps.format.height), (1920, 1080));
        assert!(!sps.format.interlaced);
    }

    #[test]
    fn vps_without_timing_info_has_no_rate() {
        // x265 omits VPS timing by default; the parser must get through the whole VPS to say so.
        assert_eq!(parse_hevc_vps(&VPS).map(|v| v.frame_rate), Ok(None));
    }

    #[test]
    fn truncated_is_an_error() {
        assert!(parse_hevc_sps(&SPS[..10]).is_err());
        assert!(parse_hevc_vps(&VPS[..8]).is_err());
    }
}
