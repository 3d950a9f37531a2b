//! The one door through which the graph and the accounts change: a typed [`Command`] from an
//! [`Actor`], checked against the role it needs, validated as part of the whole graph, saved
//! (with its audit row, in one transaction) and only then applied. The config file's graph is
//! the base; what the API changed is an overlay on it, so a reload of the file keeps the
//! operators' changes and the file stays the operator's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use lunora_media::Secret;
use lunora_store::{
    AuditEntry, AuditRecord, ComponentKind, OverlayEntry, Store, StoreError, TokenInfo, UserInfo,
    UserRole,
};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::accounts::execute_account;
use crate::graph::{ApplyError, ControlError, Graph, SwitchError};
use crate::settings::{
    ChannelId, ChannelSettings, ChannelSpec, Component, FailoverSettings, GraphSpec, InputId,
    InputSettings, MEDIALIVE_FEED, OutputId, OutputSettings, RtmpInputSettings, is_medialive_feed,
};
use crate::status::ChannelStatus;

/// Who asks: a logged-in user or a token, from an address (for the audit log).
#[derive(Debug, Clone)]
pub struct Actor {
    pub username: String,
    pub role: UserRole,
    pub address: Option<String>,
}

/// Every change to the box. Each declares the role it needs ([`Command::required_role`]);
/// a few also depend on what they touch (a `user` manages RTMP destinations, not SRT outputs;
/// anyone manages their own tokens), which [`Control::execute`] checks.
#[derive(Debug, Clone)]
pub enum Command {
    AddChannel(ChannelSettings),
    UpdateChannel(ChannelSettings),
    RemoveChannel(ChannelId),
    SetFailover {
        channel: ChannelId,
        failover: FailoverSettings,
    },
    AddInput {
        channel: ChannelId,
        input: InputSettings,
    },
    UpdateInput {
        channel: ChannelId,
        input: InputSettings,
    },
    RemoveInput {
        channel: ChannelId,
        input: InputId,
    },
    RegenerateStreamKey {
        channel: ChannelId,
        input: InputId,
    },
    AddOutput {
        channel: ChannelId,
        output: OutputSettings,
    },
    UpdateOutput {
        channel: ChannelId,
        output: OutputSettings,
    },
    RemoveOutput {
        channel: ChannelId,
        output: OutputId,
    },
    /// Start (or stop) one destination or, without `output`, all of the channel's.
    RunOutputs {
        channel: ChannelId,
        output: Option<OutputId>,
        start: bool,
    },
    /// Force an input on air; `None` hands the channel back to automatic.
    ForceInput {
        channel: ChannelId,
        input: Option<InputId>,
    },
    AddUser {
        name: String,
        role: UserRole,
        password: Secret,
        /// Chosen by someone else: the user must replace it at their first login.
        temporary: bool,
    },
    UpdateUser {
        name: String,
        role: Option<UserRole>,
        /// A new password ends the user's sessions.
        password: Option<Secret>,
        temporary: bool,
    },
    RemoveUser {
        name: String,
    },
    ChangeOwnPassword {
        current: Secret,
        new: Secret,
    },
    CreateToken {
        owner: String,
        name: String,
        role: Option<UserRole>,
    },
    RevokeToken {
        id: String,
    },
    /// The config file was read again (SIGHUP): its channels become the base under the API's
    /// changes, and only what differs restarts.
    ReloadConfig(GraphSpec),
}

impl Command {
    /// The least role that may run this command at all.
    pub fn required_role(&self) -> UserRole {
        match self {
            Command::AddOutput { .. }
            | Command::UpdateOutput { .. }
            | Command::RemoveOutput { .. }
            | Command::RunOutputs { .. }
            | Command::ChangeOwnPassword { .. }
            | Command::CreateToken { .. }
            | Command::RevokeToken { .. } => UserRole::User,
            Command::AddUser { .. }
            | Command::UpdateUser { .. }
            | Command::RemoveUser { .. }
            | Command::ReloadConfig(_) => UserRole::Superadmin,
            Command::AddChannel(_)
            | Command::UpdateChannel(_)
            | Command::RemoveChannel(_)
            | Command::SetFailover { .. }
            | Command::AddInput { .. }
            | Command::UpdateInput { .. }
            | Command::RemoveInput { .. }
            | Command::RegenerateStreamKey { .. }
            | Command::ForceInput { .. } => UserRole::Admin,
        }
    }

