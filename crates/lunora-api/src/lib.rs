//! HTTP: the dashboard, health, readiness, Prometheus metrics, the JSON API and its events.
//!
//! Every route is one row of [`routes`]: method, path, the role it needs, what it does, and
//! its handler. The router, the role checks and the OpenAPI document are all built from that
//! table, so a route cannot exist without a declared role (deny by default) and the document
//! cannot drift from what is served. The API and `/metrics` render the same snapshots.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
// Helpers return a finished error response for handlers to send as is; they run once per request.
#![allow(clippy::result_large_err)]

mod auth;
mod events;
mod handlers;
#[cfg(feature = "medialive")]
mod medialive;
mod metrics;
mod openapi;
mod replies;
mod server;
mod tls;
mod web;
#[cfg(feature = "whip")]
mod whip;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::serve::Listener;
use axum::{Json, Router};
use lunora_control::{Control, UserRole};
use lunora_media::Secret;
use serde_json::json;

#[cfg(feature = "medialive")]
pub use medialive::Cloud;
pub use metrics::{MediaLiveMetric, WhipMetric, render_metrics};
pub use tls::TlsListener;

use crate::auth::Access;
use crate::replies::Reply;

/// What the HTTP layer needs to know beyond the graph.
#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    /// Host names the box answers to, besides IP addresses and `localhost`.
    pub hosts: Vec<String>,
    /// When set, `/metrics` needs `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
    /// Served over TLS: session cookies get `Secure`.
    pub secure_cookies: bool,
    /// `[aws]`: MediaLive provisioning; `None` answers its routes with 409.
    #[cfg(feature = "medialive")]
    pub medialive: Option<Cloud>,
}

#[derive(Debug)]
pub struct App {
    pub(crate) control: Arc<Control>,
    pub(crate) settings: ApiSettings,
    /// Shared by the HTTP and HTTPS listeners, so two ports do not double the guesses.
    pub(crate) throttle: Arc<auth::Throttle>,
}

impl App {
    pub fn new(control: Arc<Control>, settings: ApiSettings) -> Arc<App> {
        Arc::new(App {
            control,
            settings,
            throttle: Arc::default(),
        })
    }

    /// The same app for an HTTPS listener: its session cookies are `Secure`.
    pub fn over_tls(&self) -> Arc<App> {
        Arc::new(App {
            control: self.control.clone(),
            settings: ApiSettings {
                secure_cookies: true,
                ..self.settings.clone()
            },
            throttle: self.throttle.clone(),
        })
    }
}

/// One route: what it is, who may use it, and what answers it.
pub(crate) struct Route {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) access: Access,
    pub(crate) summary: &'static str,
    /// The JSON Schema of the request body, for the OpenAPI document.
    pub(crate) body: Option<fn() -> serde_json::Value>,
    /// The request body's media type.
    pub(crate) body_type: &'static str,
    /// The query parameters it reads (OpenAPI parameter objects).
    pub(crate) query: Option<fn() -> serde_json::Value>,
    /// What it answers when it succeeds (every route declares it; a unit test checks).
    pub(crate) reply: Option<Reply>,
    /// The error statuses it can answer beyond those its access, body and path parameters
    /// imply (see [`openapi::error_statuses`]).
    pub(crate) errors: &'static [u16],
    handler: MethodRouter<Arc<App>>,
}

const USER: Access = Access::Role(UserRole::User);
const ADMIN: Access = Access::Role(UserRole::Admin);
const SUPERADMIN: Access = Access::Role(UserRole::Superadmin);

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    summary: &'static str,
    handler: MethodRouter<Arc<App>>,
) -> Route {
    Route {
        method,
        path,
        access,
        summary,
        body: None,
        body_type: "application/json",
        query: None,
        reply: None,
        errors: &[],
        handler,
    }
}

impl Route {
    fn body(self, schema: fn() -> serde_json::Value) -> Route {
        Route {
            body: Some(schema),
            ..self
        }
    }

