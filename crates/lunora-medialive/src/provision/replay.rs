//! The request shapes of the calls moto_server does not model (origin endpoints, input
//! security groups, SRT settings), against answers recorded in the shape AWS gives them:
//! each test replays AWS's side and reads back what the SDK sent.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_medialive::config::Credentials;
use aws_sdk_medialive::primitives::SdkBody;
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use serde_json::{Value, json};

use super::*;

fn target() -> Target {
    Target::new("box-1", "program").expect("valid ids")
}

fn request() -> http::Request<SdkBody> {
    // What is compared is read back from `actual_requests`, not matched against this.
    http::Request::builder()
        .uri("https://aws.invalid/")
        .body(SdkBody::empty())
        .expect("a request")
}

fn answer(status: u16, body: Value) -> ReplayEvent {
    ReplayEvent::new(
        request(),
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(SdkBody::from(body.to_string()))
            .expect("a response"),
    )
}

fn not_found() -> ReplayEvent {
    ReplayEvent::new(
        request(),
        http::Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .header("x-amzn-errortype", "ResourceNotFoundException")
            .body(SdkBody::from(r#"{"message": "not found"}"#))
            .expect("a response"),
    )
}

async fn replaying(events: Vec<ReplayEvent>) -> (Provisioner, StaticReplayClient) {
    let client = StaticReplayClient::new(events);
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("a", "b", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .http_client(client.clone())
        .load()
        .await;
    let provisioner = Provisioner::new(
        Clients::from_sdk_config(&config, None),
        Options {
            input_security_groups: true,
            origin_endpoints: true,
            poll: Duration::from_millis(1),
            wait: Duration::from_millis(10),
        },
    );
    (provisioner, client)
}

/// (method, path, JSON body) of each request sent.
fn requests(client: &StaticReplayClient) -> Vec<(String, String, Value)> {
    client
        .actual_requests()
        .map(|r| {
            let body = r
                .body()
                .bytes()
                .filter(|b| !b.is_empty())
                .map(|b| serde_json::from_slice(b).expect("a JSON body"))
                .unwrap_or(Value::Null);
            let uri: http::Uri = r.uri().parse().expect("a URI");
            (r.method().to_string(), uri.path().to_string(), body)
        })
        .collect()
}

fn our_tags() -> Value {
    json!({"lunora:box": "box-1", "lunora:channel": "program"})
}

#[tokio::test]
async fn a_missing_origin_endpoint_is_created_as_tagged_hls_over_ts() {
    let (provisioner, client) = replaying(vec![
        not_found(),
        answer(200, json!({"OriginEndpointName": "hls"})),
    ])
    .await;
    provisioner
        .ensure_origin_endpoint(&target())
        .await
        .expect("created");
    let sent = requests(&client);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        (sent[0].0.as_str(), sent[0].1.as_str()),
        (
            "GET",
            "/channelGroup/lunora-box-1-program/channel/program/originEndpoint/hls"
        )
    );
    let (method, path, body) = &sent[1];
    assert_eq!(method, "POST");
    assert_eq!(
        path,
        "/channelGroup/lunora-box-1-program/channel/program/originEndpoint"
    );
    assert_eq!(body["OriginEndpointName"], "hls");
    assert_eq!(body["ContainerType"], "TS");
    assert_eq!(
        body["HlsManifests"],
        json!([{"ManifestName": "index", "ManifestWindowSeconds": 30}])
    );
    assert_eq!(body["Segment"]["SegmentDurationSeconds"], 2);
    assert_eq!(body["StartoverWindowSeconds"], 60);
    assert_eq!(body["Tags"], our_tags());
}

#[tokio::test]
async fn a_fitting_origin_endpoint_is_adopted_and_another_one_repaired() {
    let fitting = json!({
        "ContainerType": "TS",
        "Segment": {"SegmentDurationSeconds": 2},
        "StartoverWindowSeconds": 60,
        "HlsManifests": [{"ManifestName": "index", "ManifestWindowSeconds": 30,
                          "Url": "https://example.invalid/index.m3u8"}],
        "Tags": our_tags(),
    });
    let (provisioner, client) = replaying(vec![answer(200, fitting)]).await;
    provisioner
        .ensure_origin_endpoint(&target())
        .await
        .expect("adopted");
    assert_eq!(requests(&client).len(), 1);

    let cmaf = json!({"ContainerType": "CMAF", "HlsManifests": [], "Tags": our_tags()});
    let (provisioner, client) = replaying(vec![answer(200, cmaf), answer(200, json!({}))]).await;
    provisioner
        .ensure_origin_endpoint(&target())
        .await
        .expect("repaired");
    let sent = requests(&client);
    let (method, path, body) = &sent[1];
    assert_eq!(method, "PUT");
    assert_eq!(
        path,
        "/channelGroup/lunora-box-1-program/channel/program/originEndpoint/hls"
    );
    assert_eq!(body["ContainerType"], "TS");
    assert_eq!(body["HlsManifests"][0]["ManifestName"], "index");

    let theirs = json!({"ContainerType": "TS", "Tags": {"lunora:box": "other", "lunora:channel": "program"}});
    let (provisioner, _) = replaying(vec![answer(200, theirs)]).await;
    let refused = provisioner
        .ensure_origin_endpoint(&target())
        .await
        .expect_err("someone else's");
    assert_eq!(
        refused.to_string(),
        "MediaPackage origin endpoint lunora-box-1-program/program/hls is tagged for another \
         box or channel"
    );
}

#[tokio::test]
async fn the_playback_url_is_the_manifest_url_mediapackage_answers() {
    let url = "https://abcd.egress.mediapackagev2.eu-west-1.amazonaws.com/out/v1/\
               lunora-box-1-program/program/hls/index.m3u8";
    let (provisioner, client) = replaying(vec![
        answer(
            200,
            json!({"inputs": [{"id": "in-1", "type": "RTMP_PUSH",
                   "tags": {"lunora:box": "box-1", "lunora:channel": "program", "lunora:input": "main"},
                   "destinations": [{"url": "rtmp://198.51.100.1:1935/program/main"}]}]}),
        ),
        answer(200, json!({"channels": []})),
        answer(200, json!({"inputSecurityGroups": []})),
        answer(
            200,
            json!({"HlsManifests": [{"ManifestName": "index", "Url": url}]}),
        ),
    ])
    .await;
    let state = provisioner
        .state(&target())
        .await
        .expect("state")
        .expect("something exists");
    assert_eq!(state.playback_url.as_deref(), Some(url));
    assert_eq!(
        state.inputs[0].urls,
        ["rtmp://198.51.100.1:1935/program/main"]
    );
    assert_eq!(requests(&client).len(), 4);
}

#[tokio::test]
async fn the_input_security_group_is_created_tagged_or_updated_with_the_cidrs() {
    let mut setup = MediaLiveSetup::new(Mode::Edge);
    setup.allowed_cidrs = vec!["203.0.113.7/32".into(), "198.51.100.0/24".into()];
    let rules = json!([{"cidr": "203.0.113.7/32"}, {"cidr": "198.51.100.0/24"}]);

    let (provisioner, client) = replaying(vec![
        answer(200, json!({"inputSecurityGroups": []})),
        answer(200, json!({"securityGroup": {"id": "sg-1"}})),
    ])
    .await;
    let id = provisioner
        .ensure_security_group(&setup, &target())
        .await
        .expect("created");
    assert_eq!(id, "sg-1");
    let sent = requests(&client);
    let (method, path, body) = &sent[1];
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("POST", "/prod/inputSecurityGroups")
    );
    assert_eq!(body["whitelistRules"], rules);
    assert_eq!(body["tags"], our_tags());

    let (provisioner, client) = replaying(vec![
        answer(
            200,
            json!({"inputSecurityGroups": [
                {"id": "sg-other", "tags": {"lunora:box": "box-1", "lunora:channel": "news"}},
                {"id": "sg-9", "tags": our_tags()},
            ]}),
        ),
        answer(200, json!({"securityGroup": {"id": "sg-9"}})),
    ])
    .await;
    let id = provisioner
        .ensure_security_group(&setup, &target())
        .await
        .expect("updated");
    assert_eq!(id, "sg-9");
    let sent = requests(&client);
    let (method, path, body) = &sent[1];
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("PUT", "/prod/inputSecurityGroups/sg-9")
    );
    assert_eq!(body["whitelistRules"], rules);
}

