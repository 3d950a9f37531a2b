//! SRT interoperability matrix: lunora against ffmpeg (libsrt) and srt-live-transmit in every
//! role it has (input listener, output listener, output caller) with no encryption and AES at
//! each key length, plus lunora into lunora. Each group runs its cases side by side in one
//! daemon (one channel or output per case) so the matrix stays fast.
//!
//! Not covered: rendezvous mode, which lunora does not offer.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::common::*;

const PASSPHRASE: &str = "interop-passphrase-1";
/// Seconds of test stream each group sends (25 fps, a keyframe every second).
const SOURCE_SECONDS: u32 = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Ffmpeg,
    SrtLiveTransmit,
}

/// One cell of the matrix: the third-party peer and the AES key length in bytes (none: clear).
#[derive(Clone, Copy, Debug)]
struct Case {
    peer: Peer,
    key: Option<u8>,
}

/// Every peer, unencrypted and at each AES key length (bytes).
fn matrix() -> Vec<Case> {
    [Peer::Ffmpeg, Peer::SrtLiveTransmit]
        .into_iter()
        .flat_map(|peer| [None, Some(16), Some(24), Some(32)].map(|key| Case { peer, key }))
        .collect()
}

impl Case {
    fn name(&self) -> String {
        let peer = match self.peer {
            Peer::Ffmpeg => "ffmpeg",
            Peer::SrtLiveTransmit => "slt",
        };
        match self.key {
            None => format!("{peer}-clear"),
            Some(key) => format!("{peer}-aes{}", u32::from(key) * 8),
        }
    }

    /// URL options for the peer: latency in its unit (ffmpeg: µs, srt-live-transmit: ms),
    /// the passphrase and key length, and the stream id when given.
    fn options(&self, stream_id: Option<&str>) -> String {
        let mut options = match self.peer {
            Peer::Ffmpeg => "latency=200000&pkt_size=1316".to_string(),
            Peer::SrtLiveTransmit => "latency=200".to_string(),
        };
        if let Some(key) = self.key {
            options.push_str(&format!("&passphrase={PASSPHRASE}&pbkeylen={key}"));
        }
        if let Some(id) = stream_id {
            // Both take it as written (ffmpeg 5.1 does not URL-decode it), `#!::` included.
            options.push_str(&format!("&streamid={id}"));
        }
        options
    }
}

/// A receiver: ffmpeg records (re-muxing, so it reports the continuity errors it saw in its
/// debug log), srt-live-transmit stores the bytes as received (checked here).
struct Receiver {
    name: String,
    peer: Peer,
    file: PathBuf,
    proc: Proc,
}

impl Receiver {
    /// `url` complete with the peer's options (`mode=listener` when lunora calls it).
    fn start(dir: &Path, name: &str, peer: Peer, url: &str) -> Self {
        let file = dir.join(format!("{name}.ts"));
        let proc = match peer {
            // `timeout` (µs): ffmpeg ends, finalising the file, once the stream has stopped.
            Peer::Ffmpeg => Proc::spawn(
                name,
                dir,
                std::process::Command::new(require("ffmpeg", "ffmpeg"))
                    .args(["-v", "debug", "-analyzeduration", "1000000", "-probesize"])
                    .args(["1000000", "-i"])
                    .arg(format!("{url}&timeout=5000000"))
                    .args(["-c", "copy", "-f", "mpegts", "-y"])
                    .arg(&file),
            ),
            Peer::SrtLiveTransmit => slt_record(dir, name, url, &file),
        };
        Receiver {
            name: name.to_string(),
            peer,
            file,
            proc,
        }
    }

