//! Hostile datagrams at a live SRT input (issue 10): the connected encoder must not notice.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::failover::switch_count;

/// The datagram from issue 10: a conclusion handshake whose stream-id extension has length 0.
/// It used to panic srt-protocol's parser and take every connection on the port with it.
fn issue_10_datagram() -> Vec<u8> {
    let d = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/lunora-srt/fixtures/issue-10-zero-length-stream-id.bin"
    ))
    .expect("the issue 10 fixture");
    assert_eq!(d.len(), 72);
    d
}

fn video_frames(daemon: &Daemon, input: &str) -> u64 {
    as_u64(&daemon.input("program", input)["frames_total"]["video"])
}

fn rejected(daemon: &Daemon, input: &str, reason: &str) -> u64 {
    as_u64(&daemon.input("program", input)["srt_datagrams_rejected"][reason])
}

#[test]
fn issue_10_datagram_and_a_transtype_file_caller_leave_the_live_caller_alone() {
    let port = free_udp_port();
    let mut daemon = Daemon::start(&single_srt_channel("encoder", port, "", ""));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 14, "320x180", "300k");
    let mut encoder = srt_push(&dir, "encoder", &source, port);
    assert!(
        wait_for(Duration::from_secs(15), || video_frames(&daemon, "encoder")
            >= 50),
        "encoder not received: {}",
        daemon.log()
    );

    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker
        .send_to(&issue_10_datagram(), ("127.0.0.1", port))
        .unwrap();
    let slt = require("srt-live-transmit", "srt-tools");
    let file_caller = run(
        "transtype=file caller",
        Command::new("sh").arg("-c").arg(format!(
            "head -c 100000 /dev/zero | {} -q -t:3 file://con 'srt://127.0.0.1:{port}?transtype=file'",
            slt.display()
        )),
        Duration::from_secs(10),
    );
    let before = video_frames(&daemon, "encoder");
    assert!(
        wait_for(Duration::from_secs(5), || video_frames(&daemon, "encoder")
            > before + 50),
        "the live caller stopped delivering: {}",
        daemon.log()
    );
    assert!(daemon.alive(), "lunora died: {}", daemon.log());
    let input = daemon.input("program", "encoder");
    assert_eq!(as_u64(&input["connections_total"]), 1, "{input}");
    assert_eq!(input["state"], "connected", "{input}");
    assert_eq!(
        rejected(&daemon, "encoder", "extension_length"),
        1,
        "{input}"
    );
    assert!(
        rejected(&daemon, "encoder", "unsupported") >= 1,
        "transtype=file caller not refused: {input}\n{}",
        String::from_utf8_lossy(&file_caller.stderr)
    );
    assert!(
        as_u64(&input["rejected_total"]["handshake"]) >= 1,
        "{input}"
    );
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics.contains(
            "lunora_srt_datagrams_rejected_total{channel=\"program\",input=\"encoder\",reason=\"extension_length\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        daemon.log().contains("transtype=file"),
        "the refusal was not logged: {}",
        daemon.log()
    );
    encoder.wait(Duration::from_secs(20));
    let input = daemon.input("program", "encoder");
    assert_eq!(
        as_u64(&input["tr101290"]["continuity_count_error"]),
        0,
        "{input}"
    );
}

/// xorshift64*: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

/// Random datagrams: pure noise, noise with the control bit and a handshake type, and real
/// captured handshakes with random bytes flipped or cut short.
fn hostile_datagram(noise: &mut Noise, seeds: &[&[u8]], out: &mut Vec<u8>) {
    out.clear();
    match noise.below(4) {
        0 => {
            let len = noise.below(1500);
            out.extend((0..len).map(|_| noise.next() as u8));
        }
        1 => {
            let len = 16 + noise.below(200);
            out.extend((0..len).map(|_| noise.next() as u8));
            out[0] = 0x80;
            out[1] = 0;
        }
        _ => {
            let seed = seeds[noise.below(seeds.len())];
            out.extend_from_slice(seed);
            for _ in 0..=noise.below(4) {
                let at = noise.below(out.len());
                out[at] = noise.next() as u8;
            }
            if noise.below(3) == 0 {
                let keep = noise.below(out.len());
                out.truncate(keep);
            }
        }
    }
}

