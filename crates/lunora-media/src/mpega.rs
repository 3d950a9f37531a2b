//! MPEG audio frame headers (ISO/IEC 11172-3 §2.4.2.3, ISO/IEC 13818-3): which layer, rate and
//! channel count a stream of MP2 or MP3 frames has.

/// The parts of an MPEG audio frame header Lunora uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpegAudioHeader {
    /// 1, 2 or 3 (Layer III is MP3).
    pub layer: u8,
    pub sample_rate: u32,
    /// 1 (single channel) or 2.
    pub channels: u8,
}

impl MpegAudioHeader {
    /// Parses the header at the start of `data`; `None` without a valid one there.
    pub fn parse(data: &[u8]) -> Option<MpegAudioHeader> {
        let [b0, b1, b2, b3, ..] = *data else {
            return None;
        };
        if b0 != 0xFF || b1 & 0xE0 != 0xE0 {
            return None;
        }
        let layer = match (b1 >> 1) & 3 {
            1 => 3,
            2 => 2,
            3 => 1,
            _ => return None,
        };
        let base = match (b2 >> 2) & 3 {
            0 => 44_100,
            1 => 48_000,
            2 => 32_000,
            _ => return None,
        };
        let sample_rate = match (b1 >> 3) & 3 {
            3 => base,        // MPEG-1
            2 => base / 2,    // MPEG-2
            0 => base / 4,    // MPEG-2.5
            _ => return None, // reserved
        };
        let channels = if b3 >> 6 == 3 { 1 } else { 2 };
        Some(MpegAudioHeader {
            layer,
            sample_rate,
            channels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_rates_and_channels() {
        // MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, joint stereo.
        assert_eq!(
            MpegAudioHeader::parse(&[0xFF, 0xFB, 0x90, 0x64]),
            Some(MpegAudioHeader {
                layer: 3,
                sample_rate: 44_100,
                channels: 2
            })
        );
        // MPEG-1 Layer II, 48 kHz, single channel.
        assert_eq!(
            MpegAudioHeader::parse(&[0xFF, 0xFD, 0x84, 0xC4]),
            Some(MpegAudioHeader {
                layer: 2,
                sample_rate: 48_000,
                channels: 1
            })
        );
        assert_eq!(MpegAudioHeader::parse(&[0xFF, 0xFB, 0x9C, 0x64]), None);
        assert_eq!(MpegAudioHeader::parse(&[0x00, 0xFB, 0x90]), None);
    }
}
