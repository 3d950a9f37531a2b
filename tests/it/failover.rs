//! Main/backup failover end to end, set up like two Videons fed the same SDI signal: one ffmpeg
//! makes a live mezzanine stream on loopback UDP, two independent ffmpeg encoders (each its own
//! libx264, 1 s GOP) read it and push SRT to the main and backup listeners. Main's encoder is
//! killed and restored over and over; the SRT output must stay clean throughout.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// How the two encoders relate to the mezzanine's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clocks {
    /// `-copyts`: both carry the mezzanine's timestamps, as timecode-locked encoders do.
    Shared,
    /// Each stamps its own clock from its own start, and the backup's SRT latency is 600 ms
    /// longer: the same picture has other timestamps and arrives at another time on each. The
    /// mezzanine writes each picture's number into its top rows, so the recording says which
    /// picture went out.
    Own,
}

/// The picture number is written in the top 16 rows: bit b is the 16 × 16 block at x = 16 b,
/// white for 1.
const FRAME_CODE: &str = "format=gray,geq=lum='if(lt(Y\\,16)\\,if(lt(X\\,256)\\,\
                          255*mod(floor(N/pow(2\\,floor(X/16)))\\,2)\\,0)\\,p(X\\,Y))',format=yuv420p";

/// The mezzanine: 640x360p25 MPEG-2 + MP2 on two UDP ports (one per encoder), as an SDI
/// distribution amplifier would feed two encoders.
fn mezzanine(dir: &Path, ports: [u16; 2], clocks: Clocks) -> Proc {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    let source = match clocks {
        Clocks::Shared => "testsrc2=size=640x360:rate=25".to_string(),
        Clocks::Own => format!("testsrc2=size=640x360:rate=25,{FRAME_CODE}"),
    };
    let tee = format!(
        "[f=mpegts:onfail=ignore]udp://127.0.0.1:{}?pkt_size=1316|[f=mpegts:onfail=ignore]udp://127.0.0.1:{}?pkt_size=1316",
        ports[0], ports[1]
    );
    Proc::spawn(
        "mezzanine",
        dir,
        Command::new(ffmpeg)
            .args([
                "-v",
                "warning",
                "-re",
                "-f",
                "lavfi",
                "-i",
                &source,
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
            ])
            .args([
                "-map",
                "0:v",
                "-map",
                "1:a",
                "-c:v",
                "mpeg2video",
                "-q:v",
                "3",
                "-g",
                "12",
                "-c:a",
                "mp2",
                "-b:a",
                "128k",
                "-f",
                "tee",
                &tee,
            ]),
    )
}

/// One encoder: libx264 with a 1 s closed GOP, AAC, SRT caller into lunora, with SRT latency
/// `latency_ms`. With shared clocks `-copyts` keeps the mezzanine's timestamps.
fn encoder(
    dir: &Path,
    name: &str,
    udp_port: u16,
    srt_port: u16,
    clocks: Clocks,
    latency_ms: u64,
) -> Proc {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    let mut command = Command::new(ffmpeg);
    command.args([
        "-v",
        "error",
        "-analyzeduration",
        "1000000",
        "-probesize",
        "1000000",
    ]);
    if clocks == Clocks::Shared {
        command.arg("-copyts");
    }
    Proc::spawn(
        name,
        dir,
        command
            .arg("-i")
            .arg(format!(
                "udp://127.0.0.1:{udp_port}?fifo_size=100000&overrun_nonfatal=1"
            ))
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-g",
                "25",
                "-keyint_min",
                "25",
                "-sc_threshold",
                "0",
            ])
            .args(["-b:v", "800k", "-c:a", "aac", "-b:a", "96k", "-f", "mpegts"])
            .arg(format!(
                "srt://127.0.0.1:{srt_port}?latency={}&pkt_size=1316",
                latency_ms * 1000
            )),
    )
}

pub fn failover_config(main: u16, backup: u16, output: u16) -> String {
    main_backup_channel(
        main,
        backup,
        "error_clear_ms = 2000\n",
        &srt_listener_output("out", output),
    )
}

pub fn active(daemon: &Daemon) -> Value {
    daemon.json("/api/v1/channels/program")["active_input"].clone()
}

