//! AAC over RTP as `MP4A-LATM` (RFC 6416, formerly RFC 3016): each packet carries one or more
//! LATM AudioMuxElements (ISO/IEC 14496-3 §1.7.3), or a piece of one, the marker bit closing
//! it. Each element is PayloadLengthInfo (a run of 0xFF bytes and a last one, summed) and the
//! raw AAC frame; with `cpresent=1` it starts with `useSameStreamMux` and, when that is 0, a
//! StreamMuxConfig in band, which makes the rest of the element bit-aligned rather than
//! byte-aligned. Frames are put out with an ADTS header, as the RFC 3640 path does.
//!
//! Only the shape every broadcast sender uses is read: audioMuxVersion 0, one program, one
//! layer, one frame per element (numSubFrames 0), frameLengthType 0, AAC Main/LC/SSR/LTP with
//! or without explicit SBR/PS signalling. Anything else is refused with its reason: at
//! configuration time when the SDP says so, counted and dropped when it comes in band.

use lunora_media::{AAC_SAMPLES_PER_FRAME, AudioSpecificConfig, BitReader};
use thiserror::Error;

use crate::aac::AacFrame;

/// Bytes of one AudioMuxElement being reassembled from fragments: an AAC frame is at most
/// 6144 bits per channel, so a sender past this is broken or hostile.
const ELEMENT_CAP: usize = 1 << 16;
/// The largest raw frame an ADTS header can describe (13-bit length, 7-byte header).
const ADTS_PAYLOAD_MAX: usize = (1 << 13) - 1 - 7;
/// `syncExtensionType` of backward-compatible SBR signalling at the end of an
/// AudioSpecificConfig.
const SYNC_EXTENSION_SBR: u64 = 0x2b7;
const SYNC_EXTENSION_PS: u64 = 0x548;
const AOT_SBR: u8 = 5;
const AOT_PS: u8 = 29;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LatmError {
    #[error("the StreamMuxConfig ends early")]
    ConfigTruncated,
    #[error("audioMuxVersion 1 (only version 0 is read)")]
    MuxVersion,
    #[error("allStreamsSameTimeFraming is 0 (only 1 is read)")]
    TimeFraming,
    #[error(
        "{0} subframes per AudioMuxElement (only one is read; the sender must use numSubFrames 0)"
    )]
    SubFrames(u64),
    #[error("{0} programs (only one is read)")]
    Programs(u64),
    #[error("{0} layers (only one is read)")]
    Layers(u64),
    #[error("frameLengthType {0} (only 0, AAC with PayloadLengthInfo, is read)")]
    FrameLengthType(u64),
    #[error(
        "audio object type {0} (only AAC Main, LC, SSR and LTP, with or without SBR/PS, are read)"
    )]
    ObjectType(u64),
    #[error("an explicit sampling frequency (only the standard AAC rates are read)")]
    SampleRate,
    #[error("channel configuration 0 (a program config element; only 1–7 are read)")]
    Channels,
    #[error("960-sample frames (frameLengthFlag 1; only 1024-sample frames are read)")]
    FrameLength,
    #[error("no StreamMuxConfig yet: cpresent=1 and none has come in band")]
    NoConfig,
    #[error("the AudioMuxElement ends early (its lengths go past the packet)")]
    ElementTruncated,
    #[error("an AAC frame of {0} bytes (at most {ADTS_PAYLOAD_MAX})")]
    FrameTooLarge(usize),
    #[error("an AudioMuxElement over {ELEMENT_CAP} bytes without the RTP marker bit ending it")]
    ElementTooLarge,
    #[error("a packet of a fragmented AudioMuxElement was lost")]
    FragmentLost,
}

impl From<lunora_media::BitReaderError> for LatmError {
    fn from(_: lunora_media::BitReaderError) -> Self {
        LatmError::ElementTruncated
    }
}

/// What a StreamMuxConfig says that reading the elements needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatmConfig {
    /// The AAC core's config (object type, rate, channels) that ADTS headers carry; with SBR
    /// signalled explicitly, the core rate (the decoder finds the SBR data in the frames).
    pub audio: AudioSpecificConfig,
    /// Bits of otherData after each frame.
    other_data_bits: u64,
}

