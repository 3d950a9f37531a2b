//! RTMP ingest (the OBS path) against ffmpeg as the publisher.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const KEY: &str = "obs-key-5f2a9c";

fn config(rtmp: u16, output: u16) -> String {
    format!(
        r#"
[rtmp]
listen = "127.0.0.1:{rtmp}"

[[channels]]
id = "program"
mode = "single"

[[channels.inputs]]
id = "obs"
type = "rtmp"
stream_key = "{KEY}"

{}"#,
        srt_listener_output("out", output)
    )
}

fn publish(
    dir: &std::path::Path,
    name: &str,
    source: &std::path::Path,
    rtmp: u16,
    key: &str,
) -> Proc {
    publish_to(
        dir,
        name,
        source,
        &format!("rtmp://127.0.0.1:{rtmp}/live/{key}"),
    )
}

/// ffmpeg publishing `source` as FLV to `url` in real time.
fn publish_to(dir: &std::path::Path, name: &str, source: &std::path::Path, url: &str) -> Proc {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    Proc::spawn(
        name,
        dir,
        Command::new(ffmpeg)
            .args(["-v", "error", "-re", "-i"])
            .arg(source)
            .args(["-c", "copy", "-f", "flv", url]),
    )
}

#[test]
fn ffmpeg_publishing_flv_comes_out_as_clean_srt() {
    let (rtmp, output) = (free_tcp_port(), free_udp_port());
    let daemon = Daemon::start(&config(rtmp, output));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 8, "1280x720", "1500k");
    let recording = dir.join("recording.ts");
    let mut reader = ffmpeg_record(
        &dir,
        "reader",
        &format!("srt://127.0.0.1:{output}?latency=200000&timeout=4000000"),
        &recording,
    );
    assert!(wait_for(Duration::from_secs(10), || daemon
        .output("program", "out")["peers"]
        .as_array()
        .map_or(0, Vec::len)
        == 1));
    let mut publisher = publish(&dir, "obs", &source, rtmp, KEY);
    let status = publisher
        .wait(Duration::from_secs(40))
        .expect("publisher finishes");
    assert!(
        status.success(),
        "ffmpeg RTMP publish failed: {}\n{}",
        publisher.stderr(),
        daemon.log()
    );
    reader
        .wait(Duration::from_secs(20))
        .expect("reader stops once the stream ends");

    let input = daemon.input("program", "obs");
    assert_eq!(input["type"], "rtmp");
    assert_eq!(as_u64(&input["connections_total"]), 1);
    // The video format comes from the SPS in the FLV decoder configuration record, as an SRT
    // input's comes from the SPS in its MPEG-TS; a missing field fails here.
    let video = &input["video"];
    assert_eq!(video["codec"], "h264", "input: {input}");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(1280), Some(720)),
        "input: {input}"
    );
    assert_eq!(video["frame_rate"].as_f64(), Some(25.0), "input: {input}");
    assert_eq!(video["interlaced"], false, "input: {input}");
    // What the OpenAPI document says every input carries, this one does.
    let document = daemon.json("/api/v1/openapi.json");
    let schema = &document["paths"]["/api/v1/channels/{id}"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"]["properties"]["inputs"]["items"];
    let required = |schema: &serde_json::Value| -> Vec<String> {
        schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        required(schema).contains(&"tr101290_last_5min".to_string()),
        "{schema}"
    );
    for field in required(schema) {
        assert!(input.get(&field).is_some(), "{field} missing: {input}");
    }
    for field in required(&schema["properties"]["video"]) {
        assert!(
            video.get(&field).is_some(),
            "video.{field} missing: {input}"
        );
    }
    let frames = decoded_video_frames(&recording);
    assert!(
        (175..=200).contains(&frames),
        "decoded {frames} of 200 frames; input: {input}"
    );
    let decode = decode_warnings(&recording);
    assert!(
        decode.trim().is_empty(),
        "the FLV → TS path produced errors:\n{decode}"
    );
    let live = reader.stderr();
    for bad in ["Non-monotonic", "corrupt", "Continuity"] {
        assert!(!live.contains(bad), "reader said {bad:?}:\n{live}");
    }
    assert!(
        !daemon.log().contains(KEY),
        "the stream key must never be logged"
    );
}

