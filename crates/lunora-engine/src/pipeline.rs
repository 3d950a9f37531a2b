//! The GStreamer pipelines behind engine sources. Each one ends in an `appsink` per track that
//! hands access units — H.264/HEVC in Annex-B with parameter sets on every keyframe, AAC with
//! ADTS headers — to the source task over a bounded queue: a pipeline runs ahead of real time
//! until the queue is full and then waits, so memory stays bounded and the tokio side never
//! blocks on GStreamer.
//!
//! A pipeline is set to `Null` (its threads stopped) when dropped, after its queue's receiver
//! is gone, so no streaming thread can be waiting on the queue while it is being stopped.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use lunora_media::Codec;
use tokio::sync::mpsc;

use crate::EngineError;
use crate::timeline::{Kind, Stamp};

/// What a pipeline hands its source.
#[derive(Debug)]
pub(crate) enum Item {
    Frame {
        kind: Kind,
        codec: Codec,
        stamp: Stamp,
        keyframe: bool,
        data: Bytes,
    },
    /// The track's appsink reached the end of the stream.
    Ended(Kind),
}

/// Access units a pipeline may have queued ahead of its source task.
const QUEUE: usize = 64;

/// The tracks a pipeline carries, as its demuxer finds them, and whether it has found them all.
#[derive(Debug, Default)]
pub(crate) struct Tracks {
    found: Mutex<Vec<(Kind, Codec)>>,
    complete: AtomicBool,
}

impl Tracks {
    /// The tracks of a pipeline that knows them from the start.
    pub(crate) fn fixed(tracks: Vec<(Kind, Codec)>) -> Arc<Tracks> {
        Arc::new(Tracks {
            found: Mutex::new(tracks),
            complete: AtomicBool::new(true),
        })
    }
}

/// A running pipeline and the receiving end of its queue.
#[derive(Debug)]
pub(crate) struct Running {
    pipeline: Option<gst::Pipeline>,
    pub(crate) items: mpsc::Receiver<Item>,
    tracks: Arc<Tracks>,
}

impl Running {
    /// The tracks found so far, and whether that is all of them. `parsebin`'s `no-more-pads`
    /// comes before the streams it exposes, so a video and an audio track are taken as all
    /// there can be, and the source decides for a file with only one (after reading a while).
    pub(crate) fn tracks(&self) -> (Vec<(Kind, Codec)>, bool) {
        let found = lock(&self.tracks.found).clone();
        let complete = self.tracks.complete.load(Ordering::Acquire)
            || [Kind::Video, Kind::Audio]
                .iter()
                .all(|kind| found.iter().any(|(k, _)| k == kind));
        (found, complete)
    }

    /// The first error the pipeline has posted since the last call, as one line naming the
    /// element, if any.
    pub(crate) fn error(&self) -> Option<String> {
        posted_error(self.pipeline.as_ref()?)
    }

    /// Stops the pipeline's threads and frees it. Blocking (it joins GStreamer's threads): call
    /// from a blocking context.
    pub(crate) fn stop(self) {
        drop(self);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The queue goes first: a streaming thread waiting on it wakes with an error and stops.
        self.items.close();
        while self.items.try_recv().is_ok() {}
        if let Some(pipeline) = self.pipeline.take() {
            let _ = pipeline.set_state(gst::State::Null);
        }
    }
}

/// The first error `pipeline` has posted since the last call, as one line naming the element.
pub(crate) fn posted_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    // Every message is taken off the bus, or they would pile up for as long as it runs.
    while let Some(message) = bus.pop() {
        if let gst::MessageView::Error(error) = message.view() {
            let element = error
                .src()
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| "pipeline".to_string());
            let debug = error
                .debug()
                .map(|d| format!(" ({})", d.as_str().lines().last().unwrap_or_default()))
                .unwrap_or_default();
            return Some(format!("{element}: {}{debug}", error.error()));
        }
    }
    None
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Initialises GStreamer once per process.
pub(crate) fn init() -> Result<(), EngineError> {
    gst::init().map_err(|e| EngineError::Init(e.to_string()))
}

/// 90 kHz ticks from a GStreamer time.
fn ticks(time: gst::ClockTime) -> i64 {
    i64::try_from(i128::from(time.nseconds()) * 9 / 100_000).unwrap_or(i64::MAX)
}

