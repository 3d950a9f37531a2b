//! The content probe behind content health: a sampled, low-resolution decode of one input.
//!
//! Each track gets a small pipeline of its own: an `appsrc` fed with the input's access units,
//! a decoder, and an `appsink` whose callback measures what comes out — for video, five
//! 160×90 grey pictures a second (mean luma and the change from the previous picture); for
//! audio, the RMS level of every 100 ms. For content-matched alignment it also fingerprints
//! every decoded picture (16 × 9 block means of a 160 × 90 grey copy, with the picture's PTS
//! on the input's timeline). Measurements and fingerprints cross to the channel over bounded
//! queues with `try_send`, so a slow channel loses them, never stalls GStreamer.
//!
//! Offering a frame never blocks either: when the decoder is behind (its `appsrc` holds
//! `QUEUED` frames) video is dropped up to the next keyframe, so what is decoded stays
//! decodable. Starting and stopping a probe joins GStreamer's threads: do it off the async
//! runtime (`ContentProbe::start` and dropping are blocking).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use lunora_media::{Codec, Frame, MpegTime};
use lunora_switch::align::Fingerprint;
use lunora_switch::content::Measurement;
use tokio::sync::mpsc;

use crate::EngineError;
use crate::pipeline::{init, launch};

/// Frames a track's decoder may have waiting before more are dropped.
const QUEUED: u64 = 30;
/// Measurements waiting for the channel; beyond this they are dropped.
const MEASUREMENTS: usize = 64;
/// Fingerprints waiting for the channel (two seconds at 60 pictures a second).
const FINGERPRINTS: usize = 120;
/// Pictures measured per second.
const PICTURES_PER_SECOND: u32 = 5;
/// The measured picture: small enough that measuring costs nothing, big enough for a mean.
const WIDTH: usize = 160;
const HEIGHT: usize = 90;
/// Audio is measured over stretches this long.
const AUDIO_STRETCH: Duration = Duration::from_millis(100);
/// Timestamps handed to the decoders start this far in, so a frame shown before the first
/// keyframe (open GOP) is not before zero.
const START: i64 = 90_000;

/// What a probe is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProbeTasks {
    /// Content health: sampled pictures and audio levels.
    pub measure: bool,
    /// Content-matched alignment: every picture's fingerprint.
    pub fingerprint: bool,
}

/// A running probe for one input.
#[derive(Debug)]
pub struct ContentProbe {
    video: Option<Track>,
    audio: Option<Track>,
    measurements: mpsc::Receiver<Measurement>,
    fingerprints: mpsc::Receiver<Fingerprint>,
    dropped: u64,
}

#[derive(Debug)]
struct Track {
    codec: Codec,
    pipeline: gst::Pipeline,
    source: gst_app::AppSrc,
    /// The first frame's DTS: decoder timestamps are relative to it. Shared with the
    /// fingerprinting callback, which maps them back.
    first: Arc<OnceLock<MpegTime>>,
    /// Video frames are dropped up to the next keyframe (at the start, and after a drop).
    waiting_for_keyframe: bool,
}

