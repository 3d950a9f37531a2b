//! WHIP (WebRTC) ingest against real publishers: Debian's headless Chromium through the
//! dashboard's "go live" page (fake camera and microphone), into a main-backup channel whose
//! backup is a test pattern; ffmpeg/ffprobe read the channel's SRT output.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::ui::browser_test;

const TOKEN: &str = "whip-test-token-0123456789";

/// Channel "program": main = WHIP input `cam`, backup = a 1280×720 30 fps test pattern, an SRT
/// listener output; `[whip]` on loopback.
fn config(udp: u16, srt_out: u16) -> String {
    format!(
        "[whip]\nudp_listen = \"127.0.0.1:{udp}\"\nice_addresses = [\"127.0.0.1\"]\nice_servers = [\"stun:stun.example.invalid:3478\"]\n\n\
         [[channels]]\nid = \"program\"\nmode = \"main-backup\"\n\n[channels.failover]\ninput_loss_ms = 1000\nerror_clear_ms = 1000\n\n\
         [[channels.inputs]]\nid = \"cam\"\nrole = \"main\"\ntype = \"whip\"\ntoken = \"{TOKEN}\"\n\n\
         [[channels.inputs]]\nid = \"bars\"\nrole = \"backup\"\ntype = \"test_pattern\"\nwidth = 1280\nheight = 720\nframe_rate = \"30\"\nbitrate_kbps = 1500\n\n\
         {}",
        srt_listener_output("out", srt_out)
    )
}

