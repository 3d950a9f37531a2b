//! Sources managed at run time: a change to one channel restarts only that component, while
//! every other channel's pullers and platform sessions lose nothing; bad changes change
//! nothing; acknowledged changes survive a crash.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::rtmp_output::{nginx, rtmp_destination};

fn channel_section(id: &str, mode: &str, input_loss_ms: u64) -> String {
    format!(
        "[[channels]]\nid = \"{id}\"\nmode = \"{mode}\"\n\n[channels.failover]\ninput_loss_ms = {input_loss_ms}\n\n"
    )
}

fn srt_input(id: &str, port: u16) -> String {
    format!(
        "[[channels.inputs]]\nid = \"{id}\"\ntype = \"srt\"\nlisten = \"127.0.0.1:{port}\"\nlatency_ms = 200\n\n"
    )
}

/// `steady` carries an encoder to an SRT puller and an nginx destination; `flex` starts with
/// no input and is changed while `steady` runs.
fn two_channels(steady_in: u16, pull: u16, rtmp: u16, flex_loss_ms: u64) -> String {
    format!(
        "{}{}{}{}{}",
        channel_section("steady", "single", 500),
        srt_input("encoder", steady_in),
        srt_listener_output("pull", pull),
        rtmp_destination("platform", rtmp, "steady-key"),
        channel_section("flex", "main-backup", flex_loss_ms),
    )
}

fn flex(daemon: &Daemon) -> Value {
    daemon.json("/api/v1/channels/flex")
}

#[test]
fn sources_change_at_run_time_while_another_channel_loses_nothing() {
    let (steady_in, pull, rtmp, cam) = (
        free_udp_port(),
        free_udp_port(),
        free_tcp_port(),
        free_udp_port(),
    );
    let daemon = Daemon::start(&two_channels(steady_in, pull, rtmp, 500));
    let dir = daemon.dir.path().to_path_buf();
    let _server = nginx(&dir, rtmp);
    let source = make_ts(&dir, "source.ts", 40, "320x180", "300k");
    let recording = dir.join("pull.ts");
    let mut reader = ffmpeg_record(
        &dir,
        "reader",
        &format!("srt://127.0.0.1:{pull}?latency=200000&timeout=5000000"),
        &recording,
    );
    let mut encoder = srt_push(&dir, "encoder", &source, steady_in);
    assert!(
        wait_for(Duration::from_secs(20), || daemon
            .output("steady", "platform")["state"]
            == "live"
            && daemon.output("steady", "pull")["peers"]
                .as_array()
                .is_some_and(|p| p.len() == 1)),
        "steady is not live: {}\n{}",
        daemon.json("/api/v1/channels/steady"),
        daemon.log()
    );
    // (nginx may have come up after the destination's first try.)
    let reconnects_before: Vec<u64> = ["pull", "platform"]
        .iter()
        .map(|o| as_u64(&daemon.output("steady", o)["reconnects_total"]))
        .collect();

    // An admin adds an SRT input to the running channel `flex`; ffmpeg pushes to it and it
    // goes on air.
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/channels/flex/inputs",
        &format!(
            r#"{{"id":"cam","role":"main","type":"srt","listen":"127.0.0.1:{cam}","latency_ms":200}}"#
        ),
    );
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        created["config"]["listen"],
        format!("127.0.0.1:{cam}"),
        "{created}"
    );
    let cam_source = make_ts(&dir, "cam.ts", 30, "320x180", "300k");
    let _cam = srt_push(&dir, "cam", &cam_source, cam);
    assert!(
        wait_for(Duration::from_secs(15), || flex(&daemon)["active_input"]
            == "cam"),
        "the added input did not go on air: {}\n{}",
        flex(&daemon),
        daemon.log()
    );

    // A port another component holds: 409 naming the holder, nothing changed.
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/channels/flex/inputs",
        &format!(
            r#"{{"id":"clash","role":"backup","type":"srt","listen":"127.0.0.1:{steady_in}"}}"#
        ),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("steady/encoder"),
        "the holder is named: {body}"
    );
    assert_eq!(flex(&daemon)["inputs"].as_array().map(Vec::len), Some(1));

    // SIGHUP re-reads the file: flex's failover policy changes, the API's input stays.
    daemon.rewrite_config(&two_channels(steady_in, pull, rtmp, 900));
    daemon.signal(Signal::SIGHUP);
    assert!(
        wait_for(
            Duration::from_secs(10),
            || flex(&daemon)["config"]["failover"]["input_loss_ms"] == 900
        ),
        "the reload did not apply: {}\n{}",
        flex(&daemon),
        daemon.log()
    );
    assert_eq!(
        flex(&daemon)["active_input"],
        "cam",
        "the reload left the input on air"
    );

    // Removing the input takes it off air and frees its port.
    let (status, body) = http_send(
        daemon.http,
        "DELETE",
        "/api/v1/channels/flex/inputs/cam",
        "",
    );
    assert_eq!(status, 204, "{body}");
    assert!(
        wait_for(Duration::from_secs(5), || flex(&daemon)["inputs"]
            .as_array()
            .is_some_and(Vec::is_empty)),
        "{}",
        flex(&daemon)
    );
    assert!(
        std::net::UdpSocket::bind(("127.0.0.1", cam)).is_ok(),
        "the removed input's port is free again"
    );

    encoder
        .wait(Duration::from_secs(60))
        .expect("the steady encoder finishes");
    reader
        .wait(Duration::from_secs(20))
        .expect("the reader ends after the stream");
    let steady_frames = as_u64(&daemon.input("steady", "encoder")["frames_total"]["video"]);
    for (output, before) in ["pull", "platform"].iter().zip(reconnects_before) {
        let entry = daemon.output("steady", output);
        assert_eq!(
            as_u64(&entry["dropped_frames_total"]),
            0,
            "{output}: {entry}"
        );
        assert_eq!(
            as_u64(&entry["reconnects_total"]),
            before,
            "{output} reconnected: {entry}"
        );
    }
    let pulled = decoded_video_frames(&recording);
    assert!(
        pulled + 30 >= steady_frames,
        "the other channel's puller lost frames: {pulled} of {steady_frames}"
    );
    let audit = daemon.json("/api/v1/audit");
    let actions: Vec<&str> = audit
        .as_array()
        .expect("audit list")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"input.add")
            && actions.contains(&"input.remove")
            && actions.contains(&"config.reload"),
        "the audit log tells who did what: {audit}"
    );
}

