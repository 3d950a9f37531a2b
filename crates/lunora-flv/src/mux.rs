//! `Frame`s → FLV tag bodies for RTMP: sequence headers first (and again whenever the
//! parameter sets change), then coded frames.

use bytes::{BufMut, Bytes, BytesMut};
use lunora_media::{
    AdtsHeader, AnnexBNalUnits, Codec, Frame, H264NalType, HevcNalType, MpegAudioHeader,
};

use crate::record::{AvcDecoderConfig, hevc_decoder_config_record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    Audio,
    Video,
}

/// One FLV tag body ready for an RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    pub kind: TagKind,
    /// RTMP timestamp: DTS in milliseconds, wrapping at 2^32.
    pub timestamp_ms: u32,
    pub body: Bytes,
    /// A decoder can start here (sequence headers and video keyframes).
    pub keyframe: bool,
}

#[derive(Debug, Default)]
pub struct FlvMux {
    avc: Option<AvcDecoderConfig>,
    /// The HEVC record last sent (enhanced RTMP).
    hevc: Option<Bytes>,
    audio_config: Option<[u8; 2]>,
    /// Frames of a codec FLV cannot carry are counted, not sent.
    pub unsupported_frames: u64,
}

/// Enhanced RTMP video packet types.
const ENHANCED_SEQUENCE_START: u8 = 0;
const ENHANCED_CODED_FRAMES: u8 = 1;

/// PTS − DTS in milliseconds as FLV's signed 24-bit composition time.
fn composition_time(frame: &Frame) -> [u8; 3] {
    let cts = ((frame.pts - frame.dts) / 90).clamp(-(1 << 23), (1 << 23) - 1) as i32;
    let [_, a, b, c] = cts.to_be_bytes();
    [a, b, c]
}

/// A video tag carrying a decoder configuration record after `header`.
fn sequence_header_tag(header: &[u8], record: &[u8], timestamp_ms: u32) -> FlvTag {
    let mut body = BytesMut::with_capacity(header.len() + record.len());
    body.put_slice(header);
    body.put_slice(record);
    FlvTag {
        kind: TagKind::Video,
        timestamp_ms,
        body: body.freeze(),
        keyframe: true,
    }
}

/// A video tag: `header`, the composition time, then the NAL units with 4-byte lengths.
fn coded_frame_tag(header: &[u8], frame: &Frame, timestamp_ms: u32, nal_units: &[&[u8]]) -> FlvTag {
    let mut body = BytesMut::with_capacity(frame.data.len() + 16);
    body.put_slice(header);
    body.put_slice(&composition_time(frame));
    for nal in nal_units {
        body.put_u32(nal.len() as u32);
        body.put_slice(nal);
    }
    FlvTag {
        kind: TagKind::Video,
        timestamp_ms,
        body: body.freeze(),
        keyframe: frame.keyframe,
    }
}

fn timestamp(ticks: i64) -> u32 {
    (ticks.div_euclid(90)).rem_euclid(1 << 32) as u32
}

impl FlvMux {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the tags for `frame` to `out`.
    pub fn write_frame(&mut self, frame: &Frame, out: &mut Vec<FlvTag>) {
        match frame.codec {
            Codec::H264 => self.write_avc(frame, out),
            Codec::Hevc => self.write_hevc(frame, out),
            Codec::AacAdts => self.write_aac(frame, out),
            Codec::MpegAudio => self.write_mp3(frame, out),
            _ => self.unsupported_frames += 1,
        }
    }