#[test]
fn wrong_key_and_second_publisher_are_refused() {
    let rtmp = free_tcp_port();
    let mut daemon = Daemon::start(&config(rtmp, free_udp_port()));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 20, "320x180", "300k");

    let wrong_key = "zz-not-the-key-77";
    let mut wrong = publish(&dir, "wrong-key", &source, rtmp, wrong_key);
    let status = wrong
        .wait(Duration::from_secs(15))
        .expect("a refused publisher gives up at once");
    assert!(!status.success(), "an unknown stream key must be refused");

    let _first = publish(&dir, "first", &source, rtmp, KEY);
    assert!(
        wait_for(Duration::from_secs(15), || as_u64(
            &daemon.input("program", "obs")["frames_total"]["video"]
        ) > 25),
        "{}",
        daemon.log()
    );
    let mut second = publish(&dir, "second", &source, rtmp, KEY);
    let status = second
        .wait(Duration::from_secs(15))
        .expect("the second publisher is refused at once");
    assert!(
        !status.success(),
        "a second publisher on a live key must be refused"
    );
    assert_eq!(
        as_u64(&daemon.input("program", "obs")["rejected_total"]["busy"]),
        1
    );

    let log = daemon.log();
    assert!(
        log.contains("rejected RTMP publisher: unknown stream key"),
        "{log}"
    );
    assert!(
        log.contains("another publisher is live on this key"),
        "{log}"
    );
    assert!(
        !log.contains(wrong_key) && !log.contains(KEY),
        "stream keys must never be logged:\n{log}"
    );
    assert!(daemon.alive());
}

#[test]
fn obs_over_rtmp_goes_out_to_an_rtmp_destination() {
    let (rtmp_in, rtmp_out) = (free_tcp_port(), free_tcp_port());
    let config = config(rtmp_in, free_udp_port())
        + &crate::rtmp_output::rtmp_destination("platform", rtmp_out, "relay-key");
    let daemon = Daemon::start(&config);
    let dir = daemon.dir.path().to_path_buf();
    let _nginx = crate::rtmp_output::nginx(&dir, rtmp_out);
    let source = make_ts(&dir, "source.ts", 8, "320x180", "300k");
    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .output("program", "platform")["state"]
            == "live"),
        "{}",
        daemon.log()
    );
    let mut publisher = publish(&dir, "obs", &source, rtmp_in, KEY);
    publisher
        .wait(Duration::from_secs(30))
        .expect("publisher finishes");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        http_post_json(
            daemon.http,
            "/api/v1/channels/program/outputs/platform/stop",
            ""
        )
        .0,
        202
    );
    assert!(wait_for(Duration::from_secs(5), || daemon
        .output("program", "platform")["state"]
        == "idle"));
    std::thread::sleep(Duration::from_millis(500));
    let recording = dir.join("relay-key.flv");
    let frames = decoded_video_frames(&recording);
    assert!(
        frames >= 150,
        "RTMP in → RTMP out: nginx recorded {frames} of 200 frames"
    );
    let decode = decode_warnings(&recording);
    assert!(
        decode.trim().is_empty(),
        "RTMP in → RTMP out produced errors:\n{decode}"
    );
}

