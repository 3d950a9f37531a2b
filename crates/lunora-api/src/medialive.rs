//! `/api/v1/channels/{id}/medialive`: a channel's AWS MediaLive + MediaPackage v2 side,
//! provisioned, read back, started, stopped and torn down through `lunora-medialive`.
//! Writes are the superadmin's; admins read the state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lunora_control::{
    AuditEntry, ChannelId, ChannelStatus, Command, MEDIALIVE_FEED, OutputId, OutputSettings,
    OutputState, Store, StoreError, is_medialive_feed,
};
use lunora_medialive::{
    Feed, MediaLiveSetup, Mode, ProvisionError, Provisioned, Provisioner, Target, Watch,
    WatchAction,
};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::auth::Caller;
use crate::handlers::{AppState, Body, find_channel, read, run};
use crate::metrics::MediaLiveMetric;
use crate::{App, error};

/// MediaLive as this box uses it: the provisioner, the box id its resources are tagged with,
/// and the watch over every channel it provisioned.
#[derive(Debug, Clone)]
pub struct Cloud {
    provisioner: Provisioner,
    box_id: String,
    /// How often MediaLive's channel states are read.
    poll: Duration,
    /// Where the box asks its public address when a setup lists no `allowed_cidrs`.
    public_address_url: String,
    /// One change to AWS at a time: two provisioning requests racing would each find nothing
    /// and each create a channel.
    changing: Arc<Mutex<()>>,
    watched: Arc<StdMutex<BTreeMap<String, Watched>>>,
    /// The monotonic clock's zero for [`Watch`].
    started: Instant,
}

/// One provisioned channel as the box watches it.
#[derive(Debug)]
struct Watched {
    setup: MediaLiveSetup,
    watch: Watch,
    /// MediaLive's state at the last poll; `None`: no channel (yet), or never polled.
    state: Option<String>,
    polled_at: Option<SystemTime>,
    poll_error: Option<String>,
    poll_errors_total: u64,
}

impl Watched {
    fn new(setup: MediaLiveSetup, running_since: Option<SystemTime>) -> Watched {
        Watched {
            watch: Watch::new(setup.stop_after_idle_min, running_since),
            setup,
            state: None,
            polled_at: None,
            poll_error: None,
            poll_errors_total: 0,
        }
    }
}

/// Whether one of the channel's outputs into MediaLive is delivering.
fn feed_live(channel: Option<&ChannelStatus>) -> bool {
    channel.is_some_and(|c| {
        c.outputs
            .iter()
            .any(|o| is_medialive_feed(&o.id) && o.stats.state == OutputState::Live)
    })
}

fn seconds(duration: Duration) -> u64 {
    duration.as_secs()
}

/// `GET …/medialive`: what exists in AWS, what was asked for, and how the box sees it.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct CloudView {
    #[serde(flatten)]
    provisioned: Provisioned,
    /// The setup last provisioned from this box; `null` for resources this box found tagged
    /// but did not provision since its state was reset.
    setup: Option<MediaLiveSetup>,
    /// RFC 3339 UTC: when the box first saw the MediaLive channel running (billing).
    running_since: Option<String>,
    running_for_seconds: Option<u64>,
    /// One of the box's outputs into MediaLive (`medialive`, `medialive-…`) is live.
    feed_live: bool,
    /// How long the running channel has had no feed from the box.
    idle_seconds: Option<u64>,
    /// RFC 3339 UTC of the last state poll, and its error if it failed.
    polled_at: Option<String>,
    poll_error: Option<String>,
}

impl Cloud {
    pub fn new(
        provisioner: Provisioner,
        box_id: String,
        poll: Duration,
        public_address_url: String,
    ) -> Cloud {
        Cloud {
            provisioner,
            box_id,
            poll,
            public_address_url,
            changing: Arc::default(),
            watched: Arc::default(),
            started: Instant::now(),
        }
    }

