//! SRT in → lunora → SRT out, read by ffmpeg/ffprobe.

use std::time::Duration;

use crate::common::*;

#[test]
fn listener_output_delivers_a_stream_ffprobe_decodes_cleanly() {
    let (input, output) = (free_udp_port(), free_udp_port());
    let daemon = Daemon::start(&single_srt_channel(
        "encoder",
        input,
        "",
        &srt_listener_output("out", output),
    ));
    let dir = daemon.dir.path().to_path_buf();
    // 8 s at 25 fps: 200 video frames, a keyframe every second.
    let source = make_ts(&dir, "source.ts", 8, "640x360", "1500k");
    let recording = dir.join("recording.ts");
    let mut reader = ffmpeg_record(
        &dir,
        "reader",
        &format!("srt://127.0.0.1:{output}?latency=200000&timeout=3000000"),
        &recording,
    );
    assert!(
        wait_for(Duration::from_secs(10), || daemon.output("program", "out")
            ["peers"]
            .as_array()
            .map_or(0, Vec::len)
            == 1),
        "the reader never connected to the SRT output"
    );

    let mut pusher = srt_push(&dir, "pusher", &source, input);
    let status = pusher
        .wait(Duration::from_secs(40))
        .expect("pusher finishes");
    assert!(status.success(), "ffmpeg push failed: {}", pusher.stderr());
    // The reader ends by itself 3 s after the stream stops (its SRT read timeout).
    reader
        .wait(Duration::from_secs(20))
        .expect("reader stops once the stream ends");

    let frames = decoded_video_frames(&recording);
    assert!(
        (175..=200).contains(&frames),
        "ffprobe decoded {frames} of 200 video frames (allowing one GOP); reader said:\n{}\noutput: {}\ninput: {}",
        reader.stderr(),
        daemon.output("program", "out"),
        daemon.input("program", "encoder"),
    );
    let decode = decode_warnings(&recording);
    assert!(
        decode.trim().is_empty(),
        "decoding the output produced warnings:\n{decode}"
    );
    assert_reader_saw_a_clean_stream(&reader.stderr());
    let input_status = daemon.input("program", "encoder");
    // ffmpeg's SRT caller closes without lingering, so its last few packets may never arrive.
    let demuxed = as_u64(&input_status["frames_total"]["video"]);
    assert!(
        (195..=200).contains(&demuxed),
        "lunora demuxed {demuxed} of the 200 video frames sent"
    );
    assert_eq!(
        as_u64(&input_status["tr101290"]["continuity_count_error"]),
        0
    );
    let status = daemon.stop();
    assert!(status.success(), "lunora exits 0 on SIGTERM, got {status}");
}

#[test]
fn caller_output_reaches_an_encrypted_listener_and_reconnects_after_it_restarts() {
    let (input, target) = (free_udp_port(), free_udp_port());
    let passphrase = "medialive-secret-42";
    let daemon = Daemon::start(&single_srt_channel(
        "encoder",
        input,
        "",
        &format!(
            "[[channels.outputs]]\nid = \"medialive\"\ntype = \"srt\"\nmode = \"caller\"\naddress = \"127.0.0.1:{target}\"\nlatency_ms = 200\npassphrase = \"{passphrase}\"\npbkeylen = 32\n"
        ),
    ));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 30, "320x180", "300k");
    let _pusher = srt_push(&dir, "pusher", &source, input);
    let listener_url = format!(
        "srt://127.0.0.1:{target}?mode=listener&latency=200000&passphrase={passphrase}&pbkeylen=32"
    );
    let listen = |name: &str, file: &str| ffmpeg_record(&dir, name, &listener_url, &dir.join(file));
    let mut first = listen("receiver-1", "first.ts");
    assert!(
        wait_for(Duration::from_secs(20), || daemon
            .output("program", "medialive")["state"]
            == "live"),
        "never went live: {}",
        daemon.log()
    );
    // Stop it while data flows (ffmpeg acts on SIGINT between reads).
    std::thread::sleep(Duration::from_secs(6));
    first.signal(Signal::SIGINT);
    first.wait(Duration::from_secs(10)).expect("receiver stops");
    assert!(
        decoded_video_frames(&dir.join("first.ts")) > 25,
        "the first receiver got video"
    );

    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .output("program", "medialive")["state"]
            == "retrying"),
        "output did not notice its listener went away: {}",
        daemon.output("program", "medialive")
    );
    let mut second = listen("receiver-2", "second.ts");
    assert!(
        wait_for(Duration::from_secs(20), || daemon
            .output("program", "medialive")["state"]
            == "live"),
        "did not reconnect"
    );
    std::thread::sleep(Duration::from_secs(6));
    second.signal(Signal::SIGINT);
    second
        .wait(Duration::from_secs(10))
        .expect("receiver stops");
    assert!(
        decoded_video_frames(&dir.join("second.ts")) > 25,
        "the restarted receiver got video"
    );
    assert!(as_u64(&daemon.output("program", "medialive")["reconnects_total"]) >= 1);
    let log = daemon.log();
    assert!(
        !log.contains(passphrase),
        "the passphrase must never be logged"
    );
}