    /// The audit log's name for it.
    pub fn action(&self) -> &'static str {
        match self {
            Command::AddChannel(_) => "channel.add",
            Command::UpdateChannel(_) => "channel.update",
            Command::RemoveChannel(_) => "channel.remove",
            Command::SetFailover { .. } => "channel.failover",
            Command::AddInput { .. } => "input.add",
            Command::UpdateInput { .. } => "input.update",
            Command::RemoveInput { .. } => "input.remove",
            Command::RegenerateStreamKey { .. } => "input.stream_key",
            Command::AddOutput { .. } => "output.add",
            Command::UpdateOutput { .. } => "output.update",
            Command::RemoveOutput { .. } => "output.remove",
            Command::RunOutputs { start: true, .. } => "output.start",
            Command::RunOutputs { start: false, .. } => "output.stop",
            Command::ForceInput { .. } => "channel.switch",
            Command::AddUser { .. } => "user.add",
            Command::UpdateUser { .. } => "user.update",
            Command::RemoveUser { .. } => "user.remove",
            Command::ChangeOwnPassword { .. } => "session.password",
            Command::CreateToken { .. } => "token.create",
            Command::RevokeToken { .. } => "token.revoke",
            Command::ReloadConfig(_) => "config.reload",
        }
    }
}

/// What a command returns besides "done".
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// A stream key generated for an RTMP input: shown this once.
    StreamKey(Secret),
    /// Destinations told to start or stop.
    Outputs(Vec<String>),
    User(UserInfo),
    /// A new token and its secret (shown this once).
    Token(TokenInfo, Secret),
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Every problem, each naming the component and field.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A port, key or id another component holds; nothing changed.
    #[error("{0}")]
    Conflict(String),
    /// The change could not be saved; nothing changed.
    #[error("the change could not be saved, so nothing changed: {0}")]
    Storage(String),
    /// Saved and valid, but a component could not start (its port is held by another
    /// program, say); the change was undone.
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Busy(String),
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Exists { .. } | StoreError::LastSuperadmin { .. } => {
                CommandError::Conflict(error.to_string())
            }
            StoreError::NoSuchUser { .. } | StoreError::NoSuchToken { .. } => {
                CommandError::NotFound(error.to_string())
            }
            StoreError::BadUserName { .. }
            | StoreError::BadTokenName { .. }
            | StoreError::Weak
            | StoreError::RoleTooHigh { .. } => CommandError::Invalid(vec![error.to_string()]),
            other => CommandError::Storage(other.to_string()),
        }
    }
}

/// Why the saved state is not trusted, for the API, a metric and the dashboard's banner.
#[derive(Debug, Clone, Default)]
pub struct StoreHealth {
    pub problem: Option<String>,
}