    /// An SDP body (WHIP), checked by its handler.
    #[cfg(feature = "whip")]
    fn sdp_body(self, schema: fn() -> serde_json::Value) -> Route {
        Route {
            body: Some(schema),
            body_type: "application/sdp",
            ..self
        }
    }

    fn query(self, parameters: fn() -> serde_json::Value) -> Route {
        Route {
            query: Some(parameters),
            ..self
        }
    }

    fn reply(self, reply: Reply) -> Route {
        Route {
            reply: Some(reply),
            ..self
        }
    }

    fn errors(self, errors: &'static [u16]) -> Route {
        Route { errors, ..self }
    }
}

/// Every route the daemon serves.
pub(crate) fn routes() -> Vec<Route> {
    use axum::http::Method as M;
    use handlers::*;
    vec![
        route(M::GET, "/", Access::Open, "The dashboard", get(web::index))
            .reply(Reply::Media(&["text/html"])),
        route(
            M::GET,
            "/assets/app.js",
            Access::Open,
            "Dashboard script",
            get(web::app),
        )
        .reply(Reply::Media(&["text/javascript"])),
        route(
            M::GET,
            "/assets/style.css",
            Access::Open,
            "Dashboard style",
            get(web::style),
        )
        .reply(Reply::Media(&["text/css"])),
        route(
            M::GET,
            "/assets/hls.js",
            Access::Open,
            "HLS player library",
            get(web::hls),
        )
        .reply(Reply::Media(&["text/javascript"])),
        route(
            M::GET,
            "/healthz",
            Access::Open,
            "Liveness",
            get(|| async { "ok\n" }),
        )
        .reply(Reply::Media(&["text/plain"])),
        route(
            M::GET,
            "/readyz",
            Access::Open,
            "Readiness: every listener bound, every channel running",
            get(readyz),
        )
        .reply(Reply::Media(&["text/plain"]))
        .errors(&[503]),
        route(
            M::GET,
            "/metrics",
            Access::Open,
            "Prometheus metrics (bearer token when [http] metrics_token is set)",
            get(metrics),
        )
        .reply(Reply::Media(&["text/plain"]))
        .errors(&[401]),
        route(
            M::GET,
            "/api/v1/openapi.json",
            Access::Open,
            "This API's OpenAPI document",
            get(openapi::document),
        )
        .reply(Reply::Json(200, replies::any_object)),
        route(
            M::POST,
            "/api/v1/session",
            Access::Open,
            "Log in: sets the session cookie",
            post(login),
        )
        .body(schemas::login)
        .reply(Reply::Json(200, replies::login))
        .errors(&[401, 429, 503]),
        route(
            M::GET,
            "/api/v1/session",
            USER,
            "Who is logged in, and their role",
            get(whoami),
        )
        .reply(Reply::Json(200, replies::whoami)),
        route(
            M::DELETE,
            "/api/v1/session",
            USER,
            "Log out",
            delete(logout),
        )
        .reply(Reply::NoContent),
        route(
            M::PUT,
            "/api/v1/session/password",
            USER,
            "Change your own password",
            put(change_password),
        )
        .body(schemas::password)
        .reply(Reply::NoContent)
        .errors(&[400, 404, 409, 503]),
        route(
            M::GET,
            "/api/v1/system",
            USER,
            "Version, addresses, state store health",
            get(system),
        )
        .reply(Reply::Json(200, replies::system)),
        route(
            M::GET,
            "/api/v1/events",
            USER,
            "Server-Sent Events: switches, health, outputs, config changes, status",
            get(events::events),
        )
        .reply(Reply::Events),
        route(
            M::GET,
            "/api/v1/schema/inputs",
            USER,
            "JSON Schema of every input kind",
            get(schema_inputs),
        )
        .reply(Reply::Json(200, replies::any_object)),
        route(
            M::GET,
            "/api/v1/schema/outputs",
            USER,
            "JSON Schema of every output kind",
            get(schema_outputs),
        )
        .reply(Reply::Json(200, replies::any_object)),
        route(
            M::GET,
            "/api/v1/channels",
            USER,
            "Every channel's status",
            get(list_channels),
        )
        .reply(Reply::Json(200, replies::channels)),
        route(
            M::POST,
            "/api/v1/channels",
            ADMIN,
            "Add a channel",
            post(add_channel),
        )
        .body(schemas::channel)
        .reply(Reply::Json(201, replies::channel))
        .errors(&[400, 404, 409, 503]),
        route(
            M::GET,
            "/api/v1/channels/{id}",
            USER,
            "One channel's status",
            get(get_channel),
        )
        .reply(Reply::Json(200, replies::channel)),
        route(
            M::PUT,
            "/api/v1/channels/{id}",
            ADMIN,
            "Change a channel's mode or failover policy",
            put(update_channel),
        )
        .body(schemas::channel)
        .reply(Reply::Json(200, replies::channel))
        .errors(&[400, 404, 409, 503]),
        route(
            M::DELETE,
            "/api/v1/channels/{id}",
            ADMIN,
            "Remove a channel",
            delete(remove_channel),
        )
        .reply(Reply::NoContent)
        .errors(&[400, 404, 409, 503]),
        route(
            M::POST,
            "/api/v1/channels/{id}/switch",
            ADMIN,
            "Force an input on air, or \"auto\"",
            post(switch),
        )
        .body(schemas::switch)
        .reply(Reply::Json(202, replies::switch_accepted))
        .errors(&[400, 404, 409, 503]),
        route(
            M::GET,
            "/api/v1/channels/{id}/inputs",
            USER,
            "A channel's inputs",
            get(list_inputs),
        )
        .reply(Reply::Json(200, replies::inputs)),
        route(
            M::POST,
            "/api/v1/channels/{id}/inputs",
            ADMIN,
            "Add an input",
            post(add_input),
        )
        .body(schemas::input)
        .reply(Reply::Json(201, replies::input))
        .errors(&[400, 404, 409, 503]),
        route(
            M::PUT,
            "/api/v1/channels/{id}/inputs/{iid}",
            ADMIN,
            "Change an input (left-out secrets are kept)",
            put(update_input),
        )
        .body(schemas::input)
        .reply(Reply::Json(200, replies::input))
        .errors(&[400, 404, 409, 503]),
        route(
            M::DELETE,
            "/api/v1/channels/{id}/inputs/{iid}",
            ADMIN,
            "Remove an input",
            delete(remove_input),
        )
        .reply(Reply::NoContent)
        .errors(&[400, 404, 409, 503]),
        route(
            M::POST,
            "/api/v1/channels/{id}/inputs/{iid}/stream-key",
            ADMIN,
            "Give an RTMP input a new stream key (shown once)",
            post(regenerate_stream_key),
        )
        .reply(Reply::Json(200, replies::input))
        .errors(&[400, 404, 409, 503]),
        #[cfg(feature = "whip")]
        route(
            M::POST,
            "/api/v1/channels/{id}/inputs/{iid}/publish-credential",
            ADMIN,
            "A one-use WHIP token for a WHIP input, valid two minutes (the dashboard's go-live page)",
            post(whip::credential),
        )
        .reply(Reply::Json(200, whip::credential_reply)),
        #[cfg(feature = "whip")]
        route(
            M::POST,
            "/whip/{channel}/{input}",
            Access::InputToken,
            "WHIP publish (RFC 9725): an SDP offer in; 201 with the answer, Location and Link",
            post(whip::publish),
        )
        .sdp_body(whip::offer)
        .reply(Reply::Created(&["application/sdp"]))
        .errors(&[409, 503]),
        #[cfg(feature = "whip")]
        route(
            M::DELETE,
            "/whip/{channel}/{input}/{session}",
            Access::Open,
            "End a WHIP session (its URL, 128 random bits, is the credential)",
            delete(whip::end),
        )
        .reply(Reply::Empty),
        route(
            M::GET,
            "/api/v1/channels/{id}/outputs",
            USER,
            "A channel's outputs",
            get(list_outputs),
        )
        .reply(Reply::Json(200, replies::outputs)),
        route(
            M::POST,
            "/api/v1/channels/{id}/outputs",
            USER,
            "Add an output (users: RTMP destinations)",
            post(add_output),
        )
        .body(schemas::output)
        .reply(Reply::Json(201, replies::output))
        .errors(&[400, 404, 409, 503]),
        route(
            M::POST,
            "/api/v1/channels/{id}/outputs/start-all",
            USER,
            "Start every destination",
            post(start_all),
        )
        .reply(Reply::Json(202, replies::run_accepted))
        .errors(&[400, 404, 409, 503]),
        route(
            M::POST,
            "/api/v1/channels/{id}/outputs/stop-all",
            USER,
            "Stop every destination",
            post(stop_all),
        )
        .reply(Reply::Json(202, replies::run_accepted))
        .errors(&[400, 404, 409, 503]),
        route(
            M::GET,
            "/api/v1/channels/{id}/outputs/{oid}",
            USER,
            "One output",
            get(get_output),
        )
        .reply(Reply::Json(200, replies::output)),
        route(
            M::PUT,
            "/api/v1/channels/{id}/outputs/{oid}",
            USER,
            "Change an output (left-out stream key is kept)",
            put(update_output),
        )
        .body(schemas::output)
        .reply(Reply::Json(200, replies::output))
        .errors(&[400, 404, 409, 503]),
        route(
            M::DELETE,
            "/api/v1/channels/{id}/outputs/{oid}",
            USER,
            "Remove an output",
            delete(remove_output),
        )
        .reply(Reply::NoContent)
        .errors(&[400, 404, 409, 503]),
        route(
            M::POST,
            "/api/v1/channels/{id}/outputs/{oid}/start",
            USER,
            "Start a destination",
            post(start_output),
        )
        .reply(Reply::Json(202, replies::run_accepted))
        .errors(&[400, 404, 409, 503]),
        route(
            M::POST,
            "/api/v1/channels/{id}/outputs/{oid}/stop",
            USER,
            "Stop a destination",
            post(stop_output),
        )
        .reply(Reply::Json(202, replies::run_accepted))
        .errors(&[400, 404, 409, 503]),
        route(
            M::GET,
            "/api/v1/audit",
            ADMIN,
            "Who changed what, newest first",
            get(audit),
        )
        .reply(Reply::Json(200, replies::audit))
        .errors(&[400])
        .query(replies::audit_query),
        route(
            M::GET,
            "/api/v1/users",
            SUPERADMIN,
            "Users",
            get(list_users),
        )
        .reply(Reply::Json(200, replies::users)),
        route(
            M::POST,
            "/api/v1/users",
            SUPERADMIN,
            "Add a user",
            post(add_user),
        )
        .body(schemas::new_user)
        .reply(Reply::Json(201, replies::user))
        .errors(&[400, 404, 409, 503]),
        route(
            M::PUT,
            "/api/v1/users/{name}",
            SUPERADMIN,
            "Change a user's role or password",
            put(update_user),
        )
        .body(schemas::user_change)
        .reply(Reply::Json(200, replies::user))
        .errors(&[400, 404, 409, 503]),
        route(
            M::DELETE,
            "/api/v1/users/{name}",
            SUPERADMIN,
            "Remove a user",
            delete(remove_user),
        )
        .reply(Reply::NoContent)
        .errors(&[400, 404, 409, 503]),
        route(
            M::GET,
            "/api/v1/tokens",
            USER,
            "Your API tokens (a superadmin sees all)",
            get(list_tokens),
        )
        .reply(Reply::Json(200, replies::tokens)),
        route(
            M::POST,
            "/api/v1/tokens",
            USER,
            "Create an API token (shown once)",
            post(create_token),
        )
        .body(schemas::token)
        .reply(Reply::Json(201, replies::new_token))
        .errors(&[400, 404, 409, 503]),
        route(
            M::DELETE,
            "/api/v1/tokens/{id}",
            USER,
            "Revoke an API token",
            delete(revoke_token),
        )
        .reply(Reply::NoContent)
        .errors(&[400, 404, 409, 503]),
        #[cfg(feature = "medialive")]
        route(
            M::GET,
            "/api/v1/channels/{id}/medialive",
            ADMIN,
            "The channel's MediaLive and MediaPackage v2 side, read back from AWS",
            get(medialive::get_medialive),
        )
        .reply(Reply::Json(200, medialive::schemas::provisioned))
        .errors(&[409, 502, 504]),
        #[cfg(feature = "medialive")]
        route(
            M::PUT,
            "/api/v1/channels/{id}/medialive",
            SUPERADMIN,
            "Provision (or adopt and repair) the channel's MediaLive and MediaPackage v2 side",
            put(medialive::put_medialive),
        )
        .body(medialive::schemas::setup)
        .reply(Reply::Json(200, medialive::schemas::provisioned))
        // 500: no random SRT passphrase could be made.
        .errors(&[409, 500, 502, 504]),
        #[cfg(feature = "medialive")]
        route(
            M::DELETE,
            "/api/v1/channels/{id}/medialive",
            SUPERADMIN,
            "Tear down (stopping first) everything provisioned in AWS for the channel",
            delete(medialive::delete_medialive),
        )
        .reply(Reply::NoContent)
        .errors(&[409, 502, 504]),
        #[cfg(feature = "medialive")]
        route(
            M::POST,
            "/api/v1/channels/{id}/medialive/start",
            SUPERADMIN,
            "Start the channel's MediaLive channel (billed while running)",
            post(medialive::start_medialive),
        )
        .reply(Reply::Json(200, medialive::schemas::state))
        .errors(&[409, 502, 504]),
        #[cfg(feature = "medialive")]
        route(
            M::POST,
            "/api/v1/channels/{id}/medialive/stop",
            SUPERADMIN,
            "Stop the channel's MediaLive channel",
            post(medialive::stop_medialive),
        )
        .reply(Reply::Json(200, medialive::schemas::state))
        .errors(&[409, 502, 504]),
        route(
            M::GET,
            "/hls/{channel}/{file}",
            USER,
            "HLS preview: index.m3u8 and segments",
            get(hls),
        )
        .reply(Reply::Media(&[
            "application/vnd.apple.mpegurl",
            "video/mp2t",
        ])),
    ]
}

