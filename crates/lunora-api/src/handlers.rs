//! The handlers behind [`crate::routes`]. Each turns a request into a [`Command`] (or a read),
//! and the result into a status and a JSON body whose error names the thing and what to do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lunora_control::{
    ChannelId, ChannelSettings, ChannelStatus, Command, CommandError, InputId, InputSettings,
    Outcome, OutputId, OutputSettings, UserRole,
};
use lunora_media::Secret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::{self, Caller, Via};
use crate::{App, error};

pub(crate) type AppState = State<Arc<App>>;
pub(crate) type Body = Result<Json<Value>, JsonRejection>;

/// The answer to a body that is not JSON: 413 or 415 with a fixed text (nothing of what was
/// sent is echoed back), else 400 with `help` and the parser's reason.
fn rejection(r: &JsonRejection, help: &str) -> Response {
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "{help}: the body is over {} KiB",
                crate::MAX_BODY_BYTES / 1024
            ),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("{help}: send Content-Type: application/json"),
        ),
        _ => error(
            StatusCode::BAD_REQUEST,
            &format!("{help}: {}", r.body_text()),
        ),
    }
}

/// Reads a JSON body into `T`, or answers 400 with `help` and serde's reason.
pub(crate) fn read<T: DeserializeOwned>(body: Body, help: &str) -> Result<T, Response> {
    let Json(value) = body.map_err(|r| rejection(&r, help))?;
    serde_json::from_value(value)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("{help}: {e}")))
}

fn command_error(e: CommandError) -> Response {
    match e {
        CommandError::Forbidden(m) => error(StatusCode::FORBIDDEN, &m),
        CommandError::NotFound(m) => error(StatusCode::NOT_FOUND, &m),
        CommandError::Invalid(problems) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": problems.join("; "), "problems": problems })),
        )
            .into_response(),
        CommandError::Conflict(m) | CommandError::Failed(m) => error(StatusCode::CONFLICT, &m),
        CommandError::Storage(m) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the change could not be saved, so nothing changed: {m}"),
        ),
        CommandError::Busy(m) => error(StatusCode::SERVICE_UNAVAILABLE, &m),
    }
}

/// 204 for a change that answers nothing, or the error's response.
fn no_content(result: Result<Outcome, Response>) -> Response {
    result.map_or_else(
        |response| response,
        |_| StatusCode::NO_CONTENT.into_response(),
    )
}

pub(crate) async fn run(app: &App, caller: &Caller, command: Command) -> Result<Outcome, Response> {
    app.control
        .execute(&caller.actor, command)
        .await
        .map_err(command_error)
}

fn no_channel(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("no channel with id {id:?}"))
}

pub(crate) fn find_channel(app: &App, id: &str) -> Result<ChannelStatus, Response> {
    app.control
        .channels()
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| no_channel(id))
}

/// A path id that breaks the id rule cannot name anything.
fn channel_id(id: &str) -> ChannelId {
    ChannelId::new(id)
}

// ---- health and metrics ----------------------------------------------------------------------

