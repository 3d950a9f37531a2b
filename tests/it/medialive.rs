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

/// moto 5.2.5 routes a MediaPackage v2 channel only with the trailing slash of the API model it
/// was built from; the Rust SDK sends the current model's path without it, which moto answered
/// with 400. The server is started with that route added.
const MOTO_SERVER: &str = r#"
import sys
import moto.mediapackagev2.urls as urls
urls.url_paths["{0}/channelGroup/(?P<ChannelGroupName>[^/]+)/channel/(?P<ChannelName>[^/]+)$"] = urls.mediapackagev2Response.dispatch
from moto.server import main
main(sys.argv[1:])
"#;

struct Moto {
    _process: Proc,
    url: String,
    _dir: tempfile::TempDir,
}

impl Moto {
    fn start() -> Moto {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_tcp_port();
        let process = Proc::spawn(
            "moto_server",
            dir.path(),
            Command::new(venv_bin("python")).args([
                "-c",
                MOTO_SERVER,
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
        Moto {
            _process: process,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// What moto holds that is tagged for `channel` on box `it-box` and not deleted, read with
    /// boto3: (inputs as [type, role], channels as [id, state, attachment names], secret
    /// names).
    fn tagged(&self, channel: &str) -> Value {
        let script = format!(
            r#"
import boto3, json
kw = dict(endpoint_url="{url}", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
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
"#,
            url = self.url
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
        serde_json::from_slice(&out.stdout).expect("boto3 printed JSON")
    }
}

fn config(moto: &Moto, channels: &str) -> String {
    format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nbox_id = \"it-box\"\n\
         # moto_server models neither input security groups nor origin endpoints.\n\
         input_security_groups = false\norigin_endpoints = false\n\n{channels}",
        moto.url
    )
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn a_superadmin_provisions_runs_and_tears_down_medialive_and_an_admin_only_reads() {
    let moto = Moto::start();
    let channels = single_srt_channel("encoder", free_udp_port(), "", "");
    let testing = Path::new("testing");
    let nowhere = Path::new("/nonexistent");
    let daemon = Daemon::start_with_env(
        &config(&moto, &channels),
        tempfile::tempdir().expect("temp dir"),
        &[
            ("AWS_ACCESS_KEY_ID", testing),
            ("AWS_SECRET_ACCESS_KEY", testing),
            ("AWS_MAX_ATTEMPTS", Path::new("1")),
            ("AWS_EC2_METADATA_DISABLED", Path::new("true")),
            ("AWS_CONFIG_FILE", nowhere),
            ("AWS_SHARED_CREDENTIALS_FILE", nowhere),
        ],
    );
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
