//! Configuration: TOML → a validated [`Config`], with every error located at file:line:column.
//!
//! Channels, inputs and outputs are read into the same settings types the API takes
//! (`lunora_control::settings`) and checked by the same validator; this file only adds where
//! each problem is in the file. A syntax error stops parsing; past that, every problem in every
//! component is reported at once.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use lunora_control::{
    ChannelId, ChannelMode, ChannelSettings, ChannelSpec, Component, FailoverSettings, GraphSpec,
    InputSettings, OutputSettings, Problem, ProfileSettings, RtmpsSettings, SlateSettings,
};
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
    whip: Option<Spanned<RawWhip>>,
    state: Option<RawState>,
    #[serde(default)]
    log: RawLog,
    aws: Option<Spanned<RawAws>>,
    /// The slate of every channel that has no `[channels.slate]` of its own.
    slate: Option<Spanned<SlateSettings>>,
    #[serde(default)]
    channels: Vec<RawChannel>,
    /// `[profiles.<name>]`: transcodes RTMP destinations can name.
    #[serde(default)]
    profiles: std::collections::BTreeMap<String, Spanned<ProfileSettings>>,
}

/// `[aws]`: the account MediaLive and MediaPackage are provisioned in. Credentials come from
/// the standard chain (environment, shared profile, instance or container role), never from
/// this file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// Without the feature it is still parsed, so that the section is refused with a reason.
#[cfg_attr(not(feature = "medialive"), allow(dead_code))]
struct RawAws {
    region: Spanned<String>,
    profile: Option<Spanned<String>>,
    endpoint_url: Option<Spanned<String>>,
    role_arn: Option<Spanned<String>>,
    box_id: Option<Spanned<String>>,
    input_security_groups: Option<bool>,
    poll_interval_s: Option<Spanned<u64>>,
    public_address_url: Option<Spanned<String>>,
    origin_endpoints: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
}

/// How log lines are written: for people (`text`) or for a log collector (`json`, one object
/// per line with the span fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    /// Where the state database lives.
    dir: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Spanned<SocketAddr>,
    /// Host names (and addresses) the box answers to besides the listen address and loopback.
    #[serde(default)]
    hosts: Vec<String>,
    /// When set, `/metrics` needs `Authorization: Bearer <metrics_token>`.
    metrics_token: Option<Spanned<String>>,
    /// HTTPS: where, with which certificate and key (PEM files); all three or none.
    tls_listen: Option<Spanned<SocketAddr>>,
    certificate: Option<Spanned<PathBuf>>,
    private_key: Option<Spanned<PathBuf>>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: Spanned::new(0..0, SocketAddr::from(([127, 0, 0, 1], 8080))),
            hosts: Vec::new(),
            metrics_token: None,
            tls_listen: None,
            certificate: None,
            private_key: None,
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

/// `[whip]`: WebRTC ingest's UDP port and what answers offer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhip {
    udp_listen: Option<SocketAddr>,
    #[serde(default)]
    ice_addresses: Vec<std::net::IpAddr>,
    #[serde(default)]
    ice_servers: Vec<String>,
    max_sessions: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    id: Spanned<String>,
    mode: Spanned<ChannelMode>,
    failover: Option<Spanned<FailoverSettings>>,
    slate: Option<SlateSettings>,
    /// Read as tables first, so that one input's error does not hide the others'.
    #[serde(default)]
    inputs: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    outputs: Vec<Spanned<toml::Table>>,
}

// ---- the validated result -----------------------------------------------------------------

