//! `/api/v1/channels/{id}/medialive`: a channel's AWS MediaLive + MediaPackage v2 side,
//! provisioned, read back, started, stopped and torn down through `lunora-medialive`.
//! Writes are the superadmin's; admins read the state.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lunora_medialive::{MediaLiveSetup, ProvisionError, Provisioner, Target};
use serde_json::json;
use tokio::sync::Mutex;
use tracing::info;

use crate::auth::Caller;
use crate::handlers::{AppState, Body, find_channel, read};
use crate::{App, error};

/// MediaLive as this box uses it: the provisioner and the box id its resources are tagged with.
#[derive(Debug, Clone)]
pub struct Cloud {
    provisioner: Provisioner,
    box_id: String,
    /// One change to AWS at a time: two provisioning requests racing would each find nothing
    /// and each create a channel.
    changing: Arc<Mutex<()>>,
}

impl Cloud {
    pub fn new(provisioner: Provisioner, box_id: String) -> Cloud {
        Cloud {
            provisioner,
            box_id,
            changing: Arc::default(),
        }
    }
}

fn cloud(app: &App) -> Result<&Cloud, Response> {
    app.settings.medialive.as_ref().ok_or_else(|| {
        error(
            StatusCode::CONFLICT,
            "MediaLive is not set up on this box: add an [aws] section to the config file",
        )
    })
}

fn target(cloud: &Cloud, id: &str) -> Result<Target, Response> {
    Target::new(&cloud.box_id, id).map_err(|problems| {
        let messages: Vec<_> = problems.into_iter().map(|p| p.message).collect();
        error(StatusCode::NOT_FOUND, &messages.join("; "))
    })
}

fn failed(e: ProvisionError) -> Response {
    match e {
        ProvisionError::Invalid(problems) => {
            let messages: Vec<_> = problems.into_iter().map(|p| p.message).collect();
            (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": messages.join("; "), "problems": messages })),
            )
                .into_response()
        }
        ProvisionError::NotProvisioned(_) => error(StatusCode::NOT_FOUND, &e.to_string()),
        ProvisionError::Conflict(_) => error(StatusCode::CONFLICT, &e.to_string()),
        ProvisionError::Random(_) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        ProvisionError::Aws { .. } => error(StatusCode::BAD_GATEWAY, &e.to_string()),
        ProvisionError::Timeout(_) => error(StatusCode::GATEWAY_TIMEOUT, &e.to_string()),
    }
}

pub(crate) async fn get_medialive(State(app): AppState, Path(id): Path<String>) -> Response {
    let result = async {
        let cloud = cloud(&app)?;
        let target = target(cloud, &id)?;
        match cloud.provisioner.state(&target).await.map_err(failed)? {
            Some(provisioned) => Ok(Json(provisioned).into_response()),
            None => Err(error(
                StatusCode::NOT_FOUND,
                &format!("nothing is provisioned in AWS for channel {id:?}"),
            )),
        }
    };
    result.await.unwrap_or_else(|response| response)
}

pub(crate) async fn put_medialive(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let result = async {
        let cloud = cloud(&app)?;
        find_channel(&app, &id)?;
        let target = target(cloud, &id)?;
        let setup: MediaLiveSetup = read(body, "a MediaLive setup")?;
        let _changing = cloud.changing.lock().await;
        let provisioned = cloud
            .provisioner
            .provision(&setup, &target)
            .await
            .map_err(failed)?;
        info!(channel = %id, by = %caller.actor.username, medialive = ?provisioned.channel_id, "MediaLive provisioned");
        Ok(Json(provisioned).into_response())
    };
    result.await.unwrap_or_else(|response: Response| response)
}

pub(crate) async fn delete_medialive(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let cloud = cloud(&app)?;
        let target = target(cloud, &id)?;
        let _changing = cloud.changing.lock().await;
        cloud.provisioner.teardown(&target).await.map_err(failed)?;
        info!(channel = %id, by = %caller.actor.username, "MediaLive torn down");
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    result.await.unwrap_or_else(|response: Response| response)
}

async fn lifecycle(app: &App, caller: &Caller, id: &str, start: bool) -> Response {
    let result = async {
        let cloud = cloud(app)?;
        let target = target(cloud, id)?;
        let _changing = cloud.changing.lock().await;
        let state = if start {
            cloud.provisioner.start(&target).await
        } else {
            cloud.provisioner.stop(&target).await
        }
        .map_err(failed)?;
        let verb = if start { "started" } else { "stopped" };
        info!(channel = %id, by = %caller.actor.username, state = %state, "MediaLive channel {verb}");
        Ok(Json(json!({ "state": state })).into_response())
    };
    result.await.unwrap_or_else(|response: Response| response)
}

pub(crate) async fn start_medialive(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    lifecycle(&app, &caller, &id, true).await
}

pub(crate) async fn stop_medialive(
    State(app): AppState,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    lifecycle(&app, &caller, &id, false).await
}

pub(crate) mod schemas {
    use crate::handlers::schemas::of;
    use serde_json::{Value, json};

    pub(crate) fn setup() -> Value {
        of::<lunora_medialive::MediaLiveSetup>()
    }

    pub(crate) fn provisioned() -> Value {
        of::<lunora_medialive::Provisioned>()
    }

    pub(crate) fn state() -> Value {
        json!({"type": "object", "required": ["state"], "properties": {"state": {"type": "string", "description": "MediaLive's channel state: IDLE, STARTING, RUNNING, STOPPING, …"}}})
    }
}