    fn write_avc(&mut self, frame: &Frame, out: &mut Vec<FlvTag>) {
        let (mut sps, mut pps) = (None, None);
        let mut nal_units = Vec::new();
        for nal in AnnexBNalUnits::new(&frame.data) {
            let Some(&header) = nal.first() else { continue };
            match H264NalType::from_header(header) {
                // Kept in band as well as in the sequence header: when they change mid-session
                // (a failover between encoders, the slate), receivers that remux without
                // reading a second sequence header (ffmpeg's own, and platforms built on it)
                // still find the pictures' parameter sets in front of them.
                H264NalType::Sps => {
                    sps = Some(frame.data.slice_ref(nal));
                    nal_units.push(nal);
                }
                H264NalType::Pps => {
                    pps = Some(frame.data.slice_ref(nal));
                    nal_units.push(nal);
                }
                // FLV carries no access unit delimiters.
                H264NalType::AccessUnitDelimiter => {}
                _ => nal_units.push(nal),
            }
        }
        let ts = timestamp(frame.dts.0);
        if let (Some(sps), Some(pps)) = (sps, pps)
            && let Some(config) = AvcDecoderConfig::from_parameter_sets(sps, pps)
            && self.avc.as_ref() != Some(&config)
        {
            match config.to_bytes() {
                Ok(record) => {
                    // Keyframe, AVC packet type 0 (sequence header), composition time 0.
                    out.push(sequence_header_tag(&[0x17, 0, 0, 0, 0], &record, ts));
                    self.avc = Some(config);
                }
                // The sender's parameter sets do not fit the record: nothing after them can
                // be described to the receiver, so frames wait for usable ones.
                Err(_) => self.avc = None,
            }
        }
        if self.avc.is_none() {
            // Nothing can be decoded before the first SPS/PPS.
            self.unsupported_frames += 1;
            return;
        }
        // AVC packet type 1 (NALU), then the composition time.
        let header = [if frame.keyframe { 0x17 } else { 0x27 }, 1];
        out.push(coded_frame_tag(&header, frame, ts, &nal_units));
    }

    /// HEVC through enhanced RTMP: `hvc1` FourCC, SequenceStart with the configuration record,
    /// then CodedFrames with their composition time.
    fn write_hevc(&mut self, frame: &Frame, out: &mut Vec<FlvTag>) {
        let (mut vps, mut sps, mut pps) = (None, None, None);
        let mut nal_units = Vec::new();
        for nal in AnnexBNalUnits::new(&frame.data) {
            let Some(&header) = nal.first() else { continue };
            match HevcNalType::from_header(header) {
                HevcNalType::Vps => vps = Some(nal),
                HevcNalType::Sps => sps = Some(nal),
                HevcNalType::Pps => pps = Some(nal),
                HevcNalType::AccessUnitDelimiter => {}
                _ => nal_units.push(nal),
            }
        }
        let ts = timestamp(frame.dts.0);
        if let (Some(vps), Some(sps), Some(pps)) = (vps, sps, pps)
            && let Some(record) = hevc_decoder_config_record(vps, sps, pps)
            && self.hevc.as_ref() != Some(&record)
        {
            let header = [
                0x80 | (1 << 4) | ENHANCED_SEQUENCE_START,
                b'h',
                b'v',
                b'c',
                b'1',
            ];
            out.push(sequence_header_tag(&header, &record, ts));
            self.hevc = Some(record);
        }
        if self.hevc.is_none() {
            self.unsupported_frames += 1;
            return;
        }
        let frame_type: u8 = if frame.keyframe { 1 } else { 2 };
        let header = [
            0x80 | (frame_type << 4) | ENHANCED_CODED_FRAMES,
            b'h',
            b'v',
            b'c',
            b'1',
        ];
        out.push(coded_frame_tag(&header, frame, ts, &nal_units));
    }

    /// MP3 is FLV sound format 2, frames as they are. FLV has no code for MPEG Layer I or II
    /// (MP2), so those are counted as unsupported.
    fn write_mp3(&mut self, frame: &Frame, out: &mut Vec<FlvTag>) {
        let Some(header) = MpegAudioHeader::parse(&frame.data).filter(|h| h.layer == 3) else {
            self.unsupported_frames += 1;
            return;
        };
        // The rate flags stop at 44 kHz; decoders take the real rate from the frame header
        // (ffmpeg writes 48 kHz MP3 the same way).
        let rate = match header.sample_rate {
            32_000.. => 3,
            16_000.. => 2,
            _ => 1,
        };
        let flags = (2 << 4) | (rate << 2) | (1 << 1) | u8::from(header.channels == 2);
        let mut body = BytesMut::with_capacity(frame.data.len() + 1);
        body.put_u8(flags);
        body.put_slice(&frame.data);
        out.push(FlvTag {
            kind: TagKind::Audio,
            timestamp_ms: timestamp(frame.dts.0),
            body: body.freeze(),
            keyframe: true,
        });
    }