pub(crate) async fn readyz(State(app): AppState) -> Response {
    if app.control.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

pub(crate) async fn metrics(State(app): AppState, headers: HeaderMap) -> Response {
    if let Some(token) = &app.settings.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.expose()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "/metrics needs Authorization: Bearer <[http] metrics_token>",
            );
        }
    }
    let store_problem = app.control.store_health().problem.is_some();
    let channels = app.control.channels();
    #[cfg(feature = "medialive")]
    let medialive = app
        .settings
        .medialive
        .as_ref()
        .map(|cloud| cloud.metrics(&channels))
        .unwrap_or_default();
    #[cfg(not(feature = "medialive"))]
    let medialive = Vec::new();
    #[cfg(feature = "whip")]
    let whip = app.control.graph().whip().map(|server| {
        let c = server.counters();
        crate::metrics::WhipMetric {
            sessions: u64::try_from(server.sessions()).unwrap_or(u64::MAX),
            sessions_total: c.sessions_total,
            refused_total: c.refused_total,
            handshake_timeouts_total: c.handshake_timeouts_total,
            media_dropped_total: c.media_dropped_total,
            keyframe_requests_total: c.keyframe_requests_total,
            datagrams_unmatched_total: c.datagrams_unmatched_total,
        }
    });
    #[cfg(not(feature = "whip"))]
    let whip = None;
    match crate::metrics::render_metrics(&channels, store_problem, &medialive, whip.as_ref()) {
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

// ---- session -----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

pub(crate) async fn login(
    State(app): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Body,
) -> Response {
    let login: Login = match read(body, "expected {\"username\", \"password\"}") {
        Ok(login) => login,
        Err(response) => return response,
    };
    if let Some(wait) = app.throttle.wait(peer.ip()) {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many failed logins from this address; try again in {} s",
                wait.as_secs() + 1
            ),
        );
    }
    let store = app.control.store().clone();
    let username = login.username.clone();
    let verified = tokio::task::spawn_blocking(move || {
        let user = store.verify_password(&login.username, &login.password)?;
        match user {
            Some(user) => store
                .create_session(&user.name, SystemTime::now())
                .map(|cookie| Some((user, cookie))),
            None => Ok(None),
        }
    })
    .await;
    match verified {
        Ok(Ok(Some((user, cookie)))) => {
            app.throttle.succeeded(peer.ip());
            tracing::info!(user = %user.name, peer = %peer.ip(), "logged in");
            (
                [(header::SET_COOKIE, auth::session_cookie(Some(cookie.expose()), app.settings.secure_cookies))],
                Json(json!({ "username": user.name, "role": user.role, "must_change_password": user.must_change_password })),
            )
                .into_response()
        }
        Ok(Ok(None)) => {
            app.throttle.failed(peer.ip());
            tracing::warn!(user = %lunora_media::printable(&username), peer = %peer.ip(), "failed login");
            auth::failure_delay().await;
            auth::unauthorized_json()
        }
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the account store cannot be read: {e}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("login failed: {e}"),
        ),
    }
}

pub(crate) async fn whoami(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(json!({
        "username": caller.actor.username,
        "role": caller.actor.role,
        "must_change_password": caller.must_change_password,
        "via": match caller.via { Via::Session => "session", Via::Token => "token" },
    }))
}

pub(crate) async fn logout(State(app): AppState, Extension(caller): Extension<Caller>) -> Response {
    if let Some(cookie) = caller.cookie {
        let store = app.control.store().clone();
        let _ = tokio::task::spawn_blocking(move || store.delete_session(&cookie)).await;
    }
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            auth::session_cookie(None, app.settings.secure_cookies),
        )],
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

pub(crate) async fn change_password(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    let change: PasswordChange =
        match read(body, "expected {\"current_password\", \"new_password\"}") {
            Ok(change) => change,
            Err(response) => return response,
        };
    let command = Command::ChangeOwnPassword {
        current: Secret::new(change.current_password),
        new: Secret::new(change.new_password),
    };
    match run(&app, &caller, command).await {
        Ok(_) => {
            // Other sessions of this user end; this one stays.
            let store = app.control.store().clone();
            let (user, keep) = (caller.actor.username.clone(), caller.cookie.clone());
            let _ = tokio::task::spawn_blocking(move || store.end_sessions(&user, keep.as_deref()))
                .await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(response) => response,
    }
}

// ---- system, schemas, channels ---------------------------------------------------------------------

pub(crate) async fn system(State(app): AppState) -> Json<Value> {
    let problem = app.control.store_health().problem.clone();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "addresses": host_addresses(),
        "rtmp_listen": app.control.graph().rtmp_address(),
        "store": { "ok": problem.is_none(), "problem": problem },
    }))
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

pub(crate) async fn schema_inputs() -> Json<Value> {
    Json(schemas::input())
}

pub(crate) async fn schema_outputs() -> Json<Value> {
    Json(schemas::output())
}

/// What `caller` may see of a channel: the MediaLive side, feed outputs included, is for
/// admins and up; a `user` sees the channel without them.
pub(crate) fn as_seen_by(caller: &Caller, mut channel: ChannelStatus) -> ChannelStatus {
    if caller.actor.role < UserRole::Admin {
        channel
            .outputs
            .retain(|o| !lunora_control::is_medialive_feed(&o.id));
    }
    channel
}

pub(crate) async fn list_channels(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
) -> Json<Vec<ChannelStatus>> {
    Json(
        app.control
            .channels()
            .into_iter()
            .map(|c| as_seen_by(&caller, c))
            .collect(),
    )
}

