//! Engine sources driven through their real pipelines (GStreamer, files made by ffmpeg).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lunora_engine::{
    ContentProbe, EngineInputSettings, Location, PatternSettings, ProbeTasks, SlateSettings,
    Source, VideoEncoding,
};
use lunora_ingest::{InputEvent, StatsHandle, input_queue};
use lunora_media::{Codec, Frame, MpegTime, TrackId};
use lunora_switch::align::ContentAligner;
use tokio_util::sync::CancellationToken;

const ENCODING: VideoEncoding = VideoEncoding {
    bitrate_kbps: 2_000,
    keyframe_interval: 60,
};

/// A `seconds`-long 640x360 30 fps H.264 + AAC MP4 with a keyframe every second.
fn mp4(dir: &Path, seconds: u32) -> std::path::PathBuf {
    let path = dir.join("clip.mp4");
    let video = format!("testsrc2=size=640x360:rate=30:duration={seconds}");
    let audio = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            &video,
            "-f",
            "lavfi",
            "-i",
            &audio,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
            "-bf",
            "0",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-shortest",
        ],
        &path,
    );
    path
}

/// A `seconds`-long 320x240 25 fps MPEG-TS: H.264 with B-frames and a keyframe every second,
/// AAC.
fn ts_clip(dir: &Path, seconds: u32) -> std::path::PathBuf {
    let path = dir.join("clip.ts");
    let seconds = seconds.to_string();
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000",
            "-t",
            &seconds,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-bf",
            "2",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
        ],
        &path,
    );
    path
}

/// Runs ffmpeg with `args` writing `output`.
fn ffmpeg(args: &[&str], output: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(args)
        .arg(output)
        .status()
        .expect("ffmpeg is installed (scripts/test installs it)");
    assert!(status.success(), "ffmpeg {args:?}");
}

struct Received {
    events: Vec<InputEvent>,
}

impl Received {
    fn frames(&self, track: TrackId) -> Vec<&Frame> {
        self.events
            .iter()
            .filter_map(|e| match e {
                InputEvent::Frame(f) if f.track == track => Some(f),
                _ => None,
            })
            .collect()
    }
}