/// Hands every sample of `sink` to `items` as a frame of `kind`, and its end of stream.
pub(crate) fn drain_into(
    sink: &gst_app::AppSink,
    (kind, codec): (Kind, Codec),
    items: mpsc::Sender<Item>,
) {
    let ended = items.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Some(pts) = buffer.pts() else {
                    // Nothing to place it by: a parser's header-only buffer.
                    return Ok(gst::FlowSuccess::Ok);
                };
                // Running time, not the buffer's own: encoders start their segment 1000 hours
                // in, so decoding times can precede presentation times without going negative.
                let segment = sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::ClockTime>());
                let running = |time: gst::ClockTime| match segment
                    .and_then(|s| s.to_running_time_full(time))
                {
                    Some(gst::Signed::Negative(before)) => -ticks(before),
                    Some(gst::Signed::Positive(after)) => ticks(after),
                    None => ticks(time),
                };
                let stamp = Stamp {
                    pts: running(pts),
                    dts: running(buffer.dts().unwrap_or(pts)),
                    duration: buffer.duration().map(ticks),
                };
                let keyframe =
                    kind == Kind::Audio || !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let item = Item::Frame {
                    kind,
                    codec,
                    stamp,
                    keyframe,
                    data: Bytes::copy_from_slice(&map),
                };
                // Appsink callbacks run on GStreamer's streaming threads, never on tokio's.
                items
                    .blocking_send(item)
                    .map_err(|_| gst::FlowError::Flushing)?;
                Ok(gst::FlowSuccess::Ok)
            })
            .eos(move |_| {
                let _ = ended.blocking_send(Item::Ended(kind));
            })
            .build(),
    );
}

/// The appsink end of every branch: access units in the form `Frame` carries.
pub(crate) fn sink_caps(codec: Codec) -> &'static str {
    match codec {
        Codec::Hevc => "video/x-h265,stream-format=byte-stream,alignment=au",
        // MPEG-TS files carry AAC as MPEG-2 ADTS: the same frames.
        Codec::AacAdts => "audio/mpeg,mpegversion=(int){2,4},stream-format=adts",
        _ => "video/x-h264,stream-format=byte-stream,alignment=au",
    }
}

/// H.264 encoder settings for what the engine has to encode itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoEncoding {
    pub bitrate_kbps: u32,
    /// Frames between keyframes.
    pub keyframe_interval: u32,
}

pub(crate) fn h264_encoder(encoding: VideoEncoding) -> String {
    // I420 first: left to negotiate, x264enc may pick 4:4:4 that few decoders play. No
    // scene-cut keyframes: platforms want keyframes exactly every `keyframe_interval`.
    format!(
        "videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=veryfast \
         bitrate={} key-int-max={} option-string=\"scenecut=0\" ! h264parse config-interval=-1",
        encoding.bitrate_kbps, encoding.keyframe_interval
    )
}

pub(crate) const AAC_ENCODER: &str = "audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 ! \
                           avenc_aac bitrate=128000 ! aacparse";

/// Colour bars with the wall clock and a frame counter burnt in, and a 1 kHz tone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternSettings {
    pub width: u32,
    pub height: u32,
    pub frame_rate: (u32, u32),
    pub encoding: VideoEncoding,
    /// The caption in the corner (the input's id).
    pub caption: String,
}

pub(crate) fn test_pattern(settings: &PatternSettings) -> Result<Running, EngineError> {
    init()?;
    let (num, den) = settings.frame_rate;
    let description = format!(
        "videotestsrc is-live=true pattern=smpte ! \
         video/x-raw,width={w},height={h},framerate={num}/{den} ! \
         clockoverlay time-format=\"%H:%M:%S\" halignment=left valignment=top font-desc=\"Sans 24\" ! \
         timecodestamper ! timeoverlay time-mode=time-code halignment=right valignment=top font-desc=\"Sans 24\" ! \
         textoverlay name=caption halignment=center valignment=bottom font-desc=\"Sans 24\" ! \
         {video} ! {video_caps} ! appsink name=video sync=false \
         audiotestsrc is-live=true wave=sine freq=1000 volume=0.1 ! {audio} ! {audio_caps} ! \
         appsink name=audio sync=false",
        w = settings.width,
        h = settings.height,
        video = h264_encoder(settings.encoding),
        video_caps = sink_caps(Codec::H264),
        audio = AAC_ENCODER,
        audio_caps = sink_caps(Codec::AacAdts),
    );
    let pipeline = launch(&description)?;
    // Set as a property, not in the description: the caption is the operator's text.
    if let Some(caption) = pipeline.by_name("caption") {
        caption.set_property("text", settings.caption.as_str());
    }
    live_pipeline(pipeline, Codec::H264)
}

/// The "broadcast hold" picture: made to match what the channel last carried, so a platform's
/// session carries on across it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlateSettings {
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    pub frame_rate: (u32, u32),
    pub interlaced: bool,
    pub audio_rate: u32,
    pub audio_channels: u32,
    pub encoding: VideoEncoding,
    /// A PNG or JPEG to show; without one, a card with `caption`.
    pub image: Option<std::path::PathBuf>,
    pub caption: String,
}

