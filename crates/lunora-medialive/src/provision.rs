//! Creating, adopting, starting, stopping and tearing down what one Lunora channel uses in AWS:
//! a MediaPackage v2 channel group, channel and HLS origin endpoint, an input security group,
//! the Secrets Manager secret holding an SRT passphrase, the MediaLive input(s) and the
//! MediaLive channel.
//!
//! Ownership: every MediaLive resource carries the tags `lunora:box` and `lunora:channel` (and
//! inputs `lunora:input` = `main` | `backup`); it is found by those tags and nothing untagged is
//! ever changed or deleted. MediaPackage v2 resources and the secret have deterministic names
//! (`lunora-<box>-<channel>`, channel `<channel>`, endpoint `hls`; secret
//! `lunora/<box>/<channel>/srt-passphrase`) and the same tags; one whose tags name another box
//! or channel is refused. Provisioning twice adopts what exists, creates
//! what is missing and never makes a duplicate.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_medialive::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_medialive::types as ml;
use aws_sdk_mediapackagev2::types as mp;
use aws_sdk_secretsmanager::types as sm;
use lunora_media::Secret;
use schemars::JsonSchema;
use serde::Serialize;

use crate::aws::Clients;
use crate::preset::{AUDIO_SELECTOR, DESTINATION_ID, Preset};
use crate::setup::{ChannelClass, InputType, MediaLiveSetup, Mode, Problem, Target};

pub const TAG_BOX: &str = "lunora:box";
pub const TAG_CHANNEL: &str = "lunora:channel";
pub const TAG_INPUT: &str = "lunora:input";

/// Why provisioning or a lifecycle call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The setup or the ids break a rule; nothing was sent to AWS.
    #[error("{}", join(.0))]
    Invalid(Vec<Problem>),
    /// Something in AWS is in the way (another owner, a changed input type).
    #[error("{0}")]
    Conflict(String),
    /// Nothing is provisioned for this channel.
    #[error("no MediaLive channel is provisioned for channel {0:?}")]
    NotProvisioned(String),
    /// The system's random source failed, so no passphrase could be made.
    #[error("no random passphrase could be made ({0}); nothing was created, try again")]
    Random(String),
    /// AWS refused or could not be reached.
    #[error("AWS {operation}: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
    /// A state was not reached in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn aws<E, R>(operation: &'static str) -> impl FnOnce(SdkError<E, R>) -> ProvisionError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |e| ProvisionError::Aws {
        operation,
        message: DisplayErrorContext(&e).to_string(),
    }
}

fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(|s| s.code())
}

/// How the provisioner treats the parts a local test server does not model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Create an input security group from `allowed_cidrs` and attach it to the inputs (AWS
    /// requires one for push inputs; moto_server does not model them).
    pub input_security_groups: bool,
    /// Create the MediaPackage v2 HLS origin endpoint the playback URL comes from (moto_server
    /// does not model origin endpoints).
    pub origin_endpoints: bool,
    /// How often a state is polled while waiting for it.
    pub poll: Duration,
    /// How long a stop or a delete may take.
    pub wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            input_security_groups: true,
            origin_endpoints: true,
            poll: Duration::from_secs(5),
            wait: Duration::from_secs(600),
        }
    }
}

/// One MediaLive input as provisioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct InputView {
    /// `main` or `backup`.
    pub role: String,
    pub id: String,
    /// MediaLive's type, e.g. `RTMP_PUSH`.
    pub input_type: String,
    /// Where the box sends to (empty until AWS assigns addresses).
    pub urls: Vec<String>,
}

/// What exists in AWS for one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Provisioned {
    pub channel_group: String,
    pub mediapackage_channel: String,
    pub security_group_id: Option<String>,
    pub inputs: Vec<InputView>,
    pub channel_id: Option<String>,
    /// MediaLive's channel state: `IDLE`, `STARTING`, `RUNNING`, `STOPPING`, …
    pub state: Option<String>,
    /// The HLS manifest MediaPackage serves (the cloud preview); `None` without an origin
    /// endpoint.
    pub playback_url: Option<String>,
    /// The input attachment (`main`, `backup`) each running pipeline is on: in cloud mode,
    /// where MediaLive's own failover has put it. Empty while the channel is not running.
    pub active_inputs: Vec<String>,
}

/// The AES key MediaLive decrypts SRT inputs with, and its length in bytes (what the box's
/// caller must use: SRT's `pbkeylen`).
const SRT_ALGORITHM: ml::Algorithm = ml::Algorithm::Aes256;
pub const SRT_KEY_BYTES: u8 = 32;

/// One place the box sends a feed to: a pipeline of a MediaLive input.
#[derive(Debug, Clone)]
pub struct Feed {
    /// `main` or `backup`.
    pub role: String,
    /// 0, or 0 and 1 for a standard channel.
    pub pipeline: usize,
    /// `rtmp://host:1935/app/stream` or `srt://host:port`.
    pub url: String,
    /// SRT only: the AES passphrase, read back from Secrets Manager.
    pub passphrase: Option<Secret>,
    /// SRT only: the input's minimum latency.
    pub latency_ms: Option<u32>,
    /// SRT only: the AES key length MediaLive decrypts with ([`SRT_KEY_BYTES`]).
    pub key_bytes: Option<u8>,
}

/// The origin endpoint's name in the MediaPackage channel.
pub const ORIGIN_ENDPOINT: &str = "hls";
const MANIFEST: &str = "index";
// A live preview needs the live edge, not a DVR: segments as long as the encoder's 2 s GOP, a
// 30 s playlist and MediaPackage's shortest startover window.
const SEGMENT_SECONDS: i32 = 2;
const MANIFEST_WINDOW_SECONDS: i32 = 30;
const STARTOVER_WINDOW_SECONDS: i32 = 60;

/// The SRT passphrase: MediaLive takes 10–79 characters; 32 alphanumerics carry about 190
/// bits and need no quoting anywhere.
const PASSPHRASE_LENGTH: usize = 32;

/// What the inputs are wired to: made before them, named in their requests.
struct Wiring {
    security_group: Option<String>,
    secret_arn: Option<String>,
}

/// Provisions and runs the AWS side of channels.
#[derive(Debug, Clone)]
pub struct Provisioner {
    pub(crate) clients: Clients,
    options: Options,
}

