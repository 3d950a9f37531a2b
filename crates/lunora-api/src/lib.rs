//! HTTP: health, readiness, Prometheus metrics and the JSON status API.
//!
//! The API and `/metrics` render the same snapshots, so they can never disagree.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
// Helpers return a finished error response for handlers to send as is; they run once per request.
#![allow(clippy::result_large_err)]

mod events;
mod metrics;
mod status;
mod web;

use std::future::Future;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use lunora_egress::DestinationSpec;
use serde_json::json;

pub use metrics::render_metrics;
pub use status::{
    ChannelStatus, DestinationView, HealthView, HlsView, IngestView, InputStatus, OutputStatus,
    SwitchCount, SwitchView,
};

/// Where the HTTP layer gets its data and sends commands; implemented by the binary, which
/// knows the graph.
pub trait StatusSource: Send + Sync + 'static {
    fn channels(&self) -> Vec<ChannelStatus>;
    /// True once every configured listener is bound and every channel task runs.
    fn ready(&self) -> bool;
    /// Forces `input` on air in `channel`, or returns the channel to automatic with `"auto"`.
    fn switch(&self, channel: &str, input: &str) -> Result<(), SwitchError>;
    /// Starts or stops one output (`Some(id)`) or every startable output of the channel;
    /// returns how many were told.
    fn control_outputs(
        &self,
        channel: &str,
        output: Option<&str>,
        start: bool,
    ) -> Result<usize, ControlError>;
    /// Adds an RTMP destination, saved so it survives a restart.
    fn add_destination(
        &self,
        channel: &str,
        id: &str,
        spec: DestinationSpec,
    ) -> Result<(), DestinationError>;
    /// Replaces a destination's settings; a spec without a stream key keeps the saved one. A
    /// destination that was running restarts with the new settings.
    fn update_destination(
        &self,
        channel: &str,
        id: &str,
        spec: DestinationSpec,
    ) -> Result<(), DestinationError>;
    fn remove_destination(&self, channel: &str, id: &str) -> Result<(), DestinationError>;
    /// The channel's live HLS playlist; `None` for an unknown channel.
    fn hls_playlist(&self, channel: &str) -> Option<String>;
    /// One HLS segment while it is in the playlist window.
    fn hls_segment(&self, channel: &str, sequence: u64) -> Option<Bytes>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationError {
    NoChannel,
    NoOutput,
    /// The id is taken in this channel.
    Exists,
    /// SRT outputs come from the config file only.
    NotDestination,
    BadId,
    Invalid(Vec<String>),
    /// The change could not be saved; nothing changed.
    Storage(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlError {
    NoChannel,
    NoOutput,
    /// SRT outputs run whenever the daemon runs.
    AlwaysOn,
    Busy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchError {
    NoChannel,
    NoInput,
    /// The channel has not taken its previous commands yet.
    Busy,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchRequest {
    input: String,
}

type Source = Arc<dyn StatusSource>;

pub fn router(source: Source) -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/assets/app.js", get(web::app))
        .route("/assets/style.css", get(web::style))
        .route("/assets/hls.js", get(web::hls))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/channels", get(list_channels))
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/system", get(system))
        .route("/api/v1/channels/{id}", get(get_channel))
        .route("/api/v1/channels/{id}/switch", post(switch))
        .route(
            "/api/v1/channels/{id}/outputs",
            get(list_outputs).post(add_destination),
        )
        .route(
            "/api/v1/channels/{id}/outputs/{oid}",
            get(get_output)
                .put(update_destination)
                .delete(remove_destination),
        )
        .route(
            "/api/v1/channels/{id}/outputs/start-all",
            post(|s, p| control(s, p, None, true)),
        )
        .route(
            "/api/v1/channels/{id}/outputs/stop-all",
            post(|s, p| control(s, p, None, false)),
        )
        .route(
            "/api/v1/channels/{id}/outputs/{oid}/start",
            post(|s, Path((id, oid)): Path<(String, String)>| {
                control(s, Path(id), Some(oid), true)
            }),
        )
        .route(
            "/api/v1/channels/{id}/outputs/{oid}/stop",
            post(|s, Path((id, oid)): Path<(String, String)>| {
                control(s, Path(id), Some(oid), false)
            }),
        )
        .route("/hls/{channel}/{file}", get(hls))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path; see /api/v1/channels") })
        .with_state(source)
}

/// Serves on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: Source,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(source))
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn readyz(State(source): State<Source>) -> Response {
    if source.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn metrics(State(source): State<Source>) -> Response {
    match render_metrics(&source.channels()) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("metrics encoding failed: {e}"),
        ),
    }
}

async fn list_channels(State(source): State<Source>) -> Json<Vec<ChannelStatus>> {
    Json(source.channels())
}

async fn switch(
    State(source): State<Source>,
    Path(id): Path<String>,
    body: Result<Json<SwitchRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "expected {{\"input\": \"<input id>\" | \"auto\"}}: {}",
                    rejection.body_text()
                ),
            );
        }
    };
    match source.switch(&id, &request.input) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({ "channel": id, "requested": request.input })),
        )
            .into_response(),
        Err(SwitchError::NoChannel) => no_channel(&id),
        Err(SwitchError::NoInput) => error(
            StatusCode::BAD_REQUEST,
            &format!(
                "channel {id:?} has no input {:?}; use an input id or \"auto\"",
                request.input
            ),
        ),
        Err(SwitchError::Busy) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the channel is still applying earlier commands; try again",
        ),
    }
}