pub(crate) async fn get_channel(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    find_channel(&app, &id).map_or_else(|r| r, |c| Json(as_seen_by(&caller, c)).into_response())
}

const CHANNEL_HELP: &str = "expected {\"id\", \"mode\": \"single\"|\"main-backup\", \"failover\": {...}} (see /api/v1/openapi.json)";

pub(crate) async fn add_channel(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    let settings: ChannelSettings = match read(body, CHANNEL_HELP) {
        Ok(s) => s,
        Err(response) => return response,
    };
    let id = settings.id.to_string();
    match run(&app, &caller, Command::AddChannel(settings)).await {
        Ok(_) => created_channel(&app, &id, StatusCode::CREATED),
        Err(response) => response,
    }
}

pub(crate) async fn update_channel(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let mut value = match body {
        Ok(Json(value)) => value,
        Err(r) => return rejection(&r, CHANNEL_HELP),
    };
    // The id is the path's; a body may leave it out.
    if let Some(object) = value.as_object_mut() {
        object.entry("id").or_insert(Value::String(id.clone()));
    }
    let settings: ChannelSettings = match read(Ok(Json(value)), CHANNEL_HELP) {
        Ok(s) => s,
        Err(response) => return response,
    };
    if settings.id.as_str() != id {
        return error(
            StatusCode::BAD_REQUEST,
            "a channel's id cannot change; add a new channel instead",
        );
    }
    match run(&app, &caller, Command::UpdateChannel(settings)).await {
        Ok(_) => created_channel(&app, &id, StatusCode::OK),
        Err(response) => response,
    }
}

fn created_channel(app: &App, id: &str, status: StatusCode) -> Response {
    match find_channel(app, id) {
        Ok(channel) => (status, Json(channel)).into_response(),
        Err(_) => status.into_response(),
    }
}

pub(crate) async fn remove_channel(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    no_content(run(&app, &caller, Command::RemoveChannel(channel_id(&id))).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchRequest {
    input: String,
}

pub(crate) async fn switch(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let request: SwitchRequest = match read(body, "expected {\"input\": \"<input id>\" | \"auto\"}")
    {
        Ok(r) => r,
        Err(response) => return response,
    };
    let input = (request.input != "auto").then(|| InputId::new(request.input.clone()));
    match run(
        &app,
        &caller,
        Command::ForceInput {
            channel: channel_id(&id),
            input,
        },
    )
    .await
    {
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(json!({ "channel": id, "requested": request.input })),
        )
            .into_response(),
        Err(response) => response,
    }
}

// ---- inputs ---------------------------------------------------------------------------------------

const INPUT_HELP: &str = "expected an input with the config file's keys, e.g. {\"id\", \"role\", \"type\": \"srt\", \"listen\", \"latency_ms\", \"passphrase\", \"stream_id\"} (see /api/v1/schema/inputs)";

pub(crate) async fn list_inputs(State(app): AppState, Path(id): Path<String>) -> Response {
    find_channel(&app, &id).map_or_else(|r| r, |c| Json(c.inputs).into_response())
}

/// The input's entry, plus the stream key and OBS server URL when one was just made.
fn input_reply(
    app: &App,
    channel: &str,
    input: &str,
    outcome: Outcome,
    status: StatusCode,
) -> Response {
    let entry = find_channel(app, channel)
        .ok()
        .and_then(|c| c.inputs.into_iter().find(|i| i.id == input));
    let mut body = serde_json::to_value(entry).unwrap_or(Value::Null);
    if let (Outcome::StreamKey(key), Some(object)) = (outcome, body.as_object_mut()) {
        object.insert("stream_key".into(), Value::String(key.expose().to_string()));
        let port = app
            .control
            .graph()
            .rtmp_address()
            .map_or(1935, |a| a.port());
        object.insert(
            "publish_url".into(),
            Value::String(format!("rtmp://HOST:{port}/live")),
        );
    }
    (status, Json(body)).into_response()
}

pub(crate) async fn add_input(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let input: InputSettings = match read(body, INPUT_HELP) {
        Ok(i) => i,
        Err(response) => return response,
    };
    let input_id = input.id().to_string();
    match run(
        &app,
        &caller,
        Command::AddInput {
            channel: channel_id(&id),
            input,
        },
    )
    .await
    {
        Ok(outcome) => input_reply(&app, &id, &input_id, outcome, StatusCode::CREATED),
        Err(response) => response,
    }
}

/// A body for `…/{component}` whose id is the path's.
fn with_path_id(body: Body, id: &str, help: &str) -> Result<Value, Response> {
    let Json(mut value) = body.map_err(|r| rejection(&r, help))?;
    let Some(object) = value.as_object_mut() else {
        return Err(error(StatusCode::BAD_REQUEST, help));
    };
    match object.entry("id").or_insert(Value::String(id.to_string())) {
        Value::String(given) if given == id => Ok(value),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "the id in the body must match the path; ids cannot change",
        )),
    }
}

