//! Accounts and roles: every route answers anonymous, user, admin and superadmin exactly as
//! its declared role says; cookie sessions cannot be used from another site; secrets set
//! through the API never come back out.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Adds `name` with `role` (as the harness's superadmin) and returns a bearer token for them.
fn account(daemon: &Daemon, name: &str, role: &str) -> (String, String) {
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

fn request(port: u16, method: &str, path: &str, auth: &str, extra: &str, body: &str) -> (u16, String) {
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
    assert!(paths.len() >= 30, "the document lists the routes: {}", paths.len());
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
            let role = operation["x-lunora-role"].as_str().unwrap_or_else(|| panic!("{method} {path} declares no role"));
            let method = method.to_uppercase();
            if role == "open" || path == "/api/v1/events" {
                continue;
            }
            let needed = RANK.iter().position(|r| *r == role).unwrap_or_else(|| panic!("{role}?"));
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
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/"] {
        assert_eq!(request(daemon.http, "GET", path, "", "", "").0, 200, "{path}");
    }
}

#[test]
fn a_session_cannot_be_used_from_another_site() {
    let daemon = Daemon::start(&single_srt_channel("encoder", free_udp_port(), "", ""));
    let cookie = login(daemon.http, "admin", ADMIN_PASSWORD);
    let with_cookie = format!("Cookie: {cookie}\r\n");
    let stop_all = "/api/v1/channels/program/outputs/stop-all";
    // The dashboard itself: same origin, JSON.
    let (status, body) = request(daemon.http, "POST", stop_all, &with_cookie, "Origin: http://127.0.0.1\r\nSec-Fetch-Site: same-origin\r\n", "{}");
    assert_eq!(status, 202, "{body}");
    // Another site's page posting with the victim's cookie.
    let (status, body) = request(daemon.http, "POST", stop_all, &with_cookie, "Origin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\n", "{}");
    assert_eq!(status, 403, "{body}");
    // A form post (text/plain needs no CORS preflight).
    let (status, body) = http_anonymous(
        daemon.http,
        &format!("POST {stop_all} HTTP/1.1\r\nHost: 127.0.0.1\r\n{with_cookie}Connection: close\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{{}}"),
    );
    assert_eq!(status, 415, "{body}");
    // DNS rebinding: the attacker's name resolves to the box.
    let (status, body) = http_anonymous(
        daemon.http,
        &format!("GET /api/v1/channels HTTP/1.1\r\nHost: rebind.evil.example\r\n{with_cookie}Connection: close\r\n\r\n"),
    );
    assert_eq!(status, 421, "{body}");
    assert!(!body.contains("program"), "nothing about the box leaks: {body}");
    // Wrong passwords: 401 with a reason, then throttled.
    for _ in 0..5 {
        let (status, _) = request(daemon.http, "POST", "/api/v1/session", "", "", r#"{"username":"admin","password":"wrong-one"}"#);
        assert_eq!(status, 401);
    }
    let (status, body) = request(daemon.http, "POST", "/api/v1/session", "", "", r#"{"username":"admin","password":"wrong-one"}"#);
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
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = stream.write_all(format!("GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n").as_bytes());
            let deadline = std::time::Instant::now() + Duration::from_secs(8);
            let mut buffer = [0; 8192];
            while std::time::Instant::now() < deadline {
                if let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    events.lock().expect("events").push_str(&String::from_utf8_lossy(&buffer[..n]));
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
        &format!(r#"{{"id":"cam","type":"srt","listen":"127.0.0.1:{srt}","passphrase":"{passphrase}"}}"#),
    );
    assert_eq!(status, 201, "{body}");
    let input: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(input["config"]["passphrase_set"], true, "{input}");
    let (status, body) = http_post_json(daemon.http, "/api/v1/channels/second/inputs", r#"{"id":"obs","role":"main","type":"rtmp"}"#);
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
    seen.push(("output", daemon.get("/api/v1/channels/program/outputs/yt").1));
    for (what, text) in &seen {
        assert!(!text.is_empty(), "{what} is empty");
        assert!(!text.contains(passphrase), "the passphrase shows in {what}");
        assert!(!text.contains(stream_key), "the stream key shows in {what}");
    }
    assert!(seen[4].1.contains("event: config"), "config changes are events: {}", seen[4].1);
}
