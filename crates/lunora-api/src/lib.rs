//! HTTP: health, readiness, Prometheus metrics and the JSON status API.
//!
//! The API and `/metrics` render the same snapshots, so they can never disagree.

mod metrics;
mod status;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub use metrics::render_metrics;
pub use status::{ChannelStatus, InputStatus, OutputStatus};

/// Where the HTTP layer gets its data; implemented by the binary, which knows the graph.
pub trait StatusSource: Send + Sync + 'static {
    fn channels(&self) -> Vec<ChannelStatus>;
    /// True once every configured listener is bound and every channel task runs.
    fn ready(&self) -> bool;
}

type Source = Arc<dyn StatusSource>;

pub fn router(source: Source) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/channels", get(list_channels))
        .route("/api/v1/channels/{id}", get(get_channel))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path; see /api/v1/channels") })
        .with_state(source)
}

/// Serves on an already-bound listener until `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, source: Source, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router(source)).with_graceful_shutdown(shutdown).await
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn readyz(State(source): State<Source>) -> Response {
    if source.ready() { (StatusCode::OK, "ready\n").into_response() } else { (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response() }
}

async fn metrics(State(source): State<Source>) -> Response {
    match render_metrics(&source.channels()) {
        Ok(body) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("metrics encoding failed: {e}")),
    }
}

async fn list_channels(State(source): State<Source>) -> Json<Vec<ChannelStatus>> {
    Json(source.channels())
}

async fn get_channel(State(source): State<Source>, Path(id): Path<String>) -> Response {
    match source.channels().into_iter().find(|c| c.id == id) {
        Some(channel) => Json(channel).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no channel with id {id:?}")),
    }
}
