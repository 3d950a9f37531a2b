//! RTMP push destinations against nginx with libnginx-mod-rtmp.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// nginx-rtmp on loopback, recording every stream published to its applications `live` and
/// `program` into `dir`.
pub fn nginx(dir: &Path, port: u16) -> Proc {
    nginx_server(dir, port, None, false)
}

/// [`nginx`], plus: with `tls_port`, an nginx stream-module TLS front (certificate from
/// `dir/leaf.pem`) proxying to it; with `refusing`, an application `locked` that refuses every
/// publisher through nginx-rtmp's on_publish callback, answered 403 by nginx's own http module
/// (a platform refusing a stream key), and an application `dropping` that accepts the publish
/// and drops it at the first on_update a second later (a platform that takes the key, then
/// throws the stream out).
fn nginx_server(dir: &Path, port: u16, tls_port: Option<u16>, refusing: bool) -> Proc {
    let nginx = require("nginx", "nginx");
    let module = Path::new("/usr/lib/nginx/modules/ngx_rtmp_module.so");
    assert!(
        module.is_file(),
        "libnginx-mod-rtmp is missing: install the Debian package libnginx-mod-rtmp (bash .ci/run does)"
    );
    let conf = dir.join("nginx.conf");
    let (locked, auth_server) = if refusing {
        let auth = free_tcp_port();
        (
            format!(
                "application locked {{ live on; on_publish http://127.0.0.1:{auth}/deny; }} \
                 application dropping {{ live on; notify_update_timeout 1s; on_update http://127.0.0.1:{auth}/deny; }}"
            ),
            format!(
                "http {{ access_log off; server {{ listen 127.0.0.1:{auth}; location /deny {{ return 403; }} }} }}\n"
            ),
        )
    } else {
        (String::new(), String::new())
    };
    // `live` for destinations; `program` as MediaLive names a push input's application
    // after the channel (`program/main`).
    let recording: String = ["live", "program"]
        .iter()
        .map(|app| {
            format!(
                "application {app} {{ live on; record all; record_path {}; record_unique off; }} ",
                dir.display()
            )
        })
        .collect();
    std::fs::write(
        &conf,
        format!(
            "load_module {};\n{}daemon off;\nmaster_process off;\nerror_log {}/nginx-error.log info;\npid {}/nginx.pid;\nevents {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; {recording} {locked} }} }}\n\
             {auth_server}{}",
            module.display(),
            if tls_port.is_some() { "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n" } else { "" },
            dir.display(),
            dir.display(),
            tls_port.map_or(String::new(), |tls| format!(
                "stream {{ server {{ listen 127.0.0.1:{tls} ssl; ssl_certificate {d}/leaf.pem; ssl_certificate_key {d}/leaf.key; proxy_pass 127.0.0.1:{port}; }} }}\n",
                d = dir.display()
            )),
        ),
    )
    .expect("nginx.conf");
    Proc::spawn(
        "nginx",
        dir,
        Command::new(nginx).arg("-p").arg(dir).arg("-c").arg(&conf),
    )
}

