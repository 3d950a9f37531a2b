//! SRT ingest against real callers: ffmpeg (libsrt) and srt-live-transmit.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

const PASSPHRASE: &str = "videon-passphrase-1";

fn channel(port: u16, extra: &str) -> String {
    single_srt_channel("videon-a", port, extra, "")
}

fn video_frames(daemon: &Daemon) -> u64 {
    as_u64(&daemon.input("program", "videon-a")["frames_total"]["video"])
}

#[test]
fn wrong_passphrase_and_wrong_stream_id_are_rejected_and_the_daemon_keeps_serving() {
    let ffmpeg_bin = require("ffmpeg", "ffmpeg");
    let port = free_udp_port();
    let mut daemon = Daemon::start(&channel(
        port,
        &format!("passphrase = \"{PASSPHRASE}\"\nstream_id = \"videon-a\""),
    ));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 10, "320x180", "300k");
    let attempt = |query: &str| {
        run(
            "ffmpeg (rejected caller)",
            Command::new(&ffmpeg_bin)
                .args(["-v", "error", "-re", "-i"])
                .arg(&source)
                .args(["-t", "3", "-c", "copy", "-f", "mpegts"])
                .arg(format!(
                    "srt://127.0.0.1:{port}?latency=200000&connect_timeout=3000&{query}"
                )),
            Duration::from_secs(30),
        )
    };
    let wrong_pass = attempt("passphrase=not-the-passphrase&pbkeylen=16&streamid=videon-a");
    assert!(
        !wrong_pass.status.success(),
        "a wrong passphrase must not connect"
    );
    let wrong_id = attempt(&format!(
        "passphrase={PASSPHRASE}&pbkeylen=16&streamid=videon-b"
    ));
    assert!(
        !wrong_id.status.success(),
        "a wrong stream id must not connect"
    );
    let no_pass = attempt("streamid=videon-a");
    assert!(
        !no_pass.status.success(),
        "an unencrypted caller must not connect"
    );

    let rejected = &daemon.input("program", "videon-a")["rejected_total"];
    assert_eq!(as_u64(&rejected["stream_id"]), 1, "{rejected}");
    assert_eq!(as_u64(&rejected["passphrase"]), 2, "{rejected}");
    let log = daemon.log();
    assert!(
        log.contains("stream id \\\"videon-b\\\" does not match")
            || log.contains("stream id \"videon-b\" does not match"),
        "{log}"
    );
    assert!(
        log.contains("not encrypted but a passphrase is required"),
        "{log}"
    );
    assert!(log.contains("wrong passphrase"), "{log}");
    assert!(
        !log.contains(PASSPHRASE),
        "the passphrase must never be logged"
    );

    // Still serving: the right caller gets in.
    assert!(daemon.alive());
    let _good = ffmpeg_push(
        &dir,
        "good",
        &source,
        &format!(
            "srt://127.0.0.1:{port}?latency=200000&pkt_size=1316&passphrase={PASSPHRASE}&pbkeylen=32&streamid=videon-a"
        ),
    );
    assert!(
        wait_for(Duration::from_secs(15), || video_frames(&daemon) >= 50),
        "correct caller not received: {}",
        daemon.log()
    );
}

#[test]
fn a_new_caller_replaces_a_vanished_one_at_once() {
    let port = free_udp_port();
    let daemon = Daemon::start(&channel(port, ""));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 30, "320x180", "300k");
    let url = format!("srt://127.0.0.1:{port}?latency=200000&pkt_size=1316");
    let mut first = ffmpeg_push(&dir, "encoder-before-reboot", &source, &url);
    assert!(wait_for(Duration::from_secs(15), || video_frames(&daemon) >= 25));
    // The encoder loses power: no SRT shutdown reaches lunora.
    first.signal(Signal::SIGKILL);
    first.wait(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(700));
    let before = video_frames(&daemon);
    let started = std::time::Instant::now();
    let _second = ffmpeg_push(&dir, "encoder-after-reboot", &source, &url);
    assert!(
        wait_for(Duration::from_secs(5), || as_u64(
            &daemon.input("program", "videon-a")["connections_total"]
        ) == 2),
        "the rebooted encoder was not accepted at once: {}",
        daemon.log()
    );
    assert!(wait_for(Duration::from_secs(10), || video_frames(&daemon)
        >= before + 25));
    assert!(started.elapsed() < Duration::from_secs(12));
}