impl LatmConfig {
    /// Parses a StreamMuxConfig, as in the SDP's `config=` (hex). RTP senders (GStreamer's
    /// payloader) may end it right after the AudioSpecificConfig; the fields after it then
    /// take the only values read anyway (frameLengthType 0, no other data, no CRC).
    pub fn parse(bytes: &[u8]) -> Result<LatmConfig, LatmError> {
        let mut reader = BitReader::new(bytes);
        read_stream_mux_config(&mut reader, true)
    }

    /// RTP timestamp ticks of one frame at `clock_rate`: 1024 samples of the core rate.
    fn frame_ticks(&self, clock_rate: u32) -> u32 {
        let ticks = u64::from(AAC_SAMPLES_PER_FRAME) * u64::from(clock_rate)
            / u64::from(self.audio.sample_rate().max(1));
        u32::try_from(ticks).unwrap_or(AAC_SAMPLES_PER_FRAME)
    }
}

fn read_stream_mux_config(
    reader: &mut BitReader,
    tail_optional: bool,
) -> Result<LatmConfig, LatmError> {
    let truncated = |_| LatmError::ConfigTruncated;
    if reader.read_bit().map_err(truncated)? {
        return Err(LatmError::MuxVersion);
    }
    if !reader.read_bit().map_err(truncated)? {
        return Err(LatmError::TimeFraming);
    }
    let sub_frames = reader.read_bits(6).map_err(truncated)?;
    if sub_frames != 0 {
        return Err(LatmError::SubFrames(sub_frames + 1));
    }
    let programs = reader.read_bits(4).map_err(truncated)?;
    if programs != 0 {
        return Err(LatmError::Programs(programs + 1));
    }
    let layers = reader.read_bits(3).map_err(truncated)?;
    if layers != 0 {
        return Err(LatmError::Layers(layers + 1));
    }
    let audio = read_audio_specific_config(reader)?;
    let mut before_tail = reader.clone();
    match read_tail(reader) {
        Ok(other_data_bits) => Ok(LatmConfig {
            audio,
            other_data_bits,
        }),
        Err(LatmError::ConfigTruncated) if tail_optional => {
            // Whatever of the tail is there must begin as the only shape read.
            match before_tail.read_bits(3) {
                Ok(0) | Err(_) => Ok(LatmConfig {
                    audio,
                    other_data_bits: 0,
                }),
                Ok(other) => Err(LatmError::FrameLengthType(other)),
            }
        }
        Err(e) => Err(e),
    }
}

/// frameLengthType, latmBufferFullness, otherData and CRC: the bits of otherData per element.
fn read_tail(reader: &mut BitReader) -> Result<u64, LatmError> {
    let truncated = |_| LatmError::ConfigTruncated;
    let frame_length_type = reader.read_bits(3).map_err(truncated)?;
    if frame_length_type != 0 {
        return Err(LatmError::FrameLengthType(frame_length_type));
    }
    reader.skip_bits(8).map_err(truncated)?; // latmBufferFullness
    let mut other_data_bits = 0u64;
    if reader.read_bit().map_err(truncated)? {
        // otherDataLenBits: 8-bit pieces while the escape bit says more follow. More than
        // four pieces would describe more bits than any packet holds.
        for _ in 0..4 {
            let more = reader.read_bit().map_err(truncated)?;
            other_data_bits = (other_data_bits << 8) | reader.read_bits(8).map_err(truncated)?;
            if !more {
                break;
            }
        }
    }
    if reader.read_bit().map_err(truncated)? {
        reader.skip_bits(8).map_err(truncated)?; // crcCheckSum
    }
    Ok(other_data_bits)
}

fn read_object_type(reader: &mut BitReader) -> Result<u8, LatmError> {
    let truncated = |_| LatmError::ConfigTruncated;
    let mut object = reader.read_bits(5).map_err(truncated)?;
    if object == 31 {
        object = 32 + reader.read_bits(6).map_err(truncated)?;
    }
    u8::try_from(object).map_err(|_| LatmError::ObjectType(object))
}