impl Drop for Track {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl ContentProbe {
    /// Starts decoding the input's `video` and `audio` codecs (either may be absent or one
    /// the probe does not decode: that track is not judged) for `tasks`. Blocking.
    pub fn start(
        video: Option<Codec>,
        audio: Option<Codec>,
        tasks: ProbeTasks,
    ) -> Result<ContentProbe, EngineError> {
        init()?;
        let (sender, measurements) = mpsc::channel(MEASUREMENTS);
        let (print_sender, fingerprints) = mpsc::channel(FINGERPRINTS);
        let grey = format!(
            "videoscale method=nearest-neighbour add-borders=false ! videoconvert ! \
             video/x-raw,format=GRAY8,width={WIDTH},height={HEIGHT}"
        );
        let video = video
            .filter(|_| tasks.measure || tasks.fingerprint)
            .and_then(|codec| video_decoder(codec).map(|decoder| (codec, decoder)))
            .map(|(codec, decoder)| {
                // One decode feeds both: the sampled branch and, at full rate, the fingerprints.
                let mut description =
                    format!("appsrc name=source format=time ! {decoder} ! tee name=split");
                if tasks.measure {
                    description.push_str(&format!(
                        " split. ! videorate drop-only=true max-rate={PICTURES_PER_SECOND} ! \
                         {grey} ! appsink name=sink sync=false"
                    ));
                }
                if tasks.fingerprint {
                    description.push_str(&format!(
                        " split. ! {grey} ! appsink name=prints sync=false"
                    ));
                }
                let track = Track::start(codec, &description)?;
                if tasks.measure {
                    measure_pictures(&track.appsink("sink")?, sender.clone());
                }
                if tasks.fingerprint {
                    fingerprint_pictures(
                        &track.appsink("prints")?,
                        Arc::clone(&track.first),
                        print_sender,
                    );
                }
                Ok::<_, EngineError>(track)
            })
            .transpose()?;
        let audio = audio
            .filter(|codec| tasks.measure && *codec == Codec::AacAdts)
            .map(|codec| {
                let description = "appsrc name=source format=time ! aacparse ! avdec_aac ! \
                                   audioconvert ! audio/x-raw,format=S16LE,layout=interleaved ! \
                                   appsink name=sink sync=false";
                let track = Track::start(codec, description)?;
                measure_audio(&track.appsink("sink")?, sender.clone());
                Ok::<_, EngineError>(track)
            })
            .transpose()?;
        for track in video.iter().chain(audio.iter()) {
            track
                .pipeline
                .set_state(gst::State::Playing)
                .map_err(|_| EngineError::Pipeline(track.error("did not start")))?;
        }
        Ok(ContentProbe {
            video,
            audio,
            measurements,
            fingerprints,
            dropped: 0,
        })
    }

    /// Hands a frame to its track's decoder, or drops it when the decoder is behind. Never
    /// blocks.
    pub fn offer(&mut self, frame: &Frame) {
        let track = if frame.codec.is_video() {
            self.video.as_mut()
        } else {
            self.audio.as_mut()
        };
        let Some(track) = track.filter(|t| t.codec == frame.codec) else {
            return;
        };
        if !track.offer(frame) {
            self.dropped += 1;
        }
    }

    pub fn try_measurement(&mut self) -> Option<Measurement> {
        self.measurements.try_recv().ok()
    }

    pub fn try_fingerprint(&mut self) -> Option<Fingerprint> {
        self.fingerprints.try_recv().ok()
    }

    /// Frames dropped because the decoder was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The first error a track's pipeline has posted, as one line naming the element.
    pub fn error(&self) -> Option<String> {
        self.video
            .iter()
            .chain(self.audio.iter())
            .find_map(|track| track.posted_error())
    }
}

/// The decoder for a video codec, if the probe decodes it. One thread: a probe must not take
/// the cores the media path needs.
fn video_decoder(codec: Codec) -> Option<&'static str> {
    match codec {
        Codec::H264 => Some("h264parse ! avdec_h264 max-threads=1"),
        Codec::Hevc => Some("h265parse ! avdec_h265 max-threads=1"),
        _ => None,
    }
}

impl Track {
    fn start(codec: Codec, description: &str) -> Result<Track, EngineError> {
        let pipeline = launch(description)?;
        let source = pipeline
            .by_name("source")
            .and_then(|e| e.dynamic_cast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| EngineError::Pipeline("the content probe has no source".into()))?;
        source.set_caps(Some(&gst::Caps::from(match codec {
            Codec::Hevc => gst::Structure::builder("video/x-h265")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
            Codec::AacAdts => gst::Structure::builder("audio/mpeg")
                .field("mpegversion", 4i32)
                .field("stream-format", "adts")
                .build(),
            _ => gst::Structure::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        })));
        Ok(Track {
            codec,
            pipeline,
            source,
            first: Arc::new(OnceLock::new()),
            waiting_for_keyframe: codec.is_video(),
        })
    }

