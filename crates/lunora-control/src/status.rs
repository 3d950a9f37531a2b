//! What the API, the metrics and the dashboard read about the running graph: one snapshot type,
//! so they can never disagree.

use std::net::SocketAddr;

use lunora_egress::{DestinationSpec, HlsStats, OutputStats};
use lunora_ingest::InputStats;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ChannelStatus {
    pub id: String,
    pub mode: &'static str,
    /// The input currently on air, if any is.
    pub active_input: Option<String>,
    /// The input an operator forced on air, if any (`None`: automatic).
    pub forced_input: Option<String>,
    /// The channel's own settings, with the config file's key names.
    pub config: serde_json::Value,
    pub inputs: Vec<InputStatus>,
    pub outputs: Vec<OutputStatus>,
    /// The last 20 switches, newest last.
    pub switches: Vec<SwitchView>,
    /// Switches since start, by roles and reason.
    pub switch_counts: Vec<SwitchCount>,
    pub incompatible_switches_total: u64,
    /// Frames the switcher dropped to keep the output timeline valid.
    pub timeline_dropped_frames_total: u64,
    pub hls: HlsView,
    pub slate: SlateView,
    /// The transcodes running for its destinations, one per profile.
    pub transcodes: Vec<TranscodeView>,
    /// Aligned mode on the content clock: what the pictures say about each pair of inputs.
    pub content_alignment: Vec<AlignmentView>,
}

/// Two inputs' clocks related by their pictures: a picture stamped t on `from` is stamped
/// t + `shift_seconds` on `to`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlignmentView {
    pub from: String,
    pub to: String,
    pub shift_seconds: f64,
    /// Mean difference of the matched pictures' block levels (0–255; coding noise is 1–2).
    pub match_cost: f64,
}

/// One running transcode, shared by the destinations that send its profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TranscodeView {
    pub profile: String,
    /// Destinations reading it now.
    pub destinations: usize,
    pub frames_in_total: u64,
    pub frames_out_total: u64,
    /// Frames not transcoded because the pipeline was behind the channel.
    pub frames_dropped_total: u64,
}

/// The channel's slate ("broadcast hold").
#[derive(Debug, Clone, Serialize)]
pub struct SlateView {
    pub enabled: bool,
    pub on_air: bool,
    /// Since when it is on air (RFC 3339).
    pub on_air_since: Option<String>,
}

/// The channel's HLS preview: what it holds in memory.
#[derive(Debug, Clone, Serialize)]
pub struct HlsView {
    /// `/hls/{channel}/index.m3u8`.
    pub playlist: String,
    pub segments: usize,
    pub bytes: usize,
    pub media_sequence: u64,
    pub target_duration_seconds: u64,
    pub discontinuities_total: u64,
}

impl HlsView {
    pub fn new(channel: &str, stats: HlsStats) -> HlsView {
        HlsView {
            playlist: format!("/hls/{channel}/index.m3u8"),
            segments: stats.segments,
            bytes: stats.bytes,
            media_sequence: stats.media_sequence,
            target_duration_seconds: stats.target_duration_seconds,
            discontinuities_total: stats.discontinuities_total,
        }
    }
}

/// One switch as an operator reads it.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchView {
    pub from: Option<String>,
    pub to: String,
    pub reason: &'static str,
    /// RFC 3339 wall-clock time of the cut.
    pub at: String,
    /// Milliseconds from the decision to the cut (waiting for a keyframe).
    pub decision_to_cut_ms: u64,
    /// Output gap in milliseconds (0: seamless).
    pub gap_ms: u64,
    /// For a loss: milliseconds from the lost input's last frame to the decision.
    pub detection_ms: Option<u64>,
    /// Frames skipped (positive) or repeated (negative) by content, when both encoders carry
    /// the source's timestamps.
    pub content_step_frames: Option<i64>,
    /// Aligned mode: how far the seam landed from content-exact, in frames.
    pub seam_error_frames: Option<i64>,
    /// What differed between the two inputs, if anything.
    pub incompatible: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SwitchCount {
    pub from_role: &'static str,
    pub to_role: &'static str,
    pub reason: &'static str,
    pub count: u64,
}

/// An input's health: `healthy`, `degraded` (with reasons) or `lost`. A lost input whose sender
/// is connected says so (`connected_no_data`, with `detail`): an encoder that connects but sends
/// nothing is a different fault from one that is gone.
#[derive(Debug, Clone, Serialize, Default)]
pub struct HealthView {
    pub state: &'static str,
    pub reasons: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputStatus {
    pub id: String,
    pub role: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where senders reach it; `null` for file and test-pattern inputs.
    pub listen: Option<SocketAddr>,
    /// What to set on the encoder (secrets only as "set").
    pub ingest: IngestView,
    pub health: HealthView,
    /// The input's settings with the config file's key names; secrets only as `*_set`.
    pub config: serde_json::Value,
    #[serde(flatten)]
    pub stats: InputStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputStatus {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub mode: &'static str,
    /// Where it sends (caller, RTMP push; never with a stream key) or listens (listener).
    pub address: String,
    /// RTMP destinations: how the user described it, stream key left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationView>,
    /// The output's settings with the config file's key names; secrets only as `*_set`.
    pub config: serde_json::Value,
    #[serde(flatten)]
    pub stats: OutputStats,
}

/// An RTMP destination's settings as the API shows them: everything but the stream key.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationView {
    pub preset: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub backup_ingest: bool,
    pub autostart: bool,
    /// Always true: a saved key is never sent back, only that one is set.
    pub stream_key_set: bool,
}

impl From<&DestinationSpec> for DestinationView {
    fn from(spec: &DestinationSpec) -> Self {
        DestinationView {
            preset: spec.preset.name(),
            url: spec.url.clone(),
            region: spec.region.clone(),
            backup_ingest: spec.backup_ingest,
            autostart: spec.autostart,
            stream_key_set: spec.stream_key.is_some(),
        }
    }
}

/// An input's settings as the encoder needs them; the dashboard's ingest help builds the URLs
/// from these and the address the operator reaches the box at.
#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestView {
    /// SRT: the caller connects here with this latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    pub passphrase_set: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    /// RTMP: OBS publishes to `rtmp://HOST:PORT/live` with the input's stream key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmp_app: Option<&'static str>,
    pub stream_key_set: bool,
    /// WHIP: the publisher POSTs its offer here (with the input's token as bearer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whip_path: Option<String>,
    pub token_set: bool,
}