fn read_frequency_index(reader: &mut BitReader) -> Result<u8, LatmError> {
    let index = reader
        .read_bits(4)
        .map_err(|_| LatmError::ConfigTruncated)?;
    match u8::try_from(index) {
        Ok(index) if index < 13 => Ok(index),
        _ => Err(LatmError::SampleRate),
    }
}

/// An AudioSpecificConfig read bit-exactly where it sits inside the StreamMuxConfig (its
/// length is not given with audioMuxVersion 0, so every field is walked).
fn read_audio_specific_config(reader: &mut BitReader) -> Result<AudioSpecificConfig, LatmError> {
    let truncated = |_| LatmError::ConfigTruncated;
    let mut object = read_object_type(reader)?;
    let frequency = read_frequency_index(reader)?;
    let channels = reader.read_bits(4).map_err(truncated)?;
    if object == AOT_SBR || object == AOT_PS {
        // Explicit SBR/PS: the output rate, then the core's object type.
        read_frequency_index(reader)?;
        object = read_object_type(reader)?;
    }
    if !(1..=4).contains(&object) {
        return Err(LatmError::ObjectType(u64::from(object)));
    }
    // GASpecificConfig.
    if reader.read_bit().map_err(truncated)? {
        return Err(LatmError::FrameLength);
    }
    if reader.read_bit().map_err(truncated)? {
        reader.skip_bits(14).map_err(truncated)?; // coreCoderDelay
    }
    if channels == 0 {
        return Err(LatmError::Channels);
    }
    if reader.read_bit().map_err(truncated)? {
        reader.skip_bits(1).map_err(truncated)?; // extensionFlag3
    }
    // Backward-compatible SBR/PS signalling. Strictly its presence needs the config's length,
    // which audioMuxVersion 0 does not give; payloaders that copy a whole AudioSpecificConfig
    // in (GStreamer's) leave it there all the same, and its 11-bit sync word tells it apart:
    // the fields that follow an AudioSpecificConfig cannot begin with it unless
    // frameLengthType is 2, which is refused anyway.
    let mut peek = reader.clone();
    if peek.read_bits(11).ok() == Some(SYNC_EXTENSION_SBR) {
        *reader = peek;
        if read_object_type(reader)? == AOT_SBR && reader.read_bit().map_err(truncated)? {
            read_frequency_index(reader)?;
            let mut peek = reader.clone();
            if peek.read_bits(11).ok() == Some(SYNC_EXTENSION_PS) {
                *reader = peek;
                reader.skip_bits(1).map_err(truncated)?; // psPresentFlag
            }
        }
    }
    let channels = u8::try_from(channels).map_err(|_| LatmError::Channels)?;
    Ok(AudioSpecificConfig {
        audio_object_type: object,
        sampling_frequency_index: frequency,
        channel_configuration: channels,
    })
}

#[derive(Debug)]
pub struct LatmDepacketizer {
    /// The StreamMuxConfig in force: the SDP's, or the last one in band.
    config: Option<LatmConfig>,
    /// `cpresent=1`: each element starts with `useSameStreamMux`.
    in_band: bool,
    clock_rate: u32,
    /// An element split over packets: the timestamp its first piece came with, and its bytes.
    partial: Option<(u32, Vec<u8>)>,
    /// Packets are skipped up to the next marker bit: after the start and after a loss, the
    /// next packet may be the middle of an element, whose bytes would read as garbage frames.
    resync: bool,
    /// Elements (or the rest of a packet) thrown away as malformed, unsupported or incomplete.
    pub dropped: u64,
    /// Why the last one was, until taken.
    error: Option<LatmError>,
}

impl LatmDepacketizer {
    pub fn new(config: Option<LatmConfig>, in_band: bool, clock_rate: u32) -> Self {
        LatmDepacketizer {
            config,
            in_band,
            clock_rate,
            partial: None,
            resync: true,
            dropped: 0,
            error: None,
        }
    }

    /// Why audio was last dropped, once.
    pub fn take_error(&mut self) -> Option<LatmError> {
        self.error.take()
    }

    fn drop_with(&mut self, error: LatmError) {
        self.dropped += 1;
        self.error = Some(error);
    }