/// Runs `source` for `length` and collects what it sends.
async fn collect(source: Source, length: Duration) -> (Received, StatsHandle) {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (events, mut receiver) = input_queue(10_000);
    let stats = StatsHandle::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn(lunora_engine::run(
        EngineInputSettings {
            id: "test".to_string(),
            source,
            fetch: None,
        },
        0,
        events,
        stats.clone(),
        stop.clone().cancelled_owned(),
    ));
    let mut received = Vec::new();
    let until = tokio::time::Instant::now() + length;
    while let Ok(Some((_, event))) = tokio::time::timeout_at(until, receiver.recv()).await {
        received.push(event);
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the input stops within 10 s")
        .unwrap();
    (Received { events: received }, stats)
}

/// A slate of `width`x`height` at `frame_rate`, a keyframe every two seconds.
fn slate(
    (width, height): (u32, u32),
    frame_rate: (u32, u32),
    interlaced: bool,
    image: Option<std::path::PathBuf>,
) -> Source {
    Source::Slate(SlateSettings {
        codec: Codec::H264,
        width,
        height,
        frame_rate,
        interlaced,
        audio_rate: 44_100,
        audio_channels: 2,
        encoding: VideoEncoding {
            bitrate_kbps: 800,
            keyframe_interval: 2 * frame_rate.0 / frame_rate.1,
        },
        image,
        caption: "program\nsignal lost since 12:00:00".to_string(),
    })
}

/// The first picture's format, after checking that at least `pictures` came.
fn first_format(
    received: &Received,
    stats: &StatsHandle,
    pictures: usize,
) -> lunora_media::VideoFormat {
    let video = received.frames(TrackId(0x100));
    assert!(
        video.len() >= pictures,
        "{} pictures ({:?})",
        video.len(),
        stats.snapshot(Instant::now()).last_error
    );
    lunora_media::keyframe_video_format(Codec::H264, &video[0].data).unwrap()
}

fn assert_rising_without_gaps(frames: &[&Frame], nominal: i64, what: &str) {
    for pair in frames.windows(2) {
        let step = pair[1].dts - pair[0].dts;
        assert!(
            step > 0,
            "{what}: dts {} then {}",
            pair[0].dts.0,
            pair[1].dts.0
        );
        assert!(
            step < 2 * nominal,
            "{what}: a gap of {step} ticks after dts {}",
            pair[0].dts.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looped_file_plays_in_real_time_on_one_timeline_without_reencoding() {
    let dir = tempfile::tempdir().unwrap();
    let path = mp4(dir.path(), 2);
    let started = Instant::now();
    let (received, stats) = collect(
        Source::File {
            location: Location::Path(path),
            looped: true,
            encoding: ENCODING,
        },
        Duration::from_millis(7_000),
    )
    .await;
    // Connected, then the program, then frames.
    assert!(
        matches!(&received.events[0], InputEvent::Connected { peer } if peer.starts_with("file "))
    );
    let InputEvent::Program(program) = &received.events[1] else {
        panic!("no program first: {:?}", received.events[1]);
    };
    let codecs: Vec<Codec> = program.tracks.iter().map(|t| t.codec).collect();
    assert_eq!(codecs, [Codec::H264, Codec::AacAdts]);
    let video = received.frames(TrackId(0x100));
    let audio = received.frames(TrackId(0x101));
    // Paced: about 30 frames a second over ~7 s (three passes and a half), not the whole
    // file at once.
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        (150..=(30.0 * seconds) as usize + 30).contains(&video.len()),
        "{} video frames in {seconds:.1} s",
        video.len()
    );
    assert_rising_without_gaps(&video, 3_000, "video");
    assert_rising_without_gaps(&audio, 1_920, "audio");
    // Passed through: the pictures are the file's own (a keyframe every 30 frames, with SPS).
    let keyframes: Vec<usize> = video
        .iter()
        .enumerate()
        .filter(|(_, f)| f.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert!(
        keyframes.windows(2).all(|k| k[1] - k[0] == 30),
        "{keyframes:?}"
    );
    assert!(lunora_media::keyframe_video_format(Codec::H264, &video[0].data).is_some());
    // Pictures back to back across every loop point (±1 tick of rounding).
    assert!(
        video
            .windows(2)
            .all(|p| (2_999..=3_001).contains(&(p[1].dts - p[0].dts)))
    );
    // Audio stays with video: over three loop points both advanced by the same time, within
    // the cut at either end (a loop slipping a frame would be three frames off).
    let advanced = |frames: &[&Frame]| frames[frames.len() - 1].dts - frames[0].dts;
    let drift = advanced(&video) - advanced(&audio);
    assert!(drift.abs() < 6_000, "A/V drifted {drift} ticks");
    let snapshot = stats.snapshot(Instant::now());
    assert!(snapshot.last_error.is_none());
    assert_eq!(
        snapshot.video.as_ref().map(|v| (v.width, v.height)),
        Some((640, 360))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_an_error_the_input_shows() {
    let (received, stats) = collect(
        Source::File {
            location: Location::Path("/nonexistent/clip.mp4".into()),
            looped: true,
            encoding: ENCODING,
        },
        Duration::from_millis(1_000),
    )
    .await;
    assert!(received.events.is_empty(), "{:?}", received.events);
    let error = stats.snapshot(Instant::now()).last_error.expect("an error");
    assert!(error.contains("/nonexistent/clip.mp4"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_pattern_sends_h264_and_aac_with_a_keyframe_every_gop() {
    let (received, _stats) = collect(
        Source::TestPattern(PatternSettings {
            width: 320,
            height: 240,
            frame_rate: (25, 1),
            encoding: VideoEncoding {
                bitrate_kbps: 500,
                keyframe_interval: 25,
            },
            caption: "bars".to_string(),
        }),
        Duration::from_millis(3_000),
    )
    .await;
    let video = received.frames(TrackId(0x100));
    let audio = received.frames(TrackId(0x101));
    assert!(
        video.len() >= 40,
        "{} video frames ({:?})",
        video.len(),
        _stats.snapshot(Instant::now()).last_error
    );
    assert!(audio.len() >= 60, "{} audio frames", audio.len());
    assert!(video[0].keyframe);
    assert_rising_without_gaps(&video, 3_600, "video");
    let format = lunora_media::keyframe_video_format(Codec::H264, &video[0].data).unwrap();
    assert_eq!((format.width, format.height), (320, 240));
    let keyframes = video.iter().filter(|f| f.keyframe).count();
    assert!((2..=4).contains(&keyframes), "{keyframes} keyframes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slate_matches_the_format_it_is_given_interlaced_included() {
    let (received, stats) = collect(
        slate((720, 576), (25, 1), true, None),
        Duration::from_millis(2_500),
    )
    .await;
    let format = first_format(&received, &stats, 25);
    assert_eq!(
        (format.width, format.height, format.interlaced),
        (720, 576, true)
    );
    let audio = received.frames(TrackId(0x101));
    let header = lunora_media::AdtsHeader::parse(&audio[0].data).unwrap();
    assert_eq!(header.sample_rate(), 44_100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slate_image_is_scaled_to_the_channel_format() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("slate.png");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=400x300",
            "-frames:v",
            "1",
        ],
        &image,
    );
    let (received, stats) = collect(
        slate((640, 360), (30_000, 1_001), false, Some(image)),
        Duration::from_millis(2_500),
    )
    .await;
    let format = first_format(&received, &stats, 30);
    assert_eq!(
        (format.width, format.height, format.interlaced),
        (640, 360, false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mpeg_ts_file_plays_like_an_mp4() {
    let dir = tempfile::tempdir().unwrap();
    let path = ts_clip(dir.path(), 2);
    let (received, stats) = collect(
        Source::File {
            location: Location::Path(path),
            looped: false,
            encoding: ENCODING,
        },
        Duration::from_millis(1_500),
    )
    .await;
    let video = received.frames(TrackId(0x100));
    let audio = received.frames(TrackId(0x101));
    assert!(
        video.len() >= 25 && audio.len() >= 40,
        "{} pictures, {} audio frames ({:?})",
        video.len(),
        audio.len(),
        stats.snapshot(Instant::now()).last_error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_garbage_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.mp4");
    // An MP4 box header that lies about its size, then noise.
    let mut bytes = vec![
        0, 0, 0, 0x20, b'f', b't', b'y', b'p', 0xff, 0xff, 0xff, 0xff,
    ];
    bytes.extend((0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&path, bytes).unwrap();
    let (received, stats) = collect(
        Source::File {
            location: Location::Path(path),
            looped: true,
            encoding: ENCODING,
        },
        Duration::from_millis(1_500),
    )
    .await;
    assert!(
        !received
            .events
            .iter()
            .any(|e| matches!(e, InputEvent::Frame(_))),
        "frames from garbage"
    );
    let error = stats.snapshot(Instant::now()).last_error;
    assert!(error.is_some(), "no error for a garbage file");
}

/// Offers `frames` to a fingerprinting probe, moved by `shift` ticks, and collects what it says.
async fn fingerprints(frames: &[&Frame], shift: i64) -> Vec<lunora_switch::align::Fingerprint> {
    let codec = frames[0].codec;
    let tasks = ProbeTasks {
        measure: false,
        fingerprint: true,
    };
    let mut probe =
        tokio::task::spawn_blocking(move || ContentProbe::start(Some(codec), None, tasks))
            .await
            .unwrap()
            .unwrap();
    let mut prints = Vec::new();
    for frame in frames {
        let mut frame = (*frame).clone();
        frame.dts = MpegTime(frame.dts.0 + shift);
        frame.pts = MpegTime(frame.pts.0 + shift);
        probe.offer(&frame);
        // Paced like a live input, so the decoder is never behind.
        tokio::time::sleep(Duration::from_millis(5)).await;
        while let Some(print) = probe.try_fingerprint() {
            prints.push(print);
        }
    }
    let until = Instant::now() + Duration::from_secs(5);
    while prints.len() + 3 < frames.len() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Some(print) = probe.try_fingerprint() {
            prints.push(print);
        }
    }
    assert_eq!(probe.dropped(), 0);
    tokio::task::spawn_blocking(move || drop(probe))
        .await
        .unwrap();
    prints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprints_carry_each_pictures_own_time_and_relate_two_clocks() {
    let dir = tempfile::tempdir().unwrap();
    // B-frames: pictures come out of the decoder in another order than they went in.
    let path = ts_clip(dir.path(), 3);
    let (received, _) = collect(
        Source::File {
            location: Location::Path(path),
            looped: false,
            encoding: ENCODING,
        },
        Duration::from_millis(3_500),
    )
    .await;
    let video = received.frames(TrackId(0x100));
    assert!(video.len() >= 70, "{} pictures", video.len());
    let shift = 17 * 3600 * 90_000 + 1234;
    let (a, b) = (
        fingerprints(&video, 0).await,
        fingerprints(&video, shift).await,
    );
    // The decoder holds the last pictures back (reordering) until more come.
    assert!(
        a.len() + 3 >= video.len(),
        "one fingerprint per picture: {} for {}",
        a.len(),
        video.len()
    );
    let mut pts: Vec<i64> = video.iter().map(|f| f.pts.0).collect();
    pts.sort_unstable();
    let printed: Vec<i64> = a.iter().map(|p| p.pts.0).collect();
    assert_eq!(
        printed,
        pts[..a.len()],
        "in presentation order, at the pictures' own times"
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(y.pts.0, x.pts.0 + shift);
        assert_eq!(x.blocks, y.blocks);
    }
    let mut aligner = ContentAligner::new();
    for (x, y) in a.iter().zip(&b) {
        aligner.push(0, x);
        aligner.push(1, y);
    }
    aligner.poll(Duration::ZERO);
    assert_eq!(aligner.shift(0, 1), Some(shift));
}
