//! What an operator sets for every component — channel, input, output — in one closed enum per
//! kind. The config file and the API deserialize the same types and run the same validation,
//! so a setting accepted in one place is accepted in the other.
//!
//! Each kind answers three questions: is it valid (`validate`, every problem at once), what does
//! it claim on the box (`resources`: UDP ports, RTMP stream keys — two components can never
//! claim one), and how is it shown (`view`: secrets replaced by `*_set`).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use lunora_egress::{DestinationSpec, Preset, SpecField};
use lunora_media::Secret;
use lunora_switch::content::ContentSettings;
use lunora_switch::{AlignedClock, HealthSettings, Policy, Preference, Reason, SwitchMode};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::profiles::{Profiles, Transcode, transcode_problem};

/// How every id is explained when it breaks the rule.
pub const ID_RULE: &str = "must be 1–64 characters of a-z, 0-9, '-' or '_'";

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The stable id of ", $what, ": the key in the config file, the API's paths and the metrics.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Any text is held (so that one bad id does not hide the file's other errors);
            /// [`validate`] reports the ones that break [`ID_RULE`].
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn is_valid(&self) -> bool {
                valid_id(&self.0)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": "^[a-z0-9_-]{1,64}$",
                    "title": "id",
                    "description": concat!("The id of ", $what, ": 1–64 characters of a-z, 0-9, '-' or '_'."),
                })
            }
        }
    };
}

id_type!(ChannelId, "a channel");
id_type!(InputId, "an input");
id_type!(OutputId, "an output");

/// A problem with one component's settings; `field` is the config key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: Option<&'static str>,
    pub message: String,
}

impl Problem {
    pub(crate) fn at(field: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            field: Some(field),
            message: message.into(),
        }
    }
}

/// Something on the box only one component can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A UDP port an SRT listener binds.
    UdpPort(SocketAddr),
    /// A stream key on the shared RTMP server.
    RtmpStreamKey(Secret),
}

impl Resource {
    /// Whether two claims collide: the same key, or the same port on overlapping addresses.
    pub fn collides(&self, other: &Resource) -> bool {
        match (self, other) {
            (Resource::UdpPort(a), Resource::UdpPort(b)) => {
                a.port() == b.port()
                    && a.port() != 0
                    && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
            }
            (Resource::RtmpStreamKey(a), Resource::RtmpStreamKey(b)) => a == b,
            _ => false,
        }
    }

    /// For messages: the port, never the key.
    pub fn describe(&self) -> String {
        match self {
            Resource::UdpPort(address) => format!("UDP port {}", address.port()),
            Resource::RtmpStreamKey(_) => "this RTMP stream key".into(),
        }
    }
}

// ---- channels ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelMode {
    /// One input.
    Single,
    /// One main input and backups it fails over to.
    MainBackup,
}

impl ChannelMode {
    pub fn name(self) -> &'static str {
        match self {
            ChannelMode::Single => "single",
            ChannelMode::MainBackup => "main-backup",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum PreferenceSetting {
    /// Return to the main once it has been healthy for `error_clear_ms`.
    #[default]
    Primary,
    /// Stay on whatever input is on air while it is fine.
    Equal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum SwitchSetting {
    /// Cut at the standby's next keyframe.
    #[default]
    Cut,
    /// Run one GOP behind live so every seam lands on the matching frame.
    Aligned,
    /// Packet-level merge (SMPTE 2022-7) of two RTP inputs carrying the same stream: the
    /// first copy of each packet wins.
    Merge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClockSetting {
    /// Same content arrives at the same time on both inputs (encoders of one model and setting).
    Arrival,
    /// Both encoders stamp the source's timecode: the same picture has the same timestamp.
    Shared,
    /// Each encoder stamps its own clock: the box matches the inputs' pictures (needs the
    /// media engine).
    Content,
}

fn default_input_loss() -> u64 {
    500
}

fn default_error_clear() -> u64 {
    5000
}

/// `[channels.failover]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverSettings {
    /// No packet for this long: the input is lost (at least 50).
    #[serde(default = "default_input_loss")]
    #[schemars(range(min = 50, max = 600_000))]
    pub input_loss_ms: u64,
    #[serde(default)]
    pub preference: PreferenceSetting,
    /// How long the main must be healthy before the channel returns to it.
    #[serde(default = "default_error_clear")]
    #[schemars(range(max = 600_000))]
    pub error_clear_ms: u64,
    #[serde(default)]
    pub switch: SwitchSetting,
    /// Which degradations move the channel off an input (loss always does); default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 10_000))]
    pub aligned_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aligned_clock: Option<ClockSetting>,
    /// With `switch = "merge"`: the largest delay between the two paths absorbed, ms
    /// (default 50, at most 450).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 450))]
    pub merge_window_ms: Option<u64>,
    /// Decode every input at low resolution to find black, frozen and silent content. Also on
    /// when `triggers` names `black`, `frozen` or `silent`.
    #[serde(default)]
    pub content_health: bool,
    /// A picture whose mean luma is below this percentage of the range is black (1–50).
    #[serde(default = "default_black_threshold")]
    #[schemars(range(min = 1, max = 50))]
    pub black_threshold_percent: u32,
    /// Black for this long: the `black` reason (1000–600000).
    #[serde(default = "default_content_ms")]
    #[schemars(range(min = 1000, max = 600_000))]
    pub black_ms: u64,
    /// The picture unchanged for this long: the `frozen` reason (1000–600000).
    #[serde(default = "default_content_ms")]
    #[schemars(range(min = 1000, max = 600_000))]
    pub freeze_ms: u64,
    /// Audio whose RMS level is below this (dBFS, -90 to -10) is silent.
    #[serde(default = "default_silence_db")]
    #[schemars(range(min = -90, max = -10))]
    pub silence_db: i32,
    /// Silent for this long: the `silent` reason (1000–600000).
    #[serde(default = "default_content_ms")]
    #[schemars(range(min = 1000, max = 600_000))]
    pub silence_ms: u64,
}

const DEFAULT_MERGE_WINDOW_MS: u64 = 50;

fn default_black_threshold() -> u32 {
    10
}

fn default_content_ms() -> u64 {
    2000
}

fn default_silence_db() -> i32 {
    -50
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            input_loss_ms: default_input_loss(),
            preference: PreferenceSetting::Primary,
            error_clear_ms: default_error_clear(),
            switch: SwitchSetting::Cut,
            triggers: None,
            aligned_delay_ms: None,
            aligned_clock: None,
            merge_window_ms: None,
            content_health: false,
            black_threshold_percent: default_black_threshold(),
            black_ms: default_content_ms(),
            freeze_ms: default_content_ms(),
            silence_db: default_silence_db(),
            silence_ms: default_content_ms(),
        }
    }
}

impl FailoverSettings {
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.input_loss_ms < 50 || self.input_loss_ms > 600_000 {
            problems.push(Problem::at(
                "input_loss_ms",
                format!(
                    "input_loss_ms must be between 50 and 600000; it is {}",
                    self.input_loss_ms
                ),
            ));
        }
        if self.error_clear_ms > 600_000 {
            problems.push(Problem::at(
                "error_clear_ms",
                format!(
                    "error_clear_ms must be at most 600000; it is {}",
                    self.error_clear_ms
                ),
            ));
        }
        if let Some(delay) = self.aligned_delay_ms
            && !(100..=10_000).contains(&delay)
        {
            problems.push(Problem::at(
                "aligned_delay_ms",
                format!(
                    "aligned_delay_ms must be between 100 and 10000 (at least one GOP); it is {delay}"
                ),
            ));
        }
        if let Some(window) = self.merge_window_ms {
            if self.switch != SwitchSetting::Merge {
                problems.push(Problem::at(
                    "merge_window_ms",
                    "merge_window_ms applies to switch = \"merge\"",
                ));
            } else if !(1..=450).contains(&window) {
                problems.push(Problem::at(
                    "merge_window_ms",
                    format!("merge_window_ms must be between 1 and 450; it is {window}"),
                ));
            }
        }
        match self.switch {
            SwitchSetting::Cut | SwitchSetting::Merge => {
                if self.aligned_delay_ms.is_some() {
                    problems.push(Problem::at(
                        "aligned_delay_ms",
                        "aligned_delay_ms applies to switch = \"aligned\"",
                    ));
                }
                if self.aligned_clock.is_some() {
                    problems.push(Problem::at(
                        "aligned_clock",
                        "aligned_clock applies to switch = \"aligned\"",
                    ));
                }
            }
            SwitchSetting::Aligned => {}
        }
        for name in self.triggers.iter().flatten() {
            if Reason::from_name(name).is_none() {
                let known: Vec<&str> = Reason::ALL.iter().map(|r| r.name()).collect();
                problems.push(Problem::at(
                    "triggers",
                    format!("unknown trigger {name:?}; known: {}", known.join(", ")),
                ));
            }
        }
        self.validate_content(&mut problems);
        problems
    }