pub(crate) fn slate(settings: &SlateSettings) -> Result<Running, EngineError> {
    init()?;
    let (num, den) = settings.frame_rate;
    let (w, h) = (settings.width, settings.height);
    // One picture, made at the channel's size once and repeated by imagefreeze: scaling or
    // drawing the caption for every frame would cost a core at 1080i.
    let picture = match &settings.image {
        // The location is set as a property below, never written into the description.
        Some(_) => format!(
            "filesrc name=image ! decodebin ! videoconvert ! videoscale ! \
             video/x-raw,format=I420,width={w},height={h},pixel-aspect-ratio=1/1 ! \
             imagefreeze is-live=true"
        ),
        None => format!(
            "videotestsrc num-buffers=1 pattern=solid-color foreground-color=0xff1d2733 ! \
             video/x-raw,width={w},height={h},pixel-aspect-ratio=1/1 ! \
             textoverlay name=caption halignment=center valignment=center line-alignment=center \
             font-desc=\"Sans 28\" ! videoconvert ! video/x-raw,format=I420 ! \
             imagefreeze is-live=true"
        ),
    };
    let (video, video_codec) = match settings.codec {
        Codec::Hevc => (
            format!(
                "videoconvert ! video/x-raw,format=I420 ! x265enc tune=zerolatency \
                 speed-preset=ultrafast bitrate={} key-int-max={} ! h265parse config-interval=-1",
                settings.encoding.bitrate_kbps, settings.encoding.keyframe_interval
            ),
            Codec::Hevc,
        ),
        _ => (
            format!(
                "{fields}videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency \
                 speed-preset=veryfast bitrate={} key-int-max={} interlaced={} ! \
                 h264parse config-interval=-1",
                settings.encoding.bitrate_kbps,
                settings.encoding.keyframe_interval,
                settings.interlaced,
                // x264enc codes fields only when the caps say the frames hold them.
                fields = if settings.interlaced {
                    "capssetter caps=\"video/x-raw,interlace-mode=interleaved,\
                     field-order=top-field-first\" ! "
                } else {
                    ""
                },
            ),
            Codec::H264,
        ),
    };
    let description = format!(
        "{picture} ! video/x-raw,framerate={num}/{den} ! \
         {video} ! {video_caps} ! appsink name=video sync=false \
         audiotestsrc is-live=true wave=silence ! audio/x-raw,rate={rate},channels={channels} ! \
         audioconvert ! avenc_aac bitrate=128000 ! aacparse ! {audio_caps} ! \
         appsink name=audio sync=false",
        video_caps = sink_caps(video_codec),
        audio_caps = sink_caps(Codec::AacAdts),
        rate = settings.audio_rate,
        channels = settings.audio_channels,
    );
    let pipeline = launch(&description)?;
    if let Some(image) = &settings.image
        && let Some(source) = pipeline.by_name("image")
    {
        source.set_property("location", image.to_string_lossy().as_ref());
    }
    if let Some(caption) = pipeline.by_name("caption") {
        caption.set_property("text", settings.caption.as_str());
    }
    live_pipeline(pipeline, video_codec)
}

/// Hands a live pipeline's `video` and `audio` appsinks to a new queue and starts it.
fn live_pipeline(pipeline: gst::Pipeline, video: Codec) -> Result<Running, EngineError> {
    let (sender, items) = mpsc::channel(QUEUE);
    let tracks = [(Kind::Video, video), (Kind::Audio, Codec::AacAdts)];
    for (name, track) in [("video", tracks[0]), ("audio", tracks[1])] {
        let sink = pipeline
            .by_name(name)
            .and_then(|e| e.dynamic_cast::<gst_app::AppSink>().ok())
            .ok_or_else(|| EngineError::Pipeline(format!("the pipeline has no {name} sink")))?;
        drain_into(&sink, track, sender.clone());
    }
    play(pipeline, items, Tracks::fixed(tracks.to_vec()))
}

