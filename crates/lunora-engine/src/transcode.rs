//! Transcoding coded frames into what a platform takes, on GStreamer: [`Transcoder`] (a
//! channel's program → H.264 at a fixed size, frame rate and keyframe interval, progressive,
//! with AAC 48 kHz stereo) and [`AudioToAac`] (any audio GStreamer decodes → AAC).
//!
//! Frames go in through `appsrc`s and are never waited for: an `appsrc` holding `BACKLOG`
//! frames means the pipeline is behind, and the frame is dropped and counted (video until the
//! next keyframe, so the decoder restarts clean). What comes out stays on the input's 90 kHz
//! timeline: each input time is pushed as a running time from a fixed anchor, and each output
//! running time is mapped back through the same anchor.

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use lunora_media::{Codec, Frame, MpegTime, Program, Track, TrackId};
use tokio::sync::mpsc;

use crate::EngineError;
use crate::pipeline::{self, AAC_ENCODER, Item, Running, Tracks, VideoEncoding};
use crate::timeline::Kind;

/// Frames an `appsrc` may hold before the next one is dropped: about a second of video.
const BACKLOG: u64 = 64;

/// How far before the first frame the anchor is set: audio that precedes the first video frame
/// (or a frame reordered before it) still has a positive running time.
const ANCHOR_MARGIN: i64 = 10 * 90_000;

/// Output queue between the pipeline's sinks and its reader.
const OUTPUT_QUEUE: usize = 128;

/// What a destination gets from a transcode: fixed size, frame rate and keyframe interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TranscodeProfile {
    pub width: u32,
    pub height: u32,
    /// Frames per second as a fraction (numerator, denominator).
    pub frame_rate: (u32, u32),
    pub video_bitrate_kbps: u32,
    pub keyframe_interval_s: u32,
    /// Interlaced pictures are deinterlaced (progressive ones pass either way).
    pub deinterlace: bool,
}

impl TranscodeProfile {
    /// Frames between keyframes.
    fn keyframe_interval(&self) -> u32 {
        let (num, den) = self.frame_rate;
        (self.keyframe_interval_s * num).div_ceil(den.max(1))
    }

    fn video_branch(&self) -> String {
        let (num, den) = self.frame_rate;
        // One picture per frame (the top field) at up to 30 fps, one per field above: the
        // cheaper path when the field rate would only be halved again by `videorate`.
        let deinterlace = if !self.deinterlace {
            "deinterlace mode=disabled".to_string()
        } else if num > 30 * den {
            "deinterlace mode=auto fields=all".to_string()
        } else {
            "deinterlace mode=auto fields=top".to_string()
        };
        // Frames are dropped to the profile's rate before they are scaled, not after; from the
        // first frame's time, not the segment's start, so the timeline maps back.
        format!(
            "queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 ! decodebin ! \
             videoconvert ! {deinterlace} ! videorate skip-to-first=true ! video/x-raw,framerate={num}/{den} ! \
             videoscale ! video/x-raw,width={w},height={h},pixel-aspect-ratio=1/1 ! {encoder}",
            w = self.width,
            h = self.height,
            encoder = pipeline::h264_encoder(VideoEncoding {
                bitrate_kbps: self.video_bitrate_kbps,
                keyframe_interval: self.keyframe_interval(),
            }),
        )
    }
}

/// The GStreamer caps of a `Frame` codec the transcoder can decode.
fn input_caps(codec: Codec) -> Option<&'static str> {
    match codec {
        Codec::H264 => Some("video/x-h264,stream-format=byte-stream,alignment=au"),
        Codec::Hevc => Some("video/x-h265,stream-format=byte-stream,alignment=au"),
        Codec::AacAdts => Some("audio/mpeg,mpegversion=4,stream-format=adts"),
        Codec::AacLatm => Some("audio/mpeg,mpegversion=4,stream-format=loas"),
        Codec::MpegAudio => Some("audio/mpeg,mpegversion=1"),
        Codec::Ac3 => Some("audio/x-ac3"),
        Codec::Eac3 => Some("audio/x-eac3"),
        Codec::Scte35 | Codec::Private { .. } => None,
    }
}

/// What became of an offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Taken,
    /// The pipeline is behind (or waits for a keyframe after being behind).
    Dropped,
    /// Not a track this transcode reads.
    Ignored,
}

/// Input times pushed as running times from an anchor, and back.
#[derive(Debug, Default, Clone, Copy)]
struct Anchor(Option<i64>);

