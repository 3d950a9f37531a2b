//! Accounts and roles: every route answers anonymous, user, admin and superadmin exactly as
//! its declared role says; cookie sessions cannot be used from another site; secrets set
//! through the API never come back out.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Adds `name` with `role` (as the harness's superadmin) and returns a bearer token for them.
pub(crate) fn account(daemon: &Daemon, name: &str, role: &str) -> (String, String) {
    let password = format!("{name}-password");
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/users",
        &format!(r#"{{"username":"{name}","role":"{role}","password":"{password}"}}"#),
    );
    assert_eq!(status, 201, "{body}");
    let cookie = login(daemon.http, name, &password);
    let token = create_token(daemon.http, &cookie, "matrix");
    (cookie, token)
}

pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    auth: &str,
    extra: &str,
    body: &str,
) -> (u16, String) {
    http_anonymous(
        port,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{extra}Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

const RANK: [&str; 3] = ["user", "admin", "superadmin"];

#[test]
fn every_route_answers_each_role_as_its_table_says() {
    let daemon = Daemon::start(&single_srt_channel("encoder", free_udp_port(), "", ""));
    let document = daemon.json("/api/v1/openapi.json");
    let tokens: Vec<(usize, String)> = RANK
        .iter()
        .enumerate()
        .map(|(rank, role)| (rank, account(&daemon, &format!("m-{role}"), role).1))
        .collect();
    let paths = document["paths"].as_object().expect("paths");
    assert!(
        paths.len() >= 30,
        "the document lists the routes: {}",
        paths.len()
    );
    let mut checked = 0;
    for (path, methods) in paths {
        // Ids that exist nowhere: an allowed caller gets 404 or 400, never a change.
        let concrete = path
            .replace("{id}", "nochannel")
            .replace("{iid}", "noinput")
            .replace("{oid}", "nooutput")
            .replace("{name}", "nobody")
            .replace("{channel}", "nochannel")
            .replace("{file}", "index.m3u8");
        for (method, operation) in methods.as_object().expect("methods") {
            let role = operation["x-lunora-role"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} declares no role"));
            let method = method.to_uppercase();
            if role == "open" || path == "/api/v1/events" {
                continue;
            }
            if role == "input_token" {
                // Authorised by the input's own token (WHIP), never by an account: no
                // account's token opens it, whatever its role.
                let accounts = tokens
                    .iter()
                    .map(|(_, token)| format!("Authorization: Bearer {token}\r\n"));
                for auth in std::iter::once(String::new()).chain(accounts) {
                    let (status, body) = http_anonymous(
                        daemon.http,
                        &format!(
                            "{method} {concrete} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\
                             Connection: close\r\nContent-Type: application/sdp\r\n\
                             Content-Length: 5\r\n\r\nv=0\r\n"
                        ),
                    );
                    assert!(
                        [401, 404].contains(&status),
                        "{method} {path} with {auth:?}: {status} {body}"
                    );
                    checked += 1;
                }
                continue;
            }
            let needed = RANK
                .iter()
                .position(|r| *r == role)
                .unwrap_or_else(|| panic!("{role}?"));
            let (status, body) = request(daemon.http, &method, &concrete, "", "", "{}");
            assert_eq!(status, 401, "anonymous {method} {path}: {body}");
            for (rank, token) in &tokens {
                let auth = format!("Authorization: Bearer {token}\r\n");
                let (status, body) = request(daemon.http, &method, &concrete, &auth, "", "{}");
                if *rank < needed {
                    assert_eq!(status, 403, "{} {method} {path}: {body}", RANK[*rank]);
                } else {
                    assert!(
                        ![401, 403].contains(&status) && status != 0,
                        "{} {method} {path} should be allowed: {status} {body}",
                        RANK[*rank]
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 90, "{checked} checks");
    // Open routes stay open.
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/",
    ] {
        assert_eq!(
            request(daemon.http, "GET", path, "", "", "").0,
            200,
            "{path}"
        );
    }
}

#[test]
fn a_session_cannot_be_used_from_another_site() {
    let daemon = Daemon::start(&single_srt_channel("encoder", free_udp_port(), "", ""));
    let cookie = login(daemon.http, "admin", ADMIN_PASSWORD);
    let with_cookie = format!("Cookie: {cookie}\r\n");
    let stop_all = "/api/v1/channels/program/outputs/stop-all";
    // The dashboard itself: same origin, JSON.
    let (status, body) = request(
        daemon.http,
        "POST",
        stop_all,
        &with_cookie,
        "Origin: http://127.0.0.1\r\nSec-Fetch-Site: same-origin\r\n",
        "{}",
    );
    assert_eq!(status, 202, "{body}");
    // Another site's page posting with the victim's cookie.
    let (status, body) = request(
        daemon.http,
        "POST",
        stop_all,
        &with_cookie,
        "Origin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\n",
        "{}",
    );
    assert_eq!(status, 403, "{body}");
    // A form post (text/plain needs no CORS preflight).
    let (status, body) = http_anonymous(
        daemon.http,
        &format!(
            "POST {stop_all} HTTP/1.1\r\nHost: 127.0.0.1\r\n{with_cookie}Connection: close\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{{}}"
        ),
    );
    assert_eq!(status, 415, "{body}");
    // DNS rebinding: the attacker's name resolves to the box.
    let (status, body) = http_anonymous(
        daemon.http,
        &format!(
            "GET /api/v1/channels HTTP/1.1\r\nHost: rebind.evil.example\r\n{with_cookie}Connection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 421, "{body}");
    assert!(
        !body.contains("program"),
        "nothing about the box leaks: {body}"
    );
    // Wrong passwords: 401 with a reason, then throttled.
    for _ in 0..5 {
        let (status, _) = request(
            daemon.http,
            "POST",
            "/api/v1/session",
            "",
            "",
            r#"{"username":"admin","password":"wrong-one"}"#,
        );
        assert_eq!(status, 401);
    }
    let (status, body) = request(
        daemon.http,
        "POST",
        "/api/v1/session",
        "",
        "",
        r#"{"username":"admin","password":"wrong-one"}"#,
    );
    assert_eq!(status, 429, "{body}");
    let log = daemon.log();
    assert!(log.contains("failed login"), "{log}");
    assert!(!log.contains("wrong-one"), "passwords are never logged");
}

#[test]
fn secrets_set_through_the_api_never_come_back_out() {
    let daemon = Daemon::start(&single_srt_channel("encoder", free_udp_port(), "", ""));
    let events = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let listener = {
        let (events, port, auth) = (events.clone(), daemon.http, daemon.auth_header());
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = stream.write_all(
                format!("GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n").as_bytes(),
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(8);
            let mut buffer = [0; 8192];
            while std::time::Instant::now() < deadline {
                if let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    events
                        .lock()
                        .expect("events")
                        .push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let passphrase = "very-secret-passphrase-42";
    let stream_key = "very-secret-stream-key-43";
    let srt = free_udp_port();
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/channels/program/outputs",
        &format!(r#"{{"id":"yt","preset":"youtube","stream_key":"{stream_key}"}}"#),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/channels",
        r#"{"id":"second","mode":"single"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/channels/second/inputs",
        &format!(
            r#"{{"id":"cam","type":"srt","listen":"127.0.0.1:{srt}","passphrase":"{passphrase}"}}"#
        ),
    );
    assert_eq!(status, 201, "{body}");
    let input: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(input["config"]["passphrase_set"], true, "{input}");
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/channels/second/inputs",
        r#"{"id":"obs","role":"main","type":"rtmp"}"#,
    );
    // single mode takes one input
    assert_eq!(status, 400, "{body}");
    let _ = listener.join();
    let mut seen = vec![
        ("channels", daemon.get("/api/v1/channels").1),
        ("metrics", daemon.get("/metrics").1),
        ("audit", daemon.get("/api/v1/audit").1),
        ("page", daemon.get("/").1),
        ("events", events.lock().expect("events").clone()),
        ("log", daemon.log()),
    ];
    seen.push((
        "output",
        daemon.get("/api/v1/channels/program/outputs/yt").1,
    ));
    for (what, text) in &seen {
        assert!(!text.is_empty(), "{what} is empty");
        assert!(!text.contains(passphrase), "the passphrase shows in {what}");
        assert!(!text.contains(stream_key), "the stream key shows in {what}");
    }
    assert!(
        seen[4].1.contains("event: config"),
        "config changes are events: {}",
        seen[4].1
    );
}

#[test]
fn the_dashboard_and_api_are_served_over_https_with_secure_cookies() {
    let dir = tempfile::tempdir().expect("temp dir");
    crate::rtmp_output::make_certificates(dir.path());
    let tls = free_tcp_port();
    let d = dir.path().display().to_string();
    // These keys follow the harness's `[http] listen` line, so they belong to [http].
    let config = format!(
        "tls_listen = \"127.0.0.1:{tls}\"\ncertificate = \"{d}/leaf.pem\"\nprivate_key = \"{d}/leaf.key\"\n\n{}",
        single_srt_channel("encoder", free_udp_port(), "", "")
    );
    let daemon = Daemon::start_with_env(&config, dir, &[]);
    let curl = require("curl", "curl");
    let out = run(
        "curl (https login)",
        std::process::Command::new(curl)
            .args(["-s", "-i", "--max-time", "10", "--cacert"])
            .arg(daemon.dir.path().join("ca.pem"))
            .args(["-H", "Content-Type: application/json", "--data"])
            .arg(format!(
                r#"{{"username":"admin","password":"{ADMIN_PASSWORD}"}}"#
            ))
            .arg(format!("https://127.0.0.1:{tls}/api/v1/session")),
        Duration::from_secs(20),
    );
    let response = String::from_utf8_lossy(&out.stdout);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "{response}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cookie = response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {response}"));
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // A client that opens TCP and never says hello holds up nobody.
    let _silent = std::net::TcpStream::connect(("127.0.0.1", tls)).expect("connect");
    let (status, _) = daemon.get("/readyz");
    assert_eq!(status, 200);
}

#[test]
fn accounts_and_tokens_are_managed_from_the_shell_while_the_daemon_runs() {
    let daemon = Daemon::start(&single_srt_channel("encoder", free_udp_port(), "", ""));
    let config = daemon.dir.path().join("lunora.toml");
    let state = daemon.dir.path().join("state");
    let lunora = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(lunora_bin())
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("LUNORA_STATE_DIR", &state)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("lunora");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("password");
        let out = child.wait_with_output().expect("lunora ends");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = lunora(
        &["user", "add", "shell-op", "--role", "admin"],
        "shell-password\n",
    );
    assert!(ok, "{out}");
    assert!(
        !out.contains("shell-password"),
        "the password is not echoed: {out}"
    );
    let cookie = login(daemon.http, "shell-op", "shell-password");
    assert!(cookie.starts_with("lunora_session="), "{cookie}");
    let (ok, out) = lunora(
        &[
            "token", "create", "cron", "--user", "shell-op", "--role", "user",
        ],
        "",
    );
    assert!(ok, "{out}");
    let token = out
        .split_whitespace()
        .find(|w| w.starts_with("lun_"))
        .unwrap_or_else(|| panic!("no token printed: {out}"))
        .to_string();
    let with = |token: &str, path: &str| {
        http_anonymous(
            daemon.http,
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
        )
        .0
    };
    assert_eq!(with(&token, "/api/v1/channels"), 200);
    assert_eq!(
        with(&token, "/api/v1/audit"),
        403,
        "the token has the role it was given"
    );
    let (ok, list) = lunora(&["token", "list", "--user", "shell-op"], "");
    assert!(
        ok && list.contains("cron") && !list.contains(&token),
        "{list}"
    );
    let id = list
        .lines()
        .find(|l| l.contains("cron"))
        .and_then(|l| l.split_whitespace().next())
        .expect("token id")
        .to_string();
    let (ok, out) = lunora(&["token", "revoke", &id], "");
    assert!(ok, "{out}");
    assert_eq!(
        with(&token, "/api/v1/channels"),
        401,
        "a revoked token stops working at once"
    );
    let (ok, out) = lunora(&["user", "list"], "");
    assert!(
        ok && out.contains("shell-op") && out.contains("admin"),
        "{out}"
    );
}

#[test]
fn an_unreadable_store_keeps_the_program_on_air_and_holds_every_destination() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(state.join("lunora.db"), vec![0x5a; 8192]).expect("garbage");
    let outputs = crate::rtmp_output::rtmp_destination("platform", free_tcp_port(), "held-key");
    let daemon = Daemon::start_with_env(
        &single_srt_channel("encoder", free_udp_port(), "", &outputs),
        dir,
        &[],
    );
    let system = daemon.json("/api/v1/system");
    assert_eq!(system["store"]["ok"], false, "{system}");
    assert!(
        system["store"]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("unreadable")),
        "{system}"
    );
    assert!(
        daemon
            .get("/metrics")
            .1
            .lines()
            .any(|l| l == "lunora_store_unreadable 1"),
        "the metric says so"
    );
    // The destination has autostart = true, but the operator might have stopped it: it waits.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(daemon.output("program", "platform")["state"], "idle");
    assert_eq!(
        daemon.input("program", "encoder")["state"],
        "waiting",
        "the media path runs"
    );
    let kept: Vec<String> = std::fs::read_dir(daemon.dir.path().join("state"))
        .expect("state dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert!(
        kept.iter().any(|n| n.starts_with("lunora.db.unreadable-")),
        "kept for inspection: {kept:?}"
    );
}

/// The outputs that feed MediaLive (`medialive`, `medialive-…`) are the superadmin's: a user
/// or an admin can neither change, remove, stop nor imitate them, and "stop all" leaves them
/// running; a user does not even see them.
#[test]
fn only_a_superadmin_touches_the_medialive_feed() {
    let nowhere = free_tcp_port();
    let feed = format!(
        "[[channels.outputs]]\nid = \"medialive\"\ntype = \"rtmp\"\nurl = \"rtmp://127.0.0.1:{nowhere}/program\"\nstream_key = \"main\"\nautostart = true\n"
    );
    let daemon = Daemon::start(&single_srt_channel("cam", free_udp_port(), "", &feed));
    let outputs = "/api/v1/channels/program/outputs";
    let body = format!(
        r#"{{"id":"medialive","type":"rtmp","url":"rtmp://127.0.0.1:{nowhere}/other","stream_key":"k"}}"#
    );
    let imitation = format!(
        r#"{{"id":"medialive-x","type":"rtmp","url":"rtmp://127.0.0.1:{nowhere}/x","stream_key":"k"}}"#
    );
    let running = || daemon.output("program", "medialive")["state"] != "idle";
    assert!(
        wait_for(Duration::from_secs(10), running),
        "the feed starts"
    );
    for role in ["user", "admin"] {
        let (_, token) = account(&daemon, &format!("{role}-1"), role);
        let auth = format!("Authorization: Bearer {token}\r\n");
        for (method, path, body) in [
            ("PUT", format!("{outputs}/medialive"), body.as_str()),
            ("DELETE", format!("{outputs}/medialive"), ""),
            ("POST", format!("{outputs}/medialive/stop"), ""),
            ("POST", outputs.to_string(), imitation.as_str()),
        ] {
            let (status, answer) = request(daemon.http, method, &path, &auth, "", body);
            assert_eq!(status, 403, "{role}: {method} {path}: {answer}");
            assert!(answer.contains("superadmins manage it"), "{answer}");
        }
        let (status, listed) = request(daemon.http, "GET", outputs, &auth, "", "");
        assert_eq!(status, 200, "{listed}");
        assert_eq!(
            listed.contains("\"medialive\""),
            role == "admin",
            "{role} lists: {listed}"
        );
        let feed_path = format!("{outputs}/medialive");
        let (status, _) = request(daemon.http, "GET", &feed_path, &auth, "", "");
        assert_eq!(status, if role == "admin" { 200 } else { 404 }, "{role}");
        let (_, channel) = request(
            daemon.http,
            "GET",
            "/api/v1/channels/program",
            &auth,
            "",
            "",
        );
        assert_eq!(
            channel.contains("medialive"),
            role == "admin",
            "{role}: {channel}"
        );
        let (status, answer) = request(
            daemon.http,
            "POST",
            &format!("{outputs}/stop-all"),
            &auth,
            "",
            "",
        );
        assert_eq!(status, 202, "{role}: stop-all: {answer}");
        assert!(running(), "{role}'s stop-all stopped the feed");
    }
    let (status, answer) = http_send(
        daemon.http,
        "POST",
        &format!("{outputs}/medialive/stop"),
        "",
    );
    assert_eq!(status, 202, "the superadmin stops it: {answer}");
}