    fn write_aac(&mut self, frame: &Frame, out: &mut Vec<FlvTag>) {
        let Some(header) = AdtsHeader::parse(&frame.data) else {
            self.unsupported_frames += 1;
            return;
        };
        let ts = timestamp(frame.dts.0);
        // 0xAF: AAC, 44 kHz, 16-bit, stereo (FLV's fixed flags for AAC).
        let config = header.audio_specific_config().to_bytes();
        if self.audio_config != Some(config) {
            out.push(FlvTag {
                kind: TagKind::Audio,
                timestamp_ms: ts,
                body: Bytes::from(vec![0xAF, 0, config[0], config[1]]),
                keyframe: true,
            });
            self.audio_config = Some(config);
        }
        let payload = frame.data.slice(
            header.header_length.min(frame.data.len())..header.frame_length.min(frame.data.len()),
        );
        let mut body = BytesMut::with_capacity(payload.len() + 2);
        body.put_slice(&[0xAF, 1]);
        body.put_slice(&payload);
        out.push(FlvTag {
            kind: TagKind::Audio,
            timestamp_ms: ts,
            body: body.freeze(),
            keyframe: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use lunora_media::{MpegTime, TrackId};

    use super::*;
    use crate::{FlvDemux, FlvEvent};

    #[test]
    fn mp3_is_carried_as_sound_format_2_and_mp2_is_not() {
        let audio = |header: [u8; 4]| Frame {
            track: TrackId(2),
            codec: Codec::MpegAudio,
            pts: MpegTime(90_000),
            dts: MpegTime(90_000),
            keyframe: true,
            data: Bytes::from([&header[..], &[0x55; 100]].concat()),
        };
        let mut mux = FlvMux::new();
        let mut tags = Vec::new();
        // MPEG-1 Layer III, 48 kHz, stereo.
        mux.write_frame(&audio([0xFF, 0xFB, 0x94, 0x64]), &mut tags);
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].body[0], 0x2F, "MP3, 44 kHz flag, 16-bit, stereo");
        assert_eq!(&tags[0].body[1..5], &[0xFF, 0xFB, 0x94, 0x64]);
        assert_eq!(tags[0].timestamp_ms, 1000);
        // MPEG-1 Layer II: FLV has no code for it.
        tags.clear();
        mux.write_frame(&audio([0xFF, 0xFD, 0x84, 0x04]), &mut tags);
        assert!(tags.is_empty());
        assert_eq!(mux.unsupported_frames, 1);
    }

    #[test]
    fn an_oversized_sps_is_not_sent_with_a_truncated_length() {
        let mut data = vec![0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1F];
        data.resize(70_004, 0xAB);
        data.extend([0, 0, 0, 1, 0x68, 0xEE, 0, 0, 0, 1, 0x65, 0x88]);
        let frame = Frame {
            track: TrackId(1),
            codec: Codec::H264,
            pts: MpegTime(0),
            dts: MpegTime(0),
            keyframe: true,
            data: data.into(),
        };
        let mut mux = FlvMux::new();
        let mut tags = Vec::new();
        mux.write_frame(&frame, &mut tags);
        assert!(tags.is_empty(), "{} tags written", tags.len());
        assert_eq!(mux.unsupported_frames, 1);
    }

    /// What lunora's own RTMP ingest makes of `tags`; every tag must be accepted.
    fn demux_tags(tags: &[FlvTag]) -> Vec<Frame> {
        let mut demux = FlvDemux::new();
        let mut events = Vec::new();
        for tag in tags {
            match tag.kind {
                TagKind::Video => demux.handle_video(tag.timestamp_ms, &tag.body, &mut events),
                TagKind::Audio => demux.handle_audio(tag.timestamp_ms, &tag.body, &mut events),
            }
            .expect("valid tag");
        }
        events
            .into_iter()
            .filter_map(|e| {
                if let FlvEvent::Frame(f) = e {
                    Some(f)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn frames_round_trip_through_flv_tags() {
        let video = Frame {
            track: TrackId(1),
            codec: Codec::H264,
            pts: MpegTime(90 * 1080),
            dts: MpegTime(90 * 1000),
            keyframe: true,
            data: Bytes::from_static(&[
                0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x67, 0x64, 0, 0x1F, 0, 0, 0, 1, 0x68, 0xEE, 0,
                0, 0, 1, 0x65, 0x88, 0x84,
            ]),
        };
        let asc = lunora_media::AudioSpecificConfig {
            audio_object_type: 2,
            sampling_frequency_index: 3,
            channel_configuration: 2,
        };
        let mut adts = asc.adts_header(3).to_vec();
        adts.extend([1, 2, 3]);
        let audio = Frame {
            track: TrackId(2),
            codec: Codec::AacAdts,
            pts: MpegTime(90 * 1010),
            dts: MpegTime(90 * 1010),
            keyframe: true,
            data: adts.into(),
        };
        let mut mux = FlvMux::new();
        let mut tags = Vec::new();
        mux.write_frame(&video, &mut tags);
        mux.write_frame(&audio, &mut tags);
        mux.write_frame(&video, &mut tags);
        assert_eq!(tags.len(), 5, "sequence headers once, then frames");
        let frames = demux_tags(&tags);
        assert_eq!(frames.len(), 3);
        assert_eq!((frames[0].dts, frames[0].pts), (video.dts, video.pts));
        // The AUD is gone; SPS/PPS stay in band.
        assert_eq!(&frames[0].data[..], &video.data[6..]);
        assert_eq!(frames[1].data, audio.data);
    }

    /// HEVC over enhanced RTMP, checked against a real encoder's stream (libx265) and the
    /// configuration record ffmpeg writes for it into MP4 (testdata/hevc_1s.txt).
    #[test]
    fn hevc_goes_out_as_enhanced_rtmp_with_the_record_ffmpeg_writes() {
        use lunora_ts::{AnalyserSettings, TsInput};
        let (_, frames) = TsInput::from_recording(
            AnalyserSettings::default(),
            include_bytes!("../testdata/hevc_1s.ts"),
        )
        .take_programs_and_frames();
        assert_eq!(frames.len(), 25);
        let mut mux = FlvMux::new();
        let mut tags = Vec::new();
        for frame in &frames {
            mux.write_frame(frame, &mut tags);
        }
        assert_eq!(tags.len(), 26, "one sequence start, then a tag per frame");
        assert_eq!(&tags[0].body[..5], &[0x90, b'h', b'v', b'c', b'1']);
        let ours = &tags[0].body[5..];
        let ffmpeg: &[u8] = include_bytes!("../testdata/hevc_1s.hvcC");
        // Profile, tier, level, chroma format and bit depths exactly as ffmpeg writes them;
        // ffmpeg also derives the spatial segmentation and parallelism hints we leave unknown.
        assert_eq!(&ours[..13], &ffmpeg[..13]);
        assert_eq!(&ours[16..19], &ffmpeg[16..19]);
        assert_eq!(
            ours[21] & 0x3F,
            ffmpeg[21] & 0x3F,
            "temporal layers, nesting, length size"
        );
        // The arrays, but for array_completeness: ffmpeg writes 0 (its `hev1` entry allows
        // parameter sets in band); we send them only in the record, so we set it.
        let arrays = |r: &[u8]| -> Vec<u8> {
            let mut bytes = r[22..].to_vec();
            for at in [1, 1 + 5 + 24, 1 + 5 + 24 + 5 + 43] {
                bytes[at] &= 0x3F;
            }
            bytes
        };
        assert_eq!(arrays(ours), arrays(ffmpeg), "the VPS, SPS and PPS arrays");
        assert!(ours[23] & 0x80 != 0);
        assert_eq!(
            crate::HevcDecoderConfig::parse(ours).map(|c| c.parameter_sets.len()),
            Ok(3)
        );

        let back = demux_tags(&tags);
        assert_eq!(back.len(), frames.len());
        for (sent, received) in frames.iter().zip(&back) {
            assert_eq!(
                (
                    received.codec,
                    received.keyframe,
                    received.dts.0 / 90,
                    received.pts.0 / 90
                ),
                (Codec::Hevc, sent.keyframe, sent.dts.0 / 90, sent.pts.0 / 90)
            );
            let slices = |f: &Frame| -> Vec<Vec<u8>> {
                AnnexBNalUnits::new(&f.data)
                    .filter(|n| {
                        n.first().is_some_and(|h| {
                            matches!(
                                HevcNalType::from_header(*h),
                                HevcNalType::Irap(_) | HevcNalType::Other(0..=31)
                            )
                        })
                    })
                    .map(<[u8]>::to_vec)
                    .collect()
            };
            assert_eq!(slices(received), slices(sent), "slices survive the trip");
        }
    }
}