pub struct Control {
    graph: Arc<Graph>,
    store: Arc<Store>,
    /// The config file's graph.
    base: Mutex<GraphSpec>,
    /// The API's changes on top of `base`, in the order made.
    overlay: Mutex<Vec<OverlayEntry>>,
    /// One change at a time, from saving to applying.
    changing: tokio::sync::Mutex<()>,
    store_health: StoreHealth,
    ready: AtomicBool,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

fn guard<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// `base` with the overlay laid over it. An entry that no longer fits (its channel is gone,
/// its value does not read) is skipped with a log line; the rest apply.
pub fn overlaid(base: &GraphSpec, overlay: &[OverlayEntry]) -> GraphSpec {
    let mut spec = base.clone();
    for entry in overlay {
        let skip = |why: &str| warn!(channel = %entry.channel, component = entry.kind.name(), id = %entry.id, "skipping a saved change: {why}");
        match entry.kind {
            ComponentKind::Channel => {
                let index = spec
                    .channels
                    .iter()
                    .position(|c| c.settings.id.as_str() == entry.channel);
                match (&entry.value, index) {
                    (None, Some(index)) => {
                        spec.channels.remove(index);
                    }
                    (None, None) => {}
                    (Some(value), index) => {
                        match serde_json::from_value::<ChannelSettings>(value.clone()) {
                            Ok(settings) => match index {
                                Some(index) => spec.channels[index].settings = settings,
                                None => spec.channels.push(ChannelSpec {
                                    settings,
                                    inputs: Vec::new(),
                                    outputs: Vec::new(),
                                }),
                            },
                            Err(e) => skip(&e.to_string()),
                        }
                    }
                }
            }
            ComponentKind::Input => match spec.channel_mut(&entry.channel) {
                Some(channel) => lay(&mut channel.inputs, |i| i.id().as_str(), entry, &skip),
                // A component of a removed channel was removed with it.
                None if entry.value.is_some() => skip("its channel no longer exists"),
                None => {}
            },
            ComponentKind::Output => match spec.channel_mut(&entry.channel) {
                Some(channel) => lay(&mut channel.outputs, |o| o.id().as_str(), entry, &skip),
                None if entry.value.is_some() => skip("its channel no longer exists"),
                None => {}
            },
        }
    }
    spec
}

/// Lays one saved input or output over a channel's list: replaced, added or removed.
fn lay<T: serde::de::DeserializeOwned>(
    list: &mut Vec<T>,
    id: impl Fn(&T) -> &str,
    entry: &OverlayEntry,
    skip: &dyn Fn(&str),
) {
    let index = list.iter().position(|c| id(c) == entry.id);
    match (&entry.value, index) {
        (None, Some(index)) => {
            list.remove(index);
        }
        (None, None) => {}
        (Some(value), index) => match serde_json::from_value::<T>(value.clone()) {
            Ok(component) => match index {
                Some(index) => list[index] = component,
                None => list.push(component),
            },
            Err(e) => skip(&e.to_string()),
        },
    }
}

/// Keeps one entry per component, where it was first written (as the store does).
fn record(overlay: &mut Vec<OverlayEntry>, entry: OverlayEntry) {
    match overlay
        .iter_mut()
        .find(|o| o.channel == entry.channel && o.kind == entry.kind && o.id == entry.id)
    {
        Some(existing) => existing.value = entry.value,
        None => overlay.push(entry),
    }
}

/// A stream key nobody guesses: 24 random bytes, hex.
fn generate_stream_key() -> Result<Secret, CommandError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| {
        CommandError::Storage(format!("the system's random number generator failed: {e}"))
    })?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

/// Every problem, each prefixed with the component it is about.
fn describe(spec: &GraphSpec, problems: &[crate::settings::GraphProblem]) -> Vec<String> {
    problems
        .iter()
        .map(|p| {
            let channel = spec
                .channels
                .get(p.channel)
                .map(|c| c.settings.id.as_str())
                .unwrap_or("?");
            match p.component {
                Component::Channel => format!("channel {channel:?}: {}", p.message),
                Component::Input(i) => format!(
                    "channel {channel:?} input {:?}: {}",
                    spec.channels[p.channel]
                        .inputs
                        .get(i)
                        .map(|x| x.id().as_str())
                        .unwrap_or("?"),
                    p.message
                ),
                Component::Output(o) => format!(
                    "channel {channel:?} output {:?}: {}",
                    spec.channels[p.channel]
                        .outputs
                        .get(o)
                        .map(|x| x.id().as_str())
                        .unwrap_or("?"),
                    p.message
                ),
            }
        })
        .collect()
}

