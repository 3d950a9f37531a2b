//! The dashboard in Debian's chromium, driven by playwright-core (web/tests/dashboard.test.mjs),
//! against the real daemon fed by two ffmpeg encoders, with nginx-rtmp as a destination.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::rtmp_output::nginx;

/// Runs the browser script against `url`; `env` adds its inputs. Returns its report.
pub(crate) fn browser_test(
    url: &str,
    screenshot_name: &str,
    env: &[(&str, String)],
) -> (bool, String) {
    let node = require("node", "nodejs");
    require("chromium", "chromium");
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules/playwright-core is missing: run `npm ci --prefix web` (bash .ci/run does)"
    );
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ui");
    std::fs::create_dir_all(&artifacts).expect("target/ui");
    let screenshot = artifacts.join(screenshot_name);
    let _ = std::fs::remove_file(&screenshot);
    let mut command = Command::new(node);
    command
        .arg(web.join("tests/dashboard.test.mjs"))
        .current_dir(&web)
        .env("LUNORA_URL", url)
        .env("SCREENSHOT", &screenshot);
    for (key, value) in env {
        command.env(key, value);
    }
    let out = run(
        "node web/tests/dashboard.test.mjs",
        &mut command,
        Duration::from_secs(240),
    );
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        screenshot.is_file(),
        "no screenshot at {}:\n{report}",
        screenshot.display()
    );
    (out.status.success(), report)
}

#[test]
fn first_run_shows_waiting_for_signal_and_the_ingest_help() {
    // The embedded default config, as `lunora run` starts on a fresh box (its fixed ports:
    // HTTP 127.0.0.1:8080, SRT 9000/9001/9100).
    let dir = tempfile::tempdir().expect("temp dir");
    let mut daemon = Proc::spawn(
        "lunora-default",
        dir.path(),
        Command::new(lunora_bin())
            .arg("run")
            .env("LUNORA_STATE_DIR", dir.path().join("state"))
            .env("LUNORA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env_remove("RUST_LOG"),
    );
    assert!(
        wait_for(Duration::from_secs(20), || http_get(8080, "/readyz").0
            == 200),
        "lunora run (default config) did not become ready; is port 8080 free?\n{}",
        daemon.stderr()
    );
    let (passed, report) = browser_test(
        "http://127.0.0.1:8080",
        "first-run.png",
        &[
            ("SCENARIO", "first-run".into()),
            ("LUNORA_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        ],
    );
    assert!(
        passed,
        "browser test failed:\n{report}\nlunora log:\n{}",
        daemon.stderr()
    );
    daemon.signal(Signal::SIGTERM);
    assert!(
        daemon
            .wait(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
}

#[test]
fn the_dashboard_plays_switches_and_manages_destinations_in_chromium() {
    let (main, backup, rtmp) = (free_udp_port(), free_udp_port(), free_tcp_port());
    let config = main_backup_channel(main, backup, "", "");
    let daemon = Daemon::start(&config);
    let dir = daemon.dir.path().to_path_buf();
    let _server = nginx(&dir, rtmp);
    let source = make_ts(&dir, "source.ts", 150, "640x360", "600k");
    let _main = srt_push(&dir, "main", &source, main);
    let _backup = srt_push(&dir, "backup", &source, backup);

    let url = format!("http://127.0.0.1:{}", daemon.http);
    let (passed, report) = browser_test(
        &url,
        "dashboard.png",
        &[
            ("SCENARIO", "dashboard".into()),
            ("LUNORA_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
            ("RTMP_URL", format!("rtmp://127.0.0.1:{rtmp}/live")),
        ],
    );
    assert!(
        passed,
        "browser test failed:\n{report}\nlunora log:\n{}",
        daemon.log()
    );
    // What the page did, confirmed from the other side.
    let channel = daemon.json("/api/v1/channels/program");
    assert_eq!(channel["active_input"], "main");
    let switches: u64 = channel["switch_counts"]
        .as_array()
        .map_or(0, |a| a.iter().map(|c| as_u64(&c["count"])).sum());
    assert!(switches >= 2, "forced to backup and back: {channel}");
    assert!(
        decoded_video_frames(&dir.join("ui-test-secret-4b1d.flv")) > 0,
        "nginx recorded what the dashboard started"
    );
    assert!(
        !daemon.log().contains("ui-test-secret-4b1d"),
        "stream keys are never logged"
    );
    println!("{report}");
}

/// Adds `name` with `role` through the API (as the harness's superadmin).
fn add_user(daemon: &Daemon, name: &str, role: &str, password: &str) {
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/users",
        &format!(r#"{{"username":"{name}","role":"{role}","password":"{password}"}}"#),
    );
    assert_eq!(status, 201, "{body}");
}

#[test]
fn each_role_sees_its_own_dashboard_and_an_admin_adds_a_source_that_goes_on_air() {
    let (main, backup, cam) = (free_udp_port(), free_udp_port(), free_udp_port());
    let daemon = Daemon::start(&main_backup_channel(main, backup, "", ""));
    let dir = daemon.dir.path().to_path_buf();
    let url = format!("http://127.0.0.1:{}", daemon.http);
    // Accounts made by a superadmin start with a password their owner must change; the page
    // asks for a new one, as it would for a real operator.
    add_user(&daemon, "viewer", "user", "viewer-password");
    add_user(&daemon, "editor", "admin", "editor-password");
    for (scenario, user, password, extra) in [
        ("user", "viewer", "viewer-password", vec![]),
        (
            "sources",
            "editor",
            "editor-password",
            vec![("SRT_INPUT_PORT", cam.to_string())],
        ),
        ("users", "admin", ADMIN_PASSWORD, vec![]),
    ] {
        let mut env = vec![
            ("SCENARIO", scenario.to_string()),
            ("LUNORA_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
            ("LUNORA_USERNAME", user.to_string()),
            ("LUNORA_PASSWORD", password.to_string()),
        ];
        env.extend(extra);
        let (passed, report) = browser_test(&url, &format!("{scenario}.png"), &env);
        assert!(
            passed,
            "{scenario} scenario failed:\n{report}\nlunora log:\n{}",
            daemon.log()
        );
    }
    // The input the admin added from the form takes an encoder and goes on air (nothing
    // feeds main or backup).
    // The passphrase and stream id the browser script typed into the form.
    let source = make_ts(&dir, "cam.ts", 20, "320x180", "300k");
    let _cam = ffmpeg_push(
        &dir,
        "cam",
        &source,
        &format!(
            "srt://127.0.0.1:{cam}?latency=200000&pkt_size=1316&passphrase=ui-passphrase-7c2e9a&pbkeylen=16&streamid=ui-cam2"
        ),
    );
    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .json("/api/v1/channels/program")["active_input"]
            == "cam2"),
        "the input added from the form is not on air: {}\n{}",
        daemon.json("/api/v1/channels/program"),
        daemon.log()
    );
    let users = daemon.json("/api/v1/users");
    assert!(
        users.to_string().contains("ui-operator"),
        "the superadmin added a user: {users}"
    );
}