    /// Waits for the end of the stream (ffmpeg by its read timeout, srt-live-transmit by
    /// SIGINT) and checks what was received: at least `min_frames` decoded video frames, a
    /// decode without warnings and no continuity error.
    fn finish_and_check(mut self, min_frames: u64, context: &dyn Fn() -> String) {
        let name = &self.name;
        if self.peer == Peer::SrtLiveTransmit || self.proc.wait(Duration::from_secs(40)).is_none() {
            self.proc.signal(Signal::SIGINT);
            self.proc.wait(Duration::from_secs(10));
        }
        let log = self.proc.stderr();
        assert!(
            self.file.is_file(),
            "{name}: nothing recorded; it said:\n{}\n{}",
            tail(&log),
            context()
        );
        let frames = decoded_video_frames(&self.file);
        assert!(
            frames >= min_frames,
            "{name}: decoded {frames} video frames, expected at least {min_frames}; it said:\n{}\n{}",
            tail(&log),
            context()
        );
        let warnings = decode_warnings(&self.file);
        assert!(
            warnings.trim().is_empty(),
            "{name}: decoding the received stream warned:\n{warnings}"
        );
        match self.peer {
            Peer::Ffmpeg => {
                let failures = log.matches("Continuity check failed").count();
                assert_eq!(
                    failures,
                    0,
                    "{name}: ffmpeg saw continuity errors:\n{}",
                    tail(&log)
                );
            }
            Peer::SrtLiveTransmit => {
                let continuity = ts_continuity(&self.file);
                assert!(
                    continuity.packets > 1000
                        && continuity.sync_errors == 0
                        && continuity.cc_errors == 0,
                    "{name}: {continuity:?}"
                );
            }
        }
    }
}

/// The last lines of a long (debug) log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A UDP relay in front of an SRT listener that reads the AES key length out of the key
/// material the caller sends (KMREQ), so a test can tell which length lunora's caller chose:
/// an SRT listener adopts the caller's length, so a receiver decoding proves nothing about it.
struct KeyLengthProbe {
    port: u16,
    key_length: Arc<Mutex<Option<u8>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl KeyLengthProbe {
    fn start(target: u16) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").expect("probe front socket");
        let back = UdpSocket::bind("127.0.0.1:0").expect("probe back socket");
        back.connect(("127.0.0.1", target)).expect("probe target");
        for socket in [&front, &back] {
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
        }
        let port = front.local_addr().expect("probe address").port();
        let key_length = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let caller: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let (front_2, back_2) = (
            front.try_clone().expect("clone"),
            back.try_clone().expect("clone"),
        );
        let forward = {
            let (stop, key_length, caller) = (stop.clone(), key_length.clone(), caller.clone());
            std::thread::spawn(move || {
                let mut buffer = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, from)) = front.recv_from(&mut buffer) else {
                        continue;
                    };
                    *caller.lock().unwrap() = Some(from);
                    if let Some(length) = kmreq_key_length(&buffer[..len]) {
                        *key_length.lock().unwrap() = Some(length);
                    }
                    let _ = back.send(&buffer[..len]);
                }
            })
        };
        let backward = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(len) = back_2.recv(&mut buffer) else {
                        continue;
                    };
                    if let Some(to) = *caller.lock().unwrap() {
                        let _ = front_2.send_to(&buffer[..len], to);
                    }
                }
            })
        };
        KeyLengthProbe {
            port,
            key_length,
            stop,
            threads: vec![forward, backward],
        }
    }

    fn key_length(&self) -> Option<u8> {
        *self.key_length.lock().unwrap()
    }
}