impl Anchor {
    fn running_time(&mut self, ticks: i64) -> Option<gst::ClockTime> {
        let anchor = *self.0.get_or_insert(ticks - ANCHOR_MARGIN);
        let since = u64::try_from(ticks - anchor).ok()?;
        Some(gst::ClockTime::from_nseconds(
            since.saturating_mul(100_000) / 9,
        ))
    }

    fn ticks(self, ticks: i64) -> i64 {
        self.0.unwrap_or(0) + ticks
    }
}

/// One `appsrc` and the track it reads.
#[derive(Debug)]
struct Input {
    track: TrackId,
    source: gst_app::AppSrc,
    /// After a drop, video waits for a keyframe.
    waiting_for_keyframe: bool,
}

/// A pipeline from `appsrc`s to `appsink`s, shared by both converters.
#[derive(Debug)]
struct Converter {
    running: Running,
    inputs: Vec<Input>,
    anchor: Anchor,
    /// Output track per kind.
    video_out: Option<TrackId>,
    audio_out: Option<TrackId>,
    dropped: u64,
}

impl Converter {
    /// `branches`: per input, (track, codec caps, kind, what follows its `appsrc`).
    fn start(branches: Vec<(TrackId, &str, Kind, String)>) -> Result<Converter, EngineError> {
        pipeline::init()?;
        // Caps are set on the appsrc, never written into the description: a caller's caps
        // string cannot add elements to the pipeline.
        let caps = branches
            .iter()
            .map(|(_, caps, _, _)| {
                caps.parse::<gst::Caps>().map_err(|_| {
                    EngineError::Pipeline(format!(
                        "{caps:?} are not GStreamer caps (e.g. audio/x-opus,channel-mapping-family=0,channels=2)"
                    ))
                })
            })
            .collect::<Result<Vec<gst::Caps>, EngineError>>()?;
        let description: Vec<String> = branches
            .iter()
            .enumerate()
            .map(|(n, (_, _, kind, branch))| {
                let (sink, codec) = match kind {
                    Kind::Video => ("video", Codec::H264),
                    Kind::Audio => ("audio", Codec::AacAdts),
                };
                format!(
                    "appsrc name=in{n} format=time is-live=true ! {branch} ! {} ! \
                     appsink name={sink} sync=false",
                    pipeline::sink_caps(codec)
                )
            })
            .collect();
        let pipeline = pipeline::launch(&description.join(" "))?;
        let (sender, items) = mpsc::channel(OUTPUT_QUEUE);
        let mut tracks = Vec::new();
        let mut inputs = Vec::new();
        let (mut video_out, mut audio_out) = (None, None);
        for (n, (track, _, kind, _)) in branches.iter().enumerate() {
            let (name, codec) = match kind {
                Kind::Video => ("video", Codec::H264),
                Kind::Audio => ("audio", Codec::AacAdts),
            };
            let sink = pipeline
                .by_name(name)
                .and_then(|e| e.dynamic_cast::<gst_app::AppSink>().ok())
                .ok_or_else(|| {
                    EngineError::Pipeline(format!("the transcode pipeline has no {name} sink"))
                })?;
            pipeline::drain_into(&sink, (*kind, codec), sender.clone());
            let source = pipeline
                .by_name(&format!("in{n}"))
                .and_then(|e| e.dynamic_cast::<gst_app::AppSrc>().ok())
                .ok_or_else(|| {
                    EngineError::Pipeline(format!("the transcode pipeline has no input {n}"))
                })?;
            source.set_caps(caps.get(n));
            tracks.push((*kind, codec));
            inputs.push(Input {
                track: *track,
                source,
                waiting_for_keyframe: *kind == Kind::Video,
            });
            match kind {
                Kind::Video => video_out = Some(*track),
                Kind::Audio => audio_out = Some(*track),
            }
        }
        let running = pipeline::play(pipeline, items, Tracks::fixed(tracks))?;
        Ok(Converter {
            running,
            inputs,
            anchor: Anchor::default(),
            video_out,
            audio_out,
            dropped: 0,
        })
    }