pub(crate) fn launch(description: &str) -> Result<gst::Pipeline, EngineError> {
    gst::parse::launch(description)
        .map_err(|e| EngineError::Pipeline(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| EngineError::Pipeline("not a pipeline".to_string()))
}

pub(crate) fn play(
    pipeline: gst::Pipeline,
    items: mpsc::Receiver<Item>,
    tracks: Arc<Tracks>,
) -> Result<Running, EngineError> {
    let running = Running {
        pipeline: Some(pipeline),
        items,
        tracks,
    };
    if let Some(pipeline) = &running.pipeline
        && pipeline.set_state(gst::State::Playing).is_err()
    {
        return Err(EngineError::Pipeline(
            running
                .error()
                .unwrap_or_else(|| "the pipeline did not start".to_string()),
        ));
    }
    Ok(running)
}

/// What a file's stream becomes: passed through when a channel can carry it, else encoded.
fn branch_for(
    caps_name: &str,
    caps: &gst::StructureRef,
    encoding: VideoEncoding,
) -> (Option<(Kind, Codec)>, String) {
    // Every branch starts with a queue: a demuxer pushes all its streams from one thread, and a
    // sink waiting to preroll would otherwise hold back the others' first buffers for ever.
    let sink = |codec| format!("{} ! appsink name=sink sync=false", sink_caps(codec));
    match caps_name {
        "video/x-h264" => (
            Some((Kind::Video, Codec::H264)),
            format!(
                "queue ! h264parse config-interval=-1 ! {}",
                sink(Codec::H264)
            ),
        ),
        "video/x-h265" => (
            Some((Kind::Video, Codec::Hevc)),
            format!(
                "queue ! h265parse config-interval=-1 ! {}",
                sink(Codec::Hevc)
            ),
        ),
        // A pad may come before its caps are fixed (MPEG-TS: `mpegversion` still a list): only
        // MPEG-1 audio (MP3 and friends) is not AAC.
        "audio/mpeg" if !caps.get::<i32>("mpegversion").is_ok_and(|v| v == 1) => (
            Some((Kind::Audio, Codec::AacAdts)),
            format!("queue ! aacparse ! {}", sink(Codec::AacAdts)),
        ),
        name if name.starts_with("video/") => (
            Some((Kind::Video, Codec::H264)),
            format!(
                "queue ! decodebin ! {} ! {}",
                h264_encoder(encoding),
                sink(Codec::H264)
            ),
        ),
        name if name.starts_with("audio/") => (
            Some((Kind::Audio, Codec::AacAdts)),
            format!(
                "queue ! decodebin ! {AAC_ENCODER} ! {}",
                sink(Codec::AacAdts)
            ),
        ),
        _ => (None, "fakesink sync=false".to_string()),
    }
}

/// Plays an MP4 or MPEG-TS file once, as fast as its source task takes the frames. H.264,
/// HEVC and AAC go through untouched (demuxed and parsed only); another video or audio codec
/// is decoded and encoded to H.264 or AAC. The first video and the first audio stream are
/// used; others are ignored.
pub(crate) fn file(path: &Path, encoding: VideoEncoding) -> Result<Running, EngineError> {
    init()?;
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(EngineError::File(format!(
                "{} is not a file",
                path.display()
            )));
        }
        Err(e) => {
            return Err(EngineError::File(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    }
    let pipeline = gst::Pipeline::new();
    let source = gst::ElementFactory::make("filesrc")
        .property("location", path.to_string_lossy().as_ref())
        .build()
        .map_err(|e| EngineError::Pipeline(e.to_string()))?;
    let demux = gst::ElementFactory::make("parsebin")
        .build()
        .map_err(|e| EngineError::Pipeline(e.to_string()))?;
    pipeline
        .add_many([&source, &demux])
        .and_then(|()| source.link(&demux))
        .map_err(|e| EngineError::Pipeline(e.to_string()))?;
    let (sender, items) = mpsc::channel(QUEUE);
    let tracks = Arc::new(Tracks::default());
    let weak = pipeline.downgrade();
    let found_on_pad = tracks.clone();
    demux.connect_pad_added(move |demux, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let Some(caps) = pad.current_caps().or_else(|| Some(pad.query_caps(None))) else {
            return;
        };
        let Some(structure) = caps.structure(0) else {
            return;
        };
        let (track, description) = branch_for(structure.name().as_str(), structure, encoding);
        // One track of each kind; later ones are ignored.
        let track =
            track.filter(|(kind, _)| !lock(&found_on_pad.found).iter().any(|(k, _)| k == kind));
        let description = if track.is_some() {
            description
        } else {
            "fakesink sync=false".to_string()
        };
        let linked = gst::parse::bin_from_description(&description, true)
            .map_err(|e| e.to_string())
            .and_then(|bin| {
                pipeline.add(&bin).map_err(|e| e.to_string())?;
                if let Some(track) = track
                    && let Some(sink) = bin
                        .by_name("sink")
                        .and_then(|e| e.dynamic_cast::<gst_app::AppSink>().ok())
                {
                    drain_into(&sink, track, sender.clone());
                }
                let sink_pad = bin.static_pad("sink").ok_or("the branch has no input")?;
                bin.sync_state_with_parent().map_err(|e| e.to_string())?;
                pad.link(&sink_pad).map_err(|e| format!("{e:?}"))?;
                Ok(())
            });
        match linked {
            Ok(()) => {
                if let Some(track) = track {
                    lock(&found_on_pad.found).push(track);
                }
            }
            Err(e) => {
                gst::element_error!(
                    demux,
                    gst::StreamError::Failed,
                    ["cannot play its {} stream: {e}", structure.name()]
                );
            }
        }
    });
    play(pipeline, items, tracks)
}