    /// A packet went missing, and with it (part of) an element.
    pub fn lost(&mut self) {
        self.partial = None;
        self.drop_with(LatmError::FragmentLost);
        self.resync = true;
    }

    pub fn push(&mut self, timestamp: u32, marker: bool, payload: &[u8]) -> Vec<AacFrame> {
        if self.resync {
            self.resync = !marker;
            return Vec::new();
        }
        let mut element = match self.partial.take() {
            // Fragments of one element share its timestamp: another means its end was lost.
            Some((started, _)) if started != timestamp => {
                self.drop_with(LatmError::FragmentLost);
                Vec::new()
            }
            Some((_, bytes)) => bytes,
            None => Vec::new(),
        };
        if element.len() + payload.len() > ELEMENT_CAP {
            self.drop_with(LatmError::ElementTooLarge);
            return Vec::new();
        }
        element.extend_from_slice(payload);
        if !marker {
            self.partial = Some((timestamp, element));
            return Vec::new();
        }
        self.elements(timestamp, &element)
    }

    /// The complete elements of one packet (or reassembled element), back to back.
    fn elements(&mut self, timestamp: u32, bytes: &[u8]) -> Vec<AacFrame> {
        let mut reader = BitReader::new(bytes);
        let mut frames = Vec::new();
        let mut at = timestamp;
        while reader.bits_left() >= 8 {
            match self.element(&mut reader) {
                // Zero bytes: padding, not a frame.
                Ok((_, raw)) if raw.is_empty() => {}
                Ok((config, raw)) => {
                    frames.push(AacFrame {
                        timestamp: at,
                        data: [&config.audio.adts_header(raw.len())[..], &raw].concat(),
                    });
                    at = at.wrapping_add(config.frame_ticks(self.clock_rate));
                }
                Err(e) => {
                    // What follows a broken element cannot be found.
                    self.drop_with(e);
                    break;
                }
            }
            // Each element starts on a byte.
            let padding = reader.bits_left() % 8;
            if reader.skip_bits(padding).is_err() {
                break;
            }
        }
        frames
    }