#[tokio::test]
async fn an_srt_listener_input_decrypts_with_the_secret_and_the_setup_latency() {
    let mut setup = MediaLiveSetup::new(Mode::Edge);
    setup.input_type = InputType::SrtListener;
    setup.srt_latency_ms = 800;
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:lunora/box-1/program/srt-passphrase-AbCdEf";
    let wiring = Wiring {
        security_group: Some("sg-1".into()),
        secret_arn: Some(arn.into()),
    };
    let (provisioner, client) =
        replaying(vec![answer(201, json!({"input": {"id": "in-7"}}))]).await;
    let id = provisioner
        .ensure_input(
            &[],
            "main",
            InputType::SrtListener,
            &setup,
            &wiring,
            &target(),
        )
        .await
        .expect("created");
    assert_eq!(id, "in-7");
    let sent = requests(&client);
    let (method, path, body) = &sent[0];
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/prod/inputs"));
    assert_eq!(body["type"], "SRT_LISTENER");
    assert_eq!(body["name"], "lunora-box-1-program-main");
    assert_eq!(body["inputSecurityGroups"], json!(["sg-1"]));
    assert_eq!(
        body["srtSettings"],
        json!({"srtListenerSettings": {
            "decryption": {"algorithm": "AES256", "passphraseSecretArn": arn},
            "minimumLatency": 800,
        }})
    );
    assert_eq!(body.get("destinations"), None);
    let mut tags = our_tags();
    tags["lunora:input"] = json!("main");
    assert_eq!(body["tags"], tags);
}