/// Held by each test that floods a port: two floods at full rate at once starve a 2-core box,
/// and then the encoders' own packets arrive late, which is not what these tests measure.
static ONE_FLOOD_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Sends random datagrams (see [`hostile_datagram`], seeded with real handshakes and issue
/// 10's datagram) from four sockets to `port` as fast as possible for `duration`; returns how
/// many were sent.
/// Datagrams a second the noise sender sends at most.
const NOISE_RATE: f64 = 40_000.0;

fn send_noise(port: u16, duration: Duration) -> u64 {
    let seeds: Vec<Vec<u8>> = [
        "slt-plain-0",
        "slt-plain-1",
        "slt-aes256-sid-1",
        "slt-file-1",
        "ffmpeg-sid-1",
        "ffmpeg-aes128-1",
    ]
    .iter()
    .map(|name| {
        std::fs::read(format!(
            "{}/../crates/lunora-srt/fixtures/{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    })
    .chain([issue_10_datagram()])
    .collect();
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    let sockets: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut noise = Noise(0x5EED_1234_ABCD_0001);
    let mut datagram = Vec::with_capacity(1500);
    let mut sent = 0u64;
    let started = Instant::now();
    let deadline = started + duration;
    while Instant::now() < deadline {
        for _ in 0..256 {
            hostile_datagram(&mut noise, &seeds, &mut datagram);
            let socket = &sockets[noise.below(sockets.len())];
            if socket.send_to(&datagram, ("127.0.0.1", port)).is_ok() {
                sent += 1;
            }
        }
        // At most NOISE_RATE datagrams a second (over 100 Mbit/s of garbage): unpaced, the
        // sender takes a whole core, and on a two-core machine running other tests beside this
        // one that starves the encoder and lunora alike — a test of the machine, not of what
        // lunora does with the datagrams. benches/ is where the unbounded flood belongs.
        let due = started + Duration::from_secs_f64(sent as f64 / NOISE_RATE);
        if let Some(ahead) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(ahead);
        }
    }
    sent
}

#[test]
fn random_datagrams_at_full_rate_never_take_the_main_input_off_air() {
    let _flood = ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (main, backup, output) = (free_udp_port(), free_udp_port(), free_udp_port());
    let daemon = Daemon::start(&main_backup_channel(
        main,
        backup,
        "",
        &srt_listener_output("out", output),
    ));
    let dir = daemon.dir.path().to_path_buf();
    // The encoders stream through the whole 20 s attack and a few seconds either side.
    let source = make_ts(&dir, "source.ts", 32, "640x360", "1500k");
    let _main_encoder = srt_push(&dir, "main-encoder", &source, main);
    let _backup_encoder = srt_push(&dir, "backup-encoder", &source, backup);
    assert!(
        wait_for(Duration::from_secs(15), || video_frames(&daemon, "main")
            >= 50
            && daemon.json("/api/v1/channels/program")["active_input"]
                == "main"),
        "main never on air: {}",
        daemon.log()
    );
    let recording = dir.join("recording.ts");
    let mut reader = ffmpeg_record(
        &dir,
        "reader",
        &format!("srt://127.0.0.1:{output}?latency=200000&timeout=3000000"),
        &recording,
    );
    std::thread::sleep(Duration::from_secs(1));
    // The backup may have gone on air first and handed over to main: those are not the attack's.
    let switches_before = daemon.json("/api/v1/channels/program")["switches"]
        .as_array()
        .map_or(0, Vec::len);

    let sent = send_noise(main, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));

    let input = daemon.input("program", "main");
    let rejected_total: u64 = input["srt_datagrams_rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(as_u64)
        .sum();
    assert!(
        rejected_total > sent / 2,
        "sent {sent}, counted {rejected_total} rejections: {input}"
    );
    assert_eq!(as_u64(&input["connections_total"]), 1, "{input}");
    let channel = daemon.json("/api/v1/channels/program");
    assert_eq!(channel["active_input"], "main", "{channel}");
    assert_eq!(
        switch_count(&channel, "main", "backup", "input_lost"),
        0,
        "{}",
        channel["switch_counts"]
    );
    let away: Vec<_> = channel["switches"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(switches_before)
        .collect();
    assert!(away.is_empty(), "the channel switched: {away:?}");
    eprintln!(
        "random datagrams: sent {sent}, rejected {rejected_total}: {}",
        input["srt_datagrams_rejected"]
    );

    reader.signal(Signal::SIGINT);
    reader.wait(Duration::from_secs(10));
    let frames = decoded_video_frames(&recording);
    assert!(frames >= 500, "decoded only {frames} frames of ~23 s");
    let decode = decode_warnings(&recording);
    assert!(
        decode.trim().is_empty(),
        "decoding the output produced warnings:\n{decode}"
    );
    assert_reader_saw_a_clean_stream(&reader.stderr());
}

/// Issue 10's shutdown hang: callers whose latency was typed as 120000 (ms, so 120 s: they
/// connect but deliver nothing) are replaced as silent, then a normal caller, then SIGTERM.
/// With srt-tokio a worker spun at 100 % and the daemon never exited.
#[test]
fn sigterm_after_replacing_silent_callers_exits_within_two_seconds() {
    let port = free_udp_port();
    let daemon = Daemon::start(&single_srt_channel("encoder", port, "", ""));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 30, "320x180", "300k");
    let connections =
        |daemon: &Daemon| as_u64(&daemon.input("program", "encoder")["connections_total"]);
    let slow_url = format!("srt://127.0.0.1:{port}?latency=120000");
    let mut slow_1 = slt_push(&dir, "slow-1", &source, &slow_url);
    assert!(
        wait_for(Duration::from_secs(10), || connections(&daemon) >= 1),
        "first slow caller not accepted: {}",
        daemon.log()
    );
    // The second only replaces the first once that has been silent for input_loss (500 ms);
    // sooner it is refused as busy, and srt-live-transmit does not retry a refusal.
    std::thread::sleep(Duration::from_millis(1500));
    let mut slow_2 = slt_push(&dir, "slow-2", &source, &slow_url);
    // Each silent caller is replaced by the other after input_loss (srt-live-transmit
    // reconnects when closed), so connections climb.
    assert!(
        wait_for(Duration::from_secs(10), || connections(&daemon) >= 3),
        "silent callers were not replaced: {}",
        daemon.log()
    );
    slow_1.signal(Signal::SIGKILL);
    slow_2.signal(Signal::SIGKILL);
    slow_1.wait(Duration::from_secs(5));
    slow_2.wait(Duration::from_secs(5));
    // Let the last of them go silent for input_loss (500 ms) so the normal caller is not busy.
    std::thread::sleep(Duration::from_secs(1));
    let before = connections(&daemon);
    let _normal = srt_push(&dir, "normal", &source, port);
    assert!(
        wait_for(Duration::from_secs(15), || connections(&daemon) > before
            && video_frames(&daemon, "encoder") >= 25),
        "normal caller did not replace the silent one: {}",
        daemon.log()
    );
    let log = daemon.log();
    let started = Instant::now();
    let status = daemon.stop();
    let took = started.elapsed();
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(status.success(), "exit {status:?}: {log}");
    // `stop` polls every 50 ms.
    assert!(
        took <= Duration::from_millis(2050),
        "SIGTERM took {took:?}: {log}"
    );
}

/// Issue 10 at an SRT listener *output*: the 72-byte datagram and 5 s of random datagrams at
/// the output's port while two pullers record. Both stay connected (the same two peers
/// throughout) and their recordings decode cleanly.
#[test]
fn hostile_datagrams_at_a_listener_output_leave_both_pullers_connected() {
    let _flood = ONE_FLOOD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (input, output) = (free_udp_port(), free_udp_port());
    let mut daemon = Daemon::start(&single_srt_channel(
        "encoder",
        input,
        "",
        &srt_listener_output("out", output),
    ));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 14, "640x360", "1500k");
    let _encoder = srt_push(&dir, "encoder", &source, input);
    assert!(
        wait_for(Duration::from_secs(15), || video_frames(&daemon, "encoder")
            >= 25),
        "encoder not received: {}",
        daemon.log()
    );
    let url = format!("srt://127.0.0.1:{output}?latency=200000&timeout=3000000");
    let recordings = [dir.join("puller-1.ts"), dir.join("puller-2.ts")];
    let mut pullers = [
        ffmpeg_record(&dir, "puller-1", &url, &recordings[0]),
        ffmpeg_record(&dir, "puller-2", &url, &recordings[1]),
    ];
    assert!(
        wait_for(Duration::from_secs(10), || peers(&daemon, "out").len() == 2),
        "the pullers never both connected: {}",
        daemon.output("program", "out")
    );
    let before = peers(&daemon, "out");

    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker
        .send_to(&issue_10_datagram(), ("127.0.0.1", output))
        .unwrap();
    let noise = std::thread::spawn(move || send_noise(output, Duration::from_secs(5)));
    // A puller that was dropped and came back would show up as a new address (or a gap).
    while !noise.is_finished() {
        assert_eq!(
            peers(&daemon, "out"),
            before,
            "the pullers changed under attack: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let sent = noise.join().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(peers(&daemon, "out"), before, "{}", daemon.log());
    assert!(daemon.alive(), "lunora died: {}", daemon.log());
    eprintln!("sent {sent} hostile datagrams to the output port");
    // The output counts what it dropped (published about once a second).
    let counted = || {
        daemon.output("program", "out")["srt_datagrams_rejected"]
            .as_object()
            .expect("srt_datagrams_rejected missing from the output's status")
            .values()
            .map(as_u64)
            .sum::<u64>()
    };
    assert!(
        wait_for(Duration::from_secs(5), || counted() > sent / 2),
        "sent {sent}, the output counted {}: {}",
        counted(),
        daemon.output("program", "out")
    );
    let by_reason = &daemon.output("program", "out")["srt_datagrams_rejected"];
    assert!(
        as_u64(&by_reason["extension_length"]) >= 1,
        "issue 10's datagram not counted as extension_length: {by_reason}"
    );
    let metrics = daemon.get("/metrics").1;
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "lunora_output_srt_datagrams_rejected_total{channel=\"program\",output=\"out\",reason=\"extension_length\"}"
        ) && !l.ends_with(" 0")),
        "no output rejection metric:\n{metrics}"
    );

    // The readers end by themselves 3 s after the stream stops (their SRT read timeout).
    for (puller, recording) in pullers.iter_mut().zip(&recordings) {
        puller
            .wait(Duration::from_secs(30))
            .expect("puller stops once the stream ends");
        let frames = decoded_video_frames(recording);
        assert!(
            frames >= 250,
            "decoded only {frames} frames of ~13 s: {}",
            puller.stderr()
        );
        let decode = decode_warnings(recording);
        assert!(
            decode.trim().is_empty(),
            "decoding {} produced warnings:\n{decode}",
            recording.display()
        );
        assert_reader_saw_a_clean_stream(&puller.stderr());
    }
}