impl Drop for KeyLengthProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The key length in bytes of the key material in an SRT handshake's KMREQ extension (or in a
/// HSv4 KMREQ control packet), if `datagram` carries one.
fn kmreq_key_length(datagram: &[u8]) -> Option<u8> {
    const KMREQ: u16 = 3;
    let word = |at: usize| {
        datagram
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    if datagram.first()? & 0x80 == 0 {
        return None;
    }
    let message = match word(0)? & 0x7fff {
        // Handshake: 16-byte header, 48-byte body, then extensions (type, length in words).
        0 => {
            let mut at = 64;
            loop {
                let (kind, words) = (word(at)?, usize::from(word(at + 2)?));
                let content = datagram.get(at + 4..at + 4 + words * 4)?;
                if kind == KMREQ {
                    break content;
                }
                at += 4 + words * 4;
            }
        }
        0x7fff if word(2)? == KMREQ => datagram.get(16..)?,
        _ => return None,
    };
    // The KM message begins with version/type 0x12 and the sign 0x2029 ("HAI"); KLen/4 is its
    // 16th byte. Some stacks send it as little-endian 32-bit words.
    match message.get(..4)? {
        [0x12, 0x20, 0x29, _] => Some(message.get(15)? * 4),
        [_, 0x29, 0x20, 0x12] => Some(message.get(12)? * 4),
        _ => None,
    }
}

fn input_section(id: &str, port: u16, case: Case, stream_id: &str) -> String {
    let passphrase = case.key.map_or(String::new(), |_| {
        format!("passphrase = \"{PASSPHRASE}\"\n")
    });
    format!(
        "[[channels.inputs]]\nid = \"{id}\"\ntype = \"srt\"\nlisten = \"127.0.0.1:{port}\"\nlatency_ms = 200\nstream_id = \"{stream_id}\"\n{passphrase}\n"
    )
}

fn channel_header(id: &str) -> String {
    format!(
        "[[channels]]\nid = \"{id}\"\nmode = \"single\"\n\n[channels.failover]\ninput_loss_ms = 500\n\n"
    )
}

fn video_frames(daemon: &Daemon, channel: &str, input: &str) -> u64 {
    as_u64(&daemon.input(channel, input)["frames_total"]["video"])
}

/// Callers into lunora's SRT input: ffmpeg and srt-live-transmit, clear and AES-128/192/256,
/// with an access-control stream id (`#!::r=…`). Each case has its own channel; its listener
/// output, pulled by ffmpeg, must decode, and the input must show the caller connected.
#[test]
fn srt_input_takes_ffmpeg_and_srt_live_transmit_callers_clear_and_at_every_key_length() {
    let cases: Vec<(Case, u16, u16)> = matrix()
        .into_iter()
        .map(|case| (case, free_udp_port(), free_udp_port()))
        .collect();
    let config: String = cases
        .iter()
        .map(|(case, input, output)| {
            format!(
                "{}{}{}",
                channel_header(&case.name()),
                input_section("encoder", *input, *case, &format!("feed-{}", case.name())),
                srt_listener_output("out", *output)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let daemon = Daemon::start(&config);
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", SOURCE_SECONDS, "320x180", "300k");

    let _pushers: Vec<Proc> = cases
        .iter()
        .map(|(case, input, _)| {
            let stream_id = format!("#!::r=feed-{},m=publish", case.name());
            let url = format!("srt://127.0.0.1:{input}?{}", case.options(Some(&stream_id)));
            let name = format!("pusher-{}", case.name());
            match case.peer {
                Peer::Ffmpeg => ffmpeg_push(&dir, &name, &source, &url),
                Peer::SrtLiveTransmit => slt_push(&dir, &name, &source, &url),
            }
        })
        .collect();
    for (case, _, _) in &cases {
        let channel = case.name();
        assert!(
            wait_for(Duration::from_secs(20), || video_frames(
                &daemon, &channel, "encoder"
            ) >= 25),
            "{channel}: caller not received: {}\n{}",
            daemon.input(&channel, "encoder"),
            daemon.log()
        );
        assert_eq!(
            daemon.input(&channel, "encoder")["state"],
            "connected",
            "{channel}"
        );
    }
    // Pull every channel's output while the callers still send.
    let receivers: Vec<Receiver> = cases
        .iter()
        .map(|(case, _, output)| {
            Receiver::start(
                &dir,
                &format!("output-of-{}", case.name()),
                Peer::Ffmpeg,
                &format!("srt://127.0.0.1:{output}?latency=200000"),
            )
        })
        .collect();
    for ((case, _, _), receiver) in cases.iter().zip(receivers) {
        let channel = case.name();
        // The receivers join 1–4 s into the 12 s stream and start from the cached GOP.
        receiver.finish_and_check(100, &|| format!("{}", daemon.input(&channel, "encoder")));
        let input = daemon.input(&channel, "encoder");
        assert_eq!(input["video"]["codec"], "h264", "{channel}: {input}");
        assert!(
            as_u64(&input["srt"]["packets_received"]) > 100,
            "{channel}: SRT link statistics are exported: {input}"
        );
        assert_eq!(
            as_u64(&input["srt"]["decrypt_errors"]),
            0,
            "{channel}: {input}"
        );
        assert_eq!(
            as_u64(&input["tr101290"]["continuity_count_error"]),
            0,
            "{channel}: {input}"
        );
        let rejected = &input["rejected_total"];
        assert_eq!(
            as_u64(&rejected["stream_id"]) + as_u64(&rejected["passphrase"]),
            0,
            "{channel}: {input}"
        );
    }
    assert!(
        !daemon.log().contains(PASSPHRASE),
        "the passphrase must never be logged"
    );
}

/// Pullers of lunora's SRT listener outputs: ffmpeg and srt-live-transmit, from a clear output
/// and, with the stream id, from an encrypted one at each key length (the puller's choice).
/// All eight pull at once; each must decode with no continuity error.
#[test]
fn srt_listener_output_serves_ffmpeg_and_srt_live_transmit_clear_and_at_every_key_length() {
    let (input, clear, encrypted) = (free_udp_port(), free_udp_port(), free_udp_port());
    let daemon = Daemon::start(&single_srt_channel(
        "encoder",
        input,
        "",
        &format!(
            "{}\n{}passphrase = \"{PASSPHRASE}\"\nstream_id = \"feed-1\"\n",
            srt_listener_output("clear", clear),
            srt_listener_output("encrypted", encrypted)
        ),
    ));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", SOURCE_SECONDS, "640x360", "1500k");
    let _pusher = srt_push(&dir, "pusher", &source, input);
    assert!(
        wait_for(Duration::from_secs(15), || video_frames(
            &daemon, "program", "encoder"
        ) >= 25),
        "source not received: {}",
        daemon.log()
    );
    let receivers: Vec<Receiver> = matrix()
        .iter()
        .map(|case| {
            let (port, stream_id) = match case.key {
                None => (clear, None),
                Some(_) => (encrypted, Some("feed-1")),
            };
            Receiver::start(
                &dir,
                &format!("puller-{}", case.name()),
                case.peer,
                &format!("srt://127.0.0.1:{port}?{}", case.options(stream_id)),
            )
        })
        .collect();
    let peers = |id: &str| {
        daemon.output("program", id)["peers"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert!(
        wait_for(Duration::from_secs(15), || peers("clear") == 2
            && peers("encrypted") == 6),
        "not every puller connected: {}\n{}",
        daemon.output("program", "clear"),
        daemon.output("program", "encrypted")
    );
    for receiver in receivers {
        receiver.finish_and_check(100, &|| {
            format!(
                "{}\n{}",
                daemon.output("program", "clear"),
                daemon.output("program", "encrypted")
            )
        });
    }
    assert!(
        !daemon.log().contains(PASSPHRASE),
        "the passphrase must never be logged"
    );
}

/// lunora's SRT caller outputs into ffmpeg and srt-live-transmit listeners, clear and at each
/// key length (`pbkeylen`, which must be the one lunora offers: a probe between the two reads
/// it from the handshake, as the listener would accept any). Each listener's stream decodes.
#[test]
fn srt_caller_output_reaches_ffmpeg_and_srt_live_transmit_listeners_clear_and_at_every_key_length()
{
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: Vec<(Case, u16, KeyLengthProbe)> = matrix()
        .into_iter()
        .map(|case| {
            let listener = free_udp_port();
            (case, listener, KeyLengthProbe::start(listener))
        })
        .collect();
    // Listeners first, so the outputs find them at their first call.
    let receivers: Vec<Receiver> = cases
        .iter()
        .map(|(case, listener, _)| {
            Receiver::start(
                dir.path(),
                &format!("listener-{}", case.name()),
                case.peer,
                &format!(
                    "srt://127.0.0.1:{listener}?mode=listener&{}",
                    case.options(None)
                ),
            )
        })
        .collect();
    let input = free_udp_port();
    let outputs: String = cases
        .iter()
        .map(|(case, _, probe)| {
            let encryption = case.key.map_or(String::new(), |key| {
                format!("passphrase = \"{PASSPHRASE}\"\npbkeylen = {key}\n")
            });
            format!(
                "[[channels.outputs]]\nid = \"{}\"\ntype = \"srt\"\nmode = \"caller\"\naddress = \"127.0.0.1:{}\"\nlatency_ms = 200\nstream_id = \"#!::r=program,m=publish\"\n{encryption}\n",
                case.name(),
                probe.port
            )
        })
        .collect();
    let daemon = Daemon::start_with_env(
        &single_srt_channel("encoder", input, "", &outputs),
        dir,
        &[],
    );
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", SOURCE_SECONDS, "640x360", "1500k");
    let _pusher = srt_push(&dir, "pusher", &source, input);
    for (case, _, _) in &cases {
        assert!(
            wait_for(Duration::from_secs(20), || daemon
                .output("program", &case.name())["state"]
                == "live"),
            "{}: never went live: {}",
            case.name(),
            daemon.output("program", &case.name())
        );
    }
    for ((case, _, probe), receiver) in cases.iter().zip(receivers) {
        // The listeners get the stream from its start (less what arrives before they accept).
        receiver.finish_and_check(200, &|| {
            format!("{}", daemon.output("program", &case.name()))
        });
        assert_eq!(
            probe.key_length(),
            case.key,
            "{}: the key length lunora's caller offered",
            case.name()
        );
    }
    assert!(
        !daemon.log().contains(PASSPHRASE),
        "the passphrase must never be logged"
    );
}

/// lunora into lunora: daemon A's SRT caller output (AES-256, an access-control stream id)
/// into daemon B's encrypted SRT input that requires that stream id; B's output decodes.
#[test]
fn lunora_caller_output_feeds_another_lunoras_encrypted_input() {
    let (b_input, b_output) = (free_udp_port(), free_udp_port());
    let b = Daemon::start(&single_srt_channel(
        "from-a",
        b_input,
        &format!("passphrase = \"{PASSPHRASE}\"\nstream_id = \"feed-b\""),
        &srt_listener_output("out", b_output),
    ));
    let probe = KeyLengthProbe::start(b_input);
    let a_input = free_udp_port();
    let a = Daemon::start(&single_srt_channel(
        "encoder",
        a_input,
        "",
        &format!(
            "[[channels.outputs]]\nid = \"to-b\"\ntype = \"srt\"\nmode = \"caller\"\naddress = \"127.0.0.1:{}\"\nlatency_ms = 200\nstream_id = \"#!::r=feed-b,m=publish\"\npassphrase = \"{PASSPHRASE}\"\npbkeylen = 32\n",
            probe.port
        ),
    ));
    let dir = a.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", SOURCE_SECONDS, "640x360", "1500k");
    let _pusher = srt_push(&dir, "pusher", &source, a_input);
    assert!(
        wait_for(Duration::from_secs(20), || video_frames(
            &b, "program", "from-a"
        ) >= 25),
        "B never received A's output: A {}\nB {}\n{}",
        a.output("program", "to-b"),
        b.input("program", "from-a"),
        b.log()
    );
    let input = b.input("program", "from-a");
    assert_eq!(input["state"], "connected", "{input}");
    assert_eq!(probe.key_length(), Some(32), "A's caller offered AES-256");
    let receiver = Receiver::start(
        &dir,
        "puller-of-b",
        Peer::Ffmpeg,
        &format!("srt://127.0.0.1:{b_output}?latency=200000"),
    );
    receiver.finish_and_check(100, &|| format!("{}", b.input("program", "from-a")));
    let input = b.input("program", "from-a");
    assert_eq!(as_u64(&input["srt"]["decrypt_errors"]), 0, "{input}");
    assert_eq!(
        as_u64(&input["tr101290"]["continuity_count_error"]),
        0,
        "{input}"
    );
    assert_eq!(as_u64(&input["connections_total"]), 1, "{input}");
}

/// The continuity check the srt-live-transmit receivers rely on finds a lost packet, and lets
/// a repeated one (allowed once) and an adaptation-only packet pass.
#[test]
fn the_continuity_check_counts_a_lost_packet() {
    let packet = |pid: u16, cc: u8, payload: bool| {
        let mut p = vec![0xffu8; 188];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = if payload { 0x10 } else { 0x20 } | cc;
        if !payload {
            p[4] = 183;
            p[5] = 0;
        }
        p
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cc.ts");
    let write = |packets: &[Vec<u8>]| std::fs::write(&file, packets.concat()).expect("write");
    let clean = [
        packet(256, 14, true),
        packet(256, 15, true),
        packet(256, 15, true),
        packet(256, 15, false),
        packet(256, 0, true),
        packet(257, 3, true),
        packet(256, 1, true),
    ];
    write(&clean);
    let counted = ts_continuity(&file);
    assert_eq!(
        (counted.packets, counted.cc_errors, counted.sync_errors),
        (7, 0, 0)
    );
    write(&[
        packet(256, 1, true),
        packet(256, 3, true),
        packet(256, 4, true),
    ]);
    assert_eq!(ts_continuity(&file).cc_errors, 1);
}
