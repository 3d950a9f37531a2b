//! WHIP (WebRTC) ingest against real publishers: Debian's headless Chromium through the
//! dashboard's "go live" page (fake camera and microphone), into a main-backup channel whose
//! backup is a test pattern; ffmpeg/ffprobe read the channel's SRT output.

use std::path::{Path, PathBuf};
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
    // Chromium lowers its frame rate when the box is busy; 12.5 fps is still a picture stream.
    assert!(frames >= 100, "{frames} video frames decoded from 8 s");
    assert_eq!(
        daemon.json("/api/v1/channels/program")["active_input"],
        "cam",
        "the WHIP input did not stay on air while recording:\n{}",
        daemon.log()
    );
    let skew = end_time_skew(&file);
    eprintln!("audio and video end {skew:.3} s apart in the recording");
    assert!(skew < 1.0, "audio and video end {skew:.3} s apart");

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
    crate::metrics::assert_promtool_accepts(&metrics);
    let requests: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lunora_whip_keyframe_requests_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("lunora_whip_keyframe_requests_total");
    assert!(requests >= 1, "no keyframe request counted:\n{metrics}");
    for line in [
        "lunora_whip_sessions_total 1",
        "lunora_whip_refused_total 6",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}

/// |last video PTS − last audio PTS| in seconds in `file`: the recording stops at one moment,
/// so streams on one timeline end together, apart from audio's extra delivery delay (the Opus
/// → AAC conversion, measured 0.01–0.46 s on a busy box). A track on a wrong clock (90 kHz
/// against 48 kHz, an unmapped RTP offset) ends seconds or hours away. (A reader joining
/// mid-stream starts video at a keyframe and audio at once, so start times say nothing.)
fn end_time_skew(file: &Path) -> f64 {
    let ffprobe = require("ffprobe", "ffmpeg");
    let out = run(
        "ffprobe (packet times)",
        Command::new(ffprobe)
            .args([
                "-v",
                "error",
                "-show_entries",
                "packet=codec_type,pts_time",
                "-of",
                "csv=p=0",
            ])
            .arg(file),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let last = |kind: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(kind))
            .filter_map(|l| l.split(',').nth(1)?.trim().parse::<f64>().ok())
            .fold(f64::NAN, f64::max)
    };
    let (video, audio) = (last("video"), last("audio"));
    assert!(
        video.is_finite() && audio.is_finite(),
        "no video or audio packets in {}",
        file.display()
    );
    (video - audio).abs()
}

/// For each flash in `file` (the picture turning white, as `whip_webrtcbin.py` sends once a
/// second), the start of the nearest beep minus the flash, in seconds. Left out: the
/// recording's first 2.5 s (a puller starts with the channel's last GOP, which may be from
/// before lip sync placed the audio) and the last flash (one stream may stop mid-beep).
fn flash_to_beep_seconds(file: &Path) -> Vec<f64> {
    let luma = frame_metadata(file, "v", "signalstats", "lavfi.signalstats.YAVG");
    // Loudness in 5 ms steps.
    let loudness = frame_metadata(
        file,
        "a",
        "asetnsamples=240,astats=metadata=1:reset=1",
        "lavfi.astats.Overall.RMS_level",
    );
    let beeps = rising_edges(&loudness, -30.0);
    let settled = luma.first().map_or(f64::INFINITY, |(start, _)| start + 2.5);
    let mut flashes: Vec<f64> = rising_edges(&luma, 128.0)
        .into_iter()
        .filter(|flash| *flash >= settled)
        .collect();
    flashes.pop();
    flashes
        .iter()
        .filter_map(|flash| {
            beeps
                .iter()
                .map(|beep| beep - flash)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
        })
        .collect()
}

/// A webrtcbin publisher in a namespace of its own, answered by a daemon whose channel
/// `program` has the WHIP input `gst` and an SRT listener output; its media reached the channel.
struct WebrtcbinSession {
    daemon: Daemon,
    client: Proc,
    /// The answer's head and the session URL.
    head: String,
    location: String,
    srt_out: u16,
    _netns: Netns,
}