    fn offer(&mut self, frame: &Frame) -> Offer {
        let Some(input) = self.inputs.iter_mut().find(|i| i.track == frame.track) else {
            return Offer::Ignored;
        };
        let video = frame.codec.is_video();
        let behind = input.source.current_level_buffers() >= BACKLOG;
        if behind || (video && input.waiting_for_keyframe && !frame.keyframe) {
            input.waiting_for_keyframe = video;
            self.dropped += 1;
            return Offer::Dropped;
        }
        input.waiting_for_keyframe = false;
        let (Some(pts), Some(dts)) = (
            self.anchor.running_time(frame.pts.0),
            self.anchor.running_time(frame.dts.0),
        ) else {
            // From before the anchor: nothing can place it.
            self.dropped += 1;
            return Offer::Dropped;
        };
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        {
            let buffer = buffer.make_mut();
            buffer.set_pts(pts);
            buffer.set_dts(dts);
            if !frame.keyframe {
                buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        match input.source.push_buffer(buffer) {
            Ok(_) => Offer::Taken,
            Err(_) => {
                self.dropped += 1;
                Offer::Dropped
            }
        }
    }

    /// The next output frame; `None` once the pipeline has stopped.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            let Item::Frame {
                kind,
                codec,
                stamp,
                keyframe,
                data,
            } = self.running.items.recv().await?
            else {
                continue;
            };
            let track = match kind {
                Kind::Video => self.video_out,
                Kind::Audio => self.audio_out,
            };
            let Some(track) = track else {
                continue;
            };
            return Some(Frame {
                track,
                codec,
                pts: MpegTime(self.anchor.ticks(stamp.pts)),
                dts: MpegTime(self.anchor.ticks(stamp.dts)),
                keyframe,
                data,
            });
        }
    }
}

/// A channel's program transcoded to one [`TranscodeProfile`]: its first video track to H.264,
/// its first audio track to AAC 48 kHz stereo, on the input's timeline and track ids.
#[derive(Debug)]
pub struct Transcoder {
    converter: Converter,
    program: Program,
    /// The codecs read, to tell whether a new program needs a new pipeline.
    reads: Vec<(TrackId, Codec)>,
}