fn tags(target: &Target) -> HashMap<String, String> {
    HashMap::from([
        (TAG_BOX.to_string(), target.box_id().to_string()),
        (TAG_CHANNEL.to_string(), target.channel().to_string()),
    ])
}

fn is_ours(found: Option<&HashMap<String, String>>, target: &Target) -> bool {
    found.is_some_and(|t| {
        t.get(TAG_BOX).map(String::as_str) == Some(target.box_id())
            && t.get(TAG_CHANNEL).map(String::as_str) == Some(target.channel())
    })
}

/// For names that are ours by construction: tags naming another owner make it not ours; no
/// tags at all (a service that does not return them) leaves the name to decide.
fn not_someone_elses(found: Option<&HashMap<String, String>>, target: &Target) -> bool {
    match found {
        Some(t) if t.contains_key(TAG_BOX) || t.contains_key(TAG_CHANNEL) => {
            is_ours(Some(t), target)
        }
        _ => true,
    }
}

fn gone_input(state: Option<&ml::InputState>) -> bool {
    matches!(
        state,
        Some(ml::InputState::Deleting | ml::InputState::Deleted)
    )
}

fn gone_channel(state: Option<&ml::ChannelState>) -> bool {
    matches!(
        state,
        Some(ml::ChannelState::Deleting | ml::ChannelState::Deleted)
    )
}

fn secret_name(target: &Target) -> String {
    format!(
        "lunora/{}/{}/srt-passphrase",
        target.box_id(),
        target.channel()
    )
}