impl Control {
    /// Starts the graph from the config file's `base` with the saved overlay on top.
    pub async fn start(
        graph: Arc<Graph>,
        store: Arc<Store>,
        base: GraphSpec,
        store_health: StoreHealth,
    ) -> Result<Arc<Control>, ApplyError> {
        let overlay = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.overlay())
                .await
                .map_err(|e| ApplyError::Failed(vec![e.to_string()]))?
        };
        let overlay = overlay.unwrap_or_else(|e| {
            warn!(error = %e, "cannot read the saved changes; the config file's graph runs as written");
            Vec::new()
        });
        if store_health.problem.is_some() {
            graph.hold_destinations();
        }
        let spec = overlaid(&base, &overlay);
        let control = Arc::new(Control {
            graph,
            store,
            base: Mutex::new(base.clone()),
            overlay: Mutex::new(overlay),
            changing: tokio::sync::Mutex::new(()),
            store_health,
            ready: AtomicBool::new(false),
        });
        match control.graph.apply(spec).await {
            Ok(()) => {}
            // Saved changes that no longer fit the config file must not keep the program
            // off air: run the file as written and say why.
            Err(ApplyError::Invalid(problems)) if !guard(&control.overlay).is_empty() => {
                let spec = overlaid(&base, &guard(&control.overlay));
                warn!(problems = %describe(&spec, &problems).join("; "), "the saved changes do not fit the config file; running the config file as written");
                control.graph.apply(base).await?;
            }
            Err(e) => return Err(e),
        }
        control.ready.store(true, Ordering::Release);
        Ok(control)
    }

    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn store_health(&self) -> &StoreHealth {
        &self.store_health
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn channels(&self) -> Vec<ChannelStatus> {
        self.graph.channels()
    }

    /// Makes a re-read config file's graph the base (SIGHUP): applies the difference, keeping
    /// the API's changes on top. An invalid file changes nothing.
    async fn reload(&self, base: GraphSpec) -> Result<Outcome, CommandError> {
        let _changing = self.changing.lock().await;
        let spec = overlaid(&base, &guard(&self.overlay));
        self.graph.apply(spec).await.map_err(|e| match e {
            ApplyError::Invalid(problems) => {
                CommandError::Invalid(problems.into_iter().map(|p| p.message).collect())
            }
            ApplyError::Failed(reasons) => CommandError::Failed(reasons.join("; ")),
        })?;
        *guard(&self.base) = base;
        Ok(Outcome::Done)
    }

    /// Runs `command` for `actor`: role check, validation, save with audit, apply.
    pub async fn execute(&self, actor: &Actor, command: Command) -> Result<Outcome, CommandError> {
        if actor.role < command.required_role() {
            return Err(CommandError::Forbidden(format!(
                "{} needs the role {} (you are {})",
                command.action(),
                command.required_role(),
                actor.role
            )));
        }
        let action = command.action();
        let (target, details) = audit_of(&command);
        let outcome = match command {
            Command::AddUser { .. }
            | Command::UpdateUser { .. }
            | Command::RemoveUser { .. }
            | Command::ChangeOwnPassword { .. }
            | Command::CreateToken { .. }
            | Command::RevokeToken { .. } => {
                // Accounts audit themselves (the shell commands run them without a daemon).
                let (store, actor) = (self.store.clone(), actor.clone());
                return tokio::task::spawn_blocking(move || {
                    execute_account(&store, &actor, command, SystemTime::now())
                })
                .await
                .map_err(|e| CommandError::Storage(e.to_string()))?;
            }
            Command::RunOutputs {
                channel,
                output,
                start,
            } => {
                self.run_outputs(actor, &channel, output.as_ref(), start)
                    .await?
            }
            Command::ReloadConfig(base) => self.reload(base).await?,
            Command::ForceInput { channel, input } => {
                self.graph
                    .switch(channel.as_str(), input.as_ref().map(InputId::as_str))
                    .map_err(|e| match e {
                        SwitchError::NoChannel => CommandError::NotFound(format!(
                            "no channel with id {:?}",
                            channel.as_str()
                        )),
                        SwitchError::NoInput => CommandError::Invalid(vec![format!(
                            "channel {:?} has no input {:?}; use an input id or \"auto\"",
                            channel.as_str(),
                            input.as_ref().map(InputId::as_str).unwrap_or("")
                        )]),
                        SwitchError::Busy => CommandError::Busy(
                            "the channel is still applying earlier commands; try again".into(),
                        ),
                    })?;
                Outcome::Done
            }
            graph_change => {
                let _changing = self.changing.lock().await;
                return self
                    .change_graph(actor, graph_change, action, target, details)
                    .await;
            }
        };
        self.audit(actor, action, &target, details).await;
        Ok(outcome)
    }

    async fn audit(&self, actor: &Actor, action: &str, target: &str, details: Value) {
        let entry = AuditEntry {
            at: SystemTime::now(),
            username: Some(actor.username.clone()),
            address: actor.address.clone(),
            action: action.to_string(),
            target: target.to_string(),
            details,
        };
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.audit(&entry)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, action, "cannot write the audit log"),
            Err(e) => warn!(error = %e, action, "cannot write the audit log"),
        }
    }

    /// Runs a blocking store call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, CommandError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| CommandError::Storage(e.to_string()))?
            .map_err(CommandError::from)
    }

    async fn run_outputs(
        &self,
        actor: &Actor,
        channel: &ChannelId,
        output: Option<&OutputId>,
        start: bool,
    ) -> Result<Outcome, CommandError> {
        if let Some(output) = output {
            may_touch_feed(actor, output.as_str())?;
        }
        // "Start/stop all" by someone else leaves the MediaLive feed as it is.
        let include_feeds = actor.role >= UserRole::Superadmin;
        let ids = self
            .graph
            .control_outputs(
                channel.as_str(),
                output.map(OutputId::as_str),
                start,
                include_feeds,
            )
            .map_err(|e| match e {
                ControlError::NoChannel => {
                    CommandError::NotFound(format!("no channel with id {:?}", channel.as_str()))
                }
                ControlError::NoOutput => CommandError::NotFound(format!(
                    "channel {:?} has no output {:?}",
                    channel.as_str(),
                    output.map(OutputId::as_str).unwrap_or("")
                )),
                ControlError::AlwaysOn => CommandError::Conflict(
                    "SRT outputs run whenever lunora runs; only RTMP destinations start and stop"
                        .into(),
                ),
                ControlError::Busy => CommandError::Busy(
                    "the output is still applying earlier commands; try again".into(),
                ),
            })?;
        // Remembered so a restart brings back what the operator left running. A disk that
        // cannot take it must not stop the operator's command: it is logged instead.
        let running: Vec<(String, String, Option<bool>)> = ids
            .iter()
            .map(|id| (channel.to_string(), id.clone(), Some(start)))
            .collect();
        if let Err(e) = self.blocking(move |s| s.apply(&[], &running, None)).await {
            warn!(channel = %channel, error = %e, by = %actor.username, "cannot save which destinations run; after a restart autostart decides");
        }
        Ok(Outcome::Outputs(ids))
    }

    /// Channel, input and output changes: work out the new graph, validate it whole, save the
    /// overlay entry and the audit row together, then apply. Nothing changes on any error.
    async fn change_graph(
        &self,
        actor: &Actor,
        command: Command,
        action: &'static str,
        target: String,
        details: Value,
    ) -> Result<Outcome, CommandError> {
        let mut spec = self.graph.spec();
        let mut outcome = Outcome::Done;
        let mut extra: Vec<OverlayEntry> = Vec::new();
        let no_channel = |id: &ChannelId| {
            CommandError::NotFound(format!("no channel with id {:?}", id.as_str()))
        };
        let entry = match command {
            Command::AddChannel(settings) => {
                if spec.channel(settings.id.as_str()).is_some() {
                    return Err(CommandError::Conflict(format!(
                        "a channel with id {:?} exists; choose another id or change it with PUT",
                        settings.id.as_str()
                    )));
                }
                spec.channels.push(ChannelSpec {
                    settings: settings.clone(),
                    inputs: Vec::new(),
                    outputs: Vec::new(),
                });
                channel_entry(&settings)
            }
            Command::UpdateChannel(settings) => {
                let channel = spec
                    .channel_mut(settings.id.as_str())
                    .ok_or_else(|| no_channel(&settings.id))?;
                channel.settings = settings.clone();
                channel_entry(&settings)
            }
            Command::SetFailover {
                channel: id,
                failover,
            } => {
                let channel = spec
                    .channel_mut(id.as_str())
                    .ok_or_else(|| no_channel(&id))?;
                channel.settings.failover = failover;
                channel_entry(&channel.settings)
            }
            Command::RemoveChannel(id) => {
                let index = spec
                    .channels
                    .iter()
                    .position(|c| c.settings.id == id)
                    .ok_or_else(|| no_channel(&id))?;
                let removed = spec.channels.remove(index);
                // Its components go with it, so a channel added later under the same id starts
                // empty.
                extra.extend(
                    removed
                        .inputs
                        .iter()
                        .map(|i| removal(&id, ComponentKind::Input, i.key())),
                );
                extra.extend(
                    removed
                        .outputs
                        .iter()
                        .map(|o| removal(&id, ComponentKind::Output, o.key())),
                );
                removal(&id, ComponentKind::Channel, id.as_str())
            }
            Command::AddInput {
                channel: id,
                mut input,
            } => {
                let channel = spec
                    .channel_mut(id.as_str())
                    .ok_or_else(|| no_channel(&id))?;
                refuse_taken(channel, input.id().as_str())?;
                if let InputSettings::Rtmp(RtmpInputSettings {
                    stream_key: key @ None,
                    ..
                }) = &mut input
                {
                    let generated = generate_stream_key()?;
                    *key = Some(generated.clone());
                    outcome = Outcome::StreamKey(generated);
                }
                channel.inputs.push(input.clone());
                component_entry(&id, ComponentKind::Input, input.id().as_str(), &input)
            }
            Command::UpdateInput { channel: id, input } => {
                let channel = spec
                    .channel_mut(id.as_str())
                    .ok_or_else(|| no_channel(&id))?;
                replace(&mut channel.inputs, &id, input)?
            }
            Command::RegenerateStreamKey { channel: id, input } => {
                let channel = spec
                    .channel_mut(id.as_str())
                    .ok_or_else(|| no_channel(&id))?;
                let slot = find(&mut channel.inputs, &id, input.as_str())?;
                let InputSettings::Rtmp(rtmp) = slot else {
                    return Err(CommandError::Conflict(format!(
                        "input {:?} is not an RTMP input; only those have stream keys",
                        input.as_str()
                    )));
                };
                let generated = generate_stream_key()?;
                rtmp.stream_key = Some(generated.clone());
                outcome = Outcome::StreamKey(generated);
                component_entry(&id, ComponentKind::Input, input.as_str(), &*slot)
            }
            Command::RemoveInput { channel: id, input } => {
                let channel = spec
                    .channel_mut(id.as_str())
                    .ok_or_else(|| no_channel(&id))?;
                find(&mut channel.inputs, &id, input.as_str())?;
                channel.inputs.retain(|i| *i.id() != input);
                removal(&id, ComponentKind::Input, input.as_str())
            }
            Command::AddOutput {
                channel: id,
                output,
            } => {
                self.may_manage_output(actor, &output)?;
                let channel = spec
                    .channel_mut(id.as_str())
                    .ok_or_else(|| no_channel(&id))?;
                refuse_taken(channel, output.id().as_str())?;
                channel.outputs.push(output.clone());
                component_entry(&id, ComponentKind::Output, output.id().as_str(), &output)
            }
            Command::UpdateOutput {
                channel: id,
                output,
            } => {
                let channel = spec
                    .channel_mut(id.as_str())
                    .ok_or_else(|| no_channel(&id))?;
                self.may_manage_output(
                    actor,
                    find(&mut channel.outputs, &id, output.id().as_str())?,
                )?;
                replace(&mut channel.outputs, &id, output)?
            }
            Command::RemoveOutput {
                channel: id,
                output,
            } => {
                let channel = spec
                    .channel_mut(id.as_str())
                    .ok_or_else(|| no_channel(&id))?;
                self.may_manage_output(actor, find(&mut channel.outputs, &id, output.as_str())?)?;
                channel.outputs.retain(|o| *o.id() != output);
                removal(&id, ComponentKind::Output, output.as_str())
            }
            _ => return Ok(Outcome::Done),
        };
        let problems = spec.validate();
        if !problems.is_empty() {
            let messages = describe(&spec, &problems);
            return Err(if problems.iter().any(|p| p.conflict) {
                CommandError::Conflict(messages.join("; "))
            } else {
                CommandError::Invalid(messages)
            });
        }
        let audit = AuditEntry {
            at: SystemTime::now(),
            username: Some(actor.username.clone()),
            address: actor.address.clone(),
            action: action.to_string(),
            target,
            details,
        };
        let mut entries = vec![entry];
        entries.extend(extra);
        // A removed destination's start/stop choice goes with it.
        let forget: Vec<(String, String, Option<bool>)> = entries
            .iter()
            .filter(|e| e.kind == ComponentKind::Output && e.value.is_none())
            .map(|e| (e.channel.clone(), e.id.clone(), None))
            .collect();
        let (saved, forgotten) = (entries.clone(), forget.clone());
        self.blocking(move |s| s.apply(&saved, &forgotten, Some(&audit)))
            .await?;
        let previous_overlay = guard(&self.overlay).clone();
        for entry in &entries {
            record(&mut guard(&self.overlay), entry.clone());
        }
        for (channel, output, _) in &forget {
            self.graph.forget_run_choice(channel, output);
        }
        let (channel, id) = (entries[0].channel.clone(), entries[0].id.clone());
        match self.graph.apply(spec).await {
            Ok(()) => {
                info!(action, by = %actor.username, channel = %channel, id = %id, "change applied");
                Ok(outcome)
            }
            Err(e) => {
                // Undo: the saved entries go back to what they were, and the graph to its spec.
                let undo: Vec<OverlayEntry> = entries
                    .iter()
                    .map(|entry| {
                        previous_overlay
                            .iter()
                            .find(|o| {
                                o.channel == entry.channel
                                    && o.kind == entry.kind
                                    && o.id == entry.id
                            })
                            .cloned()
                            .unwrap_or(OverlayEntry {
                                value: None,
                                ..entry.clone()
                            })
                    })
                    .collect();
                *guard(&self.overlay) = previous_overlay;
                let restored = overlaid(&guard(&self.base), &guard(&self.overlay));
                if let Err(store_error) = self.blocking(move |s| s.apply(&undo, &[], None)).await {
                    warn!(error = %store_error, "cannot undo a saved change that did not apply");
                }
                if let Err(again) = self.graph.apply(restored).await {
                    warn!(error = %again, "the graph could not be fully restored after a failed change");
                }
                Err(match e {
                    ApplyError::Invalid(problems) => {
                        CommandError::Invalid(problems.into_iter().map(|p| p.message).collect())
                    }
                    ApplyError::Failed(reasons) => CommandError::Failed(reasons.join("; ")),
                })
            }
        }
    }

    /// A `user` manages RTMP destinations; SRT outputs are an admin's; the feed into MediaLive
    /// a superadmin's.
    fn may_manage_output(
        &self,
        actor: &Actor,
        output: &OutputSettings,
    ) -> Result<(), CommandError> {
        may_touch_feed(actor, output.id().as_str())?;
        if matches!(output, OutputSettings::Srt(_)) && actor.role < UserRole::Admin {
            return Err(CommandError::Forbidden(
                "SRT outputs are managed by admins; users manage RTMP destinations".into(),
            ));
        }
        Ok(())
    }

    /// The audit log, newest first.
    pub async fn audit_log(
        &self,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Vec<AuditRecord>, CommandError> {
        self.blocking(move |s| s.audit_log(limit, before)).await
    }
}