/// `POST /whip/program/{input}` with `body` as SDP and `bearer` (if any): (status, headers and body).
fn whip_post(port: u16, input: &str, bearer: Option<&str>, body: &str) -> (u16, String) {
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    http_anonymous(
        port,
        &format!(
            "POST /whip/program/{input} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/sdp\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn switches(daemon: &Daemon) -> Vec<Value> {
    daemon.json("/api/v1/channels/program")["switches"]
        .as_array()
        .cloned()
        .expect("switches is a list")
}

#[test]
fn whip_go_live_from_chromium_feeds_the_channel_and_fails_over() {
    let udp = free_udp_port();
    let srt_out = free_udp_port();
    let daemon = Daemon::start(&config(udp, srt_out));
    assert!(
        wait_for(Duration::from_secs(20), || daemon
            .json("/api/v1/channels/program")["active_input"]
            == "bars"),
        "the test pattern backup never went on air:\n{}",
        daemon.log()
    );

    // Nobody publishing: a wrong or missing token is 401 and reserves nothing.
    let (status, body) = whip_post(daemon.http, "cam", Some("not-the-token-at-all"), "v=0\r\n");
    assert_eq!(status, 401, "{body}");
    let (status, body) = whip_post(daemon.http, "cam", None, "v=0\r\n");
    assert_eq!(status, 401, "{body}");
    let (status, body) = whip_post(daemon.http, "nope", Some(TOKEN), "v=0\r\n");
    assert_eq!(status, 404, "{body}");
    // The right token with something that is not an offer: 400, and the input is free again.
    let (status, body) = whip_post(daemon.http, "cam", Some(TOKEN), "hello");
    assert_eq!(status, 400, "{body}");
    let cam = daemon.input("program", "cam");
    assert_eq!(cam["state"], "waiting", "{cam}");
    assert_eq!(as_u64(&cam["frames_total"]["video"]), 0, "{cam}");
    assert_eq!(cam["ingest"]["whip_path"], "/whip/program/cam", "{cam}");
    assert_eq!(cam["ingest"]["token_set"], true, "{cam}");
    assert!(
        cam["config"].get("token").is_none(),
        "the API shows the token: {cam}"
    );

    let url = format!("http://127.0.0.1:{}", daemon.http);
    let browser = std::thread::spawn(move || {
        browser_test(
            &url,
            "golive-final.png",
            &[
                ("SCENARIO", "golive".into()),
                ("LUNORA_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
                ("GOLIVE_INPUT", "cam".into()),
                ("GOLIVE_HOLD_S", "25".into()),
            ],
        )
    });

    // Chromium publishes: the channel cuts to it (main returns after error_clear_ms).
    let live = wait_for(Duration::from_secs(90), || {
        daemon.json("/api/v1/channels/program")["active_input"] == "cam"
    });
    if !live {
        let (_, report) = browser.join().expect("browser thread");
        panic!(
            "the channel never cut to the WHIP input\n{report}\n{}",
            daemon.log()
        );
    }
    let cut = switches(&daemon)
        .into_iter()
        .rev()
        .find(|s| s["to"] == "cam")
        .expect("a switch to cam");
    let keyframe_wait = as_u64(&cut["decision_to_cut_ms"]);
    eprintln!("switch to the WHIP input: keyframe wait {keyframe_wait} ms");
    // Chromium's encoder sends keyframes only when asked (its GOP runs for minutes): a cut in
    // under a second is the PLI at work, a round trip plus one encoded picture.
    assert!(
        keyframe_wait < 1000,
        "the cut waited {keyframe_wait} ms for a keyframe: {cut}"
    );
    assert!(
        daemon
            .log()
            .contains("asking the input for a keyframe (RTCP PLI)"),
        "no PLI was sent:\n{}",
        daemon.log()
    );

    // A second publisher on the live input: 409, whoever asks with the token.
    let (status, body) = whip_post(daemon.http, "cam", Some(TOKEN), "v=0\r\n");
    assert_eq!(status, 409, "{body}");
    let (status, body) = whip_post(
        daemon.http,
        "cam",
        Some("wrong-wrong-wrong-wrong"),
        "v=0\r\n",
    );
    assert_eq!(status, 401, "{body}");
    let (status, body) = http_anonymous(
        daemon.http,
        "DELETE /whip/program/cam/00000000000000000000000000000000 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 404, "{body}");

    // The channel's SRT output carries the browser: H.264 + AAC that decode, A/V together.
    let file = daemon.dir.path().join("whip.ts");
    let mut recorder = ffmpeg_record(
        daemon.dir.path(),
        "ffmpeg-record",
        &format!("srt://127.0.0.1:{srt_out}?mode=caller&latency=200000&timeout=3000000"),
        &file,
    );
    std::thread::sleep(Duration::from_secs(8));
    recorder.signal(nix::sys::signal::Signal::SIGINT);
    recorder.wait(Duration::from_secs(10));
    let streams = probe_streams(file.to_str().expect("utf-8 path"));
    assert!(streams.contains("h264,1280,720"), "{streams}");
    assert!(streams.contains("aac"), "{streams}");
    let frames = decoded_video_frames(&file);
    assert!(frames >= 150, "{frames} video frames decoded from 8 s");
    assert_eq!(
        daemon.json("/api/v1/channels/program")["active_input"],
        "cam",
        "the WHIP input did not stay on air while recording:\n{}",
        daemon.log()
    );
    let skew = start_time_skew(&file);
    assert!(skew < 0.2, "audio and video start {skew:.3} s apart");

    let (passed, report) = browser.join().expect("browser thread");
    assert!(
        passed,
        "the go-live page failed:\n{report}\n{}",
        daemon.log()
    );
    // Stop (the page's DELETE): the session ends, the channel fails over to the backup.
    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .json("/api/v1/channels/program")["active_input"]
            == "bars"),
        "no failover to the backup after the publisher stopped:\n{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains("WHIP session ended by DELETE"),
        "{}",
        daemon.log()
    );
    let metrics = daemon.get("/metrics").1;
    for line in [
        "lunora_whip_sessions_total 1",
        "lunora_whip_refused_total 6",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}

/// |video start − audio start| in seconds, as ffprobe reads the streams of `file`.
fn start_time_skew(file: &Path) -> f64 {
    let ffprobe = require("ffprobe", "ffmpeg");
    let out = run(
        "ffprobe (start times)",
        Command::new(ffprobe)
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_type,start_time",
                "-of",
                "csv=p=0",
            ])
            .arg(file),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let start = |kind: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(kind))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {kind} start time in {text:?}"))
    };
    (start("video") - start("audio")).abs()
}
