//! AAC: ADTS headers (ISO/IEC 13818-7 §6.2) and AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Samples per AAC frame (AAC-LC and HE-AAC core).
pub const AAC_SAMPLES_PER_FRAME: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// MPEG-4 audio object type (2 = AAC-LC).
    pub audio_object_type: u8,
    pub sampling_frequency_index: u8,
    pub channel_configuration: u8,
    /// Whole frame length including this header.
    pub frame_length: usize,
    pub header_length: usize,
}

impl AdtsHeader {
    /// Parses the header at the start of `data`; `None` if it is not a plausible ADTS header.
    pub fn parse(data: &[u8]) -> Option<AdtsHeader> {
        if data.len() < 7 || data[0] != 0xFF || data[1] & 0xF6 != 0xF0 {
            return None;
        }
        let protection_absent = data[1] & 1 == 1;
        let audio_object_type = (data[2] >> 6) + 1;
        let sampling_frequency_index = (data[2] >> 2) & 0x0F;
        let channel_configuration = ((data[2] & 1) << 2) | (data[3] >> 6);
        let frame_length = (usize::from(data[3] & 3) << 11)
            | (usize::from(data[4]) << 3)
            | usize::from(data[5] >> 5);
        let header_length = if protection_absent { 7 } else { 9 };
        if usize::from(sampling_frequency_index) >= SAMPLE_RATES.len()
            || frame_length < header_length
        {
            return None;
        }
        Some(AdtsHeader {
            audio_object_type,
            sampling_frequency_index,
            channel_configuration,
            frame_length,
            header_length,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        SAMPLE_RATES[usize::from(self.sampling_frequency_index)]
    }

    pub fn audio_specific_config(&self) -> AudioSpecificConfig {
        AudioSpecificConfig {
            audio_object_type: self.audio_object_type,
            sampling_frequency_index: self.sampling_frequency_index,
            channel_configuration: self.channel_configuration,
        }
    }

    /// Duration of one frame in 90 kHz ticks.
    pub fn frame_duration_90k(&self) -> i64 {
        i64::from(AAC_SAMPLES_PER_FRAME) * 90_000 / i64::from(self.sample_rate())
    }
}

/// Splits a buffer of back-to-back ADTS frames. Returns the frames found and the number of
/// trailing bytes that did not form a whole frame (garbage or a truncated frame).
pub fn split_adts_frames(data: &[u8]) -> (Vec<(AdtsHeader, std::ops::Range<usize>)>, usize) {
    let mut frames = Vec::new();
    let mut offset = 0;
    while let Some(header) = AdtsHeader::parse(&data[offset..]) {
        let end = offset + header.frame_length;
        if end > data.len() {
            break;
        }
        frames.push((header, offset..end));
        offset = end;
    }
    (frames, data.len() - offset)
}

/// The two-byte (or longer) MPEG-4 AudioSpecificConfig, as FLV and MP4 carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    pub audio_object_type: u8,
    pub sampling_frequency_index: u8,
    pub channel_configuration: u8,
}

impl AudioSpecificConfig {
    pub fn parse(data: &[u8]) -> Option<AudioSpecificConfig> {
        let [first, second, ..] = *data else {
            return None;
        };
        let audio_object_type = first >> 3;
        let sampling_frequency_index = ((first & 7) << 1) | (second >> 7);
        let channel_configuration = (second >> 3) & 0x0F;
        // Object type escape (31) and explicit frequencies (15) are not used by broadcast AAC.
        (audio_object_type != 31 && usize::from(sampling_frequency_index) < SAMPLE_RATES.len())
            .then_some(AudioSpecificConfig {
                audio_object_type,
                sampling_frequency_index,
                channel_configuration,
            })
    }

    pub fn to_bytes(&self) -> [u8; 2] {
        [
            (self.audio_object_type << 3) | (self.sampling_frequency_index >> 1),
            ((self.sampling_frequency_index & 1) << 7) | (self.channel_configuration << 3),
        ]
    }

    pub fn sample_rate(&self) -> u32 {
        SAMPLE_RATES[usize::from(self.sampling_frequency_index)]
    }

    /// The 7-byte ADTS header (no CRC) for a raw AAC frame of `payload_length` bytes.
    pub fn adts_header(&self, payload_length: usize) -> [u8; 7] {
        let frame_length = payload_length + 7;
        let profile = self.audio_object_type.saturating_sub(1) & 3;
        [
            0xFF,
            0xF1,
            (profile << 6)
                | (self.sampling_frequency_index << 2)
                | (self.channel_configuration >> 2),
            ((self.channel_configuration & 3) << 6) | ((frame_length >> 11) as u8 & 3),
            (frame_length >> 3) as u8,
            (((frame_length & 7) as u8) << 5) | 0x1F,
            0xFC,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adts_round_trip_through_audio_specific_config() {
        let asc = AudioSpecificConfig {
            audio_object_type: 2,
            sampling_frequency_index: 3,
            channel_configuration: 2,
        };
        assert_eq!(asc.to_bytes(), [0x11, 0x90]);
        assert_eq!(AudioSpecificConfig::parse(&asc.to_bytes()), Some(asc));
        let mut frame = asc.adts_header(100).to_vec();
        frame.extend([0u8; 100]);
        let header = AdtsHeader::parse(&frame).expect("valid adts");
        assert_eq!(header.frame_length, 107);
        assert_eq!(header.sample_rate(), 48_000);
        assert_eq!(header.audio_specific_config(), asc);
        assert_eq!(header.frame_duration_90k(), 1920);
    }

    #[test]
    fn split_reports_truncated_tail() {
        let asc = AudioSpecificConfig {
            audio_object_type: 2,
            sampling_frequency_index: 4,
            channel_configuration: 1,
        };
        let mut data = Vec::new();
        for _ in 0..3 {
            data.extend(asc.adts_header(10));
            data.extend([0xAB; 10]);
        }
        data.extend(&asc.adts_header(10)[..5]);
        let (frames, leftover) = split_adts_frames(&data);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2].1, 34..51);
        assert_eq!(leftover, 5);
    }

    #[test]
    fn garbage_is_not_adts() {
        assert_eq!(AdtsHeader::parse(&[0x47, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(AdtsHeader::parse(&[0xFF, 0xF1]), None);
        assert_eq!(AudioSpecificConfig::parse(&[0x11]), None);
    }
}
