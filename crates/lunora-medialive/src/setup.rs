//! What a superadmin asks for on one channel (`MediaLiveSetup`), and the MediaLive rules the SDK
//! does not check before a request reaches AWS. Pure: no SDK types, no I/O.

use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::preset::Preset;

/// A problem with a setup or a target; `field` is the key of the request body (or `box_id` /
/// `channel`) it is about, and the message names it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: &'static str,
    pub message: String,
}

impl Problem {
    fn at(field: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            field,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where the two feeds are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The box switches main/backup itself and sends its one clean output to one input.
    Edge,
    /// The box forwards main and backup unchanged to two inputs attached as a MediaLive
    /// automatic input failover pair.
    Cloud,
}

/// The kind of MediaLive input the box sends to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// MediaLive takes RTMP publishes (the box pushes).
    #[default]
    RtmpPush,
    /// MediaLive listens for SRT (the box calls it, AES-encrypted).
    SrtListener,
}

impl InputType {
    /// MediaLive's name for the input type.
    pub fn aws_name(self) -> &'static str {
        match self {
            InputType::RtmpPush => "RTMP_PUSH",
            InputType::SrtListener => "SRT_LISTENER",
        }
    }

    /// Whether the sender pushes to MediaLive (what automatic input failover needs). Both kinds
    /// the box offers are; the check stays so a pull kind added later cannot slip into a pair.
    fn is_push(self) -> bool {
        match self {
            InputType::RtmpPush | InputType::SrtListener => true,
        }
    }
}

/// Which input of a failover pair MediaLive prefers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputPreference {
    /// Back to the main input as soon as it is healthy again.
    #[default]
    Primary,
    /// Stay on whichever input is running until it fails.
    Equal,
}

impl InputPreference {
    pub fn aws_name(self) -> &'static str {
        match self {
            InputPreference::Primary => "PRIMARY_INPUT_PREFERRED",
            InputPreference::Equal => "EQUAL_INPUT_PREFERENCE",
        }
    }
}

/// How many pipelines the MediaLive channel runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelClass {
    /// One pipeline: half the price, no redundancy inside AWS.
    #[default]
    SinglePipeline,
    /// Two pipelines in two availability zones, each push input with two destinations.
    Standard,
}

impl ChannelClass {
    pub fn aws_name(self) -> &'static str {
        match self {
            ChannelClass::SinglePipeline => "SINGLE_PIPELINE",
            ChannelClass::Standard => "STANDARD",
        }
    }

    /// The pipelines (and so the destinations of each push input).
    pub fn pipelines(self) -> usize {
        match self {
            ChannelClass::SinglePipeline => 1,
            ChannelClass::Standard => 2,
        }
    }
}

// serde's own message for an unknown variant does not name the field; derived by hand (not
// `try_from`) so the schema keeps the enum.
impl<'de> Deserialize<'de> for ChannelClass {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        match value.as_str() {
            "single_pipeline" => Ok(ChannelClass::SinglePipeline),
            "standard" => Ok(ChannelClass::Standard),
            _ => Err(serde::de::Error::custom(format!(
                "channel_class must be single_pipeline or standard; it is {value:?}"
            ))),
        }
    }
}

pub const DEFAULT_PRESET: &str = "abr-1080p";
pub const DEFAULT_SRT_LATENCY_MS: u32 = 2_000;
pub const DEFAULT_INPUT_LOSS_THRESHOLD_MS: u32 = 1_000;
pub const DEFAULT_ERROR_CLEAR_TIME_MS: u32 = 5_000;