    fn appsink(&self, name: &str) -> Result<gst_app::AppSink, EngineError> {
        self.pipeline
            .by_name(name)
            .and_then(|e| e.dynamic_cast::<gst_app::AppSink>().ok())
            .ok_or_else(|| EngineError::Pipeline("the content probe has no sink".into()))
    }

    /// Whether the frame went to the decoder.
    fn offer(&mut self, frame: &Frame) -> bool {
        if self.source.current_level_buffers() >= QUEUED {
            self.waiting_for_keyframe = self.codec.is_video();
            return false;
        }
        if self.waiting_for_keyframe {
            if !frame.keyframe {
                return false;
            }
            self.waiting_for_keyframe = false;
        }
        let first = *self.first.get_or_init(|| frame.dts);
        let time = |t: MpegTime| {
            let ticks = u64::try_from((t - first).saturating_add(START)).unwrap_or(0);
            gst::ClockTime::from_nseconds(ticks.saturating_mul(100_000) / 9)
        };
        // The frame's bytes are shared with the buffer, not copied.
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        if let Some(buffer) = buffer.get_mut() {
            buffer.set_pts(time(frame.pts));
            buffer.set_dts(time(frame.dts));
            if !frame.keyframe {
                buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.source.push_buffer(buffer).is_ok()
    }

    fn posted_error(&self) -> Option<String> {
        crate::pipeline::posted_error(&self.pipeline)
            .map(|error| format!("content probe ({}): {error}", self.codec.name()))
    }

    fn error(&self, what: &str) -> String {
        self.posted_error()
            .unwrap_or_else(|| format!("the content probe ({}) {what}", self.codec.name()))
    }
}

/// Mean luma and mean absolute change from `previous` (same size), as fractions of the range.
fn picture_measurement(gray: &[u8], previous: &[u8]) -> (f32, Option<f32>) {
    if gray.is_empty() {
        return (0.0, None);
    }
    let n = gray.len() as f32 * 255.0;
    let luma = gray.iter().map(|&p| u64::from(p)).sum::<u64>() as f32 / n;
    let change = (previous.len() == gray.len()).then(|| {
        gray.iter()
            .zip(previous)
            .map(|(&a, &b)| u64::from(a.abs_diff(b)))
            .sum::<u64>() as f32
            / n
    });
    (luma, change)
}

/// RMS level in dBFS of signed 16-bit samples (all channels together), from their sum of squares.
fn rms_dbfs(sum_of_squares: f64, samples: u64) -> f32 {
    if samples == 0 {
        return f32::NEG_INFINITY;
    }
    let rms = (sum_of_squares / samples as f64).sqrt() / 32768.0;
    // Digital silence: a floor far below any threshold, rather than minus infinity.
    (20.0 * rms.max(1e-10).log10()) as f32
}

/// Hands every decoded buffer that reaches `sink` to `handle` (with its caps), on the
/// streaming thread; `handle` must never wait.
fn on_buffer(
    sink: &gst_app::AppSink,
    mut handle: impl FnMut(&gst::BufferRef, Option<&gst::CapsRef>) -> Result<(), gst::FlowError>
    + Send
    + 'static,
) {
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(buffer) = sample.buffer() {
                    handle(buffer, sample.caps())?;
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

fn measure_pictures(sink: &gst_app::AppSink, measurements: mpsc::Sender<Measurement>) {
    let mut previous = Vec::new();
    on_buffer(sink, move |buffer, _| {
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        // GRAY8 at 160 wide has no row padding: the buffer is the picture.
        let picture = map.get(..WIDTH * HEIGHT).unwrap_or(&map);
        let (luma, change) = picture_measurement(picture, &previous);
        previous.clear();
        previous.extend_from_slice(picture);
        // A full queue means the channel is behind: this measurement is not needed.
        let _ = measurements.try_send(Measurement::Picture { luma, change });
        Ok(())
    });
}

/// The picture's time on the input's timeline, from the decoder's (nanoseconds from `START`
/// before the first frame).
fn input_time(nanoseconds: u64, first: MpegTime) -> Option<MpegTime> {
    // Rounded: the way in truncated ticks to nanoseconds.
    let ticks = i64::try_from((u128::from(nanoseconds) * 9 + 50_000) / 100_000).ok()?;
    Some(MpegTime(first.0.checked_add(ticks)?.checked_sub(START)?))
}

fn fingerprint_pictures(
    sink: &gst_app::AppSink,
    first: Arc<OnceLock<MpegTime>>,
    fingerprints: mpsc::Sender<Fingerprint>,
) {
    on_buffer(sink, move |buffer, _| {
        let pts = buffer
            .pts()
            .zip(first.get())
            .and_then(|(pts, first)| input_time(pts.nseconds(), *first));
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        if let Some(print) = pts.and_then(|pts| Fingerprint::from_gray(pts, &map, WIDTH, HEIGHT)) {
            // A full queue means the channel is behind: this picture is not needed.
            let _ = fingerprints.try_send(print);
        }
        Ok(())
    });
}

fn measure_audio(sink: &gst_app::AppSink, measurements: mpsc::Sender<Measurement>) {
    let (mut sum, mut samples) = (0.0f64, 0u64);
    on_buffer(sink, move |buffer, caps| {
        let format = caps
            .and_then(|caps| caps.structure(0))
            .and_then(|s| Some((s.get::<i32>("rate").ok()?, s.get::<i32>("channels").ok()?)));
        let Some((rate, channels)) = format
            .and_then(|(r, c)| Some((u64::try_from(r).ok()?, u64::try_from(c).ok()?)))
            .filter(|(r, c)| *r > 0 && *c > 0)
        else {
            return Ok(());
        };
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        for pair in map.chunks_exact(2) {
            let s = f64::from(i16::from_le_bytes([pair[0], pair[1]]));
            sum += s * s;
            samples += 1;
        }
        let stretch = rate * AUDIO_STRETCH.as_millis() as u64 / 1000;
        if samples / channels >= stretch {
            let rms_db = rms_dbfs(sum, samples);
            let _ = measurements.try_send(Measurement::Audio { rms_db });
            (sum, samples) = (0.0, 0);
        }
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picture_is_measured_against_the_previous_one() {
        let black = vec![16u8; WIDTH * HEIGHT];
        let (luma, change) = picture_measurement(&black, &[]);
        assert!((luma - 16.0 / 255.0).abs() < 1e-4);
        assert_eq!(change, None);
        let grey = vec![128u8; WIDTH * HEIGHT];
        let (luma, change) = picture_measurement(&grey, &black);
        assert!((luma - 128.0 / 255.0).abs() < 1e-4);
        assert!((change.unwrap() - 112.0 / 255.0).abs() < 1e-4);
        assert_eq!(picture_measurement(&grey, &grey).1, Some(0.0));
    }

    #[test]
    fn decoder_times_map_back_to_the_input_timeline() {
        let first = MpegTime(8_589_934_000);
        // The first frame went in at START: it comes out at its own DTS.
        assert_eq!(input_time(1_000_000_000, first), Some(first));
        assert_eq!(
            input_time(1_000_000_000 + 33_366_666, first),
            Some(MpegTime(first.0 + 3003))
        );
    }

    #[test]
    fn audio_levels_in_dbfs() {
        // A full-scale square wave is 0 dBFS; half of it about -6.
        assert!(rms_dbfs(32768.0 * 32768.0 * 10.0, 10).abs() < 0.01);
        assert!((rms_dbfs(16384.0 * 16384.0 * 10.0, 10) + 6.02).abs() < 0.01);
        assert!(rms_dbfs(0.0, 480) < -150.0);
    }
}