/// RTMPS ingest: ffmpeg (GnuTLS) publishes inside TLS to `[rtmp] tls_listen`, with a
/// certificate made by openssl for the test.
#[test]
fn ffmpeg_publishing_over_rtmps_is_taken_like_rtmp() {
    let (rtmp, rtmps, output) = (free_tcp_port(), free_tcp_port(), free_udp_port());
    let dir = tempfile::tempdir().expect("temp dir");
    crate::rtmp_output::make_certificates(dir.path());
    let tls = format!(
        "tls_listen = \"127.0.0.1:{rtmps}\"\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
        dir.path().join("leaf.pem").display(),
        dir.path().join("leaf.key").display()
    );
    let config = config(rtmp, output).replacen(
        &format!("listen = \"127.0.0.1:{rtmp}\"\n"),
        &format!("listen = \"127.0.0.1:{rtmp}\"\n{tls}"),
        1,
    );
    let daemon = Daemon::start_with_env(&config, dir, &[]);
    let dir = daemon.dir.path().to_path_buf();
    assert!(
        daemon.log().contains("RTMPS ingest listening"),
        "{}",
        daemon.log()
    );
    let source = make_ts(&dir, "source.ts", 20, "640x360", "1000k");
    let _publisher = publish_to(
        &dir,
        "obs-tls",
        &source,
        &format!("rtmps://127.0.0.1:{rtmps}/live/{KEY}"),
    );
    assert!(
        wait_for(Duration::from_secs(15), || as_u64(
            &daemon.input("program", "obs")["frames_total"]["video"]
        ) > 50),
        "no frames over RTMPS: {}\n{}",
        daemon.input("program", "obs"),
        daemon.log()
    );
    let recording = dir.join("recording.ts");
    let mut reader = ffmpeg_record(
        &dir,
        "reader",
        &format!("srt://127.0.0.1:{output}?latency=200000&timeout=4000000"),
        &recording,
    );
    std::thread::sleep(Duration::from_secs(4));
    reader.signal(Signal::SIGINT);
    reader.wait(Duration::from_secs(10));
    assert!(
        decoded_video_frames(&recording) >= 50,
        "the RTMPS input comes out decodable"
    );
    // Plain RTMP bytes on the TLS port are a failed handshake, not a crash.
    let mut wrong = publish_to(
        &dir,
        "plain-on-tls",
        &source,
        &format!("rtmp://127.0.0.1:{rtmps}/live/{KEY}"),
    );
    wrong.wait(Duration::from_secs(20));
    let mut daemon = daemon;
    assert!(daemon.alive());
    assert!(
        !daemon.log().contains(KEY),
        "the stream key is never logged"
    );
}

/// 80 sockets from eight other addresses trickle one byte every 2 s (the attack kept every
/// slot for ever when the 10 s limit was per read). A real publisher still gets in at once,
/// and every squatter is gone once the setup deadline has passed.
#[test]
fn trickling_sockets_from_many_addresses_cannot_lock_out_a_publisher() {
    let rtmp = free_tcp_port();
    let daemon = Daemon::start(&config(rtmp, free_udp_port()));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 6, "320x180", "300k");
    let opened = Instant::now();
    let mut squatters: Vec<TcpStream> = (2..=9u8)
        .flat_map(|last| (0..10).map(move |_| last))
        .filter_map(|last| connect_from([127, 0, 0, last], rtmp).ok())
        .collect();
    assert_eq!(squatters.len(), 80, "the kernel accepts every connection");
    let trickler = std::thread::spawn(move || {
        // Bounded: 10 rounds of 2 s, one byte each (the first is a valid RTMP version).
        for _ in 0..10 {
            for s in &mut squatters {
                let _ = s.write_all(&[3]);
            }
            std::thread::sleep(Duration::from_secs(2));
            let open = squatters
                .iter_mut()
                .map(closed_by_server)
                .filter(|closed| !closed)
                .count();
            if open == 0 {
                return Some(opened.elapsed());
            }
        }
        None
    });
    std::thread::sleep(Duration::from_secs(1));
    let _publisher = publish(&dir, "obs", &source, rtmp, KEY);
    assert!(
        wait_for(Duration::from_secs(10), || as_u64(
            &daemon.input("program", "obs")["frames_total"]["video"]
        ) > 25),
        "the publisher was locked out: {}\n{}",
        daemon.input("program", "obs"),
        daemon.log()
    );
    let all_closed = trickler.join().expect("trickler");
    assert!(
        all_closed.is_some_and(|t| t < Duration::from_secs(15)),
        "squatters still open after {all_closed:?}: the setup deadline must cover the whole phase"
    );
    assert!(
        daemon
            .log()
            .contains("connections from this address already open"),
        "{}",
        daemon.log()
    );
}