/// A puller that joins a busy channel mid-stream is handed the cached GOP first. At 45 Mbit/s
/// that is 5.6 MB; sent at wire speed it overflowed srt-live-transmit's UDP buffer and the
/// puller received nothing at all. Paced, it plays from its first second.
#[test]
fn a_late_puller_of_a_high_bitrate_channel_gets_the_whole_stream() {
    let (input, output) = (free_udp_port(), free_udp_port());
    let daemon = Daemon::start(&single_srt_channel(
        "encoder",
        input,
        "",
        &srt_listener_output("out", output),
    ));
    let dir = daemon.dir.path().to_path_buf();
    let cbr = [
        "libx264",
        "-preset",
        "ultrafast",
        "-minrate",
        "45M",
        "-maxrate",
        "45M",
        "-bufsize",
        "8M",
        "-x264-params",
        "nal-hrd=cbr",
    ];
    let source = make_ts_with(&dir, "source.ts", 16, "1280x720", "45M", &cbr);
    let _pusher = srt_push(&dir, "pusher", &source, input);
    assert!(wait_for(Duration::from_secs(15), || daemon
        .json("/api/v1/channels/program")["active_input"]
        == "encoder"));
    std::thread::sleep(Duration::from_millis(1500));
    let received = dir.join("pulled.ts");
    let mut puller = slt_record(
        &dir,
        "puller",
        &format!("srt://127.0.0.1:{output}?latency=200"),
        &received,
    );
    std::thread::sleep(Duration::from_secs(5));
    // SIGINT: srt-live-transmit flushes what it holds and exits.
    puller.signal(Signal::SIGINT);
    puller.wait(Duration::from_secs(5));
    let bytes = std::fs::metadata(&received).map_or(0, |m| m.len());
    // 5 s at 45 Mbit/s is ~28 MB; half of it proves the stream flows from the start.
    assert!(
        bytes > 14_000_000,
        "the late puller received {bytes} bytes in 5 s\n{}\n{}",
        daemon.output("program", "out"),
        puller.stderr()
    );
    assert!(
        decoded_video_frames(&received) >= 60,
        "the pulled stream decodes"
    );
}

/// An encrypted listener output with a stream id: a puller with the passphrase, its own key
/// length (24 bytes) and the stream id records a stream that decodes; one with a wrong
/// passphrase is refused and the output says why.
#[test]
fn encrypted_listener_output_takes_the_pullers_key_length_and_refuses_a_wrong_passphrase() {
    let (input, output) = (free_udp_port(), free_udp_port());
    let passphrase = "output-passphrase-1";
    let daemon = Daemon::start(&single_srt_channel(
        "encoder",
        input,
        "",
        &format!(
            "{}passphrase = \"{passphrase}\"\nstream_id = \"feed-1\"\n",
            srt_listener_output("out", output)
        ),
    ));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 8, "640x360", "1500k");
    let _pusher = srt_push(&dir, "pusher", &source, input);
    let recording = dir.join("recording.ts");
    let mut reader = ffmpeg_record(
        &dir,
        "reader",
        &format!(
            "srt://127.0.0.1:{output}?latency=200000&timeout=3000000&passphrase={passphrase}&pbkeylen=24&streamid=feed-1"
        ),
        &recording,
    );
    let mut intruder = ffmpeg_record(
        &dir,
        "intruder",
        &format!(
            "srt://127.0.0.1:{output}?latency=200000&timeout=3000000&passphrase=wrong-passphrase&pbkeylen=16&streamid=feed-1"
        ),
        &dir.join("intruder.ts"),
    );
    let status = intruder
        .wait(Duration::from_secs(15))
        .expect("the intruder gives up");
    assert!(!status.success(), "the intruder was let in");
    let error = daemon.output("program", "out")["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(error.contains("passphrase"), "last_error: {error}");
    reader
        .wait(Duration::from_secs(30))
        .expect("reader stops once the stream ends");
    let frames = decoded_video_frames(&recording);
    assert!(
        frames >= 150,
        "decoded {frames} frames: {}",
        reader.stderr()
    );
    assert!(decode_warnings(&recording).trim().is_empty());
}