/// Outputs feeding MediaLive are made, changed, started and stopped with the MediaLive setup,
/// which is a superadmin's: anyone else changing one would leave a billing channel unfed (or,
/// naming an output like one, hide that it is).
fn may_touch_feed(actor: &Actor, output: &str) -> Result<(), CommandError> {
    if is_medialive_feed(output) && actor.role < UserRole::Superadmin {
        return Err(CommandError::Forbidden(format!(
            "output {output:?} feeds the channel's MediaLive input (ids {MEDIALIVE_FEED:?} and \
             {MEDIALIVE_FEED:?}-…): superadmins manage it with the MediaLive setup"
        )));
    }
    Ok(())
}

/// What the change path needs of an input's or output's settings.
trait Part: serde::Serialize + Clone {
    /// `input` or `output`, for messages.
    const NAME: &'static str;
    const KIND: ComponentKind;
    fn key(&self) -> &str;
    fn type_name(&self) -> &'static str;
    fn keep_secret_of(&mut self, old: &Self);
}

impl Part for InputSettings {
    const NAME: &'static str = "input";
    const KIND: ComponentKind = ComponentKind::Input;
    fn key(&self) -> &str {
        self.id().as_str()
    }
    fn type_name(&self) -> &'static str {
        self.kind()
    }
    fn keep_secret_of(&mut self, old: &Self) {
        self.keep_secrets_of(old)
    }
}

