//! `/api/v1/channels/{id}/medialive` against moto_server (PyPI `moto[server]`, installed by
//! scripts/deps.sh into target/moto-venv) standing in for AWS: a superadmin provisions, runs
//! and tears down a channel's MediaLive side, boto3 (moto's own client) reads back what exists,
//! an admin sees the state and gets 403 on every change.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::access::{account, request};
use crate::common::*;

/// The moto venv's `name`: in the target directory of this build (`CARGO_TARGET_DIR` too), or
/// the repository's `target/`; else on the PATH.
fn venv_bin(name: &str) -> PathBuf {
    let venvs = [
        target_dir().join("moto-venv/bin"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/moto-venv/bin"),
    ];
    if let Some(venv) = venvs.iter().find(|v| v.join(name).is_file()) {
        venv.join(name)
    } else {
        require(
            name,
            "moto[server] (PyPI; scripts/test installs it into target/moto-venv)",
        )
    }
}

struct Moto {
    _process: Proc,
    url: String,
    /// Python's http.server answering `/ip` with 203.0.113.7, standing in for
    /// checkip.amazonaws.com (`[aws] public_address_url`).
    _checkip: Proc,
    checkip_url: String,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// moto_server, with push inputs given the ingest address `ingest` (`HOST:PORT`) as AWS
    /// would give its own, and the MediaPackage v2 channel route the SDK uses (see
    /// `moto_with_ingest.py`).
    fn start(ingest: &str) -> Moto {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_tcp_port();
        let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("it/moto_with_ingest.py");
        let process = Proc::spawn(
            "moto_server",
            dir.path(),
            Command::new(venv_bin("python")).arg(launcher).args([
                ingest,
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ]),
        );
        let up = wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "moto_server did not listen on {port}");
        let answers = dir.path().join("checkip");
        std::fs::create_dir_all(&answers).expect("checkip dir");
        std::fs::write(answers.join("ip"), "203.0.113.7\n").expect("checkip answer");
        let checkip_port = free_tcp_port();
        let checkip = Proc::spawn(
            "checkip",
            dir.path(),
            Command::new(venv_bin("python"))
                .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
                .arg(&answers)
                .arg(checkip_port.to_string()),
        );
        let up = wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", checkip_port)).is_ok()
        });
        assert!(up, "http.server did not listen on {checkip_port}");
        Moto {
            _process: process,
            url: format!("http://127.0.0.1:{port}"),
            _checkip: checkip,
            checkip_url: format!("http://127.0.0.1:{checkip_port}/ip"),
            _dir: dir,
        }
    }

    /// Runs `body` in the moto venv's Python with `kw` (the SDK arguments for this server)
    /// defined; returns what it printed.
    fn boto3(&self, body: &str) -> String {
        let script = format!(
            "import boto3, json\nkw = dict(endpoint_url=\"{}\", region_name=\"us-east-1\", aws_access_key_id=\"testing\", aws_secret_access_key=\"testing\")\n{body}",
            self.url
        );
        let out = run(
            "python",
            Command::new(venv_bin("python")).args(["-c", &script]),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The value of Secrets Manager secret `name`.
    fn secret(&self, name: &str) -> String {
        self.boto3(&format!(
            "print(boto3.client(\"secretsmanager\", **kw).get_secret_value(SecretId=\"{name}\")[\"SecretString\"])"
        ))
    }

    /// What moto holds that is tagged for `channel` on box `it-box` and not deleted: inputs as
    /// [type, role], channels as [id, state, attachment names], secret names.
    fn tagged(&self, channel: &str) -> Value {
        let printed = self.boto3(&format!(
            r#"
ml = boto3.client("medialive", **kw)
ours = lambda t: (t or {{}}).get("lunora:box") == "it-box" and (t or {{}}).get("lunora:channel") == "{channel}"
inputs = [[i["Type"], i["Tags"].get("lunora:input")] for i in ml.list_inputs()["Inputs"] if ours(i.get("Tags")) and i.get("State") not in ("DELETING", "DELETED")]
channels = []
for c in ml.list_channels()["Channels"]:
    if ours(c.get("Tags")) and c.get("State") not in ("DELETING", "DELETED"):
        d = ml.describe_channel(ChannelId=c["Id"])
        channels.append([c["Id"], d["State"], [a["InputAttachmentName"] for a in d["InputAttachments"]]])
sm = boto3.client("secretsmanager", **kw)
secrets = [s["Name"] for s in sm.list_secrets()["SecretList"] if ours({{t["Key"]: t["Value"] for t in s.get("Tags", [])}})]
print(json.dumps({{"inputs": inputs, "channels": channels, "secrets": secrets}}))
"#
        ));
        serde_json::from_str(&printed).unwrap_or_else(|e| panic!("boto3 printed {printed:?}: {e}"))
    }
}

fn config(moto: &Moto, channels: &str) -> String {
    format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nbox_id = \"it-box\"\n\
         # moto_server models neither input security groups nor origin endpoints.\n\
         input_security_groups = false\norigin_endpoints = false\npublic_address_url = \"{}\"\n\n{channels}",
        moto.url, moto.checkip_url
    )
}