    fn validate_content(&self, problems: &mut Vec<Problem>) {
        if !(1..=50).contains(&self.black_threshold_percent) {
            problems.push(Problem::at(
                "black_threshold_percent",
                format!(
                    "black_threshold_percent must be between 1 and 50; it is {}",
                    self.black_threshold_percent
                ),
            ));
        }
        for (key, ms) in [
            ("black_ms", self.black_ms),
            ("freeze_ms", self.freeze_ms),
            ("silence_ms", self.silence_ms),
        ] {
            if !(1000..=600_000).contains(&ms) {
                problems.push(Problem::at(
                    key,
                    format!("{key} must be between 1000 and 600000; it is {ms}"),
                ));
            }
        }
        if !(-90..=-10).contains(&self.silence_db) {
            problems.push(Problem::at(
                "silence_db",
                format!(
                    "silence_db must be between -90 and -10 (dBFS); it is {}",
                    self.silence_db
                ),
            ));
        }
        if !cfg!(feature = "engine") && self.content_alignment() {
            problems.push(Problem::at(
                "aligned_clock",
                "aligned_clock = \"content\" decodes the inputs' pictures with the media engine, \
                 which this build does not have (built without the `gstreamer` feature): use \
                 \"arrival\" or \"shared\", or a build with GStreamer",
            ));
        }
        if !cfg!(feature = "engine") && self.content().is_some() {
            let key = if self.content_health {
                "content_health"
            } else {
                "triggers"
            };
            problems.push(Problem::at(
                key,
                "content health (black, frozen, silent) needs the media engine, which this build \
                 does not have (built without the `gstreamer` feature): remove it or use a build \
                 with GStreamer",
            ));
        }
    }

    /// Whether aligned mode matches the inputs' pictures (`aligned_clock = "content"`).
    pub fn content_alignment(&self) -> bool {
        self.switch == SwitchSetting::Aligned && self.aligned_clock == Some(ClockSetting::Content)
    }

    /// Content health's thresholds when it runs: `content_health = true`, or `triggers` names
    /// a content reason (the default "all reasons" does not turn it on).
    pub fn content(&self) -> Option<ContentSettings> {
        let triggered = self
            .triggers
            .iter()
            .flatten()
            .filter_map(|name| Reason::from_name(name))
            .any(|reason| Reason::CONTENT.contains(&reason));
        (self.content_health || triggered).then(|| ContentSettings {
            black_threshold: self.black_threshold_percent as f32 / 100.0,
            black: Duration::from_millis(self.black_ms),
            freeze: Duration::from_millis(self.freeze_ms),
            silence_db: self.silence_db as f32,
            silence: Duration::from_millis(self.silence_ms),
        })
    }

    /// The merger's window when the channel merges two paths.
    pub fn merge_window(&self) -> Option<Duration> {
        (self.switch == SwitchSetting::Merge)
            .then(|| Duration::from_millis(self.merge_window_ms.unwrap_or(DEFAULT_MERGE_WINDOW_MS)))
    }

    /// The switcher's policy (call after [`FailoverSettings::validate`] found nothing).
    pub fn policy(&self) -> Policy {
        Policy {
            health: HealthSettings {
                input_loss: Duration::from_millis(self.input_loss_ms),
                ..HealthSettings::default()
            },
            preference: match self.preference {
                PreferenceSetting::Primary => Preference::Primary,
                PreferenceSetting::Equal => Preference::Equal,
            },
            error_clear: Duration::from_millis(self.error_clear_ms),
            triggers: match &self.triggers {
                None => Reason::ALL.to_vec(),
                Some(names) => names.iter().filter_map(|n| Reason::from_name(n)).collect(),
            },
            mode: match self.switch {
                SwitchSetting::Aligned => SwitchMode::Aligned {
                    delay: self.aligned_delay_ms.map(Duration::from_millis),
                    clock: match self.aligned_clock {
                        Some(ClockSetting::Shared) => AlignedClock::Shared,
                        Some(ClockSetting::Content) => AlignedClock::Content,
                        Some(ClockSetting::Arrival) | None => AlignedClock::Arrival,
                    },
                },
                SwitchSetting::Cut | SwitchSetting::Merge => SwitchMode::Cut,
            },
        }
    }
}

/// A channel's own settings (its inputs and outputs are components of their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    pub id: ChannelId,
    pub mode: ChannelMode,
    #[serde(default)]
    pub failover: FailoverSettings,
    /// The channel's "broadcast hold"; left out, the box-wide `[slate]` applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slate: Option<SlateSettings>,
}

/// The id the channel's slate goes by in switches, events and `active_input`.
pub const SLATE_INPUT: &str = "slate";

fn default_true() -> bool {
    true
}

fn default_slate_after() -> u64 {
    1_000
}

/// When every input of a channel has been lost for `after_ms`, the channel sends a slate — an
/// image, or a card with the channel name and since when the signal is lost, with silence —
/// encoded like what the channel last carried, so platforms (YouTube, X, LinkedIn) and
/// MediaLive keep the session open. The first keyframe of a returning input ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlateSettings {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long every input must have been lost before the slate goes on air (0–60000 ms).
    #[serde(default = "default_slate_after")]
    #[schemars(range(min = 0, max = 60_000))]
    pub after_ms: u64,
    /// A PNG or JPEG to show instead of the built-in card (scaled to the channel's picture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub image: Option<std::path::PathBuf>,
}

impl Default for SlateSettings {
    fn default() -> Self {
        SlateSettings {
            enabled: true,
            after_ms: default_slate_after(),
            image: None,
        }
    }
}

impl SlateSettings {
    /// Every problem, with the key (under `slate`) it is about.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.after_ms > 60_000 {
            problems.push(Problem::at(
                "slate.after_ms",
                format!(
                    "slate.after_ms must be at most 60000; it is {}",
                    self.after_ms
                ),
            ));
        }
        if let Some(image) = &self.image {
            let extension = image
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if !image.is_absolute() || !matches!(extension.as_deref(), Some("png" | "jpg" | "jpeg"))
            {
                problems.push(Problem::at(
                    "slate.image",
                    format!(
                        "slate.image must be an absolute path to a .png or .jpg file; it is {:?}",
                        image.display().to_string()
                    ),
                ));
            }
        }
        problems
    }
}

// ---- inputs --------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum InputRole {
    #[default]
    Main,
    Backup,
}

impl InputRole {
    pub fn name(self) -> &'static str {
        match self {
            InputRole::Main => "main",
            InputRole::Backup => "backup",
        }
    }
}

fn default_latency() -> u64 {
    120
}

/// An SRT listener an encoder (Videon, ffmpeg, OBS) calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SrtInputSettings {
    pub id: InputId,
    #[serde(default)]
    pub role: InputRole,
    /// The UDP address to listen on, e.g. 0.0.0.0:9000.
    #[schemars(with = "String", extend("examples" = ["0.0.0.0:9000"]))]
    pub listen: SocketAddr,
    /// SRT latency in milliseconds (20–15000).
    #[serde(default = "default_latency")]
    #[schemars(range(min = 20, max = 15_000))]
    pub latency_ms: u64,
    /// AES passphrase (10–79 characters); the caller's key length is accepted.
    #[serde(
        default,
        with = "lunora_media::exposed_secret",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub passphrase: Option<Secret>,
    /// Callers with another stream id are rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RtpFormatSetting {
    /// MPEG-TS over RTP (payload type 33): hardware encoders, ffmpeg's `rtp_mpegts`.
    #[default]
    Mpegts,
    /// MPEG-TS straight in UDP datagrams (no RTP header: no loss or reorder figures).
    UdpTs,
    /// H.264 and AAC each on its own RTP port, as the SDP file in `sdp` describes them
    /// (ffmpeg's `-f rtp … -sdp_file`); streams with B-frames are not supported.
    Sdp,
}

fn default_reorder() -> u64 {
    50
}

/// An RTP (or plain UDP) MPEG-TS stream sent to a port of this box, unicast or multicast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RtpInputSettings {
    pub id: InputId,
    #[serde(default)]
    pub role: InputRole,
    /// The UDP address to receive on: a local address (0.0.0.0:5000), or a multicast group
    /// to join (239.1.1.1:5000).
    #[schemars(with = "String", extend("examples" = ["0.0.0.0:5000"]))]
    pub listen: SocketAddr,
    #[serde(default)]
    pub format: RtpFormatSetting,
    /// Multicast only: accept the group from this sender alone (source-specific multicast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub source: Option<std::net::Ipv4Addr>,
    /// Multicast only: the address of the local interface to join the group on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub interface: Option<std::net::Ipv4Addr>,
    /// How long a missing RTP packet is waited for before it counts as lost (0–1000 ms).
    #[serde(default = "default_reorder")]
    #[schemars(range(min = 0, max = 1_000))]
    pub reorder_ms: u64,
    /// `format = "mpegts"` only: receive SMPTE 2022-1 FEC (column FEC on listen's port + 2,
    /// row FEC on + 4) and rebuild lost packets. `reorder_ms` must cover one FEC matrix.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fec: bool,
    /// `format = "sdp"` only: the session description (an absolute path), whose m= ports are
    /// received on `listen`'s address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub sdp: Option<std::path::PathBuf>,
}