pub fn switch_count(channel: &Value, from: &str, to: &str, reason: &str) -> u64 {
    channel["switch_counts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["from_role"] == from && c["to_role"] == to && c["reason"] == reason)
        .map(|c| as_u64(&c["count"]))
        .sum()
}

/// DTS per stream of every packet in `file`, as ffprobe reads them.
fn packet_dts(file: &Path) -> Vec<(u32, i64)> {
    let ffprobe = require("ffprobe", "ffmpeg");
    let out = run(
        "ffprobe packets",
        Command::new(ffprobe)
            .args([
                "-v",
                "error",
                "-show_entries",
                "packet=stream_index,dts",
                "-of",
                "csv=p=0",
            ])
            .arg(file),
        Duration::from_secs(120),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(',');
            Some((
                parts.next()?.trim().parse().ok()?,
                parts.next()?.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// The rigs run five ffmpeg processes each; two at once would starve a two-core machine.
static ONE_RIG_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Lunora with a recorder on its output, a mezzanine and two encoders pushing into it.
struct Rig {
    daemon: Daemon,
    reader: Proc,
    recording: std::path::PathBuf,
    mezzanine: Option<Proc>,
    backup_encoder: Option<Proc>,
    main_encoder: Option<Proc>,
    udp_main: u16,
    main_port: u16,
    clocks: Clocks,
}

impl Rig {
    fn start(extra_failover: &str, clocks: Clocks) -> Rig {
        let (main, backup, output) = (free_udp_port(), free_udp_port(), free_udp_port());
        let (udp_main, udp_backup) = (free_udp_port(), free_udp_port());
        let config = failover_config(main, backup, output).replace(
            "error_clear_ms = 2000",
            &format!("error_clear_ms = 2000\n{extra_failover}"),
        );
        let daemon = Daemon::start(&config);
        let dir = daemon.dir.path().to_path_buf();
        let recording = dir.join("program.ts");
        let reader = ffmpeg_record(
            &dir,
            "reader",
            &format!("srt://127.0.0.1:{output}?latency=200000&timeout=8000000"),
            &recording,
        );
        let mezzanine = mezzanine(&dir, [udp_main, udp_backup], clocks);
        let backup_latency = match clocks {
            Clocks::Shared => 200,
            Clocks::Own => 800,
        };
        let backup_encoder = encoder(
            &dir,
            "backup-encoder",
            udp_backup,
            backup,
            clocks,
            backup_latency,
        );
        let main_encoder = encoder(&dir, "main-encoder", udp_main, main, clocks, 200);
        Rig {
            daemon,
            reader,
            recording,
            mezzanine: Some(mezzanine),
            backup_encoder: Some(backup_encoder),
            main_encoder: Some(main_encoder),
            udp_main,
            main_port: main,
            clocks,
        }
    }

    fn start_main_encoder(&mut self) {
        self.main_encoder = Some(encoder(
            self.daemon.dir.path(),
            "main-encoder",
            self.udp_main,
            self.main_port,
            self.clocks,
            200,
        ));
    }

    /// Restarts the main encoder if it gave up (as a real encoder would retry).
    fn keep_main_encoder_running(&mut self) {
        if self.main_encoder.as_mut().is_none_or(|e| !e.running()) {
            self.start_main_encoder();
        }
    }

    fn wait_for_main(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if active(&self.daemon) == "main" {
                return true;
            }
            self.keep_main_encoder_running();
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// Kills the main encoder once main is on air, waits for the switch, restores the encoder.
    fn lose_main(&mut self, cycle: usize, on_air_for: Duration) {
        assert!(
            self.wait_for_main(Duration::from_secs(30)),
            "cycle {cycle}: main never went (back) on air: {}\n{}",
            self.daemon.json("/api/v1/channels/program"),
            self.daemon.log()
        );
        let daemon = &self.daemon;
        std::thread::sleep(on_air_for);
        if let Some(mut encoder) = self.main_encoder.take() {
            encoder.signal(Signal::SIGKILL);
            encoder.wait(Duration::from_secs(5));
        }
        assert!(
            wait_for(Duration::from_secs(10), || active(daemon) == "backup"),
            "cycle {cycle}: no switch to backup: {}",
            daemon.json("/api/v1/channels/program")
        );
        self.start_main_encoder();
    }

    /// Stops the sources, lets the recorder finish, and checks the recording: it decodes
    /// without an error and the live reader saw no timestamp or continuity trouble.
    fn finish_and_check(&mut self) -> std::path::PathBuf {
        self.main_encoder = None;
        self.backup_encoder = None;
        self.mezzanine = None;
        self.reader
            .wait(Duration::from_secs(30))
            .expect("reader stops after the stream ends");
        assert_reader_saw_a_clean_stream(&self.reader.stderr());
        let decode = decode_warnings(&self.recording);
        assert!(
            decode.trim().is_empty(),
            "decoding the recording produced errors:\n{decode}"
        );
        self.recording.clone()
    }
}

#[test]
fn killing_and_restoring_main_ten_times_keeps_the_output_clean() {
    let _turn = ONE_RIG_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut rig = Rig::start("", Clocks::Shared);
    let started = Instant::now();
    for cycle in 0..10 {
        rig.lose_main(cycle, Duration::from_millis(500));
    }
    assert!(
        rig.wait_for_main(Duration::from_secs(30)),
        "main did not return after the last cycle"
    );
    let elapsed = started.elapsed();
    let channel = rig.daemon.json("/api/v1/channels/program");
    assert!(
        switch_count(&channel, "main", "backup", "input_lost") >= 10,
        "{}",
        channel["switch_counts"]
    );
    assert!(
        switch_count(&channel, "backup", "main", "return_to_primary") >= 10,
        "{}",
        channel["switch_counts"]
    );
    for switch in channel["switches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["reason"] == "return_to_primary")
    {
        assert_eq!(
            as_u64(&switch["gap_ms"]),
            0,
            "returning to a healthy main is seamless: {switch}"
        );
    }
    let recording = rig.finish_and_check();
    let mut last: std::collections::HashMap<u32, i64> = std::collections::HashMap::new();
    for (stream, dts) in &packet_dts(&recording) {
        if let Some(previous) = last.insert(*stream, *dts) {
            assert!(
                *dts > previous,
                "stream {stream}: DTS {dts} after {previous}"
            );
        }
    }
    // Video kept flowing: at most about a second and a half missing per loss.
    let frames = decoded_video_frames(&recording);
    let expected_min = ((elapsed.as_secs_f64() - 10.0 * 1.6 - 3.0) * 25.0) as u64;
    assert!(
        frames >= expected_min,
        "{frames} frames decoded over {elapsed:?} (expected at least {expected_min})"
    );
}

/// The channel's switches after the start.
fn seams(channel: &Value) -> Vec<&Value> {
    channel["switches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["reason"] != "start")
        .collect()
}

#[test]
fn aligned_mode_seams_are_frame_accurate_with_real_encoders() {
    let _turn = ONE_RIG_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // Both encoders carry the mezzanine's timestamps (-copyts), as timecode-locked encoders do.
    let mut rig = Rig::start(
        "switch = \"aligned\"\naligned_clock = \"shared\"",
        Clocks::Shared,
    );
    for cycle in 0..3 {
        rig.lose_main(cycle, Duration::from_secs(2));
    }
    assert!(rig.wait_for_main(Duration::from_secs(30)));
    let channel = rig.daemon.json("/api/v1/channels/program");
    let seams = seams(&channel);
    assert!(seams.len() >= 6, "{}", channel["switches"]);
    for seam in seams {
        assert_eq!(
            as_u64(&seam["gap_ms"]),
            0,
            "aligned seams have no gap: {seam}"
        );
        // Both encoders carry the mezzanine's timestamps (-copyts): the input-clock step at
        // the seam is the content step. Zero: no frame skipped or repeated.
        assert_eq!(
            seam["content_step_frames"], 0,
            "seam skipped or repeated frames: {seam}"
        );
    }
    rig.finish_and_check();
}

/// The picture numbers `FRAME_CODE` wrote, one per decoded picture of `file`.
fn frame_codes(file: &Path) -> Vec<u32> {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    let out = run(
        "ffmpeg frame codes",
        Command::new(ffmpeg)
            .args(["-v", "error", "-i"])
            .arg(file)
            .args([
                "-map",
                "0:v",
                "-vf",
                "crop=256:16:0:0,format=gray",
                "-f",
                "rawvideo",
                "-",
            ]),
        Duration::from_secs(120),
    );
    out.stdout
        .chunks_exact(256 * 16)
        .map(|picture| {
            (0..16)
                .filter(|bit| picture[8 * 256 + bit * 16 + 8] > 128)
                .fold(0u32, |code, bit| code | 1 << bit)
        })
        .collect()
}

#[test]
fn aligned_seams_match_pictures_between_encoders_with_their_own_clocks() {
    let _turn = ONE_RIG_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut rig = Rig::start(
        "switch = \"aligned\"\naligned_clock = \"content\"",
        Clocks::Own,
    );
    let learnt = |daemon: &Daemon| {
        daemon.json("/api/v1/channels/program")["content_alignment"]
            .as_array()
            .is_some_and(|pairs| pairs.len() == 1)
    };
    assert!(
        wait_for(Duration::from_secs(30), || learnt(&rig.daemon)),
        "the pictures never related main and backup: {}",
        rig.daemon.json("/api/v1/channels/program")
    );
    for cycle in 0..2 {
        rig.lose_main(cycle, Duration::from_secs(2));
    }
    assert!(rig.wait_for_main(Duration::from_secs(40)));
    let channel = rig.daemon.json("/api/v1/channels/program");
    let pair = &channel["content_alignment"][0];
    assert_eq!(pair["from"], "main", "{pair}");
    assert_eq!(pair["to"], "backup", "{pair}");
    assert!(
        pair["match_cost"].as_f64().expect("match_cost") < 6.0,
        "{pair}"
    );
    let seams = seams(&channel);
    assert!(seams.len() >= 4, "{}", channel["switches"]);
    for seam in &seams {
        assert_eq!(
            as_u64(&seam["gap_ms"]),
            0,
            "aligned seams have no gap: {seam}"
        );
    }
    let recording = rig.finish_and_check();
    // What the viewer saw: every picture once, in order, but for at most one picture
    // skipped or repeated at a seam.
    let codes = frame_codes(&recording);
    assert!(codes.len() > 300, "{} pictures decoded", codes.len());
    let steps: Vec<(usize, i64)> = codes
        .windows(2)
        .enumerate()
        .map(|(at, w)| (at, i64::from(w[1]) - i64::from(w[0])))
        .filter(|(_, step)| *step != 1)
        .collect();
    let learnt: Vec<String> = rig
        .daemon
        .log()
        .lines()
        .filter(|l| l.contains("content alignment"))
        .map(String::from)
        .collect();
    assert!(
        steps.iter().all(|(_, step)| (0..=2).contains(step)),
        "picture numbers jump at {steps:?}; seams {seams:?}; alignments learnt: {learnt:#?}"
    );
    assert!(steps.len() <= seams.len(), "{steps:?}; seams {seams:?}");
}

#[test]
fn operator_forces_backup_then_hands_back_to_auto() {
    let (main, backup) = (free_udp_port(), free_udp_port());
    let daemon = Daemon::start(&failover_config(main, backup, free_udp_port()));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 40, "320x180", "300k");
    let _main = srt_push(&dir, "main-encoder", &source, main);
    let _backup = srt_push(&dir, "backup-encoder", &source, backup);
    assert!(
        wait_for(Duration::from_secs(15), || active(&daemon) == "main"),
        "{}",
        daemon.log()
    );
    let post = |body: &str| http_post_json(daemon.http, "/api/v1/channels/program/switch", body);

    assert_eq!(post(r#"{"input": "backup"}"#).0, 202);
    assert!(
        wait_for(Duration::from_secs(5), || active(&daemon) == "backup"),
        "force did not take: {}",
        daemon.json("/api/v1/channels/program")
    );
    let channel = daemon.json("/api/v1/channels/program");
    assert_eq!(channel["forced_input"], "backup");
    assert_eq!(switch_count(&channel, "main", "backup", "manual"), 1);
    // Main is perfectly healthy, yet the channel stays where the operator put it.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(active(&daemon), "backup");

    assert_eq!(post(r#"{"input": "auto"}"#).0, 202);
    assert!(
        wait_for(Duration::from_secs(5), || active(&daemon) == "main"),
        "auto did not return to main"
    );
    assert!(daemon.json("/api/v1/channels/program")["forced_input"].is_null());

    let (status, body) = post(r#"{"input": "camera-9"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("no input \\\"camera-9\\\"") || body.contains("camera-9"),
        "{body}"
    );
    assert_eq!(
        http_post_json(
            daemon.http,
            "/api/v1/channels/nope/switch",
            r#"{"input": "auto"}"#
        )
        .0,
        404
    );
    assert_eq!(post("not json").0, 400);
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics.contains("lunora_switch_total{channel=\"program\",from_role=\"main\",reason=\"manual\",to_role=\"backup\"} 1"), "{metrics}");
    assert!(
        metrics.contains(
            "lunora_input_health_state{channel=\"program\",input=\"main\",state=\"healthy\"} 1"
        ),
        "{metrics}"
    );
}
