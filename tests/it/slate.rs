//! The slate ("broadcast hold") keeps an RTMP destination's session through a total loss.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::rtmp_output::{nginx, rtmp_destination};

/// Mean luma of the decoded pictures of `file`, with each picture's presentation time (s).
fn luma_by_time(file: &Path) -> Vec<(f64, f64)> {
    let ffprobe = require("ffprobe", "ffmpeg");
    let out = run(
        "ffprobe (signalstats)",
        Command::new(ffprobe)
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg(format!("movie={},signalstats", file.display()))
            .args([
                "-show_entries",
                "frame=pts_time:frame_tags=lavfi.signalstats.YAVG",
                "-of",
                "csv=p=0",
            ]),
        Duration::from_secs(120),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (time, luma) = line.split_once(',')?;
            Some((time.parse().ok()?, luma.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_slate_holds_an_rtmp_session_through_ten_seconds_without_input() {
    let (input, rtmp) = (free_udp_port(), free_tcp_port());
    let config = format!(
        "[slate]\nenabled = true\nafter_ms = 1000\n\n{}",
        single_srt_channel(
            "encoder",
            input,
            "",
            &rtmp_destination("platform", rtmp, "event")
        )
    );
    let daemon = Daemon::start(&config);
    // Not the daemon's directory: the recording is read after the daemon has gone.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    let _nginx = nginx(&dir, rtmp);
    let source = make_ts(&dir, "program.ts", 6, "640x360", "1000k");

    let mut first = srt_push(&dir, "first", &source, input);
    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .output("program", "platform")["state"]
            == "live"),
        "{}",
        daemon.output("program", "platform")
    );
    first
        .wait(Duration::from_secs(30))
        .expect("the first push ends");
    // Every input lost: the slate goes on air after input_loss (500 ms) + after_ms (1 s).
    assert!(
        wait_for(Duration::from_secs(8), || daemon
            .json("/api/v1/channels/program")["slate"]["on_air"]
            == true),
        "{}",
        daemon.json("/api/v1/channels/program")
    );
    let channel = daemon.json("/api/v1/channels/program");
    assert_eq!(channel["active_input"], "slate", "{channel}");
    assert!(channel["slate"]["on_air_since"].is_string(), "{channel}");
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics.contains("lunora_channel_slate_on_air{channel=\"program\"} 1"),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(daemon.output("program", "platform")["state"], "live");

    // The encoder returns: its first keyframe ends the slate.
    let mut second = srt_push(&dir, "second", &source, input);
    assert!(
        wait_for(Duration::from_secs(8), || daemon
            .json("/api/v1/channels/program")["active_input"]
            == "encoder"),
        "{}",
        daemon.json("/api/v1/channels/program")
    );
    let channel = daemon.json("/api/v1/channels/program");
    assert_eq!(channel["slate"]["on_air"], false, "{channel}");
    let reasons: Vec<&str> = channel["switches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["reason"].as_str())
        .collect();
    assert!(reasons.ends_with(&["slate", "resume"]), "{reasons:?}");
    second
        .wait(Duration::from_secs(30))
        .expect("the second push ends");
    assert!(daemon.stop().success());

    // One session at nginx, not two.
    let nginx_log = std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default();
    let publishes = nginx_log.matches("publish: name='event'").count();
    assert_eq!(publishes, 1, "{nginx_log}");
    let recording = dir.join("event.flv");
    let warnings = decode_warnings(&recording);
    assert!(warnings.trim().is_empty(), "{warnings}");
    let (dts, _) = decoding_times(&recording);
    assert!(dts.windows(2).all(|w| w[1] > w[0]), "video DTS fell back");
    // Pictures all the way: no hole longer than the loss detection and the slate's delay.
    let longest = dts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        longest < 225_000,
        "a {} ms hole in the pictures",
        longest / 90
    );
    // Program (bright test card), slate (dark card), program again.
    let luma = luma_by_time(&recording);
    let mean = |from: f64, to: f64| {
        let values: Vec<f64> = luma
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|(_, l)| *l)
            .collect();
        assert!(!values.is_empty(), "no pictures between {from} and {to} s");
        values.iter().sum::<f64>() / values.len() as f64
    };
    let (before, during, after) = (mean(1.0, 5.0), mean(10.0, 14.0), mean(20.0, 22.0));
    assert!(
        during < 60.0 && before > during + 20.0 && after > during + 20.0,
        "mean luma before {before:.0}, during {during:.0}, after {after:.0}"
    );
}