/// HTTPS for the dashboard and API (`[http] tls_listen`).
#[derive(Debug, Clone)]
pub(crate) struct HttpsSettings {
    pub(crate) listen: SocketAddr,
    pub(crate) certificate: PathBuf,
    pub(crate) private_key: PathBuf,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) http_listen: SocketAddr,
    pub(crate) http_hosts: Vec<String>,
    pub(crate) metrics_token: Option<lunora_media::Secret>,
    pub(crate) https: Option<HttpsSettings>,
    /// The shared RTMP server's address (bound only when an RTMP input exists).
    pub(crate) rtmp_listen: SocketAddr,
    /// `[rtmp] tls_listen` with its certificate and key.
    pub(crate) rtmps: Option<RtmpsSettings>,
    /// `[whip]` (defaults when absent).
    pub(crate) whip: lunora_control::WhipEndpoint,
    /// `[state] dir`; `None`: [`crate::state::default_dir`].
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) log_format: LogFormat,
    /// `[aws]`, checked.
    #[cfg(feature = "medialive")]
    pub(crate) aws: Option<lunora_medialive::AwsSettings>,
    /// `[slate]`: every channel's slate unless it has its own.
    pub(crate) slate: SlateSettings,
    pub(crate) graph: GraphSpec,
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

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
        let before = self.source.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.errors.push(ConfigError {
            line,
            column,
            message: message.into(),
        });
    }

    /// Where `key`'s value starts inside `table` (the span of a table or inline table), or
    /// the table itself when the key is not written there.
    fn key(&self, table: &Range<usize>, key: &str) -> Range<usize> {
        // An `[[array.of.tables]]` entry's span may cover only its header: its keys run to
        // the next header.
        let rest = self.source.get(table.start..).unwrap_or("");
        let body_end = rest
            .get(1..)
            .and_then(|r| r.find("\n["))
            .map_or(self.source.len(), |n| table.start + n + 2);
        let region = table.start..table.end.max(body_end).min(self.source.len());
        let Some(text) = self.source.get(region.clone()) else {
            return table.clone();
        };
        let table = &region;
        let bytes = text.as_bytes();
        let mut from = 0;
        while let Some(found) = text.get(from..).and_then(|t| t.find(key)) {
            let start = from + found;
            let end = start + key.len();
            from = end;
            let boundary_before = start == 0
                || matches!(
                    bytes.get(start - 1),
                    Some(b' ' | b'\t' | b'\n' | b'{' | b',')
                );
            let rest = text.get(end..).unwrap_or("");
            let after_spaces = rest.trim_start_matches([' ', '\t']);
            if boundary_before && after_spaces.starts_with('=') {
                let value = after_spaces[1..].trim_start_matches([' ', '\t']);
                let offset = table.start + text.len() - value.len();
                return offset..offset;
            }
        }
        table.clone()
    }
}

/// The field a serde error names (`unknown field `x``), to point at it.
fn named_field(message: &str) -> Option<&str> {
    let start = message.find("field `")? + "field `".len();
    let end = message[start..].find('`')? + start;
    Some(&message[start..end])
}

/// Reads one `[[channels.inputs]]`/`[[channels.outputs]]` table into its settings type; a
/// shape error is reported at the key it is about.
fn component<T: serde::de::DeserializeOwned>(
    c: &mut Collector<'_>,
    table: &Spanned<toml::Table>,
    what: &str,
    known_types: &str,
) -> Option<T> {
    match T::deserialize(toml::Value::Table(table.get_ref().clone())) {
        Ok(settings) => Some(settings),
        Err(e) => {
            let message = e.message().trim().to_string();
            let span = table.span();
            if message.contains("unknown variant") {
                c.at(
                    c.key(&span, "type"),
                    format!("only type = {known_types} {what}s are supported by this version"),
                );
            } else if message.contains("missing field `type`") {
                c.at(span, format!("every {what} needs `type` ({known_types})"));
            } else {
                let at = named_field(&message).map_or(span.clone(), |f| c.key(&span, f));
                c.at(at, message);
            }
            None
        }
    }
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
    // In the order of the file, as an editor walks it.
    c.errors.sort_by_key(|e| (e.line, e.column));
    if c.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors {
            file: file.to_string(),
            errors: c.errors,
        })
    }
}

/// Where in the file a component's problem is.
struct Spans {
    channel: Range<usize>,
    mode: Range<usize>,
    failover: Option<Range<usize>>,
    inputs: Vec<Range<usize>>,
    outputs: Vec<Range<usize>>,
}

fn report(c: &mut Collector<'_>, spans: &Spans, component: Component, problem: &Problem) {
    let table = match component {
        Component::Channel => match problem.field {
            Some("id") | None => spans.channel.clone(),
            Some("mode") => spans.mode.clone(),
            Some(_) => spans.failover.clone().unwrap_or(spans.channel.clone()),
        },
        Component::Input(i) => spans
            .inputs
            .get(i)
            .cloned()
            .unwrap_or(spans.channel.clone()),
        Component::Output(o) => spans
            .outputs
            .get(o)
            .cloned()
            .unwrap_or(spans.channel.clone()),
    };
    let at = match (component, problem.field) {
        (Component::Channel, Some("id" | "mode")) | (_, None) => table,
        (_, Some(field)) => c.key(&table, field),
    };
    c.at(at, problem.message.clone());
}