    fn element(&mut self, reader: &mut BitReader) -> Result<(LatmConfig, Vec<u8>), LatmError> {
        if self.in_band && !reader.read_bit()? {
            // A new config; one that does not read leaves none, so the elements that reuse it
            // are dropped too.
            let read = read_stream_mux_config(reader, false);
            self.config = read.as_ref().ok().copied();
            read?;
        }
        let config = self.config.ok_or(LatmError::NoConfig)?;
        let mut length = 0usize;
        loop {
            let piece = reader.read_bits(8)?;
            length += usize::try_from(piece).map_err(|_| LatmError::ElementTruncated)?;
            if piece != 255 {
                break;
            }
        }
        if length > reader.bits_left() / 8 {
            return Err(LatmError::ElementTruncated);
        }
        if length > ADTS_PAYLOAD_MAX {
            return Err(LatmError::FrameTooLarge(length));
        }
        let mut raw = Vec::with_capacity(length);
        for _ in 0..length {
            raw.push(u8::try_from(reader.read_bits(8)?).map_err(|_| LatmError::ElementTruncated)?);
        }
        let other = usize::try_from(config.other_data_bits).unwrap_or(usize::MAX);
        reader.skip_bits(other)?;
        Ok((config, raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Builds bitstreams MSB first, as the syntax reads them.
    #[derive(Default)]
    struct Bits {
        bytes: Vec<u8>,
        used: usize,
    }

    impl Bits {
        fn put(&mut self, count: usize, value: u64) -> &mut Self {
            for bit in (0..count).rev() {
                if self.used.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let last = self.bytes.last_mut().unwrap();
                *last |= u8::from((value >> bit) & 1 == 1) << (7 - self.used % 8);
                self.used += 1;
            }
            self
        }

        fn bytes(&mut self, data: &[u8]) -> &mut Self {
            for b in data {
                self.put(8, u64::from(*b));
            }
            self
        }

        /// StreamMuxConfig header + AAC-LC 48 kHz stereo + frameLengthType 0 tail.
        fn lc_config(&mut self, other_data: Option<u64>, crc: bool) -> &mut Self {
            self.put(1, 0).put(1, 1).put(6, 0).put(4, 0).put(3, 0);
            self.put(5, 2).put(4, 3).put(4, 2).put(3, 0);
            self.put(3, 0).put(8, 0xff);
            match other_data {
                Some(bits) => self.put(1, 1).put(1, 0).put(8, bits),
                None => self.put(1, 0),
            };
            self.put(1, u64::from(crc));
            if crc {
                self.put(8, 0x5a);
            }
            self
        }

        fn done(&self) -> Vec<u8> {
            self.bytes.clone()
        }
    }

    fn lc_48k_stereo() -> LatmConfig {
        LatmConfig::parse(&hex("400023203fc0")).unwrap()
    }

    /// A depacketizer past its start: the first packet up to a marker bit is skipped, as it
    /// may be the middle of an element.
    fn started(config: Option<LatmConfig>, in_band: bool) -> LatmDepacketizer {
        let mut d = LatmDepacketizer::new(config, in_band, 48_000);
        assert!(d.push(0, false, &element(b"middle")).is_empty());
        assert!(d.push(0, true, &element(b"end")).is_empty());
        assert_eq!((d.dropped, d.take_error()), (0, None));
        d
    }

    /// PayloadLengthInfo + PayloadMux for out-of-band config.
    fn element(raw: &[u8]) -> Vec<u8> {
        let mut out = vec![0xff; raw.len() / 255];
        out.push(u8::try_from(raw.len() % 255).unwrap());
        out.extend_from_slice(raw);
        out
    }

    #[test]
    fn configs_that_real_senders_write_are_read() {
        // ffmpeg -rtpflags latm: 48 kHz stereo and 44.1 kHz mono AAC-LC.
        let config = lc_48k_stereo();
        assert_eq!(config.audio.to_bytes(), [0x11, 0x90]);
        assert_eq!(config.other_data_bits, 0);
        let mono = LatmConfig::parse(&hex("400024103fc0")).unwrap();
        assert_eq!(mono.audio.sample_rate(), 44_100);
        assert_eq!(mono.audio.channel_configuration, 1);
        // GStreamer's rtpmp4apay copies avenc_aac's 5-byte config (with SBR sync extension
        // "56e500") in and ends the StreamMuxConfig there.
        let gst = LatmConfig::parse(&hex("40002320adca00")).unwrap();
        assert_eq!(gst.audio, config.audio);
        // The same config built bit by bit, with other data and a CRC.
        let built = LatmConfig::parse(&Bits::default().lc_config(Some(16), true).done()).unwrap();
        assert_eq!((built.audio, built.other_data_bits), (config.audio, 16));
        assert_eq!(config.frame_ticks(48_000), 1024);
        assert_eq!(config.frame_ticks(90_000), 1920);
    }

    #[test]
    fn explicit_he_aac_gives_the_core_config() {
        // AOT 5 (SBR), core 24 kHz stereo, output 48 kHz, core AOT 2.
        let mut bits = Bits::default();
        bits.put(1, 0).put(1, 1).put(6, 0).put(4, 0).put(3, 0);
        bits.put(5, 5)
            .put(4, 6)
            .put(4, 2)
            .put(4, 3)
            .put(5, 2)
            .put(3, 0);
        bits.put(3, 0).put(8, 0xff).put(1, 0).put(1, 0);
        let config = LatmConfig::parse(&bits.done()).unwrap();
        assert_eq!(config.audio.audio_object_type, 2);
        assert_eq!(config.audio.sample_rate(), 24_000);
        assert_eq!(config.frame_ticks(48_000), 2048);
    }

    #[test]
    fn unsupported_and_broken_configs_say_why() {
        let cases = [
            ("c00023203fc0", LatmError::MuxVersion),
            ("000023203fc0", LatmError::TimeFraming),
            ("410023203fc0", LatmError::SubFrames(2)),
            ("401023203fc0", LatmError::Programs(2)),
            ("400223203fc0", LatmError::Layers(2)),
            ("400023207fc0", LatmError::FrameLengthType(1)),
            // AOT 1..4 only: 7 is TwinVQ.
            ("400073203fc0", LatmError::ObjectType(7)),
            ("40002f203fc0", LatmError::SampleRate),
            ("400023003fc0", LatmError::Channels),
            ("400023283fc0", LatmError::FrameLength),
            ("4000", LatmError::ConfigTruncated),
            ("", LatmError::ConfigTruncated),
        ];
        for (config, error) in cases {
            assert_eq!(LatmConfig::parse(&hex(config)), Err(error), "{config}");
        }
    }

    #[test]
    fn a_packet_with_two_elements_gives_two_frames_each_with_adts() {
        let mut d = started(Some(lc_48k_stereo()), false);
        let long: Vec<u8> = (0..300u16).map(|i| (i % 251) as u8).collect();
        let payload = [element(b"first"), element(&long)].concat();
        let frames = d.push(1000, true, &payload);
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].timestamp, frames[1].timestamp), (1000, 2024));
        assert_eq!(&frames[0].data[7..], b"first");
        assert_eq!(&frames[1].data[7..], &long[..]);
        let adts = lunora_media::AdtsHeader::parse(&frames[1].data).unwrap();
        assert_eq!(
            (adts.sample_rate(), adts.channel_configuration),
            (48_000, 2)
        );
        assert_eq!(adts.frame_length, 307);
        assert_eq!(d.dropped, 0);
    }