pub(crate) async fn update_input(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path((id, iid)): Path<(String, String)>,
    body: Body,
) -> Response {
    let input: InputSettings =
        match with_path_id(body, &iid, INPUT_HELP).and_then(|v| read(Ok(Json(v)), INPUT_HELP)) {
            Ok(i) => i,
            Err(response) => return response,
        };
    match run(
        &app,
        &caller,
        Command::UpdateInput {
            channel: channel_id(&id),
            input,
        },
    )
    .await
    {
        Ok(outcome) => input_reply(&app, &id, &iid, outcome, StatusCode::OK),
        Err(response) => response,
    }
}

pub(crate) async fn remove_input(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path((id, iid)): Path<(String, String)>,
) -> Response {
    no_content(
        run(
            &app,
            &caller,
            Command::RemoveInput {
                channel: channel_id(&id),
                input: InputId::new(iid),
            },
        )
        .await,
    )
}

pub(crate) async fn regenerate_stream_key(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path((id, iid)): Path<(String, String)>,
) -> Response {
    match run(
        &app,
        &caller,
        Command::RegenerateStreamKey {
            channel: channel_id(&id),
            input: InputId::new(iid.clone()),
        },
    )
    .await
    {
        Ok(outcome) => input_reply(&app, &id, &iid, outcome, StatusCode::OK),
        Err(response) => response,
    }
}

// ---- outputs --------------------------------------------------------------------------------------

const OUTPUT_HELP: &str = "expected an output with the config file's keys, e.g. {\"id\", \"type\": \"rtmp\", \"preset\": \"youtube\"|\"x\"|\"linkedin\"|\"custom\", \"url\", \"region\", \"backup_ingest\", \"stream_key\", \"autostart\", \"retry_min_ms\", \"retry_max_ms\"} (see /api/v1/schema/outputs)";

/// Destinations were RTMP-only before outputs had kinds: a body without `type` is one.
fn default_output_type(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.entry("type").or_insert(Value::String("rtmp".into()));
    }
    value
}

pub(crate) async fn list_outputs(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    find_channel(&app, &id).map_or_else(
        |r| r,
        |c| Json(as_seen_by(&caller, c).outputs).into_response(),
    )
}

pub(crate) async fn get_output(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path((id, oid)): Path<(String, String)>,
) -> Response {
    match find_channel(&app, &id) {
        Ok(channel) => match as_seen_by(&caller, channel)
            .outputs
            .into_iter()
            .find(|o| o.id == oid)
        {
            Some(output) => Json(output).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("channel {id:?} has no output {oid:?}"),
            ),
        },
        Err(response) => response,
    }
}

fn output_reply(app: &App, channel: &str, output: &str, status: StatusCode) -> Response {
    match find_channel(app, channel)
        .ok()
        .and_then(|c| c.outputs.into_iter().find(|o| o.id == output))
    {
        Some(entry) => (status, Json(entry)).into_response(),
        None => status.into_response(),
    }
}

pub(crate) async fn add_output(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let output: OutputSettings = match read(
        body.map(|Json(v)| Json(default_output_type(v))),
        OUTPUT_HELP,
    ) {
        Ok(o) => o,
        Err(response) => return response,
    };
    let output_id = output.id().to_string();
    match run(
        &app,
        &caller,
        Command::AddOutput {
            channel: channel_id(&id),
            output,
        },
    )
    .await
    {
        Ok(_) => output_reply(&app, &id, &output_id, StatusCode::CREATED),
        Err(response) => response,
    }
}

