//! FLV tag bodies (from RTMP messages) → `Program` and `Frame`s.

use bytes::{BufMut, Bytes, BytesMut};
use lunora_media::{
    AudioSpecificConfig, Codec, Frame, H264NalType, HevcNalType, MpegTime, Program, Track,
};

use crate::record::{AvcDecoderConfig, HevcDecoderConfig};
use crate::{AUDIO_TRACK, FlvError, VIDEO_TRACK};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvEvent {
    /// The tracks changed (a sequence header arrived for a new codec).
    Program(Program),
    Frame(Frame),
}

/// Unwraps RTMP's 32-bit millisecond timestamps into 90 kHz ticks.
#[derive(Debug, Default, Clone, Copy)]
struct MsClock {
    last: Option<i64>,
}

impl MsClock {
    fn ticks(&mut self, ms: u32) -> i64 {
        let ms = i64::from(ms);
        let value = match self.last {
            None => ms,
            Some(last) => {
                let wire_last = last.rem_euclid(1 << 32);
                let mut diff = (ms - wire_last).rem_euclid(1 << 32);
                if diff >= 1 << 31 {
                    diff -= 1 << 32;
                }
                last + diff
            }
        };
        self.last = Some(value);
        value * 90
    }
}

#[derive(Debug, Clone)]
enum VideoConfig {
    Avc(AvcDecoderConfig),
    Hevc(HevcDecoderConfig),
}

#[derive(Debug, Default)]
pub struct FlvDemux {
    video: Option<VideoConfig>,
    audio: Option<AudioSpecificConfig>,
    clock: MsClock,
    announced: Option<Program>,
}

impl FlvDemux {
    pub fn new() -> Self {
        Self::default()
    }

    fn program(&self) -> Program {
        let mut tracks = Vec::new();
        match &self.video {
            Some(VideoConfig::Avc(_)) => tracks.push(Track::new(VIDEO_TRACK, Codec::H264)),
            Some(VideoConfig::Hevc(_)) => tracks.push(Track::new(VIDEO_TRACK, Codec::Hevc)),
            None => {}
        }
        if self.audio.is_some() {
            tracks.push(Track::new(AUDIO_TRACK, Codec::AacAdts));
        }
        Program { tracks }
    }

    fn announce(&mut self, out: &mut Vec<FlvEvent>) {
        let program = self.program();
        if self.announced.as_ref() != Some(&program) {
            self.announced = Some(program.clone());
            out.push(FlvEvent::Program(program));
        }
    }

    /// A video tag body with its RTMP timestamp (ms).
    pub fn handle_video(
        &mut self,
        timestamp_ms: u32,
        body: &[u8],
        out: &mut Vec<FlvEvent>,
    ) -> Result<(), FlvError> {
        let dts = self.clock.ticks(timestamp_ms);
        let &first = body.first().ok_or(FlvError::Truncated(body.len()))?;
        if first & 0x80 != 0 {
            return self.handle_enhanced_video(dts, first, body, out);
        }
        let keyframe = first >> 4 == 1;
        let codec_id = first & 0x0F;
        if codec_id != 7 {
            return Err(FlvError::UnsupportedVideoCodec(codec_id));
        }
        let [_, packet_type, c0, c1, c2, data @ ..] = body else {
            return Err(FlvError::Truncated(body.len()));
        };
        match packet_type {
            0 => {
                self.video = Some(VideoConfig::Avc(AvcDecoderConfig::parse(data)?));
                self.announce(out);
                Ok(())
            }
            1 => {
                let cts = composition_time([*c0, *c1, *c2]);
                let Some(config @ VideoConfig::Avc(_)) = &self.video else {
                    return Err(FlvError::NoConfig);
                };
                push_coded_frame(config, dts, cts, keyframe, data, out)
            }
            _ => Ok(()), // end of sequence
        }
    }