impl Transcoder {
    /// Starts the pipeline for `program`. Blocking (GStreamer changes state): call from a
    /// blocking context.
    pub fn start(profile: &TranscodeProfile, program: &Program) -> Result<Transcoder, EngineError> {
        let video = program
            .tracks
            .iter()
            .find(|t| t.codec.is_video() && input_caps(t.codec).is_some());
        let audio = program
            .tracks
            .iter()
            .find(|t| t.codec.is_audio() && input_caps(t.codec).is_some());
        let Some(video) = video else {
            return Err(EngineError::Pipeline(
                "the program has no H.264 or HEVC video to transcode".to_string(),
            ));
        };
        let mut branches = vec![(
            video.id,
            input_caps(video.codec).unwrap_or_default(),
            Kind::Video,
            profile.video_branch(),
        )];
        if let Some(audio) = audio {
            branches.push((
                audio.id,
                input_caps(audio.codec).unwrap_or_default(),
                Kind::Audio,
                audio_branch(),
            ));
        }
        let reads: Vec<(TrackId, Codec)> = [Some(video), audio]
            .into_iter()
            .flatten()
            .map(|t| (t.id, t.codec))
            .collect();
        let program = Program {
            tracks: [
                Some(Track::new(video.id, Codec::H264)),
                audio.map(|a| Track::new(a.id, Codec::AacAdts)),
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        Ok(Transcoder {
            converter: Converter::start(branches)?,
            program,
            reads,
        })
    }

    /// Whether `program` is read by this pipeline as it is (a new resolution is; a new codec
    /// or track is not).
    pub fn reads(&self, program: &Program) -> bool {
        let video = program.tracks.iter().find(|t| t.codec.is_video());
        let audio = program.tracks.iter().find(|t| t.codec.is_audio());
        let wanted: Vec<(TrackId, Codec)> = [video, audio]
            .into_iter()
            .flatten()
            .map(|t| (t.id, t.codec))
            .collect();
        wanted == self.reads
    }

    /// What comes out.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Hands a frame to the pipeline without waiting.
    pub fn offer(&mut self, frame: &Frame) -> Offer {
        self.converter.offer(frame)
    }

    /// Frames dropped because the pipeline was behind.
    pub fn dropped(&self) -> u64 {
        self.converter.dropped
    }

    pub async fn next(&mut self) -> Option<Frame> {
        self.converter.next().await
    }

    /// The pipeline's first error since the last call, naming the element.
    pub fn error(&self) -> Option<String> {
        self.converter.running.error()
    }

    /// Stops the pipeline (to `Null`) and frees it. Blocking.
    pub fn stop(self) {
        self.converter.running.stop();
    }
}

fn audio_branch() -> String {
    format!("queue ! decodebin ! {AAC_ENCODER}")
}

/// Audio in any format GStreamer decodes (Opus from WebRTC, say) → AAC 48 kHz stereo with ADTS
/// headers, on the input's timeline.
#[derive(Debug)]
pub struct AudioToAac {
    converter: Converter,
    track: TrackId,
}

impl AudioToAac {
    /// `caps`: the input's GStreamer caps, e.g.
    /// `audio/x-opus,channel-mapping-family=0,channels=2,rate=48000`. Blocking.
    pub fn start(caps: &str, track: TrackId) -> Result<AudioToAac, EngineError> {
        if !caps.starts_with("audio/") {
            return Err(EngineError::Pipeline(format!(
                "{caps:?} is not an audio format (give GStreamer caps such as audio/x-opus,channels=2)"
            )));
        }
        Ok(AudioToAac {
            converter: Converter::start(vec![(track, caps, Kind::Audio, audio_branch())])?,
            track,
        })
    }

    /// Hands one coded audio frame (one packet) at `pts` to the pipeline without waiting.
    pub fn offer(&mut self, data: Bytes, pts: MpegTime) -> Offer {
        // Only the track and times are read; the codec is the input's, whatever its caps say.
        self.converter.offer(&Frame {
            track: self.track,
            codec: Codec::Private { stream_type: 0 },
            pts,
            dts: pts,
            keyframe: true,
            data,
        })
    }

    /// Frames dropped because the pipeline was behind.
    pub fn dropped(&self) -> u64 {
        self.converter.dropped
    }

    /// The next AAC frame.
    pub async fn next(&mut self) -> Option<Frame> {
        self.converter.next().await
    }

    pub fn error(&self) -> Option<String> {
        self.converter.running.error()
    }

    /// Stops the pipeline (to `Null`) and frees it. Blocking.
    pub fn stop(self) {
        self.converter.running.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use lunora_media::{AdtsHeader, keyframe_video_format};

    use super::*;
    use crate::pipeline::file;

    const VIDEO: TrackId = TrackId(0x100);
    const AUDIO: TrackId = TrackId(0x101);

    /// An interlaced (field-coded, top field first) 29.97 fps H.264 + AAC 44.1 kHz file made by
    /// ffmpeg, the shape of a broadcast encoder's 1080i at a size a test can afford (in MP4:
    /// the engine's file reader is what turns it into frames).
    fn interlaced(dir: &Path, name: &str, size: &str, seconds: u32) -> PathBuf {
        let path = dir.join(name);
        let status = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!(
                "testsrc2=size={size}:rate=30000/1001:duration={seconds}"
            ))
            .args(["-f", "lavfi", "-i"])
            .arg(format!(
                "sine=frequency=440:sample_rate=44100:duration={seconds}"
            ))
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "90"])
            .args([
                "-flags",
                "+ildct+ilme",
                "-x264opts",
                "tff=1",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-c:a", "aac", "-ac", "2"])
            .arg(&path)
            .status()
            .expect("ffmpeg is installed (scripts/test installs it)");
        assert!(status.success());
        path
    }

    /// Every access unit of a file as channel frames, shifted by `offset` ticks.
    async fn frames_of(path: &Path, offset: i64) -> Vec<Frame> {
        let mut running = tokio::task::block_in_place(|| {
            file(
                path,
                VideoEncoding {
                    bitrate_kbps: 1_000,
                    keyframe_interval: 60,
                },
            )
        })
        .unwrap();
        let mut frames = Vec::new();
        let mut ended = 0;
        while ended < 2 {
            match tokio::time::timeout(Duration::from_secs(20), running.items.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the file is read within 20 s: {} frames, {ended} ended, {:?}",
                        frames.len(),
                        running.error()
                    )
                }) {
                Some(Item::Frame {
                    kind,
                    codec,
                    stamp,
                    keyframe,
                    data,
                }) => frames.push(Frame {
                    track: if kind == Kind::Video { VIDEO } else { AUDIO },
                    codec,
                    pts: MpegTime(stamp.pts + offset),
                    dts: MpegTime(stamp.dts + offset),
                    keyframe,
                    data,
                }),
                Some(Item::Ended(_)) => ended += 1,
                None => break,
            }
        }
        tokio::task::block_in_place(|| running.stop());
        frames.sort_by_key(|f| f.dts);
        frames
    }

