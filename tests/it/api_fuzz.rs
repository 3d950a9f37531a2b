//! schemathesis (a third-party API fuzzer) against the daemon's own OpenAPI document, once for
//! a logged-in identity of each role (user, admin, superadmin): no request it makes gets a 5xx,
//! and every response has a status, content type and body the document declares for it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// The installed fuzzer: the test script's virtual environment in the cargo target directory,
/// else one on the PATH.
fn schemathesis() -> PathBuf {
    let venv = target_dir().join("schemathesis-venv/bin/schemathesis");
    if venv.is_file() {
        venv
    } else {
        require(
            "schemathesis",
            "schemathesis (PyPI; bash .ci/run installs it into the cargo target dir's schemathesis-venv)",
        )
    }
}

/// schemathesis' settings: path parameters name the channel, input, outputs and sacrificial
/// user that exist half the time (random names the other half, which must get 404s), so the
/// handlers behind them answer for real and their replies are checked against the document.
/// SSE responses are read for three events, not forever. The identity's token is given as the
/// document's `token` security scheme (not as a plain header), so the `ignored_auth` check
/// can leave it out and see the request refused.
///
/// Values seen in responses are not reused as inputs (schemathesis does by default): a
/// superadmin lists every user and token, and reusing those names and ids would remove the
/// harness's own admin and token, and the fuzzing identity's, mid-run. The sacrificial user
/// and its token stand in for them, so removing and changing users and tokens still succeeds.
fn config(victim: &str, victim_token: &str) -> String {
    format!(
        r#"max-stream-events = 3

[phases.coverage.extra-data-sources]
responses = false
[phases.fuzzing.extra-data-sources]
responses = false

[[operations]]
include-path = "/api/v1/tokens/{{id}}"
parameters = {{ "path.id" = {{ dictionary = "token", probability = 0.5 }} }}

[auth.openapi.token]
bearer = "${{FUZZ_TOKEN}}"

[dictionaries.channel]
values = ["program"]
[dictionaries.input]
values = ["encoder"]
[dictionaries.output]
values = ["yt", "out"]
[dictionaries.file]
values = ["index.m3u8", "0.ts"]
[dictionaries.user]
values = ["{victim}"]
[dictionaries.token]
values = ["{victim_token}"]

[parameters]
"path.id" = {{ dictionary = "channel", probability = 0.5 }}
"path.channel" = {{ dictionary = "channel", probability = 0.5 }}
"path.iid" = {{ dictionary = "input", probability = 0.5 }}
"path.oid" = {{ dictionary = "output", probability = 0.5 }}
"path.file" = {{ dictionary = "file", probability = 0.5 }}
"path.name" = {{ dictionary = "user", probability = 0.5 }}
"#
    )
}

/// A schemathesis hook (Python, ours) that keeps every destination the fuzzer adds on this
/// machine: a preset becomes `custom` (YouTube, X and LinkedIn presets name hosts on the
/// internet, and start-all would dial them), a URL or caller address points at a closed
/// loopback port, and a listener binds loopback only. Everything else it generates is sent
/// as generated.
fn hooks(dead_port: u16) -> String {
    format!(
        r#"import schemathesis

# WHIP offers (application/sdp) go on the wire as text.
schemathesis.serializer.alias("application/sdp", "text/plain")


def _local(value):
    if isinstance(value, dict):
        if isinstance(value.get("preset"), str):
            value["preset"] = "custom"
        if isinstance(value.get("url"), str):
            value["url"] = "rtmp://127.0.0.1:{dead_port}/live"
        if isinstance(value.get("address"), str):
            value["address"] = "127.0.0.1:{dead_port}"
        if isinstance(value.get("listen"), str):
            value["listen"] = "127.0.0.1:" + value["listen"].rpartition(":")[2]
        for item in value.values():
            _local(item)
    elif isinstance(value, list):
        for item in value:
            _local(item)


@schemathesis.hook
def before_call(context, case, kwargs):
    _local(case.body)
"#
    )
}

/// Channel `program`'s outputs as the test starts it: RTMP destination `yt` (to a closed
/// loopback port) and SRT listener output `out`.
fn program_outputs(dead_port: u16, pull: u16) -> String {
    format!(
        "{}{}",
        crate::rtmp_output::rtmp_destination("yt", dead_port, "fuzz-key"),
        srt_listener_output("out", pull)
    )
}