    fn handle_enhanced_video(
        &mut self,
        dts: i64,
        first: u8,
        body: &[u8],
        out: &mut Vec<FlvEvent>,
    ) -> Result<(), FlvError> {
        let keyframe = (first >> 4) & 7 == 1;
        let packet_type = first & 0x0F;
        let fourcc: [u8; 4] = body
            .get(1..5)
            .and_then(|f| f.try_into().ok())
            .ok_or(FlvError::Truncated(body.len()))?;
        if &fourcc != b"hvc1" {
            return Err(FlvError::UnsupportedFourCc(fourcc));
        }
        let rest = &body[5..];
        let (cts, data) = match packet_type {
            0 => {
                self.video = Some(VideoConfig::Hevc(HevcDecoderConfig::parse(rest)?));
                self.announce(out);
                return Ok(());
            }
            1 => {
                let [c0, c1, c2, data @ ..] = rest else {
                    return Err(FlvError::Truncated(body.len()));
                };
                (composition_time([*c0, *c1, *c2]), data)
            }
            3 => (0, rest),
            _ => return Ok(()),
        };
        let Some(config @ VideoConfig::Hevc(_)) = &self.video else {
            return Err(FlvError::NoConfig);
        };
        push_coded_frame(config, dts, cts, keyframe, data, out)
    }

    /// An audio tag body with its RTMP timestamp (ms).
    pub fn handle_audio(
        &mut self,
        timestamp_ms: u32,
        body: &[u8],
        out: &mut Vec<FlvEvent>,
    ) -> Result<(), FlvError> {
        let dts = self.clock.ticks(timestamp_ms);
        let [first, packet_type, data @ ..] = body else {
            return Err(FlvError::Truncated(body.len()));
        };
        let format = first >> 4;
        if format != 10 {
            return Err(FlvError::UnsupportedAudioFormat(format));
        }
        if *packet_type == 0 {
            self.audio = Some(AudioSpecificConfig::parse(data).ok_or(FlvError::BadConfig)?);
            self.announce(out);
            return Ok(());
        }
        let config = self.audio.ok_or(FlvError::NoConfig)?;
        let mut frame = BytesMut::with_capacity(data.len() + 7);
        frame.put_slice(&config.adts_header(data.len()));
        frame.put_slice(data);
        out.push(FlvEvent::Frame(Frame {
            track: AUDIO_TRACK,
            codec: Codec::AacAdts,
            pts: MpegTime(dts),
            dts: MpegTime(dts),
            keyframe: true,
            data: frame.freeze(),
        }));
        Ok(())
    }
}

/// Signed 24-bit composition time offset in ms → 90 kHz ticks.
fn composition_time(bytes: [u8; 3]) -> i64 {
    let raw = (i32::from(bytes[0]) << 16) | (i32::from(bytes[1]) << 8) | i32::from(bytes[2]);
    let signed = (raw << 8) >> 8;
    i64::from(signed) * 90
}

/// A coded frame (length-prefixed NAL units) as an Annex-B frame, with the configuration's
/// parameter sets in band on keyframes, so a decoder can start at any of them.
fn push_coded_frame(
    config: &VideoConfig,
    dts: i64,
    cts: i64,
    keyframe: bool,
    data: &[u8],
    out: &mut Vec<FlvEvent>,
) -> Result<(), FlvError> {
    let (codec, length_size, parameter_sets): (_, _, Vec<&Bytes>) = match config {
        VideoConfig::Avc(c) => (
            Codec::H264,
            c.length_size,
            c.sps.iter().chain(&c.pps).collect(),
        ),
        VideoConfig::Hevc(c) => (
            Codec::Hevc,
            c.length_size,
            c.parameter_sets.iter().collect(),
        ),
    };
    // A sender that keeps its parameter sets in band needs no second copy.
    let prefix = if keyframe && !carries_sps(codec, data, length_size) {
        parameter_sets
    } else {
        Vec::new()
    };
    let data = to_annex_b(data, length_size, &prefix)?;
    out.push(FlvEvent::Frame(video_frame(
        codec, dts, cts, keyframe, data,
    )));
    Ok(())
}

/// Whether length-prefixed `data` holds a sequence parameter set (a malformed length ends the
/// search; the conversion reports it).
fn carries_sps(codec: Codec, mut data: &[u8], length_size: usize) -> bool {
    while let Some(head) = data.get(..length_size) {
        let length = head
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let Some(nal) = data.get(length_size..length_size + length) else {
            return false;
        };
        let is_sps = nal.first().is_some_and(|&header| match codec {
            Codec::Hevc => HevcNalType::from_header(header) == HevcNalType::Sps,
            _ => H264NalType::from_header(header) == H264NalType::Sps,
        });
        if is_sps {
            return true;
        }
        data = &data[length_size + length..];
    }
    false
}

