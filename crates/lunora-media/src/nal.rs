//! NAL unit helpers for Annex-B byte streams (H.264 and HEVC).

/// H.264 `nal_unit_type` values Lunora cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H264NalType {
    NonIdrSlice,
    IdrSlice,
    Sei,
    Sps,
    Pps,
    AccessUnitDelimiter,
    Other(u8),
}

impl H264NalType {
    pub fn from_header(byte: u8) -> Self {
        match byte & 0x1F {
            1 => H264NalType::NonIdrSlice,
            5 => H264NalType::IdrSlice,
            6 => H264NalType::Sei,
            7 => H264NalType::Sps,
            8 => H264NalType::Pps,
            9 => H264NalType::AccessUnitDelimiter,
            other => H264NalType::Other(other),
        }
    }
}

/// HEVC `nal_unit_type` values Lunora cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HevcNalType {
    /// Intra random access point pictures (BLA, IDR, CRA: types 16–23).
    Irap(u8),
    Vps,
    Sps,
    Pps,
    AccessUnitDelimiter,
    Other(u8),
}

impl HevcNalType {
    pub fn from_header(byte: u8) -> Self {
        match (byte >> 1) & 0x3F {
            t @ 16..=23 => HevcNalType::Irap(t),
            32 => HevcNalType::Vps,
            33 => HevcNalType::Sps,
            34 => HevcNalType::Pps,
            35 => HevcNalType::AccessUnitDelimiter,
            other => HevcNalType::Other(other),
        }
    }
}

/// Iterates the NAL units of an Annex-B buffer (start codes `00 00 01` or `00 00 00 01`),
/// yielding each unit without its start code. Bytes before the first start code are skipped.
#[derive(Debug, Clone)]
pub struct AnnexBNalUnits<'a> {
    rest: &'a [u8],
}

impl<'a> AnnexBNalUnits<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let rest = match find_start_code(data) {
            Some((_, end)) => &data[end..],
            None => &[],
        };
        AnnexBNalUnits { rest }
    }

    /// The header byte of the next unit, without scanning for its end: a caller looking for
    /// the first slice can stop there instead of reading a whole picture.
    pub fn peek_header(&self) -> Option<u8> {
        self.rest.first().copied()
    }
}

impl<'a> Iterator for AnnexBNalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (unit, rest) = match find_start_code(self.rest) {
            Some((start, end)) => (&self.rest[..start], &self.rest[end..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        // A four-byte start code leaves a trailing zero on the previous unit; trailing zeros are
        // never part of a NAL unit (rbsp_trailing_bits end in a one bit).
        let mut unit = unit;
        while let [head @ .., 0] = unit {
            unit = head;
        }
        Some(unit)
    }
}

/// Position of the next `00 00 01`: (index of its first byte, index after it).
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 2 < data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            return Some((i, i + 3));
        } else {
            i += 1;
        }
    }
    None
}

/// Removes `emulation_prevention_three_byte`s (`00 00 03` → `00 00`) to get the RBSP.
pub fn remove_emulation_prevention(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &byte in nal {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = [
            0xFF, 0, 0, 0, 1, 0x67, 0xAA, 0, 0, 1, 0x68, 0xBB, 0, 0, 0, 1, 0x65, 0x00, 0x01,
        ];
        let units: Vec<&[u8]> = AnnexBNalUnits::new(&data).collect();
        assert_eq!(
            units,
            vec![
                &[0x67, 0xAA][..],
                &[0x68, 0xBB][..],
                &[0x65, 0x00, 0x01][..]
            ]
        );
    }

    #[test]
    fn peek_shows_the_next_header_without_consuming() {
        let data = [0, 0, 1, 0x67, 0xAA, 0, 0, 1, 0x65, 0x88];
        let mut units = AnnexBNalUnits::new(&data);
        assert_eq!(units.peek_header(), Some(0x67));
        assert_eq!(units.next(), Some(&[0x67, 0xAA][..]));
        assert_eq!(units.peek_header(), Some(0x65));
    }

    #[test]
    fn no_start_code_yields_nothing() {
        assert_eq!(AnnexBNalUnits::new(&[1, 2, 3, 4]).count(), 0);
    }

    #[test]
    fn emulation_prevention_removed() {
        assert_eq!(
            remove_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3]),
            vec![0, 0, 1, 0, 0]
        );
    }
}