pub(crate) async fn update_output(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path((id, oid)): Path<(String, String)>,
    body: Body,
) -> Response {
    let output: OutputSettings = match with_path_id(body, &oid, OUTPUT_HELP)
        .and_then(|v| read(Ok(Json(default_output_type(v))), OUTPUT_HELP))
    {
        Ok(o) => o,
        Err(response) => return response,
    };
    match run(
        &app,
        &caller,
        Command::UpdateOutput {
            channel: channel_id(&id),
            output,
        },
    )
    .await
    {
        Ok(_) => output_reply(&app, &id, &oid, StatusCode::OK),
        Err(response) => response,
    }
}

pub(crate) async fn remove_output(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path((id, oid)): Path<(String, String)>,
) -> Response {
    no_content(
        run(
            &app,
            &caller,
            Command::RemoveOutput {
                channel: channel_id(&id),
                output: OutputId::new(oid),
            },
        )
        .await,
    )
}

async fn run_outputs(
    app: &App,
    caller: &Caller,
    id: String,
    output: Option<String>,
    start: bool,
) -> Response {
    let command = Command::RunOutputs {
        channel: channel_id(&id),
        output: output.clone().map(OutputId::new),
        start,
    };
    match run(app, caller, command).await {
        Ok(Outcome::Outputs(ids)) => (
            StatusCode::ACCEPTED,
            Json(json!({ "channel": id, "output": output, "action": if start { "start" } else { "stop" }, "outputs": ids.len() })),
        )
            .into_response(),
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(response) => response,
    }
}

pub(crate) async fn start_all(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    run_outputs(&app, &caller, id, None, true).await
}

pub(crate) async fn stop_all(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    run_outputs(&app, &caller, id, None, false).await
}

pub(crate) async fn start_output(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path((id, oid)): Path<(String, String)>,
) -> Response {
    run_outputs(&app, &caller, id, Some(oid), true).await
}

pub(crate) async fn stop_output(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path((id, oid)): Path<(String, String)>,
) -> Response {
    run_outputs(&app, &caller, id, Some(oid), false).await
}

// ---- audit, users, tokens -------------------------------------------------------------------------

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    limit: Option<usize>,
    before: Option<i64>,
}

pub(crate) async fn audit(
    State(app): AppState,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    // axum's own refusal is plain text; every API error is JSON.
    let Query(query) = match query {
        Ok(query) => query,
        Err(r) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "expected ?limit=<1-1000>&before=<audit id>: {}",
                    r.body_text()
                ),
            );
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    match app.control.audit_log(limit, query.before).await {
        Ok(records) => Json(records).into_response(),
        Err(e) => command_error(e),
    }
}