async fn control(
    State(source): State<Source>,
    Path(id): Path<String>,
    output: Option<String>,
    start: bool,
) -> Response {
    let action = if start { "start" } else { "stop" };
    match source.control_outputs(&id, output.as_deref(), start) {
        Ok(count) => (
            StatusCode::ACCEPTED,
            Json(json!({ "channel": id, "output": output, "action": action, "outputs": count })),
        )
            .into_response(),
        Err(ControlError::NoChannel) => no_channel(&id),
        Err(ControlError::NoOutput) => error(
            StatusCode::NOT_FOUND,
            &format!(
                "channel {id:?} has no output {:?}",
                output.unwrap_or_default()
            ),
        ),
        Err(ControlError::AlwaysOn) => error(
            StatusCode::CONFLICT,
            "SRT outputs run whenever lunora runs; only RTMP destinations start and stop",
        ),
        Err(ControlError::Busy) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the output is still applying earlier commands; try again",
        ),
    }
}

async fn get_channel(State(source): State<Source>, Path(id): Path<String>) -> Response {
    match find_channel(&source, &id) {
        Ok(channel) => Json(channel).into_response(),
        Err(response) => response,
    }
}

fn no_channel(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("no channel with id {id:?}"))
}

fn find_channel(source: &Source, id: &str) -> Result<ChannelStatus, Response> {
    source
        .channels()
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| no_channel(id))
}

async fn list_outputs(State(source): State<Source>, Path(id): Path<String>) -> Response {
    match find_channel(&source, &id) {
        Ok(channel) => Json(channel.outputs).into_response(),
        Err(response) => response,
    }
}

async fn get_output(
    State(source): State<Source>,
    Path((id, oid)): Path<(String, String)>,
) -> Response {
    match find_channel(&source, &id) {
        Ok(channel) => match channel.outputs.into_iter().find(|o| o.id == oid) {
            Some(output) => Json(output).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("channel {id:?} has no output {oid:?}"),
            ),
        },
        Err(response) => response,
    }
}

const SPEC_HELP: &str = "expected {\"preset\": \"youtube\"|\"x\"|\"linkedin\"|\"custom\", \"url\", \"region\", \"backup_ingest\", \"stream_key\", \"autostart\", \"retry_min_ms\", \"retry_max_ms\"}";

fn spec_from(
    mut body: serde_json::Value,
    take_id: bool,
) -> Result<(Option<String>, DestinationSpec), Response> {
    let id = if take_id {
        body.as_object_mut()
            .and_then(|o| o.remove("id"))
            .and_then(|v| v.as_str().map(str::to_string))
    } else {
        None
    };
    serde_json::from_value(body)
        .map(|spec| (id, spec))
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("{SPEC_HELP}: {e}")))
}

