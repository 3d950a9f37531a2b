//! Decoder configuration records: AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1)
//! and HEVCDecoderConfigurationRecord (§8.3.3.1).

use bytes::{BufMut, Bytes, BytesMut};

use crate::FlvError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    pub profile: u8,
    pub compatibility: u8,
    pub level: u8,
    /// Bytes in each NAL unit length prefix (1, 2 or 4).
    pub length_size: usize,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], FlvError> {
    if data.len() < n {
        return Err(FlvError::BadConfig);
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Ok(head)
}

fn parameter_sets(data: &mut &[u8], count: usize) -> Result<Vec<Bytes>, FlvError> {
    (0..count)
        .map(|_| {
            let len = usize::from(u16::from_be_bytes([take(data, 1)?[0], take(data, 1)?[0]]));
            Ok(Bytes::copy_from_slice(take(data, len)?))
        })
        .collect()
}

impl AvcDecoderConfig {
    pub fn parse(mut data: &[u8]) -> Result<Self, FlvError> {
        let head = take(&mut data, 6)?;
        if head[0] != 1 {
            return Err(FlvError::BadConfig);
        }
        let length_size = usize::from(head[4] & 3) + 1;
        let sps_count = usize::from(head[5] & 0x1F);
        let sps = parameter_sets(&mut data, sps_count)?;
        let pps_count = usize::from(take(&mut data, 1)?[0]);
        let pps = parameter_sets(&mut data, pps_count)?;
        Ok(AvcDecoderConfig {
            profile: head[1],
            compatibility: head[2],
            level: head[3],
            length_size,
            sps,
            pps,
        })
    }

    /// Builds the record from one SPS and PPS (as NAL units, header included).
    pub fn from_parameter_sets(sps: Bytes, pps: Bytes) -> Option<Self> {
        let profile = *sps.get(1)?;
        Some(AvcDecoderConfig {
            profile,
            compatibility: *sps.get(2)?,
            level: *sps.get(3)?,
            length_size: 4,
            sps: vec![sps],
            pps: vec![pps],
        })
    }

    /// The record's bytes. Parameter sets come from the sender's stream, so every count and
    /// length is checked against its field: a 70 kB SPS must not become a record whose 16-bit
    /// length says 4 kB.
    pub fn to_bytes(&self) -> Result<Bytes, FlvError> {
        let length_size = u8::try_from(self.length_size)
            .ok()
            .filter(|n| matches!(n, 1 | 2 | 4))
            .ok_or(FlvError::BadConfig)?;
        let sps_count = u8::try_from(self.sps.len())
            .ok()
            .filter(|n| *n <= 0x1F)
            .ok_or(FlvError::ParameterSetTooLong)?;
        let pps_count = u8::try_from(self.pps.len()).map_err(|_| FlvError::ParameterSetTooLong)?;
        let mut out = BytesMut::new();
        out.put_slice(&[
            1,
            self.profile,
            self.compatibility,
            self.level,
            0xFC | (length_size - 1),
            0xE0 | sps_count,
        ]);
        for sps in &self.sps {
            out.put_u16(u16::try_from(sps.len()).map_err(|_| FlvError::ParameterSetTooLong)?);
            out.put_slice(sps);
        }
        out.put_u8(pps_count);
        for pps in &self.pps {
            out.put_u16(u16::try_from(pps.len()).map_err(|_| FlvError::ParameterSetTooLong)?);
            out.put_slice(pps);
        }
        Ok(out.freeze())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcDecoderConfig {
    pub length_size: usize,
    /// VPS, SPS and PPS NAL units, in record order.
    pub parameter_sets: Vec<Bytes>,
}

impl HevcDecoderConfig {
    pub fn parse(mut data: &[u8]) -> Result<Self, FlvError> {
        let head = take(&mut data, 23)?;
        if head[0] != 1 {
            return Err(FlvError::BadConfig);
        }
        let length_size = usize::from(head[21] & 3) + 1;
        let arrays = usize::from(head[22]);
        let mut parameter_sets = Vec::new();
        for _ in 0..arrays {
            take(&mut data, 1)?; // array_completeness, NAL unit type
            let count = usize::from(u16::from_be_bytes([
                take(&mut data, 1)?[0],
                take(&mut data, 1)?[0],
            ]));
            parameter_sets.extend(self::parameter_sets(&mut data, count)?);
        }
        Ok(HevcDecoderConfig {
            length_size,
            parameter_sets,
        })
    }
}

/// NAL unit types of the HEVC parameter sets, in record order.
const HEVC_PARAMETER_SET_TYPES: [u8; 3] = [32, 33, 34];

/// Builds an HEVCDecoderConfigurationRecord from one VPS, SPS and PPS (NAL units, headers
/// included), with 4-byte length prefixes. Fields the encoder's VUI would refine
/// (min_spatial_segmentation, parallelismType, frame rate) are written as "unknown", which the
/// format allows.
pub fn hevc_decoder_config_record(vps: &[u8], sps: &[u8], pps: &[u8]) -> Option<Bytes> {
    let parsed = lunora_media::parse_hevc_sps(sps).ok()?;
    let mut out = BytesMut::with_capacity(23 + 15 + vps.len() + sps.len() + pps.len());
    out.put_u8(1);
    out.put_slice(&parsed.general_profile_tier_level);
    out.put_u16(0xF000);
    out.put_u8(0xFC);
    out.put_u8(0xFC | parsed.chroma_format_idc);
    out.put_u8(0xF8 | (parsed.bit_depth_luma - 8));
    out.put_u8(0xF8 | (parsed.bit_depth_chroma - 8));
    out.put_u16(0);
    out.put_u8(
        (parsed.max_sub_layers.min(7) << 3) | (u8::from(parsed.temporal_id_nesting) << 2) | 3,
    );
    out.put_u8(3);
    for (nal_type, set) in HEVC_PARAMETER_SET_TYPES.into_iter().zip([vps, sps, pps]) {
        out.put_u8(0x80 | nal_type);
        out.put_u16(1);
        out.put_u16(u16::try_from(set.len()).ok()?);
        out.put_slice(set);
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_record_round_trip() {
        let sps = Bytes::from_static(&[0x67, 0x64, 0x00, 0x1F, 0xAC]);
        let pps = Bytes::from_static(&[0x68, 0xEB, 0xE3]);
        let record = AvcDecoderConfig::from_parameter_sets(sps, pps).expect("record");
        assert_eq!(
            AvcDecoderConfig::parse(&record.to_bytes().unwrap()),
            Ok(record)
        );
        assert_eq!(
            AvcDecoderConfig::parse(&[1, 2, 3]),
            Err(FlvError::BadConfig)
        );
    }

    #[test]
    fn a_parameter_set_longer_than_its_length_field_is_an_error() {
        let mut sps = vec![0x67, 0x64, 0x00, 0x1F];
        sps.resize(70_000, 0xAB);
        let record =
            AvcDecoderConfig::from_parameter_sets(Bytes::from(sps), Bytes::from_static(&[0x68]))
                .expect("record");
        assert_eq!(record.to_bytes(), Err(FlvError::ParameterSetTooLong));
    }
}