fn platform_state(daemon: &Daemon) -> String {
    daemon.output("program", "platform")["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// An RTMP destination section pushing to `rtmp://127.0.0.1:{port}/live/{key}` with short retry
/// bounds (so reconnection is quick in tests).
pub fn rtmp_destination(id: &str, port: u16, key: &str) -> String {
    format!(
        "[[channels.outputs]]\nid = \"{id}\"\ntype = \"rtmp\"\nurl = \"rtmp://127.0.0.1:{port}/live\"\nstream_key = \"{key}\"\nautostart = true\nretry_min_ms = 200\nretry_max_ms = 500\n\n"
    )
}

#[test]
fn three_destinations_on_nginx_stop_start_and_ride_out_a_restart() {
    let (input, rtmp) = (free_udp_port(), free_tcp_port());
    let outputs: String = ["one", "two", "three"]
        .iter()
        .map(|id| rtmp_destination(id, rtmp, &format!("key-{id}")))
        .collect();
    let daemon = Daemon::start(&single_srt_channel("encoder", input, "", &outputs));
    let dir = daemon.dir.path().to_path_buf();
    let mut server = nginx(&dir, rtmp);
    let source = make_ts(&dir, "source.ts", 60, "320x180", "300k");
    let _encoder = srt_push(&dir, "encoder", &source, input);
    let state = |id: &str| {
        daemon.output("program", id)["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let all = |wanted: &str| ["one", "two", "three"].iter().all(|id| state(id) == wanted);
    assert!(
        wait_for(Duration::from_secs(20), || all("live")),
        "not all live: {}\n{}",
        daemon.json("/api/v1/channels/program")["outputs"],
        daemon.log()
    );
    std::thread::sleep(Duration::from_secs(3));

    // Stop one through the API; the others keep going without dropping a frame.
    assert_eq!(
        http_post_json(daemon.http, "/api/v1/channels/program/outputs/one/stop", "").0,
        202
    );
    assert!(wait_for(Duration::from_secs(5), || state("one") == "idle"));
    std::thread::sleep(Duration::from_secs(3));
    for id in ["two", "three"] {
        assert_eq!(state(id), "live");
        assert_eq!(
            as_u64(&daemon.output("program", id)["dropped_frames_total"]),
            0,
            "{id} dropped frames"
        );
    }
    assert_eq!(
        http_post_json(
            daemon.http,
            "/api/v1/channels/program/outputs/one/start",
            ""
        )
        .0,
        202
    );
    assert!(wait_for(Duration::from_secs(5), || state("one") == "live"));
    std::thread::sleep(Duration::from_secs(2));

    // Every destination's recording decodes.
    assert_eq!(
        http_post_json(daemon.http, "/api/v1/channels/program/outputs/stop-all", "").0,
        202
    );
    assert!(wait_for(Duration::from_secs(5), || all("idle")));
    std::thread::sleep(Duration::from_millis(500));
    for id in ["one", "two", "three"] {
        let recording = dir.join(format!("key-{id}.flv"));
        let frames = decoded_video_frames(&recording);
        assert!(
            frames >= 25,
            "{id}: nginx recorded {frames} decodable frames"
        );
        let decode = decode_warnings(&recording);
        assert!(
            decode.trim().is_empty(),
            "{id}: the TS → FLV path produced errors:\n{decode}"
        );
    }

    // nginx goes away: all retrying, with the reason; back: all live again within 2 s.
    assert_eq!(
        http_post_json(
            daemon.http,
            "/api/v1/channels/program/outputs/start-all",
            ""
        )
        .0,
        202
    );
    assert!(wait_for(Duration::from_secs(10), || all("live")));
    server.signal(Signal::SIGKILL);
    server.wait(Duration::from_secs(5));
    assert!(
        wait_for(Duration::from_secs(10), || all("retrying")),
        "{}",
        daemon.json("/api/v1/channels/program")["outputs"]
    );
    let error = daemon.output("program", "two")["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        !error.is_empty() && !error.contains("key-two"),
        "last error is reported without the key: {error:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let _server = nginx(&dir, rtmp);
    let back = std::time::Instant::now();
    assert!(
        wait_for(Duration::from_secs(10), || all("live")),
        "did not come back: {}",
        daemon.json("/api/v1/channels/program")["outputs"]
    );
    // nginx itself takes a moment to listen; the retry bound (500 ms) does the rest.
    assert!(
        back.elapsed() < Duration::from_secs(3),
        "back live {:?} after nginx restarted",
        back.elapsed()
    );
    assert!(as_u64(&daemon.output("program", "two")["reconnects_total"]) >= 1);
    assert_eq!(
        http_post_json(
            daemon.http,
            "/api/v1/channels/program/outputs/nope/stop",
            ""
        )
        .0,
        404
    );
    let log = daemon.log();
    assert!(
        ["key-one", "key-two", "key-three"]
            .iter()
            .all(|k| !log.contains(k)),
        "stream keys must never be logged"
    );
}

/// A test CA and a leaf certificate for 127.0.0.1 signed by it (rustls refuses a self-signed
/// certificate that is its own CA), made with the openssl command-line tool.
pub fn make_certificates(dir: &Path) {
    let openssl = require("openssl", "openssl");
    let step = |args: &[&str]| {
        let out = run(
            "openssl",
            Command::new(&openssl).args(args).current_dir(dir),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    step(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Lunora Test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    step(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    step(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
}

#[test]
fn rtmps_destination_goes_live_through_a_tls_front() {
    let (input, rtmp, tls) = (free_udp_port(), free_tcp_port(), free_tcp_port());
    let dir = tempfile::tempdir().expect("temp dir");
    make_certificates(dir.path());
    let ca = dir.path().join("ca.pem");
    let outputs = format!(
        "[[channels.outputs]]\nid = \"platform\"\ntype = \"rtmp\"\npreset = \"custom\"\nurl = \"rtmps://127.0.0.1:{tls}/live\"\nstream_key = \"tls-key\"\nautostart = true\n"
    );
    // The daemon trusts the test CA the way an operator would add a private CA.
    let daemon = Daemon::start_with_env(
        &single_srt_channel("encoder", input, "", &outputs),
        dir,
        &[("SSL_CERT_FILE", &ca)],
    );
    let dir = daemon.dir.path().to_path_buf();
    let _server = nginx_server(&dir, rtmp, Some(tls), false);
    let source = make_ts(&dir, "source.ts", 30, "320x180", "300k");
    let _encoder = srt_push(&dir, "encoder", &source, input);
    assert!(
        wait_for(Duration::from_secs(20), || platform_state(&daemon)
            == "live"),
        "never live over TLS: {}\n{}",
        daemon.output("program", "platform"),
        daemon.log()
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        http_post_json(daemon.http, "/api/v1/channels/program/outputs/stop-all", "").0,
        202
    );
    assert!(wait_for(Duration::from_secs(5), || platform_state(&daemon) == "idle"));
    std::thread::sleep(Duration::from_millis(500));
    let frames = decoded_video_frames(&dir.join("tls-key.flv"));
    assert!(
        frames >= 50,
        "nginx recorded {frames} frames through the TLS front"
    );
}

#[test]
fn a_stalled_destination_drops_alone_while_the_others_lose_nothing() {
    let (input, rtmp_a, rtmp_b, srt_out) = (
        free_udp_port(),
        free_tcp_port(),
        free_tcp_port(),
        free_udp_port(),
    );
    let outputs = format!(
        "[[channels.outputs]]\nid = \"stalled\"\ntype = \"rtmp\"\nurl = \"rtmp://127.0.0.1:{rtmp_a}/live\"\nstream_key = \"a\"\nautostart = true\n\n\
         [[channels.outputs]]\nid = \"healthy\"\ntype = \"rtmp\"\nurl = \"rtmp://127.0.0.1:{rtmp_b}/live\"\nstream_key = \"b\"\nautostart = true\n\n\
         {}",
        srt_listener_output("pull", srt_out)
    );
    let daemon = Daemon::start(&single_srt_channel("encoder", input, "", &outputs));
    let dir = daemon.dir.path().to_path_buf();
    let (dir_a, dir_b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&dir_a).expect("dir a");
    std::fs::create_dir_all(&dir_b).expect("dir b");
    let stalled = nginx(&dir_a, rtmp_a);
    let _healthy = nginx(&dir_b, rtmp_b);
    // A high bitrate fills the stalled server's socket buffers quickly.
    let source = make_ts(&dir, "source.ts", 20, "1280x720", "8M");
    let live = |id: &str| daemon.output("program", id)["state"] == "live";
    assert!(
        wait_for(Duration::from_secs(20), || live("stalled")
            && live("healthy")),
        "{}\nnginx a: {}{}",
        daemon.log(),
        stalled.stderr(),
        std::fs::read_to_string(dir_a.join("nginx-error.log")).unwrap_or_default()
    );
    // The reader connects only now: its 4 s read timeout must not run out while the source
    // is still being encoded on a busy machine.
    let recording = dir.join("pull.ts");
    let mut reader = ffmpeg_record(
        &dir,
        "reader",
        &format!("srt://127.0.0.1:{srt_out}?latency=200000&timeout=4000000"),
        &recording,
    );
    assert!(
        wait_for(Duration::from_secs(10), || daemon.output("program", "pull")
            ["peers"]
            .as_array()
            .map_or(0, Vec::len)
            == 1),
        "the reader never connected"
    );
    let mut encoder = srt_push(&dir, "encoder", &source, input);
    std::thread::sleep(Duration::from_secs(3));
    // The first server stops reading: it accepts TCP but never drains it. Within seconds the
    // destination says so (its blocked write gives up and it reconnects), and it can be
    // stopped and started like any other meanwhile.
    stalled.signal(Signal::SIGSTOP);
    let stalled_error = || {
        daemon.output("program", "stalled")["last_error"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(
        wait_for(Duration::from_secs(15), || stalled_error()
            .contains("took no data")),
        "the stall is not reported: {}",
        daemon.output("program", "stalled")
    );
    encoder
        .wait(Duration::from_secs(40))
        .expect("encoder finishes");
    reader
        .wait(Duration::from_secs(20))
        .expect("reader ends after the stream");
    stalled.signal(Signal::SIGCONT);

    let dropped = |id: &str| as_u64(&daemon.output("program", id)["dropped_frames_total"]);
    assert_eq!(
        dropped("healthy"),
        0,
        "{}",
        daemon.output("program", "healthy")
    );
    assert_eq!(dropped("pull"), 0, "{}", daemon.output("program", "pull"));
    let input_frames = as_u64(&daemon.input("program", "encoder")["frames_total"]["video"]);
    let pulled = decoded_video_frames(&recording);
    assert!(
        pulled + 30 >= input_frames,
        "the SRT output lost frames: {pulled} of {input_frames}"
    );
    assert_eq!(
        as_u64(&daemon.output("program", "healthy")["frames_total"]),
        as_u64(&daemon.output("program", "pull")["frames_total"]),
        "the healthy RTMP destination sent every frame the SRT output did"
    );
}

#[test]
fn destinations_are_added_changed_and_removed_through_the_api_and_survive_a_restart() {
    let (input, rtmp, srt_out) = (free_udp_port(), free_tcp_port(), free_udp_port());
    let outputs = format!(
        "{}{}",
        srt_listener_output("srt-out", srt_out),
        rtmp_destination("cfg", rtmp, "key-cfg")
    );
    let daemon = Daemon::start(&single_srt_channel("encoder", input, "", &outputs));
    let dir = daemon.dir.path().to_path_buf();
    let _server = nginx_server(&dir, rtmp, None, true);
    let source = make_ts(&dir, "source.ts", 120, "320x180", "300k");
    let _encoder = srt_push(&dir, "encoder", &source, input);
    let port = daemon.http;
    let state = |d: &Daemon, id: &str| {
        d.output("program", id)["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let ids = |d: &Daemon| -> Vec<String> {
        d.json("/api/v1/channels/program/outputs")
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        wait_for(Duration::from_secs(20), || state(&daemon, "cfg") == "live"),
        "{}",
        daemon.log()
    );

    // Add: 201 with the settings shown, the key only as "set".
    let url = format!("rtmp://127.0.0.1:{rtmp}/live");
    let body = format!(
        r#"{{"id": "added", "preset": "custom", "url": "{url}", "stream_key": "key-added", "autostart": true, "retry_min_ms": 200, "retry_max_ms": 500}}"#
    );
    let (status, created) = http_post_json(port, "/api/v1/channels/program/outputs", &body);
    assert_eq!(status, 201, "{created}");
    assert!(
        created.contains("\"stream_key_set\":true") && !created.contains("key-added"),
        "{created}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || state(&daemon, "added")
            == "live"),
        "{}",
        daemon.json("/api/v1/channels/program/outputs")
    );

    // Refusals name the problem.
    assert_eq!(
        http_post_json(port, "/api/v1/channels/program/outputs", &body).0,
        409,
        "same id twice"
    );
    let (status, invalid) = http_post_json(
        port,
        "/api/v1/channels/program/outputs",
        r#"{"id": "li", "preset": "linkedin", "url": "rtmp://li.example/live"}"#,
    );
    assert_eq!(status, 400);
    assert!(
        invalid.contains("RTMPS only") && invalid.contains("stream_key"),
        "{invalid}"
    );
    assert_eq!(
        http_send(
            port,
            "PUT",
            "/api/v1/channels/program/outputs/srt-out",
            r#"{"url": "rtmp://a/b"}"#
        )
        .0,
        409,
        "an output's type cannot change"
    );
    assert_eq!(
        http_send(port, "DELETE", "/api/v1/channels/program/outputs/nope", "").0,
        404
    );
    assert_eq!(
        http_post_json(
            port,
            "/api/v1/channels/program/outputs",
            r#"{"id": "Bad Id", "url": "rtmp://a/b", "stream_key": "k"}"#
        )
        .0,
        400
    );

    // Update the config file's destination with a new key: it restarts on it and is live again.
    let (status, updated) = http_send(
        port,
        "PUT",
        "/api/v1/channels/program/outputs/cfg",
        &format!(
            r#"{{"url": "{url}", "stream_key": "key-cfg2", "autostart": true, "retry_min_ms": 200, "retry_max_ms": 500}}"#
        ),
    );
    assert_eq!(status, 200, "{updated}");
    assert!(
        wait_for(Duration::from_secs(10), || state(&daemon, "cfg") == "live"
            && dir.join("key-cfg2.flv").exists()),
        "{}",
        daemon.log()
    );
    // An edit that leaves the key out keeps the saved one.
    assert_eq!(
        http_send(
            port,
            "PUT",
            "/api/v1/channels/program/outputs/added",
            &format!(r#"{{"url": "{url}", "autostart": true}}"#)
        )
        .0,
        200
    );
    assert!(wait_for(Duration::from_secs(10), || state(
        &daemon, "added"
    ) == "live"));

    // A platform that refuses the key: failed with the reason, and no hammering.
    let locked = format!(
        r#"{{"id": "locked", "url": "rtmp://127.0.0.1:{rtmp}/locked", "stream_key": "wrong-key", "autostart": true, "retry_min_ms": 200, "retry_max_ms": 500}}"#
    );
    assert_eq!(
        http_post_json(port, "/api/v1/channels/program/outputs", &locked).0,
        201
    );
    assert!(
        wait_for(Duration::from_secs(10), || state(&daemon, "locked")
            == "failed"),
        "{}\n{}\n{}",
        daemon.output("program", "locked"),
        daemon.log(),
        std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
    );
    std::thread::sleep(Duration::from_secs(2));
    let refused = daemon.output("program", "locked");
    assert_eq!(
        refused["state"], "failed",
        "stays failed instead of retrying: {refused}"
    );
    assert!(
        refused["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("refused"),
        "{refused}"
    );

    // Remove: gone from the API at once.
    assert_eq!(
        http_send(port, "DELETE", "/api/v1/channels/program/outputs/added", "").0,
        204
    );
    assert_eq!(ids(&daemon), ["srt-out", "cfg", "locked"]);

    // What an operator started or stopped stays so across a restart, whatever autostart says.
    for (id, autostart) in [("manual", false), ("parked", true)] {
        let body = format!(
            r#"{{"id": "{id}", "url": "{url}", "stream_key": "key-{id}", "autostart": {autostart}, "retry_min_ms": 200, "retry_max_ms": 500}}"#
        );
        assert_eq!(
            http_post_json(port, "/api/v1/channels/program/outputs", &body).0,
            201
        );
    }
    assert_eq!(
        http_post_json(port, "/api/v1/channels/program/outputs/manual/start", "").0,
        202
    );
    assert_eq!(
        http_post_json(port, "/api/v1/channels/program/outputs/parked/stop", "").0,
        202
    );
    assert!(wait_for(Duration::from_secs(10), || state(
        &daemon, "manual"
    ) == "live"
        && state(&daemon, "parked") == "idle"));

    // Restart: the same outputs, the changed key in use, the removed one still gone.
    let restarted_at = std::time::SystemTime::now();
    let daemon = daemon.restart();
    assert_eq!(
        ids(&daemon),
        ["srt-out", "cfg", "locked", "manual", "parked"]
    );
    assert!(
        wait_for(Duration::from_secs(20), || state(&daemon, "cfg") == "live"
            && state(&daemon, "manual") == "live"),
        "{}",
        daemon.log()
    );
    assert_eq!(
        state(&daemon, "parked"),
        "idle",
        "stopped by the operator, so not autostarted"
    );
    std::thread::sleep(Duration::from_secs(1));
    let modified = |name: &str| {
        std::fs::metadata(dir.join(name))
            .and_then(|m| m.modified())
            .ok()
    };
    assert!(
        modified("key-cfg2.flv").is_some_and(|t| t > restarted_at),
        "the saved key is used after the restart"
    );
    assert!(
        modified("key-cfg.flv").is_some_and(|t| t < restarted_at),
        "the config file's old key is not"
    );
    assert_eq!(
        daemon.output("program", "cfg")["destination"]["stream_key_set"],
        true
    );

    use std::os::unix::fs::PermissionsExt;
    let saved = dir.join("state/lunora.db");
    assert_eq!(
        std::fs::metadata(&saved)
            .map(|m| m.permissions().mode() & 0o777)
            .ok(),
        Some(0o600),
        "the state database holds keys: owner only"
    );
    let log = daemon.log();
    assert!(
        [
            "key-added",
            "key-cfg2",
            "wrong-key",
            "key-manual",
            "key-parked"
        ]
        .iter()
        .all(|k| !log.contains(k)),
        "stream keys must never be logged"
    );
}

/// HEVC leaves as enhanced RTMP (`hvc1`). Debian 12's ffmpeg 5.1 and nginx-rtmp predate enhanced
/// RTMP, so the receiving end is lunora's own RTMP ingest on a second channel, whose SRT output
/// ffprobe then decodes; the configuration record itself is checked against ffmpeg's in
/// lunora-flv's unit tests.
#[test]
fn hevc_goes_out_over_enhanced_rtmp_and_decodes_at_the_far_end() {
    let (input, rtmp, output) = (free_udp_port(), free_tcp_port(), free_udp_port());
    let config = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n\n{}[[channels]]\nid = \"relay\"\nmode = \"single\"\n[[channels.inputs]]\nid = \"from-rtmp\"\ntype = \"rtmp\"\nstream_key = \"relay-key\"\n\n{}",
        single_srt_channel(
            "encoder",
            input,
            "",
            &rtmp_destination("hevc-out", rtmp, "relay-key")
        ),
        srt_listener_output("relay-out", output)
    );
    let daemon = Daemon::start(&config);
    let dir = daemon.dir.path().to_path_buf();
    let source = make_hevc_ts(&dir, "hevc.ts", 30, "320x180", "300k");
    let _encoder = srt_push(&dir, "encoder", &source, input);
    assert!(
        wait_for(Duration::from_secs(20), || daemon
            .output("program", "hevc-out")["state"]
            == "live"),
        "{}",
        daemon.log()
    );
    let recording = dir.join("relay.ts");
    let mut recorder = ffmpeg_record(
        &dir,
        "recorder",
        &format!("srt://127.0.0.1:{output}?latency=200000&timeout=6000000"),
        &recording,
    );
    std::thread::sleep(Duration::from_secs(6));
    recorder.signal(Signal::SIGINT);
    recorder.wait(Duration::from_secs(10));
    let streams = probe_streams(&recording.display().to_string());
    assert_eq!(streams.lines().next(), Some("hevc,320,180"), "{streams}");
    let frames = decoded_video_frames(&recording);
    assert!(
        frames >= 50,
        "{frames} HEVC frames decoded after the RTMP hop"
    );
    let errors = decode_warnings(&recording);
    assert!(errors.trim().is_empty(), "{errors}");
    let warnings = daemon.output("program", "hevc-out")["warnings"].to_string();
    assert!(
        warnings == "[]",
        "a custom destination has no platform rules: {warnings}"
    );
}

/// A server that accepts the publish and drops the stream a second later is not hammered: the
/// attempts are spaced by at least `retry_min_ms`, and after five such sessions in a row the
/// destination is `failed` with the reason.
#[test]
fn a_destination_that_drops_after_accepting_ends_failed_not_in_a_loop() {
    let (input, rtmp) = (free_udp_port(), free_tcp_port());
    let output = format!(
        "[[channels.outputs]]\nid = \"platform\"\ntype = \"rtmp\"\nurl = \"rtmp://127.0.0.1:{rtmp}/dropping\"\nstream_key = \"drop-key-1\"\nautostart = true\nretry_min_ms = 1000\nretry_max_ms = 2000\n"
    );
    let daemon = Daemon::start(&single_srt_channel("encoder", input, "", &output));
    let dir = daemon.dir.path().to_path_buf();
    let _server = nginx_server(&dir, rtmp, None, true);
    let source = make_ts(&dir, "source.ts", 60, "320x180", "300k");
    let _encoder = srt_push(&dir, "encoder", &source, input);
    let started = std::time::Instant::now();
    assert!(
        wait_for(Duration::from_secs(45), || platform_state(&daemon)
            == "failed"),
        "still {:?}: {}\n{}",
        platform_state(&daemon),
        daemon.output("program", "platform"),
        daemon.log()
    );
    let output = daemon.output("program", "platform");
    let error = output["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains("dropped the stream within 5 s of accepting it, 5 times in a row"),
        "{output}"
    );
    // Five sessions with at least 1 s between them.
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "failed after {:?}",
        started.elapsed()
    );
    assert!(as_u64(&output["reconnects_total"]) <= 5, "{output}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(platform_state(&daemon), "failed", "no retry once failed");
}

/// A channel whose audio is MP3 reaches an RTMP server with its sound (FLV sound format 2);
/// nothing is dropped silently.
#[test]
fn mp3_audio_goes_out_over_rtmp() {
    let (input, rtmp) = (free_udp_port(), free_tcp_port());
    let daemon = Daemon::start(&single_srt_channel(
        "encoder",
        input,
        "",
        &rtmp_destination("platform", rtmp, "mp3-key"),
    ));
    let dir = daemon.dir.path().to_path_buf();
    let _server = nginx(&dir, rtmp);
    let source = dir.join("mp3.ts");
    let out = run(
        "ffmpeg (H.264 + MP3 test stream)",
        Command::new(require("ffmpeg", "ffmpeg"))
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x180:rate=25",
            ])
            .args([
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=1000:sample_rate=48000",
                "-t",
                "8",
            ])
            .args([
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", "-b:v", "300k",
            ])
            .args(["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mpegts"])
            .arg(&source),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_for(Duration::from_secs(15), || platform_state(
        &daemon
    ) == "live"));
    let mut encoder = srt_push(&dir, "encoder", &source, input);
    encoder.wait(Duration::from_secs(30));
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
    assert!(wait_for(Duration::from_secs(5), || platform_state(&daemon) == "idle"));
    std::thread::sleep(Duration::from_millis(500));
    let recording = dir.join("mp3-key.flv");
    let streams = probe_streams(&recording.display().to_string());
    assert!(
        streams.contains("mp3"),
        "the server got no MP3 audio: {streams}"
    );
    assert!(streams.contains("h264"), "{streams}");
    let decode = decode_warnings(&recording);
    assert!(decode.trim().is_empty(), "{decode}");
    assert!(
        !daemon.log().contains("gets video only"),
        "{}",
        daemon.log()
    );
}