impl Part for OutputSettings {
    const NAME: &'static str = "output";
    const KIND: ComponentKind = ComponentKind::Output;
    fn key(&self) -> &str {
        self.id().as_str()
    }
    fn type_name(&self) -> &'static str {
        self.kind()
    }
    fn keep_secret_of(&mut self, old: &Self) {
        self.keep_secrets_of(old)
    }
}

/// The channel's input or output `id`, or a 404 naming both.
fn find<'a, T: Part>(
    list: &'a mut [T],
    channel: &ChannelId,
    id: &str,
) -> Result<&'a mut T, CommandError> {
    list.iter_mut().find(|c| c.key() == id).ok_or_else(|| {
        CommandError::NotFound(format!(
            "channel {:?} has no {} {id:?}",
            channel.as_str(),
            T::NAME
        ))
    })
}

/// Replaces the component with `new`'s id: its type cannot change, and a secret `new` leaves
/// out is kept (the API never shows it, so a form cannot send it back).
fn replace<T: Part>(
    list: &mut [T],
    channel: &ChannelId,
    mut new: T,
) -> Result<OverlayEntry, CommandError> {
    let slot = find(list, channel, new.key())?;
    if slot.type_name() != new.type_name() {
        return Err(CommandError::Conflict(format!(
            "{} {:?} is of type {}; remove it and add a new one to change its type",
            T::NAME,
            new.key(),
            slot.type_name()
        )));
    }
    new.keep_secret_of(slot);
    *slot = new.clone();
    Ok(component_entry(channel, T::KIND, new.key(), &new))
}