    fn watched(&self) -> MutexGuard<'_, BTreeMap<String, Watched>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Picks up the setups saved before a restart, so what this box provisioned stays
    /// watched (and stopped when idle).
    fn load(&self, store: &Store) -> Result<(), StoreError> {
        let saved = store.medialive_setups()?;
        let mut watched = self.watched();
        for entry in saved {
            match serde_json::from_value::<MediaLiveSetup>(entry.setup) {
                // A setup provisioned in the first moments after start is newer: keep it.
                Ok(setup) => {
                    watched
                        .entry(entry.channel)
                        .or_insert_with(|| Watched::new(setup, entry.running_since));
                }
                Err(e) => warn!(
                    channel = %entry.channel,
                    error = %e,
                    "the saved MediaLive setup does not read; provision the channel again (PUT …/medialive) to watch it"
                ),
            }
        }
        Ok(())
    }

    /// The series `/metrics` shows for every watched channel.
    pub(crate) fn metrics(&self, channels: &[ChannelStatus]) -> Vec<MediaLiveMetric> {
        self.watched()
            .iter()
            .map(|(id, w)| MediaLiveMetric {
                channel: id.clone(),
                state: w.state.clone(),
                feed_live: feed_live(channels.iter().find(|c| &c.id == id)),
                running_since: w.watch.running_since(),
                poll_errors_total: w.poll_errors_total,
            })
            .collect()
    }