    fn program() -> Program {
        Program {
            tracks: vec![
                Track::new(VIDEO, Codec::H264),
                Track::new(AUDIO, Codec::AacAdts),
            ],
        }
    }

    /// Offers every frame at twice real time, as a channel would (never waiting), and collects
    /// what comes out until nothing has for two seconds.
    async fn transcode(transcoder: &mut Transcoder, frames: &[Frame]) -> Vec<Frame> {
        let mut out = Vec::new();
        let start = tokio::time::Instant::now();
        let first = frames.first().map_or(0, |f| f.dts.0);
        for frame in frames {
            let due =
                Duration::from_micros(u64::try_from((frame.dts.0 - first) * 100 / 18).unwrap_or(0));
            loop {
                match tokio::time::timeout_at(start + due, transcoder.next()).await {
                    Ok(Some(frame)) => out.push(frame),
                    Ok(None) => panic!("the transcoder stopped: {:?}", transcoder.error()),
                    Err(_) => break,
                }
            }
            assert_eq!(
                transcoder.offer(frame),
                Offer::Taken,
                "at dts {}",
                frame.dts.0
            );
        }
        while let Ok(Some(frame)) =
            tokio::time::timeout(Duration::from_secs(2), transcoder.next()).await
        {
            out.push(frame);
        }
        out
    }

