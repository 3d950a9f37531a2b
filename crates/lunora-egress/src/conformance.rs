//! What a platform accepts, checked against the stream actually sent: codec, keyframe interval,
//! frame rate, scan type, audio format. Pure; fed frames, it keeps the current list of problems
//! (fixing them by transcoding is a later feature).

use lunora_media::{AdtsHeader, Codec, Frame, MpegAudioHeader, keyframe_video_format};

/// A platform's published ingest rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlatformRules {
    pub name: &'static str,
    pub h264_only: bool,
    pub max_keyframe_interval_s: f64,
    pub max_fps: Option<f64>,
    pub audio_rates: &'static [u32],
    pub max_audio_channels: u8,
    pub progressive_only: bool,
    /// Takes MP3 audio besides AAC.
    pub mp3: bool,
}

impl PlatformRules {
    pub const YOUTUBE: PlatformRules = PlatformRules {
        name: "YouTube",
        h264_only: true,
        max_keyframe_interval_s: 4.0,
        max_fps: None,
        audio_rates: &[44_100, 48_000],
        max_audio_channels: 2,
        progressive_only: true,
        mp3: true,
    };
    pub const X: PlatformRules = PlatformRules {
        name: "X",
        h264_only: true,
        max_keyframe_interval_s: 3.0,
        max_fps: Some(60.0),
        audio_rates: &[44_100, 48_000],
        max_audio_channels: 2,
        progressive_only: true,
        mp3: false,
    };
    pub const LINKEDIN: PlatformRules = PlatformRules {
        name: "LinkedIn",
        h264_only: true,
        max_keyframe_interval_s: 2.0,
        max_fps: Some(30.0),
        audio_rates: &[48_000],
        max_audio_channels: 2,
        progressive_only: true,
        mp3: false,
    };
}

#[derive(Debug, Clone)]
pub struct Conformance {
    rules: PlatformRules,
    last_keyframe_dts: Option<i64>,
    longest_gop_s: f64,
    last_video_dts: Option<i64>,
    frame_ticks: Option<i64>,
    video_codec: Option<Codec>,
    interlaced: Option<bool>,
    audio: Option<(Codec, Option<(u32, u8)>)>,
    /// The layer of MPEG audio (3 is MP3), when a header was read.
    mpeg_layer: Option<u8>,
}

impl Conformance {
    pub fn new(rules: PlatformRules) -> Self {
        Conformance {
            rules,
            last_keyframe_dts: None,
            longest_gop_s: 0.0,
            last_video_dts: None,
            frame_ticks: None,
            video_codec: None,
            interlaced: None,
            audio: None,
            mpeg_layer: None,
        }
    }

    pub fn observe(&mut self, frame: &Frame) {
        let dts = frame.dts.0;
        if frame.codec.is_video() {
            self.video_codec = Some(frame.codec);
            if let Some(last) = self.last_video_dts
                && dts > last
            {
                self.frame_ticks = Some(dts - last);
            }
            self.last_video_dts = Some(dts);
            if frame.keyframe {
                if let Some(last) = self.last_keyframe_dts {
                    // The longest recent GOP, decaying so a fixed encoder clears the warning.
                    let gop = (dts - last) as f64 / 90_000.0;
                    self.longest_gop_s = gop.max(self.longest_gop_s * 0.9);
                }
                self.last_keyframe_dts = Some(dts);
                if let Some(format) = keyframe_video_format(frame.codec, &frame.data) {
                    self.interlaced = Some(format.interlaced);
                }
            }
        } else if frame.codec.is_audio() {
            let format = match frame.codec {
                Codec::AacAdts => AdtsHeader::parse(&frame.data)
                    .map(|h| (h.sample_rate(), h.channel_configuration)),
                Codec::MpegAudio => {
                    let header = MpegAudioHeader::parse(&frame.data);
                    self.mpeg_layer = header.map(|h| h.layer);
                    header.map(|h| (h.sample_rate, h.channels))
                }
                _ => None,
            };
            self.audio = Some((frame.codec, format));
        }
    }