    /// Reads every watched channel's state, then acts on what the watches say. Runs until
    /// `shutdown` resolves.
    pub async fn watch(app: Arc<App>, shutdown: impl std::future::Future<Output = ()>) {
        let Some(cloud) = app.settings.medialive.clone() else {
            return;
        };
        let store = app.control.store().clone();
        match tokio::task::spawn_blocking({
            let cloud = cloud.clone();
            move || cloud.load(&store)
        })
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "cannot read the saved MediaLive setups; channels provisioned before are not watched until provisioned again")
            }
            Err(e) => warn!(error = %e, "cannot read the saved MediaLive setups"),
        }
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(cloud.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => cloud.poll_once(&app).await,
            }
        }
    }

    async fn poll_once(&self, app: &App) {
        if self.watched().is_empty() {
            return;
        }
        let states = self.provisioner.channel_states(&self.box_id).await;
        let channels = app.control.channels();
        let now = SystemTime::now();
        let monotonic = self.started.elapsed();
        let mut todo = Vec::new();
        {
            let mut watched = self.watched();
            for (id, w) in watched.iter_mut() {
                w.polled_at = Some(now);
                match &states {
                    Err(e) => {
                        w.poll_errors_total += 1;
                        w.poll_error = Some(e.to_string());
                    }
                    Ok(states) => {
                        w.poll_error = None;
                        w.state = states.get(id).cloned();
                        let live = feed_live(channels.iter().find(|c| &c.id == id));
                        let actions = w.watch.observe(now, monotonic, w.state.as_deref(), live);
                        todo.extend(actions.into_iter().map(|a| (id.clone(), a)));
                    }
                }
            }
        }
        if let Err(e) = &states {
            warn!(error = %e, "cannot read MediaLive channel states; retrying in {} s", self.poll.as_secs());
        }
        for (channel, action) in todo {
            self.act(app, &channel, action).await;
        }
    }

    async fn act(&self, app: &App, channel: &str, action: WatchAction) {
        let store = app.control.store().clone();
        match action {
            WatchAction::RunningSince(since) => {
                let id = channel.to_string();
                let saved = tokio::task::spawn_blocking(move || {
                    store.set_medialive_running_since(&id, since)
                })
                .await;
                if !matches!(saved, Ok(Ok(()))) {
                    warn!(
                        channel,
                        "cannot save since when the MediaLive channel runs; the figure restarts with the box"
                    );
                }
            }
            WatchAction::StopIdle { idle } => {
                let stopped = match Target::new(&self.box_id, channel) {
                    // A provisioning or teardown under way (it can take minutes) is not waited
                    // for: the poll loop must keep watching; the next poll asks again.
                    Ok(target) => match self.changing.try_lock() {
                        Ok(_changing) => self
                            .provisioner
                            .stop(&target)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(_) => Err("another MediaLive change is under way".to_string()),
                    },
                    Err(problems) => Err(problems
                        .into_iter()
                        .map(|p| p.message)
                        .collect::<Vec<_>>()
                        .join("; ")),
                };
                match stopped {
                    Ok(state) => {
                        warn!(channel, idle_seconds = seconds(idle), state = %state, "MediaLive channel stopped: nothing from the box reached it for stop_after_idle_min");
                        let entry = AuditEntry {
                            at: SystemTime::now(),
                            username: None,
                            address: None,
                            action: "medialive.stop_idle".into(),
                            target: channel.to_string(),
                            details: json!({ "idle_seconds": seconds(idle) }),
                        };
                        let _ = tokio::task::spawn_blocking(move || store.audit(&entry)).await;
                    }
                    Err(e) => {
                        if let Some(w) = self.watched().get_mut(channel) {
                            w.watch.stop_failed();
                        }
                        warn!(channel, error = %e, "cannot stop the idle MediaLive channel; trying again at the next poll");
                    }
                }
            }
        }
    }

    /// The box's view of a channel for `GET`, on top of what AWS says.
    fn view(&self, app: &App, id: &str, provisioned: Provisioned) -> CloudView {
        let watched = self.watched();
        let w = watched.get(id);
        let channels = app.control.channels();
        let running_since = w.and_then(|w| w.watch.running_since());
        CloudView {
            provisioned,
            setup: w.map(|w| w.setup.clone()),
            running_since: running_since.map(lunora_media::rfc3339),
            running_for_seconds: running_since
                .and_then(|since| SystemTime::now().duration_since(since).ok())
                .map(seconds),
            feed_live: feed_live(channels.iter().find(|c| c.id == id)),
            idle_seconds: w
                .and_then(|w| w.watch.idle_for(self.started.elapsed()))
                .map(seconds),
            polled_at: w.and_then(|w| w.polled_at).map(lunora_media::rfc3339),
            poll_error: w.and_then(|w| w.poll_error.clone()),
        }
    }

    /// Remembers (and saves, with its audit row) the setup just provisioned.
    async fn remember(
        &self,
        app: &App,
        caller: &Caller,
        id: &str,
        setup: Option<&MediaLiveSetup>,
        action: &str,
    ) {
        let value = setup.and_then(|s| serde_json::to_value(s).ok());
        let entry = audit(caller, action, id, setup);
        let (store, channel) = (app.control.store().clone(), id.to_string());
        let saved = tokio::task::spawn_blocking(move || {
            store.save_medialive(&channel, value.as_ref(), Some(&entry))
        })
        .await;
        if !matches!(saved, Ok(Ok(()))) {
            warn!(
                channel = id,
                "cannot save the MediaLive setup; after a restart the box does not watch this channel until provisioned again"
            );
        }
        let mut watched = self.watched();
        match setup {
            Some(setup) => {
                let w = watched
                    .entry(id.to_string())
                    .or_insert_with(|| Watched::new(setup.clone(), None));
                w.watch.set_stop_after_idle_min(setup.stop_after_idle_min);
                w.setup = setup.clone();
            }
            None => {
                watched.remove(id);
            }
        }
    }

    async fn record(&self, app: &App, caller: &Caller, id: &str, action: &str, state: &str) {
        if let Some(w) = self.watched().get_mut(id) {
            w.state = Some(state.to_string());
        }
        let mut entry = audit(caller, action, id, None);
        entry.details = json!({ "state": state });
        let store = app.control.store().clone();
        let _ = tokio::task::spawn_blocking(move || store.audit(&entry)).await;
    }
}

