//! RTMP push destinations against nginx with libnginx-mod-rtmp.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// nginx-rtmp on loopback, recording every published stream into `dir`; with `tls_port`, an
/// nginx stream-module TLS front (certificate from `dir/leaf.pem`) proxies to it.
fn nginx(dir: &Path, port: u16) -> Proc {
    nginx_with_tls(dir, port, None)
}

fn nginx_with_tls(dir: &Path, port: u16, tls_port: Option<u16>) -> Proc {
    let nginx = require("nginx", "nginx");
    let module = Path::new("/usr/lib/nginx/modules/ngx_rtmp_module.so");
    assert!(module.is_file(), "libnginx-mod-rtmp is missing: install the Debian package libnginx-mod-rtmp (bash .ci/run does)");
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "load_module {};\n{}daemon off;\nmaster_process off;\nerror_log {}/nginx-error.log info;\npid {}/nginx.pid;\nevents {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record all; record_path {}; record_unique off; }} }} }}\n{}",
            module.display(),
            if tls_port.is_some() { "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n" } else { "" },
            dir.display(),
            dir.display(),
            dir.display(),
            tls_port.map_or(String::new(), |tls| format!(
                "stream {{ server {{ listen 127.0.0.1:{tls} ssl; ssl_certificate {d}/leaf.pem; ssl_certificate_key {d}/leaf.key; proxy_pass 127.0.0.1:{port}; }} }}\n",
                d = dir.display()
            )),
        ),
    )
    .expect("nginx.conf");
    Proc::spawn("nginx", dir, Command::new(nginx).arg("-p").arg(dir).arg("-c").arg(&conf))
}

fn state(daemon: &Daemon) -> String {
    daemon.output("program", "platform")["state"].as_str().unwrap_or("").to_string()
}

#[test]
fn destination_goes_live_on_nginx_stops_starts_and_rides_out_a_restart() {
    let (input, rtmp) = (free_udp_port(), free_tcp_port());
    let outputs = format!(
        "[[channels.outputs]]\nid = \"platform\"\ntype = \"rtmp\"\npreset = \"custom\"\nurl = \"rtmp://127.0.0.1:{rtmp}/live\"\nstream_key = \"lunora-test\"\nautostart = true\n"
    );
    let daemon = Daemon::start(&single_srt_channel("encoder", input, "", &outputs));
    let dir = daemon.dir.path().to_path_buf();
    let mut server = nginx(&dir, rtmp);
    let source = make_ts(&dir, "source.ts", 60, "320x180", "300k");
    let _encoder = ffmpeg_push(&dir, "encoder", &source, &format!("srt://127.0.0.1:{input}?latency=200000&pkt_size=1316"));
    assert!(wait_for(Duration::from_secs(20), || state(&daemon) == "live"), "never live: {}\n{}", daemon.output("program", "platform"), daemon.log());
    std::thread::sleep(Duration::from_secs(4));

    // Stop through the API: idle, and nginx has a recording ffprobe decodes.
    let (status, _) = http_post_json(daemon.http, "/api/v1/channels/program/outputs/platform/stop", "");
    assert_eq!(status, 202);
    assert!(wait_for(Duration::from_secs(5), || state(&daemon) == "idle"));
    std::thread::sleep(Duration::from_millis(500));
    let recording = dir.join("lunora-test.flv");
    let frames = decoded_video_frames(&recording);
    assert!(frames >= 50, "nginx recorded {frames} decodable frames");
    let decode = decode_warnings(&recording);
    assert!(decode.trim().is_empty(), "the TS → FLV path produced errors:\n{decode}");

    // Start again, then take nginx away and bring it back: retrying, then live again.
    assert_eq!(http_post_json(daemon.http, "/api/v1/channels/program/outputs/start-all", "").0, 202);
    assert!(wait_for(Duration::from_secs(10), || state(&daemon) == "live"));
    server.signal(Signal::SIGKILL);
    server.wait(Duration::from_secs(5));
    assert!(wait_for(Duration::from_secs(10), || state(&daemon) == "retrying"), "{}", daemon.output("program", "platform"));
    let error = daemon.output("program", "platform")["last_error"].as_str().unwrap_or("").to_string();
    assert!(!error.is_empty() && !error.contains("lunora-test"), "last error is reported without the key: {error:?}");
    let _server = nginx(&dir, rtmp);
    assert!(wait_for(Duration::from_secs(10), || state(&daemon) == "live"), "did not come back: {}", daemon.output("program", "platform"));
    assert!(as_u64(&daemon.output("program", "platform")["reconnects_total"]) >= 1);
    assert_eq!(http_post_json(daemon.http, "/api/v1/channels/program/outputs/encoder-out/stop", "").0, 404);
    assert!(!daemon.log().contains("lunora-test"), "the stream key must never be logged");
}

