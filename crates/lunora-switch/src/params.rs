//! Parameter sets (H.264 SPS/PPS, HEVC VPS/SPS/PPS) per input, so a cut can put the new
//! encoder's parameter sets in band right before its first keyframe.

use bytes::{Bytes, BytesMut};
use lunora_media::{
    AnnexBNalUnits, Codec, H264NalType, HevcNalType, VideoFormat, parse_h264_sps, parse_hevc_sps,
};

#[derive(Debug, Clone, Default)]
pub(crate) struct ParameterSets {
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    pub(crate) format: Option<VideoFormat>,
}

enum Kind {
    Vps,
    Sps,
    Pps,
    Aud,
    Slice,
    Other,
}

fn kind(codec: Codec, header: u8) -> Kind {
    if codec == Codec::Hevc {
        match HevcNalType::from_header(header) {
            HevcNalType::Vps => Kind::Vps,
            HevcNalType::Sps => Kind::Sps,
            HevcNalType::Pps => Kind::Pps,
            HevcNalType::AccessUnitDelimiter => Kind::Aud,
            HevcNalType::Irap(_) => Kind::Slice,
            HevcNalType::Other(t) if t < 32 => Kind::Slice,
            HevcNalType::Other(_) => Kind::Other,
        }
    } else {
        match H264NalType::from_header(header) {
            H264NalType::Sps => Kind::Sps,
            H264NalType::Pps => Kind::Pps,
            H264NalType::AccessUnitDelimiter => Kind::Aud,
            H264NalType::IdrSlice | H264NalType::NonIdrSlice => Kind::Slice,
            _ => Kind::Other,
        }
    }
}

impl ParameterSets {
    /// Remembers the parameter sets an access unit carries (they come before its first slice).
    pub(crate) fn observe(&mut self, codec: Codec, data: &Bytes) {
        let mut units = AnnexBNalUnits::new(data);
        while let Some(header) = units.peek_header() {
            if matches!(kind(codec, header), Kind::Slice) {
                return;
            }
            let Some(nal) = units.next() else { return };
            let owned = || data.slice_ref(nal);
            match kind(codec, header) {
                Kind::Vps => self.vps = Some(owned()),
                Kind::Sps => {
                    self.format = match codec {
                        Codec::Hevc => parse_hevc_sps(nal).ok().map(|s| s.format),
                        _ => parse_h264_sps(nal).ok().map(|s| s.format),
                    };
                    self.sps = Some(owned());
                }
                Kind::Pps => self.pps = Some(owned()),
                _ => {}
            }
        }
    }

    /// `data` with the remembered parameter sets inserted before its first slice, unless it
    /// already carries an SPS. An access unit delimiter stays first.
    pub(crate) fn in_band(&self, codec: Codec, data: &Bytes) -> Bytes {
        let mut units = AnnexBNalUnits::new(data);
        let mut insert_at = 0;
        while let Some(header) = units.peek_header() {
            match kind(codec, header) {
                Kind::Sps => return data.clone(),
                Kind::Aud => {
                    units.next();
                    // Insert after the delimiter: find where the next unit's start code begins.
                    insert_at = next_start_code(data, insert_at + 3).unwrap_or(data.len());
                }
                _ => break,
            }
        }
        let sets: Vec<&Bytes> = [&self.vps, &self.sps, &self.pps]
            .into_iter()
            .flatten()
            .collect();
        if sets.is_empty() {
            return data.clone();
        }
        let mut out =
            BytesMut::with_capacity(data.len() + sets.iter().map(|s| s.len() + 4).sum::<usize>());
        out.extend_from_slice(&data[..insert_at]);
        for set in sets {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(set);
        }
        out.extend_from_slice(&data[insert_at..]);
        out.freeze()
    }
}

/// Index of the first byte of the next start code (`00 00 01`, or `00 00 00 01`) at or after
/// `from`.
fn next_start_code(data: &[u8], from: usize) -> Option<usize> {
    let position = data.get(from..)?.windows(3).position(|w| w == [0, 0, 1])? + from;
    Some(if position > 0 && data[position - 1] == 0 {
        position - 1
    } else {
        position
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_go_after_the_delimiter_and_before_the_slice() {
        let mut sets = ParameterSets::default();
        let with_sets = Bytes::from_static(&[
            0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xCE, 0, 0, 0, 1,
            0x65, 0x88,
        ]);
        sets.observe(Codec::H264, &with_sets);
        assert_eq!(
            sets.in_band(Codec::H264, &with_sets),
            with_sets,
            "already in band: unchanged"
        );
        let bare = Bytes::from_static(&[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x65, 0x99]);
        let fixed = sets.in_band(Codec::H264, &bare);
        assert_eq!(
            &fixed[..],
            &[
                0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xCE, 0, 0, 0, 1,
                0x65, 0x99
            ]
        );
    }
}