fn validate(
    c: &mut Collector<'_>,
    raw: RawConfig,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Config {
    let mut graph = GraphSpec::default();
    for (name, profile) in &raw.profiles {
        for problem in profile.get_ref().validate(name) {
            let span = profile.span();
            let at = problem.field.map_or(span.clone(), |f| c.key(&span, f));
            c.at(at, problem.message);
        }
        graph.profiles.insert(name.clone(), *profile.get_ref());
    }
    let mut spans = Vec::new();
    if raw.channels.is_empty() {
        c.at(0..0, "no [[channels]] configured; add at least one");
    }
    for ch in &raw.channels {
        let mut channel = ChannelSpec {
            settings: ChannelSettings {
                id: ChannelId::new(ch.id.get_ref().clone()),
                mode: *ch.mode.get_ref(),
                failover: ch
                    .failover
                    .as_ref()
                    .map(|f| f.get_ref().clone())
                    .unwrap_or_default(),
                slate: ch.slate.clone(),
            },
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        let mut span = Spans {
            channel: ch.id.span(),
            mode: ch.mode.span(),
            failover: ch.failover.as_ref().map(|f| f.span()),
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        for table in &ch.inputs {
            let Some(mut input) = component::<InputSettings>(
                c,
                table,
                "input",
                "\"srt\", \"rtmp\", \"file\", \"test_pattern\" and \"whip\"",
            ) else {
                continue;
            };
            for problem in input.expand_env(lookup) {
                c.at(
                    c.key(&table.span(), problem.field.unwrap_or("type")),
                    problem.message,
                );
            }
            channel.inputs.push(input);
            span.inputs.push(table.span());
        }
        for table in &ch.outputs {
            let Some(mut output) =
                component::<OutputSettings>(c, table, "output", "\"srt\" and \"rtmp\"")
            else {
                continue;
            };
            for problem in output.expand_env(lookup) {
                c.at(
                    c.key(&table.span(), problem.field.unwrap_or("type")),
                    problem.message,
                );
            }
            channel.outputs.push(output);
            span.outputs.push(table.span());
        }
        graph.channels.push(channel);
        spans.push(span);
    }
    for problem in graph.validate() {
        if let Some(span) = spans.get(problem.channel) {
            report(
                c,
                span,
                problem.component,
                &Problem {
                    field: problem.field,
                    message: problem.message,
                },
            );
        }
    }
    let has_rtmp_inputs = graph.channels.iter().any(|ch| {
        ch.inputs
            .iter()
            .any(|i| matches!(i, InputSettings::Rtmp(_)))
    });
    let rtmp_listen = raw
        .rtmp
        .as_ref()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 1935)), |r| {
            *r.listen.get_ref()
        });
    let http_listen = *raw.http.listen.get_ref();
    // Every TCP listener the daemon may bind, so that two on one port fail here and not at
    // start-up. RTMP is bound once an RTMP input exists, which the API can add at any time.
    let mut listeners: Vec<(&str, SocketAddr, Range<usize>)> =
        vec![("[http] listen", http_listen, raw.http.listen.span())];
    if let Some(l) = &raw.http.tls_listen {
        listeners.push(("[http] tls_listen", *l.get_ref(), l.span()));
    }
    if raw.rtmp.is_some() || has_rtmp_inputs {
        let span = raw.rtmp.as_ref().map_or(0..0, |r| r.listen.span());
        listeners.push(("[rtmp] listen", rtmp_listen, span));
    }
    if let Some(l) = raw.rtmp.as_ref().and_then(|r| r.tls_listen.as_ref()) {
        listeners.push(("[rtmp] tls_listen", *l.get_ref(), l.span()));
    }
    for (n, (name, address, span)) in listeners.iter().enumerate() {
        let clash = listeners[..n].iter().find(|(_, other, _)| {
            other.port() == address.port()
                && address.port() != 0
                && (other.ip() == address.ip()
                    || other.ip().is_unspecified()
                    || address.ip().is_unspecified())
        });
        if let Some((other, _, _)) = clash {
            c.at(
                span.clone(),
                format!(
                    "{name} needs its own port: TCP port {} is already used by {other}",
                    address.port()
                ),
            );
        }
    }
    if let Some(state) = &raw.state {
        let dir = state.dir.get_ref();
        if dir.exists() && !dir.is_dir() {
            c.at(
                state.dir.span(),
                format!("[state] dir {} is a file, not a directory", dir.display()),
            );
        }
    }
    let rtmps = raw.rtmp.as_ref().and_then(|r| {
        tls_files(
            c,
            "[rtmp]",
            r.listen.span(),
            &r.tls_listen,
            &r.certificate,
            &r.private_key,
        )
        .map(|(listen, certificate, private_key)| RtmpsSettings {
            listen,
            certificate,
            private_key,
        })
    });
    let whip = whip_endpoint(c, raw.whip.as_ref());
    let http = &raw.http;
    let https = tls_files(
        c,
        "[http]",
        http.listen.span(),
        &http.tls_listen,
        &http.certificate,
        &http.private_key,
    )
    .map(|(listen, certificate, private_key)| HttpsSettings {
        listen,
        certificate,
        private_key,
    });
    let metrics_token = http.metrics_token.as_ref().and_then(|token| {
        match lunora_control::expand_env(token.get_ref(), lookup) {
            Ok(value) if value.len() >= 16 => Some(lunora_media::Secret::new(value)),
            Ok(_) => {
                c.at(token.span(), "metrics_token must be at least 16 characters");
                None
            }
            Err(message) => {
                c.at(token.span(), message);
                None
            }
        }
    });
    #[cfg(feature = "medialive")]
    let aws = raw
        .aws
        .as_ref()
        .and_then(|section| aws_settings(c, section));
    #[cfg(not(feature = "medialive"))]
    if let Some(section) = &raw.aws {
        c.at(
            section.span(),
            "[aws] needs a lunora built with the `medialive` feature (on by default)",
        );
    }
    let slate = raw.slate.map_or_else(SlateSettings::default, |slate| {
        for problem in slate.get_ref().validate() {
            c.at(slate.span(), format!("[slate] {}", problem.message));
        }
        slate.into_inner()
    });
    Config {
        slate,
        http_listen,
        http_hosts: raw.http.hosts.clone(),
        metrics_token,
        https,
        rtmp_listen,
        rtmps,
        whip,
        state_dir: raw.state.map(|s| s.dir.into_inner()),
        log_format: raw.log.format,
        #[cfg(feature = "medialive")]
        aws,
        graph,
    }
}