/// The streams an SDP file describes that an `rtp` input with `format = "sdp"` receives.
pub fn read_sdp(path: &std::path::Path) -> Result<Vec<lunora_rtp::StreamSpec>, String> {
    use std::io::Read;
    if !path.is_absolute() {
        return Err(format!(
            "sdp must be an absolute path; it is {:?}",
            path.display().to_string()
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| {
            // One byte over the cap, so that a longer file is reported as too long.
            let cap = u64::try_from(lunora_rtp::SDP_CAP).unwrap_or(u64::MAX);
            file.take(cap + 1).read_to_string(&mut text)
        })
        .map_err(|e| format!("cannot read the SDP file {}: {e}", path.display()))?;
    let sdp = lunora_rtp::SessionDescription::parse(&text)
        .map_err(|e| format!("SDP file {}: {e}", path.display()))?;
    lunora_rtp::usable_streams(&sdp).map_err(|e| format!("SDP file {}: {e}", path.display()))
}

impl RtpInputSettings {
    fn validate(&self, problems: &mut Vec<Problem>) {
        match (self.format, &self.sdp) {
            (RtpFormatSetting::Sdp, None) => problems.push(Problem::at(
                "sdp",
                "format = \"sdp\" needs sdp = \"/path/to/session.sdp\" (ffmpeg writes one with -sdp_file)",
            )),
            (RtpFormatSetting::Sdp, Some(path)) => match read_sdp(path) {
                Err(why) => problems.push(Problem::at("sdp", why)),
                Ok(streams) => {
                    let port = self.listen.port();
                    if port != 0 && streams.iter().all(|s| s.port != port) {
                        let ports: Vec<String> =
                            streams.iter().map(|s| s.port.to_string()).collect();
                        problems.push(Problem::at(
                            "listen",
                            format!(
                                "with format = \"sdp\" the ports come from the SDP ({}); listen's port {port} is none of them: use port 0 or one of those",
                                ports.join(", ")
                            ),
                        ));
                    }
                }
            },
            (_, Some(_)) => problems.push(Problem::at(
                "sdp",
                "sdp applies to format = \"sdp\" only",
            )),
            (_, None) if self.listen.port() == 0 => problems.push(Problem::at(
                "listen",
                "listen needs a port (the sender's destination port)",
            )),
            (_, None) => {}
        }
        let multicast_v4 =
            matches!(self.listen.ip(), std::net::IpAddr::V4(ip) if ip.is_multicast());
        for (key, set) in [
            ("source", self.source.is_some()),
            ("interface", self.interface.is_some()),
        ] {
            if set && !multicast_v4 {
                problems.push(Problem::at(
                    key,
                    format!("{key} applies to an IPv4 multicast group in listen (224.0.0.0/4)"),
                ));
            }
        }
        if self.reorder_ms > 1_000 {
            problems.push(Problem::at(
                "reorder_ms",
                format!("reorder_ms must be at most 1000; it is {}", self.reorder_ms),
            ));
        }
        if self.fec && self.format != RtpFormatSetting::Mpegts {
            problems.push(Problem::at(
                "fec",
                "fec (SMPTE 2022-1) applies to format = \"mpegts\" only",
            ));
        } else if self.fec && self.fec_ports().is_none() {
            problems.push(Problem::at(
                "fec",
                format!(
                    "fec receives on listen's port + 2 and + 4; port {} leaves no room (use one up to 65531)",
                    self.listen.port()
                ),
            ));
        }
    }

    /// The column and row FEC addresses (listen's port + 2 and + 4), when `fec` is on.
    pub fn fec_ports(&self) -> Option<[SocketAddr; 2]> {
        if !self.fec {
            return None;
        }
        let port = self.listen.port();
        let column = port.checked_add(2)?;
        let row = port.checked_add(4)?;
        Some([
            SocketAddr::new(self.listen.ip(), column),
            SocketAddr::new(self.listen.ip(), row),
        ])
    }
}

/// RTMP publish (OBS) to the shared server: rtmp://HOST:1935/live/<stream_key>.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RtmpInputSettings {
    pub id: InputId,
    #[serde(default)]
    pub role: InputRole,
    /// The key OBS publishes with; generated when left out through the API.
    #[serde(
        default,
        with = "lunora_media::exposed_secret",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub stream_key: Option<Secret>,
}

/// WebRTC publish over WHIP (a browser's "go live", OBS 30+): POST an SDP offer to
/// /whip/<channel>/<input> with `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhipInputSettings {
    pub id: InputId,
    #[serde(default)]
    pub role: InputRole,
    /// The bearer token a publisher must send (16–256 printable characters, no spaces).
    #[serde(
        default,
        with = "lunora_media::exposed_secret",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub token: Option<Secret>,
}

/// `[whip]`: the box's WebRTC ingest endpoint, shared by every WHIP input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhipEndpoint {
    /// The one UDP port every WebRTC session uses.
    pub udp_listen: SocketAddr,
    /// The addresses answers offer as ICE host candidates (at `udp_listen`'s port).
    pub ice_addresses: Vec<std::net::IpAddr>,
    /// STUN/TURN URLs announced to publishers in `Link` headers.
    pub ice_servers: Vec<String>,
    /// Sessions (handshaking or live) the box takes at once.
    pub max_sessions: usize,
}

impl Default for WhipEndpoint {
    fn default() -> Self {
        WhipEndpoint {
            udp_listen: SocketAddr::from(([0, 0, 0, 0], 8189)),
            ice_addresses: vec![std::net::IpAddr::from([127, 0, 0, 1])],
            ice_servers: Vec::new(),
            max_sessions: 16,
        }
    }
}

/// What a WHIP token must look like, for users.
const WHIP_TOKEN_RULE: &str =
    "token must be 16–256 printable characters without spaces, '/' or '?'";

/// Every input kind, tagged by `type` as in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum InputSettings {
    /// SRT listener (hardware encoders, ffmpeg).
    Srt(SrtInputSettings),
    /// RTMP publish (OBS).
    Rtmp(RtmpInputSettings),
    /// RTP or plain UDP carrying MPEG-TS (unicast or multicast).
    Rtp(RtpInputSettings),
    /// A file played as a live feed (MP4 or MPEG-TS), once or looped.
    File(FileInputSettings),
    /// Colour bars, a clock, a frame counter and a tone, to check a path end to end.
    #[serde(rename = "test_pattern")]
    TestPattern(TestPatternInputSettings),
    /// WebRTC (WHIP) publish from a browser or OBS.
    Whip(WhipInputSettings),
}

fn srt_passphrase(value: &Option<Secret>, problems: &mut Vec<Problem>) {
    if let Some(passphrase) = value {
        let length = passphrase.expose().chars().count();
        if !(10..=79).contains(&length) {
            problems.push(Problem::at(
                "passphrase",
                format!("passphrase must be 10–79 characters (SRT's rule); it is {length}"),
            ));
        }
    }
}

fn srt_latency(latency_ms: u64, problems: &mut Vec<Problem>) {
    if !(20..=15_000).contains(&latency_ms) {
        problems.push(Problem::at(
            "latency_ms",
            format!("latency_ms must be between 20 and 15000; it is {latency_ms}"),
        ));
    }
}

fn stream_id(value: &Option<String>, problems: &mut Vec<Problem>) {
    if let Some(id) = value
        && (id.len() > 512 || id.chars().any(char::is_control))
    {
        problems.push(Problem::at(
            "stream_id",
            "stream_id must be at most 512 characters without control characters",
        ));
    }
}

