//! Provisioning against moto_server (PyPI `moto[server]`, installed by scripts/deps.sh into
//! target/moto-venv), read back with the SDK. moto does not model input security groups nor
//! origin endpoints (so they are off here; their requests are tested in
//! src/provision/replay.rs) nor MediaPackage v2 tags; see "Deploying with AWS" in the README.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_medialive::config::Credentials;
use aws_sdk_medialive::types as ml;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use lunora_medialive::provision::{TAG_BOX, TAG_CHANNEL, TAG_INPUT};
use lunora_medialive::{
    Clients, InputPreference, MediaLiveSetup, Mode, Options, ProvisionError, Provisioner, Target,
};

/// One moto_server on a loopback port, stopped on drop.
struct Moto {
    child: Child,
    url: String,
}

fn moto_server() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/moto-venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("moto_server"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "moto_server is missing: run scripts/test (or `. scripts/deps.sh; need_moto`), \
             which installs PyPI moto[server] into target/moto-venv"
        )
    })
}

/// moto 5.2.5 routes a MediaPackage v2 channel only with the trailing slash of the API model it
/// was built from (`/channelGroup/{group}/channel/{channel}/`, as boto3 sends it); the Rust SDK
/// sends the current model's path without it, which moto answers with 400. This client adds
/// the slash on the way out, so the tests see moto's channels and nothing else changes.
#[derive(Debug)]
struct SlashForMoto(SharedHttpClient);

impl HttpClient for SlashForMoto {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(SlashConnector(self.0.http_connector(settings, components)))
    }
}

#[derive(Debug)]
struct SlashConnector(SharedHttpConnector);

impl HttpConnector for SlashConnector {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        let uri: http::Uri = request.uri().parse().expect("the SDK's URI");
        let parts: Vec<_> = uri.path().split('/').collect();
        if let ["", "channelGroup", _, "channel", _] = parts.as_slice() {
            let fixed = format!("{}/", request.uri());
            request.set_uri(fixed.as_str()).expect("a URI");
        }
        self.0.call(request)
    }
}

impl Moto {
    async fn config(&self) -> aws_config::SdkConfig {
        // moto_server speaks plain HTTP.
        let client = aws_smithy_http_client::Builder::new().build_http();
        aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .http_client(SlashForMoto(client))
            .load()
            .await
    }

    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn clients(&self) -> Clients {
        Clients::from_sdk_config(&self.config().await, None)
    }

    async fn sdk(&self) -> (aws_sdk_medialive::Client, aws_sdk_mediapackagev2::Client) {
        let config = self.config().await;
        (
            aws_sdk_medialive::Client::new(&config),
            aws_sdk_mediapackagev2::Client::new(&config),
        )
    }

