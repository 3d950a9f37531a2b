//! Configuration: TOML → a validated [`Config`], with every error located at file:line:column.
//!
//! Parsing stops at the first syntax or shape error (unknown keys included); the semantic
//! checks after it (ranges, ids, port conflicts, `${ENV}` references) report everything at once.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use lunora_egress::{DestinationSpec, Preset, SpecField, ValidDestination};
use lunora_ingest::RtmpsSettings;
use lunora_media::Secret;
use lunora_switch::{AlignedClock, HealthSettings, Policy, Preference, Reason, SwitchMode};
use serde::Deserialize;
use toml::Spanned;

/// The configuration `lunora run` uses when given no file.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");

// ---- the file's shape ---------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    http: RawHttp,
    rtmp: Option<RawRtmp>,
    state: Option<RawState>,
    #[serde(default)]
    channels: Vec<RawChannel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    /// Where changes made through the API are saved.
    dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Spanned<SocketAddr>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: Spanned::new(0..0, SocketAddr::from(([127, 0, 0, 1], 8080))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRtmp {
    listen: Spanned<SocketAddr>,
    /// RTMPS: where to take it, with which certificate and key (PEM files); all three or none.
    tls_listen: Option<Spanned<SocketAddr>>,
    certificate: Option<Spanned<PathBuf>>,
    private_key: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    Single,
    MainBackup,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::MainBackup => "main-backup",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    id: Spanned<String>,
    mode: Spanned<Mode>,
    #[serde(default)]
    failover: RawFailover,
    #[serde(default)]
    inputs: Vec<Spanned<RawInput>>,
    #[serde(default)]
    outputs: Vec<Spanned<RawOutput>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    #[serde(default = "default_input_loss")]
    input_loss_ms: Spanned<u64>,
    #[serde(default = "default_preference")]
    preference: RawPreference,
    #[serde(default = "default_error_clear")]
    error_clear_ms: Spanned<u64>,
    #[serde(default = "default_switch")]
    switch: Spanned<RawSwitch>,
    triggers: Option<Spanned<Vec<Spanned<String>>>>,
    aligned_delay_ms: Option<Spanned<u64>>,
    aligned_clock: Option<Spanned<RawAlignedClock>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawAlignedClock {
    Arrival,
    Shared,
}

fn default_input_loss() -> Spanned<u64> {
    Spanned::new(0..0, 500)
}

fn default_preference() -> RawPreference {
    RawPreference::Primary
}

fn default_error_clear() -> Spanned<u64> {
    Spanned::new(0..0, 5000)
}

fn default_switch() -> Spanned<RawSwitch> {
    Spanned::new(0..0, RawSwitch::Cut)
}

impl Default for RawFailover {
    fn default() -> Self {
        RawFailover {
            input_loss_ms: default_input_loss(),
            preference: default_preference(),
            error_clear_ms: default_error_clear(),
            switch: default_switch(),
            triggers: None,
            aligned_delay_ms: None,
            aligned_clock: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawPreference {
    Primary,
    Equal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawSwitch {
    Cut,
    Aligned,
    Merge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    Main,
    Backup,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Main => "main",
            Role::Backup => "backup",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum InputKind {
    Srt,
    Rtmp,
    Rtp,
    Whip,
    File,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    id: Spanned<String>,
    #[serde(default = "default_role")]
    role: Role,
    #[serde(rename = "type")]
    kind: Spanned<InputKind>,
    listen: Option<Spanned<SocketAddr>>,
    #[serde(default = "default_latency")]
    latency_ms: Spanned<u64>,
    passphrase: Option<Spanned<String>>,
    stream_id: Option<Spanned<String>>,
    stream_key: Option<Spanned<String>>,
}

fn default_role() -> Role {
    Role::Main
}

fn default_latency() -> Spanned<u64> {
    Spanned::new(0..0, 120)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OutputKind {
    Srt,
    Rtmp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OutputMode {
    Caller,
    Listener,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    id: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<OutputKind>,
    mode: Option<Spanned<OutputMode>>,
    preset: Option<Spanned<Preset>>,
    region: Option<Spanned<String>>,
    backup_ingest: Option<Spanned<bool>>,
    url: Option<Spanned<String>>,
    stream_key: Option<Spanned<String>>,
    #[serde(default)]
    autostart: bool,
    retry_min_ms: Option<Spanned<u64>>,
    retry_max_ms: Option<Spanned<u64>>,
    address: Option<Spanned<SocketAddr>>,
    listen: Option<Spanned<SocketAddr>>,
    #[serde(default = "default_latency")]
    latency_ms: Spanned<u64>,
    passphrase: Option<Spanned<String>>,
    pbkeylen: Option<Spanned<u8>>,
    stream_id: Option<Spanned<String>>,
}

// ---- the validated result -----------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) http_listen: SocketAddr,
    /// The shared RTMP server's address (bound only when an RTMP input exists).
    pub(crate) rtmp_listen: SocketAddr,
    /// `[rtmp] tls_listen` with its certificate and key.
    pub(crate) rtmps: Option<RtmpsSettings>,
    /// `[state] dir`; `None`: [`crate::state::default_dir`].
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) channels: Vec<Channel>,
}

#[derive(Debug, Clone)]
pub(crate) struct Channel {
    pub(crate) id: String,
    pub(crate) mode: Mode,
    pub(crate) input_loss: Duration,
    pub(crate) policy: Policy,
    pub(crate) inputs: Vec<Input>,
    pub(crate) outputs: Vec<Output>,
}

#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub(crate) id: String,
    pub(crate) role: Role,
    pub(crate) transport: InputTransport,
}

#[derive(Debug, Clone)]
pub(crate) enum InputTransport {
    Srt {
        listen: SocketAddr,
        latency: Duration,
        passphrase: Option<Secret>,
        stream_id: Option<String>,
    },
    /// Published to the shared RTMP server as `rtmp://HOST/live/<stream_key>`.
    Rtmp { stream_key: Secret },
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "built once at start-up")]
pub(crate) enum OutputTarget {
    /// RTMP push to a platform or server; starts and stops on its own.
    Rtmp {
        spec: DestinationSpec,
        destination: ValidDestination,
    },
    Caller {
        address: SocketAddr,
        passphrase: Option<Secret>,
        key_length: u8,
        stream_id: Option<String>,
    },
    Listener {
        listen: SocketAddr,
        passphrase: Option<Secret>,
        stream_id: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub(crate) id: String,
    pub(crate) latency: Duration,
    pub(crate) target: OutputTarget,
}

// ---- errors ------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

/// All the problems found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigErrors {
    pub(crate) file: String,
    pub(crate) errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, e) in self.errors.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.file, e.line, e.column, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

struct Collector<'a> {
    source: &'a str,
    errors: Vec<ConfigError>,
}

impl Collector<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let offset = span.start.min(self.source.len());
        let before = &self.source[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.errors.push(ConfigError {
            line,
            column,
            message: message.into(),
        });
    }
}

/// Expands `${NAME}` references from `lookup`. Returns the first missing name on failure.
fn expand_env(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
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

pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Parses and validates `source`. `file` names it in error messages; `lookup` resolves
/// `${ENV}` references (the process environment in production).
pub(crate) fn parse(
    file: &str,
    source: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut c = Collector {
        source,
        errors: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(e) => {
            c.at(e.span().unwrap_or(0..0), e.message().trim().to_string());
            return Err(ConfigErrors {
                file: file.to_string(),
                errors: c.errors,
            });
        }
    };
    let config = validate(&mut c, raw, lookup);
    if c.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors {
            file: file.to_string(),
            errors: c.errors,
        })
    }
}

/// `value` with its `${ENV}` references expanded; a missing variable is reported at `value`.
fn expanded(
    c: &mut Collector<'_>,
    value: &Spanned<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    expand_env(value.get_ref(), lookup)
        .map_err(|message| c.at(value.span(), message))
        .ok()
}

fn secret(
    c: &mut Collector<'_>,
    value: &Option<Spanned<String>>,
    lookup: &dyn Fn(&str) -> Option<String>,
    what: &str,
) -> Option<Secret> {
    let value = value.as_ref()?;
    let expanded = expanded(c, value, lookup)?;
    let length = expanded.chars().count();
    if !(10..=79).contains(&length) {
        c.at(
            value.span(),
            format!("{what} must be 10–79 characters (SRT's rule); it is {length}"),
        );
    }
    Some(Secret::new(expanded))
}

fn stream_key_secret(
    c: &mut Collector<'_>,
    value: &Spanned<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<Secret> {
    let key = expanded(c, value, lookup)?;
    if !lunora_media::valid_stream_key(&key) {
        c.at(value.span(), lunora_media::STREAM_KEY_RULE);
        return None;
    }
    Some(Secret::new(key))
}

fn rtmp_output(
    c: &mut Collector<'_>,
    output: &RawOutput,
    span: Range<usize>,
    id: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<OutputTarget> {
    for (present, key) in [
        (output.mode.is_some(), "mode"),
        (output.listen.is_some(), "listen"),
        (output.address.is_some(), "address"),
        (output.passphrase.is_some(), "passphrase"),
    ] {
        if present {
            c.at(span.clone(), format!("RTMP output {id:?}: `{key}` does not apply; RTMP destinations take preset, url and stream_key"));
        }
    }
    let stream_key = match &output.stream_key {
        Some(key) => Some(Secret::new(expanded(c, key, lookup)?)),
        None => None,
    };
    let spec = DestinationSpec {
        preset: output
            .preset
            .as_ref()
            .map_or(Preset::Custom, |p| *p.get_ref()),
        url: output.url.as_ref().map(|u| u.get_ref().clone()),
        region: output.region.as_ref().map(|r| r.get_ref().clone()),
        backup_ingest: output.backup_ingest.as_ref().is_some_and(|b| *b.get_ref()),
        stream_key,
        autostart: output.autostart,
        retry_min_ms: output.retry_min_ms.as_ref().map(|v| *v.get_ref()),
        retry_max_ms: output.retry_max_ms.as_ref().map(|v| *v.get_ref()),
    };
    match spec.validate() {
        Ok(destination) => Some(OutputTarget::Rtmp { spec, destination }),
        Err(problems) => {
            for problem in problems {
                let at = match problem.field {
                    SpecField::Url => output.url.as_ref().map(|v| v.span()),
                    SpecField::Region => output.region.as_ref().map(|v| v.span()),
                    SpecField::BackupIngest => output.backup_ingest.as_ref().map(|v| v.span()),
                    SpecField::StreamKey => output.stream_key.as_ref().map(|v| v.span()),
                    SpecField::RetryMin => output.retry_min_ms.as_ref().map(|v| v.span()),
                    SpecField::RetryMax => output.retry_max_ms.as_ref().map(|v| v.span()),
                };
                c.at(
                    at.unwrap_or(span.clone()),
                    format!("RTMP output {id:?}: {}", problem.message),
                );
            }
            None
        }
    }
}

fn latency(c: &mut Collector<'_>, value: &Spanned<u64>) -> Duration {
    let ms = *value.get_ref();
    if !(20..=15_000).contains(&ms) {
        c.at(
            value.span(),
            format!("latency_ms must be between 20 and 15000; it is {ms}"),
        );
    }
    Duration::from_millis(ms)
}

fn failover_policy(c: &mut Collector<'_>, raw: &RawFailover) -> Policy {
    let error_clear_ms = *raw.error_clear_ms.get_ref();
    if error_clear_ms > 600_000 {
        c.at(
            raw.error_clear_ms.span(),
            format!("error_clear_ms must be at most 600000; it is {error_clear_ms}"),
        );
    }
    let aligned_delay = raw.aligned_delay_ms.as_ref().map(|d| {
        if !(100..=10_000).contains(d.get_ref()) {
            c.at(
                d.span(),
                format!(
                    "aligned_delay_ms must be between 100 and 10000 (at least one GOP); it is {}",
                    d.get_ref()
                ),
            );
        }
        Duration::from_millis(*d.get_ref())
    });
    let mode = match raw.switch.get_ref() {
        RawSwitch::Cut => {
            if let Some(d) = &raw.aligned_delay_ms {
                c.at(d.span(), "aligned_delay_ms applies to switch = \"aligned\"");
            }
            if let Some(clock) = &raw.aligned_clock {
                c.at(
                    clock.span(),
                    "aligned_clock applies to switch = \"aligned\"",
                );
            }
            SwitchMode::Cut
        }
        RawSwitch::Aligned => SwitchMode::Aligned {
            delay: aligned_delay,
            clock: match raw.aligned_clock.as_ref().map(|c| *c.get_ref()) {
                Some(RawAlignedClock::Shared) => AlignedClock::Shared,
                _ => AlignedClock::Arrival,
            },
        },
        RawSwitch::Merge => {
            c.at(
                raw.switch.span(),
                "switch = \"merge\" is not supported by this version; use \"cut\" or \"aligned\"",
            );
            SwitchMode::Cut
        }
    };
    let triggers = match &raw.triggers {
        None => Reason::ALL.to_vec(),
        Some(list) => list
            .get_ref()
            .iter()
            .filter_map(|name| {
                let reason = Reason::from_name(name.get_ref());
                if reason.is_none() {
                    let known: Vec<&str> = Reason::ALL.iter().map(|r| r.name()).collect();
                    c.at(
                        name.span(),
                        format!(
                            "unknown trigger {:?}; known: {}",
                            name.get_ref(),
                            known.join(", ")
                        ),
                    );
                }
                reason
            })
            .collect(),
    };
    Policy {
        health: HealthSettings {
            input_loss: Duration::from_millis(*raw.input_loss_ms.get_ref()),
            ..HealthSettings::default()
        },
        preference: if raw.preference == RawPreference::Equal {
            Preference::Equal
        } else {
            Preference::Primary
        },
        error_clear: Duration::from_millis(error_clear_ms),
        triggers,
        mode,
    }
}

fn validate(
    c: &mut Collector<'_>,
    raw: RawConfig,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Config {
    let mut channel_ids = HashSet::new();
    // (address, span, owner) of every UDP port we bind, for the conflict check.
    let mut udp_ports: Vec<(SocketAddr, Range<usize>, String)> = Vec::new();
    let mut rtmp_keys: Vec<(Secret, String)> = Vec::new();
    let mut channels = Vec::new();
    if raw.channels.is_empty() {
        c.at(0..0, "no [[channels]] configured; add at least one");
    }
    for ch in raw.channels {
        let id = ch.id.get_ref().clone();
        if !valid_id(&id) {
            c.at(
                ch.id.span(),
                format!("channel id {id:?} must be 1–64 characters of a-z, 0-9, '-' or '_'"),
            );
        }
        if !channel_ids.insert(id.clone()) {
            c.at(ch.id.span(), format!("channel id {id:?} is used twice"));
        }
        let input_loss_ms = *ch.failover.input_loss_ms.get_ref();
        if input_loss_ms < 50 {
            c.at(
                ch.failover.input_loss_ms.span(),
                format!("input_loss_ms must be at least 50; it is {input_loss_ms}"),
            );
        }
        let policy = failover_policy(c, &ch.failover);
        let mode = *ch.mode.get_ref();
        let mut ids = HashSet::new();
        let mut inputs = Vec::new();
        for input in &ch.inputs {
            let span = input.span();
            let input = input.get_ref();
            let input_id = input.id.get_ref().clone();
            if !valid_id(&input_id) {
                c.at(
                    input.id.span(),
                    format!(
                        "input id {input_id:?} must be 1–64 characters of a-z, 0-9, '-' or '_'"
                    ),
                );
            }
            if !ids.insert(input_id.clone()) {
                c.at(
                    input.id.span(),
                    format!("id {input_id:?} is used twice in channel {id:?}"),
                );
            }
            let transport = match input.kind.get_ref() {
                InputKind::Srt => {
                    if let Some(key) = &input.stream_key {
                        c.at(key.span(), "stream_key is for type = \"rtmp\" inputs; SRT inputs use passphrase and stream_id");
                    }
                    let Some(listen) = &input.listen else {
                        c.at(
                            span,
                            format!("SRT input {input_id:?} needs `listen = \"IP:PORT\"`"),
                        );
                        continue;
                    };
                    udp_ports.push((
                        *listen.get_ref(),
                        listen.span(),
                        format!("input {id}/{input_id}"),
                    ));
                    InputTransport::Srt {
                        listen: *listen.get_ref(),
                        latency: latency(c, &input.latency_ms),
                        passphrase: secret(c, &input.passphrase, lookup, "passphrase"),
                        stream_id: input.stream_id.as_ref().map(|s| s.get_ref().clone()),
                    }
                }
                InputKind::Rtmp => {
                    for (present, key) in [
                        (input.listen.is_some(), "listen"),
                        (input.passphrase.is_some(), "passphrase"),
                        (input.stream_id.is_some(), "stream_id"),
                    ] {
                        if present {
                            c.at(span.clone(), format!("RTMP input {input_id:?}: `{key}` does not apply; RTMP inputs share [rtmp] listen and are told apart by stream_key"));
                        }
                    }
                    let Some(key) = &input.stream_key else {
                        c.at(span, format!("RTMP input {input_id:?} needs `stream_key` (OBS publishes to rtmp://HOST:1935/live/<stream_key>)"));
                        continue;
                    };
                    let Some(stream_key) = stream_key_secret(c, key, lookup) else {
                        continue;
                    };
                    if rtmp_keys
                        .iter()
                        .any(|(k, _): &(Secret, String)| *k == stream_key)
                    {
                        c.at(key.span(), "this stream key is already used by another RTMP input; every RTMP input needs its own");
                    }
                    rtmp_keys.push((stream_key.clone(), format!("{id}/{input_id}")));
                    InputTransport::Rtmp { stream_key }
                }
                _ => {
                    c.at(
                        input.kind.span(),
                        "only type = \"srt\" and \"rtmp\" inputs are supported by this version",
                    );
                    continue;
                }
            };
            inputs.push(Input {
                id: input_id,
                role: input.role,
                transport,
            });
        }
        let mains = ch
            .inputs
            .iter()
            .filter(|i| i.get_ref().role == Role::Main)
            .count();
        let backups = ch.inputs.len() - mains;
        match mode {
            Mode::Single if ch.inputs.len() != 1 => {
                c.at(ch.mode.span(), format!("mode \"single\" needs exactly one input; channel {id:?} has {}", ch.inputs.len()))
            }
            Mode::MainBackup if mains != 1 || backups == 0 => c.at(
                ch.mode.span(),
                format!("mode \"main-backup\" needs one input with role = \"main\" and at least one with role = \"backup\"; channel {id:?} has {mains} main and {backups} backup"),
            ),
            _ => {}
        }
        let mut outputs = Vec::new();
        for output in &ch.outputs {
            let span = output.span();
            let output = output.get_ref();
            let output_id = output.id.get_ref().clone();
            if !valid_id(&output_id) {
                c.at(
                    output.id.span(),
                    format!(
                        "output id {output_id:?} must be 1–64 characters of a-z, 0-9, '-' or '_'"
                    ),
                );
            }
            if !ids.insert(output_id.clone()) {
                c.at(
                    output.id.span(),
                    format!("id {output_id:?} is used twice in channel {id:?}"),
                );
            }
            if *output.kind.get_ref() == OutputKind::Rtmp {
                if let Some(target) = rtmp_output(c, output, span.clone(), &output_id, lookup) {
                    outputs.push(Output {
                        id: output_id,
                        latency: Duration::ZERO,
                        target,
                    });
                }
                continue;
            }
            let Some(mode) = &output.mode else {
                c.at(
                    span,
                    format!("SRT output {output_id:?} needs `mode = \"caller\"` or `\"listener\"`"),
                );
                continue;
            };
            let passphrase = secret(c, &output.passphrase, lookup, "passphrase");
            let stream_id = output.stream_id.as_ref().map(|s| s.get_ref().clone());
            let target = match mode.get_ref() {
                OutputMode::Caller => {
                    if let Some(listen) = &output.listen {
                        c.at(
                            listen.span(),
                            "`listen` is for mode = \"listener\"; a caller uses `address`",
                        );
                    }
                    let key_length = match &output.pbkeylen {
                        Some(k) if ![16, 24, 32].contains(k.get_ref()) => {
                            c.at(
                                k.span(),
                                format!("pbkeylen must be 16, 24 or 32; it is {}", k.get_ref()),
                            );
                            16
                        }
                        Some(k) => *k.get_ref(),
                        None => 16,
                    };
                    let Some(address) = &output.address else {
                        c.at(
                            span,
                            format!(
                                "SRT caller output {output_id:?} needs `address = \"IP:PORT\"`"
                            ),
                        );
                        continue;
                    };
                    OutputTarget::Caller {
                        address: *address.get_ref(),
                        passphrase,
                        key_length,
                        stream_id,
                    }
                }
                OutputMode::Listener => {
                    if let Some(address) = &output.address {
                        c.at(
                            address.span(),
                            "`address` is for mode = \"caller\"; a listener uses `listen`",
                        );
                    }
                    if let Some(k) = &output.pbkeylen {
                        c.at(
                            k.span(),
                            "pbkeylen applies to callers; a listener takes the caller's key length",
                        );
                    }
                    let Some(listen) = &output.listen else {
                        c.at(
                            span,
                            format!(
                                "SRT listener output {output_id:?} needs `listen = \"IP:PORT\"`"
                            ),
                        );
                        continue;
                    };
                    udp_ports.push((
                        *listen.get_ref(),
                        listen.span(),
                        format!("output {id}/{output_id}"),
                    ));
                    OutputTarget::Listener {
                        listen: *listen.get_ref(),
                        passphrase,
                        stream_id,
                    }
                }
            };
            outputs.push(Output {
                id: output_id,
                latency: latency(c, &output.latency_ms),
                target,
            });
        }
        channels.push(Channel {
            id,
            mode,
            input_loss: Duration::from_millis(input_loss_ms),
            policy,
            inputs,
            outputs,
        });
    }
    for (i, (a, span, owner)) in udp_ports.iter().enumerate() {
        for (b, _, other) in &udp_ports[..i] {
            let overlap = a.port() == b.port()
                && a.port() != 0
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified());
            if overlap {
                c.at(
                    span.clone(),
                    format!(
                        "UDP port {} of {owner} is already used by {other}",
                        a.port()
                    ),
                );
            }
        }
    }
    let rtmp_listen = raw
        .rtmp
        .as_ref()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 1935)), |r| {
            *r.listen.get_ref()
        });
    let http_listen = *raw.http.listen.get_ref();
    if !rtmp_keys.is_empty() && rtmp_listen.port() == http_listen.port() && rtmp_listen.port() != 0
    {
        let span = raw.rtmp.as_ref().map_or(0..0, |r| r.listen.span());
        c.at(
            span,
            format!(
                "TCP port {} is used by both [http] and [rtmp]",
                rtmp_listen.port()
            ),
        );
    }
    let rtmps =
        raw.rtmp
            .as_ref()
            .and_then(|r| match (&r.tls_listen, &r.certificate, &r.private_key) {
                (Some(listen), Some(certificate), Some(private_key)) => {
                    for path in [certificate, private_key] {
                        if !path.get_ref().is_file() {
                            c.at(
                                path.span(),
                                format!("{} is not a readable file", path.get_ref().display()),
                            );
                        }
                    }
                    if listen.get_ref().port() == rtmp_listen.port() && listen.get_ref().port() != 0
                    {
                        c.at(
                            listen.span(),
                            "tls_listen needs its own port (RTMPS and RTMP cannot share one)",
                        );
                    }
                    Some(RtmpsSettings {
                        listen: *listen.get_ref(),
                        certificate: certificate.get_ref().clone(),
                        private_key: private_key.get_ref().clone(),
                    })
                }
                (None, None, None) => None,
                _ => {
                    c.at(
                        r.listen.span(),
                        "RTMPS needs all of tls_listen, certificate and private_key in [rtmp]",
                    );
                    None
                }
            });
    Config {
        http_listen,
        rtmp_listen,
        rtmps,
        state_dir: raw.state.map(|s| s.dir),
        channels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SRT_PASS").then(|| "correct horse battery".to_string())
    }

    fn errors(source: &str) -> Vec<String> {
        match parse("t.toml", source, &env) {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    #[test]
    fn default_config_is_valid() {
        let config =
            parse("default.toml", DEFAULT_CONFIG, &|_| None).expect("default config parses");
        assert_eq!(config.channels[0].id, "program");
        assert_eq!(config.channels[0].inputs.len(), 2);
    }

    #[test]
    fn unknown_key_is_located() {
        let e = errors("[http]\nlisten = \"127.0.0.1:8080\"\nlistne = 1\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("t.toml:3:1: "), "{e:?}");
        assert!(e[0].contains("listne"), "{e:?}");
    }

    #[test]
    fn every_semantic_error_is_reported_at_once() {
        let source = r#"
[[channels]]
id = "Bad Id"
mode = "main-backup"
failover = { input_loss_ms = 10 }

[[channels.inputs]]
id = "a"
role = "main"
type = "srt"
listen = "0.0.0.0:9000"
passphrase = "${MISSING_VAR}"

[[channels.inputs]]
id = "b"
role = "backup"
type = "srt"
listen = "127.0.0.1:9000"
latency_ms = 5
"#;
        let e = errors(source);
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(
            e[0].starts_with("t.toml:3:6: channel id \"Bad Id\""),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("t.toml:5:") && l.contains("input_loss_ms")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("t.toml:12:") && l.contains("MISSING_VAR")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("t.toml:19:14:") && l.contains("latency_ms")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("t.toml:18:10:") && l.contains("UDP port 9000")),
            "{e:?}"
        );
    }

    #[test]
    fn env_references_expand_into_secrets() {
        let source = r#"
[[channels]]
id = "p"
mode = "single"
[[channels.inputs]]
id = "a"
type = "srt"
listen = "0.0.0.0:9000"
passphrase = "${SRT_PASS}"
"#;
        let config = parse("t.toml", source, &env).expect("valid");
        let InputTransport::Srt {
            passphrase: Some(passphrase),
            ..
        } = config.channels[0].inputs[0].transport.clone()
        else {
            panic!("an SRT input with a passphrase")
        };
        assert_eq!(passphrase.expose(), "correct horse battery");
        assert_eq!(
            format!("{config:?}").matches("correct horse").count(),
            0,
            "secrets never in Debug output"
        );
    }

    #[test]
    fn unsupported_input_type_is_explained() {
        let source = "[[channels]]\nid = \"p\"\nmode = \"single\"\n[[channels.inputs]]\nid = \"cam\"\ntype = \"whip\"\n";
        let e = errors(source);
        assert!(
            e.iter()
                .any(|l| l.starts_with("t.toml:6:8:")
                    && l.contains("only type = \"srt\" and \"rtmp\"")),
            "{e:?}"
        );
    }

    #[test]
    fn rtmp_inputs_need_distinct_stream_keys() {
        let source = "[[channels]]\nid = \"a\"\nmode = \"single\"\n[[channels.inputs]]\nid = \"obs\"\ntype = \"rtmp\"\nstream_key = \"k1\"\n\
                      [[channels]]\nid = \"b\"\nmode = \"single\"\n[[channels.inputs]]\nid = \"obs\"\ntype = \"rtmp\"\nstream_key = \"k1\"\n";
        let e = errors(source);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:14:14:") && e[0].contains("already used"),
            "{e:?}"
        );
        assert!(!e[0].contains("k1"), "keys are never printed");
    }

    #[test]
    fn rtmps_needs_its_certificate_key_and_own_port() {
        let channel = "[[channels]]\nid = \"a\"\nmode = \"single\"\n[[channels.inputs]]\nid = \"obs\"\ntype = \"rtmp\"\nstream_key = \"k1\"\n";
        let partial = errors(&format!(
            "[rtmp]\nlisten = \"0.0.0.0:1935\"\ntls_listen = \"0.0.0.0:1936\"\n{channel}"
        ));
        assert!(
            partial
                .iter()
                .any(|e| e.contains("all of tls_listen, certificate and private_key")),
            "{partial:?}"
        );
        let missing = errors(&format!(
            "[rtmp]\nlisten = \"0.0.0.0:1935\"\ntls_listen = \"0.0.0.0:1935\"\ncertificate = \"/nonexistent/c.pem\"\nprivate_key = \"/nonexistent/k.pem\"\n{channel}"
        ));
        assert!(
            missing
                .iter()
                .any(|e| e.starts_with("t.toml:4:15:") && e.contains("not a readable file")),
            "{missing:?}"
        );
        assert!(
            missing.iter().any(|e| e.contains("its own port")),
            "{missing:?}"
        );
    }
}