fn video_frame(codec: Codec, dts: i64, cts: i64, keyframe: bool, data: Bytes) -> Frame {
    Frame {
        track: VIDEO_TRACK,
        codec,
        pts: MpegTime(dts + cts),
        dts: MpegTime(dts),
        keyframe,
        data,
    }
}

/// Length-prefixed NAL units → Annex-B, with `prefix` NAL units (parameter sets) first.
fn to_annex_b(mut data: &[u8], length_size: usize, prefix: &[&Bytes]) -> Result<Bytes, FlvError> {
    let mut out = BytesMut::with_capacity(data.len() + 64);
    for nal in prefix {
        out.put_slice(&[0, 0, 0, 1]);
        out.put_slice(nal);
    }
    while !data.is_empty() {
        let Some(head) = data.get(..length_size) else {
            return Err(FlvError::Truncated(data.len()));
        };
        let length = head
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let Some(nal) = data.get(length_size..length_size + length) else {
            return Err(FlvError::Truncated(data.len()));
        };
        out.put_slice(&[0, 0, 0, 1]);
        out.put_slice(nal);
        data = &data[length_size + length..];
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_millisecond_clock_unwraps() {
        let mut clock = MsClock::default();
        assert_eq!(clock.ticks(u32::MAX - 10), i64::from(u32::MAX - 10) * 90);
        assert_eq!(clock.ticks(5), (i64::from(u32::MAX) + 6) * 90);
    }

    #[test]
    fn negative_composition_time() {
        assert_eq!(composition_time([0xFF, 0xFF, 0xD8]), -40 * 90);
        assert_eq!(composition_time([0, 0, 80]), 80 * 90);
    }

    #[test]
    fn avc_tags_become_annex_b_frames_with_parameter_sets_on_keyframes() {
        let record = AvcDecoderConfig::from_parameter_sets(
            Bytes::from_static(&[0x67, 0x64, 0, 0x1F]),
            Bytes::from_static(&[0x68, 0xEE]),
        )
        .expect("record");
        let mut demux = FlvDemux::new();
        let mut out = Vec::new();
        let mut header = vec![0x17, 0, 0, 0, 0];
        header.extend_from_slice(&record.to_bytes().unwrap());
        demux
            .handle_video(0, &header, &mut out)
            .expect("sequence header");
        assert!(matches!(&out[0], FlvEvent::Program(p) if p.tracks[0].codec == Codec::H264));
        demux
            .handle_video(40, &[0x17, 1, 0, 0, 40, 0, 0, 0, 2, 0x65, 0x88], &mut out)
            .expect("keyframe");
        let FlvEvent::Frame(frame) = &out[1] else {
            panic!("frame expected")
        };
        assert!(frame.keyframe);
        assert_eq!(
            (frame.dts, frame.pts),
            (MpegTime(40 * 90), MpegTime(80 * 90))
        );
        assert_eq!(
            &frame.data[..],
            &[
                0, 0, 0, 1, 0x67, 0x64, 0, 0x1F, 0, 0, 0, 1, 0x68, 0xEE, 0, 0, 0, 1, 0x65, 0x88
            ]
        );
        // Truncated NAL length: an error, not a panic.
        assert_eq!(
            demux.handle_video(80, &[0x27, 1, 0, 0, 0, 0, 0, 0, 9, 0x41], &mut out),
            Err(FlvError::Truncated(5))
        );
    }

    #[test]
    fn aac_raw_frames_get_adts_headers() {
        let mut demux = FlvDemux::new();
        let mut out = Vec::new();
        demux
            .handle_audio(0, &[0xAF, 0, 0x11, 0x90], &mut out)
            .expect("config");
        demux
            .handle_audio(21, &[0xAF, 1, 0xDE, 0xAD], &mut out)
            .expect("frame");
        let FlvEvent::Frame(frame) = &out[1] else {
            panic!("frame expected")
        };
        let header = lunora_media::AdtsHeader::parse(&frame.data).expect("adts");
        assert_eq!((header.sample_rate(), header.frame_length), (48_000, 9));
        assert_eq!(
            demux.handle_audio(0, &[0x2F, 1], &mut out),
            Err(FlvError::UnsupportedAudioFormat(2))
        );
    }
}