    /// What currently breaks the platform's rules, in words an operator can act on.
    pub fn warnings(&self) -> Vec<String> {
        let r = &self.rules;
        let mut warnings = Vec::new();
        if r.h264_only && self.video_codec.is_some_and(|c| c != Codec::H264) {
            warnings.push(format!(
                "{} takes H.264 video; this channel sends {}",
                r.name,
                self.video_codec.map_or("?", |c| c.name())
            ));
        }
        if self.longest_gop_s > r.max_keyframe_interval_s {
            warnings.push(format!(
                "keyframe interval {:.1} s is over {}'s {} s",
                self.longest_gop_s, r.name, r.max_keyframe_interval_s
            ));
        }
        if let (Some(max), Some(ticks)) = (r.max_fps, self.frame_ticks) {
            let fps = 90_000.0 / ticks as f64;
            if fps > max + 0.5 {
                warnings.push(format!("{fps:.2} fps is over {}'s {max} fps", r.name));
            }
        }
        if r.progressive_only && self.interlaced == Some(true) {
            warnings.push(format!("interlaced video: {} expects progressive", r.name));
        }
        match self.audio {
            // FLV has a code for MP3 but none for Layer I/II (MP2): those are dropped, and
            // the platform gets no sound.
            Some((Codec::MpegAudio, _)) if self.mpeg_layer != Some(3) => warnings.push(format!(
                "audio is MPEG audio Layer I/II (MP2), which RTMP cannot carry: {} gets video only",
                r.name
            )),
            Some((Codec::MpegAudio, _)) if !r.mp3 => warnings.push(format!(
                "MP3 audio is not accepted by {}: it takes AAC",
                r.name
            )),
            Some((codec, _)) if codec != Codec::AacAdts && codec != Codec::MpegAudio => warnings
                .push(format!(
                    "{} audio is not accepted by {}: it gets video only",
                    codec.name(),
                    r.name
                )),
            Some((_, Some((rate, channels)))) => {
                if !r.audio_rates.contains(&rate) {
                    warnings.push(format!(
                        "audio at {rate} Hz: {} takes {:?} Hz",
                        r.name, r.audio_rates
                    ));
                }
                if channels > r.max_audio_channels {
                    warnings.push(format!(
                        "{channels} audio channels: {} takes at most {}",
                        r.name, r.max_audio_channels
                    ));
                }
            }
            _ => {}
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use lunora_media::{AudioSpecificConfig, MpegTime, TrackId};

    use super::*;

    fn video(dts: i64, keyframe: bool, codec: Codec) -> Frame {
        Frame {
            track: TrackId(0),
            codec,
            pts: MpegTime(dts),
            dts: MpegTime(dts),
            keyframe,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        }
    }

    #[test]
    fn long_gop_and_wrong_audio_rate_are_reported_for_linkedin() {
        let mut c = Conformance::new(PlatformRules::LINKEDIN);
        for n in 0..400i64 {
            c.observe(&video(n * 3003, n % 150 == 0, Codec::H264));
        }
        let asc = AudioSpecificConfig {
            audio_object_type: 2,
            sampling_frequency_index: 4,
            channel_configuration: 2,
        };
        let mut adts = asc.adts_header(4).to_vec();
        adts.extend([0; 4]);
        c.observe(&Frame {
            track: TrackId(1),
            codec: Codec::AacAdts,
            pts: MpegTime(0),
            dts: MpegTime(0),
            keyframe: true,
            data: adts.into(),
        });
        let w = c.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("keyframe interval 5.0 s"), "{w:?}");
        assert!(w[1].contains("44100 Hz"), "{w:?}");
    }

    fn mpeg_audio(header: &'static [u8]) -> Frame {
        Frame {
            track: TrackId(1),
            codec: Codec::MpegAudio,
            pts: MpegTime(0),
            dts: MpegTime(0),
            keyframe: true,
            data: Bytes::from_static(header),
        }
    }

    #[test]
    fn mp2_is_reported_as_not_reaching_the_platform() {
        let mut c = Conformance::new(PlatformRules::YOUTUBE);
        c.observe(&video(0, true, Codec::H264));
        // An MPEG-1 Layer II frame header, 48 kHz stereo.
        c.observe(&mpeg_audio(&[0xFF, 0xFD, 0x84, 0x04]));
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("MP2"), "{w:?}");
        assert!(w[0].contains("gets video only"), "{w:?}");
    }

    #[test]
    fn mp3_goes_to_youtube_but_not_to_platforms_that_take_aac_only() {
        // MPEG-1 Layer III, 48 kHz stereo.
        let mp3 = mpeg_audio(&[0xFF, 0xFB, 0x94, 0x64]);
        let mut youtube = Conformance::new(PlatformRules::YOUTUBE);
        youtube.observe(&mp3);
        assert!(youtube.warnings().is_empty(), "{:?}", youtube.warnings());
        let mut x = Conformance::new(PlatformRules::X);
        x.observe(&mp3);
        assert_eq!(
            x.warnings(),
            ["MP3 audio is not accepted by X: it takes AAC"]
        );
    }

    #[test]
    fn a_conforming_stream_has_no_warnings_and_hevc_does() {
        let mut c = Conformance::new(PlatformRules::YOUTUBE);
        for n in 0..200i64 {
            c.observe(&video(n * 3600, n % 50 == 0, Codec::H264));
        }
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        c.observe(&video(200 * 3600, true, Codec::Hevc));
        assert_eq!(c.warnings().len(), 1);
    }
}
