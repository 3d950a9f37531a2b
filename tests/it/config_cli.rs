//! `lunora check-config` on the shipped configs and on broken ones.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn check(path: &Path) -> (bool, String) {
    let out = run(
        "lunora check-config",
        Command::new(lunora_bin()).arg("check-config").arg(path),
        Duration::from_secs(20),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn every_file_in_config_dir_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            // example.toml references secrets by ${ENV}; give them values as a deployment would.
            let out = run(
                "lunora check-config",
                Command::new(lunora_bin())
                    .arg("check-config")
                    .arg(&path)
                    .env("LUNORA_SRT_PASSPHRASE", "an-srt-passphrase")
                    .env("MEDIALIVE_SRT_PASSPHRASE", "a-medialive-passphrase")
                    .env("OBS_STREAM_KEY", "an-obs-key")
                    .env("YOUTUBE_STREAM_KEY", "a-youtube-key")
                    .env("X_STREAM_KEY", "an-x-key"),
                Duration::from_secs(20),
            );
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "config/ holds default.toml and example.toml");
}

#[test]
fn broken_configs_report_file_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "syntax.toml",
            "[http]\nlisten = \"127.0.0.1:8080\n",
            &["syntax.toml:2:"],
        ),
        (
            "unknown.toml",
            "[http]\nlisten = \"127.0.0.1:8080\"\nport = 80\n",
            &["unknown.toml:3:1: unknown field `port`"],
        ),
        (
            "semantic.toml",
            "[[channels]]\nid = \"p\"\nmode = \"single\"\n[[channels.inputs]]\nid = \"a\"\ntype = \"srt\"\nlisten = \"0.0.0.0:9000\"\npassphrase = \"${LUNORA_IT_UNSET}\"\n[[channels.outputs]]\nid = \"o\"\ntype = \"srt\"\nmode = \"listener\"\nlisten = \"0.0.0.0:9000\"\n",
            &[
                "semantic.toml:8:14: environment variable LUNORA_IT_UNSET is not set",
                "semantic.toml:13:10: UDP port 9000 of output p/o is already used by input p/a",
            ],
        ),
    ];
    for (name, body, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).expect("write");
        let (ok, output) = check(&path);
        assert!(!ok, "{name} must fail");
        for line in *expected {
            assert!(
                output.contains(line),
                "{name}: expected {line:?} in:\n{output}"
            );
        }
    }
}

#[test]
fn json_logs_are_one_object_per_line_with_the_component_span() {
    let config = format!(
        "[log]\nformat = \"json\"\n\n{}",
        single_srt_channel("encoder", free_udp_port(), "", "")
    );
    let daemon = Daemon::start(&config);
    let log = daemon.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    assert!(
        lines.iter().any(|l| l["span"]["name"] == "input"
            && l["span"]["channel"] == "program"
            && l["span"]["input"] == "encoder"),
        "the input's lines carry its span: {log}"
    );
}

/// What used to pass `check-config` and then fail at start-up: a key that does not belong to
/// the certificate, two listeners on one TCP port across sections, a state dir that is a file.
#[test]
fn check_config_catches_what_would_fail_at_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    crate::rtmp_output::make_certificates(dir.path());
    // ca.key is a real key, just not the leaf certificate's.
    let (leaf, wrong_key) = (dir.path().join("leaf.pem"), dir.path().join("ca.key"));
    let state_file = dir.path().join("state-is-a-file");
    std::fs::write(&state_file, "").expect("write");
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:8080\"\ntls_listen = \"127.0.0.1:8443\"\ncertificate = \"{}\"\nprivate_key = \"{}\"\n\
         [rtmp]\nlisten = \"0.0.0.0:8080\"\n\
         [state]\ndir = \"{}\"\n\
         [[channels]]\nid = \"p\"\nmode = \"single\"\n",
        leaf.display(),
        wrong_key.display(),
        state_file.display()
    );
    let path = dir.path().join("start-up.toml");
    std::fs::write(&path, config).expect("write");
    let (ok, output) = check(&path);
    assert!(!ok, "must fail:\n{output}");
    for expected in [
        "start-up.toml:4:15: [http]: the certificate and key do not fit together",
        "start-up.toml:7:10: [rtmp] listen needs its own port: TCP port 8080 is already used by [http] listen",
        "start-up.toml:9:7: [state] dir",
    ] {
        assert!(
            output.contains(expected),
            "expected {expected:?} in:\n{output}"
        );
    }
    // The matching key passes.
    let fixed = std::fs::read_to_string(&path)
        .expect("read")
        .replace("ca.key", "leaf.key")
        .replace("0.0.0.0:8080", "0.0.0.0:1935")
        .replace(
            &state_file.display().to_string(),
            &dir.path().join("state").display().to_string(),
        );
    std::fs::write(&path, fixed).expect("write");
    let (ok, output) = check(&path);
    assert!(ok, "{output}");
}