/// The desired MediaLive + MediaPackage setup of one channel (`PUT …/medialive`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaLiveSetup {
    pub mode: Mode,
    #[serde(default)]
    pub input_type: InputType,
    /// `cloud` only: the backup input's type when it differs (a failover pair must be one
    /// type, so this exists to be refused with a reason rather than silently ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_input_type: Option<InputType>,
    /// An encoder preset: `abr-1080p` (1080p/720p/480p) or `abr-720p` (720p/480p), H.264 + AAC.
    #[serde(default = "default_preset")]
    pub preset: String,
    /// IPv4 CIDRs allowed to send to the input(s), e.g. `203.0.113.7/32`.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    #[serde(default)]
    pub input_preference: InputPreference,
    /// Stop the MediaLive channel when no input has reached it for this many minutes (1–1440).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1440))]
    pub stop_after_idle_min: Option<u32>,
    /// `srt_listener` only: SRT latency in milliseconds (120–15000).
    #[serde(default = "default_srt_latency")]
    #[schemars(range(min = 120, max = 15_000))]
    pub srt_latency_ms: u32,
    /// `single_pipeline` (default) or `standard` (two pipelines, twice the price).
    #[serde(default)]
    pub channel_class: ChannelClass,
    /// `cloud` only: how long an input must lose its signal before MediaLive fails over (≥ 100).
    #[serde(default = "default_input_loss_threshold")]
    #[schemars(range(min = 100))]
    pub input_loss_threshold_ms: u32,
    /// `cloud` only: how long an input must be clean again before it counts as healthy (≥ 1).
    #[serde(default = "default_error_clear_time")]
    #[schemars(range(min = 1))]
    pub error_clear_time_ms: u32,
    /// `cloud` only: fail over when the picture has been black this long (≥ 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1000))]
    pub video_black_ms: Option<u32>,
    /// `cloud` only: fail over when the audio has been below −50 dBFS this long (≥ 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1000))]
    pub audio_silence_ms: Option<u32>,
}

fn default_preset() -> String {
    DEFAULT_PRESET.to_string()
}
fn default_srt_latency() -> u32 {
    DEFAULT_SRT_LATENCY_MS
}
fn default_input_loss_threshold() -> u32 {
    DEFAULT_INPUT_LOSS_THRESHOLD_MS
}
fn default_error_clear_time() -> u32 {
    DEFAULT_ERROR_CLEAR_TIME_MS
}

impl MediaLiveSetup {
    /// A setup with every default but `mode`.
    pub fn new(mode: Mode) -> MediaLiveSetup {
        MediaLiveSetup {
            mode,
            input_type: InputType::default(),
            backup_input_type: None,
            preset: default_preset(),
            allowed_cidrs: Vec::new(),
            input_preference: InputPreference::default(),
            stop_after_idle_min: None,
            srt_latency_ms: DEFAULT_SRT_LATENCY_MS,
            channel_class: ChannelClass::default(),
            input_loss_threshold_ms: DEFAULT_INPUT_LOSS_THRESHOLD_MS,
            error_clear_time_ms: DEFAULT_ERROR_CLEAR_TIME_MS,
            video_black_ms: None,
            audio_silence_ms: None,
        }
    }

    /// The input types in use: main first, then the backup in `cloud` mode.
    pub fn input_types(&self) -> Vec<InputType> {
        match self.mode {
            Mode::Edge => vec![self.input_type],
            Mode::Cloud => vec![
                self.input_type,
                self.backup_input_type.unwrap_or(self.input_type),
            ],
        }
    }

    pub fn uses_srt(&self) -> bool {
        self.input_types().contains(&InputType::SrtListener)
    }

    /// The black and silence failover conditions asked for, by field name.
    fn content_conditions(&self) -> Vec<(&'static str, u32)> {
        [
            ("video_black_ms", self.video_black_ms),
            ("audio_silence_ms", self.audio_silence_ms),
        ]
        .into_iter()
        .filter_map(|(field, value)| value.map(|v| (field, v)))
        .collect()
    }