/// `max_pullers = 1`: a second receiver is refused with a reason the operator can read, and
/// the first keeps its stream.
#[test]
fn a_listener_output_refuses_pullers_beyond_max_pullers() {
    let (input, output) = (free_udp_port(), free_udp_port());
    let daemon = Daemon::start(&single_srt_channel(
        "encoder",
        input,
        "",
        &format!("{}max_pullers = 1\n", srt_listener_output("out", output)),
    ));
    let dir = daemon.dir.path().to_path_buf();
    let source = make_ts(&dir, "source.ts", 12, "640x360", "1500k");
    let _pusher = srt_push(&dir, "pusher", &source, input);
    let url = format!("srt://127.0.0.1:{output}?latency=200000&timeout=3000000");
    let first_recording = dir.join("first.ts");
    let mut first = ffmpeg_record(&dir, "first", &url, &first_recording);
    assert!(
        wait_for(Duration::from_secs(10), || peers(&daemon, "out").len() == 1),
        "the first puller never connected: {}",
        daemon.output("program", "out")
    );
    let connected = peers(&daemon, "out");

    let mut second = ffmpeg_record(&dir, "second", &url, &dir.join("second.ts"));
    let refused = second
        .wait(Duration::from_secs(15))
        .expect("second puller gives up");
    assert!(
        !refused.success(),
        "the second puller was served: {}",
        second.stderr()
    );
    let out = daemon.output("program", "out");
    assert!(
        out["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("the output is full: 1 receivers connected")),
        "{out}"
    );
    assert_eq!(
        peers(&daemon, "out"),
        connected,
        "the first puller was disturbed"
    );

    first
        .wait(Duration::from_secs(30))
        .expect("first puller stops once the stream ends");
    let frames = decoded_video_frames(&first_recording);
    assert!(
        frames >= 200,
        "the first puller decoded only {frames} frames of ~12 s"
    );
}

/// An output with `source` sends that input as received, whatever is on air: with main on
/// air, the output sourced from the backup carries the backup's picture, and it keeps doing
/// so when the backup's encoder reconnects and when the input itself is restarted by a change
/// (a new encoder with another picture then feeds the same output).
#[test]
fn an_output_sourced_from_an_input_sends_that_input_whatever_is_on_air() {
    let (main, backup, program_out, backup_out) = (
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
    );
    let outputs = format!(
        "{}{}source = \"backup\"\n",
        srt_listener_output("program-out", program_out),
        srt_listener_output("backup-out", backup_out)
    );
    let daemon = Daemon::start(&main_backup_channel(main, backup, "", &outputs));
    let dir = daemon.dir.path().to_path_buf();
    let main_ts = make_ts(&dir, "main.ts", 60, "640x360", "800k");
    let backup_ts = make_ts(&dir, "backup.ts", 60, "320x180", "300k");
    let _main_push = srt_push(&dir, "main-push", &main_ts, main);
    let mut backup_push = srt_push(&dir, "backup-push", &backup_ts, backup);
    let on_air = wait_for(Duration::from_secs(15), || {
        daemon.json("/api/v1/channels/program")["active_input"] == "main"
            && daemon.input("program", "backup")["state"] == "connected"
    });
    assert!(on_air, "{}", daemon.json("/api/v1/channels/program"));
    let probe = |port: u16| probe_streams(&format!("srt://127.0.0.1:{port}?latency=200000"));
    let program = probe(program_out);
    assert!(
        program.contains("h264,640,360"),
        "program output: {program}"
    );
    let raw = probe(backup_out);
    assert!(raw.contains("h264,320,180"), "backup-sourced output: {raw}");
    assert_eq!(
        daemon.output("program", "backup-out")["config"]["source"],
        "backup"
    );

    backup_push.signal(Signal::SIGKILL);
    let _ = backup_push.wait(Duration::from_secs(5));
    let gone = wait_for(Duration::from_secs(10), || {
        daemon.input("program", "backup")["state"] != "connected"
    });
    assert!(gone, "{}", daemon.input("program", "backup"));
    let mut backup_again = srt_push(&dir, "backup-push-2", &backup_ts, backup);
    let back = wait_for(Duration::from_secs(15), || {
        daemon.input("program", "backup")["state"] == "connected"
    });
    assert!(back, "{}", daemon.input("program", "backup"));
    let raw = probe(backup_out);
    assert!(
        raw.contains("h264,320,180"),
        "after the backup returned: {raw}"
    );

    // A change restarts the input (a new switcher slot); the tap follows it.
    backup_again.signal(Signal::SIGKILL);
    let _ = backup_again.wait(Duration::from_secs(5));
    let (status, body) = http_send(
        daemon.http,
        "PUT",
        "/api/v1/channels/program/inputs/backup",
        &format!(
            r#"{{"id":"backup","role":"backup","type":"srt","listen":"127.0.0.1:{backup}","latency_ms":300}}"#
        ),
    );
    assert_eq!(status, 200, "{body}");
    let other_ts = make_ts(&dir, "other.ts", 60, "256x144", "200k");
    let _other = srt_push(&dir, "backup-push-3", &other_ts, backup);
    // The restarted input counts from zero: 50 frames are from the new encoder. A tap left on
    // the old slot would still serve the old picture from its GOP cache.
    let flowing = wait_for(Duration::from_secs(20), || {
        as_u64(&daemon.input("program", "backup")["frames_total"]["video"]) > 50
    });
    assert!(flowing, "{}", daemon.input("program", "backup"));
    let raw = probe(backup_out);
    assert!(
        raw.contains("h264,256,144"),
        "after the input restarted: {raw}"
    );
}
