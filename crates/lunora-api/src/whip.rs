//! WHIP (RFC 9725) over HTTP: `POST /whip/{channel}/{input}` takes an SDP offer authenticated
//! by the input's own bearer token (not a user's session), answers `201 Created` with the
//! answer SDP, the session's URL in `Location` and the box's STUN/TURN servers in `Link`;
//! `DELETE` on that URL ends the session. Trickle ICE (`PATCH`) is not offered: the answer
//! already carries every candidate the box has, so a PATCH gets 405.
//!
//! `POST /api/v1/channels/{id}/inputs/{iid}/publish-credential` (admins) hands the dashboard's
//! "go live" page a one-use token that expires in two minutes, so the input's own token never
//! reaches a browser.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lunora_whip::{PublishError, Refusal};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::auth::{Caller, bearer};
use crate::error;
use crate::handlers::AppState;

fn no_input(channel: &str, input: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("channel {channel:?} has no WHIP input {input:?}"),
    )
}

pub(crate) async fn publish(
    State(app): AppState,
    Path((channel, input)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let sdp = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        });
    if !sdp {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a WHIP offer needs Content-Type: application/sdp",
        );
    }
    let graph = app.control.graph();
    let Some(server) = graph.whip() else {
        return no_input(&channel, &input);
    };
    let token = bearer(&headers);
    let name = format!("{channel}/{input}");
    match server.publish(&name, token.as_deref(), &body) {
        Ok(published) => {
            info!(channel = %channel, input = %input, session = %published.session, "WHIP offer answered");
            let location = format!("/whip/{channel}/{input}/{}", published.session);
            let mut response = (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/sdp")],
                published.answer,
            )
                .into_response();
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(&location) {
                headers.insert(header::LOCATION, value);
            }
            for server in &graph.whip_endpoint().ice_servers {
                if let Ok(value) = HeaderValue::from_str(&format!("<{server}>; rel=\"ice-server\""))
                {
                    headers.append(header::LINK, value);
                }
            }
            response
        }
        Err(e) => {
            warn!(channel = %channel, input = %input, error = %e, "WHIP offer refused");
            let status = match &e {
                PublishError::Refused(Refusal::NoInput) => return no_input(&channel, &input),
                PublishError::Refused(Refusal::BadToken) => StatusCode::UNAUTHORIZED,
                PublishError::Refused(Refusal::Busy) => StatusCode::CONFLICT,
                PublishError::Refused(Refusal::Full(_)) | PublishError::Unavailable => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                PublishError::Offer(_) => StatusCode::BAD_REQUEST,
            };
            let mut response = error(status, &e.to_string());
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

/// The session URL is the capability (128 random bits), as RFC 9725 has it: OBS sends DELETE
/// with the token too, a browser page that lost it does not need it.
pub(crate) async fn end(
    State(app): AppState,
    Path((channel, input, session)): Path<(String, String, String)>,
) -> Response {
    let ended = app
        .control
        .graph()
        .whip()
        .is_some_and(|server| server.end(&format!("{channel}/{input}"), &session));
    if ended {
        info!(channel = %channel, input = %input, session = %session, "WHIP session ended by DELETE");
        StatusCode::OK.into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            &format!("no live WHIP session {session:?} on channel {channel:?} input {input:?}"),
        )
    }
}

pub(crate) async fn credential(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path((channel, input)): Path<(String, String)>,
) -> Response {
    let issued = app
        .control
        .graph()
        .whip()
        .and_then(|server| server.issue_credential(&format!("{channel}/{input}")));
    let Some(token) = issued else {
        return no_input(&channel, &input);
    };
    info!(channel = %channel, input = %input, user = %caller.actor.username, "one-use WHIP publish credential issued");
    Json(json!({
        "whip_url": format!("/whip/{channel}/{input}"),
        "token": token.expose(),
        "expires_in_s": lunora_whip::CREDENTIAL_LIFETIME.as_secs(),
    }))
    .into_response()
}

pub(crate) fn credential_reply() -> Value {
    json!({
        "type": "object",
        "required": ["whip_url", "token", "expires_in_s"],
        "properties": {
            "whip_url": {"type": "string"},
            "token": {"type": "string"},
            "expires_in_s": {"type": "integer", "minimum": 1},
        },
    })
}

/// An SDP offer, as the OpenAPI document describes it.
pub(crate) fn offer() -> Value {
    json!({"type": "string", "contentMediaType": "application/sdp"})
}