    /// Every problem at once, each naming its field.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if Preset::named(&self.preset).is_none() {
            problems.push(Problem::at(
                "preset",
                format!(
                    "preset {:?} is not one of: {}",
                    self.preset,
                    Preset::NAMES.join(", ")
                ),
            ));
        }
        for (n, cidr) in self.allowed_cidrs.iter().enumerate() {
            if let Err(why) = check_cidr(cidr) {
                problems.push(Problem::at(
                    "allowed_cidrs",
                    format!(
                        "allowed_cidrs[{n}] {cidr:?} is not an IPv4 CIDR like 203.0.113.7/32: {why}"
                    ),
                ));
            }
        }
        if let Some(minutes) = self.stop_after_idle_min
            && !(1..=1440).contains(&minutes)
        {
            problems.push(Problem::at(
                "stop_after_idle_min",
                format!("stop_after_idle_min must be 1–1440 minutes; it is {minutes}"),
            ));
        }
        if self.uses_srt() && !(120..=15_000).contains(&self.srt_latency_ms) {
            problems.push(Problem::at(
                "srt_latency_ms",
                format!(
                    "srt_latency_ms must be 120–15000 (MediaLive's SRT listener range); it is {}",
                    self.srt_latency_ms
                ),
            ));
        }
        match self.mode {
            Mode::Edge => {
                if let Some(backup) = self.backup_input_type {
                    problems.push(Problem::at(
                        "backup_input_type",
                        format!(
                            "backup_input_type ({}) applies to cloud mode only: in edge mode the \
                             box sends one output to one input",
                            backup.aws_name()
                        ),
                    ));
                }
                for (field, value) in self.content_conditions() {
                    problems.push(Problem::at(
                        field,
                        format!(
                            "{field} ({value}) applies to cloud mode only: it is a condition \
                             for failing over to the backup input"
                        ),
                    ));
                }
            }
            Mode::Cloud => {
                if let Some(problem) = failover_pair(self.input_type, self.backup_input_type) {
                    problems.push(problem);
                }
                if self.input_loss_threshold_ms < 100 {
                    problems.push(Problem::at(
                        "input_loss_threshold_ms",
                        format!(
                            "input_loss_threshold_ms must be at least 100 (MediaLive's minimum); it is {}",
                            self.input_loss_threshold_ms
                        ),
                    ));
                }
                if self.error_clear_time_ms < 1 {
                    problems.push(Problem::at(
                        "error_clear_time_ms",
                        "error_clear_time_ms must be at least 1",
                    ));
                }
                for (field, value) in self.content_conditions() {
                    if value < 1000 {
                        problems.push(Problem::at(
                            field,
                            format!(
                                "{field} must be at least 1000 (MediaLive's minimum); it is {value}"
                            ),
                        ));
                    }
                }
            }
        }
        problems
    }
}

/// Automatic input failover joins two push inputs of one type.
fn failover_pair(main: InputType, backup: Option<InputType>) -> Option<Problem> {
    let backup = backup.unwrap_or(main);
    if backup != main {
        return Some(Problem::at(
            "backup_input_type",
            format!(
                "backup_input_type must equal input_type in cloud mode: a MediaLive failover pair \
                 is two inputs of one type ({} and {} given)",
                main.aws_name(),
                backup.aws_name()
            ),
        ));
    }
    if !main.is_push() {
        return Some(Problem::at(
            "input_type",
            format!(
                "input_type {} cannot be in a failover pair: MediaLive pairs push inputs only",
                main.aws_name()
            ),
        ));
    }
    None
}

