//! Content health end to end: an ffmpeg encoder whose picture goes black, later freezes while
//! its audio goes silent, pushed over SRT into the main input; a clean encoder into the backup.
//! The reasons must show in the API within the configured duration plus half a second, and
//! `black` (a trigger) must move the channel to the backup.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// When each stretch starts in the main's file, and how long it lasts.
const BLACK_AT: Duration = Duration::from_secs(6);
const FROZEN_AT: Duration = Duration::from_secs(13);
const STRETCH: Duration = Duration::from_secs(4);
/// `black_ms`, `freeze_ms` and `silence_ms` in the channel's config.
const DETECT: Duration = Duration::from_millis(2000);

/// 20 s of 640x360p25 H.264 (1 s GOP) + AAC: testsrc2 and a tone, black from 6 to 10 s, the
/// picture frozen and the audio silent from 13 to 17 s.
fn faulty_ts(dir: &Path) -> PathBuf {
    let path = dir.join("faulty.ts");
    let (black, frozen) = (BLACK_AT.as_secs(), FROZEN_AT.as_secs());
    let (black_end, frozen_end) = (black + STRETCH.as_secs(), frozen + STRETCH.as_secs());
    let video = format!(
        "[0:v]drawbox=c=black:t=fill:enable='between(t,{black},{black_end})',split[a][b];\
         [a][b]freezeframes=first={first}:last={last}:replace={first}[v];\
         [1:a]volume=enable='between(t,{frozen},{frozen_end})':volume=0[s]",
        first = frozen * 25,
        last = frozen_end * 25,
    );
    let out = run(
        "ffmpeg (make the faulty stream)",
        Command::new(require("ffmpeg", "ffmpeg"))
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=640x360:rate=25")
            .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"])
            .args(["-filter_complex", &video, "-map", "[v]", "-map", "[s]"])
            .args(["-t", "20", "-c:v", "libx264", "-preset", "veryfast"])
            .args(["-pix_fmt", "yuv420p", "-g", "25", "-b:v", "1M"])
            // As in `push`: audio beside the video of the same time.
            .args(["-c:a", "aac", "-pes_payload_size", "0", "-f", "mpegts"])
            .arg(&path),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "ffmpeg could not make the faulty stream: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// ffmpeg pushing `file` in real time to the SRT input on `port`, one PES per audio frame as
/// contribution encoders send it (ffmpeg's default bundles a third of a second of audio into
/// one PES, which then arrives that much later than the video beside it).
fn push(dir: &Path, file: &Path, port: u16) -> Proc {
    Proc::spawn(
        "main-encoder",
        dir,
        Command::new(require("ffmpeg", "ffmpeg"))
            .args(["-v", "warning", "-re", "-i"])
            .arg(file)
            .args(["-c", "copy", "-pes_payload_size", "0", "-f", "mpegts"])
            .arg(format!(
                "srt://127.0.0.1:{port}?latency=200000&pkt_size=1316"
            )),
    )
}

fn reasons(input: &Value) -> Vec<String> {
    input["health"]["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect()
}

#[test]
fn black_frozen_and_silent_content_is_reported_and_black_switches_to_the_backup() {
    let (main, backup) = (free_udp_port(), free_udp_port());
    let config = main_backup_channel(
        main,
        backup,
        "error_clear_ms = 2000\ntriggers = [\"black\", \"frozen\", \"silent\"]\n\
         black_ms = 2000\nfreeze_ms = 2000\nsilence_ms = 2000\n",
        "",
    );
    let daemon = Daemon::start(&config);
    let dir = daemon.dir.path().to_path_buf();
    let faulty = faulty_ts(&dir);
    let clean = make_ts(&dir, "clean.ts", 40, "640x360", "1M");
    let _backup = srt_push(&dir, "backup-encoder", &clean, backup);
    let _main = push(&dir, &faulty, main);

    // The file's clock starts when the main's first video frame arrives.
    assert!(
        wait_for(Duration::from_secs(10), || daemon.input("program", "main")
            ["frames_total"]["video"]
            .as_u64()
            .is_some_and(|n| n > 0)),
        "the main encoder sent no video: {}",
        daemon.log()
    );
    let start = Instant::now();
    let mut first_seen: Vec<(&str, Duration)> = Vec::new();
    let mut black_cleared = None;
    while start.elapsed() < Duration::from_secs(22) {
        let now = start.elapsed();
        let found = reasons(&daemon.input("program", "main"));
        for reason in ["black", "frozen", "silent"] {
            if found.iter().any(|r| r == reason) && !first_seen.iter().any(|(r, _)| *r == reason) {
                first_seen.push((reason, now));
            }
        }
        if black_cleared.is_none()
            && first_seen.iter().any(|(r, _)| *r == "black")
            && !found.iter().any(|r| r == "black")
        {
            black_cleared = Some(now);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = |reason: &str| {
        first_seen
            .iter()
            .find(|(r, _)| *r == reason)
            .map(|(_, at)| *at)
            .unwrap_or_else(|| {
                panic!(
                    "{reason} never showed in the main's health ({first_seen:?}):\n{}",
                    daemon.log()
                )
            })
    };
    // Pictures: within the duration plus 500 ms, plus 500 ms for the SRT latency (200 ms),
    // anchoring the file's clock on the first frame and polling (measured 2.3–2.5 s). Audio
    // is judged later (measured 3.1–3.4 s: it reaches the probe about 0.3 s after the video
    // beside it and its decode takes about 0.3 s more), so it gets a second more. Never before
    // the duration has passed.
    for (reason, stretch, slack) in [
        ("black", BLACK_AT, 1000),
        ("frozen", FROZEN_AT, 1000),
        ("silent", FROZEN_AT, 2000),
    ] {
        let delay = seen(reason).saturating_sub(stretch);
        eprintln!("{reason}: detected {} ms after it began", delay.as_millis());
        assert!(
            delay >= DETECT - Duration::from_millis(300)
                && delay <= DETECT + Duration::from_millis(slack),
            "{reason} detected {delay:?} after it began; expected about {DETECT:?}"
        );
    }
    // Black ends with the picture (4 s), then is held 2 s like any reason.
    let cleared = black_cleared
        .expect("black cleared")
        .saturating_sub(BLACK_AT);
    eprintln!("black cleared {} ms after it began", cleared.as_millis());
    assert!(
        cleared >= STRETCH && cleared <= STRETCH + Duration::from_secs(4),
        "black cleared {cleared:?} after it began"
    );

    let channel = daemon.json("/api/v1/channels/program");
    let switches = channel["switches"].as_array().cloned().unwrap_or_default();
    assert!(
        switches
            .iter()
            .any(|s| s["reason"] == "black" && s["from"] == "main" && s["to"] == "backup"),
        "no switch to the backup for black: {switches:?}"
    );
    let metrics = daemon.get("/metrics").1;
    assert!(
        metrics.contains("reason=\"black\"") && metrics.contains("reason=\"silent\""),
        "content reasons are not among the metrics' health reasons"
    );
}