/// The outputs that feed what was provisioned, one per MediaLive input pipeline. Edge mode
/// sends the channel's clean program (`medialive`, `medialive-2` for a standard channel's
/// second pipeline); cloud mode sends each encoder's stream as received to its own input
/// (`medialive-main`, `medialive-backup`), `source` naming the channel's input of that role.
/// Pure, so the URL handling is tested without AWS.
fn feed_outputs(
    setup: &MediaLiveSetup,
    feeds: &[Feed],
    input_of_role: impl Fn(&str) -> Option<String>,
) -> Result<Vec<OutputSettings>, String> {
    let mut outputs = Vec::new();
    for feed in feeds {
        let (base, source) = match setup.mode {
            Mode::Edge => (MEDIALIVE_FEED.to_string(), None),
            Mode::Cloud => {
                let source = input_of_role(&feed.role).ok_or_else(|| {
                    format!(
                        "cloud mode forwards the channel's {} input to MediaLive, and the channel has none: add one with role = \"{}\"",
                        feed.role, feed.role
                    )
                })?;
                (format!("{MEDIALIVE_FEED}-{}", feed.role), Some(source))
            }
        };
        let id = match feed.pipeline {
            0 => base,
            n => format!("{base}-{}", n + 1),
        };
        let url = &feed.url;
        let mut value = if let Some(rest) = url.strip_prefix("srt://") {
            json!({
                "type": "srt",
                "id": id,
                "mode": "caller",
                "address": rest.trim_end_matches('/'),
                "latency_ms": feed.latency_ms.unwrap_or(setup.srt_latency_ms),
                "pbkeylen": feed.key_bytes.unwrap_or(lunora_medialive::provision::SRT_KEY_BYTES),
                "passphrase": feed.passphrase.as_ref().map(|p| p.expose().to_string()),
            })
        } else if url.starts_with("rtmp://") || url.starts_with("rtmps://") {
            let (app, stream) = url
                .rsplit_once('/')
                .filter(|(app, stream)| {
                    !stream.is_empty() && app.contains("//") && !app.ends_with('/')
                })
                .ok_or_else(|| {
                    format!(
                        "the {} MediaLive input's RTMP URL has no stream name: {url:?}",
                        feed.role
                    )
                })?;
            json!({
                "type": "rtmp",
                "id": id,
                "preset": "custom",
                "url": app,
                "stream_key": stream,
                "autostart": true,
            })
        } else {
            return Err(format!(
                "the {} MediaLive input has an address the box cannot send to: {url:?}",
                feed.role
            ));
        };
        if let (Some(object), Some(source)) = (value.as_object_mut(), source) {
            object.insert("source".into(), Value::String(source));
        }
        let output = serde_json::from_value(value).map_err(|e| {
            format!(
                "the {} MediaLive input's address {url:?} does not make an output: {e}",
                feed.role
            )
        })?;
        outputs.push(output);
    }
    Ok(outputs)
}

/// Puts the feed outputs into the channel's graph (added, or updated in place), starts them,
/// and removes feed outputs the setup no longer has. Errors name the output.
async fn apply_feeds(
    app: &App,
    caller: &Caller,
    channel: &str,
    outputs: Vec<OutputSettings>,
) -> Result<Vec<String>, Response> {
    let existing: Vec<String> = find_channel(app, channel)?
        .outputs
        .iter()
        .map(|o| o.id.clone())
        .filter(|id| is_medialive_feed(id))
        .collect();
    let channel_id = ChannelId::new(channel);
    let mut ids = Vec::new();
    for output in outputs {
        let id = output.id().to_string();
        // SRT outputs run with the channel; RTMP destinations are started by hand.
        let startable = matches!(output, OutputSettings::Rtmp(_));
        let command = if existing.contains(&id) {
            Command::UpdateOutput {
                channel: channel_id.clone(),
                output,
            }
        } else {
            Command::AddOutput {
                channel: channel_id.clone(),
                output,
            }
        };
        run(app, caller, command).await?;
        if startable {
            run(
                app,
                caller,
                Command::RunOutputs {
                    channel: channel_id.clone(),
                    output: Some(OutputId::new(id.clone())),
                    start: true,
                },
            )
            .await?;
        }
        ids.push(id);
    }
    for stale in existing.iter().filter(|id| !ids.contains(id)) {
        remove_feed(app, caller, channel, stale).await?;
    }
    Ok(ids)
}