/// `[whip]` with its defaults, each problem at its key.
fn whip_endpoint(
    c: &mut Collector<'_>,
    raw: Option<&Spanned<RawWhip>>,
) -> lunora_control::WhipEndpoint {
    let mut endpoint = lunora_control::WhipEndpoint::default();
    let Some(raw) = raw else {
        return endpoint;
    };
    let span = raw.span();
    let raw = raw.get_ref();
    if let Some(listen) = raw.udp_listen {
        endpoint.udp_listen = listen;
    }
    if !raw.ice_addresses.is_empty() {
        endpoint.ice_addresses = raw.ice_addresses.clone();
    }
    if let Some(bad) = raw
        .ice_addresses
        .iter()
        .find(|ip| ip.is_unspecified() || ip.is_multicast())
    {
        let at = c.key(&span, "ice_addresses");
        c.at(at, format!("[whip] ice_addresses: {bad} cannot be an ICE candidate; list the addresses publishers reach the box at"));
    }
    for server in &raw.ice_servers {
        let scheme_ok = ["stun:", "turn:", "turns:"]
            .iter()
            .any(|s| server.starts_with(s));
        if !scheme_ok
            || server.len() > 512
            || server
                .chars()
                .any(|ch| ch.is_control() || ch == '>' || ch == '"')
        {
            let at = c.key(&span, "ice_servers");
            c.at(
                at,
                format!("[whip] ice_servers: {server:?} is not a stun:, turn: or turns: URL"),
            );
        }
    }
    endpoint.ice_servers = raw.ice_servers.clone();
    if let Some(max) = raw.max_sessions {
        if (1..=1024).contains(&max) {
            endpoint.max_sessions = max;
        } else {
            let at = c.key(&span, "max_sessions");
            c.at(
                at,
                format!("[whip] max_sessions must be 1–1024; it is {max}"),
            );
        }
    }
    endpoint
}