/// Replaces `${NAME}` in `value` from `lookup`; the error names the missing variable.
pub fn expand_env(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated `${{` in {value:?}"));
        };
        let name = &after[..end];
        match lookup(name) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(format!(
                    "environment variable {name} is not set (referenced as ${{{name}}})"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn expand_secret(
    field: &'static str,
    value: &mut Option<Secret>,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    let Some(secret) = value else { return };
    match expand_env(secret.expose(), lookup) {
        Ok(expanded) => *secret = Secret::new(expanded),
        Err(message) => {
            problems.push(Problem::at(field, message));
            // Not also judged by its length: the reference is the problem.
            *value = None;
        }
    }
}

/// A component kind holds at most one secret (a passphrase or a stream key): expanded from
/// the environment in config files, kept when a change leaves it out, shown only as `*_set`.
trait OneSecret: Serialize {
    /// The secret's config key, and the secret, for kinds that have one.
    fn secret(&self) -> Option<(&'static str, Option<&Secret>)>;
    fn secret_mut(&mut self) -> Option<(&'static str, &mut Option<Secret>)>;
    fn kind(&self) -> &'static str;
}

fn expand_secret_of(
    component: &mut impl OneSecret,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some((field, secret)) = component.secret_mut() {
        expand_secret(field, secret, lookup, &mut problems);
    }
    problems
}

fn keep_secret_of<T: OneSecret>(new: &mut T, old: &T) {
    if new.kind() != old.kind() {
        return;
    }
    let old = old.secret().and_then(|(_, secret)| secret.cloned());
    if let Some((_, secret)) = new.secret_mut()
        && secret.is_none()
    {
        *secret = old;
    }
}

fn view_of<T: OneSecret>(component: &T) -> Value {
    let secrets: Vec<&str> = component
        .secret()
        .map(|(field, _)| field)
        .into_iter()
        .collect();
    mask(
        serde_json::to_value(component).unwrap_or(Value::Null),
        &secrets,
    )
}

/// `value` with the named secret fields replaced by `<name>_set: true|false`.
fn mask(mut value: Value, secrets: &[&str]) -> Value {
    if let Some(object) = value.as_object_mut() {
        for name in secrets {
            let set = object.remove(*name).is_some_and(|v| !v.is_null());
            object.insert(format!("{name}_set"), Value::Bool(set));
        }
    }
    value
}

impl OneSecret for InputSettings {
    fn secret(&self) -> Option<(&'static str, Option<&Secret>)> {
        match self {
            InputSettings::Srt(s) => Some(("passphrase", s.passphrase.as_ref())),
            InputSettings::Rtmp(s) => Some(("stream_key", s.stream_key.as_ref())),
            InputSettings::Whip(s) => Some(("token", s.token.as_ref())),
            InputSettings::Rtp(_) | InputSettings::File(_) | InputSettings::TestPattern(_) => None,
        }
    }

    fn secret_mut(&mut self) -> Option<(&'static str, &mut Option<Secret>)> {
        match self {
            InputSettings::Srt(s) => Some(("passphrase", &mut s.passphrase)),
            InputSettings::Rtmp(s) => Some(("stream_key", &mut s.stream_key)),
            InputSettings::Whip(s) => Some(("token", &mut s.token)),
            InputSettings::Rtp(_) | InputSettings::File(_) | InputSettings::TestPattern(_) => None,
        }
    }

    fn kind(&self) -> &'static str {
        InputSettings::kind(self)
    }
}

fn default_file_bitrate() -> u32 {
    6_000
}

/// A file played as a live feed, paced in real time like an encoder: an MP4 or MPEG-TS file on
/// this box (`path`) or an object in S3 (`url`). H.264/HEVC with AAC goes through untouched;
/// other codecs are encoded to H.264 and AAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileInputSettings {
    pub id: InputId,
    #[serde(default)]
    pub role: InputRole,
    /// A file on this box, e.g. /var/lib/lunora/media/loop.mp4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub path: Option<std::path::PathBuf>,
    /// Or an S3 object, s3://bucket/key (kept in the state directory, fetched again when it
    /// changes; AWS credentials from the standard chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Play it forever, on one continuous timeline (otherwise once, then the input is lost).
    #[serde(default, rename = "loop")]
    pub looped: bool,
    /// Video bitrate when the file has to be encoded (codecs other than H.264/HEVC + AAC), kbit/s.
    #[serde(default = "default_file_bitrate")]
    #[schemars(range(min = 100, max = 50_000))]
    pub bitrate_kbps: u32,
}

impl FileInputSettings {
    fn validate(&self, problems: &mut Vec<Problem>) {
        match (&self.path, &self.url) {
            (Some(_), Some(_)) | (None, None) => problems.push(Problem::at(
                "path",
                "a file input needs exactly one of `path` (a file on this box) and `url` (s3://bucket/key)",
            )),
            (Some(path), None) if !path.is_absolute() => problems.push(Problem::at(
                "path",
                format!("path must be absolute; it is {:?}", path.display().to_string()),
            )),
            (None, Some(url)) if s3_object(url).is_none() => problems.push(Problem::at(
                "url",
                format!("url must be s3://bucket/key; it is {url:?}"),
            )),
            _ => {}
        }
        bitrate(self.bitrate_kbps, problems);
    }
}

/// `(bucket, key)` of an `s3://bucket/key` URL.
pub fn s3_object(url: &str) -> Option<(&str, &str)> {
    let (bucket, key) = url.strip_prefix("s3://")?.split_once('/')?;
    let valid = !bucket.is_empty()
        && !key.is_empty()
        && bucket.len() <= 63
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && key.len() <= 1024
        && !key.chars().any(char::is_control);
    valid.then_some((bucket, key))
}

fn bitrate(kbps: u32, problems: &mut Vec<Problem>) {
    if !(100..=50_000).contains(&kbps) {
        problems.push(Problem::at(
            "bitrate_kbps",
            format!("bitrate_kbps must be between 100 and 50000; it is {kbps}"),
        ));
    }
}

/// Frame rates an engine source can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum FrameRate {
    #[serde(rename = "23.976")]
    Film,
    #[serde(rename = "24")]
    F24,
    #[serde(rename = "25")]
    F25,
    #[serde(rename = "29.97")]
    Ntsc,
    #[default]
    #[serde(rename = "30")]
    F30,
    #[serde(rename = "50")]
    F50,
    #[serde(rename = "59.94")]
    NtscDouble,
    #[serde(rename = "60")]
    F60,
}

impl FrameRate {
    /// As a fraction (numerator, denominator).
    pub fn fraction(self) -> (u32, u32) {
        match self {
            FrameRate::Film => (24_000, 1_001),
            FrameRate::F24 => (24, 1),
            FrameRate::F25 => (25, 1),
            FrameRate::Ntsc => (30_000, 1_001),
            FrameRate::F30 => (30, 1),
            FrameRate::F50 => (50, 1),
            FrameRate::NtscDouble => (60_000, 1_001),
            FrameRate::F60 => (60, 1),
        }
    }

    /// Frames in two seconds (the keyframe interval platforms ask for).
    pub fn two_seconds(self) -> u32 {
        let (num, den) = self.fraction();
        (2 * num).div_ceil(den)
    }
}

fn default_pattern_width() -> u32 {
    1280
}

fn default_pattern_height() -> u32 {
    720
}

fn default_pattern_bitrate() -> u32 {
    3_000
}

/// Colour bars with the time of day, a timecode (frame counter) and the input id burnt in, and
/// a 1 kHz tone; H.264 with a keyframe every 2 s and AAC 48 kHz stereo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestPatternInputSettings {
    pub id: InputId,
    #[serde(default)]
    pub role: InputRole,
    #[serde(default = "default_pattern_width")]
    #[schemars(range(min = 128, max = 3840))]
    pub width: u32,
    #[serde(default = "default_pattern_height")]
    #[schemars(range(min = 72, max = 2160))]
    pub height: u32,
    #[serde(default)]
    pub frame_rate: FrameRate,
    /// Video bitrate, kbit/s.
    #[serde(default = "default_pattern_bitrate")]
    #[schemars(range(min = 100, max = 50_000))]
    pub bitrate_kbps: u32,
}

impl TestPatternInputSettings {
    fn validate(&self, problems: &mut Vec<Problem>) {
        picture_size("", self.width, self.height, problems);
        bitrate(self.bitrate_kbps, problems);
    }
}

/// A picture size the engine can make: even, 128–3840 × 72–2160. `context` starts each message.
pub(crate) fn picture_size(context: &str, width: u32, height: u32, problems: &mut Vec<Problem>) {
    for (key, value, range) in [("width", width, 128..=3840), ("height", height, 72..=2160)] {
        if !range.contains(&value) || value % 2 != 0 {
            problems.push(Problem::at(
                key,
                format!(
                    "{context}{key} must be even and between {} and {}; it is {value}",
                    range.start(),
                    range.end()
                ),
            ));
        }
    }
}

impl InputSettings {
    pub fn id(&self) -> &InputId {
        match self {
            InputSettings::Srt(s) => &s.id,
            InputSettings::Rtmp(s) => &s.id,
            InputSettings::Rtp(s) => &s.id,
            InputSettings::File(s) => &s.id,
            InputSettings::TestPattern(s) => &s.id,
            InputSettings::Whip(s) => &s.id,
        }
    }

    pub fn role(&self) -> InputRole {
        match self {
            InputSettings::Srt(s) => s.role,
            InputSettings::Rtmp(s) => s.role,
            InputSettings::Rtp(s) => s.role,
            InputSettings::File(s) => s.role,
            InputSettings::TestPattern(s) => s.role,
            InputSettings::Whip(s) => s.role,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            InputSettings::Srt(_) => "srt",
            InputSettings::Rtmp(_) => "rtmp",
            InputSettings::Rtp(_) => "rtp",
            InputSettings::File(_) => "file",
            InputSettings::TestPattern(_) => "test_pattern",
            InputSettings::Whip(_) => "whip",
        }
    }