async fn remove_feed(app: &App, caller: &Caller, channel: &str, id: &str) -> Result<(), Response> {
    run(
        app,
        caller,
        Command::RemoveOutput {
            channel: ChannelId::new(channel),
            output: OutputId::new(id),
        },
    )
    .await
    .map(|_| ())
}

fn audit(caller: &Caller, action: &str, id: &str, setup: Option<&MediaLiveSetup>) -> AuditEntry {
    let details = setup
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    AuditEntry {
        at: SystemTime::now(),
        username: Some(caller.actor.username.clone()),
        address: caller.actor.address.clone(),
        action: action.to_string(),
        target: id.to_string(),
        details,
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
            Some(provisioned) => Ok(Json(cloud.view(&app, &id, provisioned)).into_response()),
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
        let channel = find_channel(&app, &id)?;
        let target = target(cloud, &id)?;
        let mut setup: MediaLiveSetup = read(body, "a MediaLive setup")?;
        if setup.mode == Mode::Cloud {
            for role in ["main", "backup"] {
                if !channel.inputs.iter().any(|i| i.role == role) {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "mode cloud forwards the channel's main and backup inputs to MediaLive's failover pair, and channel {id:?} has no {role} input: add one, or use mode edge"
                        ),
                    ));
                }
            }
        }
        // Validated before the address lookup, so a wrong request costs no network call.
        let problems = setup.validate();
        if !problems.is_empty() {
            return Err(failed(ProvisionError::Invalid(problems)));
        }
        if setup.allowed_cidrs.is_empty() {
            let cidr = lunora_medialive::address::public_cidr(&cloud.public_address_url)
                .await
                .map_err(|problem| error(StatusCode::BAD_GATEWAY, &problem.message))?;
            info!(channel = %id, allowed = %cidr, "MediaLive inputs take the box's public address");
            setup.allowed_cidrs = vec![cidr];
        }
        let _changing = cloud.changing.lock().await;
        let provisioned = cloud
            .provisioner
            .provision(&setup, &target)
            .await
            .map_err(failed)?;
        info!(channel = %id, by = %caller.actor.username, medialive = ?provisioned.channel_id, "MediaLive provisioned");
        cloud
            .remember(&app, &caller, &id, Some(&setup), "medialive.provision")
            .await;
        let feeds = cloud.provisioner.feeds(&target).await.map_err(failed)?;
        let input_of_role = |role: &str| {
            channel
                .inputs
                .iter()
                .find(|i| i.role == role)
                .map(|i| i.id.clone())
        };
        let outputs = feed_outputs(&setup, &feeds, input_of_role)
            .map_err(|message| error(StatusCode::CONFLICT, &message))?;
        let fed = apply_feeds(&app, &caller, &id, outputs).await?;
        info!(channel = %id, outputs = ?fed, "the box feeds MediaLive");
        Ok(Json(cloud.view(&app, &id, provisioned)).into_response())
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
        cloud
            .remember(&app, &caller, &id, None, "medialive.teardown")
            .await;
        if let Ok(channel) = find_channel(&app, &id) {
            for output in channel.outputs.iter().filter(|o| is_medialive_feed(&o.id)) {
                remove_feed(&app, &caller, &id, &output.id).await?;
            }
        }
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
        let action = if start {
            "medialive.start"
        } else {
            "medialive.stop"
        };
        cloud.record(app, caller, id, action, &state).await;
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
        of::<super::CloudView>()
    }

    pub(crate) fn state() -> Value {
        json!({"type": "object", "required": ["state"], "properties": {"state": {"type": "string", "description": "MediaLive's channel state: IDLE, STARTING, RUNNING, STOPPING, …"}}})
    }
}

#[cfg(test)]
mod tests {
    use lunora_media::Secret;
    use lunora_medialive::{InputType, Mode};

    use super::*;

    fn feed(role: &str, pipeline: usize, url: &str) -> Feed {
        Feed {
            role: role.into(),
            pipeline,
            url: url.into(),
            passphrase: None,
            latency_ms: None,
            key_bytes: None,
        }
    }

