//! File and test-pattern inputs (the media engine) through the real daemon, read by ffprobe.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// A `seconds`-long 640x360 30 fps H.264 (B-frames, a keyframe every second) + AAC 48 kHz MP4.
fn make_mp4(dir: &Path, seconds: u32) -> std::path::PathBuf {
    let path = dir.join("clip.mp4");
    let ffmpeg = require("ffmpeg", "ffmpeg");
    let out = run(
        "ffmpeg (clip.mp4)",
        Command::new(ffmpeg)
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size=640x360:rate=30:duration={seconds}"))
            .args(["-f", "lavfi", "-i"])
            .arg(format!(
                "sine=frequency=440:sample_rate=48000:duration={seconds}"
            ))
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-b:v", "1500k",
            ])
            .args(["-c:a", "aac", "-b:a", "96k"])
            .arg(&path),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn engine_channel(input: &str, output_port: u16) -> String {
    format!(
        "[[channels]]\nid = \"program\"\nmode = \"single\"\n\n[channels.failover]\ninput_loss_ms = 500\n\n\
         [[channels.inputs]]\n{input}\n\n{}",
        srt_listener_output("out", output_port)
    )
}

fn assert_rising_without_gaps(times: &[i64], frame: i64, what: &str) {
    assert!(times.len() > 10, "{what}: only {} packets", times.len());
    for pair in times.windows(2) {
        let step = pair[1] - pair[0];
        assert!(step > 0, "{what}: dts {} then {}", pair[0], pair[1]);
        assert!(
            step < 2 * frame,
            "{what}: a gap of {step} ticks (over one frame) after dts {}",
            pair[0]
        );
    }
}

#[test]
fn a_looped_mp4_plays_three_times_into_the_srt_output_on_one_clean_timeline() {
    let output = free_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let clip = make_mp4(dir.path(), 10);
    let daemon = Daemon::start(&engine_channel(
        &format!(
            "id = \"clip\"\ntype = \"file\"\npath = \"{}\"\nloop = true",
            clip.display()
        ),
        output,
    ));
    let recording = dir.path().join("recording.ts");
    let mut reader = slt_record(
        dir.path(),
        "reader",
        &format!("srt://127.0.0.1:{output}?latency=200"),
        &recording,
    );
    assert!(
        wait_for(Duration::from_secs(10), || daemon.input("program", "clip")
            ["state"]
            == "connected"),
        "the file input never went on air: {}",
        daemon.input("program", "clip")
    );
    let input = daemon.input("program", "clip");
    assert!(input["listen"].is_null(), "{input}");
    assert!(input["last_error"].is_null(), "{input}");
    assert!(
        input["peer"]
            .as_str()
            .is_some_and(|p| p.ends_with("clip.mp4")),
        "{input}"
    );
    // Three passes and a bit, in real time; then the input goes, so the recording ends on a
    // whole frame.
    std::thread::sleep(Duration::from_secs(32));
    let (status, body) = http_send(
        daemon.http,
        "DELETE",
        "/api/v1/channels/program/inputs/clip",
        "",
    );
    assert_eq!(status, 204, "{body}");
    std::thread::sleep(Duration::from_secs(1));
    reader.signal(Signal::SIGTERM);
    reader.wait(Duration::from_secs(10)).expect("reader stops");

    let frames = decoded_video_frames(&recording);
    assert!(
        frames >= 900,
        "ffprobe decoded {frames} video frames; three passes are 900"
    );
    let decode = decode_warnings(&recording);
    assert!(
        !decode.contains("onotonic") && !decode.contains("corrupt"),
        "decoding the output produced warnings:\n{decode}"
    );
    assert_eq!(ts_continuity(&recording).cc_errors, 0);
    let (video, audio) = decoding_times(&recording);
    assert_rising_without_gaps(&video, 3_000, "video");
    assert_rising_without_gaps(&audio, 1_920, "audio");
    // A/V in step after three loop points: both tracks advanced by the same time (within the
    // recording's cut at either end), where a loop that slips a frame would be 3 frames off.
    let advanced = |t: &[i64]| t[t.len() - 1] - t[0];
    let drift = advanced(&video) - advanced(&audio);
    assert!(
        drift.abs() < 6_000,
        "video and audio drifted {drift} ticks apart over three loops"
    );
    assert!(daemon.stop().success());
}

#[test]
fn a_test_pattern_input_sends_bars_and_tone_that_decode() {
    let output = free_udp_port();
    let daemon = Daemon::start(&engine_channel(
        "id = \"bars\"\ntype = \"test_pattern\"\nwidth = 640\nheight = 360\nframe_rate = \"25\"\nbitrate_kbps = 800",
        output,
    ));
    let dir = daemon.dir.path().to_path_buf();
    let recording = dir.join("bars.ts");
    let mut reader = slt_record(
        &dir,
        "reader",
        &format!("srt://127.0.0.1:{output}?latency=200"),
        &recording,
    );
    assert!(wait_for(Duration::from_secs(10), || daemon
        .input("program", "bars")["state"]
        == "connected"));
    std::thread::sleep(Duration::from_secs(6));
    reader.signal(Signal::SIGTERM);
    reader.wait(Duration::from_secs(10)).expect("reader stops");
    let streams = probe_streams(recording.to_str().unwrap());
    assert!(streams.contains("h264,640,360"), "{streams}");
    assert!(streams.contains("aac"), "{streams}");
    let frames = decoded_video_frames(&recording);
    assert!(frames >= 100, "{frames} frames decoded in ~6 s at 25 fps");
    let input = daemon.input("program", "bars");
    assert_eq!(input["video"]["width"], 640, "{input}");
    assert!(daemon.stop().success());
}

#[test]
fn a_missing_file_is_an_input_error_and_the_daemon_carries_on() {
    let output = free_udp_port();
    let mut daemon = Daemon::start(&engine_channel(
        "id = \"clip\"\ntype = \"file\"\npath = \"/nonexistent/loop.mp4\"\nloop = true",
        output,
    ));
    assert!(
        wait_for(Duration::from_secs(10), || daemon.input("program", "clip")
            ["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("/nonexistent/loop.mp4"))),
        "the input does not say why: {}",
        daemon.input("program", "clip")
    );
    assert_eq!(daemon.input("program", "clip")["state"], "waiting");
    assert!(daemon.log().contains("/nonexistent/loop.mp4"));
    assert!(daemon.alive());
}

#[test]
fn file_inputs_are_checked_before_they_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        engine_channel(
            "id = \"clip\"\ntype = \"file\"\npath = \"relative.mp4\"\nurl = \"s3://bucket/key\"",
            free_udp_port(),
        ),
    )
    .unwrap();
    let out = run(
        "lunora check-config",
        Command::new(lunora_bin()).arg("check-config").arg(&config),
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("exactly one of `path`"), "{said}");
}