/// Puts channel `program` back as it started (an admin run may have removed or changed it),
/// through the API as the harness's superadmin.
fn restore_program(daemon: &Daemon, input: u16, dead_port: u16, pull: u16) {
    let (status, body) = http_send(daemon.http, "DELETE", "/api/v1/channels/program", "");
    assert!(status == 204 || status == 404, "{status} {body}");
    let steps = [
        (
            "/api/v1/channels",
            r#"{"id": "program", "mode": "single", "failover": {"input_loss_ms": 500}}"#
                .to_string(),
        ),
        (
            "/api/v1/channels/program/inputs",
            format!(r#"{{"id": "encoder", "type": "srt", "listen": "127.0.0.1:{input}"}}"#),
        ),
        (
            "/api/v1/channels/program/outputs",
            format!(
                r#"{{"id": "yt", "type": "rtmp", "url": "rtmp://127.0.0.1:{dead_port}/live", "stream_key": "fuzz-key", "autostart": true, "retry_min_ms": 200, "retry_max_ms": 500}}"#
            ),
        ),
        (
            "/api/v1/channels/program/outputs",
            format!(
                r#"{{"id": "out", "type": "srt", "mode": "listener", "listen": "127.0.0.1:{pull}"}}"#
            ),
        ),
    ];
    for (path, body) in steps {
        let (status, reply) = http_post_json(daemon.http, path, &body);
        assert_eq!(
            status, 201,
            "restoring channel program: POST {path} {body}: {reply}"
        );
    }
}

/// A user with `role` and an API token of theirs (secret, id), made through the API by the
/// superadmin.
fn identity(daemon: &Daemon, name: &str, role: &str) -> (String, String) {
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/users",
        &format!(
            r#"{{"username": "{name}", "role": "{role}", "password": "fuzz-password-{name}"}}"#
        ),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/tokens",
        &format!(r#"{{"name": "fuzzing", "owner": "{name}"}}"#),
    );
    assert_eq!(status, 201, "{body}");
    let token: Value = serde_json::from_str(&body).expect("token JSON");
    assert_eq!(token["role"], role, "{token}");
    (
        token["token"].as_str().expect("token").to_string(),
        token["id"].as_str().expect("token id").to_string(),
    )
}

fn fuzz(daemon: &Daemon, dir: &Path, role: &str, token: &str) {
    let out = run(
        &format!("schemathesis as {role}"),
        Command::new(schemathesis())
            .current_dir(dir)
            .arg("--config-file")
            .arg(dir.join("schemathesis.toml"))
            .arg("run")
            .arg(format!(
                "http://127.0.0.1:{}/api/v1/openapi.json",
                daemon.http
            ))
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth",
                "--max-examples",
                "6",
                "--phases",
                "coverage,fuzzing",
                // One worker: with two, hypothesis' lambda-source cache raced between threads
                // ("AST constructor recursion depth mismatch", a runtime error in the tool).
                "--workers",
                "1",
                "--seed",
                "1",
                // A request the daemon leaves unanswered this long is a failure, not a wait.
                "--request-timeout",
                "10",
            ])
            .env("FUZZ_TOKEN", token)
            .env("SCHEMATHESIS_HOOKS", dir.join("fuzz_hooks.py"))
            .env("NO_COLOR", "1"),
        Duration::from_secs(300),
    );
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis as {role} found failures:\n{report}\nlunora log:\n{}",
        daemon.log()
    );
    assert!(
        report.contains("generated") && report.contains("passed"),
        "{report}"
    );
    for line in report.lines().filter(|l| l.contains("generated")) {
        eprintln!("schemathesis as {role}: {}", line.trim());
    }
}

#[test]
fn every_role_gets_documented_answers_and_never_a_server_error() {
    let (input, dead_port, pull) = (free_udp_port(), free_tcp_port(), free_udp_port());
    let daemon = Daemon::start(&single_srt_channel(
        "encoder",
        input,
        "",
        &program_outputs(dead_port, pull),
    ));
    let dir = daemon.dir.path().join("fuzz");
    std::fs::create_dir_all(&dir).expect("fuzz dir");
    // The user the fuzzer may change and remove; the identities it fuzzes with have names it
    // cannot guess, so no run removes or demotes itself.
    let victim = "fz-victim";
    let (_, mut victim_token) = identity(&daemon, victim, "user");
    std::fs::write(dir.join("fuzz_hooks.py"), hooks(dead_port)).expect("hooks");
    // No operation is left out. What could end a run early cannot here: logging out and
    // changing the password act on a session or need the current password (the fuzzer has
    // neither, it sends a token); token ids and user names are the victim's or random, never
    // the identities' own (see `config`). What a run may break for the next (channel
    // `program` removed or changed, the victim user removed) is put back before it.
    for (role, name) in [
        ("user", "fz-3c71-user"),
        ("admin", "fz-9a04-admin"),
        ("superadmin", "fz-5e28-super"),
    ] {
        restore_program(&daemon, input, dead_port, pull);
        if !daemon.get("/api/v1/users").1.contains(victim) {
            victim_token = identity(&daemon, victim, "user").1;
        }
        std::fs::write(dir.join("schemathesis.toml"), config(victim, &victim_token))
            .expect("config");
        let (token, _) = identity(&daemon, name, role);
        fuzz(&daemon, &dir, role, &token);
        assert_eq!(
            daemon.get("/healthz").0,
            200,
            "lunora survived the fuzzing as {role}"
        );
    }

    // Each identity got past validation at least once (its changes are in the audit log), so
    // the handlers behind the role checks were reached, not only their refusals.
    let audit = daemon.json("/api/v1/audit?limit=1000");
    let records = audit.as_array().expect("audit records");
    for name in ["fz-3c71-user", "fz-9a04-admin", "fz-5e28-super"] {
        assert!(
            records.iter().any(|r| r["username"] == name),
            "no change by {name} was accepted"
        );
    }
    // Every destination and caller output the fuzzer made pointed at this machine.
    for record in records {
        for key in ["url", "address"] {
            if let Some(target) = record["details"][key].as_str() {
                assert!(
                    target.contains("127.0.0.1"),
                    "the fuzzer made lunora reach beyond loopback: {record}"
                );
            }
        }
    }
    let mut daemon = daemon;
    assert!(daemon.alive(), "lunora survived the fuzzing");
    assert!(!daemon.log().contains("panicked"), "{}", daemon.log());
    assert!(
        !daemon.log().contains("fuzz-key"),
        "the stream key never reached the log"
    );
}
