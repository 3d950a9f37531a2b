//! schemathesis (a third-party API fuzzer) against the daemon's own OpenAPI document, logged in
//! as a superadmin so every handler is reached: no request it makes gets a 5xx.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

#[test]
fn no_generated_request_gets_a_server_error() {
    let venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/schemathesis-venv/bin/schemathesis");
    let schemathesis = if venv.is_file() {
        venv
    } else {
        require(
            "schemathesis",
            "schemathesis (PyPI; bash .ci/run installs it into target/schemathesis-venv)",
        )
    };
    let outputs = crate::rtmp_output::rtmp_destination("yt", free_tcp_port(), "fuzz-key");
    let daemon = Daemon::start(&single_srt_channel(
        "encoder",
        free_udp_port(),
        "",
        &outputs,
    ));
    let auth = daemon.auth_header();
    let header = auth.trim_end();
    let out = run(
        "schemathesis",
        Command::new(schemathesis)
            .arg("run")
            .arg(format!(
                "http://127.0.0.1:{}/api/v1/openapi.json",
                daemon.http
            ))
            .args([
                "-H",
                header,
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "6",
            ])
            .args([
                "--phases",
                "coverage,fuzzing",
                "--workers",
                "2",
                "--seed",
                "1",
            ])
            .env("NO_COLOR", "1"),
        Duration::from_secs(400),
    );
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\nlunora log:\n{}",
        daemon.log()
    );
    assert!(
        report.contains("generated") && report.contains("passed"),
        "{report}"
    );
    let mut daemon = daemon;
    assert!(daemon.alive(), "lunora survived the fuzzing");
    assert!(!daemon.log().contains("panicked"), "{}", daemon.log());
    assert!(
        !daemon.log().contains("fuzz-key"),
        "the stream key never reached the log"
    );
}