fn secret_tags(found: &[sm::Tag]) -> HashMap<String, String> {
    found
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

/// A fresh SRT passphrase from the system's random source.
fn passphrase() -> Result<String, ProvisionError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Bytes at or above the largest multiple of 62 are dropped so every character is equally
    // likely.
    const LIMIT: u8 = 248;
    let mut out = String::with_capacity(PASSPHRASE_LENGTH);
    let mut bytes = [0u8; 64];
    while out.len() < PASSPHRASE_LENGTH {
        getrandom::fill(&mut bytes).map_err(|e| ProvisionError::Random(e.to_string()))?;
        for b in bytes.iter().filter(|b| **b < LIMIT) {
            if out.len() < PASSPHRASE_LENGTH {
                out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

fn srt_settings(secret_arn: &str, latency_ms: u32) -> ml::SrtSettingsRequest {
    ml::SrtSettingsRequest::builder()
        .srt_listener_settings(
            ml::SrtListenerSettingsRequest::builder()
                .decryption(
                    ml::SrtListenerDecryptionRequest::builder()
                        .algorithm(SRT_ALGORITHM)
                        .passphrase_secret_arn(secret_arn)
                        .build(),
                )
                .minimum_latency(msec(latency_ms))
                .build(),
        )
        .build()
}

fn hls_manifest() -> Result<mp::CreateHlsManifestConfiguration, ProvisionError> {
    mp::CreateHlsManifestConfiguration::builder()
        .manifest_name(MANIFEST)
        .manifest_window_seconds(MANIFEST_WINDOW_SECONDS)
        .build()
        .map_err(|e| ProvisionError::Aws {
            operation: "CreateOriginEndpoint",
            message: format!("the HLS manifest request is incomplete: {e}"),
        })
}

fn segment() -> mp::Segment {
    mp::Segment::builder()
        .segment_duration_seconds(SEGMENT_SECONDS)
        .segment_name("segment")
        .build()
}

/// The input attachment each pipeline of a described channel is on, in pipeline order.
fn active_inputs(
    described: &aws_sdk_medialive::operation::describe_channel::DescribeChannelOutput,
) -> Vec<String> {
    described
        .pipeline_details()
        .iter()
        .filter_map(|p| p.active_input_attachment_name().map(str::to_string))
        .collect()
}

fn msec(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

const ROLES: [&str; 2] = ["main", "backup"];

impl Provisioner {
    pub fn new(clients: Clients, options: Options) -> Provisioner {
        Provisioner { clients, options }
    }

    fn group_name(target: &Target) -> String {
        target.name()
    }

    async fn our_inputs(&self, target: &Target) -> Result<Vec<ml::Input>, ProvisionError> {
        let mut pages = self
            .clients
            .medialive
            .list_inputs()
            .into_paginator()
            .items()
            .send();
        let mut inputs = Vec::new();
        while let Some(input) = pages.next().await {
            let input = input.map_err(aws("ListInputs"))?;
            if is_ours(input.tags(), target) && !gone_input(input.state()) {
                inputs.push(input);
            }
        }
        Ok(inputs)
    }

    /// Every MediaLive channel of the account not being deleted (one paginated `ListChannels`).
    pub(crate) async fn live_channels(&self) -> Result<Vec<ml::ChannelSummary>, ProvisionError> {
        let mut pages = self
            .clients
            .medialive
            .list_channels()
            .into_paginator()
            .items()
            .send();
        let mut channels = Vec::new();
        while let Some(channel) = pages.next().await {
            let channel = channel.map_err(aws("ListChannels"))?;
            if !gone_channel(channel.state()) {
                channels.push(channel);
            }
        }
        Ok(channels)
    }

    async fn our_channel(&self, target: &Target) -> Result<Option<String>, ProvisionError> {
        let mut found: Vec<String> = self
            .live_channels()
            .await?
            .iter()
            .filter(|channel| is_ours(channel.tags(), target))
            .filter_map(|channel| channel.id().map(str::to_string))
            .collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(ProvisionError::Conflict(format!(
                "{} MediaLive channels are tagged for channel {:?} on box {:?} ({}); delete all \
                 but one",
                found.len(),
                target.channel(),
                target.box_id(),
                found.join(", ")
            ))),
        }
    }

    async fn our_security_group(&self, target: &Target) -> Result<Option<String>, ProvisionError> {
        let mut pages = self
            .clients
            .medialive
            .list_input_security_groups()
            .into_paginator()
            .items()
            .send();
        while let Some(group) = pages.next().await {
            let group = group.map_err(aws("ListInputSecurityGroups"))?;
            let deleted = matches!(group.state(), Some(ml::InputSecurityGroupState::Deleted));
            if is_ours(group.tags(), target) && !deleted {
                return Ok(group.id().map(str::to_string));
            }
        }
        Ok(None)
    }

    async fn ensure_mediapackage(&self, target: &Target) -> Result<(), ProvisionError> {
        let mp_client = &self.clients.mediapackage;
        let group = Self::group_name(target);
        match mp_client
            .get_channel_group()
            .channel_group_name(&group)
            .send()
            .await
        {
            Ok(found) if !not_someone_elses(found.tags(), target) => {
                return Err(ProvisionError::Conflict(format!(
                    "MediaPackage channel group {group:?} is tagged for another box or channel"
                )));
            }
            Ok(_) => {}
            Err(e) if code(&e) == Some("ResourceNotFoundException") => {
                mp_client
                    .create_channel_group()
                    .channel_group_name(&group)
                    .description("Lunora Edge")
                    .set_tags(Some(tags(target)))
                    .send()
                    .await
                    .map_err(aws("CreateChannelGroup"))?;
            }
            Err(e) => return Err(aws("GetChannelGroup")(e)),
        }
        match mp_client
            .get_channel()
            .channel_group_name(&group)
            .channel_name(target.channel())
            .send()
            .await
        {
            Ok(found) if !not_someone_elses(found.tags(), target) => {
                Err(ProvisionError::Conflict(format!(
                    "MediaPackage channel {group}/{} is tagged for another box or channel",
                    target.channel()
                )))
            }
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => {
                mp_client
                    .create_channel()
                    .channel_group_name(&group)
                    .channel_name(target.channel())
                    .input_type(mp::InputType::Cmaf)
                    .set_tags(Some(tags(target)))
                    .send()
                    .await
                    .map_err(aws("CreateChannel (MediaPackage)"))?;
                Ok(())
            }
            Err(e) => Err(aws("GetChannel (MediaPackage)")(e)),
        }
    }

    /// The HLS origin endpoint on the MediaPackage channel: adopted when it fits, brought back
    /// to the preview settings when it does not, created when missing.
    async fn ensure_origin_endpoint(&self, target: &Target) -> Result<(), ProvisionError> {
        let mp_client = &self.clients.mediapackage;
        let group = Self::group_name(target);
        match mp_client
            .get_origin_endpoint()
            .channel_group_name(&group)
            .channel_name(target.channel())
            .origin_endpoint_name(ORIGIN_ENDPOINT)
            .send()
            .await
        {
            Ok(found) if !not_someone_elses(found.tags(), target) => {
                Err(ProvisionError::Conflict(format!(
                    "MediaPackage origin endpoint {group}/{}/{ORIGIN_ENDPOINT} is tagged for \
                     another box or channel",
                    target.channel()
                )))
            }
            Ok(found) => {
                let fits = *found.container_type() == mp::ContainerType::Ts
                    && found.segment().and_then(|s| s.segment_duration_seconds())
                        == Some(SEGMENT_SECONDS)
                    && found.startover_window_seconds() == Some(STARTOVER_WINDOW_SECONDS)
                    && found.hls_manifests().iter().any(|m| {
                        m.manifest_name() == MANIFEST
                            && m.manifest_window_seconds() == Some(MANIFEST_WINDOW_SECONDS)
                    });
                if !fits {
                    mp_client
                        .update_origin_endpoint()
                        .channel_group_name(&group)
                        .channel_name(target.channel())
                        .origin_endpoint_name(ORIGIN_ENDPOINT)
                        .container_type(mp::ContainerType::Ts)
                        .segment(segment())
                        .startover_window_seconds(STARTOVER_WINDOW_SECONDS)
                        .hls_manifests(hls_manifest()?)
                        .send()
                        .await
                        .map_err(aws("UpdateOriginEndpoint"))?;
                }
                Ok(())
            }
            Err(e) if code(&e) == Some("ResourceNotFoundException") => {
                mp_client
                    .create_origin_endpoint()
                    .channel_group_name(&group)
                    .channel_name(target.channel())
                    .origin_endpoint_name(ORIGIN_ENDPOINT)
                    .description("Lunora Edge: HLS preview")
                    .container_type(mp::ContainerType::Ts)
                    .segment(segment())
                    .startover_window_seconds(STARTOVER_WINDOW_SECONDS)
                    .hls_manifests(hls_manifest()?)
                    .set_tags(Some(tags(target)))
                    .send()
                    .await
                    .map_err(aws("CreateOriginEndpoint"))?;
                Ok(())
            }
            Err(e) => Err(aws("GetOriginEndpoint")(e)),
        }
    }

    /// The HLS manifest URL of our origin endpoint, when there is one.
    async fn playback_url(&self, target: &Target) -> Result<Option<String>, ProvisionError> {
        if !self.options.origin_endpoints {
            return Ok(None);
        }
        match self
            .clients
            .mediapackage
            .get_origin_endpoint()
            .channel_group_name(Self::group_name(target))
            .channel_name(target.channel())
            .origin_endpoint_name(ORIGIN_ENDPOINT)
            .send()
            .await
        {
            Ok(found) => Ok(found
                .hls_manifests()
                .iter()
                .find(|m| m.manifest_name() == MANIFEST)
                .map(|m| m.url().to_string())),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(aws("GetOriginEndpoint")(e)),
        }
    }

    /// The ARN of the secret holding this channel's SRT passphrase, made (with a fresh random
    /// passphrase) when missing. An existing one keeps its passphrase: senders already use it.
    async fn ensure_secret(&self, target: &Target) -> Result<String, ProvisionError> {
        let secrets = &self.clients.secrets;
        let name = secret_name(target);
        match secrets.describe_secret().secret_id(&name).send().await {
            Ok(found) if !not_someone_elses(Some(&secret_tags(found.tags())), target) => {
                Err(ProvisionError::Conflict(format!(
                    "the Secrets Manager secret {name:?} is tagged for another box or channel"
                )))
            }
            Ok(found) if found.deleted_date().is_some() => Err(ProvisionError::Conflict(format!(
                "the Secrets Manager secret {name:?} is scheduled for deletion: restore it \
                 (aws secretsmanager restore-secret --secret-id {name}) or delete it for good \
                 (--force-delete-without-recovery), then provision again"
            ))),
            Ok(found) => found
                .arn()
                .map(str::to_string)
                .ok_or_else(|| ProvisionError::Aws {
                    operation: "DescribeSecret",
                    message: format!("the answer for secret {name:?} has no ARN"),
                }),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => {
                let tags = tags(target)
                    .into_iter()
                    .map(|(key, value)| sm::Tag::builder().key(key).value(value).build());
                let created = secrets
                    .create_secret()
                    .name(&name)
                    .description("Lunora Edge: AES passphrase of the MediaLive SRT input(s)")
                    .secret_string(passphrase()?)
                    .set_tags(Some(tags.collect()))
                    .send()
                    .await
                    .map_err(aws("CreateSecret"))?;
                created
                    .arn()
                    .map(str::to_string)
                    .ok_or_else(|| ProvisionError::Aws {
                        operation: "CreateSecret",
                        message: format!("the answer for secret {name:?} has no ARN"),
                    })
            }
            Err(e) => Err(aws("DescribeSecret")(e)),
        }
    }

    /// Deletes the passphrase secret at once (no recovery window: a new one is made on the
    /// next provisioning), unless it is someone else's.
    async fn delete_secret(&self, target: &Target) -> Result<(), ProvisionError> {
        let secrets = &self.clients.secrets;
        let name = secret_name(target);
        match secrets.describe_secret().secret_id(&name).send().await {
            Ok(found) if not_someone_elses(Some(&secret_tags(found.tags())), target) => {
                match secrets
                    .delete_secret()
                    .secret_id(&name)
                    .force_delete_without_recovery(true)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(()),
                    Err(e) => Err(aws("DeleteSecret")(e)),
                }
            }
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(aws("DescribeSecret")(e)),
        }
    }

    async fn read_passphrase(&self, target: &Target) -> Result<Secret, ProvisionError> {
        let name = secret_name(target);
        let found = self
            .clients
            .secrets
            .get_secret_value()
            .secret_id(&name)
            .send()
            .await
            .map_err(aws("GetSecretValue"))?;
        found
            .secret_string()
            .map(Secret::new)
            .ok_or_else(|| ProvisionError::Aws {
                operation: "GetSecretValue",
                message: format!(
                    "the secret {name:?} holds no text passphrase: tear this channel's \
                     MediaLive setup down (DELETE) and provision it again"
                ),
            })
    }

    async fn ensure_security_group(
        &self,
        setup: &MediaLiveSetup,
        target: &Target,
    ) -> Result<String, ProvisionError> {
        if setup.allowed_cidrs.is_empty() {
            return Err(ProvisionError::Invalid(vec![Problem {
                field: "allowed_cidrs",
                message: "allowed_cidrs must list the addresses the box sends from (e.g. \
                          203.0.113.7/32): MediaLive push inputs take only listed senders"
                    .to_string(),
            }]));
        }
        let rules: Vec<_> = setup
            .allowed_cidrs
            .iter()
            .map(|cidr| ml::InputWhitelistRuleCidr::builder().cidr(cidr).build())
            .collect();
        let medialive = &self.clients.medialive;
        if let Some(id) = self.our_security_group(target).await? {
            medialive
                .update_input_security_group()
                .input_security_group_id(&id)
                .set_whitelist_rules(Some(rules))
                .send()
                .await
                .map_err(aws("UpdateInputSecurityGroup"))?;
            return Ok(id);
        }
        let created = medialive
            .create_input_security_group()
            .set_whitelist_rules(Some(rules))
            .set_tags(Some(tags(target)))
            .send()
            .await
            .map_err(aws("CreateInputSecurityGroup"))?;
        created
            .security_group()
            .and_then(|g| g.id())
            .map(str::to_string)
            .ok_or_else(|| ProvisionError::Aws {
                operation: "CreateInputSecurityGroup",
                message: "the answer has no group id".into(),
            })
    }

    /// The input of `role` with `kind`: adopted when one exists (an SRT input's latency and
    /// secret brought back to the setup), created otherwise.
    async fn ensure_input(
        &self,
        existing: &[ml::Input],
        role: &str,
        kind: InputType,
        setup: &MediaLiveSetup,
        wiring: &Wiring,
        target: &Target,
    ) -> Result<String, ProvisionError> {
        let srt = match (kind, &wiring.secret_arn) {
            (InputType::RtmpPush, _) => None,
            (InputType::SrtListener, Some(arn)) => Some(srt_settings(arn, setup.srt_latency_ms)),
            (InputType::SrtListener, None) => {
                return Err(ProvisionError::Conflict(format!(
                    "the {role} SRT input needs the passphrase secret, which was not made"
                )));
            }
        };
        let pipelines = setup.channel_class.pipelines();
        let found = existing
            .iter()
            .find(|i| i.tags().and_then(|t| t.get(TAG_INPUT)).map(String::as_str) == Some(role));
        if let Some(input) = found {
            let id = input.id().ok_or_else(|| ProvisionError::Aws {
                operation: "ListInputs",
                message: "an input without an id".into(),
            })?;
            let have = input.r#type().map(|t| t.as_str()).unwrap_or("unknown");
            if have != kind.aws_name() {
                return Err(ProvisionError::Conflict(format!(
                    "the {role} MediaLive input {id} is {have}, not {}: tear this channel's \
                     MediaLive setup down (DELETE) before changing input_type",
                    kind.aws_name()
                )));
            }
            let destinations = input.destinations().len();
            if kind == InputType::RtmpPush && destinations != pipelines {
                return Err(ProvisionError::Conflict(format!(
                    "the {role} MediaLive input {id} has {destinations} destination(s), a {} \
                     channel needs {pipelines}: tear this channel's MediaLive setup down \
                     (DELETE) before changing channel_class",
                    setup.channel_class.aws_name()
                )));
            }
            if let Some(wanted) = srt {
                let listener = input.srt_settings().and_then(|s| s.srt_listener_settings());
                let fits = listener.and_then(|l| l.minimum_latency())
                    == Some(msec(setup.srt_latency_ms))
                    && listener
                        .and_then(|l| l.decryption())
                        .and_then(|d| d.passphrase_secret_arn())
                        == wanted
                            .srt_listener_settings()
                            .and_then(|l| l.decryption())
                            .and_then(|d| d.passphrase_secret_arn());
                if !fits {
                    self.clients
                        .medialive
                        .update_input()
                        .input_id(id)
                        .name(format!("{}-{role}", target.name()))
                        .set_input_security_groups(
                            wiring.security_group.as_ref().map(|g| vec![g.clone()]),
                        )
                        .srt_settings(wanted)
                        .send()
                        .await
                        .map_err(aws("UpdateInput"))?;
                }
            }
            return Ok(id.to_string());
        }
        let mut input_tags = tags(target);
        input_tags.insert(TAG_INPUT.to_string(), role.to_string());
        let request = self
            .clients
            .medialive
            .create_input()
            .name(format!("{}-{role}", target.name()))
            .r#type(ml::InputType::from(kind.aws_name()))
            .set_input_security_groups(wiring.security_group.as_ref().map(|g| vec![g.clone()]))
            .set_tags(Some(input_tags));
        let request = match srt {
            // MediaLive gives a push input one address per destination, and a standard
            // channel takes an address per pipeline.
            None => request.set_destinations(Some(
                (0..pipelines)
                    .map(|_| {
                        ml::InputDestinationRequest::builder()
                            .stream_name(format!("{}/{role}", target.channel()))
                            .build()
                    })
                    .collect(),
            )),
            Some(settings) => request.srt_settings(settings),
        };
        let created = request.send().await.map_err(aws("CreateInput"))?;
        created
            .input()
            .and_then(|i| i.id())
            .map(str::to_string)
            .ok_or_else(|| ProvisionError::Aws {
                operation: "CreateInput",
                message: "the answer has no input id".into(),
            })
    }

    fn attachments(setup: &MediaLiveSetup, ids: &[String]) -> Vec<ml::InputAttachment> {
        let main = ids.first().cloned().unwrap_or_default();
        // The audio selector the preset's audio and a silence condition refer to.
        let input_settings = || {
            ml::InputSettings::builder()
                .audio_selectors(ml::AudioSelector::builder().name(AUDIO_SELECTOR).build())
                .build()
        };
        let mut main_attachment = ml::InputAttachment::builder()
            .input_attachment_name("main")
            .input_id(main)
            .input_settings(input_settings());
        if let (Mode::Cloud, Some(backup)) = (setup.mode, ids.get(1)) {
            main_attachment = main_attachment.automatic_input_failover_settings(
                ml::AutomaticInputFailoverSettings::builder()
                    .secondary_input_id(backup)
                    .input_preference(ml::InputPreference::from(setup.input_preference.aws_name()))
                    .error_clear_time_msec(msec(setup.error_clear_time_ms))
                    .set_failover_conditions(Some(Self::failover_conditions(setup)))
                    .build(),
            );
        }
        let mut attachments = vec![main_attachment.build()];
        if let (Mode::Cloud, Some(backup)) = (setup.mode, ids.get(1)) {
            attachments.push(
                ml::InputAttachment::builder()
                    .input_attachment_name("backup")
                    .input_id(backup)
                    .input_settings(input_settings())
                    .build(),
            );
        }
        attachments
    }

    /// Input loss always; black picture and silence when the setup asks for them.
    fn failover_conditions(setup: &MediaLiveSetup) -> Vec<ml::FailoverCondition> {
        let condition = |settings: ml::FailoverConditionSettings| {
            ml::FailoverCondition::builder()
                .failover_condition_settings(settings)
                .build()
        };
        let mut conditions = vec![condition(
            ml::FailoverConditionSettings::builder()
                .input_loss_settings(
                    ml::InputLossFailoverSettings::builder()
                        .input_loss_threshold_msec(msec(setup.input_loss_threshold_ms))
                        .build(),
                )
                .build(),
        )];
        if let Some(ms) = setup.video_black_ms {
            conditions.push(condition(
                ml::FailoverConditionSettings::builder()
                    .video_black_settings(
                        ml::VideoBlackFailoverSettings::builder()
                            .video_black_threshold_msec(msec(ms))
                            .build(),
                    )
                    .build(),
            ));
        }
        if let Some(ms) = setup.audio_silence_ms {
            conditions.push(condition(
                ml::FailoverConditionSettings::builder()
                    .audio_silence_settings(
                        ml::AudioSilenceFailoverSettings::builder()
                            .audio_selector_name(AUDIO_SELECTOR)
                            .audio_silence_threshold_msec(msec(ms))
                            .build(),
                    )
                    .build(),
            ));
        }
        conditions
    }

    /// The MediaPackage v2 channel: one entry per pipeline, as MediaLive requires; a standard
    /// channel's two pipelines go to the channel's two ingest endpoints.
    fn destination(&self, class: ChannelClass, target: &Target) -> ml::OutputDestination {
        let entry = |endpoint: Option<&str>| {
            let settings = ml::MediaPackageOutputDestinationSettings::builder()
                .channel_group(Self::group_name(target))
                .channel_name(target.channel());
            match endpoint {
                Some(id) => settings
                    .channel_endpoint_id(id)
                    .set_media_package_region_name(self.clients.region.clone()),
                None => settings,
            }
            .build()
        };
        let entries = match class {
            ChannelClass::SinglePipeline => vec![entry(None)],
            ChannelClass::Standard => vec![entry(Some("1")), entry(Some("2"))],
        };
        ml::OutputDestination::builder()
            .id(DESTINATION_ID)
            .set_media_package_settings(Some(entries))
            .build()
    }

    /// Creates what is missing, adopts what exists, repairs an idle channel's inputs, encoder
    /// and destination; returns what now exists.
    pub async fn provision(
        &self,
        setup: &MediaLiveSetup,
        target: &Target,
    ) -> Result<Provisioned, ProvisionError> {
        let problems = setup.validate();
        if !problems.is_empty() {
            return Err(ProvisionError::Invalid(problems));
        }
        let preset = Preset::named(&setup.preset).ok_or_else(|| {
            ProvisionError::Invalid(vec![Problem {
                field: "preset",
                message: format!("preset {:?} is unknown", setup.preset),
            }])
        })?;
        self.ensure_mediapackage(target).await?;
        if self.options.origin_endpoints {
            self.ensure_origin_endpoint(target).await?;
        }
        let wiring = Wiring {
            security_group: if self.options.input_security_groups {
                Some(self.ensure_security_group(setup, target).await?)
            } else {
                None
            },
            secret_arn: if setup.uses_srt() {
                Some(self.ensure_secret(target).await?)
            } else {
                None
            },
        };
        let existing = self.our_inputs(target).await?;
        let channel = match self.our_channel(target).await? {
            Some(id) => {
                let described = self.describe_channel(&id).await?;
                let class = described.channel_class().map(|c| c.as_str()).unwrap_or("");
                if class != setup.channel_class.aws_name() {
                    return Err(ProvisionError::Conflict(format!(
                        "the MediaLive channel {id} is {class}, not {}: tear this channel's \
                         MediaLive setup down (DELETE) before changing channel_class",
                        setup.channel_class.aws_name()
                    )));
                }
                let state = described
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                Some((id, state))
            }
            None => None,
        };
        // MediaLive changes only an idle channel. A busy one (running, starting, …) is adopted
        // as it is when the inputs the setup needs already exist; otherwise nothing is changed.
        if let Some((id, state)) = &channel
            && state != "IDLE"
        {
            let have_inputs = ROLES.iter().zip(setup.input_types()).all(|(role, kind)| {
                existing.iter().any(|i| {
                    i.tags().and_then(|t| t.get(TAG_INPUT)).map(String::as_str) == Some(*role)
                        && i.r#type().map(|t| t.as_str()) == Some(kind.aws_name())
                })
            });
            if !have_inputs || existing.len() != setup.input_types().len() {
                return Err(ProvisionError::Conflict(format!(
                    "the MediaLive channel {id} is {state}: stop it (POST …/medialive/stop) \
                     before changing its inputs"
                )));
            }
            return self
                .state(target)
                .await?
                .ok_or_else(|| ProvisionError::NotProvisioned(target.channel().to_string()));
        }
        let mut ids = Vec::new();
        for (role, kind) in ROLES.iter().zip(setup.input_types()) {
            ids.push(
                self.ensure_input(&existing, role, kind, setup, &wiring, target)
                    .await?,
            );
        }
        let attachments = Self::attachments(setup, &ids);
        let medialive = &self.clients.medialive;
        match channel {
            None => {
                medialive
                    .create_channel()
                    .name(target.name())
                    .channel_class(ml::ChannelClass::from(setup.channel_class.aws_name()))
                    .set_input_attachments(Some(attachments))
                    .destinations(self.destination(setup.channel_class, target))
                    .encoder_settings(preset.encoder_settings())
                    .input_specification(
                        ml::InputSpecification::builder()
                            .codec(ml::InputCodec::Avc)
                            .resolution(ml::InputResolution::Hd)
                            .maximum_bitrate(ml::InputMaximumBitrate::Max20Mbps)
                            .build(),
                    )
                    .set_role_arn(self.clients.role_arn.clone())
                    .set_tags(Some(tags(target)))
                    .send()
                    .await
                    .map_err(aws("CreateChannel"))?;
            }
            Some((id, _idle)) => {
                medialive
                    .update_channel()
                    .channel_id(&id)
                    .name(target.name())
                    .set_input_attachments(Some(attachments))
                    .destinations(self.destination(setup.channel_class, target))
                    .encoder_settings(preset.encoder_settings())
                    .set_role_arn(self.clients.role_arn.clone())
                    .send()
                    .await
                    .map_err(aws("UpdateChannel"))?;
            }
        }
        // Inputs of ours no longer in the setup (cloud → edge leaves the backup behind).
        for input in existing {
            let id = input.id().unwrap_or_default();
            if !ids.iter().any(|kept| kept == id) {
                self.delete_input(id).await?;
            }
        }
        // An SRT setup changed to RTMP leaves the passphrase unused.
        if !setup.uses_srt() {
            self.delete_secret(target).await?;
        }
        self.state(target)
            .await?
            .ok_or_else(|| ProvisionError::Aws {
                operation: "ListChannels",
                message: "the channel just created is not listed".into(),
            })
    }

    /// What exists for `target`, read back from AWS; `None` when nothing does.
    pub async fn state(&self, target: &Target) -> Result<Option<Provisioned>, ProvisionError> {
        let mut inputs: Vec<InputView> = self
            .our_inputs(target)
            .await?
            .iter()
            .map(|i| InputView {
                role: i
                    .tags()
                    .and_then(|t| t.get(TAG_INPUT))
                    .cloned()
                    .unwrap_or_default(),
                id: i.id().unwrap_or_default().to_string(),
                input_type: i
                    .r#type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                urls: i
                    .destinations()
                    .iter()
                    .filter_map(|d| d.url().map(str::to_string))
                    .collect(),
            })
            .collect();
        inputs.sort_by_key(|i| ROLES.iter().position(|r| *r == i.role));
        let channel_id = self.our_channel(target).await?;
        let (state, active_inputs) = match &channel_id {
            Some(id) => {
                let described = self.describe_channel(id).await?;
                (
                    described.state().map(|s| s.as_str().to_string()),
                    active_inputs(&described),
                )
            }
            None => (None, Vec::new()),
        };
        let security_group_id = if self.options.input_security_groups {
            self.our_security_group(target).await?
        } else {
            None
        };
        if inputs.is_empty() && channel_id.is_none() && security_group_id.is_none() {
            return Ok(None);
        }
        Ok(Some(Provisioned {
            channel_group: Self::group_name(target),
            mediapackage_channel: target.channel().to_string(),
            security_group_id,
            inputs,
            channel_id,
            state,
            playback_url: self.playback_url(target).await?,
            active_inputs,
        }))
    }

    /// Where the box sends to: one feed per destination of each of our inputs, main first,
    /// SRT ones with the passphrase read back from Secrets Manager.
    pub async fn feeds(&self, target: &Target) -> Result<Vec<Feed>, ProvisionError> {
        let mut inputs = self.our_inputs(target).await?;
        inputs.sort_by_key(|i| {
            let role = i.tags().and_then(|t| t.get(TAG_INPUT));
            ROLES
                .iter()
                .position(|r| Some(*r) == role.map(String::as_str))
        });
        let mut passphrase = None;
        let mut feeds = Vec::new();
        for input in &inputs {
            let role = input
                .tags()
                .and_then(|t| t.get(TAG_INPUT))
                .cloned()
                .unwrap_or_default();
            let id = input.id().unwrap_or("?");
            let srt = input.r#type() == Some(&ml::InputType::SrtListener);
            let latency_ms = input
                .srt_settings()
                .and_then(|s| s.srt_listener_settings())
                .and_then(|l| l.minimum_latency())
                .and_then(|ms| u32::try_from(ms).ok());
            for (pipeline, destination) in input.destinations().iter().enumerate() {
                let url = match (destination.url(), destination.ip(), destination.port()) {
                    (Some(url), _, _) if !url.is_empty() => url.to_string(),
                    (_, Some(ip), Some(port)) if srt => format!("srt://{ip}:{port}"),
                    _ => {
                        return Err(ProvisionError::Aws {
                            operation: "ListInputs",
                            message: format!(
                                "the {role} MediaLive input {id} has no address for pipeline \
                                 {pipeline} yet: read the feeds again once AWS has assigned it"
                            ),
                        });
                    }
                };
                if srt && passphrase.is_none() {
                    passphrase = Some(self.read_passphrase(target).await?);
                }
                feeds.push(Feed {
                    role: role.clone(),
                    pipeline,
                    url,
                    passphrase: if srt { passphrase.clone() } else { None },
                    latency_ms: if srt { latency_ms } else { None },
                    key_bytes: srt.then_some(SRT_KEY_BYTES),
                });
            }
        }
        Ok(feeds)
    }

    async fn describe_channel(
        &self,
        id: &str,
    ) -> Result<aws_sdk_medialive::operation::describe_channel::DescribeChannelOutput, ProvisionError>
    {
        self.clients
            .medialive
            .describe_channel()
            .channel_id(id)
            .send()
            .await
            .map_err(aws("DescribeChannel"))
    }

    async fn channel_state(&self, id: &str) -> Result<Option<String>, ProvisionError> {
        let described = self.describe_channel(id).await?;
        Ok(described.state().map(|s| s.as_str().to_string()))
    }

    async fn wait_for_state(&self, id: &str, wanted: &[&str]) -> Result<String, ProvisionError> {
        let deadline = tokio::time::Instant::now() + self.options.wait;
        loop {
            let state = self.channel_state(id).await?.unwrap_or_default();
            if wanted.contains(&state.as_str()) {
                return Ok(state);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProvisionError::Timeout(format!(
                    "MediaLive channel {id} to be {} (it is {state})",
                    wanted.join(" or ")
                )));
            }
            tokio::time::sleep(self.options.poll).await;
        }
    }

    async fn required_channel(&self, target: &Target) -> Result<String, ProvisionError> {
        self.our_channel(target)
            .await?
            .ok_or_else(|| ProvisionError::NotProvisioned(target.channel().to_string()))
    }

    /// Starts the MediaLive channel; returns its state after the request.
    pub async fn start(&self, target: &Target) -> Result<String, ProvisionError> {
        let id = self.required_channel(target).await?;
        self.clients
            .medialive
            .start_channel()
            .channel_id(&id)
            .send()
            .await
            .map_err(aws("StartChannel"))?;
        Ok(self.channel_state(&id).await?.unwrap_or_default())
    }

    /// Stops the MediaLive channel; returns its state after the request.
    pub async fn stop(&self, target: &Target) -> Result<String, ProvisionError> {
        let id = self.required_channel(target).await?;
        self.clients
            .medialive
            .stop_channel()
            .channel_id(&id)
            .send()
            .await
            .map_err(aws("StopChannel"))?;
        Ok(self.channel_state(&id).await?.unwrap_or_default())
    }

    /// Deletes an input, waiting while MediaLive still has it attached to a channel being
    /// deleted.
    async fn delete_input(&self, id: &str) -> Result<(), ProvisionError> {
        let medialive = &self.clients.medialive;
        self.delete_patiently("DeleteInput", || {
            medialive.delete_input().input_id(id).send()
        })
        .await
    }

    /// Deletes an input security group, waiting while inputs being deleted still use it.
    async fn delete_security_group(&self, id: &str) -> Result<(), ProvisionError> {
        let medialive = &self.clients.medialive;
        self.delete_patiently("DeleteInputSecurityGroup", || {
            medialive
                .delete_input_security_group()
                .input_security_group_id(id)
                .send()
        })
        .await
    }

    /// Runs a delete until it succeeds, retrying while AWS answers 409 Conflict (the thing is
    /// still in use by something being deleted) for at most `options.wait`; already gone
    /// counts as deleted.
    async fn delete_patiently<O, E, R, F, Fut>(
        &self,
        operation: &'static str,
        mut send: F,
    ) -> Result<(), ProvisionError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<O, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let deadline = tokio::time::Instant::now() + self.options.wait;
        loop {
            match send().await {
                Ok(_) => return Ok(()),
                Err(e) if code(&e) == Some("NotFoundException") => return Ok(()),
                Err(e)
                    if code(&e) == Some("ConflictException")
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(self.options.poll).await;
                }
                Err(e) => return Err(aws(operation)(e)),
            }
        }
    }

    /// Stops and deletes everything tagged for `target`, and nothing else.
    pub async fn teardown(&self, target: &Target) -> Result<(), ProvisionError> {
        let medialive = &self.clients.medialive;
        if let Some(id) = self.our_channel(target).await? {
            // A channel on its way somewhere (creating, starting, stopping, updating) takes
            // no stop or delete until it gets there.
            const SETTLED: [&str; 4] = ["IDLE", "RUNNING", "CREATE_FAILED", "UPDATE_FAILED"];
            let state = self.wait_for_state(&id, &SETTLED).await?;
            if state == "RUNNING" {
                medialive
                    .stop_channel()
                    .channel_id(&id)
                    .send()
                    .await
                    .map_err(aws("StopChannel"))?;
                self.wait_for_state(&id, &["IDLE"]).await?;
            }
            medialive
                .delete_channel()
                .channel_id(&id)
                .send()
                .await
                .map_err(aws("DeleteChannel"))?;
        }
        for input in self.our_inputs(target).await? {
            if let Some(id) = input.id() {
                self.delete_input(id).await?;
            }
        }
        self.delete_secret(target).await?;
        if self.options.input_security_groups
            && let Some(id) = self.our_security_group(target).await?
        {
            self.delete_security_group(&id).await?;
        }
        self.delete_mediapackage(target).await
    }

    async fn delete_mediapackage(&self, target: &Target) -> Result<(), ProvisionError> {
        let mp_client = &self.clients.mediapackage;
        let group = Self::group_name(target);
        // MediaPackage refuses to delete a channel that still has origin endpoints.
        if self.options.origin_endpoints {
            match mp_client
                .get_origin_endpoint()
                .channel_group_name(&group)
                .channel_name(target.channel())
                .origin_endpoint_name(ORIGIN_ENDPOINT)
                .send()
                .await
            {
                Ok(found) if not_someone_elses(found.tags(), target) => {
                    mp_client
                        .delete_origin_endpoint()
                        .channel_group_name(&group)
                        .channel_name(target.channel())
                        .origin_endpoint_name(ORIGIN_ENDPOINT)
                        .send()
                        .await
                        .map_err(aws("DeleteOriginEndpoint"))?;
                }
                Ok(_) => {}
                Err(e) if code(&e) == Some("ResourceNotFoundException") => {}
                Err(e) => return Err(aws("GetOriginEndpoint")(e)),
            }
        }
        match mp_client
            .get_channel()
            .channel_group_name(&group)
            .channel_name(target.channel())
            .send()
            .await
        {
            Ok(found) if not_someone_elses(found.tags(), target) => {
                mp_client
                    .delete_channel()
                    .channel_group_name(&group)
                    .channel_name(target.channel())
                    .send()
                    .await
                    .map_err(aws("DeleteChannel (MediaPackage)"))?;
            }
            Ok(_) => {}
            Err(e) if code(&e) == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(aws("GetChannel (MediaPackage)")(e)),
        }
        match mp_client
            .get_channel_group()
            .channel_group_name(&group)
            .send()
            .await
        {
            Ok(found) if not_someone_elses(found.tags(), target) => {
                mp_client
                    .delete_channel_group()
                    .channel_group_name(&group)
                    .send()
                    .await
                    .map_err(aws("DeleteChannelGroup"))?;
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(aws("GetChannelGroup")(e)),
        }
    }
}

#[cfg(test)]
mod replay;

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::new("box-1", "program").expect("valid")
    }

    #[test]
    fn ownership_needs_both_tags() {
        let t = target();
        let ours = tags(&t);
        assert!(is_ours(Some(&ours), &t));
        let mut other = ours.clone();
        other.insert(TAG_CHANNEL.into(), "other".into());
        assert!(!is_ours(Some(&other), &t));
        assert!(!is_ours(None, &t));
        assert!(!is_ours(Some(&HashMap::new()), &t));
        // Names that are ours by construction: only tags naming someone else refuse them.
        assert!(not_someone_elses(None, &t));
        assert!(not_someone_elses(Some(&HashMap::new()), &t));
        assert!(!not_someone_elses(Some(&other), &t));
    }

    #[test]
    fn the_active_input_of_each_pipeline_is_read_from_the_description() {
        use aws_sdk_medialive::operation::describe_channel::DescribeChannelOutput;
        let described = DescribeChannelOutput::builder()
            .pipeline_details(
                ml::PipelineDetail::builder()
                    .pipeline_id("0")
                    .active_input_attachment_name("backup")
                    .build(),
            )
            .pipeline_details(
                ml::PipelineDetail::builder()
                    .pipeline_id("1")
                    .active_input_attachment_name("main")
                    .build(),
            )
            .build();
        assert_eq!(active_inputs(&described), ["backup", "main"]);
        assert!(active_inputs(&DescribeChannelOutput::builder().build()).is_empty());
    }

    #[test]
    fn cloud_mode_attaches_a_failover_pair() {
        let mut setup = MediaLiveSetup::new(Mode::Cloud);
        setup.input_loss_threshold_ms = 500;
        let a = Provisioner::attachments(&setup, &["in-a".into(), "in-b".into()]);
        assert_eq!(a.len(), 2);
        let failover = a[0]
            .automatic_input_failover_settings()
            .expect("failover on the main attachment");
        assert_eq!(failover.secondary_input_id(), Some("in-b"));
        assert_eq!(
            failover.input_preference(),
            Some(&ml::InputPreference::PrimaryInputPreferred)
        );
        assert_eq!(
            failover.failover_conditions()[0]
                .failover_condition_settings()
                .and_then(|s| s.input_loss_settings())
                .and_then(|l| l.input_loss_threshold_msec()),
            Some(500)
        );
        let edge = Provisioner::attachments(&MediaLiveSetup::new(Mode::Edge), &["in-a".into()]);
        assert_eq!(edge.len(), 1);
        assert!(edge[0].automatic_input_failover_settings().is_none());
    }

    #[test]
    fn black_and_silence_are_extra_failover_conditions_on_the_preset_audio() {
        let mut setup = MediaLiveSetup::new(Mode::Cloud);
        setup.video_black_ms = Some(3000);
        setup.audio_silence_ms = Some(5000);
        let a = Provisioner::attachments(&setup, &["in-a".into(), "in-b".into()]);
        let conditions: Vec<_> = a[0]
            .automatic_input_failover_settings()
            .expect("failover")
            .failover_conditions()
            .iter()
            .filter_map(|c| c.failover_condition_settings())
            .collect();
        assert_eq!(conditions.len(), 3);
        assert_eq!(
            conditions[0]
                .input_loss_settings()
                .and_then(|l| l.input_loss_threshold_msec()),
            Some(1000)
        );
        assert_eq!(
            conditions[1]
                .video_black_settings()
                .and_then(|v| v.video_black_threshold_msec()),
            Some(3000)
        );
        let silence = conditions[2].audio_silence_settings().expect("silence");
        assert_eq!(silence.audio_silence_threshold_msec(), Some(5000));
        assert_eq!(silence.audio_selector_name(), Some(AUDIO_SELECTOR));
        // The selector the condition names exists on both inputs.
        for attachment in &a {
            let selectors: Vec<_> = attachment
                .input_settings()
                .map(|s| {
                    s.audio_selectors()
                        .iter()
                        .filter_map(|a| a.name())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(selectors, [AUDIO_SELECTOR]);
        }
    }
}
