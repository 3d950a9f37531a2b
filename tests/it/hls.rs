//! The HLS preview, checked the way a player and ffprobe see it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// `#EXT-X-…:value` of a playlist.
fn tag<'a>(playlist: &'a str, name: &str) -> Option<&'a str> {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
}

fn durations(playlist: &str) -> Vec<f64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').split(',').next()?.parse().ok())
        .collect()
}

fn uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// ffprobe on a saved segment: (first video frame is a keyframe, video frames, decoder errors).
fn probe_segment(file: &Path) -> (bool, u64, String) {
    let ffprobe = require("ffprobe", "ffmpeg");
    let out = run(
        "ffprobe (segment)",
        Command::new(&ffprobe)
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "frame=key_frame",
                "-of",
                "csv=p=0",
            ])
            .arg(file),
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The first field is key_frame; frames with side data (the encoder's SEI) add more fields.
    let flags: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split(',').next())
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    (
        flags.first() == Some(&"1"),
        flags.len() as u64,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Saves every segment `playlist` lists into `dir` (names prefixed with `prefix`), checking
/// each answer is a segment with the headers a live player needs.
fn download_window(
    daemon: &Daemon,
    playlist: &str,
    dir: &Path,
    prefix: &str,
) -> Vec<(String, std::path::PathBuf)> {
    uris(playlist)
        .into_iter()
        .map(|uri| {
            let (status, data, head) = http_get_bytes(daemon.http, &format!("/hls/program/{uri}"));
            assert_eq!(status, 200, "{uri}: {}", String::from_utf8_lossy(&data));
            assert!(
                head.to_ascii_lowercase().contains("immutable") && head.contains("video/mp2t"),
                "{head}"
            );
            let file = dir.join(format!("{prefix}{uri}"));
            std::fs::write(&file, &data).expect("save segment");
            (uri, file)
        })
        .collect()
}

fn playlist(daemon: &Daemon) -> String {
    let (status, body) = daemon.get("/hls/program/index.m3u8");
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn the_preview_is_cut_at_keyframes_decodes_and_slides() {
    let input = free_udp_port();
    let daemon = Daemon::start(&single_srt_channel("encoder", input, "", ""));
    let dir = daemon.dir.path().to_path_buf();
    // Before any signal: a valid, empty live playlist.
    let empty = playlist(&daemon);
    assert!(
        empty.starts_with("#EXTM3U") && uris(&empty).is_empty(),
        "{empty}"
    );
    let source = make_ts(&dir, "source.ts", 60, "320x180", "300k");
    let _encoder = srt_push(&dir, "encoder", &source, input);
    assert!(
        wait_for(Duration::from_secs(30), || uris(&playlist(&daemon)).len()
            >= 6),
        "{}\n{}",
        playlist(&daemon),
        daemon.log()
    );

    let first = playlist(&daemon);
    let target: f64 = tag(&first, "#EXT-X-TARGETDURATION")
        .and_then(|t| t.parse().ok())
        .expect("target duration");
    assert_eq!(uris(&first).len(), 6, "a window of six segments: {first}");
    for d in durations(&first) {
        assert!(
            d.round() <= target && (0.9..=2.1).contains(&d),
            "segment of {d} s with target {target}: {first}"
        );
    }
    assert!(
        first.contains("#EXT-X-PROGRAM-DATE-TIME:") && !first.contains("#EXT-X-DISCONTINUITY\n"),
        "{first}"
    );
    let (_, _, head) = http_get_bytes(daemon.http, "/hls/program/index.m3u8");
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-control: no-cache"),
        "{head}"
    );
    // Fetch the whole window first (a segment slides out about a second after it is listed
    // last), then check each with ffprobe.
    for (uri, file) in download_window(&daemon, &first, &dir, "") {
        let (starts_on_keyframe, frames, errors) = probe_segment(&file);
        assert!(starts_on_keyframe, "{uri} does not start on a keyframe");
        assert!(frames >= 20, "{uri}: {frames} video frames");
        assert!(
            errors.trim().is_empty(),
            "{uri} decodes with errors: {errors}"
        );
    }
    // ffprobe reads the playlist as a player would.
    let streams = probe_streams(&format!(
        "http://127.0.0.1:{}/hls/program/index.m3u8",
        daemon.http
    ));
    assert!(
        streams.contains("h264,320,180") && streams.contains("aac"),
        "{streams}"
    );

    // The window slides; old segments go away; memory stays bounded.
    let sequence = |p: &str| {
        tag(p, "#EXT-X-MEDIA-SEQUENCE")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_secs(4));
    let later = playlist(&daemon);
    assert!(sequence(&later) >= sequence(&first) + 2, "{first}\n{later}");
    assert_eq!(uris(&later).len(), 6);
    // The oldest segment has left the playlist but, as RFC 8216 §6.2.2 requires, a player
    // that read the older playlist can still fetch it.
    let oldest = &uris(&first)[0];
    assert!(!uris(&later).contains(oldest), "{later}");
    assert_eq!(
        http_get_bytes(daemon.http, &format!("/hls/program/{oldest}")).0,
        200
    );
    let hls = &daemon.json("/api/v1/channels/program")["hls"];
    assert!(
        as_u64(&hls["segments"]) <= 6 && as_u64(&hls["bytes"]) < 2_000_000,
        "{hls}"
    );
    assert_eq!(daemon.get("/hls/nope/index.m3u8").0, 404);
    assert_eq!(daemon.get("/hls/program/abc.ts").0, 404);
}

#[test]
fn a_failover_keeps_the_playlist_continuous_without_a_discontinuity() {
    let (main, backup) = (free_udp_port(), free_udp_port());
    let config = main_backup_channel(main, backup, "", "");
    let daemon = Daemon::start(&config);
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 60, "320x180", "300k");
    let main_encoder = srt_push(&dir, "main", &source, main);
    let _backup_encoder = srt_push(&dir, "backup", &source, backup);
    assert!(
        wait_for(Duration::from_secs(30), || uris(&playlist(&daemon)).len()
            >= 4),
        "{}",
        daemon.log()
    );
    let before = playlist(&daemon);
    main_encoder.signal(Signal::SIGKILL);
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .json("/api/v1/channels/program")["active_input"]
            == "backup"),
        "no switch: {}",
        daemon.log()
    );
    let last_before = uris(&before).last().cloned().unwrap_or_default();
    // Six more segments: the whole window now comes from after the switch's neighbourhood.
    assert!(wait_for(Duration::from_secs(20), || !uris(&playlist(
        &daemon
    ))
    .contains(&last_before)
        || uris(&playlist(&daemon)).len() == 6));
    std::thread::sleep(Duration::from_secs(4));
    let after = playlist(&daemon);
    assert!(
        !after.contains("#EXT-X-DISCONTINUITY"),
        "a switch needs no discontinuity:\n{after}"
    );
    let numbers = |p: &str| -> Vec<u64> {
        uris(p)
            .iter()
            .filter_map(|u| u.strip_suffix(".ts")?.parse().ok())
            .collect()
    };
    let all: Vec<u64> = numbers(&after);
    assert!(
        all.windows(2).all(|w| w[1] == w[0] + 1),
        "media sequence runs on: {after}"
    );
    for (uri, file) in download_window(&daemon, &after, &dir, "after-") {
        let (starts_on_keyframe, _, errors) = probe_segment(&file);
        assert!(
            starts_on_keyframe && errors.trim().is_empty(),
            "{uri}: keyframe {starts_on_keyframe}, errors {errors}"
        );
    }
    assert_eq!(
        as_u64(&daemon.json("/api/v1/channels/program")["hls"]["discontinuities_total"]),
        0
    );
}