async fn store_read<T: serde::Serialize + Send + 'static>(
    app: &App,
    f: impl FnOnce(&lunora_control::Store) -> Result<T, lunora_control::StoreError> + Send + 'static,
) -> Response {
    let store = app.control.store().clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(e)) => command_error(e.into()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

pub(crate) async fn list_users(State(app): AppState) -> Response {
    store_read(&app, |s| s.users()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    role: UserRole,
    password: String,
}

pub(crate) async fn add_user(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    let user: NewUser = match read(
        body,
        "expected {\"username\", \"role\": \"user\"|\"admin\"|\"superadmin\", \"password\"}",
    ) {
        Ok(u) => u,
        Err(response) => return response,
    };
    let command = Command::AddUser {
        name: user.username,
        role: user.role,
        password: Secret::new(user.password),
        temporary: true,
    };
    match run(&app, &caller, command).await {
        Ok(Outcome::User(info)) => (StatusCode::CREATED, Json(info)).into_response(),
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    role: Option<UserRole>,
    password: Option<String>,
}

pub(crate) async fn update_user(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let change: UserChange = match read(body, "expected {\"role\"?, \"password\"?}") {
        Ok(c) => c,
        Err(response) => return response,
    };
    let command = Command::UpdateUser {
        name,
        role: change.role,
        password: change.password.map(Secret::new),
        temporary: true,
    };
    match run(&app, &caller, command).await {
        Ok(Outcome::User(info)) => Json(info).into_response(),
        Ok(_) => StatusCode::OK.into_response(),
        Err(response) => response,
    }
}

pub(crate) async fn remove_user(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    no_content(run(&app, &caller, Command::RemoveUser { name }).await)
}

pub(crate) async fn list_tokens(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
) -> Response {
    let owner = (caller.actor.role < UserRole::Superadmin).then(|| caller.actor.username.clone());
    store_read(&app, move |s| s.tokens(owner.as_deref())).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Option<UserRole>,
    /// A superadmin may make a token for someone else.
    owner: Option<String>,
}

pub(crate) async fn create_token(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    let token: NewToken = match read(body, "expected {\"name\", \"role\"?}") {
        Ok(t) => t,
        Err(response) => return response,
    };
    let command = Command::CreateToken {
        owner: token.owner.unwrap_or_else(|| caller.actor.username.clone()),
        name: token.name,
        role: token.role,
    };
    match run(&app, &caller, command).await {
        Ok(Outcome::Token(info, secret)) => {
            let mut body = serde_json::to_value(info).unwrap_or(Value::Null);
            if let Some(object) = body.as_object_mut() {
                object.insert("token".into(), Value::String(secret.expose().to_string()));
            }
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(response) => response,
    }
}

pub(crate) async fn revoke_token(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    no_content(run(&app, &caller, Command::RevokeToken { id }).await)
}

// ---- HLS -------------------------------------------------------------------------------------------

/// `/hls/{channel}/index.m3u8` and `/hls/{channel}/{sequence}.ts`, from memory. The playlist
/// changes every segment, so it is never cached; a segment never changes once listed.
pub(crate) async fn hls(
    State(app): AppState,
    Path((channel, file)): Path<(String, String)>,
) -> Response {
    let graph = app.control.graph();
    if file == "index.m3u8" {
        return match graph.hls_playlist(&channel) {
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
    match graph.hls_segment(&channel, sequence) {
        Some(data) => (
            [
                (header::CONTENT_TYPE, "video/mp2t"),
                (header::CACHE_CONTROL, "private, max-age=3600, immutable"),
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

/// JSON Schemas of request bodies, generated from the types the handlers read.
pub(crate) mod schemas {
    use serde_json::{Value, json};

    /// The schema with every sub-schema written in place: it is embedded in the OpenAPI
    /// document (where `#/$defs/…` would point nowhere) and read by the dashboard's forms.
    pub(crate) fn of<T: schemars::JsonSchema>() -> Value {
        let mut settings = schemars::generate::SchemaSettings::draft2020_12();
        settings.inline_subschemas = true;
        serde_json::to_value(settings.into_generator().into_root_schema_for::<T>())
            .unwrap_or(Value::Null)
    }

    pub(crate) fn input() -> Value {
        of::<lunora_control::InputSettings>()
    }

    pub(crate) fn output() -> Value {
        of::<lunora_control::OutputSettings>()
    }

    pub(crate) fn channel() -> Value {
        of::<lunora_control::ChannelSettings>()
    }

    pub(crate) fn login() -> Value {
        json!({"type": "object", "required": ["username", "password"], "properties": {"username": {"type": "string"}, "password": {"type": "string", "writeOnly": true}}})
    }

    pub(crate) fn password() -> Value {
        json!({"type": "object", "required": ["current_password", "new_password"], "properties": {"current_password": {"type": "string", "writeOnly": true}, "new_password": {"type": "string", "writeOnly": true, "minLength": 8}}})
    }

    pub(crate) fn switch() -> Value {
        json!({"type": "object", "required": ["input"], "properties": {"input": {"type": "string", "description": "an input id, or \"auto\""}}})
    }

    fn role() -> Value {
        json!({"type": "string", "enum": ["user", "admin", "superadmin"]})
    }

    pub(crate) fn new_user() -> Value {
        json!({"type": "object", "required": ["username", "role", "password"], "properties": {"username": {"type": "string", "pattern": "^[a-z0-9._-]{1,64}$"}, "role": role(), "password": {"type": "string", "writeOnly": true, "minLength": 8}}})
    }

    pub(crate) fn user_change() -> Value {
        json!({"type": "object", "properties": {"role": role(), "password": {"type": "string", "writeOnly": true, "minLength": 8}}})
    }

    pub(crate) fn token() -> Value {
        json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\u0000-\\u001f]*\\S[^\\u0000-\\u001f]*$"}, "role": role(), "owner": {"type": "string"}}})
    }
}