#[tokio::test]
async fn a_standard_channel_gets_push_inputs_with_two_destinations() {
    let mut setup = MediaLiveSetup::new(Mode::Edge);
    setup.channel_class = ChannelClass::Standard;
    let wiring = Wiring {
        security_group: Some("sg-1".into()),
        secret_arn: None,
    };
    let (provisioner, client) =
        replaying(vec![answer(201, json!({"input": {"id": "in-8"}}))]).await;
    provisioner
        .ensure_input(&[], "main", InputType::RtmpPush, &setup, &wiring, &target())
        .await
        .expect("created");
    let body = &requests(&client)[0].2;
    assert_eq!(body["type"], "RTMP_PUSH");
    assert_eq!(
        body["destinations"],
        json!([{"streamName": "program/main"}, {"streamName": "program/main"}])
    );

    let destination = provisioner.destination(ChannelClass::Standard, &target());
    let entries: Vec<_> = destination
        .media_package_settings()
        .iter()
        .map(|m| {
            (
                m.channel_group(),
                m.channel_name(),
                m.channel_endpoint_id(),
                m.media_package_region_name(),
            )
        })
        .collect();
    let group = Some("lunora-box-1-program");
    let channel = Some("program");
    assert_eq!(
        entries,
        [
            (group, channel, Some("1"), Some("eu-west-1")),
            (group, channel, Some("2"), Some("eu-west-1")),
        ]
    );
    let single = provisioner.destination(ChannelClass::SinglePipeline, &target());
    assert_eq!(single.media_package_settings().len(), 1);
    assert_eq!(
        single.media_package_settings()[0].channel_endpoint_id(),
        None
    );
}

#[tokio::test]
async fn srt_feeds_carry_the_address_latency_and_the_passphrase_from_secrets_manager() {
    let srt = |role: &str, destinations: Value| {
        json!({"id": format!("in-{role}"), "type": "SRT_LISTENER",
               "tags": {"lunora:box": "box-1", "lunora:channel": "program", "lunora:input": role},
               "destinations": destinations,
               "srtSettings": {"srtListenerSettings": {"minimumLatency": 2000,
                   "decryption": {"algorithm": "AES256", "passphraseSecretArn": "arn:x"}}}})
    };
    let (provisioner, client) = replaying(vec![
        answer(
            200,
            json!({"inputs": [
                srt("backup", json!([{"url": "srt://192.0.2.2:5000"}])),
                srt("main", json!([{"ip": "192.0.2.1", "port": "5000"}])),
            ]}),
        ),
        answer(
            200,
            json!({"SecretString": "Zq8pX2mLr4Tn6Vb0Ck3Jd5Hf7Gs9Aw1E"}),
        ),
    ])
    .await;
    let feeds = provisioner.feeds(&target()).await.expect("feeds");
    let seen: Vec<_> = feeds
        .iter()
        .map(|f| {
            (
                f.role.as_str(),
                f.pipeline,
                f.url.as_str(),
                f.passphrase.as_ref().map(|p| p.expose().to_string()),
                f.latency_ms,
            )
        })
        .collect();
    let passphrase = Some("Zq8pX2mLr4Tn6Vb0Ck3Jd5Hf7Gs9Aw1E".to_string());
    assert_eq!(
        seen,
        [
            (
                "main",
                0,
                "srt://192.0.2.1:5000",
                passphrase.clone(),
                Some(2000)
            ),
            ("backup", 0, "srt://192.0.2.2:5000", passphrase, Some(2000)),
        ]
    );
    let sent = requests(&client);
    assert_eq!(sent.len(), 2, "the passphrase is read once");
    assert_eq!(
        sent[1].2,
        json!({"SecretId": "lunora/box-1/program/srt-passphrase"})
    );
}

#[tokio::test]
async fn a_standard_rtmp_input_is_two_feeds_without_a_passphrase() {
    let (provisioner, _) = replaying(vec![answer(
        200,
        json!({"inputs": [{"id": "in-1", "type": "RTMP_PUSH",
               "tags": {"lunora:box": "box-1", "lunora:channel": "program", "lunora:input": "main"},
               "destinations": [{"url": "rtmp://198.51.100.1:1935/program/main"},
                                {"url": "rtmp://198.51.100.2:1935/program/main"}]}]}),
    )])
    .await;
    let feeds = provisioner.feeds(&target()).await.expect("feeds");
    let seen: Vec<_> = feeds
        .iter()
        .map(|f| {
            (
                f.pipeline,
                f.url.as_str(),
                f.passphrase.is_none(),
                f.latency_ms,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (0, "rtmp://198.51.100.1:1935/program/main", true, None),
            (1, "rtmp://198.51.100.2:1935/program/main", true, None),
        ]
    );
}

#[test]
fn passphrases_are_32_random_alphanumerics() {
    let a = passphrase().expect("random");
    let b = passphrase().expect("random");
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
    assert_ne!(a, b);
}
