//! The dashboard: static assets embedded in the binary (the edge box may have no internet, so
//! nothing comes from a CDN).

use axum::http::header;
use axum::response::{IntoResponse, Response};

macro_rules! asset {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/", $path)).as_slice()
    };
}

const INDEX: &[u8] = asset!("src/index.html");
const APP: &[u8] = asset!("src/app.js");
const STYLE: &[u8] = asset!("src/style.css");
const HLS: &[u8] = asset!("node_modules/hls.js/dist/hls.light.min.js");

/// The page and its assets change only with the binary; `no-cache` makes browsers revalidate,
/// so an upgrade is picked up at the next load.
fn reply(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn index() -> Response {
    reply("text/html; charset=utf-8", INDEX)
}

pub(crate) async fn app() -> Response {
    reply("text/javascript; charset=utf-8", APP)
}

pub(crate) async fn style() -> Response {
    reply("text/css; charset=utf-8", STYLE)
}

pub(crate) async fn hls() -> Response {
    reply("text/javascript; charset=utf-8", HLS)
}
