//! RTCP sender reports (RFC 3550 §6.4.1): the one thing read from a sender's RTCP, because it
//! ties each stream's RTP clock to a common wallclock (NTP), which is what aligns audio with
//! video exactly.

/// RTCP packet type of a sender report.
const SENDER_REPORT: u8 = 200;

/// What a sender report says: RTP timestamp `rtp` of stream `ssrc` was sampled at wallclock
/// `ntp` (64-bit NTP fixed point: seconds in the high 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    pub ntp: u64,
    pub rtp: u32,
}

impl SenderReport {
    /// The first sender report of a (compound) RTCP datagram; `None` when it has none or is
    /// not RTCP. Each packet's length field is checked against what is there.
    pub fn parse(datagram: &[u8]) -> Option<SenderReport> {
        let mut rest = datagram;
        while let Some(header) = rest.first_chunk::<4>() {
            if header[0] >> 6 != 2 {
                return None;
            }
            let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let packet = rest.get(..(words + 1) * 4)?;
            if header[1] == SENDER_REPORT {
                let word = |i: usize| {
                    packet
                        .get(i * 4..i * 4 + 4)
                        .and_then(|w| w.try_into().ok())
                        .map(u32::from_be_bytes)
                };
                let (seconds, fraction) = (word(2)?, word(3)?);
                return Some(SenderReport {
                    ssrc: word(1)?,
                    ntp: (u64::from(seconds) << 32) | u64::from(fraction),
                    rtp: word(4)?,
                });
            }
            rest = &rest[packet.len()..];
        }
        None
    }

    /// The wallclock in 90 kHz ticks.
    pub fn ntp_ticks(&self) -> i128 {
        (i128::from(self.ntp) * 90_000) >> 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender_report(ssrc: u32, seconds: u32, fraction: u32, rtp: u32) -> Vec<u8> {
        let mut p = vec![0x80, 200, 0, 6];
        for w in [ssrc, seconds, fraction, rtp, 10, 1000] {
            p.extend_from_slice(&w.to_be_bytes());
        }
        p
    }

    #[test]
    fn reads_a_sender_report_after_other_packets() {
        // A receiver report (201) with no blocks, then the SR, then an SDES.
        let mut compound = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        compound.extend(sender_report(7, 3, 1 << 31, 12_345));
        compound.extend([0x81, 202, 0, 0]);
        let sr = SenderReport::parse(&compound).unwrap();
        assert_eq!((sr.ssrc, sr.rtp), (7, 12_345));
        // 3.5 s.
        assert_eq!(sr.ntp_ticks(), 315_000);
    }

    #[test]
    fn hostile_datagrams_are_none() {
        let sr = sender_report(7, 3, 0, 1);
        for bad in [
            &[][..],
            &[0x80],
            &sr[..20],
            &[0x00, 200, 0, 6],
            &[0x80, 200, 0xff, 0xff, 0, 0],
            &[0x80, 200, 0, 0],
            &[0x80, 201, 0, 0],
        ] {
            assert_eq!(SenderReport::parse(bad), None, "{bad:?}");
        }
    }
}