#[test]
fn garbage_datagrams_and_corrupt_ts_do_not_hurt_the_listener() {
    let port = free_udp_port();
    let mut daemon = Daemon::start(&channel(port, ""));
    let dir = daemon.dir.path().to_path_buf();

    // 1. Hostile UDP straight at the SRT port: random bytes, truncated handshakes, empty datagrams.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..2000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 1500) as usize;
        let mut datagram: Vec<u8> = (0..len).map(|j| (seed >> (j % 56)) as u8).collect();
        if i % 3 == 0 && datagram.len() > 16 {
            // Looks like an SRT control packet (top bit set), then nonsense.
            datagram[0] = 0x80;
        }
        let _ = socket.send_to(&datagram, ("127.0.0.1", port));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(daemon.alive(), "lunora died from garbage datagrams");

    // 2. A valid SRT caller carrying corrupt TS: truncated packets and garbage runs.
    let source = make_ts(&dir, "source.ts", 10, "320x180", "300k");
    let clean = std::fs::read(&source).expect("source");
    let mut corrupt = Vec::with_capacity(clean.len());
    for (i, packet) in clean.chunks(188).enumerate() {
        match i % 97 {
            13 => corrupt.extend_from_slice(&packet[..100]),
            41 => {
                corrupt.extend_from_slice(packet);
                corrupt.extend_from_slice(&[0x00, 0x47, 0x13, 0x37, 0xFF, 0x47, 0x00]);
            }
            _ => corrupt.extend_from_slice(packet),
        }
    }
    let slt = require("srt-live-transmit", "srt-tools");
    let (mut push, mut stdin) = Proc::spawn_with_stdin(
        "slt-corrupt",
        &dir,
        Command::new(slt).args([
            "-q",
            "file://con",
            &format!("srt://127.0.0.1:{port}?latency=200"),
            "-chunk:1316",
        ]),
    );
    // Paced at about 5 Mbit/s; srt-live-transmit exits at end of input, so the pipe stays
    // open a moment after the last byte for it to be delivered.
    std::thread::sleep(Duration::from_millis(500));
    for chunk in corrupt.chunks(1316) {
        use std::io::Write;
        if stdin.write_all(chunk).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        wait_for(Duration::from_secs(20), || {
            let tr = &daemon.input("program", "videon-a")["tr101290"];
            as_u64(&tr["sync_byte_error"]) > 0 && as_u64(&tr["continuity_count_error"]) > 0
        }),
        "analyser counters did not move: {}",
        daemon.input("program", "videon-a")
    );
    // The errors just seen are also in the last-5-minutes figures, never above the totals.
    let input = daemon.input("program", "videon-a");
    for indicator in ["sync_byte_error", "continuity_count_error"] {
        let recent = input["tr101290_last_5min"][indicator]
            .as_u64()
            .unwrap_or_else(|| panic!("no tr101290_last_5min.{indicator}: {input}"));
        let total = as_u64(&input["tr101290"][indicator]);
        assert!(
            recent > 0 && recent <= total,
            "{indicator}: {recent} of {total}: {input}"
        );
    }
    drop(stdin);
    // srt-live-transmit reconnects rather than exit at end of input; stop it.
    push.signal(Signal::SIGKILL);
    push.wait(Duration::from_secs(5));
    assert!(daemon.alive(), "lunora died from corrupt TS");
    assert!(
        as_u64(&daemon.input("program", "videon-a")["frames_total"]["video"]) > 0,
        "good packets between the bad ones still decode"
    );

    // 3. And a clean caller afterwards is served as usual (once the last one has been silent
    //    for input_loss_ms; a caller arriving while another is live is refused as busy).
    std::thread::sleep(Duration::from_millis(1500));
    let _clean = srt_push(&dir, "clean", &source, port);
    let before = as_u64(&daemon.input("program", "videon-a")["frames_total"]["video"]);
    assert!(
        wait_for(Duration::from_secs(15), || as_u64(
            &daemon.input("program", "videon-a")["frames_total"]["video"]
        ) >= before + 50),
        "clean caller after the corrupt one not received: {}",
        daemon.log()
    );
}

/// libsrt's default key length (`pbkeylen` unset, what most ffmpeg and OBS users leave it
/// at) leaves the handshake's encryption field at 0 and says the length only in the key
/// material: the caller must still be received, and a caller sending a passphrase to an
/// input without one must hear why it is refused.
#[test]
fn a_caller_that_leaves_pbkeylen_at_its_default_is_received() {
    let port = free_udp_port();
    let daemon = Daemon::start(&channel(port, &format!("passphrase = \"{PASSPHRASE}\"")));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 10, "320x180", "300k");
    let _ffmpeg = ffmpeg_push(
        &dir,
        "ffmpeg-default-key",
        &source,
        &format!("srt://127.0.0.1:{port}?latency=200000&pkt_size=1316&passphrase={PASSPHRASE}"),
    );
    assert!(
        wait_for(Duration::from_secs(15), || video_frames(&daemon) >= 50),
        "caller with the default key length not received: {}\n{}",
        daemon.input("program", "videon-a"),
        daemon.log()
    );
    assert_eq!(
        as_u64(&daemon.input("program", "videon-a")["srt"]["decrypt_errors"]),
        0
    );
}