    #[test]
    fn a_fragmented_element_is_joined_and_a_loss_or_a_new_timestamp_drops_it() {
        let mut d = started(Some(lc_48k_stereo()), false);
        let raw: Vec<u8> = (0..600u16).map(|i| (i % 256) as u8).collect();
        let whole = element(&raw);
        let (a, rest) = whole.split_at(200);
        let (b, c) = rest.split_at(200);
        assert!(d.push(0, false, a).is_empty());
        assert!(d.push(0, false, b).is_empty());
        let frames = d.push(0, true, c);
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0].data[7..], &raw[..]);
        // A lost middle piece: the tail is skipped, not read as elements.
        assert!(d.push(1024, false, a).is_empty());
        d.lost();
        assert!(d.push(1024, true, c).is_empty());
        assert_eq!(d.take_error(), Some(LatmError::FragmentLost));
        assert_eq!(d.dropped, 1);
        assert_eq!(d.push(2048, true, &element(b"y")).len(), 1);
        // The end never came: the next element (another timestamp) drops the partial one.
        assert!(d.push(3072, false, a).is_empty());
        assert_eq!(d.push(4096, true, &element(b"x")).len(), 1);
        assert_eq!(d.take_error(), Some(LatmError::FragmentLost));
        assert_eq!(d.dropped, 2);
    }

    #[test]
    fn hostile_lengths_and_endless_fragments_are_bounded() {
        let mut d = started(Some(lc_48k_stereo()), false);
        for payload in [
            &[][..],
            &[5, 1, 2],
            &[0xff, 0xff, 0xff],
            &[0xff; 2000],
            &[200, 1, 2, 3],
        ] {
            assert!(d.push(0, true, payload).is_empty(), "{payload:?}");
        }
        assert_eq!(d.take_error(), Some(LatmError::ElementTruncated));
        // 8191 − 7 is the most ADTS can carry.
        let huge = element(&vec![0; 9000]);
        assert!(d.push(0, true, &huge).is_empty());
        assert_eq!(d.take_error(), Some(LatmError::FrameTooLarge(9000)));
        // A good element, then garbage: the frame stays, the rest is counted.
        let frames = d.push(0, true, &[element(b"ok"), vec![9, 1]].concat());
        assert_eq!(frames.len(), 1);
        // A sender that never sets the marker bit cannot grow the buffer past its cap.
        let before = d.dropped;
        for _ in 0..100 {
            d.push(0, false, &[0u8; 1400]);
        }
        assert!(
            d.partial
                .as_ref()
                .is_none_or(|(_, b)| b.len() <= ELEMENT_CAP)
        );
        assert!(d.dropped > before);
        assert_eq!(d.take_error(), Some(LatmError::ElementTooLarge));
        // Zero-length elements (padding) are no frames and no errors.
        assert!(d.push(0, true, &[0, 0]).is_empty());
        assert_eq!(d.take_error(), None);
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded() {
        // xorshift: reproducible noise, mutations of real configs and elements included.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = [
            hex("400023203fc0"),
            hex("40002320adca00"),
            element(b"frame"),
        ];
        for in_band in [false, true] {
            let mut d = LatmDepacketizer::new(Some(lc_48k_stereo()), in_band, 48_000);
            for round in 0..20_000u32 {
                let length = usize::try_from(next() % 1500).unwrap();
                let mut payload: Vec<u8> = if round % 3 == 0 {
                    seeds[usize::try_from(next() % 3).unwrap()].clone()
                } else {
                    (0..length).map(|_| next().to_le_bytes()[0]).collect()
                };
                if let Some(byte) = payload.first_mut() {
                    *byte ^= next().to_le_bytes()[0] & 0x81;
                }
                let _ = LatmConfig::parse(&payload);
                let marker = next() % 4 != 0;
                let timestamp = u32::try_from(next() % 4).unwrap() * 1024;
                for frame in d.push(timestamp, marker, &payload) {
                    assert!(frame.data.len() <= 8191);
                }
                if next() % 50 == 0 {
                    d.lost();
                }
                assert!(
                    d.partial
                        .as_ref()
                        .is_none_or(|(_, b)| b.len() <= ELEMENT_CAP)
                );
            }
            assert!(d.dropped > 0);
        }
    }

    #[test]
    fn in_band_elements_from_ffmpeg_latm_muxer_are_read() {
        // `ffmpeg -f lavfi -i anullsrc=r=48000:cl=stereo -c:a aac -b:a 32k -f latm`, its LOAS
        // headers taken off: a config in band, then elements reusing it, bit-aligned.
        let mut d = started(None, true);
        let first = hex("200011901fe0bef01002630bb319a9c97199b9718981800211004608c1c0");
        let same = hex("8310880230460e00");
        let mut frames = d.push(0, true, &first);
        frames.extend(d.push(1024, true, &same));
        assert_eq!(frames.len(), 2, "{:?}", d.take_error());
        let adts = lunora_media::AdtsHeader::parse(&frames[0].data).unwrap();
        assert_eq!(
            (adts.sample_rate(), adts.channel_configuration),
            (48_000, 2)
        );
        assert_eq!(frames[1].data.len(), 7 + 6);
        assert_eq!(d.dropped, 0);
    }

    #[test]
    fn in_band_config_is_read_and_reused() {
        let mut d = started(None, true);
        // useSameStreamMux 1 before any config: dropped with the reason.
        assert!(d.push(0, true, &[0x80 | 0x01, 0x80]).is_empty());
        assert_eq!(d.take_error(), Some(LatmError::NoConfig));
        // useSameStreamMux 0 + config (with 8 bits of other data) + length 3 + frame +
        // other data, then bit padding; then an element reusing it.
        let mut first = Bits::default();
        first.put(1, 0).lc_config(Some(8), false);
        first.put(8, 3).bytes(b"abc").put(8, 0xee);
        let mut second = Bits::default();
        second.put(1, 1).put(8, 2).bytes(b"de").put(8, 0xee);
        let payload = [first.done(), second.done()].concat();
        let frames = d.push(0, true, &payload);
        assert_eq!(frames.len(), 2, "{:?}", d.take_error());
        assert_eq!(&frames[0].data[7..], b"abc");
        assert_eq!(&frames[1].data[7..], b"de");
        assert_eq!(frames[1].timestamp, 1024);
        // An unsupported config in band: that element and the ones reusing it are dropped.
        let mut v1 = Bits::default();
        v1.put(1, 0).put(1, 1).put(8, 0);
        assert!(d.push(2048, true, &v1.done()).is_empty());
        assert_eq!(d.take_error(), Some(LatmError::MuxVersion));
        assert!(d.push(3072, true, &second.done()).is_empty());
        assert_eq!(d.take_error(), Some(LatmError::NoConfig));
    }
}