/// The largest request body taken: the biggest API body (a channel with its inputs and
/// outputs) is a few KiB; anything near this is not a client of ours.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new();
    for r in routes() {
        let guarded = r.handler.layer(axum::middleware::from_fn_with_state(
            (app.clone(), r.access),
            auth::require,
        ));
        router = router.route(r.path, guarded);
    }
    router
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such path; see /api/v1/openapi.json",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::check_host,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// Serves on an already-bound listener (plain TCP, or [`TlsListener`]) until `shutdown`
/// resolves, with the connection limits and timeouts of [`server`].
pub async fn serve(
    listener: impl Listener<Addr = SocketAddr>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    server::serve_connections(listener, router(app), shutdown).await;
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_declares_its_role_once() {
        let mut seen = std::collections::HashSet::new();
        for r in routes() {
            assert!(
                seen.insert((r.method.clone(), r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            assert!(
                r.reply.is_some(),
                "{} {} declares no reply for the OpenAPI document",
                r.method,
                r.path
            );
            if r.access == Access::InputToken {
                assert!(r.path.starts_with("/whip/"), "{} {}", r.method, r.path);
                continue;
            }
            let open = matches!(r.access, Access::Open);
            // Only the page, health, metrics, the document and logging in are open.
            assert_eq!(
                open,
                !r.path.starts_with("/api/v1/") && !r.path.starts_with("/hls/")
                    || r.path == "/api/v1/openapi.json"
                    || (r.path == "/api/v1/session" && r.method == Method::POST),
                "{} {} is {}",
                r.method,
                r.path,
                r.access.name()
            );
        }
    }
}