#[test]
fn acknowledged_changes_survive_kill_9() {
    let input = free_udp_port();
    let daemon = Daemon::start(&single_srt_channel("encoder", input, "", ""));
    let port = daemon.http;
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let acknowledged = acknowledged.clone();
        std::thread::spawn(move || {
            for n in 0..200 {
                let id = format!("d{n}");
                let body = format!(
                    r#"{{"id":"{id}","preset":"custom","url":"rtmp://127.0.0.1:9/live","stream_key":"k{n}"}}"#
                );
                match http_post_json(port, "/api/v1/channels/program/outputs", &body).0 {
                    201 => acknowledged.lock().expect("list").push(id),
                    _ => break,
                }
            }
        })
    };
    assert!(
        wait_for(Duration::from_secs(30), || acknowledged
            .lock()
            .expect("list")
            .len()
            >= 10),
        "the API took no changes: {}",
        daemon.log()
    );
    let daemon = daemon.restart_after(Signal::SIGKILL);
    writer.join().expect("writer");
    let acknowledged = acknowledged.lock().expect("list").clone();
    let outputs = daemon.json("/api/v1/channels/program/outputs");
    let ids: Vec<&str> = outputs
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    for id in &acknowledged {
        assert!(
            ids.contains(&id.as_str()),
            "{id} was acknowledged but is gone after kill -9: {ids:?}"
        );
    }
    assert!(acknowledged.len() >= 10);
}

#[test]
fn an_earlier_versions_saved_destinations_are_imported_on_first_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    // The format the previous version wrote: an added destination, a removed one, a stop.
    std::fs::write(
        state.join("destinations.json"),
        r#"{"version":1,"channels":{"program":{"kept":{"preset":"custom","url":"rtmp://127.0.0.1:9/live","stream_key":"old-key-1","autostart":true},"gone":null}},"running":{"program":{"kept":false}}}"#,
    )
    .expect("old state");
    let outputs = crate::rtmp_output::rtmp_destination("gone", free_tcp_port(), "k");
    let daemon = Daemon::start_with_env(
        &single_srt_channel("encoder", free_udp_port(), "", &outputs),
        dir,
        &[],
    );
    let ids: Vec<String> = daemon
        .json("/api/v1/channels/program/outputs")
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        ids,
        ["kept"],
        "the removal and the addition both carried over"
    );
    assert_eq!(
        daemon.output("program", "kept")["state"],
        "idle",
        "stopped by an operator before the upgrade: it stays stopped despite autostart"
    );
    assert!(
        daemon
            .dir
            .path()
            .join("state/destinations.json.migrated")
            .is_file()
    );
    assert!(!daemon.log().contains("old-key-1"));
}

/// Removing a channel stops its SRT input and SRT listener output at once and frees their
/// ports: the same channel can be added back on them (it used to leave both running, bound,
/// and the removal took 3 s per component waiting for them).
#[test]
fn a_removed_channels_ports_are_free_at_once() {
    let (input, output) = (free_udp_port(), free_udp_port());
    let daemon = Daemon::start(&single_srt_channel(
        "encoder",
        input,
        "",
        &srt_listener_output("out", output),
    ));
    let started = std::time::Instant::now();
    let (status, body) = http_send(daemon.http, "DELETE", "/api/v1/channels/program", "");
    assert_eq!(status, 204, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "removing the channel took {:?}",
        started.elapsed()
    );
    for port in [input, output] {
        assert!(
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok(),
            "UDP port {port} is still bound after its channel was removed:\n{}",
            daemon.log()
        );
    }
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/channels",
        r#"{"id": "program", "mode": "single"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = http_post_json(
        daemon.http,
        "/api/v1/channels/program/inputs",
        &format!(r#"{{"id": "encoder", "type": "srt", "listen": "127.0.0.1:{input}"}}"#),
    );
    assert_eq!(status, 201, "the input's port is free again: {body}");
}