/// Inputs and outputs of a channel share one id space (paths, metrics, logs).
fn refuse_taken(channel: &ChannelSpec, id: &str) -> Result<(), CommandError> {
    let taken = channel.inputs.iter().any(|i| i.key() == id)
        || channel.outputs.iter().any(|o| o.key() == id);
    if taken {
        return Err(CommandError::Conflict(format!(
            "channel {:?} already has a component {id:?}; choose another id or change it with PUT",
            channel.settings.id.as_str()
        )));
    }
    Ok(())
}

fn removal(channel: &ChannelId, kind: ComponentKind, id: &str) -> OverlayEntry {
    OverlayEntry {
        channel: channel.to_string(),
        kind,
        id: id.to_string(),
        value: None,
    }
}

fn channel_entry(settings: &ChannelSettings) -> OverlayEntry {
    OverlayEntry {
        channel: settings.id.to_string(),
        kind: ComponentKind::Channel,
        id: settings.id.to_string(),
        value: serde_json::to_value(settings).ok(),
    }
}

fn component_entry<T: serde::Serialize>(
    channel: &ChannelId,
    kind: ComponentKind,
    id: &str,
    settings: &T,
) -> OverlayEntry {
    OverlayEntry {
        channel: channel.to_string(),
        kind,
        id: id.to_string(),
        value: serde_json::to_value(settings).ok(),
    }
}