    /// Every problem with these settings on their own (ids, ranges, secrets' rules).
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !self.id().is_valid() {
            problems.push(Problem::at(
                "id",
                format!("input id {:?} {ID_RULE}", self.id().as_str()),
            ));
        }
        if self.id().as_str() == SLATE_INPUT {
            problems.push(Problem::at(
                "id",
                "input id \"slate\" is the channel's own slate; choose another",
            ));
        }
        match self {
            InputSettings::Srt(s) => {
                srt_latency(s.latency_ms, &mut problems);
                srt_passphrase(&s.passphrase, &mut problems);
                stream_id(&s.stream_id, &mut problems);
                if s.listen.port() == 0 {
                    problems.push(Problem::at(
                        "listen",
                        "listen needs a port (SRT listeners cannot take port 0)",
                    ));
                }
            }
            InputSettings::Rtmp(s) => match &s.stream_key {
                None => problems.push(Problem::at(
                    "stream_key",
                    "RTMP inputs need `stream_key` (OBS publishes to rtmp://HOST:1935/live/<stream_key>)",
                )),
                Some(key) if !lunora_media::valid_stream_key(key.expose()) => {
                    problems.push(Problem::at("stream_key", lunora_media::STREAM_KEY_RULE))
                }
                Some(_) => {}
            },
            InputSettings::Rtp(s) => s.validate(&mut problems),
            InputSettings::File(s) => s.validate(&mut problems),
            InputSettings::TestPattern(s) => s.validate(&mut problems),
            InputSettings::Whip(s) => match &s.token {
                None => problems.push(Problem::at(
                    "token",
                    "WHIP inputs need `token` (the publisher sends it as Authorization: Bearer <token>)",
                )),
                Some(token)
                    if token.expose().len() < 16
                        || !lunora_media::valid_stream_key(token.expose()) =>
                {
                    problems.push(Problem::at("token", WHIP_TOKEN_RULE))
                }
                Some(_) => {}
            },
        }
        if matches!(self, InputSettings::Whip(_)) && !cfg!(feature = "whip") {
            problems.push(Problem::at(
                "type",
                "whip inputs need WebRTC, and this build has none (built without the `webrtc` feature)",
            ));
        }
        if self.needs_engine() && !cfg!(feature = "engine") {
            problems.push(Problem::at(
                "type",
                format!(
                    "{} inputs need the media engine, and this build has none (built without the `gstreamer` feature)",
                    self.kind()
                ),
            ));
        }
        problems
    }

    /// Inputs the media engine (GStreamer) plays.
    pub fn needs_engine(&self) -> bool {
        matches!(self, InputSettings::File(_) | InputSettings::TestPattern(_))
    }

    /// Senders reach it through the box's WHIP endpoint rather than a port of its own.
    pub fn is_whip(&self) -> bool {
        matches!(self, InputSettings::Whip(_))
    }

    pub fn resources(&self) -> Vec<Resource> {
        match self {
            InputSettings::File(_) | InputSettings::TestPattern(_) | InputSettings::Whip(_) => {
                Vec::new()
            }
            InputSettings::Srt(s) => vec![Resource::UdpPort(s.listen)],
            InputSettings::Rtp(s) => match (&s.format, &s.sdp) {
                // Each stream's RTP port; its RTCP port (+1) is taken when free.
                (RtpFormatSetting::Sdp, Some(path)) => read_sdp(path)
                    .unwrap_or_default()
                    .iter()
                    .map(|stream| Resource::UdpPort(SocketAddr::new(s.listen.ip(), stream.port)))
                    .collect(),
                _ => std::iter::once(s.listen)
                    .chain(s.fec_ports().into_iter().flatten())
                    .map(Resource::UdpPort)
                    .collect(),
            },
            InputSettings::Rtmp(s) => s
                .stream_key
                .iter()
                .map(|k| Resource::RtmpStreamKey(k.clone()))
                .collect(),
        }
    }

    /// Expands `${ENV}` references in the secrets (config files only).
    pub fn expand_env(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<Problem> {
        expand_secret_of(self, lookup)
    }

    /// A change that leaves a secret out keeps the one `old` has (the API never shows it).
    pub fn keep_secrets_of(&mut self, old: &InputSettings) {
        keep_secret_of(self, old)
    }

    /// The settings as the API shows them: config keys, secrets as `*_set`.
    pub fn view(&self) -> Value {
        view_of(self)
    }
}

// ---- outputs -------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SrtOutputMode {
    /// Lunora calls `address` (MediaLive's SRT listener input, say).
    Caller,
    /// Receivers call lunora on `listen`.
    Listener,
}

/// The channel's clean output over SRT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SrtOutputSettings {
    pub id: OutputId,
    pub mode: SrtOutputMode,
    /// Caller: the address to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub address: Option<SocketAddr>,
    /// Listener: the UDP address receivers call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub listen: Option<SocketAddr>,
    #[serde(default = "default_latency")]
    #[schemars(range(min = 20, max = 15_000))]
    pub latency_ms: u64,
    #[serde(
        default,
        with = "lunora_media::exposed_secret",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub passphrase: Option<Secret>,
    /// Caller: AES key length in bytes (16, 24 or 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pbkeylen: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    /// Listener: receivers connected at once; more are refused until one leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub max_pullers: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "Option<String>",
        description = "What it sends: absent, the channel's switched program; an input id, that input's stream as received (MediaLive's own failover pair in cloud mode, a monitoring feed)."
    )]
    pub source: Option<InputId>,
}

/// Receivers an SRT listener output serves at once unless `max_pullers` says otherwise: each
/// costs a copy of the stream's bandwidth and a muxer.
pub const DEFAULT_MAX_PULLERS: u16 = 16;
const MAX_PULLERS_LIMIT: u16 = 256;

/// An RTMP/RTMPS push to a platform or server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RtmpOutputSettings {
    pub id: OutputId,
    #[serde(default)]
    pub preset: Preset,
    /// The ingest URL without the key; optional for `youtube` and for `x` with a region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `x` only: the region in X's server address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `youtube` only: send to YouTube's backup ingest.
    #[serde(default)]
    pub backup_ingest: bool,
    #[serde(
        default,
        with = "lunora_media::exposed_secret",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub stream_key: Option<Secret>,
    /// Start when lunora starts (until an operator starts or stops it by hand).
    #[serde(default)]
    pub autostart: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 600_000))]
    pub retry_min_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 600_000))]
    pub retry_max_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        with = "Option<String>",
        description = "What it sends: absent, the channel's switched program; an input id, that input's stream as received (MediaLive's own failover pair in cloud mode, a monitoring feed)."
    )]
    pub source: Option<InputId>,
    #[serde(default, skip_serializing_if = "Transcode::is_off")]
    pub transcode: Transcode,
}

impl RtmpOutputSettings {
    pub fn destination(&self) -> DestinationSpec {
        DestinationSpec {
            preset: self.preset,
            url: self.url.clone(),
            region: self.region.clone(),
            backup_ingest: self.backup_ingest,
            stream_key: self.stream_key.clone(),
            autostart: self.autostart,
            retry_min_ms: self.retry_min_ms,
            retry_max_ms: self.retry_max_ms,
        }
    }
}

/// Every output kind, tagged by `type` as in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OutputSettings {
    /// SRT caller or listener.
    Srt(SrtOutputSettings),
    /// RTMP/RTMPS push (YouTube, X, LinkedIn, custom).
    Rtmp(RtmpOutputSettings),
}

fn spec_field(field: SpecField) -> &'static str {
    match field {
        SpecField::Url => "url",
        SpecField::Region => "region",
        SpecField::BackupIngest => "backup_ingest",
        SpecField::StreamKey => "stream_key",
        SpecField::RetryMin => "retry_min_ms",
        SpecField::RetryMax => "retry_max_ms",
    }
}

impl OneSecret for OutputSettings {
    fn secret(&self) -> Option<(&'static str, Option<&Secret>)> {
        match self {
            OutputSettings::Srt(s) => Some(("passphrase", s.passphrase.as_ref())),
            OutputSettings::Rtmp(s) => Some(("stream_key", s.stream_key.as_ref())),
        }
    }

    fn secret_mut(&mut self) -> Option<(&'static str, &mut Option<Secret>)> {
        match self {
            OutputSettings::Srt(s) => Some(("passphrase", &mut s.passphrase)),
            OutputSettings::Rtmp(s) => Some(("stream_key", &mut s.stream_key)),
        }
    }

    fn kind(&self) -> &'static str {
        OutputSettings::kind(self)
    }
}

impl OutputSettings {
    pub fn id(&self) -> &OutputId {
        match self {
            OutputSettings::Srt(s) => &s.id,
            OutputSettings::Rtmp(s) => &s.id,
        }
    }

