//! H.264 sequence parameter set (ITU-T H.264 §7.3.2.1.1): just enough to describe the picture.

use crate::VideoFormat;
use crate::bits::{BitReader, BitReaderError};
use crate::nal::remove_emulation_prevention;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H264Sps {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub seq_parameter_set_id: u32,
    pub format: VideoFormat,
    /// How many frames may precede one in decode order and follow it in output order (VUI
    /// `max_num_reorder_frames`; B-frames need it above 0). `None` when the SPS does not say.
    pub max_num_reorder_frames: Option<u32>,
}

/// Parses an SPS NAL unit (header byte included, emulation prevention still present).
pub fn parse_h264_sps(nal: &[u8]) -> Result<H264Sps, BitReaderError> {
    let rbsp = remove_emulation_prevention(nal.get(1..).unwrap_or_default());
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.read_bits(8)? as u8;
    let constraint_flags = r.read_bits(8)? as u8;
    let level_idc = r.read_bits(8)? as u8;
    let seq_parameter_set_id = r.read_ue()?;

    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.read_ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.read_bit()?;
        }
        r.read_ue()?; // bit_depth_luma_minus8
        r.read_ue()?; // bit_depth_chroma_minus8
        r.skip_bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.read_bit()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for index in 0..lists {
                if r.read_bit()? {
                    skip_scaling_list(&mut r, if index < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.read_ue()?; // log2_max_frame_num_minus4
    let pic_order_cnt_type = r.read_ue()?;
    if pic_order_cnt_type == 0 {
        r.read_ue()?; // log2_max_pic_order_cnt_lsb_minus4
    } else if pic_order_cnt_type == 1 {
        r.skip_bits(1)?;
        r.read_se()?;
        r.read_se()?;
        let cycle = r.read_ue()?;
        for _ in 0..cycle.min(255) {
            r.read_se()?;
        }
    }
    r.read_ue()?; // max_num_ref_frames
    r.skip_bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_in_mbs = u64::from(r.read_ue()?) + 1;
    let height_in_map_units = u64::from(r.read_ue()?) + 1;
    let frame_mbs_only = r.read_bit()?;
    if !frame_mbs_only {
        r.skip_bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.skip_bits(1)?; // direct_8x8_inference_flag
    let (mut crop_left, mut crop_right, mut crop_top, mut crop_bottom) = (0, 0, 0, 0);
    if r.read_bit()? {
        crop_left = u64::from(r.read_ue()?);
        crop_right = u64::from(r.read_ue()?);
        crop_top = u64::from(r.read_ue()?);
        crop_bottom = u64::from(r.read_ue()?);
    }
    let frame_height_factor = if frame_mbs_only { 1 } else { 2 };
    let (crop_unit_x, crop_unit_y) = match (chroma_format_idc, separate_colour_plane) {
        (0, _) | (3, true) => (1, frame_height_factor),
        (1, false) => (2, 2 * frame_height_factor),
        (2, false) => (2, frame_height_factor),
        _ => (1, frame_height_factor),
    };
    let width = (width_in_mbs * 16).saturating_sub(crop_unit_x * (crop_left + crop_right));
    let height = (height_in_map_units * 16 * frame_height_factor)
        .saturating_sub(crop_unit_y * (crop_top + crop_bottom));

    // A VUI this reader cannot follow to its end still gave what it could.
    let vui = if r.read_bit()? {
        read_vui(&mut r).unwrap_or_else(|partial| partial)
    } else {
        Vui::default()
    };

    Ok(H264Sps {
        profile_idc,
        constraint_flags,
        level_idc,
        seq_parameter_set_id,
        format: VideoFormat {
            width: width as u32,
            height: height as u32,
            frame_rate: vui.frame_rate,
            interlaced: !frame_mbs_only,
        },
        max_num_reorder_frames: vui.max_num_reorder_frames,
    })
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), BitReaderError> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.read_se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

#[derive(Debug, Default, Clone, Copy)]
struct Vui {
    frame_rate: Option<f64>,
    max_num_reorder_frames: Option<u32>,
}

/// The VUI (Annex E.1.1), or as much of it as was read when the bits ran out (`Err`).
fn read_vui(r: &mut BitReader<'_>) -> Result<Vui, Vui> {
    let mut vui = Vui::default();
    let frame_rate = read_vui_frame_rate(r).map_err(|_| vui)?;
    vui.frame_rate = frame_rate.flatten();
    vui.max_num_reorder_frames = read_vui_reorder(r).map_err(|_| vui)?;
    Ok(vui)
}

/// VUI up to `timing_info`: `None` when timing info is absent. H.264 counts time in fields:
/// one frame is two ticks.
fn read_vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<Option<f64>>, BitReaderError> {
    if r.read_bit()? {
        // aspect_ratio_info_present_flag
        if r.read_bits(8)? == 255 {
            r.skip_bits(32)?; // Extended_SAR
        }
    }
    if r.read_bit()? {
        r.skip_bits(1)?; // overscan_appropriate_flag
    }
    if r.read_bit()? {
        r.skip_bits(4)?; // video_format, video_full_range_flag
        if r.read_bit()? {
            r.skip_bits(24)?; // colour description
        }
    }
    if r.read_bit()? {
        r.read_ue()?;
        r.read_ue()?; // chroma sample loc
    }
    if !r.read_bit()? {
        return Ok(None);
    }
    let num_units_in_tick = r.read_bits(32)?;
    let time_scale = r.read_bits(32)?;
    r.skip_bits(1)?; // fixed_frame_rate_flag
    if num_units_in_tick == 0 {
        return Ok(Some(None));
    }
    // Progressive and interlaced alike signal field rate: frame rate = time_scale / (2 * num_units).
    Ok(Some(Some(
        time_scale as f64 / (2.0 * num_units_in_tick as f64),
    )))
}

/// The rest of the VUI after the timing info, up to `max_num_reorder_frames`.
fn read_vui_reorder(r: &mut BitReader<'_>) -> Result<Option<u32>, BitReaderError> {
    let nal_hrd = r.read_bit()?;
    if nal_hrd {
        skip_hrd_parameters(r)?;
    }
    let vcl_hrd = r.read_bit()?;
    if vcl_hrd {
        skip_hrd_parameters(r)?;
    }
    if nal_hrd || vcl_hrd {
        r.skip_bits(1)?; // low_delay_hrd_flag
    }
    r.skip_bits(1)?; // pic_struct_present_flag
    if !r.read_bit()? {
        return Ok(None); // bitstream_restriction_flag
    }
    r.skip_bits(1)?; // motion_vectors_over_pic_boundaries_flag
    for _ in 0..4 {
        // max_bytes_per_pic_denom, max_bits_per_mb_denom, log2_max_mv_length_horizontal/vertical
        r.read_ue()?;
    }
    Ok(Some(r.read_ue()?))
}

/// hrd_parameters() (E.1.2).
fn skip_hrd_parameters(r: &mut BitReader<'_>) -> Result<(), BitReaderError> {
    let cpb_count = r.read_ue()?.saturating_add(1);
    r.skip_bits(8)?; // bit_rate_scale, cpb_size_scale
    // At most 32 CPBs (cpb_cnt_minus1 ≤ 31); more is a broken SPS.
    for _ in 0..cpb_count.min(32) {
        r.read_ue()?; // bit_rate_value_minus1
        r.read_ue()?; // cpb_size_value_minus1
        r.skip_bits(1)?; // cbr_flag
    }
    // initial_cpb_removal_delay_length_minus1, cpb_removal_delay_length_minus1,
    // dpb_output_delay_length_minus1, time_offset_length
    r.skip_bits(20)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS from `ffmpeg -f lavfi -i testsrc=size=1280x720:rate=30 -c:v libx264` (High, 720p30).
    const SPS_720P30: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    /// SPS from libx264 with `-flags +ildct+ilme`, 1920x1080 at 30000/1001 (1080i59.94).
    const SPS_1080I: [u8; 25] = [
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x04, 0x4f, 0xde, 0x02, 0x20, 0x00, 0x00,
        0x7d, 0x20, 0x00, 0x1d, 0x4c, 0x03, 0xe2, 0xc5, 0xb2, 0xc0,
    ];

    /// libx264 320x240p25 SPS: with `-bf 0`, `-bf 3`, and `-bf 3` with NAL HRD (CBR).
    const SPS_NO_B_FRAMES: [u8; 23] = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xb2, 0x02, 0x83, 0xf6, 0x02, 0x20, 0x00, 0x00, 0x03, 0x00,
        0x20, 0x00, 0x00, 0x06, 0x41, 0xe2, 0x85, 0x49,
    ];
    const SPS_B_FRAMES: [u8; 25] = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];
    const SPS_B_FRAMES_HRD: [u8; 35] = [
        0x67, 0x64, 0x00, 0x14, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x26, 0x06, 0x00, 0x0f, 0x42, 0x40, 0x01, 0xe8, 0x4e, 0x6c,
        0x30, 0x07, 0x8a, 0x14, 0xcb,
    ];

    #[test]
    fn reorder_depth_comes_from_the_vui_through_hrd_parameters() {
        for (sps, reorder) in [
            (&SPS_NO_B_FRAMES[..], 0),
            (&SPS_B_FRAMES[..], 2),
            (&SPS_B_FRAMES_HRD[..], 2),
        ] {
            let parsed = parse_h264_sps(sps).expect("valid sps");
            assert_eq!(parsed.max_num_reorder_frames, Some(reorder), "{sps:02x?}");
            assert_eq!(parsed.format.frame_rate, Some(25.0));
            assert_eq!((parsed.format.width, parsed.format.height), (320, 240));
        }
        // Cut inside the VUI: the frame rate read before the cut stays.
        let cut = parse_h264_sps(&SPS_B_FRAMES[..21]).expect("the picture part is whole");
        assert_eq!(cut.max_num_reorder_frames, None);
    }

    #[test]
    fn parses_x264_720p30() {
        let sps = parse_h264_sps(&SPS_720P30).expect("valid sps");
        assert_eq!(sps.profile_idc, 100);
        assert_eq!(sps.level_idc, 31);
        assert_eq!((sps.format.width, sps.format.height), (1280, 720));
        assert!(!sps.format.interlaced);
        assert_eq!(sps.format.frame_rate, Some(30.0));
    }

    #[test]
    fn parses_x264_1080i5994_as_interlaced() {
        let sps = parse_h264_sps(&SPS_1080I).expect("valid sps");
        assert_eq!((sps.format.width, sps.format.height), (1920, 1080));
        assert!(sps.format.interlaced);
        let rate = sps.format.frame_rate.expect("timing info");
        assert!((rate - 29.97).abs() < 0.01, "{rate}");
    }

    #[test]
    fn truncated_sps_is_an_error() {
        assert!(parse_h264_sps(&SPS_720P30[..6]).is_err());
        assert!(parse_h264_sps(&[]).is_err());
    }
}
