//! PES packet headers (ISO/IEC 13818-1 §2.4.3.6).

/// The parts of a PES header Lunora uses. Timestamps are 33-bit wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PesHeader {
    pub stream_id: u8,
    /// `PES_packet_length`: 0 means unbounded (video).
    pub pes_packet_length: u16,
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    /// Bytes from the start of the PES packet to its payload.
    pub header_length: usize,
}

impl PesHeader {
    /// Parses the header at the start of a PES packet; `None` if it is not one.
    pub fn parse(data: &[u8]) -> Option<PesHeader> {
        if data.len() < 6 || data[..3] != [0, 0, 1] {
            return None;
        }
        let stream_id = data[3];
        let pes_packet_length = u16::from_be_bytes([data[4], data[5]]);
        // Streams without the optional header (§2.4.3.7: padding, private_stream_2, ECM, …).
        if matches!(
            stream_id,
            0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF
        ) {
            return Some(PesHeader {
                stream_id,
                pes_packet_length,
                pts: None,
                dts: None,
                header_length: 6,
            });
        }
        if data.len() < 9 || data[6] & 0xC0 != 0x80 {
            return None;
        }
        let flags = data[7] >> 6;
        let header_length = 9 + usize::from(data[8]);
        let optional = data.get(9..header_length)?;
        let (pts, dts) = match flags {
            0b10 => (Some(read_timestamp(optional.get(..5)?)), None),
            0b11 => (
                Some(read_timestamp(optional.get(..5)?)),
                Some(read_timestamp(optional.get(5..10)?)),
            ),
            _ => (None, None),
        };
        Some(PesHeader {
            stream_id,
            pes_packet_length,
            pts,
            dts,
            header_length,
        })
    }
}

fn read_timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 7) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1)
}

fn write_timestamp(out: &mut Vec<u8>, marker: u8, ts: u64) {
    let ts = ts & ((1 << 33) - 1);
    out.push((marker << 4) | (((ts >> 30) as u8 & 7) << 1) | 1);
    out.extend((((ts >> 15) as u16 & 0x7FFF) << 1 | 1).to_be_bytes());
    out.extend(((ts as u16 & 0x7FFF) << 1 | 1).to_be_bytes());
}

/// Writes a PES header for a payload of `payload_length` bytes. `dts` is written only when it
/// differs from `pts`. Video with a payload too big for the 16-bit length gets length 0.
pub fn write_pes_header(
    out: &mut Vec<u8>,
    stream_id: u8,
    pts: Option<u64>,
    dts: Option<u64>,
    payload_length: usize,
) {
    let dts = dts.filter(|d| Some(*d) != pts);
    let optional_length = match (pts, dts) {
        (Some(_), Some(_)) => 10,
        (Some(_), None) => 5,
        _ => 0,
    };
    let packet_length = 3 + optional_length + payload_length;
    let length_field = if packet_length > usize::from(u16::MAX) {
        0
    } else {
        packet_length as u16
    };
    out.extend([0, 0, 1, stream_id]);
    out.extend(length_field.to_be_bytes());
    out.push(0x80); // '10', not scrambled, no priority/alignment/copyright flags
    out.push(match (pts, dts) {
        (Some(_), Some(_)) => 0xC0,
        (Some(_), None) => 0x80,
        _ => 0x00,
    });
    out.push(optional_length as u8);
    match (pts, dts) {
        (Some(pts), Some(dts)) => {
            write_timestamp(out, 0b0011, pts);
            write_timestamp(out, 0b0001, dts);
        }
        (Some(pts), None) => write_timestamp(out, 0b0010, pts),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_with_33_bit_values() {
        let mut out = Vec::new();
        let pts = (1u64 << 33) - 1;
        write_pes_header(&mut out, 0xE0, Some(pts), Some(12345), 100);
        let h = PesHeader::parse(&out).expect("valid header");
        assert_eq!(h.stream_id, 0xE0);
        assert_eq!((h.pts, h.dts), (Some(pts), Some(12345)));
        assert_eq!(h.header_length, 19);
        assert_eq!(usize::from(h.pes_packet_length), 3 + 10 + 100);
    }

    #[test]
    fn dts_equal_to_pts_is_omitted() {
        let mut out = Vec::new();
        write_pes_header(&mut out, 0xC0, Some(900), Some(900), 10);
        let h = PesHeader::parse(&out).expect("valid header");
        assert_eq!((h.pts, h.dts, h.header_length), (Some(900), None, 14));
    }

    #[test]
    fn garbage_is_not_a_pes_header() {
        assert_eq!(PesHeader::parse(&[0, 0, 2, 0xE0, 0, 0, 0x80, 0, 0]), None);
        assert_eq!(
            PesHeader::parse(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 20]),
            None
        );
    }
}