    fn ids(outputs: &[OutputSettings]) -> Vec<&str> {
        outputs.iter().map(|o| o.id().as_str()).collect()
    }

    fn no_inputs(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn an_rtmp_input_is_fed_by_one_output_per_pipeline() {
        let setup = MediaLiveSetup::new(Mode::Edge);
        let feeds = [
            feed("main", 0, "rtmp://203.0.113.10:1935/program/main"),
            feed("main", 1, "rtmp://203.0.113.11:1935/program/main"),
        ];
        let outputs = feed_outputs(&setup, &feeds, no_inputs).unwrap();
        assert_eq!(ids(&outputs), ["medialive", "medialive-2"]);
        let OutputSettings::Rtmp(first) = &outputs[0] else {
            panic!("{:?}", outputs[0])
        };
        assert_eq!(
            first.url.as_deref(),
            Some("rtmp://203.0.113.10:1935/program")
        );
        assert_eq!(first.stream_key.as_ref().map(|k| k.expose()), Some("main"));
        assert_eq!(first.source, None);
        assert!(first.autostart);
    }

    #[test]
    fn an_srt_listener_input_is_called_with_its_passphrase_and_latency() {
        let mut setup = MediaLiveSetup::new(Mode::Edge);
        setup.input_type = InputType::SrtListener;
        setup.srt_latency_ms = 1500;
        let mut with_latency = feed("main", 0, "srt://203.0.113.10:5000");
        with_latency.passphrase = Some(Secret::new("0123456789abcdef".to_string()));
        with_latency.latency_ms = Some(2500);
        with_latency.key_bytes = Some(32);
        let mut without = with_latency.clone();
        without.latency_ms = None;
        for (feed, latency) in [(with_latency, 2500), (without, 1500)] {
            let outputs = feed_outputs(&setup, &[feed], no_inputs).unwrap();
            let OutputSettings::Srt(srt) = &outputs[0] else {
                panic!("{:?}", outputs[0])
            };
            assert_eq!(srt.address, Some("203.0.113.10:5000".parse().unwrap()));
            assert_eq!(srt.latency_ms, latency);
            assert_eq!(srt.pbkeylen, Some(32), "MediaLive decrypts with AES-256");
            assert_eq!(
                srt.passphrase.as_ref().map(|p| p.expose()),
                Some("0123456789abcdef")
            );
        }
    }

    #[test]
    fn cloud_mode_sends_each_encoder_to_its_own_input() {
        let setup = MediaLiveSetup::new(Mode::Cloud);
        let feeds = [
            feed("main", 0, "rtmp://203.0.113.10:1935/program/main"),
            feed("backup", 0, "rtmp://203.0.113.10:1935/program/backup"),
        ];
        let inputs = |role: &str| Some(format!("videon-{role}"));
        let outputs = feed_outputs(&setup, &feeds, inputs).unwrap();
        assert_eq!(ids(&outputs), ["medialive-main", "medialive-backup"]);
        let sources: Vec<_> = outputs
            .iter()
            .map(|o| o.source().map(|s| s.as_str().to_string()))
            .collect();
        assert_eq!(
            sources,
            [
                Some("videon-main".to_string()),
                Some("videon-backup".to_string())
            ]
        );
        assert!(ids(&outputs).iter().all(|id| is_medialive_feed(id)));
        assert!(!is_medialive_feed("medialivex"));
        let missing = feed_outputs(&setup, &feeds, no_inputs).unwrap_err();
        assert!(missing.contains("role = \"main\""), "{missing}");
    }

    #[test]
    fn an_address_the_box_cannot_send_to_is_refused_with_the_input_named() {
        let setup = MediaLiveSetup::new(Mode::Edge);
        for url in [
            "udp://203.0.113.10:5000",
            "srt://medialive.example:5000",
            "rtmp:",
            "rtmp://203.0.113.10:1935/",
            "rtmp://203.0.113.10",
        ] {
            let error = feed_outputs(&setup, &[feed("main", 0, url)], no_inputs).unwrap_err();
            assert!(error.contains("main MediaLive input"), "{url}: {error}");
        }
    }
}