    async fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.config().await)
    }

    async fn provisioner(&self) -> Provisioner {
        Provisioner::new(
            self.clients().await,
            Options {
                input_security_groups: false,
                origin_endpoints: false,
                poll: Duration::from_millis(100),
                wait: Duration::from_secs(10),
            },
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tagged(tags: Option<&HashMap<String, String>>, target: &Target) -> bool {
    tags.is_some_and(|t| {
        t.get(TAG_BOX).map(String::as_str) == Some(target.box_id())
            && t.get(TAG_CHANNEL).map(String::as_str) == Some(target.channel())
    })
}

/// Inputs tagged for `target` that still exist (moto keeps deleted ones listed as DELETING).
async fn live_inputs(client: &aws_sdk_medialive::Client, target: &Target) -> Vec<ml::Input> {
    let listed = client.list_inputs().send().await.expect("ListInputs");
    let gone = |i: &&ml::Input| {
        matches!(
            i.state(),
            Some(ml::InputState::Deleting | ml::InputState::Deleted)
        )
    };
    still_there(listed.inputs(), |i| i.tags(), gone, target)
}

async fn live_channels(client: &aws_sdk_medialive::Client, target: &Target) -> Vec<String> {
    let listed = client.list_channels().send().await.expect("ListChannels");
    let gone = |c: &&ml::ChannelSummary| {
        matches!(
            c.state(),
            Some(ml::ChannelState::Deleting | ml::ChannelState::Deleted)
        )
    };
    still_there(listed.channels(), |c| c.tags(), gone, target)
        .iter()
        .filter_map(|c| c.id().map(str::to_string))
        .collect()
}

/// The listed resources tagged for `target` that are not on their way out.
fn still_there<T: Clone>(
    listed: &[T],
    tags: impl Fn(&T) -> Option<&HashMap<String, String>>,
    gone: impl Fn(&&T) -> bool,
    target: &Target,
) -> Vec<T> {
    listed
        .iter()
        .filter(|item| tagged(tags(item), target))
        .filter(|item| !gone(item))
        .cloned()
        .collect()
}

async fn wait_for(provisioner: &Provisioner, target: &Target, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = provisioner
            .state(target)
            .await
            .expect("state")
            .and_then(|p| p.state);
        if state.as_deref() == Some(wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "channel is {state:?}, not {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn edge_rtmp_push_is_provisioned_once_run_and_torn_down() {
    let moto = Moto::start();
    let (medialive, mediapackage) = moto.sdk().await;
    let provisioner = moto.provisioner().await;
    let target = Target::new("studio-1", "program").expect("valid ids");
    let setup: MediaLiveSetup = serde_json::from_str(r#"{"mode": "edge"}"#).expect("setup");

    let first = provisioner
        .provision(&setup, &target)
        .await
        .expect("provision");
    assert_eq!(first.channel_group, "lunora-studio-1-program");
    assert_eq!(first.mediapackage_channel, "program");
    assert_eq!(first.inputs.len(), 1);
    assert_eq!(first.inputs[0].role, "main");
    assert_eq!(first.inputs[0].input_type, "RTMP_PUSH");
    let channel_id = first.channel_id.clone().expect("a channel id");

    // Read back with the SDK: the input, the channel, its attachment, destination and tags.
    let inputs = live_inputs(&medialive, &target).await;
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].r#type(), Some(&ml::InputType::RtmpPush));
    assert_eq!(inputs[0].name(), Some("lunora-studio-1-program-main"));
    assert_eq!(
        inputs[0]
            .tags()
            .and_then(|t| t.get(TAG_INPUT))
            .map(String::as_str),
        Some("main")
    );
    let channel = medialive
        .describe_channel()
        .channel_id(&channel_id)
        .send()
        .await
        .expect("DescribeChannel");
    assert_eq!(channel.name(), Some("lunora-studio-1-program"));
    assert!(tagged(channel.tags(), &target), "{:?}", channel.tags());
    let attachments: Vec<_> = channel
        .input_attachments()
        .iter()
        .map(|a| (a.input_attachment_name(), a.input_id()))
        .collect();
    assert_eq!(attachments, [(Some("main"), inputs[0].id())]);
    assert!(
        channel.input_attachments()[0]
            .automatic_input_failover_settings()
            .is_none()
    );
    let destination = &channel.destinations()[0];
    assert_eq!(destination.id(), Some("mediapackage"));
    let package = &destination.media_package_settings()[0];
    assert_eq!(package.channel_group(), Some("lunora-studio-1-program"));
    assert_eq!(package.channel_name(), Some("program"));
    let encoder = channel.encoder_settings().expect("encoder settings");
    let ladder: Vec<_> = encoder
        .video_descriptions()
        .iter()
        .map(|v| (v.width(), v.height()))
        .collect();
    assert_eq!(
        ladder,
        [
            (Some(1920), Some(1080)),
            (Some(1280), Some(720)),
            (Some(854), Some(480))
        ]
    );
    let mp_channel = mediapackage
        .get_channel()
        .channel_group_name("lunora-studio-1-program")
        .channel_name("program")
        .send()
        .await
        .expect("the MediaPackage channel exists");
    assert_eq!(mp_channel.channel_name(), "program");

    // moto keeps an RTMP destination's stream name but assigns no address: the feed says
    // what is missing instead of handing the box an empty URL.
    let no_address = provisioner.feeds(&target).await.expect_err("no address");
    assert_eq!(
        no_address.to_string(),
        format!(
            "AWS ListInputs: the main MediaLive input {} has no address for pipeline 0 yet: \
             read the feeds again once AWS has assigned it",
            first.inputs[0].id
        )
    );

    // Again: everything adopted, nothing duplicated.
    let second = provisioner.provision(&setup, &target).await.expect("again");
    assert_eq!(second.channel_id, first.channel_id);
    assert_eq!(second.inputs, first.inputs);
    assert_eq!(live_inputs(&medialive, &target).await.len(), 1);
    assert_eq!(
        live_channels(&medialive, &target).await,
        [channel_id.as_str()]
    );
    let groups = mediapackage
        .list_channel_groups()
        .send()
        .await
        .expect("ListChannelGroups");
    assert_eq!(groups.items().len(), 1);

    // Start, stop. A running channel is adopted as it is; changing its inputs waits for a stop.
    provisioner.start(&target).await.expect("start");
    wait_for(&provisioner, &target, "RUNNING").await;
    let adopted = provisioner
        .provision(&setup, &target)
        .await
        .expect("same setup while running");
    assert_eq!(adopted.channel_id, first.channel_id);
    let busy = provisioner
        .provision(&MediaLiveSetup::new(Mode::Cloud), &target)
        .await
        .expect_err("cloud while running");
    assert_eq!(
        busy.to_string(),
        format!(
            "the MediaLive channel {channel_id} is RUNNING: stop it (POST …/medialive/stop) \
             before changing its inputs"
        )
    );
    assert_eq!(live_inputs(&medialive, &target).await.len(), 1);
    provisioner.stop(&target).await.expect("stop");
    wait_for(&provisioner, &target, "IDLE").await;

    // Teardown from RUNNING stops first, then leaves nothing tagged behind.
    provisioner.start(&target).await.expect("start again");
    wait_for(&provisioner, &target, "RUNNING").await;
    provisioner.teardown(&target).await.expect("teardown");
    assert!(live_inputs(&medialive, &target).await.is_empty());
    assert!(live_channels(&medialive, &target).await.is_empty());
    let gone = mediapackage
        .get_channel_group()
        .channel_group_name("lunora-studio-1-program")
        .send()
        .await;
    assert!(gone.is_err(), "the channel group is still there");
    assert_eq!(provisioner.state(&target).await.expect("state"), None);
    let not_there = provisioner
        .start(&target)
        .await
        .expect_err("nothing to start");
    assert!(matches!(not_there, ProvisionError::NotProvisioned(_)));
    assert_eq!(
        not_there.to_string(),
        "no MediaLive channel is provisioned for channel \"program\""
    );
    // A second teardown has nothing to do.
    provisioner
        .teardown(&target)
        .await
        .expect("idempotent teardown");
}

#[tokio::test]
async fn cloud_mode_is_a_failover_pair_and_edge_mode_repairs_it_back_to_one_input() {
    let moto = Moto::start();
    let (medialive, _) = moto.sdk().await;
    let provisioner = moto.provisioner().await;
    let target = Target::new("studio-1", "news").expect("valid ids");
    let setup: MediaLiveSetup = serde_json::from_str(
        r#"{"mode": "cloud", "input_preference": "equal", "input_loss_threshold_ms": 250,
            "error_clear_time_ms": 3000, "preset": "abr-720p"}"#,
    )
    .expect("setup");
    assert_eq!(setup.input_preference, InputPreference::Equal);

    let cloud = provisioner
        .provision(&setup, &target)
        .await
        .expect("provision");
    let roles: Vec<_> = cloud.inputs.iter().map(|i| i.role.as_str()).collect();
    assert_eq!(roles, ["main", "backup"]);
    let channel = medialive
        .describe_channel()
        .channel_id(cloud.channel_id.as_deref().expect("channel"))
        .send()
        .await
        .expect("DescribeChannel");
    let attachments = channel.input_attachments();
    assert_eq!(attachments.len(), 2);
    assert_eq!(attachments[0].input_id(), Some(cloud.inputs[0].id.as_str()));
    assert_eq!(attachments[1].input_id(), Some(cloud.inputs[1].id.as_str()));
    let failover = attachments[0]
        .automatic_input_failover_settings()
        .expect("automatic input failover on the main input");
    assert_eq!(
        failover.secondary_input_id(),
        Some(cloud.inputs[1].id.as_str())
    );
    assert_eq!(
        failover.input_preference(),
        Some(&ml::InputPreference::EqualInputPreference)
    );
    assert_eq!(failover.error_clear_time_msec(), Some(3000));
    let threshold = failover.failover_conditions()[0]
        .failover_condition_settings()
        .and_then(|s| s.input_loss_settings())
        .and_then(|l| l.input_loss_threshold_msec());
    assert_eq!(threshold, Some(250));
    let renditions = channel
        .encoder_settings()
        .map(|e| e.video_descriptions().len());
    assert_eq!(renditions, Some(2));

    // Back to edge on the same channel: one input attached, the backup input deleted.
    let edge = provisioner
        .provision(&MediaLiveSetup::new(Mode::Edge), &target)
        .await
        .expect("edge");
    assert_eq!(edge.channel_id, cloud.channel_id);
    assert_eq!(edge.inputs, cloud.inputs[..1]);
    assert_eq!(live_inputs(&medialive, &target).await.len(), 1);
    let channel = medialive
        .describe_channel()
        .channel_id(edge.channel_id.as_deref().expect("channel"))
        .send()
        .await
        .expect("DescribeChannel");
    assert_eq!(channel.input_attachments().len(), 1);
    assert!(
        channel.input_attachments()[0]
            .automatic_input_failover_settings()
            .is_none()
    );
    provisioner.teardown(&target).await.expect("teardown");
}

#[tokio::test]
async fn teardown_deletes_only_what_is_tagged_as_ours() {
    let moto = Moto::start();
    let (medialive, _) = moto.sdk().await;
    let provisioner = moto.provisioner().await;
    let ours = Target::new("studio-1", "program").expect("valid ids");
    let neighbour = Target::new("studio-1", "sports").expect("valid ids");
    let setup = MediaLiveSetup::new(Mode::Edge);
    provisioner.provision(&setup, &ours).await.expect("ours");
    provisioner
        .provision(&setup, &neighbour)
        .await
        .expect("neighbour");
    let hand_made = medialive
        .create_input()
        .name("made-by-hand")
        .r#type(ml::InputType::RtmpPush)
        .send()
        .await
        .expect("CreateInput")
        .input()
        .and_then(|i| i.id())
        .map(str::to_string)
        .expect("an id");

    provisioner.teardown(&ours).await.expect("teardown");
    assert!(live_inputs(&medialive, &ours).await.is_empty());
    assert_eq!(live_inputs(&medialive, &neighbour).await.len(), 1);
    assert_eq!(live_channels(&medialive, &neighbour).await.len(), 1);
    let described = medialive
        .describe_input()
        .input_id(&hand_made)
        .send()
        .await
        .expect("the hand-made input is still there");
    assert!(!matches!(
        described.state(),
        Some(ml::InputState::Deleting | ml::InputState::Deleted)
    ));
    assert!(
        provisioner
            .state(&neighbour)
            .await
            .expect("state")
            .is_some()
    );
}

#[tokio::test]
async fn an_invalid_setup_sends_nothing_to_aws() {
    let moto = Moto::start();
    let (medialive, mediapackage) = moto.sdk().await;
    let provisioner = moto.provisioner().await;
    let target = Target::new("studio-1", "program").expect("valid ids");
    let setup: MediaLiveSetup = serde_json::from_str(
        r#"{"mode": "cloud", "input_loss_threshold_ms": 50, "allowed_cidrs": ["10.0.0.1"]}"#,
    )
    .expect("setup");
    let refused = provisioner
        .provision(&setup, &target)
        .await
        .expect_err("refused");
    assert_eq!(
        refused.to_string(),
        "allowed_cidrs[0] \"10.0.0.1\" is not an IPv4 CIDR like 203.0.113.7/32: no /prefix; \
         input_loss_threshold_ms must be at least 100 (MediaLive's minimum); it is 50"
    );
    let inputs = medialive.list_inputs().send().await.expect("ListInputs");
    assert!(inputs.inputs().is_empty());
    let groups = mediapackage
        .list_channel_groups()
        .send()
        .await
        .expect("ListChannelGroups");
    assert!(groups.items().is_empty());
}

#[tokio::test]
async fn srt_listener_inputs_get_a_tagged_secret_made_once_and_deleted_with_them() {
    let moto = Moto::start();
    let (medialive, _) = moto.sdk().await;
    let secrets = moto.secrets().await;
    let provisioner = moto.provisioner().await;
    let target = Target::new("studio-1", "srt").expect("valid ids");
    let name = "lunora/studio-1/srt/srt-passphrase";
    let setup: MediaLiveSetup =
        serde_json::from_str(r#"{"mode": "cloud", "input_type": "srt_listener"}"#).expect("setup");

    let first = provisioner
        .provision(&setup, &target)
        .await
        .expect("provision");
    let kinds: Vec<_> = first
        .inputs
        .iter()
        .map(|i| (i.role.as_str(), i.input_type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("main", "SRT_LISTENER"), ("backup", "SRT_LISTENER")]
    );
    let described = secrets
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .expect("the secret exists");
    let tags: HashMap<_, _> = described
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect();
    assert_eq!(tags.get(TAG_BOX), Some(&"studio-1"));
    assert_eq!(tags.get(TAG_CHANNEL), Some(&"srt"));
    let read = |secrets: aws_sdk_secretsmanager::Client| async move {
        secrets
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .expect("GetSecretValue")
            .secret_string()
            .map(str::to_string)
            .expect("a string")
    };
    let passphrase = read(secrets.clone()).await;
    assert_eq!(passphrase.len(), 32);
    assert!(passphrase.bytes().all(|b| b.is_ascii_alphanumeric()));

    // Again: the same inputs and the same passphrase (senders already use it), one secret.
    let second = provisioner.provision(&setup, &target).await.expect("again");
    assert_eq!(second.inputs, first.inputs);
    assert_eq!(read(secrets.clone()).await, passphrase);
    let listed = secrets.list_secrets().send().await.expect("ListSecrets");
    assert_eq!(listed.secret_list().len(), 1);
    assert_eq!(live_inputs(&medialive, &target).await.len(), 2);

    // moto gives SRT inputs no destinations (AWS gives each pipeline an address), so there
    // are no feeds; their shape is tested against replayed AWS answers.
    let feeds = provisioner.feeds(&target).await.expect("feeds");
    assert!(feeds.is_empty());

    // Teardown deletes the secret after the inputs, and leaves nothing.
    provisioner.teardown(&target).await.expect("teardown");
    assert_eq!(provisioner.state(&target).await.expect("state"), None);
    assert!(live_inputs(&medialive, &target).await.is_empty());
    let gone = secrets.describe_secret().secret_id(name).send().await;
    assert!(gone.is_err(), "the secret is still there: {gone:?}");
}

#[tokio::test]
async fn a_standard_channel_has_two_pipelines_and_keeps_its_class() {
    let moto = Moto::start();
    let (medialive, _) = moto.sdk().await;
    let provisioner = moto.provisioner().await;
    let target = Target::new("studio-1", "main-event").expect("valid ids");
    let setup: MediaLiveSetup =
        serde_json::from_str(r#"{"mode": "edge", "channel_class": "standard"}"#).expect("setup");

    let standard = provisioner
        .provision(&setup, &target)
        .await
        .expect("provision");
    let channel = medialive
        .describe_channel()
        .channel_id(standard.channel_id.as_deref().expect("channel"))
        .send()
        .await
        .expect("DescribeChannel");
    assert_eq!(channel.channel_class(), Some(&ml::ChannelClass::Standard));
    let endpoints: Vec<_> = channel.destinations()[0]
        .media_package_settings()
        .iter()
        .map(|m| (m.channel_endpoint_id(), m.media_package_region_name()))
        .collect();
    assert_eq!(
        endpoints,
        [
            (Some("1"), Some("us-east-1")),
            (Some("2"), Some("us-east-1"))
        ]
    );
    let inputs = live_inputs(&medialive, &target).await;
    assert_eq!(inputs[0].destinations().len(), 2);

    let again = provisioner.provision(&setup, &target).await.expect("again");
    assert_eq!(again.channel_id, standard.channel_id);
    let single = provisioner
        .provision(&MediaLiveSetup::new(Mode::Edge), &target)
        .await
        .expect_err("a class change");
    assert_eq!(
        single.to_string(),
        format!(
            "the MediaLive channel {} is STANDARD, not SINGLE_PIPELINE: tear this channel's \
             MediaLive setup down (DELETE) before changing channel_class",
            standard.channel_id.as_deref().unwrap_or_default()
        )
    );
    provisioner.teardown(&target).await.expect("teardown");
    assert_eq!(provisioner.state(&target).await.expect("state"), None);
}