fn destination_result(
    result: Result<(), DestinationError>,
    source: &Source,
    channel: &str,
    id: &str,
    success: StatusCode,
) -> Response {
    match result {
        Ok(()) if success == StatusCode::NO_CONTENT => StatusCode::NO_CONTENT.into_response(),
        Ok(()) => match find_channel(source, channel).ok().and_then(|c| c.outputs.into_iter().find(|o| o.id == id)) {
            Some(output) => (success, Json(output)).into_response(),
            None => success.into_response(),
        },
        Err(DestinationError::NoChannel) => no_channel(channel),
        Err(DestinationError::NoOutput) => error(StatusCode::NOT_FOUND, &format!("channel {channel:?} has no output {id:?}")),
        Err(DestinationError::Exists) => error(StatusCode::CONFLICT, &format!("channel {channel:?} already has an output {id:?}; choose another id or update it with PUT")),
        Err(DestinationError::NotDestination) => error(StatusCode::CONFLICT, &format!("output {id:?} is an SRT output; those are set in the config file")),
        Err(DestinationError::BadId) => error(StatusCode::BAD_REQUEST, "\"id\" must be 1–64 characters of a-z, 0-9, '-' or '_'"),
        Err(DestinationError::Invalid(problems)) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": format!("destination {id:?}: {}", problems.join("; ")), "problems": problems }))).into_response()
        }
        Err(DestinationError::Storage(reason)) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("the change could not be saved, so nothing changed: {reason}")),
    }
}

async fn add_destination(
    State(source): State<Source>,
    Path(channel): Path<String>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("{SPEC_HELP} plus \"id\": {}", rejection.body_text()),
            );
        }
    };
    let (id, spec) = match spec_from(body, true) {
        Ok((Some(id), spec)) => (id, spec),
        Ok((None, _)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the new destination needs an \"id\" (a-z, 0-9, '-', '_')",
            );
        }
        Err(response) => return response,
    };
    let result = source.add_destination(&channel, &id, spec);
    destination_result(result, &source, &channel, &id, StatusCode::CREATED)
}

async fn update_destination(
    State(source): State<Source>,
    Path((channel, id)): Path<(String, String)>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let spec = match body
        .map_err(|r| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("{SPEC_HELP}: {}", r.body_text()),
            )
        })
        .and_then(|Json(b)| spec_from(b, false))
    {
        Ok((_, spec)) => spec,
        Err(response) => return response,
    };
    let result = source.update_destination(&channel, &id, spec);
    destination_result(result, &source, &channel, &id, StatusCode::OK)
}

async fn remove_destination(
    State(source): State<Source>,
    Path((channel, id)): Path<(String, String)>,
) -> Response {
    let result = source.remove_destination(&channel, &id);
    destination_result(result, &source, &channel, &id, StatusCode::NO_CONTENT)
}

/// `/hls/{channel}/index.m3u8` and `/hls/{channel}/{sequence}.ts`, from memory. The playlist
/// changes every segment, so it is never cached; a segment never changes once listed.
async fn hls(
    State(source): State<Source>,
    Path((channel, file)): Path<(String, String)>,
) -> Response {
    if file == "index.m3u8" {
        return match source.hls_playlist(&channel) {
            Some(playlist) => (
                [
                    (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                    (header::CACHE_CONTROL, "no-cache, no-store"),
                ],
                playlist,
            )
                .into_response(),
            None => no_channel(&channel),
        };
    }
    let Some(sequence) = file.strip_suffix(".ts").and_then(|n| n.parse::<u64>().ok()) else {
        return error(
            StatusCode::NOT_FOUND,
            "HLS files are index.m3u8 and <sequence>.ts",
        );
    };
    match source.hls_segment(&channel, sequence) {
        Some(data) => (
            [
                (header::CONTENT_TYPE, "video/mp2t"),
                (header::CACHE_CONTROL, "public, max-age=3600, immutable"),
            ],
            data,
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &format!(
                "segment {sequence} of channel {channel:?} is not (or no longer) in the playlist"
            ),
        ),
    }
}

/// Facts about the box the dashboard shows: version, and the addresses encoders on the
/// network can reach it at.
async fn system() -> Json<serde_json::Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION"), "addresses": host_addresses() }))
}

/// The address the default route leaves from (connecting a UDP socket sends nothing), so the
/// ingest help can name the box even when the page was opened on localhost.
fn host_addresses() -> Vec<String> {
    let probe = |bind: &str, target: &str| {
        let socket = std::net::UdpSocket::bind(bind).ok()?;
        socket.connect(target).ok()?;
        socket.local_addr().ok().map(|a| a.ip().to_string())
    };
    [
        probe("0.0.0.0:0", "192.0.2.1:9"),
        probe("[::]:0", "[2001:db8::1]:9"),
    ]
    .into_iter()
    .flatten()
    .collect()
}
