//! `/api/v1/events`: what a dashboard hears, read off the raw Server-Sent Events stream.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

#[test]
fn events_tell_a_connecting_encoder_and_the_switch_as_they_happen() {
    let input = free_udp_port();
    let daemon = Daemon::start(&single_srt_channel("encoder", input, "", ""));
    let dir = daemon.dir.path().to_path_buf();
    let mut stream = TcpStream::connect(("127.0.0.1", daemon.http)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    stream
        .write_all(
            format!(
                "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n{}Accept: text/event-stream\r\n\r\n",
                daemon.auth_header()
            )
            .as_bytes(),
        )
        .expect("request");
    let heard = Arc::new(Mutex::new(String::new()));
    let reader = {
        let heard = heard.clone();
        std::thread::spawn(move || {
            let mut buffer = [0; 16 * 1024];
            let deadline = std::time::Instant::now() + Duration::from_secs(40);
            while std::time::Instant::now() < deadline {
                match stream.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => heard
                        .lock()
                        .expect("buffer")
                        .push_str(&String::from_utf8_lossy(&buffer[..n])),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if heard
                            .lock()
                            .expect("buffer")
                            .contains("\"reason\":\"start\"")
                        {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        })
    };
    let text = || heard.lock().expect("buffer").clone();
    assert!(
        wait_for(Duration::from_secs(5), || text().contains("event: status")),
        "no status event:\n{}",
        text()
    );
    assert!(text().contains("text/event-stream"), "{}", text());
    let source = make_ts(&dir, "source.ts", 20, "320x180", "300k");
    let _encoder = srt_push(&dir, "encoder", &source, input);
    assert!(
        wait_for(Duration::from_secs(20), || text().contains("event: switch")
            && text().contains("\"reason\":\"start\"")),
        "no switch event:\n{}",
        text()
    );
    let heard = text();
    let input_event = heard.split("event: input").nth(1).unwrap_or_default();
    assert!(
        input_event.contains("\"state\":\"connected\""),
        "the encoder's connection is told: {heard}"
    );
    // News comes before the status that includes it.
    let switch_at = heard.find("event: switch").unwrap_or(usize::MAX);
    assert!(
        heard[switch_at..].contains("event: status"),
        "a fresh status follows the switch"
    );
    let _ = reader.join();
}

#[test]
fn sigterm_ends_open_event_streams_and_exits_within_two_seconds() {
    let daemon = Daemon::start(&single_srt_channel("encoder", free_udp_port(), "", ""));
    let mut streams: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", daemon.http)).expect("connect");
            stream
                .write_all(
                    format!(
                        "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n{}Accept: text/event-stream\r\n\r\n",
                        daemon.auth_header()
                    )
                    .as_bytes(),
                )
                .expect("request");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let stopping = std::time::Instant::now();
    let status = daemon.stop();
    let took = stopping.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(2),
        "shutdown took {took:?} with event streams open"
    );
    for stream in &mut streams {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
}