/// Test credentials and nothing else from the machine's AWS setup.
const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_MAX_ATTEMPTS", "1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
];

fn aws_env() -> Vec<(&'static str, &'static Path)> {
    AWS_ENV.iter().map(|(k, v)| (*k, Path::new(*v))).collect()
}

/// lunora with `[aws]` on `moto` and the test credentials, running `rest` (more `[aws]` keys,
/// then channels).
fn daemon_on(moto: &Moto, rest: &str) -> Daemon {
    Daemon::start_with_env(
        &config(moto, rest),
        tempfile::tempdir().expect("temp dir"),
        &aws_env(),
    )
}

/// [`daemon_on`] with channel `program`: one SRT input `encoder` that ffmpeg feeds for four
/// minutes (the encoder is the second value; it stops when dropped).
fn fed_daemon(moto: &Moto, aws_keys: &str, dir: &Path) -> (Daemon, Proc) {
    let srt_port = free_udp_port();
    let channels = single_srt_channel("encoder", srt_port, "", "");
    let daemon = daemon_on(moto, &format!("{aws_keys}\n{channels}"));
    let stream = make_ts(dir, "feed.ts", 240, "320x240", "300k");
    let encoder = srt_push(dir, "encoder", &stream, srt_port);
    (daemon, encoder)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn a_superadmin_provisions_runs_and_tears_down_medialive_and_an_admin_only_reads() {
    // Nothing listens at the ingest address: the box's feed retries, which is all this test
    // needs of it.
    let moto = Moto::start(&format!("127.0.0.1:{}", free_tcp_port()));
    let channels = main_backup_channel(free_udp_port(), free_udp_port(), "", "");
    let daemon = daemon_on(&moto, &channels);
    let path = "/api/v1/channels/program/medialive";
    let (_, admin) = account(&daemon, "ops", "admin");
    let as_admin = format!("Authorization: Bearer {admin}\r\n");
    let admin_call = |method: &str, path: &str, body: &str| {
        request(daemon.http, method, path, &as_admin, "", body)
    };

    // Nothing yet: both roles read that, the admin changes nothing.
    let (status, body) = admin_call("GET", path, "");
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("nothing is provisioned in AWS for channel"),
        "{body}"
    );
    for (method, p, body) in [
        ("PUT", path.to_string(), r#"{"mode":"edge"}"#),
        ("DELETE", path.to_string(), ""),
        ("POST", format!("{path}/start"), ""),
        ("POST", format!("{path}/stop"), ""),
    ] {
        let (status, answer) = admin_call(method, &p, body);
        assert_eq!(status, 403, "{method} {p} as admin: {answer}");
    }
    assert_eq!(moto.tagged("program")["inputs"], serde_json::json!([]));

    // Refused before AWS, naming the field.
    let (status, body) = http_send(
        daemon.http,
        "PUT",
        path,
        r#"{"mode":"cloud","input_loss_threshold_ms":50}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        json(&body)["error"],
        "input_loss_threshold_ms must be at least 100 (MediaLive's minimum); it is 50"
    );
    let (status, body) = http_send(
        daemon.http,
        "PUT",
        "/api/v1/channels/nochannel/medialive",
        r#"{"mode":"edge"}"#,
    );
    assert_eq!(status, 404, "{body}");

    // Provision, twice: one input, one channel.
    let (status, body) = http_send(daemon.http, "PUT", path, r#"{"mode":"edge"}"#);
    assert_eq!(status, 200, "{body}");
    let first = json(&body);
    assert_eq!(first["inputs"][0]["input_type"], "RTMP_PUSH");
    assert_eq!(first["channel_group"], "lunora-it-box-program");
    // No origin endpoint against moto (origin_endpoints = false), so no playback URL.
    assert_eq!(first["playback_url"], Value::Null);
    let channel_id = first["channel_id"]
        .as_str()
        .expect("a channel id")
        .to_string();
    let (status, body) = http_send(daemon.http, "PUT", path, r#"{"mode":"edge"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["channel_id"], channel_id.as_str());
    let tagged = moto.tagged("program");
    assert_eq!(tagged["inputs"], serde_json::json!([["RTMP_PUSH", "main"]]));
    assert_eq!(tagged["channels"].as_array().map(Vec::len), Some(1));
    assert_eq!(tagged["channels"][0][0], channel_id.as_str());
    assert_eq!(tagged["channels"][0][2], serde_json::json!(["main"]));

    // The admin reads the state.
    let (status, body) = admin_call("GET", path, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["channel_id"], channel_id.as_str());

    // Start → RUNNING, stop → IDLE.
    let (status, body) = http_send(daemon.http, "POST", &format!("{path}/start"), "");
    assert_eq!(status, 200, "{body}");
    let running = wait_for(Duration::from_secs(10), || {
        json(&daemon.get(path).1)["state"] == "RUNNING"
    });
    assert!(running, "{}", daemon.get(path).1);
    let (status, body) = http_send(daemon.http, "POST", &format!("{path}/stop"), "");
    assert_eq!(status, 200, "{body}");
    let idle = wait_for(Duration::from_secs(10), || {
        json(&daemon.get(path).1)["state"] == "IDLE"
    });
    assert!(idle, "{}", daemon.get(path).1);

    // Teardown (from RUNNING: it stops first) leaves nothing tagged.
    let (status, body) = http_send(daemon.http, "POST", &format!("{path}/start"), "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_send(daemon.http, "DELETE", path, "");
    assert_eq!(status, 204, "{body}");
    let nothing = serde_json::json!({"inputs": [], "channels": [], "secrets": []});
    assert_eq!(moto.tagged("program"), nothing);
    assert_eq!(daemon.get(path).0, 404);
    let (status, body) = http_send(daemon.http, "POST", &format!("{path}/start"), "");
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("no MediaLive channel is provisioned for channel"),
        "{body}"
    );

    // SRT: the box makes the passphrase and keeps it in a tagged secret; the API never shows
    // it. Provisioning again keeps the one secret; teardown deletes it with the inputs.
    let srt = r#"{"mode":"cloud","input_type":"srt_listener","srt_latency_ms":1500}"#;
    let (status, body) = http_send(daemon.http, "PUT", path, srt);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("passphrase"), "{body}");
    let (status, again) = http_send(daemon.http, "PUT", path, srt);
    assert_eq!(status, 200, "{again}");
    assert_eq!(json(&again)["inputs"], json(&body)["inputs"]);
    // Each encoder's stream goes, as received, to its own input of the failover pair.
    for role in ["main", "backup"] {
        let feed = daemon.output("program", &format!("medialive-{role}"));
        assert_eq!(feed["type"], "srt", "{feed}");
        assert_eq!(feed["config"]["mode"], "caller", "{feed}");
        assert_eq!(feed["config"]["source"], role, "{feed}");
        assert_eq!(feed["config"]["latency_ms"], 1500, "{feed}");
        assert_eq!(feed["config"]["passphrase_set"], true, "{feed}");
        assert_eq!(
            feed["config"]["pbkeylen"], 32,
            "MediaLive decrypts with AES-256: {feed}"
        );
    }
    let tagged = moto.tagged("program");
    assert_eq!(
        tagged["inputs"],
        serde_json::json!([["SRT_LISTENER", "main"], ["SRT_LISTENER", "backup"]])
    );
    assert_eq!(
        tagged["secrets"],
        serde_json::json!(["lunora/it-box/program/srt-passphrase"])
    );
    let (status, body) = http_send(daemon.http, "DELETE", path, "");
    assert_eq!(status, 204, "{body}");
    assert_eq!(moto.tagged("program"), nothing);
}

/// The box feeds what it provisioned (its `medialive` output publishes into the MediaLive
/// input's address, here nginx-rtmp), shows since when the MediaLive channel runs across a
/// restart, and stops it once nothing from the box has reached it for `stop_after_idle_min`.
#[test]
fn the_box_feeds_its_medialive_input_and_stops_the_channel_when_idle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ingest_port = free_tcp_port();
    let mut nginx = crate::rtmp_output::nginx(dir.path(), ingest_port);
    let moto = Moto::start(&format!("127.0.0.1:{ingest_port}"));
    let (daemon, _encoder) = fed_daemon(&moto, "poll_interval_s = 1\n", dir.path());
    let path = "/api/v1/channels/program/medialive";

    // A single-input channel has no pair for MediaLive's failover: refused before AWS.
    let (status, body) = http_send(daemon.http, "PUT", path, r#"{"mode":"cloud"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("has no backup input"), "{body}");
    assert_eq!(moto.tagged("program")["channels"], serde_json::json!([]));

    let (status, body) = http_send(
        daemon.http,
        "PUT",
        path,
        r#"{"mode":"edge","stop_after_idle_min":1}"#,
    );
    assert_eq!(status, 200, "{body}");
    let provisioned = json(&body);
    assert_eq!(
        provisioned["inputs"][0]["urls"][0],
        format!("rtmp://127.0.0.1:{ingest_port}/program/main").as_str()
    );
    assert_eq!(provisioned["setup"]["stop_after_idle_min"], 1);
    // No allowed_cidrs given: the box's public address, as the address service sees it.
    assert_eq!(
        provisioned["setup"]["allowed_cidrs"],
        serde_json::json!(["203.0.113.7/32"])
    );

    // The feed is an output of the channel, publishing `main` into the `program` application.
    let live = wait_for(Duration::from_secs(20), || {
        daemon.output("program", "medialive")["state"] == "live"
    });
    assert!(live, "{}", daemon.output("program", "medialive"));
    let feed = daemon.output("program", "medialive");
    assert_eq!(feed["type"], "rtmp", "{feed}");
    assert_eq!(
        feed["destination"]["url"],
        format!("rtmp://127.0.0.1:{ingest_port}/program").as_str(),
        "{feed}"
    );
    let fed = wait_for(Duration::from_secs(10), || {
        json(&daemon.get(path).1)["feed_live"] == true
    });
    assert!(fed, "{}", daemon.get(path).1);
    let recording = dir.path().join("main.flv");
    let recorded = wait_for(Duration::from_secs(20), || {
        decoded_video_frames(&recording) >= 50
    });
    assert!(
        recorded,
        "nginx did not record 2 s of the feed in {}",
        recording.display()
    );

    // Running: since when, shown by the API and /metrics, kept across a restart.
    let (status, body) = http_send(daemon.http, "POST", &format!("{path}/start"), "");
    assert_eq!(status, 200, "{body}");
    let running = wait_for(Duration::from_secs(15), || {
        json(&daemon.get(path).1)["running_since"].is_string()
    });
    assert!(running, "{}", daemon.get(path).1);
    let view = json(&daemon.get(path).1);
    assert_eq!(view["state"], "RUNNING", "{view}");
    let since = view["running_since"].clone();
    let metrics = daemon.get("/metrics").1;
    for series in [
        "lunora_medialive_channel_state{channel=\"program\",state=\"RUNNING\"} 1",
        "lunora_medialive_channel_state{channel=\"program\",state=\"IDLE\"} 0",
        "lunora_medialive_feed_live{channel=\"program\"} 1",
        "lunora_medialive_poll_errors_total{channel=\"program\"} 0",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
    crate::metrics::assert_promtool_accepts(&metrics);
    let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for file in ["prometheus/alerts.yml", "grafana/lunora.json"] {
        let text = std::fs::read_to_string(config_dir.join(file)).expect(file);
        for name in crate::metrics::metric_names(&text) {
            assert!(
                crate::metrics::exports(&metrics, name),
                "{file} names {name}, which /metrics does not export with MediaLive provisioned"
            );
        }
    }
    let daemon = daemon.restart_with_env(Signal::SIGTERM, &aws_env());
    let view = json(&daemon.get(path).1);
    assert_eq!(view["running_since"], since, "{view}");
    assert!(as_u64(&view["running_for_seconds"]) < 600, "{view}");

    // The MediaLive input's server goes away: the feed retries, the channel idles, and a
    // minute later the box stops it, saying so in the audit log.
    nginx.signal(Signal::SIGKILL);
    let _ = nginx.wait(Duration::from_secs(5));
    let unfed = wait_for(Duration::from_secs(30), || {
        json(&daemon.get(path).1)["feed_live"] == false
    });
    assert!(unfed, "{}", daemon.get(path).1);
    let stopped = wait_for(Duration::from_secs(150), || {
        let view = json(&daemon.get(path).1);
        view["state"] == "IDLE" && view["running_since"].is_null()
    });
    assert!(stopped, "{}", daemon.get(path).1);
    let audit = daemon.json("/api/v1/audit");
    let entries = audit.as_array().expect("the audit log is a list");
    let idle_stop = entries
        .iter()
        .find(|e| e["action"] == "medialive.stop_idle")
        .unwrap_or_else(|| panic!("no medialive.stop_idle in {audit}"));
    assert_eq!(idle_stop["target"], "program");
    assert!(
        as_u64(&idle_stop["details"]["idle_seconds"]) >= 60,
        "{idle_stop}"
    );
    assert!(
        entries.iter().any(|e| e["action"] == "medialive.provision"),
        "{audit}"
    );

    // Teardown takes the feed output with it.
    let (status, body) = http_send(daemon.http, "DELETE", path, "");
    assert_eq!(status, 204, "{body}");
    let outputs = daemon.json("/api/v1/channels/program")["outputs"].clone();
    assert_eq!(outputs, serde_json::json!([]), "{outputs}");
}

/// The SRT feed: MediaLive's SRT listener input is played by srt-live-transmit listening with
/// the passphrase the box made and keeps in Secrets Manager (read back with boto3); what it
/// receives decodes cleanly, and the passphrase shows up in no answer and no log line.
#[test]
fn the_box_calls_an_srt_listener_input_with_the_secret_passphrase_and_it_decodes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ingest_port = free_udp_port();
    let moto = Moto::start(&format!("127.0.0.1:{ingest_port}"));
    let (daemon, mut encoder) = fed_daemon(&moto, "", dir.path());
    let path = "/api/v1/channels/program/medialive";
    let (status, body) = http_send(
        daemon.http,
        "PUT",
        path,
        r#"{"mode":"edge","input_type":"srt_listener","srt_latency_ms":500}"#,
    );
    assert_eq!(status, 200, "{body}");
    let feed = daemon.output("program", "medialive");
    assert_eq!(feed["config"]["mode"], "caller", "{feed}");
    assert_eq!(
        feed["config"]["address"],
        format!("127.0.0.1:{ingest_port}").as_str(),
        "{feed}"
    );

    let passphrase = moto.secret("lunora/it-box/program/srt-passphrase");
    assert_eq!(passphrase.chars().count(), 32);
    let recording = dir.path().join("medialive.ts");
    let mut listener = slt_record(
        dir.path(),
        "medialive-input",
        &format!(
            "srt://127.0.0.1:{ingest_port}?mode=listener&latency=500&passphrase={passphrase}&pbkeylen=32"
        ),
        &recording,
    );
    // A few seconds of the feed; ffprobe reads the file once srt-live-transmit has ended.
    let live = wait_for(Duration::from_secs(60), || {
        daemon.output("program", "medialive")["state"] == "live"
            && std::fs::metadata(&recording).is_ok_and(|m| m.len() >= 150_000)
    });
    assert!(live, "{}", daemon.output("program", "medialive"));
    let answers_while_fed = [
        ("GET medialive", daemon.get(path).1),
        ("the channel", daemon.get("/api/v1/channels/program").1),
    ];
    // The encoder stops first: the box sends whole frames only, so the feed ends between two
    // of them. Removing the output (or signalling the recorder) can cut the file inside one.
    encoder.signal(Signal::SIGKILL);
    let _ = encoder.wait(Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    listener.signal(Signal::SIGINT);
    let _ = listener.wait(Duration::from_secs(10));
    let frames = decoded_video_frames(&recording);
    assert!(frames >= 50, "{frames} frames decoded from the feed");
    let continuity = ts_continuity(&recording);
    assert!(
        continuity.sync_errors == 0 && continuity.cc_errors == 0,
        "{continuity:?}"
    );
    let warnings = decode_warnings(&recording);
    assert!(
        warnings.trim().is_empty(),
        "the feed does not decode cleanly:\n{warnings}"
    );

    let afterwards = [
        ("the audit log", daemon.get("/api/v1/audit").1),
        ("the log", daemon.log()),
    ];
    for (what, text) in answers_while_fed.into_iter().chain(afterwards) {
        assert!(!text.contains(&passphrase), "the passphrase is in {what}");
    }
    let (status, body) = http_send(daemon.http, "DELETE", path, "");
    assert_eq!(status, 204, "{body}");
}

#[test]
fn without_an_aws_section_the_routes_say_so() {
    let daemon = Daemon::start(&single_srt_channel("encoder", free_udp_port(), "", ""));
    let (status, body) = http_send(
        daemon.http,
        "PUT",
        "/api/v1/channels/program/medialive",
        r#"{"mode":"edge"}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("add an [aws] section"), "{body}");
}

/// The dashboard's Cloud page in chromium (web/tests/dashboard.test.mjs, scenario `cloud`):
/// provision from the form, start, see it run and fed, watch the cloud preview, tear down.
#[test]
fn the_cloud_page_provisions_starts_previews_and_tears_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ingest_port = free_tcp_port();
    let _nginx = crate::rtmp_output::nginx(dir.path(), ingest_port);
    let moto = Moto::start(&format!("127.0.0.1:{ingest_port}"));
    let (daemon, _encoder) = fed_daemon(&moto, "poll_interval_s = 1\n", dir.path());
    let (passed, report) = crate::ui::browser_test(
        &format!("http://127.0.0.1:{}", daemon.http),
        "cloud-final.png",
        &[
            ("SCENARIO", "cloud".into()),
            ("LUNORA_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        ],
    );
    assert!(passed, "{report}\nlunora log:\n{}", daemon.log());
    assert_eq!(
        moto.tagged("program"),
        serde_json::json!({"inputs": [], "channels": [], "secrets": []})
    );
}

/// A file input plays an S3 object (moto's S3 here): fetched into the state directory once,
/// not again while it is unchanged, again when it changes; a missing object is the input's
/// error.
#[test]
fn a_file_input_plays_an_s3_object_and_fetches_it_again_only_when_it_changes() {
    let moto = Moto::start("127.0.0.1:9");
    let work = tempfile::tempdir().unwrap();
    let first = make_ts(work.path(), "first.ts", 4, "320x240", "300k");
    let second = make_ts(work.path(), "second.ts", 4, "320x180", "300k");
    let upload = |file: &Path| {
        moto.boto3(&format!(
            "s3 = boto3.client('s3', **kw)\nif not s3.list_buckets()['Buckets']: s3.create_bucket(Bucket='media')\ns3.upload_file('{}', 'media', 'loops/clip.ts')",
            file.display()
        ))
    };
    upload(&first);
    let output = free_udp_port();
    let channels = format!(
        "[[channels]]\nid = \"program\"\nmode = \"main-backup\"\n\n\
         [[channels.inputs]]\nid = \"clip\"\ntype = \"file\"\nurl = \"s3://media/loops/clip.ts\"\nloop = true\n\n\
         [[channels.inputs]]\nid = \"gone\"\nrole = \"backup\"\ntype = \"file\"\nurl = \"s3://media/missing.ts\"\nloop = true\n\n{}",
        srt_listener_output("out", output)
    );
    let daemon = daemon_on(&moto, &channels);
    let playing = |daemon: &Daemon, width: u64| {
        wait_for(Duration::from_secs(20), || {
            let input = daemon.input("program", "clip");
            input["state"] == "connected" && input["video"]["width"] == width
        })
    };
    assert!(playing(&daemon, 320), "{}", daemon.input("program", "clip"));
    let recording = work.path().join("out.ts");
    let mut reader = slt_record(
        work.path(),
        "reader",
        &format!("srt://127.0.0.1:{output}?latency=200"),
        &recording,
    );
    std::thread::sleep(Duration::from_secs(5));
    reader.signal(Signal::SIGTERM);
    reader.wait(Duration::from_secs(10)).expect("reader stops");
    let frames = decoded_video_frames(&recording);
    assert!(
        frames >= 75,
        "{frames} frames decoded from the S3 file in ~5 s"
    );
    assert!(
        wait_for(Duration::from_secs(10), || daemon.input("program", "gone")
            ["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("s3://media/missing.ts"))),
        "{}",
        daemon.input("program", "gone")
    );
    let fetches = |daemon: &Daemon| daemon.log().matches("fetching the file from S3").count();
    assert_eq!(fetches(&daemon), 1, "{}", daemon.log());

    // Unchanged: played from the cache.
    let daemon = daemon.restart_with_env(Signal::SIGTERM, &aws_env());
    assert!(playing(&daemon, 320), "{}", daemon.input("program", "clip"));
    assert_eq!(fetches(&daemon), 0, "{}", daemon.log());

    // Changed: fetched again.
    upload(&second);
    let daemon = daemon.restart_with_env(Signal::SIGTERM, &aws_env());
    assert!(
        wait_for(Duration::from_secs(20), || daemon.input("program", "clip")
            ["video"]["height"]
            == 180),
        "{}",
        daemon.input("program", "clip")
    );
    assert_eq!(fetches(&daemon), 1, "{}", daemon.log());
    let cached: Vec<_> = std::fs::read_dir(daemon.dir.path().join("state/media"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(cached.len(), 2, "one copy and its ETag: {cached:?}");
}
