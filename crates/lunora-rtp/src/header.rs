//! The RTP fixed header (RFC 3550 §5.1), parsed without trusting a single length field.

use thiserror::Error;

/// One RTP packet, borrowing its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeaderError {
    #[error("datagram of {0} bytes is shorter than an RTP header (12)")]
    Short(usize),
    #[error("RTP version {0}, not 2")]
    Version(u8),
    #[error("CSRC list or header extension runs past the end of the datagram")]
    Truncated,
    #[error("padding of {padding} bytes is larger than the {available} bytes after the header")]
    Padding { padding: usize, available: usize },
}

impl HeaderError {
    /// A short label for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            HeaderError::Short(_) => "short",
            HeaderError::Version(_) => "version",
            HeaderError::Truncated => "truncated",
            HeaderError::Padding { .. } => "padding",
        }
    }
}

impl<'a> RtpPacket<'a> {
    pub fn parse(datagram: &'a [u8]) -> Result<RtpPacket<'a>, HeaderError> {
        let fixed: &[u8; 12] = datagram
            .first_chunk()
            .ok_or(HeaderError::Short(datagram.len()))?;
        let version = fixed[0] >> 6;
        if version != 2 {
            return Err(HeaderError::Version(version));
        }
        let padded = fixed[0] & 0x20 != 0;
        let extended = fixed[0] & 0x10 != 0;
        let csrc_count = usize::from(fixed[0] & 0x0f);
        let mut start = 12 + 4 * csrc_count;
        if extended {
            let ext = datagram
                .get(start..start + 4)
                .ok_or(HeaderError::Truncated)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            start += 4 + 4 * words;
        }
        let mut rest = datagram.get(start..).ok_or(HeaderError::Truncated)?;
        if padded {
            let padding = usize::from(*rest.last().ok_or(HeaderError::Padding {
                padding: 0,
                available: 0,
            })?);
            // The count includes itself, so 0 is as malformed as too many.
            if padding == 0 || padding > rest.len() {
                return Err(HeaderError::Padding {
                    padding,
                    available: rest.len(),
                });
            }
            rest = &rest[..rest.len() - padding];
        }
        Ok(RtpPacket {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7f,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            payload: rest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(first: u8) -> Vec<u8> {
        vec![
            first, 0xa1, 0x12, 0x34, 0, 0, 0x03, 0xe8, 0xde, 0xad, 0xbe, 0xef,
        ]
    }

    #[test]
    fn parses_the_fixed_header() {
        let mut datagram = header(0x80);
        datagram.extend_from_slice(b"payload");
        let packet = RtpPacket::parse(&datagram).unwrap();
        assert!(packet.marker);
        assert_eq!(packet.payload_type, 33);
        assert_eq!(packet.sequence, 0x1234);
        assert_eq!(packet.timestamp, 1000);
        assert_eq!(packet.ssrc, 0xdead_beef);
        assert_eq!(packet.payload, b"payload");
    }

    #[test]
    fn skips_csrcs_and_extension_and_strips_padding() {
        let mut datagram = header(0x80 | 0x20 | 0x10 | 2);
        datagram.extend_from_slice(&[0; 8]); // two CSRCs
        datagram.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // one extension word
        datagram.extend_from_slice(b"data");
        datagram.extend_from_slice(&[0, 0, 3]);
        assert_eq!(RtpPacket::parse(&datagram).unwrap().payload, b"data");
    }

    #[test]
    fn hostile_datagrams_are_errors_not_panics() {
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(HeaderError::Short(11)));
        assert_eq!(RtpPacket::parse(&[]), Err(HeaderError::Short(0)));
        assert_eq!(
            RtpPacket::parse(&header(0x40)),
            Err(HeaderError::Version(1))
        );
        // 15 CSRCs announced, none there.
        assert_eq!(RtpPacket::parse(&header(0x8f)), Err(HeaderError::Truncated));
        // An extension header cut short, and one whose length runs past the datagram.
        let mut cut = header(0x90);
        cut.extend_from_slice(&[0xbe, 0xde]);
        assert_eq!(RtpPacket::parse(&cut), Err(HeaderError::Truncated));
        let mut long = header(0x90);
        long.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff, 1, 2, 3, 4]);
        assert_eq!(RtpPacket::parse(&long), Err(HeaderError::Truncated));
        // Padding larger than what follows the header, zero padding, padding with no payload.
        let mut padded = header(0xa0);
        padded.extend_from_slice(&[1, 2, 200]);
        assert_eq!(
            RtpPacket::parse(&padded),
            Err(HeaderError::Padding {
                padding: 200,
                available: 3
            })
        );
        let mut zero = header(0xa0);
        zero.extend_from_slice(&[1, 0]);
        assert!(matches!(
            RtpPacket::parse(&zero),
            Err(HeaderError::Padding { padding: 0, .. })
        ));
        assert!(matches!(
            RtpPacket::parse(&header(0xa0)),
            Err(HeaderError::Padding { .. })
        ));
        // Every prefix of a valid packet either parses or is an error.
        let mut full = header(0xb1);
        full.extend_from_slice(&[0; 4]);
        full.extend_from_slice(&[0, 0, 0, 1, 9, 9, 9, 9, 7, 1]);
        for n in 0..=full.len() {
            let _ = RtpPacket::parse(&full[..n]);
        }
    }
}