/// What the audit log keeps of a command: its target and its settings with secrets masked.
pub(crate) fn audit_of(command: &Command) -> (String, Value) {
    match command {
        Command::AddChannel(s) | Command::UpdateChannel(s) => (
            s.id.to_string(),
            serde_json::to_value(s).unwrap_or_default(),
        ),
        Command::RemoveChannel(id) => (id.to_string(), Value::Null),
        Command::SetFailover { channel, failover } => (
            channel.to_string(),
            serde_json::to_value(failover).unwrap_or_default(),
        ),
        Command::AddInput { channel, input } | Command::UpdateInput { channel, input } => {
            (format!("{channel}/{}", input.id()), input.view())
        }
        Command::RemoveInput { channel, input }
        | Command::RegenerateStreamKey { channel, input } => {
            (format!("{channel}/{input}"), Value::Null)
        }
        Command::AddOutput { channel, output } | Command::UpdateOutput { channel, output } => {
            (format!("{channel}/{}", output.id()), output.view())
        }
        Command::RemoveOutput { channel, output } => (format!("{channel}/{output}"), Value::Null),
        Command::RunOutputs {
            channel, output, ..
        } => (
            output
                .as_ref()
                .map_or(channel.to_string(), |o| format!("{channel}/{o}")),
            Value::Null,
        ),
        Command::ForceInput { channel, input } => (
            channel.to_string(),
            json!({ "input": input.as_ref().map_or("auto", InputId::as_str) }),
        ),
        Command::AddUser { name, role, .. } => (
            name.clone(),
            json!({ "role": role.name(), "password_set": true }),
        ),
        Command::UpdateUser {
            name,
            role,
            password,
            ..
        } => (
            name.clone(),
            json!({ "role": role.map(UserRole::name), "password_set": password.is_some() }),
        ),
        Command::RemoveUser { name } => (name.clone(), Value::Null),
        Command::ChangeOwnPassword { .. } => (String::new(), Value::Null),
        Command::CreateToken { owner, name, role } => (
            owner.clone(),
            json!({ "name": name, "role": role.map(UserRole::name) }),
        ),
        Command::RevokeToken { id } => (id.clone(), Value::Null),
        Command::ReloadConfig(spec) => (
            String::new(),
            json!({ "channels": spec.channels.iter().map(|c| c.settings.id.as_str()).collect::<Vec<_>>() }),
        ),
    }
}
