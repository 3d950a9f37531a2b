//! HTTP against hostile clients: idle sockets, a flood from one address, oversized and
//! mistyped bodies.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

fn daemon() -> Daemon {
    Daemon::start(&single_srt_channel("cam", free_udp_port(), "", ""))
}

/// Opens `count` sockets from `source` that never send a byte.
fn idle_sockets(source: [u8; 4], count: usize, port: u16) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| connect_from(source, port).ok())
        .collect()
}

fn still_open(sockets: &mut [TcpStream]) -> usize {
    sockets
        .iter_mut()
        .map(closed_by_server)
        .filter(|closed| !closed)
        .count()
}

/// 2,000 idle sockets (the attack that exhausted file descriptors) do not stop `/healthz`, and
/// the server closes them once the request-head timeout has passed; one address cannot hold
/// more than its share.
#[test]
fn idle_sockets_neither_starve_healthz_nor_stay_open() {
    let daemon = daemon();
    let mut idle: Vec<TcpStream> = (2..=9u8)
        .flat_map(|last| idle_sockets([127, 0, 0, last], 250, daemon.http))
        .collect();
    assert_eq!(idle.len(), 2000);
    let mut flood = idle_sockets([127, 0, 0, 10], 300, daemon.http);
    assert_eq!(flood.len(), 300, "the kernel accepts them all");
    let asked = Instant::now();
    let (status, _) = daemon.get("/healthz");
    assert_eq!(status, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "/healthz took {:?} beside 2,300 idle sockets",
        asked.elapsed()
    );
    std::thread::sleep(Duration::from_millis(500));
    let open = still_open(&mut flood);
    assert!(
        open <= 256,
        "{open} connections from one address stay open (limit 256)"
    );
    let opened = Instant::now();
    let mut left = usize::MAX;
    while left > 0 && opened.elapsed() < Duration::from_secs(14) {
        std::thread::sleep(Duration::from_secs(1));
        left = still_open(&mut idle) + still_open(&mut flood);
    }
    assert_eq!(
        left, 0,
        "idle connections must be closed after the request-head timeout (10 s)"
    );
    assert!(
        daemon
            .log()
            .contains("HTTP connection refused: too many connections from this address"),
        "{}",
        daemon.log()
    );
}

/// A 1 MiB JSON body gets 413 and a wrong content type 415, on every kind of change (a PUT
/// used to answer both with 400 and the parser's text), and neither answer repeats what was
/// sent.
#[test]
fn oversized_and_mistyped_bodies_are_refused_without_echo() {
    let daemon = daemon();
    let marker = "ECHO-MARKER-7f3a";
    let big = format!(
        "{{\"id\":\"{marker}\",\"pad\":\"{}\"}}",
        "x".repeat(1 << 20)
    );
    let small = format!("{{\"id\":\"{marker}\"}}");
    for target in [
        "POST /api/v1/channels",
        "PUT /api/v1/channels/program",
        "PUT /api/v1/channels/program/inputs/encoder",
        "PUT /api/v1/channels/program/outputs/yt",
    ] {
        let (status, body) = http_anonymous(
            daemon.http,
            &format!(
                "{target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{}Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{big}",
                daemon.auth_header(),
                big.len()
            ),
        );
        assert_eq!(status, 413, "{target}: {body}");
        assert!(!body.contains(marker), "{body}");
        let (status, body) = http_anonymous(
            daemon.http,
            &format!(
                "{target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{}Connection: close\r\nContent-Type: text/{marker}\r\nContent-Length: {}\r\n\r\n{small}",
                daemon.auth_header(),
                small.len()
            ),
        );
        assert_eq!(status, 415, "{target}: {body}");
        assert!(!body.contains(marker), "{body}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v["error"].is_string()),
            "{target}: errors are JSON: {body}"
        );
    }
    // A query that does not parse is refused in JSON too, like every other API error.
    let (status, body) = daemon.get("/api/v1/audit?limit=many");
    assert_eq!(status, 400, "{body}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v["error"].is_string()),
        "{body}"
    );
}