/// The RTMP handshake in its original-specification form: C0 + C1 of zeros, then C2 echoing S1.
fn handshake(stream: &mut TcpStream) {
    let mut c0c1 = vec![3u8];
    c0c1.extend([0u8; 1536]);
    stream.write_all(&c0c1).unwrap();
    let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
    stream.read_exact(&mut s0s1s2).unwrap();
    stream.write_all(&s0s1s2[1..1537]).unwrap();
}

/// An AMF0 `connect` command for application `app`, in 128-byte chunks on chunk stream 3.
fn connect_command(app: &str) -> Vec<u8> {
    let mut body = vec![0x02, 0, 7];
    body.extend(b"connect");
    body.push(0x00);
    body.extend(1.0f64.to_be_bytes());
    body.push(0x03);
    body.extend([0, 3]);
    body.extend(b"app");
    body.push(0x02);
    body.extend(u16::try_from(app.len()).unwrap().to_be_bytes());
    body.extend(app.as_bytes());
    body.extend([0, 0, 9]);
    let length = u32::try_from(body.len()).unwrap().to_be_bytes();
    let mut message = vec![
        0x03, 0, 0, 0, length[1], length[2], length[3], 0x14, 0, 0, 0, 0,
    ];
    for (i, chunk) in body.chunks(128).enumerate() {
        if i > 0 {
            message.push(0xC3);
        }
        message.extend(chunk);
    }
    message
}

/// A peer whose application name carries a newline and a forged log line, 10 kB long, sent
/// 20 times: the log shows it escaped and cut, once.
#[test]
fn peer_strings_cannot_forge_or_flood_the_log() {
    let rtmp = free_tcp_port();
    let daemon = Daemon::start(&config(rtmp, free_udp_port()));
    let forged = "2026-11-29T08:00:00.000000Z  INFO FORGED: admin logged in";
    let app = format!("live\n{forged}{}", "x".repeat(10_000));
    for _ in 0..20 {
        let mut stream = connect_from([127, 0, 0, 1], rtmp).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        handshake(&mut stream);
        stream.write_all(&connect_command(&app)).unwrap();
        // The server answers with its window/bandwidth messages, then hangs up.
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
    assert!(
        wait_for(Duration::from_secs(5), || daemon
            .log()
            .contains("the application must be")),
        "{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        !log.lines().any(|line| line.starts_with(forged)),
        "a peer forged a log line:\n{log}"
    );
    assert_eq!(
        log.matches("the application must be").count(),
        1,
        "repeated refusals are logged once per 10 s:\n{log}"
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1000, "a log line of {longest} bytes");
}

/// Before its stream key is accepted a peer announces a 16 MiB message and streams it: the
/// server hangs up after a few KiB instead of buffering it.
#[test]
fn a_huge_message_before_publishing_is_cut_off() {
    let rtmp = free_tcp_port();
    let daemon = Daemon::start(&config(rtmp, free_udp_port()));
    let mut stream = connect_from([127, 0, 0, 1], rtmp).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    handshake(&mut stream);
    // An AMF0 command message of 16 MiB - 1 on chunk stream 3, in 128-byte chunks.
    let mut flood = vec![0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x14, 0, 0, 0, 0];
    flood.extend([0x02; 128]);
    let continuation: Vec<u8> = std::iter::once(0xC3).chain([0x02; 128]).collect();
    let block: Vec<u8> = continuation.repeat(512);
    let mut written = flood.len();
    let started = Instant::now();
    let mut cut_off = stream.write_all(&flood).is_err();
    while !cut_off && written < 16 << 20 {
        match stream.write(&block) {
            Ok(n) => written += n,
            Err(_) => cut_off = true,
        }
    }
    assert!(
        cut_off && written < 4 << 20,
        "the server took {written} bytes of an unpublished connection's message in {:?}",
        started.elapsed()
    );
    assert!(
        wait_for(Duration::from_secs(5), || daemon
            .log()
            .contains("sent over 64 KiB without publishing")),
        "{}",
        daemon.log()
    );
}