/// `video`: `h264` or `h265`; `audio`: whether it sends Opus too.
fn publish_from_webrtcbin(tag: &str, subnet: u8, video: &str, audio: bool) -> WebrtcbinSession {
    let python = Path::new("/usr/bin/python3");
    assert!(python.is_file(), "Debian's python3 is missing");
    require("gst-inspect-1.0", "gstreamer1.0-tools");
    // libnice (webrtcbin's ICE) offers no loopback candidates: the peer needs an interface.
    let netns = Netns::create(tag, subnet);
    let host = netns.host_address();
    let (udp, srt_out) = (free_udp_port(), free_udp_port());
    let daemon = Daemon::start(&format!(
        "[whip]\nudp_listen = \"{host}:{udp}\"\nice_addresses = [\"{host}\"]\nice_servers = [\"stun:stun.example.invalid:3478\", \"turn:turn.example.invalid:3478\"]\n\n\
         [[channels]]\nid = \"program\"\nmode = \"single\"\n\n\
         [[channels.inputs]]\nid = \"gst\"\ntype = \"whip\"\ntoken = \"{TOKEN}\"\n\n{}",
        srt_listener_output("out", srt_out)
    ));
    let dir = daemon.dir.path();
    let (offer, answer) = (dir.join("offer.sdp"), dir.join("answer.sdp"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("it/peers/whip_webrtcbin.py");
    let mut command = netns.command(python);
    command
        .arg(&script)
        .args(["--video", video, "--seconds", "60", "--offer"])
        .arg(&offer)
        .arg("--answer")
        .arg(&answer);
    if !audio {
        command.arg("--no-audio");
    }
    let client = Proc::spawn("webrtcbin", dir, &mut command);
    assert!(
        wait_for(Duration::from_secs(30), || offer.is_file()),
        "webrtcbin made no offer:\n{}",
        client.stderr()
    );
    let sdp = std::fs::read_to_string(&offer).expect("offer");
    let response = raw_request(
        daemon.http,
        &format!(
            "POST /whip/program/gst HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/sdp\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    );
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 201"), "{response}");
    assert!(
        body.contains("a=candidate:") && body.contains(&host),
        "{body}"
    );
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .expect("Location")
        .to_string();
    assert!(location.starts_with("/whip/program/gst/"), "{location}");
    std::fs::write(dir.join("answer.part"), body).expect("answer");
    std::fs::rename(dir.join("answer.part"), &answer).expect("answer");
    assert!(
        wait_for(Duration::from_secs(30), || {
            let input = daemon.input("program", "gst");
            let frames = &input["frames_total"][if audio { "audio" } else { "video" }];
            input["state"] == "connected" && as_u64(frames) > 50
        }),
        "webrtcbin's media never reached the channel:\n{}\n{}",
        client.stderr(),
        daemon.log()
    );
    WebrtcbinSession {
        head: head.to_string(),
        location,
        daemon,
        client,
        srt_out,
        _netns: netns,
    }
}

impl WebrtcbinSession {
    /// Records `seconds` of the channel's SRT output; the recording must carry `video` (ffprobe's
    /// "codec,width,height") and, if `audio`, AAC (else no audio stream at all).
    fn record(&self, seconds: u64, video: &str, audio: bool) -> PathBuf {
        let dir = self.daemon.dir.path();
        let file = dir.join("gst.ts");
        let mut recorder = ffmpeg_record(
            dir,
            "ffmpeg-record",
            &format!(
                "srt://127.0.0.1:{}?mode=caller&latency=200000&timeout=3000000",
                self.srt_out
            ),
            &file,
        );
        std::thread::sleep(Duration::from_secs(seconds));
        recorder.signal(nix::sys::signal::Signal::SIGINT);
        recorder.wait(Duration::from_secs(10));
        let streams = probe_streams(file.to_str().expect("utf-8 path"));
        assert!(
            streams.contains(video) && streams.contains("aac") == audio,
            "{streams}\nrecorder: {}\n{}",
            recorder.stderr(),
            self.daemon.log()
        );
        let frames = decoded_video_frames(&file);
        assert!(
            frames >= seconds * 30 * 2 / 3,
            "{frames} video frames decoded from {seconds} s"
        );
        file
    }

    /// DELETE ends the session; the input waits again.
    fn delete(&self) {
        let (status, body) = http_anonymous(
            self.daemon.http,
            &format!(
                "DELETE {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                self.location
            ),
        );
        assert_eq!(status, 200, "{body}");
        assert!(
            wait_for(Duration::from_secs(10), || self
                .daemon
                .input("program", "gst")["state"]
                == "waiting"),
            "{}",
            self.daemon.log()
        );
    }
}

#[test]
fn whip_from_gstreamer_webrtcbin_in_a_network_namespace() {
    let session = publish_from_webrtcbin("wh", 0, "h264", true);
    let daemon = &session.daemon;
    for server in [
        "stun:stun.example.invalid:3478",
        "turn:turn.example.invalid:3478",
    ] {
        assert!(
            session
                .head
                .contains(&format!("link: <{server}>; rel=\"ice-server\"")),
            "{}",
            session.head
        );
    }
    // No trickle ICE: every candidate is in the answer, so PATCH is not offered.
    let (status, _) = http_anonymous(
        daemon.http,
        &format!(
            "PATCH {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/trickle-ice-sdpfrag\r\nContent-Length: 0\r\n\r\n",
            session.location
        ),
    );
    assert_eq!(status, 405);
    assert!(
        wait_for(
            Duration::from_secs(30),
            || daemon.input("program", "gst")["lip_sync"] == "sender_reports"
        ),
        "audio never placed by webrtcbin's sender reports: {}\n{}",
        daemon.input("program", "gst"),
        daemon.log()
    );
    let file = session.record(8, "h264,640,360", true);
    // Lip sync, after the sender's reports placed audio: each flash and its beep.
    let offsets = flash_to_beep_seconds(&file);
    eprintln!("beep minus flash in the recording, s: {offsets:.3?}");
    assert!(
        offsets.len() >= 3,
        "{offsets:?}: too few flashes with a beep"
    );
    assert!(
        offsets.iter().all(|o| o.abs() <= 0.1),
        "audio and video apart by {offsets:.3?} s\n{}",
        daemon.log()
    );
    session.delete();
    assert!(
        daemon.input("program", "gst").get("lip_sync").is_none(),
        "no publisher, no lip sync: {}",
        daemon.input("program", "gst")
    );
    drop(session.client);
}

#[test]
fn whip_hevc_from_gstreamer_webrtcbin_goes_through_as_hevc() {
    let session = publish_from_webrtcbin("wv", 2, "h265", true);
    let input = session.daemon.input("program", "gst");
    assert_eq!(input["video"]["codec"], "hevc", "{input}");
    session.record(6, "hevc,640,360", true);
    session.delete();
}

#[test]
fn whip_without_audio_carries_video_alone() {
    let session = publish_from_webrtcbin("wn", 3, "h264", false);
    session.record(5, "h264,640,360", false);
    // No AAC track announced: the output's program has no audio stream that never carries
    // anything (ffprobe on the live output lists every stream its PMT names).
    let streams = probe_streams(&format!(
        "srt://127.0.0.1:{}?mode=caller&latency=200000&timeout=3000000",
        session.srt_out
    ));
    assert!(
        streams.contains("h264") && !streams.contains("aac"),
        "{streams}"
    );
    let input = session.daemon.input("program", "gst");
    assert_eq!(as_u64(&input["frames_total"]["audio"]), 0, "{input}");
    session.delete();
}