/// A test CA and a leaf certificate for 127.0.0.1 signed by it (rustls refuses a self-signed
/// certificate that is its own CA), made with the openssl command-line tool.
fn make_certificates(dir: &Path) {
    let openssl = require("openssl", "openssl");
    let step = |args: &[&str]| {
        let out = run("openssl", Command::new(&openssl).args(args).current_dir(dir), Duration::from_secs(60));
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    step(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Lunora Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
    step(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").expect("ext");
    step(&["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext"]);
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
    let daemon = Daemon::start_with_env(&single_srt_channel("encoder", input, "", &outputs), dir, &[("SSL_CERT_FILE", &ca)]);
    let dir = daemon.dir.path().to_path_buf();
    let _server = nginx_with_tls(&dir, rtmp, Some(tls));
    let source = make_ts(&dir, "source.ts", 30, "320x180", "300k");
    let _encoder = ffmpeg_push(&dir, "encoder", &source, &format!("srt://127.0.0.1:{input}?latency=200000&pkt_size=1316"));
    assert!(wait_for(Duration::from_secs(20), || state(&daemon) == "live"), "never live over TLS: {}\n{}", daemon.output("program", "platform"), daemon.log());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(http_post_json(daemon.http, "/api/v1/channels/program/outputs/stop-all", "").0, 202);
    assert!(wait_for(Duration::from_secs(5), || state(&daemon) == "idle"));
    std::thread::sleep(Duration::from_millis(500));
    let frames = decoded_video_frames(&dir.join("tls-key.flv"));
    assert!(frames >= 50, "nginx recorded {frames} frames through the TLS front");
}

#[test]
fn a_stalled_destination_drops_alone_while_the_others_lose_nothing() {
    let (input, rtmp_a, rtmp_b, srt_out) = (free_udp_port(), free_tcp_port(), free_tcp_port(), free_udp_port());
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
    let recording = dir.join("pull.ts");
    let mut reader = ffmpeg_record(&dir, "reader", &format!("srt://127.0.0.1:{srt_out}?latency=200000&timeout=4000000"), &recording);
    // A high bitrate fills the stalled server's socket buffers quickly.
    let source = make_ts(&dir, "source.ts", 20, "1280x720", "8M");
    let live = |id: &str| daemon.output("program", id)["state"] == "live";
    assert!(wait_for(Duration::from_secs(20), || live("stalled") && live("healthy")), "{}", daemon.log());
    let mut encoder = ffmpeg_push(&dir, "encoder", &source, &format!("srt://127.0.0.1:{input}?latency=200000&pkt_size=1316"));
    std::thread::sleep(Duration::from_secs(3));
    // The first server stops reading: it accepts TCP but never drains it.
    stalled.signal(Signal::SIGSTOP);
    encoder.wait(Duration::from_secs(40)).expect("encoder finishes");
    reader.wait(Duration::from_secs(20)).expect("reader ends after the stream");
    stalled.signal(Signal::SIGCONT);

    let dropped = |id: &str| as_u64(&daemon.output("program", id)["dropped_frames_total"]);
    // A destination blocked in a write notices what it missed once the write returns.
    assert!(
        wait_for(Duration::from_secs(15), || dropped("stalled") > 0),
        "the stalled destination must skip frames: {}",
        daemon.output("program", "stalled")
    );
    assert_eq!(dropped("healthy"), 0, "{}", daemon.output("program", "healthy"));
    assert_eq!(dropped("pull"), 0, "{}", daemon.output("program", "pull"));
    let input_frames = as_u64(&daemon.input("program", "encoder")["frames_total"]["video"]);
    let pulled = decoded_video_frames(&recording);
    assert!(pulled + 30 >= input_frames, "the SRT output lost frames: {pulled} of {input_frames}");
    assert_eq!(as_u64(&daemon.output("program", "healthy")["frames_total"]), as_u64(&daemon.output("program", "pull")["frames_total"]), "the healthy RTMP destination sent every frame the SRT output did");
}