    /// The input whose stream it sends unswitched; `None`: the channel's program.
    pub fn source(&self) -> Option<&InputId> {
        match self {
            OutputSettings::Srt(s) => s.source.as_ref(),
            OutputSettings::Rtmp(s) => s.source.as_ref(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            OutputSettings::Srt(_) => "srt",
            OutputSettings::Rtmp(_) => "rtmp",
        }
    }

    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !self.id().is_valid() {
            problems.push(Problem::at(
                "id",
                format!("output id {:?} {ID_RULE}", self.id().as_str()),
            ));
        }
        match self {
            OutputSettings::Srt(s) => {
                srt_latency(s.latency_ms, &mut problems);
                srt_passphrase(&s.passphrase, &mut problems);
                stream_id(&s.stream_id, &mut problems);
                match s.mode {
                    SrtOutputMode::Caller => {
                        if s.listen.is_some() {
                            problems.push(Problem::at(
                                "listen",
                                "`listen` is for mode = \"listener\"; a caller uses `address`",
                            ));
                        }
                        if s.address.is_none() {
                            problems.push(Problem::at(
                                "mode",
                                format!(
                                    "SRT caller output {:?} needs `address = \"IP:PORT\"`",
                                    s.id.as_str()
                                ),
                            ));
                        }
                        if let Some(k) = s.pbkeylen
                            && ![16, 24, 32].contains(&k)
                        {
                            problems.push(Problem::at(
                                "pbkeylen",
                                format!("pbkeylen must be 16, 24 or 32; it is {k}"),
                            ));
                        }
                        if s.max_pullers.is_some() {
                            problems.push(Problem::at(
                                "max_pullers",
                                "max_pullers applies to mode = \"listener\"; a caller has one peer",
                            ));
                        }
                    }
                    SrtOutputMode::Listener => {
                        if s.address.is_some() {
                            problems.push(Problem::at(
                                "address",
                                "`address` is for mode = \"caller\"; a listener uses `listen`",
                            ));
                        }
                        if s.pbkeylen.is_some() {
                            problems.push(Problem::at(
                                "pbkeylen",
                                "pbkeylen applies to callers; a listener takes the caller's key length",
                            ));
                        }
                        if let Some(n) = s.max_pullers
                            && !(1..=MAX_PULLERS_LIMIT).contains(&n)
                        {
                            problems.push(Problem::at(
                                "max_pullers",
                                format!("max_pullers must be 1–{MAX_PULLERS_LIMIT}; it is {n}"),
                            ));
                        }
                        match s.listen {
                            None => problems.push(Problem::at(
                                "mode",
                                format!(
                                    "SRT listener output {:?} needs `listen = \"IP:PORT\"`",
                                    s.id.as_str()
                                ),
                            )),
                            Some(listen) if listen.port() == 0 => problems.push(Problem::at(
                                "listen",
                                "listen needs a port (SRT listeners cannot take port 0)",
                            )),
                            Some(_) => {}
                        }
                    }
                }
            }
            OutputSettings::Rtmp(s) => {
                if let Err(spec_problems) = s.destination().validate() {
                    problems.extend(spec_problems.into_iter().map(|p| Problem {
                        field: Some(spec_field(p.field)),
                        message: format!("RTMP output {:?}: {}", s.id.as_str(), p.message),
                    }));
                }
            }
        }
        problems
    }

    pub fn resources(&self) -> Vec<Resource> {
        match self {
            OutputSettings::Srt(SrtOutputSettings {
                mode: SrtOutputMode::Listener,
                listen: Some(listen),
                ..
            }) => vec![Resource::UdpPort(*listen)],
            _ => Vec::new(),
        }
    }

    pub fn expand_env(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<Problem> {
        expand_secret_of(self, lookup)
    }

    pub fn keep_secrets_of(&mut self, old: &OutputSettings) {
        keep_secret_of(self, old)
    }

    pub fn view(&self) -> Value {
        view_of(self)
    }
}

// ---- the whole graph ------------------------------------------------------------------------

/// One channel with its components, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSpec {
    pub settings: ChannelSettings,
    pub inputs: Vec<InputSettings>,
    pub outputs: Vec<OutputSettings>,
}

/// The id of the output that feeds a channel's MediaLive input; `medialive-…` are its
/// siblings (a second pipeline, one per input in cloud mode).
pub const MEDIALIVE_FEED: &str = "medialive";

/// Whether output `id` is one of the box's feeds into MediaLive.
pub fn is_medialive_feed(id: &str) -> bool {
    id == MEDIALIVE_FEED
        || id
            .strip_prefix(MEDIALIVE_FEED)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// Outputs one channel may have: each costs a task, a bus cursor and its own `/metrics`
/// series, so an unbounded list (one API call each) could inflate both without limit. Far more
/// than the platforms one program goes to.
pub const MAX_OUTPUTS_PER_CHANNEL: usize = 32;

/// Everything the box should run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphSpec {
    pub channels: Vec<ChannelSpec>,
    /// `[profiles.<name>]` of the config file: transcodes RTMP destinations can name.
    pub profiles: Profiles,
}

