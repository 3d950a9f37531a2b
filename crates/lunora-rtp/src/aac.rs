//! AAC over RTP as `mpeg4-generic` (RFC 3640, AAC-hbr and AAC-lbr): AU headers, then the
//! access units, each put out with an ADTS header as `Codec::AacAdts` frames carry.

use lunora_media::{AAC_SAMPLES_PER_FRAME, AudioSpecificConfig, BitReader};

/// A fragmented access unit cannot grow past this.
const FRAME_CAP: usize = 1 << 16;

/// The fmtp parameters that shape the AU headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacMode {
    pub size_length: u8,
    pub index_length: u8,
    pub index_delta_length: u8,
}

impl AacMode {
    /// `mode=AAC-hbr`: 13-bit sizes, 3-bit indices.
    pub const HBR: AacMode = AacMode {
        size_length: 13,
        index_length: 3,
        index_delta_length: 3,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacFrame {
    /// RTP timestamp (the sample rate's clock).
    pub timestamp: u32,
    /// ADTS header + raw AAC frame.
    pub data: Vec<u8>,
}

#[derive(Debug)]
pub struct AacDepacketizer {
    config: AudioSpecificConfig,
    mode: AacMode,
    /// An access unit split over packets: its timestamp, size and what has come so far.
    fragment: Option<(u32, usize, Vec<u8>)>,
    /// Packets (or fragmented frames) thrown away as malformed or incomplete.
    pub dropped: u64,
}

impl AacDepacketizer {
    pub fn new(config: AudioSpecificConfig, mode: AacMode) -> Self {
        AacDepacketizer {
            config,
            mode,
            fragment: None,
            dropped: 0,
        }
    }

    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate()
    }

    /// Packets went missing: a frame being reassembled cannot be finished.
    pub fn lost(&mut self) {
        if self.fragment.take().is_some() {
            self.dropped += 1;
        }
    }

    fn adts(&self, raw: &[u8]) -> Vec<u8> {
        [&self.config.adts_header(raw.len())[..], raw].concat()
    }

    pub fn push(&mut self, timestamp: u32, marker: bool, payload: &[u8]) -> Vec<AacFrame> {
        match self.parse(timestamp, marker, payload) {
            Some(frames) => frames,
            None => {
                self.dropped += 1;
                self.fragment = None;
                Vec::new()
            }
        }
    }

    fn parse(&mut self, timestamp: u32, marker: bool, payload: &[u8]) -> Option<Vec<AacFrame>> {
        let (length, rest) = payload.split_first_chunk::<2>()?;
        let header_bits = usize::from(u16::from_be_bytes(*length));
        let header_bytes = header_bits.div_ceil(8);
        let headers = rest.get(..header_bytes)?;
        let mut data = &rest[header_bytes..];
        let mut reader = BitReader::new(headers);
        let mut sizes = Vec::new();
        let mut consumed = 0;
        let per_header = usize::from(self.mode.size_length)
            + usize::from(self.mode.index_length.max(self.mode.index_delta_length));
        if per_header == 0 || usize::from(self.mode.size_length) == 0 {
            return None;
        }
        while consumed + per_header <= header_bits {
            let size = reader.read_bits(usize::from(self.mode.size_length)).ok()?;
            let index_bits = if sizes.is_empty() {
                self.mode.index_length
            } else {
                self.mode.index_delta_length
            };
            reader.read_bits(usize::from(index_bits)).ok()?;
            consumed += usize::from(self.mode.size_length) + usize::from(index_bits);
            sizes.push(usize::try_from(size).ok()?);
        }
        if let Some((started, size, mut frame)) = self.fragment.take() {
            // A continuation repeats the whole frame's size in its one AU header.
            if sizes.first() != Some(&size) || started != timestamp {
                return None;
            }
            frame.extend_from_slice(data);
            if frame.len() > size || frame.len() > FRAME_CAP {
                return None;
            }
            if frame.len() == size {
                return marker.then(|| {
                    vec![AacFrame {
                        timestamp,
                        data: self.adts(&frame),
                    }]
                });
            }
            self.fragment = Some((started, size, frame));
            return Some(Vec::new());
        }
        let mut frames = Vec::with_capacity(sizes.len());
        if let [size] = sizes[..]
            && size > data.len()
        {
            if marker || size > FRAME_CAP {
                return None;
            }
            self.fragment = Some((timestamp, size, data.to_vec()));
            return Some(frames);
        }
        let mut at = timestamp;
        for size in sizes {
            let raw = data.get(..size)?;
            frames.push(AacFrame {
                timestamp: at,
                data: self.adts(raw),
            });
            data = &data[size..];
            at = at.wrapping_add(AAC_SAMPLES_PER_FRAME);
        }
        Some(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AudioSpecificConfig {
        // AAC-LC, 48 kHz, stereo: "1190".
        AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap()
    }

    /// AU headers for AAC-hbr: 13-bit size, 3-bit index (0).
    fn packet(frames: &[&[u8]]) -> Vec<u8> {
        let bits = (frames.len() * 16) as u16;
        let mut out = bits.to_be_bytes().to_vec();
        for f in frames {
            out.extend_from_slice(&((f.len() as u16) << 3).to_be_bytes());
        }
        for f in frames {
            out.extend_from_slice(f);
        }
        out
    }

    #[test]
    fn au_headers_split_the_frames_each_with_adts() {
        let mut d = AacDepacketizer::new(config(), AacMode::HBR);
        let frames = d.push(48_000, true, &packet(&[b"one", b"three"]));
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].timestamp, 48_000);
        assert_eq!(frames[1].timestamp, 48_000 + 1024);
        assert_eq!(&frames[1].data[7..], b"three");
        let adts = lunora_media::AdtsHeader::parse(&frames[0].data).unwrap();
        assert_eq!(adts.sample_rate(), 48_000);
        assert_eq!(frames[0].data.len(), 10);
    }

    #[test]
    fn a_fragmented_frame_is_joined_and_a_loss_drops_it() {
        let mut d = AacDepacketizer::new(config(), AacMode::HBR);
        let whole: Vec<u8> = (0..10).collect();
        let header = |size: u16| {
            let mut p = 16u16.to_be_bytes().to_vec();
            p.extend_from_slice(&(size << 3).to_be_bytes());
            p
        };
        let first = [header(10), whole[..6].to_vec()].concat();
        let second = [header(10), whole[6..].to_vec()].concat();
        assert!(d.push(0, false, &first).is_empty());
        let frames = d.push(0, true, &second);
        assert_eq!(&frames[0].data[7..], &whole[..]);
        assert!(d.push(1024, false, &first).is_empty());
        d.lost();
        assert!(d.push(1024, true, &second).is_empty());
        assert_eq!(d.dropped, 2);
    }

    #[test]
    fn hostile_payloads_are_dropped() {
        let mut d = AacDepacketizer::new(config(), AacMode::HBR);
        for payload in [
            &[][..],
            &[0],
            &[0xff, 0xff, 1, 2],
            &[0, 16, 0xff, 0xf8, 1, 2],
            &[0, 15, 0, 8],
        ] {
            assert!(d.push(0, true, payload).is_empty(), "{payload:?}");
        }
        let mut broken = AacDepacketizer::new(
            config(),
            AacMode {
                size_length: 0,
                index_length: 0,
                index_delta_length: 0,
            },
        );
        assert!(broken.push(0, true, &[0, 0, 1]).is_empty());
    }
}