/// `[aws]` checked by the MediaLive crate's own rules, each problem at its key.
#[cfg(feature = "medialive")]
fn aws_settings(
    c: &mut Collector<'_>,
    section: &Spanned<RawAws>,
) -> Option<lunora_medialive::AwsSettings> {
    let raw = section.get_ref();
    let value = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
    let settings = lunora_medialive::AwsSettings {
        region: raw.region.get_ref().clone(),
        profile: value(&raw.profile),
        endpoint_url: value(&raw.endpoint_url),
        role_arn: value(&raw.role_arn),
        box_id: value(&raw.box_id).unwrap_or_else(|| {
            let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            lunora_medialive::default_box_id(&hostname)
        }),
        input_security_groups: raw.input_security_groups.unwrap_or(true),
        poll_interval_s: raw
            .poll_interval_s
            .as_ref()
            .map_or(lunora_medialive::aws::DEFAULT_POLL_INTERVAL_S, |s| {
                *s.get_ref()
            }),
        origin_endpoints: raw.origin_endpoints.unwrap_or(true),
        public_address_url: value(&raw.public_address_url)
            .unwrap_or_else(|| lunora_medialive::address::DEFAULT_PUBLIC_ADDRESS_URL.to_string()),
    };
    let problems = settings.validate();
    for problem in &problems {
        let span = match problem.field {
            "profile" => raw.profile.as_ref().map(Spanned::span),
            "endpoint_url" => raw.endpoint_url.as_ref().map(Spanned::span),
            "role_arn" => raw.role_arn.as_ref().map(Spanned::span),
            "box_id" => raw.box_id.as_ref().map(Spanned::span),
            "poll_interval_s" => raw.poll_interval_s.as_ref().map(Spanned::span),
            "public_address_url" => raw.public_address_url.as_ref().map(Spanned::span),
            _ => Some(raw.region.span()),
        };
        c.at(
            span.unwrap_or(section.span()),
            format!("[aws] {}", problem.message),
        );
    }
    problems.is_empty().then_some(settings)
}