    const PROFILE: TranscodeProfile = TranscodeProfile {
        width: 640,
        height: 360,
        frame_rate: (30_000, 1_001),
        video_bitrate_kbps: 800,
        keyframe_interval_s: 2,
        deinterlace: true,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interlaced_video_of_two_sizes_comes_out_progressive_at_one_size_with_2_s_gops() {
        let dir = tempfile::tempdir().unwrap();
        let first = interlaced(dir.path(), "a.mp4", "720x576", 4);
        let second = interlaced(dir.path(), "b.mp4", "480x272", 4);
        let mut frames = frames_of(&first, 900_000).await;
        assert!(
            frames
                .iter()
                .filter(|&f| f.keyframe)
                .filter_map(|f| keyframe_video_format(f.codec, &f.data))
                .all(|format| format.interlaced),
            "the source is field-coded"
        );
        // The second file follows the first on one timeline, as after a failover.
        let end = frames.iter().map(|f| f.dts.0).max().unwrap() + 3_003;
        frames.extend(frames_of(&second, end).await);
        let mut transcoder =
            tokio::task::block_in_place(|| Transcoder::start(&PROFILE, &program())).unwrap();
        assert_eq!(transcoder.program(), &program());
        let out = transcode(&mut transcoder, &frames).await;
        assert_eq!(transcoder.error(), None);
        assert_eq!(transcoder.dropped(), 0);
        tokio::task::block_in_place(|| transcoder.stop());

        let video: Vec<&Frame> = out.iter().filter(|f| f.track == VIDEO).collect();
        let audio: Vec<&Frame> = out.iter().filter(|f| f.track == AUDIO).collect();
        // 8 s at 29.97 fps, less what the encoder still held.
        assert!(video.len() > 200, "{} video frames", video.len());
        let formats: Vec<_> = video
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| keyframe_video_format(Codec::H264, &f.data).expect("SPS on every keyframe"))
            .collect();
        for format in &formats {
            assert_eq!((format.width, format.height), (640, 360), "{format:?}");
            assert!(!format.interlaced, "{format:?}");
        }
        let keyframes: Vec<i64> = video
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.dts.0)
            .collect();
        assert!(keyframes.len() >= 4, "{keyframes:?}");
        for pair in keyframes.windows(2) {
            let gap = pair[1] - pair[0];
            assert!((gap - 180_000).abs() <= 3_003, "keyframes {keyframes:?}");
        }
        // On the input's timeline: the first picture out is the first one in.
        let first_in = frames.iter().find(|f| f.track == VIDEO).unwrap().pts.0;
        let first_out = video.iter().map(|f| f.pts.0).min().unwrap();
        assert!(
            (first_out - first_in).abs() <= 3_003,
            "{first_in} → {first_out}"
        );
        for pair in video.windows(2) {
            assert!(pair[1].dts > pair[0].dts, "video dts must rise");
        }
        assert!(audio.len() > 300, "{} audio frames", audio.len());
        for frame in &audio {
            let header = AdtsHeader::parse(&frame.data).expect("ADTS");
            assert_eq!(
                (header.sample_rate(), header.channel_configuration),
                (48_000, 2)
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transcoder_that_is_behind_drops_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let frames = frames_of(&interlaced(dir.path(), "a.mp4", "720x576", 4), 0).await;
        let mut transcoder =
            tokio::task::block_in_place(|| Transcoder::start(&PROFILE, &program())).unwrap();
        // Everything at once and nothing read: the appsrc fills and the rest is dropped, each
        // offer returning at once.
        let started = std::time::Instant::now();
        let offers: Vec<Offer> = frames.iter().map(|f| transcoder.offer(f)).collect();
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(offers.contains(&Offer::Dropped), "nothing dropped");
        assert_eq!(
            transcoder.dropped(),
            offers.iter().filter(|o| **o == Offer::Dropped).count() as u64
        );
        tokio::task::block_in_place(|| transcoder.stop());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opus_becomes_aac_48_khz_stereo_on_the_same_timestamps() {
        pipeline::init().unwrap();
        // 2 s of Opus (20 ms packets) from GStreamer's own encoder.
        let (sender, items) = mpsc::channel(1_000);
        let source = pipeline::launch(
            "audiotestsrc num-buffers=100 samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=2 ! \
             opusenc ! appsink name=sink sync=false caps=audio/x-opus",
        )
        .unwrap();
        let sink = source
            .by_name("sink")
            .and_then(|e| e.dynamic_cast::<gst_app::AppSink>().ok())
            .unwrap();
        pipeline::drain_into(&sink, (Kind::Audio, Codec::AacAdts), sender);
        let mut source = pipeline::play(source, items, Tracks::fixed(Vec::new())).unwrap();
        let mut packets = Vec::new();
        while let Ok(Some(Item::Frame { stamp, data, .. })) =
            tokio::time::timeout(Duration::from_secs(5), source.items.recv()).await
        {
            packets.push((stamp.pts, data));
        }
        tokio::task::block_in_place(|| source.stop());
        assert!(packets.len() >= 100, "{} Opus packets", packets.len());

        let mut aac = tokio::task::block_in_place(|| {
            AudioToAac::start(
                "audio/x-opus,channel-mapping-family=0,channels=2,rate=48000",
                AUDIO,
            )
        })
        .unwrap();
        let offset = 5 * 90_000;
        let mut out = Vec::new();
        for chunk in packets.chunks(20) {
            for (pts, data) in chunk {
                let offer = aac.offer(data.clone(), MpegTime(pts + offset));
                assert_eq!(offer, Offer::Taken, "pts {pts}: {:?}", aac.error());
            }
            while let Ok(Some(frame)) =
                tokio::time::timeout(Duration::from_millis(200), aac.next()).await
            {
                out.push(frame);
            }
        }
        while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(2), aac.next()).await {
            out.push(frame);
        }
        assert_eq!(aac.error(), None);
        tokio::task::block_in_place(|| aac.stop());
        // 2 s is 93.75 AAC frames of 1024 samples; the encoder keeps the last partial one.
        assert!((90..=95).contains(&out.len()), "{} AAC frames", out.len());
        for frame in &out {
            assert_eq!(frame.track, AUDIO);
            assert_eq!(frame.codec, Codec::AacAdts);
            let header = AdtsHeader::parse(&frame.data).expect("ADTS");
            assert_eq!(
                (header.sample_rate(), header.channel_configuration),
                (48_000, 2)
            );
        }
        let first = out.iter().map(|f| f.pts.0).min().unwrap();
        assert!(
            (first - offset).abs() <= 2 * 1_920,
            "first AAC pts {first}, input {offset}"
        );
        let last = out.iter().map(|f| f.pts.0).max().unwrap();
        assert!(
            (last - (offset + 2 * 90_000)).abs() <= 6_000,
            "last AAC pts {last}"
        );
    }

    #[test]
    fn audio_caps_that_are_not_audio_or_not_caps_are_refused() {
        for caps in [
            "video/x-h264",
            "audio/x-opus ! filesink location=/tmp/lunora-should-not-exist",
        ] {
            let error = AudioToAac::start(caps, AUDIO).unwrap_err().to_string();
            assert!(error.contains(caps), "{error}");
        }
    }
}