/// Which component of a channel a problem is about (positions in [`GraphSpec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Channel,
    Input(usize),
    Output(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphProblem {
    pub channel: usize,
    pub component: Component,
    pub field: Option<&'static str>,
    pub message: String,
    /// Two components claim one port, key or id: the API answers 409.
    pub conflict: bool,
}

/// What keeps a channel's inputs from being merged: it takes one main and one backup RTP
/// input carrying MPEG-TS, whose sequence numbers are the same on both paths.
fn merge_problem(inputs: &[InputSettings]) -> Option<Problem> {
    let rtp: Vec<&RtpInputSettings> = inputs
        .iter()
        .filter_map(|i| match i {
            InputSettings::Rtp(rtp) if rtp.format == RtpFormatSetting::Mpegts => Some(rtp),
            _ => None,
        })
        .collect();
    let roles = |role| rtp.iter().filter(|r| r.role == role).count();
    let fits = inputs.len() == 2
        && rtp.len() == 2
        && roles(InputRole::Main) == 1
        && roles(InputRole::Backup) == 1;
    (!fits).then(|| {
        Problem::at(
            "switch",
            "switch = \"merge\" takes exactly two inputs, both `type = \"rtp\"` with `format = \"mpegts\"`, \
             one main and one backup, carrying the same stream (SMPTE 2022-7); SRT, RTMP and \
             plain UDP have no sequence numbers the two paths share: use \"cut\" or \"aligned\"",
        )
    })
}

impl GraphSpec {
    pub fn channel(&self, id: &str) -> Option<&ChannelSpec> {
        self.channels.iter().find(|c| c.settings.id.as_str() == id)
    }

    pub fn channel_mut(&mut self, id: &str) -> Option<&mut ChannelSpec> {
        self.channels
            .iter_mut()
            .find(|c| c.settings.id.as_str() == id)
    }

    /// Every problem in the graph at once: each component's own, then what they claim
    /// together (ids, ports, stream keys) and what each channel's mode allows.
    pub fn validate(&self) -> Vec<GraphProblem> {
        let mut problems = Vec::new();
        let mut push = |channel, component, problem: Problem, conflict| {
            problems.push(GraphProblem {
                channel,
                component,
                field: problem.field,
                message: problem.message,
                conflict,
            })
        };
        // (resource, owner name, where) of every claim so far.
        let mut claims: Vec<(Resource, String)> = Vec::new();
        for (c, channel) in self.channels.iter().enumerate() {
            let id = &channel.settings.id;
            if !id.is_valid() {
                push(
                    c,
                    Component::Channel,
                    Problem::at("id", format!("channel id {:?} {ID_RULE}", id.as_str())),
                    false,
                );
            }
            if self.channels[..c].iter().any(|o| o.settings.id == *id) {
                push(
                    c,
                    Component::Channel,
                    Problem::at("id", format!("channel id {:?} is used twice", id.as_str())),
                    true,
                );
            }
            for problem in channel.settings.failover.validate() {
                push(c, Component::Channel, problem, false);
            }
            for problem in channel
                .settings
                .slate
                .iter()
                .flat_map(SlateSettings::validate)
            {
                push(c, Component::Channel, problem, false);
            }
            let mut ids: Vec<&str> = Vec::new();
            let mut claim =
                |component,
                 owner: String,
                 resources: Vec<Resource>,
                 push: &mut dyn FnMut(usize, Component, Problem, bool)| {
                    for resource in resources {
                        if let Some((_, holder)) =
                            claims.iter().find(|(r, _)| r.collides(&resource))
                        {
                            let field = match resource {
                                Resource::UdpPort(_) => "listen",
                                Resource::RtmpStreamKey(_) => "stream_key",
                            };
                            let message = match resource {
                                Resource::UdpPort(a) => format!(
                                    "UDP port {} of {owner} is already used by {holder}",
                                    a.port()
                                ),
                                Resource::RtmpStreamKey(_) => format!(
                                    "this stream key is already used by {holder}; every RTMP input needs its own"
                                ),
                            };
                            push(c, component, Problem::at(field, message), true);
                        } else {
                            claims.push((resource, owner.clone()));
                        }
                    }
                };
            for (i, input) in channel.inputs.iter().enumerate() {
                for problem in input.validate() {
                    push(c, Component::Input(i), problem, false);
                }
                let input_id = input.id().as_str();
                if ids.contains(&input_id) {
                    push(
                        c,
                        Component::Input(i),
                        Problem::at(
                            "id",
                            format!("id {input_id:?} is used twice in channel {:?}", id.as_str()),
                        ),
                        true,
                    );
                }
                ids.push(input_id);
                claim(
                    Component::Input(i),
                    format!("input {id}/{input_id}"),
                    input.resources(),
                    &mut push,
                );
            }
            if channel.settings.failover.switch == SwitchSetting::Merge {
                if let Some(problem) = merge_problem(&channel.inputs) {
                    push(c, Component::Channel, problem, false);
                }
                // The merger takes both paths' packets into one resequencer; FEC would need
                // a decoder per path, and 2022-7 already covers a path's losses.
                for (i, input) in channel.inputs.iter().enumerate() {
                    if let InputSettings::Rtp(rtp) = input
                        && rtp.fec
                    {
                        push(
                            c,
                            Component::Input(i),
                            Problem::at(
                                "fec",
                                "fec is not available with switch = \"merge\" (SMPTE 2022-7 already covers one path's losses): turn one of them off",
                            ),
                            false,
                        );
                    }
                }
            }
            for (o, output) in channel.outputs.iter().enumerate() {
                for problem in output.validate() {
                    push(c, Component::Output(o), problem, false);
                }
                if let OutputSettings::Rtmp(rtmp) = output
                    && let Some(problem) = transcode_problem(
                        &rtmp.transcode,
                        rtmp.preset,
                        rtmp.source.is_some(),
                        &self.profiles,
                    )
                {
                    push(c, Component::Output(o), problem, false);
                }
                let output_id = output.id().as_str();
                if ids.contains(&output_id) {
                    push(
                        c,
                        Component::Output(o),
                        Problem::at(
                            "id",
                            format!(
                                "id {output_id:?} is used twice in channel {:?}",
                                id.as_str()
                            ),
                        ),
                        true,
                    );
                }
                ids.push(output_id);
                if let Some(source) = output.source()
                    && !channel.inputs.iter().any(|i| i.id() == source)
                {
                    push(
                        c,
                        Component::Output(o),
                        Problem::at(
                            "source",
                            format!(
                                "output {output_id:?} sends input {:?}, which channel {:?} does not have; use one of its input ids, or leave source out to send the program",
                                source.as_str(),
                                id.as_str()
                            ),
                        ),
                        false,
                    );
                }
                claim(
                    Component::Output(o),
                    format!("output {id}/{output_id}"),
                    output.resources(),
                    &mut push,
                );
            }
            if channel.outputs.len() > MAX_OUTPUTS_PER_CHANNEL {
                push(
                    c,
                    Component::Channel,
                    Problem::at(
                        "outputs",
                        format!(
                            "channel {:?} has {} outputs; at most {MAX_OUTPUTS_PER_CHANNEL} are allowed",
                            id.as_str(),
                            channel.outputs.len()
                        ),
                    ),
                    false,
                );
            }
            let mains = channel
                .inputs
                .iter()
                .filter(|i| i.role() == InputRole::Main)
                .count();
            let backups = channel.inputs.len() - mains;
            // A channel may be empty (inputs are added to it at run time); beyond that the
            // mode says what it takes.
            match channel.settings.mode {
                ChannelMode::Single if channel.inputs.len() > 1 => push(
                    c,
                    Component::Channel,
                    Problem::at(
                        "mode",
                        format!(
                            "mode \"single\" takes one input; channel {:?} has {}",
                            id.as_str(),
                            channel.inputs.len()
                        ),
                    ),
                    false,
                ),
                ChannelMode::MainBackup if mains > 1 => push(
                    c,
                    Component::Channel,
                    Problem::at(
                        "mode",
                        format!(
                            "mode \"main-backup\" takes one input with role = \"main\"; channel {:?} has {mains} (and {backups} backup)",
                            id.as_str()
                        ),
                    ),
                    false,
                ),
                _ => {}
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srt(id: &str, port: u16) -> InputSettings {
        InputSettings::Srt(SrtInputSettings {
            id: InputId::new(id),
            role: InputRole::Main,
            listen: SocketAddr::from(([0, 0, 0, 0], port)),
            latency_ms: 120,
            passphrase: None,
            stream_id: None,
        })
    }

    fn channel(id: &str, inputs: Vec<InputSettings>) -> ChannelSpec {
        ChannelSpec {
            settings: ChannelSettings {
                id: ChannelId::new(id),
                mode: ChannelMode::MainBackup,
                failover: FailoverSettings::default(),
                slate: None,
            },
            inputs,
            outputs: Vec::new(),
        }
    }

    fn rtp(id: &str, role: InputRole, listen: &str) -> InputSettings {
        InputSettings::Rtp(RtpInputSettings {
            id: InputId::new(id),
            role,
            listen: listen.parse().unwrap(),
            format: RtpFormatSetting::Mpegts,
            source: None,
            interface: None,
            reorder_ms: 50,
            fec: false,
            sdp: None,
        })
    }

    #[test]
    fn sdp_inputs_need_a_readable_sdp_with_h264_or_aac() {
        let dir = std::env::temp_dir().join(format!("lunora-sdp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.sdp");
        std::fs::write(
            &good,
            "v=0\nm=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n\
             m=audio 5006 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/48000/2\n\
             a=fmtp:97 mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\n",
        )
        .unwrap();
        let vp8 = dir.join("vp8.sdp");
        std::fs::write(&vp8, "m=video 5004 RTP/AVP 96\na=rtpmap:96 VP8/90000\n").unwrap();
        let InputSettings::Rtp(mut input) = rtp("cam", InputRole::Main, "0.0.0.0:0") else {
            unreachable!()
        };
        input.format = RtpFormatSetting::Sdp;
        let problems = |input: &RtpInputSettings| {
            InputSettings::Rtp(input.clone())
                .validate()
                .into_iter()
                .map(|p| format!("{}: {}", p.field.unwrap_or_default(), p.message))
                .collect::<Vec<_>>()
        };
        assert!(problems(&input)[0].starts_with("sdp: format = \"sdp\" needs sdp"));
        input.sdp = Some(good.clone());
        assert!(problems(&input).is_empty(), "{:?}", problems(&input));
        let resources = InputSettings::Rtp(input.clone()).resources();
        assert_eq!(
            resources,
            [
                Resource::UdpPort("0.0.0.0:5004".parse().unwrap()),
                Resource::UdpPort("0.0.0.0:5006".parse().unwrap())
            ]
        );
        input.listen = "0.0.0.0:5006".parse().unwrap();
        assert!(problems(&input).is_empty());
        input.listen = "0.0.0.0:6000".parse().unwrap();
        assert!(problems(&input)[0].contains("listen's port 6000 is none of them"));
        input.listen = "0.0.0.0:0".parse().unwrap();
        input.sdp = Some(vp8);
        assert!(
            problems(&input)[0].contains("video VP8/90000"),
            "{:?}",
            problems(&input)
        );
        // MP4A-LATM as ffmpeg -rtpflags latm describes it is taken; a StreamMuxConfig of a
        // shape not read is refused with its reason.
        let latm = dir.join("latm.sdp");
        let latm_sdp = |config: &str| {
            format!(
                "m=audio 5006 RTP/AVP 97\na=rtpmap:97 MP4A-LATM/48000/2\n\
                 a=fmtp:97 profile-level-id=41;cpresent=0;config={config}\n"
            )
        };
        std::fs::write(&latm, latm_sdp("400023203fc0")).unwrap();
        input.sdp = Some(latm.clone());
        assert!(problems(&input).is_empty(), "{:?}", problems(&input));
        std::fs::write(&latm, latm_sdp("410023203fc0")).unwrap();
        assert!(
            problems(&input)[0].contains("2 subframes per AudioMuxElement"),
            "{:?}",
            problems(&input)
        );
        input.sdp = Some(dir.join("missing.sdp"));
        assert!(problems(&input)[0].starts_with("sdp: cannot read the SDP file"));
        input.sdp = Some("relative.sdp".into());
        assert!(problems(&input)[0].contains("absolute"));
        input.format = RtpFormatSetting::Mpegts;
        input.sdp = Some(good);
        assert!(
            problems(&input)
                .iter()
                .any(|p| p == "sdp: sdp applies to format = \"sdp\" only")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rtp_inputs_check_multicast_keys_and_the_window() {
        assert!(
            rtp("cam", InputRole::Main, "0.0.0.0:5000")
                .validate()
                .is_empty()
        );
        let InputSettings::Rtp(mut multicast) = rtp("cam", InputRole::Main, "239.1.1.1:5000")
        else {
            unreachable!()
        };
        multicast.source = Some("10.0.0.1".parse().unwrap());
        multicast.interface = Some("10.0.0.2".parse().unwrap());
        assert!(InputSettings::Rtp(multicast.clone()).validate().is_empty());
        multicast.listen = "10.0.0.3:0".parse().unwrap();
        multicast.reorder_ms = 1_001;
        let fields: Vec<_> = InputSettings::Rtp(multicast)
            .validate()
            .into_iter()
            .filter_map(|p| p.field)
            .collect();
        assert_eq!(fields, ["listen", "source", "interface", "reorder_ms"]);
    }

    #[test]
    fn fec_claims_two_more_ports_and_takes_mpegts_only() {
        let InputSettings::Rtp(mut input) = rtp("cam", InputRole::Main, "0.0.0.0:5000") else {
            unreachable!()
        };
        input.fec = true;
        let with_fec = InputSettings::Rtp(input.clone());
        assert!(with_fec.validate().is_empty());
        assert_eq!(
            with_fec.resources(),
            ["0.0.0.0:5000", "0.0.0.0:5002", "0.0.0.0:5004"]
                .map(|a| Resource::UdpPort(a.parse().unwrap()))
        );
        // Another input on the row FEC port is a conflict.
        let graph = GraphSpec {
            channels: vec![channel(
                "program",
                vec![with_fec, rtp("b", InputRole::Backup, "0.0.0.0:5004")],
            )],
            ..GraphSpec::default()
        };
        let problems = graph.validate();
        assert!(problems.iter().any(|p| p.conflict), "{problems:?}");
        input.listen = "0.0.0.0:65533".parse().unwrap();
        let fields = |input: &RtpInputSettings| -> Vec<_> {
            InputSettings::Rtp(input.clone())
                .validate()
                .into_iter()
                .filter_map(|p| p.field)
                .collect()
        };
        assert_eq!(fields(&input), ["fec"]);
        input.listen = "0.0.0.0:5000".parse().unwrap();
        input.format = RtpFormatSetting::UdpTs;
        assert_eq!(fields(&input), ["fec"]);
        // Not with merge.
        let mut spec = channel(
            "program",
            vec![
                rtp("a", InputRole::Main, "0.0.0.0:5000"),
                rtp("b", InputRole::Backup, "0.0.0.0:6000"),
            ],
        );
        if let InputSettings::Rtp(a) = &mut spec.inputs[0] {
            a.fec = true;
        }
        spec.settings.failover.switch = SwitchSetting::Merge;
        let problems = GraphSpec {
            channels: vec![spec],
            ..GraphSpec::default()
        }
        .validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, Some("fec"));
    }

    #[test]
    fn merge_takes_one_main_and_one_backup_rtp_ts_input() {
        let merged = |inputs: Vec<InputSettings>, window: Option<u64>| {
            let mut spec = channel("program", inputs);
            spec.settings.failover.switch = SwitchSetting::Merge;
            spec.settings.failover.merge_window_ms = window;
            GraphSpec {
                channels: vec![spec],
                ..GraphSpec::default()
            }
            .validate()
        };
        let pair = || {
            vec![
                rtp("a", InputRole::Main, "0.0.0.0:5000"),
                rtp("b", InputRole::Backup, "0.0.0.0:5002"),
            ]
        };
        assert_eq!(merged(pair(), None), vec![]);
        assert_eq!(merged(pair(), Some(450)), vec![]);
        let too_wide = merged(pair(), Some(451));
        assert_eq!(too_wide[0].field, Some("merge_window_ms"), "{too_wide:?}");
        let mut with_srt = pair();
        with_srt[1] = srt("b", 9000);
        assert_eq!(merged(with_srt, None)[0].field, Some("switch"));
        let mut two_mains = pair();
        two_mains[1] = rtp("b", InputRole::Main, "0.0.0.0:5002");
        assert_eq!(merged(two_mains, None)[0].field, Some("switch"));
        let mut udp = pair();
        if let InputSettings::Rtp(b) = &mut udp[1] {
            b.format = RtpFormatSetting::UdpTs;
        }
        assert_eq!(merged(udp, None)[0].field, Some("switch"));
        assert_eq!(merged(pair()[..1].to_vec(), None)[0].field, Some("switch"));
        // The window belongs to merge only.
        let mut cut = FailoverSettings {
            merge_window_ms: Some(100),
            ..FailoverSettings::default()
        };
        assert_eq!(cut.validate()[0].field, Some("merge_window_ms"));
        cut.merge_window_ms = None;
        assert_eq!(cut.merge_window(), None);
    }

    #[test]
    fn content_health_runs_only_when_asked_for() {
        let mut failover = FailoverSettings::default();
        assert_eq!(
            failover.content(),
            None,
            "the default \"all\" triggers do not"
        );
        failover.triggers = Some(vec!["link_loss".into(), "frozen".into()]);
        assert_eq!(failover.content(), Some(ContentSettings::default()));
        failover.triggers = Some(vec!["srt_loss".into()]);
        failover.content_health = true;
        failover.silence_db = -60;
        failover.black_threshold_percent = 5;
        let content = failover.content().unwrap();
        assert_eq!(content.silence_db, -60.0);
        assert!((content.black_threshold - 0.05).abs() < 1e-6);
        let policy = failover.policy();
        assert_eq!(policy.triggers, vec![Reason::LinkLoss]);
    }

    #[test]
    fn the_content_clock_fingerprints_pictures_only_in_aligned_mode() {
        let mut failover = FailoverSettings {
            switch: SwitchSetting::Aligned,
            aligned_clock: Some(ClockSetting::Content),
            ..FailoverSettings::default()
        };
        assert!(failover.content_alignment());
        assert_eq!(failover.content(), None, "content health stays off");
        assert!(matches!(
            failover.policy().mode,
            SwitchMode::Aligned {
                clock: AlignedClock::Content,
                ..
            }
        ));
        let problems = failover.validate();
        // Refused only by a build that cannot decode.
        assert_eq!(
            problems.is_empty(),
            cfg!(feature = "engine"),
            "{problems:?}"
        );
        failover.switch = SwitchSetting::Cut;
        assert!(!failover.content_alignment());
        let problems = failover.validate();
        assert!(
            problems.iter().any(|p| p.field == Some("aligned_clock")),
            "{problems:?}"
        );
    }

    #[test]
    fn content_health_settings_out_of_range_are_named() {
        let failover = FailoverSettings {
            content_health: true,
            black_threshold_percent: 0,
            black_ms: 999,
            freeze_ms: 600_001,
            silence_db: -5,
            ..FailoverSettings::default()
        };
        let fields: Vec<_> = failover.validate().iter().filter_map(|p| p.field).collect();
        let mut expected = vec![
            "black_threshold_percent",
            "black_ms",
            "freeze_ms",
            "silence_db",
        ];
        if !cfg!(feature = "engine") {
            expected.push("content_health");
        }
        assert_eq!(fields, expected);
    }

    #[test]
    fn the_api_and_the_config_file_read_the_same_keys() {
        let json: InputSettings = serde_json::from_str(
            r#"{"type":"srt","id":"cam","role":"backup","listen":"0.0.0.0:9002","latency_ms":200,"passphrase":"0123456789ab"}"#,
        )
        .unwrap();
        let toml: InputSettings = toml_like(&json);
        assert_eq!(json, toml);
        assert!(
            serde_json::from_str::<InputSettings>(
                r#"{"type":"srt","id":"a","listen":"0.0.0.0:1","listne":1}"#
            )
            .unwrap_err()
            .to_string()
            .contains("listne")
        );
    }

    fn toml_like(settings: &InputSettings) -> InputSettings {
        serde_json::from_value(serde_json::to_value(settings).unwrap()).unwrap()
    }

    #[test]
    fn views_never_carry_secrets() {
        let mut input = srt("cam", 9000);
        if let InputSettings::Srt(s) = &mut input {
            s.passphrase = Some(Secret::new("correct horse battery"));
        }
        let view = input.view().to_string();
        assert!(!view.contains("correct horse"), "{view}");
        assert!(view.contains("\"passphrase_set\":true"), "{view}");
        let rtmp = InputSettings::Rtmp(RtmpInputSettings {
            id: InputId::new("obs"),
            role: InputRole::Backup,
            stream_key: None,
        });
        assert!(rtmp.view().to_string().contains("\"stream_key_set\":false"));
    }

    #[test]
    fn two_components_never_claim_one_port() {
        let graph = GraphSpec {
            profiles: Default::default(),
            channels: vec![
                channel("a", vec![srt("main", 9000)]),
                channel("b", vec![srt("main", 9000)]),
            ],
        };
        let problems = graph.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].conflict);
        assert_eq!(
            (problems[0].channel, problems[0].component),
            (1, Component::Input(0))
        );
        assert!(
            problems[0].message.contains("already used by input a/main"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_channel_takes_at_most_32_outputs() {
        let destination = |n: usize| -> OutputSettings {
            serde_json::from_value(serde_json::json!({
                "type": "rtmp", "id": format!("d{n}"), "url": "rtmp://ingest.example/live",
                "stream_key": "abcd-1234"
            }))
            .unwrap()
        };
        let mut graph = GraphSpec {
            profiles: Default::default(),
            channels: vec![channel("p", vec![])],
        };
        graph.channels[0].outputs = (0..32).map(destination).collect();
        assert_eq!(graph.validate(), []);
        graph.channels[0].outputs.push(destination(32));
        let problems = graph.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, Some("outputs"));
        assert!(problems[0].message.contains("at most 32"), "{problems:?}");
    }

    #[test]
    fn every_problem_at_once() {
        let mut bad = srt("Bad Id", 9000);
        if let InputSettings::Srt(s) = &mut bad {
            s.latency_ms = 5;
            s.passphrase = Some(Secret::new("short"));
        }
        let graph = GraphSpec {
            profiles: Default::default(),
            channels: vec![channel("p", vec![bad, srt("x", 9001), srt("y", 9002)])],
        };
        let fields: Vec<Option<&str>> = graph.validate().iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                Some("id"),
                Some("latency_ms"),
                Some("passphrase"),
                Some("mode")
            ]
        );
    }

    #[test]
    fn env_references_expand_and_report_the_missing_variable() {
        let mut input = srt("cam", 9000);
        if let InputSettings::Srt(s) = &mut input {
            s.passphrase = Some(Secret::new("${PASS}"));
        }
        let mut missing = input.clone();
        let problems = missing.expand_env(&|_| None);
        assert!(
            problems[0].message.contains("PASS is not set"),
            "{problems:?}"
        );
        assert!(input.expand_env(&|_| Some("0123456789".into())).is_empty());
        let InputSettings::Srt(s) = input else {
            unreachable!()
        };
        assert_eq!(s.passphrase.unwrap().expose(), "0123456789");
    }

    #[test]
    fn schema_lists_every_kind_with_secrets_write_only() {
        let schema = serde_json::to_value(schemars::schema_for!(InputSettings)).unwrap();
        let text = schema.to_string();
        assert!(
            text.contains("\"const\":\"srt\"") && text.contains("\"const\":\"rtmp\""),
            "{text}"
        );
        assert!(text.contains("\"writeOnly\":true"), "{text}");
    }
}