/// `tls_listen`, `certificate` and `private_key` of a section: all three (files readable) or none.
fn tls_files(
    c: &mut Collector<'_>,
    section: &str,
    section_span: Range<usize>,
    listen: &Option<Spanned<SocketAddr>>,
    certificate: &Option<Spanned<PathBuf>>,
    private_key: &Option<Spanned<PathBuf>>,
) -> Option<(SocketAddr, PathBuf, PathBuf)> {
    match (listen, certificate, private_key) {
        (Some(listen), Some(certificate), Some(private_key)) => {
            let mut readable = true;
            for path in [certificate, private_key] {
                if !path.get_ref().is_file() {
                    readable = false;
                    c.at(
                        path.span(),
                        format!("{} is not a readable file", path.get_ref().display()),
                    );
                }
            }
            // Built as the daemon will build it, so a key that does not belong to the
            // certificate (or a file that is not PEM) fails here, not at start-up.
            if readable
                && let Err(e) =
                    lunora_control::tls_acceptor(certificate.get_ref(), private_key.get_ref())
            {
                c.at(certificate.span(), format!("{section}: {e}"));
            }
            Some((
                *listen.get_ref(),
                certificate.get_ref().clone(),
                private_key.get_ref().clone(),
            ))
        }
        (None, None, None) => None,
        _ => {
            c.at(
                section_span,
                format!("TLS needs all of tls_listen, certificate and private_key in {section}"),
            );
            None
        }
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
        assert_eq!(config.graph.channels[0].settings.id.as_str(), "program");
        assert_eq!(config.graph.channels[0].inputs.len(), 2);
    }

    /// A valid channel, for tests about other sections.
    const CHANNEL: &str = "[[channels]]\nid = \"p\"\nmode = \"single\"\n\
                           [[channels.inputs]]\nid = \"obs\"\ntype = \"rtmp\"\nstream_key = \"k1\"\n";

    #[cfg(feature = "medialive")]
    #[test]
    fn aws_section_is_read_and_each_problem_located() {
        let ok = parse(
            "t.toml",
            &format!(
                "[aws]\nregion = \"eu-west-1\"\nprofile = \"lunora\"\n\
                 endpoint_url = \"http://127.0.0.1:5000\"\n{CHANNEL}"
            ),
            &env,
        )
        .expect("valid [aws]");
        let aws = ok.aws.expect("[aws] kept");
        assert_eq!(aws.region, "eu-west-1");
        assert_eq!(aws.profile.as_deref(), Some("lunora"));
        assert_eq!(aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(aws.role_arn, None);
        assert!(
            parse("t.toml", CHANNEL, &env)
                .expect("no [aws]")
                .aws
                .is_none(),
            "no [aws], no AWS"
        );
        let e = errors(&format!(
            "[aws]\nregion = \"Europe\"\nendpoint_url = \"localhost:5000\"\n\
             role_arn = \"MediaLiveAccessRole\"\n{CHANNEL}"
        ));
        assert_eq!(
            e,
            [
                "t.toml:2:10: [aws] region \"Europe\" is not an AWS region name like eu-west-1",
                "t.toml:3:16: [aws] endpoint_url \"localhost:5000\" must be an http:// or https:// URL with a host",
                "t.toml:4:12: [aws] role_arn \"MediaLiveAccessRole\" is not an IAM role ARN like arn:aws:iam::123456789012:role/MediaLiveAccessRole",
            ]
        );
        let missing = errors("[aws]\nprofile = \"lunora\"\n");
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(
            missing[0].starts_with("t.toml:1:1: ") && missing[0].contains("region"),
            "{missing:?}"
        );
        let unknown = errors("[aws]\nregion = \"eu-west-1\"\naccess_key = \"AKIA\"\n");
        assert!(
            unknown[0].starts_with("t.toml:3:1: ") && unknown[0].contains("access_key"),
            "{unknown:?}"
        );
    }

    #[cfg(not(feature = "medialive"))]
    #[test]
    fn aws_section_needs_the_medialive_feature() {
        let e = errors(&format!("[aws]\nregion = \"eu-west-1\"\n{CHANNEL}"));
        assert_eq!(
            e,
            ["t.toml:1:1: [aws] needs a lunora built with the `medialive` feature (on by default)"]
        );
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
        let InputSettings::Srt(srt) = config.graph.channels[0].inputs[0].clone() else {
            panic!("an SRT input")
        };
        assert_eq!(
            srt.passphrase.map(|p| p.expose().to_string()).as_deref(),
            Some("correct horse battery")
        );
        assert_eq!(
            format!("{config:?}").matches("correct horse").count(),
            0,
            "secrets never in Debug output"
        );
    }

    #[test]
    fn unsupported_input_type_is_explained() {
        let source = "[[channels]]\nid = \"p\"\nmode = \"single\"\n[[channels.inputs]]\nid = \"cam\"\ntype = \"ndi\"\n";
        let e = errors(source);
        assert!(
            e.iter().any(|l| l.starts_with("t.toml:6:8:")
                && l.contains(
                    "only type = \"srt\", \"rtmp\", \"file\", \"test_pattern\" and \"whip\" inputs"
                )),
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
    fn an_output_source_must_be_an_input_of_its_channel() {
        let channel = "[[channels]]\nid = \"a\"\nmode = \"single\"\n[[channels.inputs]]\nid = \"cam\"\ntype = \"srt\"\nlisten = \"127.0.0.1:9000\"\n";
        let output = |source: &str| {
            format!(
                "[[channels.outputs]]\nid = \"raw\"\ntype = \"srt\"\nmode = \"listener\"\nlisten = \"127.0.0.1:9100\"\nsource = \"{source}\"\n"
            )
        };
        assert_eq!(
            errors(&format!("{channel}{}", output("cam"))),
            Vec::<String>::new()
        );
        let e = errors(&format!("{channel}{}", output("camera")));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:13:10:")
                && e[0].contains(
                    "output \"raw\" sends input \"camera\", which channel \"a\" does not have"
                ),
            "{e:?}"
        );
    }

    #[test]
    fn two_listeners_on_one_tcp_port_are_refused_across_sections() {
        let channel = "[[channels]]\nid = \"a\"\nmode = \"single\"\n";
        let e = errors(&format!(
            "[http]\nlisten = \"127.0.0.1:1935\"\n[rtmp]\nlisten = \"0.0.0.0:1935\"\n{channel}"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:4:10:")
                && e[0].contains("[rtmp] listen needs its own port: TCP port 1935 is already used by [http] listen"),
            "{e:?}"
        );
        let e = errors(&format!(
            "[http]\nlisten = \"127.0.0.1:8080\"\ntls_listen = \"127.0.0.1:8443\"\ncertificate = \"/nonexistent/c.pem\"\nprivate_key = \"/nonexistent/k.pem\"\n\
             [rtmp]\nlisten = \"0.0.0.0:1935\"\ntls_listen = \"0.0.0.0:8443\"\ncertificate = \"/nonexistent/c.pem\"\nprivate_key = \"/nonexistent/k.pem\"\n{channel}"
        ));
        assert!(
            e.iter().any(|e| e.contains(
                "[rtmp] tls_listen needs its own port: TCP port 8443 is already used by [http] tls_listen"
            )),
            "{e:?}"
        );
        // Different addresses on one port are fine.
        let e = errors(&format!(
            "[http]\nlisten = \"127.0.0.1:1935\"\n[rtmp]\nlisten = \"127.0.0.2:1935\"\n{channel}"
        ));
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn a_state_dir_that_is_a_file_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let e = errors(&format!(
            "[state]\ndir = \"{}\"\n[[channels]]\nid = \"a\"\nmode = \"single\"\n",
            file.path().display()
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:2:7:") && e[0].contains("is a file"),
            "{e:?}"
        );
    }

    #[test]
    fn loss_bound_and_stream_id_rules_reach_check_config() {
        let e = errors(
            "[[channels]]\nid = \"a\"\nmode = \"single\"\nfailover = { input_loss_ms = 600001 }\n\
             [[channels.inputs]]\nid = \"cam\"\ntype = \"srt\"\nlisten = \"0.0.0.0:9000\"\nstream_id = \"line\\nbreak\"\n\
             [[channels.outputs]]\nid = \"out\"\ntype = \"srt\"\nmode = \"listener\"\nlisten = \"0.0.0.0:9100\"\nstream_id = \"LONG\"\n"
                .replace("LONG", &"s".repeat(600))
                .as_str(),
        );
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("between 50 and 600000"), "{e:?}");
        assert!(
            e[1].starts_with("t.toml:9:13:") && e[1].contains("stream_id must be at most 512"),
            "{e:?}"
        );
        assert!(e[2].contains("stream_id must be at most 512"), "{e:?}");
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
                .any(|e| e.contains("all of tls_listen, certificate and private_key in [rtmp]")),
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

    #[test]
    fn profiles_are_read_checked_and_named_by_destinations() {
        let channel = "[[channels]]\nid = \"a\"\nmode = \"single\"\n\
                       [[channels.inputs]]\nid = \"cam\"\ntype = \"srt\"\nlisten = \"127.0.0.1:9000\"\n\
                       [[channels.outputs]]\nid = \"yt\"\ntype = \"rtmp\"\npreset = \"youtube\"\nstream_key = \"k-1\"\n";
        let good = format!(
            "[profiles.studio]\nwidth = 1920\nheight = 1080\nframe_rate = \"29.97\"\nvideo_bitrate_kbps = 6000\n\n{channel}transcode = \"studio\"\n"
        );
        let config = parse("t.toml", &good, &env).unwrap();
        let studio = config.graph.profiles["studio"];
        assert_eq!(
            (studio.width, studio.keyframe_interval_s, studio.deinterlace),
            (1920, 2, true)
        );
        assert_eq!(
            errors(&format!("{channel}transcode = \"tv\"\n")),
            [
                "t.toml:13:13: transcode = \"tv\" names no profile: use \"off\", \"auto\", one of [\"youtube\", \"x\", \"linkedin\"], or add [profiles.tv] to the config file"
            ]
        );
        let bad = format!(
            "[profiles.studio]\nwidth = 1921\nheight = 1080\nvideo_bitrate_kbps = 6000\n\n{channel}"
        );
        assert_eq!(
            errors(&bad),
            [
                "t.toml:2:9: profile \"studio\": width must be even and between 128 and 3840; it is 1921"
            ]
        );
    }
}