fn check_cidr(cidr: &str) -> Result<(), String> {
    let (address, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| "no /prefix".to_string())?;
    let address: Ipv4Addr = address
        .parse()
        .map_err(|_| format!("{address:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("prefix {prefix:?} is not 0–32"))?;
    let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    if u32::from(address) & host_bits != 0 {
        return Err(format!("host bits are set after /{prefix}"));
    }
    Ok(())
}

/// Lunora channel and box ids become AWS names (`lunora-<box>-<channel>`) and tag values:
/// 1–64 characters of a-z, 0-9, '-' or '_' keep both within every service's name rules
/// (MediaPackage v2: `[A-Za-z0-9_-]`, at most 256).
pub const ID_RULE: &str = "must be 1–64 characters of a-z, 0-9, '-' or '_'";

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whose resources these are: the box and the Lunora channel, as in the `lunora:box` and
/// `lunora:channel` tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    box_id: String,
    channel: String,
}

impl Target {
    pub fn new(box_id: &str, channel: &str) -> Result<Target, Vec<Problem>> {
        let mut problems = Vec::new();
        if !valid_id(box_id) {
            problems.push(Problem::at(
                "box_id",
                format!("box_id {box_id:?} {ID_RULE}"),
            ));
        }
        if !valid_id(channel) {
            problems.push(Problem::at(
                "channel",
                format!("channel id {channel:?} {ID_RULE}"),
            ));
        }
        if problems.is_empty() {
            Ok(Target {
                box_id: box_id.to_string(),
                channel: channel.to_string(),
            })
        } else {
            Err(problems)
        }
    }

    pub fn box_id(&self) -> &str {
        &self.box_id
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The name every resource made for this channel carries.
    pub fn name(&self) -> String {
        format!("lunora-{}-{}", self.box_id, self.channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(setup: &MediaLiveSetup) -> Vec<String> {
        setup.validate().into_iter().map(|p| p.message).collect()
    }

    fn only(setup: &MediaLiveSetup) -> Problem {
        let problems = setup.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        problems.into_iter().next().expect("one problem")
    }

    #[test]
    fn every_field_but_mode_has_a_default() {
        let setup: MediaLiveSetup =
            serde_json::from_str(r#"{"mode": "edge"}"#).expect("mode alone parses");
        assert_eq!(setup, MediaLiveSetup::new(Mode::Edge));
        assert!(setup.validate().is_empty(), "{:?}", setup.validate());
        let missing = serde_json::from_str::<MediaLiveSetup>("{}")
            .expect_err("mode is required")
            .to_string();
        assert!(missing.contains("mode"), "{missing}");
        let unknown = serde_json::from_str::<MediaLiveSetup>(r#"{"mode":"edge","mdoe":1}"#)
            .expect_err("unknown keys are refused")
            .to_string();
        assert!(unknown.contains("mdoe"), "{unknown}");
    }

    #[test]
    fn srt_listener_needs_nothing_but_the_type() {
        // The box makes the AES passphrase itself (Secrets Manager), so none is asked for.
        let setup: MediaLiveSetup =
            serde_json::from_str(r#"{"mode": "edge", "input_type": "srt_listener"}"#)
                .expect("parses");
        assert!(setup.validate().is_empty(), "{:?}", setup.validate());
        assert!(setup.uses_srt());
        let old = serde_json::from_str::<MediaLiveSetup>(
            r#"{"mode": "edge", "input_type": "srt_listener", "srt_passphrase": "x"}"#,
        )
        .expect_err("a passphrase is no longer taken")
        .to_string();
        assert!(old.contains("srt_passphrase"), "{old}");
    }

    #[test]
    fn channel_class_is_single_pipeline_or_standard() {
        assert_eq!(
            MediaLiveSetup::new(Mode::Edge).channel_class,
            ChannelClass::SinglePipeline
        );
        let standard: MediaLiveSetup =
            serde_json::from_str(r#"{"mode": "cloud", "channel_class": "standard"}"#)
                .expect("parses");
        assert_eq!(standard.channel_class.pipelines(), 2);
        assert_eq!(standard.channel_class.aws_name(), "STANDARD");
        let wrong =
            serde_json::from_str::<MediaLiveSetup>(r#"{"mode": "edge", "channel_class": "dual"}"#)
                .expect_err("refused")
                .to_string();
        assert!(
            wrong.starts_with("channel_class must be single_pipeline or standard; it is \"dual\""),
            "{wrong}"
        );
    }

    #[test]
    fn the_schema_lists_the_channel_classes() {
        let schema = serde_json::to_value(schemars::schema_for!(MediaLiveSetup)).expect("JSON");
        let values: Vec<_> = schema["$defs"]["ChannelClass"]["oneOf"]
            .as_array()
            .map(|choices| choices.iter().map(|c| c["const"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(values, ["single_pipeline", "standard"], "{schema}");
    }

    #[test]
    fn black_and_silence_are_cloud_conditions_of_at_least_a_second() {
        let mut setup = MediaLiveSetup::new(Mode::Cloud);
        setup.video_black_ms = Some(999);
        setup.audio_silence_ms = Some(500);
        let problems: Vec<_> = setup
            .validate()
            .into_iter()
            .map(|p| (p.field, p.message))
            .collect();
        assert_eq!(
            problems,
            [
                (
                    "video_black_ms",
                    "video_black_ms must be at least 1000 (MediaLive's minimum); it is 999"
                        .to_string()
                ),
                (
                    "audio_silence_ms",
                    "audio_silence_ms must be at least 1000 (MediaLive's minimum); it is 500"
                        .to_string()
                ),
            ]
        );
        setup.video_black_ms = Some(1000);
        setup.audio_silence_ms = Some(2000);
        assert!(setup.validate().is_empty());
        let mut edge = MediaLiveSetup::new(Mode::Edge);
        edge.audio_silence_ms = Some(2000);
        let p = only(&edge);
        assert_eq!(p.field, "audio_silence_ms");
        assert_eq!(
            p.message,
            "audio_silence_ms (2000) applies to cloud mode only: it is a condition for failing \
             over to the backup input"
        );
    }

    #[test]
    fn srt_latency_is_120_to_15000_ms() {
        let mut setup = MediaLiveSetup::new(Mode::Cloud);
        setup.input_type = InputType::SrtListener;
        setup.srt_latency_ms = 119;
        let p = only(&setup);
        assert_eq!(p.field, "srt_latency_ms");
        assert_eq!(
            p.message,
            "srt_latency_ms must be 120–15000 (MediaLive's SRT listener range); it is 119"
        );
        setup.srt_latency_ms = 15_001;
        assert_eq!(only(&setup).field, "srt_latency_ms");
        for ok in [120, 15_000] {
            setup.srt_latency_ms = ok;
            assert!(setup.validate().is_empty());
        }
        // Only SRT inputs have a latency.
        let mut rtmp = MediaLiveSetup::new(Mode::Edge);
        rtmp.srt_latency_ms = 5;
        assert!(rtmp.validate().is_empty());
    }

    #[test]
    fn a_failover_pair_is_two_inputs_of_one_type() {
        let mut setup = MediaLiveSetup::new(Mode::Cloud);
        setup.backup_input_type = Some(InputType::SrtListener);
        let p = only(&setup);
        assert_eq!(p.field, "backup_input_type");
        assert_eq!(
            p.message,
            "backup_input_type must equal input_type in cloud mode: a MediaLive failover pair is \
             two inputs of one type (RTMP_PUSH and SRT_LISTENER given)"
        );
        setup.backup_input_type = Some(InputType::RtmpPush);
        assert!(setup.validate().is_empty());
        assert_eq!(
            setup.input_types(),
            [InputType::RtmpPush, InputType::RtmpPush]
        );
    }

    #[test]
    fn edge_mode_has_no_backup_input() {
        let mut setup = MediaLiveSetup::new(Mode::Edge);
        setup.backup_input_type = Some(InputType::RtmpPush);
        let p = only(&setup);
        assert_eq!(p.field, "backup_input_type");
        assert_eq!(
            p.message,
            "backup_input_type (RTMP_PUSH) applies to cloud mode only: in edge mode the box \
             sends one output to one input"
        );
    }

    #[test]
    fn input_loss_threshold_is_at_least_100_ms() {
        let mut setup = MediaLiveSetup::new(Mode::Cloud);
        setup.input_loss_threshold_ms = 99;
        let p = only(&setup);
        assert_eq!(p.field, "input_loss_threshold_ms");
        assert_eq!(
            p.message,
            "input_loss_threshold_ms must be at least 100 (MediaLive's minimum); it is 99"
        );
        setup.input_loss_threshold_ms = 100;
        assert!(setup.validate().is_empty());
        setup.error_clear_time_ms = 0;
        assert_eq!(messages(&setup), ["error_clear_time_ms must be at least 1"]);
    }

    #[test]
    fn cidrs_are_ipv4_with_a_prefix_and_no_host_bits() {
        let mut setup = MediaLiveSetup::new(Mode::Edge);
        setup.allowed_cidrs = ["203.0.113.7/32", "10.0.0.0/8", "0.0.0.0/0"]
            .map(String::from)
            .to_vec();
        assert!(setup.validate().is_empty());
        setup.allowed_cidrs = [
            "203.0.113.7",
            "10.0.0.0/33",
            "10.0.0.1/24",
            "::1/128",
            "x/8",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            messages(&setup),
            [
                "allowed_cidrs[0] \"203.0.113.7\" is not an IPv4 CIDR like 203.0.113.7/32: no /prefix",
                "allowed_cidrs[1] \"10.0.0.0/33\" is not an IPv4 CIDR like 203.0.113.7/32: prefix \"33\" is not 0–32",
                "allowed_cidrs[2] \"10.0.0.1/24\" is not an IPv4 CIDR like 203.0.113.7/32: host bits are set after /24",
                "allowed_cidrs[3] \"::1/128\" is not an IPv4 CIDR like 203.0.113.7/32: \"::1\" is not an IPv4 address",
                "allowed_cidrs[4] \"x/8\" is not an IPv4 CIDR like 203.0.113.7/32: \"x\" is not an IPv4 address",
            ]
        );
        assert!(setup.validate().iter().all(|p| p.field == "allowed_cidrs"));
    }

    #[test]
    fn preset_must_be_known() {
        let mut setup = MediaLiveSetup::new(Mode::Edge);
        setup.preset = "4k-hdr".into();
        let p = only(&setup);
        assert_eq!(p.field, "preset");
        assert_eq!(
            p.message,
            "preset \"4k-hdr\" is not one of: abr-1080p, abr-720p"
        );
    }

    #[test]
    fn idle_stop_is_1_to_1440_minutes() {
        let mut setup = MediaLiveSetup::new(Mode::Edge);
        setup.stop_after_idle_min = Some(0);
        let p = only(&setup);
        assert_eq!(p.field, "stop_after_idle_min");
        assert_eq!(
            p.message,
            "stop_after_idle_min must be 1–1440 minutes; it is 0"
        );
        setup.stop_after_idle_min = Some(30);
        assert!(setup.validate().is_empty());
    }

    #[test]
    fn box_and_channel_ids_fit_aws_names_and_tags() {
        let target = Target::new("studio-1", "program").expect("valid ids");
        assert_eq!(target.name(), "lunora-studio-1-program");
        let problems = Target::new("Studio 1", &"c".repeat(65)).expect_err("invalid ids");
        let problems: Vec<_> = problems
            .iter()
            .map(|p| (p.field, p.message.as_str()))
            .collect();
        assert_eq!(
            problems,
            [
                (
                    "box_id",
                    "box_id \"Studio 1\" must be 1–64 characters of a-z, 0-9, '-' or '_'"
                ),
                (
                    "channel",
                    &*format!(
                        "channel id {:?} must be 1–64 characters of a-z, 0-9, '-' or '_'",
                        "c".repeat(65)
                    )
                ),
            ]
        );
    }
}
