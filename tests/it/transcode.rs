//! Transcoded destinations: an interlaced broadcast encoder to YouTube-preset destinations with
//! `transcode = "auto"` and `transcode = "youtube"` (sharing one transcode), recorded by
//! nginx-rtmp and read back with ffprobe.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::rtmp_output::nginx;

/// An H.264 + AAC 44.1 kHz TS at 29.97 fps with a keyframe every 2 s (within YouTube's rules);
/// with `interlaced`, field-coded top field first, as a broadcast encoder's 1080i (smaller, so
/// a debug test box keeps up).
fn encoder_stream(dir: &Path, name: &str, size: &str, interlaced: bool, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    let mut command = Command::new(require("ffmpeg", "ffmpeg"));
    command
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=30000/1001"))
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-b:v", "800k",
        ])
        .args(["-pix_fmt", "yuv420p"]);
    if interlaced {
        command.args(["-flags", "+ildct+ilme", "-x264opts", "tff=1"]);
    }
    let out = run(
        "ffmpeg (encoder stream)",
        command
            .args(["-c:a", "aac", "-ac", "2", "-f", "mpegts"])
            .arg(&path),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "ffmpeg could not make {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn ffprobe_json(file: &Path, args: &[&str]) -> Value {
    let out = run(
        "ffprobe",
        Command::new(require("ffprobe", "ffmpeg"))
            .args(["-v", "error", "-of", "json"])
            .args(args)
            .arg(file),
        Duration::from_secs(60),
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ffprobe {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn an_interlaced_encoder_reaches_youtube_progressive_with_2_s_keyframes_through_a_failover_to_another_size()
 {
    let (main, backup, rtmp) = (free_udp_port(), free_udp_port(), free_tcp_port());
    // A second destination names the profile `auto` uses: the two share one transcode.
    let output = |id: &str, key: &str, transcode: &str| {
        format!(
            "[[channels.outputs]]\nid = \"{id}\"\ntype = \"rtmp\"\npreset = \"youtube\"\n\
             url = \"rtmp://127.0.0.1:{rtmp}/live\"\nstream_key = \"{key}\"\nautostart = true\n\
             retry_min_ms = 200\nretry_max_ms = 500\ntranscode = \"{transcode}\"\n\n"
        )
    };
    let output = output("youtube", "yt", "auto") + &output("youtube-2", "yt2", "youtube");
    let daemon = Daemon::start(&main_backup_channel(main, backup, "", &output));
    let dir = daemon.dir.path().to_path_buf();
    let _server = nginx(&dir, rtmp);
    let main_stream = encoder_stream(&dir, "main.ts", "720x576", true, 30);
    let backup_stream = encoder_stream(&dir, "backup.ts", "640x360", false, 30);
    let main_encoder = srt_push(&dir, "main", &main_stream, main);
    let on_air = |input: &str| daemon.json("/api/v1/channels/program")["active_input"] == input;
    assert!(
        wait_for(Duration::from_secs(10), || on_air("main")),
        "{}",
        daemon.log()
    );
    let _backup_encoder = srt_push(&dir, "backup", &backup_stream, backup);
    let state = |id: &str| {
        daemon.output("program", id)["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(
        wait_for(Duration::from_secs(20), || state("youtube") == "live"
            && state("youtube-2") == "live"),
        "not live: {}\n{}",
        daemon.json("/api/v1/channels/program")["outputs"],
        daemon.log()
    );
    // One transcode, read by both destinations.
    let transcodes = || daemon.json("/api/v1/channels/program")["transcodes"].clone();
    assert!(
        wait_for(Duration::from_secs(5), || transcodes()[0]["destinations"]
            == 2),
        "{}",
        transcodes()
    );
    assert_eq!(transcodes().as_array().map(Vec::len), Some(1));
    assert_eq!(transcodes()[0]["profile"], "youtube");
    std::thread::sleep(Duration::from_secs(8));

    // The main encoder goes away: the backup (another size, progressive) goes on air.
    drop(main_encoder);
    assert!(
        wait_for(Duration::from_secs(5), || on_air("backup")),
        "no failover: {}",
        daemon.log()
    );
    std::thread::sleep(Duration::from_secs(8));
    let metrics = http_get(daemon.http, "/metrics").1;
    assert!(
        metrics.contains("lunora_transcode_frames_total{channel=\"program\",direction=\"out\",profile=\"youtube\"}"),
        "{metrics}"
    );
    crate::metrics::assert_promtool_accepts(&metrics);
    let stop = |id: &str| {
        assert_eq!(
            http_post_json(
                daemon.http,
                &format!("/api/v1/channels/program/outputs/{id}/stop"),
                ""
            )
            .0,
            202
        );
        assert!(wait_for(Duration::from_secs(5), || state(id) == "idle"));
    };
    // One destination stops: the other keeps the transcode.
    stop("youtube-2");
    assert!(
        wait_for(Duration::from_secs(3), || transcodes()[0]["destinations"]
            == 1),
        "{}",
        transcodes()
    );
    assert_eq!(state("youtube"), "live");
    stop("youtube");
    // The last destination stopped: the transcode is freed.
    assert!(
        wait_for(Duration::from_secs(3), || transcodes()
            .as_array()
            .is_some_and(Vec::is_empty)),
        "{}",
        transcodes()
    );
    assert!(
        daemon
            .log()
            .contains("interlaced video: YouTube expects progressive"),
        "auto transcoded for the wrong reason:\n{}",
        daemon.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let shared = probe_streams(&dir.join("yt2.flv").display().to_string());
    assert!(shared.contains("h264,1280,720"), "{shared}");

    let recording = dir.join("yt.flv");
    let streams = ffprobe_json(
        &recording,
        &[
            "-show_entries",
            "stream=codec_type,codec_name,width,height,field_order,sample_rate,channels",
        ],
    );
    let streams = streams["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("no video in the recording: {streams:?}"));
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .unwrap_or_else(|| panic!("no audio in the recording: {streams:?}"));
    assert_eq!(video["codec_name"], "h264", "{video}");
    assert_eq!(video["field_order"], "progressive", "{video}");
    assert_eq!(
        (&video["width"], &video["height"]),
        (&1280.into(), &720.into())
    );
    assert_eq!(audio["codec_name"], "aac", "{audio}");
    assert_eq!(audio["sample_rate"], "48000", "{audio}");
    assert_eq!(audio["channels"], 2, "{audio}");

    let frames = ffprobe_json(
        &recording,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=key_frame,pts_time,width,height,interlaced_frame",
        ],
    );
    let frames = frames["frames"].as_array().cloned().unwrap_or_default();
    // 16 s or so at 29.97 fps, across the failover.
    assert!(frames.len() > 300, "{} frames recorded", frames.len());
    for frame in &frames {
        assert_eq!(
            (
                &frame["width"],
                &frame["height"],
                &frame["interlaced_frame"]
            ),
            (&1280.into(), &720.into(), &0.into()),
            "every picture is 720p progressive, before and after the failover: {frame}"
        );
    }
    let keyframes: Vec<f64> = frames
        .iter()
        .filter(|f| f["key_frame"] == 1)
        .filter_map(|f| f["pts_time"].as_str()?.parse().ok())
        .collect();
    assert!(keyframes.len() >= 6, "{keyframes:?}");
    for pair in keyframes.windows(2) {
        assert!(
            (pair[1] - pair[0] - 2.0).abs() < 0.1,
            "keyframes every 2 s: {keyframes:?}"
        );
    }
}
