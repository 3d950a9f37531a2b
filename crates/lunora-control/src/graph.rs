//! The running graph and the one way it changes: [`Graph::apply`] takes the whole desired
//! [`GraphSpec`], validates it, and restarts only the components whose settings differ. Start-up
//! is the difference from an empty graph; a config reload and every API change take the same
//! path, so nothing else on the box is touched by a change to one component.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lunora_egress::{
    Bus, Control as DestinationControl, DestinationSpec, HlsPreview, HlsSettings, OutputState,
    OutputStatsHandle, RtmpDestination, RtmpDestinationSettings, SrtOutput, SrtOutputMode,
    SrtOutputSettings as EgressSrtSettings,
};
use lunora_ingest::{
    BoundRtpInput, BoundSdpInput, BoundSrtInput, InputSender, MergePaths, RtmpInput, RtmpInputs,
    RtmpServer, RtmpsSettings, RtpFormat, RtpInputSettings as IngestRtpSettings, RtpRole,
    SdpInputSettings, SrtInputSettings as IngestSrtSettings, StatsHandle,
};
use lunora_srt::AccessPolicy;
use lunora_switch::{InputSpec, Role, Switcher};
use lunora_ts::AnalyserSettings;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::channel::{ChannelCommand, ChannelTask, SharedRuntime, lock};
use crate::content::{ContentHealth, ContentWork};
use crate::events::{ChannelEvent, ConfigChange};
use crate::profiles::Profiles;
use crate::settings::{
    ChannelSettings, ChannelSpec, GraphProblem, GraphSpec, InputRole, InputSettings,
    OutputSettings, RtmpOutputSettings, RtpFormatSetting, SlateSettings,
    SrtOutputMode as SrtModeSetting, WhipEndpoint, is_medialive_feed,
};
use crate::slate::Slate;
use crate::status::{
    ChannelStatus, DestinationView, HealthView, HlsView, IngestView, InputStatus, OutputStatus,
    SlateView,
};

/// Kernel UDP buffer requested per SRT port (64 KiB drops packets at 50 Mbit/s).
const UDP_BUFFER_BYTES: usize = 4 << 20;
/// Items the channel bus keeps for readers that are behind.
const BUS_CAPACITY: usize = 256;
/// Frames the channel's inputs may queue towards it before frames are dropped (control
/// events are never dropped).
const INPUT_QUEUE: usize = 2048;
/// How long a stopped component may take to let go of its port.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Retry delays of SRT caller outputs.
const SRT_RETRY: (Duration, Duration) = lunora_egress::DEFAULT_RETRY;

/// What every component shares and the config file sets outside `[[channels]]`.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The shared RTMP server (bound when the first RTMP input appears).
    pub rtmp_listen: SocketAddr,
    pub rtmps: Option<RtmpsSettings>,
    pub hls: HlsSettings,
    /// The slate of channels without their own `slate` settings.
    pub slate: SlateSettings,
    /// Fetches file inputs' `s3://` URLs (none: such inputs say they cannot be played).
    pub fetch: Option<FetchFile>,
    /// `[whip]`: the WebRTC port and the addresses answers offer (bound at the first WHIP
    /// input).
    pub whip: WhipEndpoint,
}

/// A local copy of a remote file, or why there is none.
pub type Fetched =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<std::path::PathBuf, String>> + Send>>;

/// Fetches a remote file and answers with its local copy, or why it cannot.
#[derive(Clone)]
pub struct FetchFile(pub std::sync::Arc<dyn Fn(String) -> Fetched + Send + Sync>);

impl std::fmt::Debug for FetchFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchFile")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Nothing changed.
    #[error("the change does not validate: {}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<GraphProblem>),
    /// Components that could not start (a port held by another program, say); everything
    /// else was applied.
    #[error("{}", .0.join("; "))]
    Failed(Vec<String>),
}

struct RunningInput {
    settings: InputSettings,
    slot: usize,
    /// Where senders reach it (none for inputs the media engine plays).
    listen: Option<SocketAddr>,
    stats: StatsHandle,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

struct RunningOutput {
    settings: OutputSettings,
    address: String,
    stats: OutputStatsHandle,
    destination: Option<RtmpDestination>,
    cancel: CancellationToken,
    srt: Option<SrtOutput>,
}

struct RunningChannel {
    settings: ChannelSettings,
    bus: Arc<Bus>,
    runtime: SharedRuntime,
    commands: mpsc::Sender<ChannelCommand>,
    input_events: InputSender,
    hls: HlsPreview,
    cancel: CancellationToken,
    inputs: Vec<RunningInput>,
    outputs: Vec<RunningOutput>,
    /// Input id → the bus carrying that input's stream as received, for outputs with a
    /// `source`; kept across the input's restarts, dropped with the last output using it.
    taps: HashMap<String, Arc<Bus>>,
    /// The transcodes its destinations share, by profile.
    #[cfg(feature = "engine")]
    transcodes: Arc<crate::transcode::Transcodes>,
}

/// The box's running channels. Cheap to share (`Arc`); every method is safe to call from
/// any task, and changes are applied one at a time.
pub struct Graph {
    env: Environment,
    cancel: CancellationToken,
    tasks: TaskTracker,
    events: broadcast::Sender<ChannelEvent>,
    rtmp: RtmpInputs,
    /// Merging channels' second paths, handed to their mergers.
    merge_paths: MergePaths,
    /// Where the RTMP server listens, once bound.
    rtmp_address: Mutex<Option<SocketAddr>>,
    channels: Mutex<Vec<RunningChannel>>,
    /// Serializes changes; held across the awaits of one change (never by readers).
    applying: tokio::sync::Mutex<()>,
    /// Channel → destination → started (true) or stopped by an operator: wins over autostart.
    run_choices: Mutex<HashMap<(String, String), bool>>,
    /// The saved state could not be read: no destination starts unless an operator says so.
    hold_destinations: AtomicBool,
    /// The profiles destinations can name (`[profiles.*]`), as last applied.
    profiles: Mutex<Profiles>,
    /// The WHIP server, once the first WHIP input bound it.
    #[cfg(feature = "whip")]
    whip: Mutex<Option<lunora_whip::WhipServer>>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph").finish_non_exhaustive()
    }
}

fn guard<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn switch_role(role: InputRole) -> Role {
    match role {
        InputRole::Main => Role::Main,
        InputRole::Backup => Role::Backup,
    }
}

/// What [`Graph::apply`] does, worked out before anything is touched.
#[derive(Default)]
struct Plan {
    stop_channels: Vec<String>,
    /// (channel, input id)
    stop_inputs: Vec<(String, String)>,
    /// (channel, output id, replaced by new settings?)
    stop_outputs: Vec<(String, String, bool)>,
    update_channels: Vec<ChannelSettings>,
    start_channels: Vec<ChannelSettings>,
    start_inputs: Vec<(String, InputSettings, bool)>,
    start_outputs: Vec<(String, OutputSettings, bool)>,
}

impl Graph {
    pub fn new(env: Environment, cancel: CancellationToken) -> Arc<Graph> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Graph {
            env,
            cancel,
            tasks: TaskTracker::new(),
            events,
            rtmp: RtmpInputs::new(),
            merge_paths: MergePaths::default(),
            rtmp_address: Mutex::new(None),
            channels: Mutex::new(Vec::new()),
            applying: tokio::sync::Mutex::new(()),
            run_choices: Mutex::new(HashMap::new()),
            hold_destinations: AtomicBool::new(false),
            profiles: Mutex::new(Profiles::new()),
            #[cfg(feature = "whip")]
            whip: Mutex::new(None),
        })
    }

    /// Operators' saved start/stop choices (from the store), before the first apply.
    pub fn set_run_choices(&self, choices: impl IntoIterator<Item = (String, String, bool)>) {
        let mut map = guard(&self.run_choices);
        for (channel, output, running) in choices {
            map.insert((channel, output), running);
        }
    }

    /// No destination starts on its own (the saved choices could not be read).
    pub fn hold_destinations(&self) {
        self.hold_destinations.store(true, Ordering::Release);
    }

    /// Resolves when the daemon starts shutting down (long-lived responses such as event
    /// streams end then, so shutdown never waits for a browser).
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        self.cancel.clone().cancelled_owned()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ChannelEvent> {
        self.events.subscribe()
    }

    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    pub fn rtmp_address(&self) -> Option<SocketAddr> {
        *guard(&self.rtmp_address)
    }

    /// What runs now, as settings.
    pub fn spec(&self) -> GraphSpec {
        GraphSpec {
            channels: guard(&self.channels)
                .iter()
                .map(|c| ChannelSpec {
                    settings: c.settings.clone(),
                    inputs: c.inputs.iter().map(|i| i.settings.clone()).collect(),
                    outputs: c.outputs.iter().map(|o| o.settings.clone()).collect(),
                })
                .collect(),
            profiles: guard(&self.profiles).clone(),
        }
    }

    fn emit(&self, event: ChannelEvent) {
        let _ = self.events.send(event);
    }

    fn config_event(&self, channel: &str, component: &'static str, id: &str, change: ConfigChange) {
        self.emit(ChannelEvent::Config {
            channel: channel.to_string(),
            component,
            id: id.to_string(),
            change,
        });
    }

    /// Makes `spec` the running graph, restarting only what differs. A spec that does not
    /// validate changes nothing.
    pub async fn apply(&self, spec: GraphSpec) -> Result<(), ApplyError> {
        let problems = spec.validate();
        if !problems.is_empty() {
            return Err(ApplyError::Invalid(problems));
        }
        let _applying = self.applying.lock().await;
        let plan = self.plan(&spec);
        *guard(&self.profiles) = spec.profiles.clone();
        for channel in &plan.stop_channels {
            self.stop_channel(channel).await;
        }
        for (channel, input) in &plan.stop_inputs {
            self.stop_input(channel, input).await;
        }
        // Replaced destinations keep their counters and whether they were running.
        let mut carried: HashMap<(String, String), (lunora_egress::OutputStats, bool)> =
            HashMap::new();
        for (channel, output, replaced) in &plan.stop_outputs {
            if let Some(previous) = self.stop_output(channel, output).await
                && *replaced
            {
                carried.insert((channel.clone(), output.clone()), previous);
            }
        }
        for settings in plan.update_channels {
            self.update_channel(settings).await;
        }
        let mut failures = Vec::new();
        for settings in plan.start_channels {
            self.start_channel(settings);
        }
        for (channel, settings, replaced) in plan.start_inputs {
            let id = settings.id().to_string();
            match self.start_input(&channel, settings).await {
                Ok(()) => self.config_event(&channel, "input", &id, ConfigChange::of(replaced)),
                Err(e) => failures.push(e),
            }
        }
        for (channel, settings, replaced) in plan.start_outputs {
            let id = settings.id().to_string();
            let previous = carried.remove(&(channel.clone(), id.clone()));
            match self.start_output(&channel, settings, previous).await {
                Ok(()) => self.config_event(&channel, "output", &id, ConfigChange::of(replaced)),
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ApplyError::Failed(failures))
        }
    }

    fn plan(&self, spec: &GraphSpec) -> Plan {
        let running = guard(&self.channels);
        let mut plan = Plan::default();
        for old in running.iter() {
            let id = old.settings.id.as_str();
            let Some(new) = spec.channel(id) else {
                plan.stop_channels.push(id.to_string());
                continue;
            };
            if new.settings != old.settings {
                plan.update_channels.push(new.settings.clone());
            }
            let running: Vec<&InputSettings> = old.inputs.iter().map(|i| &i.settings).collect();
            let (mut stop, mut start) = differences(&running, &new.inputs, |i| i.id().as_str());
            // RTP inputs take their role in a merge and its window when they start.
            if new.settings.failover.merge_window() != old.settings.failover.merge_window() {
                for input in &new.inputs {
                    if matches!(input, InputSettings::Rtp(_)) && running.contains(&input) {
                        stop.push((input.id().to_string(), true));
                        start.push((input.clone(), true));
                    }
                }
            }
            plan.stop_inputs
                .extend(stop.into_iter().map(|(input, _)| (id.to_string(), input)));
            plan.start_inputs.extend(
                start
                    .into_iter()
                    .map(|(input, replaced)| (id.to_string(), input, replaced)),
            );
            let running: Vec<&OutputSettings> = old.outputs.iter().map(|o| &o.settings).collect();
            let (mut stop, mut start) = differences(&running, &new.outputs, |o| o.id().as_str());
            // A destination whose profile was redefined restarts with the new one.
            let profiles = guard(&self.profiles);
            for output in &new.outputs {
                let id = output.id().as_str();
                let unchanged = running.contains(&output);
                if unchanged
                    && crate::profiles::profile_of(output, &profiles)
                        != crate::profiles::profile_of(output, &spec.profiles)
                {
                    stop.push((id.to_string(), true));
                    start.push((output.clone(), true));
                }
            }
            drop(profiles);
            plan.stop_outputs.extend(
                stop.into_iter()
                    .map(|(output, replaced)| (id.to_string(), output, replaced)),
            );
            plan.start_outputs.extend(
                start
                    .into_iter()
                    .map(|(output, replaced)| (id.to_string(), output, replaced)),
            );
        }
        for new in &spec.channels {
            let id = new.settings.id.as_str();
            if !running.iter().any(|c| c.settings.id.as_str() == id) {
                plan.start_channels.push(new.settings.clone());
                for input in &new.inputs {
                    plan.start_inputs
                        .push((id.to_string(), input.clone(), false));
                }
                for output in &new.outputs {
                    plan.start_outputs
                        .push((id.to_string(), output.clone(), false));
                }
            }
        }
        plan
    }

    fn start_channel(&self, settings: ChannelSettings) {
        let id = settings.id.to_string();
        let bus = Bus::new(BUS_CAPACITY);
        let (input_events, receiver) = lunora_ingest::input_queue(INPUT_QUEUE);
        let (commands, command_receiver) = mpsc::channel(64);
        let runtime = SharedRuntime::default();
        let cancel = self.cancel.child_token();
        let mut switcher = Switcher::new(settings.failover.policy(), Vec::new());
        let slate = Slate::new(
            id.clone(),
            self.slate_of(&settings),
            input_events.clone(),
            &mut switcher,
            Duration::ZERO,
        );
        let task = ChannelTask {
            id: id.clone(),
            switcher,
            slate,
            bus: bus.clone(),
            runtime: runtime.clone(),
            events: self.events.clone(),
            connected: Default::default(),
            taps: HashMap::new(),
            programs: HashMap::new(),
            content: ContentHealth::new(ContentWork::of(&settings.failover)),
            keyframe_requests: HashMap::new(),
            asked: None,
        };
        // Every line the channel's tasks log says which channel.
        let span = info_span!("channel", channel = %id);
        self.tasks.spawn(
            task.run(receiver, command_receiver, cancel.clone())
                .instrument(span.clone()),
        );
        let hls =
            span.in_scope(|| HlsPreview::spawn(bus.clone(), self.env.hls, cancel.child_token()));
        #[cfg(feature = "engine")]
        let transcodes = crate::transcode::Transcodes::new(
            &id,
            bus.clone(),
            self.tasks.clone(),
            cancel.child_token(),
        );
        info!(channel = %id, mode = settings.mode.name(), "channel started");
        guard(&self.channels).push(RunningChannel {
            settings,
            bus,
            runtime,
            commands,
            input_events,
            hls,
            cancel,
            inputs: Vec::new(),
            outputs: Vec::new(),
            taps: HashMap::new(),
            #[cfg(feature = "engine")]
            transcodes,
        });
        self.config_event(&id, "channel", &id, ConfigChange::Added);
    }

    async fn update_channel(&self, settings: ChannelSettings) {
        let id = settings.id.to_string();
        let commands = {
            let mut channels = guard(&self.channels);
            let Some(channel) = channels.iter_mut().find(|c| c.settings.id == settings.id) else {
                return;
            };
            let policy_changed = channel.settings.failover != settings.failover;
            let slate_changed = channel.settings.slate != settings.slate;
            channel.settings = settings.clone();
            (channel.commands.clone(), policy_changed, slate_changed)
        };
        let (commands, policy_changed, slate_changed) = commands;
        if policy_changed {
            let _ = commands
                .send(ChannelCommand::SetPolicy(settings.failover.policy()))
                .await;
            let _ = commands
                .send(ChannelCommand::SetContent(ContentWork::of(
                    &settings.failover,
                )))
                .await;
        }
        if slate_changed {
            let _ = commands
                .send(ChannelCommand::SetSlate(self.slate_of(&settings)))
                .await;
        }
        self.config_event(&id, "channel", &id, ConfigChange::Updated);
    }

    async fn stop_channel(&self, id: &str) {
        let channel = {
            let mut channels = guard(&self.channels);
            let Some(index) = channels.iter().position(|c| c.settings.id.as_str() == id) else {
                return;
            };
            channels.remove(index)
        };
        channel.cancel.cancel();
        // Inputs' and outputs' tokens are the graph's children, not the channel's: each is
        // cancelled here, or it would run on (its port bound) after the channel is gone.
        for input in &channel.inputs {
            input.cancel.cancel();
        }
        for output in &channel.outputs {
            output.cancel.cancel();
        }
        for input in channel.inputs {
            self.rtmp.remove(&format!("{id}/{}", input.settings.id()));
            if let Some(task) = input.task
                && tokio::time::timeout(STOP_TIMEOUT, task).await.is_err()
            {
                warn!(channel = %id, input = %input.settings.id(), "the input's task did not end within 3 s");
            }
        }
        for output in channel.outputs {
            if let Some(srt) = output.srt
                && tokio::time::timeout(STOP_TIMEOUT, srt.finished())
                    .await
                    .is_err()
            {
                warn!(channel = %id, output = %output.settings.id(), "the output's task did not end within 3 s");
            }
        }
        info!(channel = %id, "channel removed");
        self.config_event(id, "channel", id, ConfigChange::Removed);
    }

    async fn stop_input(&self, channel: &str, id: &str) {
        let (input, commands) = {
            let mut channels = guard(&self.channels);
            let Some(c) = channels
                .iter_mut()
                .find(|c| c.settings.id.as_str() == channel)
            else {
                return;
            };
            let Some(index) = c.inputs.iter().position(|i| i.settings.id().as_str() == id) else {
                return;
            };
            (c.inputs.remove(index), c.commands.clone())
        };
        input.cancel.cancel();
        self.rtmp.remove(&format!("{channel}/{id}"));
        let _ = commands.send(ChannelCommand::RemoveInput(input.slot)).await;
        if let Some(task) = input.task
            && tokio::time::timeout(STOP_TIMEOUT, task).await.is_err()
        {
            warn!(
                channel,
                input = id,
                "the input's task did not end within 3 s"
            );
        }
        info!(channel = %channel, input = %id, "input stopped");
        self.config_event(channel, "input", id, ConfigChange::Removed);
    }

    async fn start_input(&self, channel: &str, settings: InputSettings) -> Result<(), String> {
        let (commands, events, input_loss, merge_window) = {
            let channels = guard(&self.channels);
            let c = channels
                .iter()
                .find(|c| c.settings.id.as_str() == channel)
                .ok_or_else(|| format!("channel {channel:?} is not running"))?;
            (
                c.commands.clone(),
                c.input_events.clone(),
                Duration::from_millis(c.settings.failover.input_loss_ms),
                c.settings.failover.merge_window(),
            )
        };
        let id = settings.id().to_string();
        let (slot_sender, slot) = oneshot::channel();
        let spec = InputSpec {
            id: id.clone(),
            role: switch_role(settings.role()),
        };
        commands
            .send(ChannelCommand::AddInput {
                spec,
                slot: slot_sender,
            })
            .await
            .map_err(|_| format!("channel {channel:?} has stopped"))?;
        let slot = slot
            .await
            .map_err(|_| format!("channel {channel:?} has stopped"))?;
        let stats = StatsHandle::new();
        let cancel = self.cancel.child_token();
        let started = match &settings {
            InputSettings::Srt(srt) => {
                let ingest = IngestSrtSettings {
                    id: id.clone(),
                    listen: srt.listen,
                    latency: Duration::from_millis(srt.latency_ms),
                    access: AccessPolicy {
                        passphrase: srt.passphrase.clone(),
                        stream_id: srt.stream_id.clone(),
                    },
                    input_loss,
                    analyser: AnalyserSettings::default(),
                    udp_buffer_bytes: UDP_BUFFER_BYTES,
                };
                let bound =
                    retry_while_in_use(|| BoundSrtInput::bind(ingest.clone(), stats.clone())).await;
                match bound {
                    Ok(bound) => {
                        let listen = bound.local_addr();
                        let span = info_span!("input", channel = %channel, input = %id);
                        let task = self.tasks.spawn(
                            bound
                                .run(slot, events, cancel.clone().cancelled_owned())
                                .instrument(span),
                        );
                        Ok((Some(listen), Some(task)))
                    }
                    Err(e) => Err(format!(
                        "channel {channel:?} input {id:?}: cannot bind SRT port {}: {e}",
                        srt.listen
                    )),
                }
            }
            InputSettings::Rtp(rtp) => match rtp_ts_format(rtp.format) {
                None => {
                    self.start_sdp_input(
                        channel, &id, rtp, slot, events, &stats, &cancel, input_loss,
                    )
                    .await
                }
                Some(format) => {
                    let role = match (merge_window, rtp.role) {
                        (None, _) => RtpRole::Single,
                        (Some(_), InputRole::Main) => RtpRole::Merger {
                            second: self.merge_paths.attach(channel),
                        },
                        (Some(_), InputRole::Backup) => RtpRole::Path {
                            paths: self.merge_paths.clone(),
                            key: channel.to_string(),
                        },
                    };
                    let ingest = IngestRtpSettings {
                        id: id.clone(),
                        listen: rtp.listen,
                        source: rtp.source,
                        interface: rtp.interface,
                        format,
                        reorder_window: merge_window
                            .unwrap_or(Duration::from_millis(rtp.reorder_ms)),
                        input_loss,
                        analyser: AnalyserSettings::default(),
                        udp_buffer_bytes: UDP_BUFFER_BYTES,
                        // Validation refuses FEC with merge and with plain UDP.
                        fec: rtp.fec_ports().filter(|_| merge_window.is_none()),
                    };
                    let bound = retry_while_in_use(|| async {
                        BoundRtpInput::bind(ingest.clone(), stats.clone())
                    })
                    .await;
                    match bound {
                        Ok(bound) => {
                            let listen = bound.local_addr();
                            let span = info_span!("input", channel = %channel, input = %id);
                            let task = self.tasks.spawn(
                                bound
                                    .run(role, slot, events, cancel.clone().cancelled_owned())
                                    .instrument(span),
                            );
                            Ok((Some(listen), Some(task)))
                        }
                        Err(e) => Err(format!(
                            "channel {channel:?} input {id:?}: cannot receive on UDP {}: {e}",
                            rtp.listen
                        )),
                    }
                }
            },
            InputSettings::Rtmp(rtmp) => match (self.rtmp_server().await, &rtmp.stream_key) {
                (Ok(address), Some(key)) => {
                    self.rtmp.add(RtmpInput {
                        name: format!("{channel}/{id}"),
                        stream_key: key.clone(),
                        index: slot,
                        events,
                        stats: stats.clone(),
                    });
                    Ok((Some(address), None))
                }
                (Err(e), _) => Err(e),
                (_, None) => Err(format!(
                    "channel {channel:?} input {id:?} has no stream key"
                )),
            },
            InputSettings::File(_) | InputSettings::TestPattern(_) => self
                .start_engine_input(channel, &settings, slot, events, stats.clone(), &cancel)
                .map(|task| (None, Some(task))),
            InputSettings::Whip(_) => self
                .start_whip_input(channel, &settings, slot, events, stats.clone(), &cancel)
                .await
                .map(|(listen, task, requester)| {
                    let _ = commands.try_send(ChannelCommand::KeyframeRequests { slot, requester });
                    (Some(listen), Some(task))
                }),
        };
        let (listen, task) = match started {
            Ok(started) => started,
            Err(e) => {
                let _ = commands.send(ChannelCommand::RemoveInput(slot)).await;
                warn!(channel = %channel, input = %id, "{e}");
                return Err(e);
            }
        };
        match listen {
            Some(listen) => {
                info!(channel = %channel, input = %id, kind = settings.kind(), listen = %listen, "input started")
            }
            None => info!(channel = %channel, input = %id, kind = settings.kind(), "input started"),
        }
        let tap = {
            let mut channels = guard(&self.channels);
            let c = channels
                .iter_mut()
                .find(|c| c.settings.id.as_str() == channel);
            c.and_then(|c| {
                c.inputs.push(RunningInput {
                    settings,
                    slot,
                    listen,
                    stats,
                    cancel,
                    task,
                });
                c.taps.get(&id).cloned()
            })
        };
        // Outputs sending this input keep their bus; the restarted input feeds it again.
        if let Some(bus) = tap {
            let _ = commands
                .send(ChannelCommand::Tap {
                    slot,
                    bus: Some(bus),
                })
                .await;
        }
        Ok(())
    }

    /// The channel's slate settings, or the box's.
    fn slate_of(&self, settings: &ChannelSettings) -> SlateSettings {
        settings
            .slate
            .clone()
            .unwrap_or_else(|| self.env.slate.clone())
    }

    /// Opens the ports of an `rtp` input with `format = "sdp"` and starts its task.
    #[allow(clippy::too_many_arguments)]
    async fn start_sdp_input(
        &self,
        channel: &str,
        id: &str,
        rtp: &crate::settings::RtpInputSettings,
        slot: usize,
        events: InputSender,
        stats: &StatsHandle,
        cancel: &CancellationToken,
        input_loss: Duration,
    ) -> Result<(Option<SocketAddr>, Option<JoinHandle<()>>), String> {
        // The file is read again here: it may have changed since the config was checked.
        let streams = rtp
            .sdp
            .as_deref()
            .ok_or_else(|| "format = \"sdp\" needs sdp".to_string())
            .and_then(crate::settings::read_sdp)
            .map_err(|e| format!("channel {channel:?} input {id:?}: {e}"))?;
        let ingest = SdpInputSettings {
            id: id.to_string(),
            address: rtp.listen.ip(),
            source: rtp.source,
            interface: rtp.interface,
            streams,
            reorder_window: Duration::from_millis(rtp.reorder_ms),
            input_loss,
            udp_buffer_bytes: UDP_BUFFER_BYTES,
        };
        let bound = retry_while_in_use(|| async {
            BoundSdpInput::bind(ingest.clone(), stats.clone())
        })
        .await
        .map_err(|e| {
            format!(
                "channel {channel:?} input {id:?}: cannot receive the SDP's ports on {}: {e}",
                rtp.listen.ip()
            )
        })?;
        let listen = bound.local_addr();
        let span = info_span!("input", channel = %channel, input = %id);
        let task = self.tasks.spawn(
            bound
                .run(slot, events, cancel.clone().cancelled_owned())
                .instrument(span),
        );
        Ok((listen, Some(task)))
    }

    /// Starts a file or test-pattern input on the media engine.
    #[cfg(feature = "engine")]
    fn start_engine_input(
        &self,
        channel: &str,
        settings: &InputSettings,
        slot: usize,
        events: InputSender,
        stats: StatsHandle,
        cancel: &CancellationToken,
    ) -> Result<JoinHandle<()>, String> {
        use lunora_engine::{
            EngineInputSettings, Location, PatternSettings, Source, VideoEncoding,
        };
        let id = settings.id().to_string();
        let source = match settings {
            InputSettings::File(file) => Source::File {
                location: match (&file.path, &file.url) {
                    (Some(path), _) => Location::Path(path.clone()),
                    (None, url) => Location::Url(url.clone().unwrap_or_default()),
                },
                looped: file.looped,
                encoding: VideoEncoding {
                    bitrate_kbps: file.bitrate_kbps,
                    keyframe_interval: 60,
                },
            },
            InputSettings::TestPattern(pattern) => Source::TestPattern(PatternSettings {
                width: pattern.width,
                height: pattern.height,
                frame_rate: pattern.frame_rate.fraction(),
                encoding: VideoEncoding {
                    bitrate_kbps: pattern.bitrate_kbps,
                    keyframe_interval: pattern.frame_rate.two_seconds(),
                },
                caption: format!("{channel} / {id}"),
            }),
            _ => return Err(format!("input {id:?} is not played by the media engine")),
        };
        let span = info_span!("input", channel = %channel, input = %id);
        Ok(self.tasks.spawn(
            lunora_engine::run(
                EngineInputSettings {
                    id,
                    source,
                    fetch: self.env.fetch.as_ref().map(|f| f.0.clone()),
                },
                slot,
                events,
                stats,
                cancel.clone().cancelled_owned(),
            )
            .instrument(span),
        ))
    }

    #[cfg(not(feature = "engine"))]
    fn start_engine_input(
        &self,
        channel: &str,
        settings: &InputSettings,
        _slot: usize,
        _events: InputSender,
        _stats: StatsHandle,
        _cancel: &CancellationToken,
    ) -> Result<JoinHandle<()>, String> {
        Err(format!(
            "channel {channel:?} input {:?}: this build has no media engine (built without the `gstreamer` feature)",
            settings.id().as_str()
        ))
    }

    /// Starts a WHIP input: registers `channel/input` with the WHIP server (bound the first
    /// time) and runs its task. Returns the UDP address and the PLI hook for the switcher.
    #[cfg(feature = "whip")]
    async fn start_whip_input(
        &self,
        channel: &str,
        settings: &InputSettings,
        slot: usize,
        events: InputSender,
        stats: StatsHandle,
        cancel: &CancellationToken,
    ) -> Result<(SocketAddr, JoinHandle<()>, crate::channel::KeyframeRequests), String> {
        let id = settings.id().to_string();
        let InputSettings::Whip(whip) = settings else {
            return Err(format!("input {id:?} is not a WHIP input"));
        };
        let token = whip
            .token
            .clone()
            .ok_or_else(|| format!("channel {channel:?} input {id:?} has no token"))?;
        let server = self.whip_server().await?;
        let handle = server.add_input(&format!("{channel}/{id}"), token);
        let requester = handle.keyframe_requester();
        let span = info_span!("input", channel = %channel, input = %id);
        let task = self
            .tasks
            .spawn(crate::whip::run(handle, slot, events, stats, cancel.clone()).instrument(span));
        Ok((
            server.local_addr(),
            task,
            crate::channel::KeyframeRequests(Arc::new(move || requester.request())),
        ))
    }

    #[cfg(not(feature = "whip"))]
    async fn start_whip_input(
        &self,
        channel: &str,
        settings: &InputSettings,
        _slot: usize,
        _events: InputSender,
        _stats: StatsHandle,
        _cancel: &CancellationToken,
    ) -> Result<(SocketAddr, JoinHandle<()>, crate::channel::KeyframeRequests), String> {
        Err(format!(
            "channel {channel:?} input {:?}: this build has no WebRTC (built without the `webrtc` feature)",
            settings.id().as_str()
        ))
    }

    /// Binds the WHIP server's UDP port the first time a WHIP input needs it.
    #[cfg(feature = "whip")]
    async fn whip_server(&self) -> Result<lunora_whip::WhipServer, String> {
        if let Some(server) = guard(&self.whip).clone() {
            return Ok(server);
        }
        let endpoint = &self.env.whip;
        let settings = lunora_whip::WhipSettings {
            udp_listen: endpoint.udp_listen,
            ice_addresses: endpoint.ice_addresses.clone(),
            max_sessions: endpoint.max_sessions,
        };
        let server = lunora_whip::WhipServer::bind(settings, self.cancel.child_token())
            .await
            .map_err(|e| {
                format!(
                    "cannot bind the WHIP UDP port {} ([whip] udp_listen): {e}",
                    endpoint.udp_listen
                )
            })?;
        *guard(&self.whip) = Some(server.clone());
        Ok(server)
    }

    /// The WHIP server, when a WHIP input has bound it (the HTTP layer answers publishers
    /// through it).
    #[cfg(feature = "whip")]
    pub fn whip(&self) -> Option<lunora_whip::WhipServer> {
        guard(&self.whip).clone()
    }

    /// `[whip]` as configured: the API announces its STUN/TURN servers in `Link` headers.
    pub fn whip_endpoint(&self) -> &WhipEndpoint {
        &self.env.whip
    }

    /// Binds the shared RTMP server the first time an RTMP input needs it.
    async fn rtmp_server(&self) -> Result<SocketAddr, String> {
        if let Some(address) = self.rtmp_address() {
            return Ok(address);
        }
        let listen = self.env.rtmp_listen;
        let server = RtmpServer::bind(listen)
            .await
            .map_err(|e| format!("cannot bind the RTMP server on {listen} ([rtmp] listen): {e}"))?;
        let server = match &self.env.rtmps {
            Some(rtmps) => server
                .with_rtmps(rtmps)
                .await
                .map_err(|e| format!("cannot start RTMPS ingest ([rtmp] tls_listen): {e}"))?,
            None => server,
        };
        let address = server
            .local_addr()
            .map_err(|e| format!("the RTMP server has no address: {e}"))?;
        info!(listen = %address, "RTMP ingest listening (rtmp://HOST:{}/live/<stream key>)", address.port());
        if let Some(tls) = server.rtmps_addr() {
            info!(listen = %tls, "RTMPS ingest listening (rtmps://HOST:{}/live/<stream key>)", tls.port());
        }
        self.tasks
            .spawn(server.run(self.rtmp.clone(), self.cancel.clone().cancelled_owned()));
        *guard(&self.rtmp_address) = Some(address);
        Ok(address)
    }

    /// Stops an output; returns its last stats and whether it was running.
    async fn stop_output(
        &self,
        channel: &str,
        id: &str,
    ) -> Option<(lunora_egress::OutputStats, bool)> {
        let output = {
            let mut channels = guard(&self.channels);
            let c = channels
                .iter_mut()
                .find(|c| c.settings.id.as_str() == channel)?;
            let index = c
                .outputs
                .iter()
                .position(|o| o.settings.id().as_str() == id)?;
            c.outputs.remove(index)
        };
        if let Some(source) = output.settings.source() {
            self.close_unused_tap(channel, source.as_str()).await;
        }
        output.cancel.cancel();
        if let Some(srt) = output.srt
            && tokio::time::timeout(STOP_TIMEOUT, srt.finished())
                .await
                .is_err()
        {
            warn!(
                channel,
                output = id,
                "the output's task did not end within 3 s"
            );
        }
        let last = output.stats.snapshot();
        let running = !matches!(last.state, OutputState::Idle | OutputState::Failed);
        info!(channel = %channel, output = %id, "output stopped");
        self.config_event(channel, "output", id, ConfigChange::Removed);
        Some((last, running))
    }

    /// Closes the tap of input `source` when no output of the channel reads it any more.
    async fn close_unused_tap(&self, channel: &str, source: &str) {
        let close = {
            let mut channels = guard(&self.channels);
            let Some(c) = channels
                .iter_mut()
                .find(|c| c.settings.id.as_str() == channel)
            else {
                return;
            };
            if c.outputs
                .iter()
                .any(|o| o.settings.source().is_some_and(|s| s.as_str() == source))
            {
                return;
            }
            c.taps.remove(source);
            c.inputs
                .iter()
                .find(|i| i.settings.id().as_str() == source)
                .map(|i| (c.commands.clone(), i.slot))
        };
        if let Some((commands, slot)) = close {
            // Closed: the channel has stopped, and its taps with it.
            let _ = commands.send(ChannelCommand::Tap { slot, bus: None }).await;
        }
    }

    async fn start_output(
        &self,
        channel: &str,
        settings: OutputSettings,
        previous: Option<(lunora_egress::OutputStats, bool)>,
    ) -> Result<(), String> {
        let source = settings.source().map(|s| s.to_string());
        let started = self.start_output_on_bus(channel, settings, previous).await;
        // An output that did not start must not leave a tap copying its input for nobody.
        if started.is_err()
            && let Some(source) = source
        {
            self.close_unused_tap(channel, &source).await;
        }
        started
    }

    async fn start_output_on_bus(
        &self,
        channel: &str,
        settings: OutputSettings,
        previous: Option<(lunora_egress::OutputStats, bool)>,
    ) -> Result<(), String> {
        let (bus, tap) = {
            let mut channels = guard(&self.channels);
            let c = channels
                .iter_mut()
                .find(|c| c.settings.id.as_str() == channel)
                .ok_or_else(|| format!("channel {channel:?} is not running"))?;
            match settings.source() {
                None => (c.bus.clone(), None),
                Some(source) => match c.taps.get(source.as_str()) {
                    Some(bus) => (bus.clone(), None),
                    None => {
                        let bus = Bus::new(BUS_CAPACITY);
                        c.taps.insert(source.to_string(), bus.clone());
                        let slot = c
                            .inputs
                            .iter()
                            .find(|i| i.settings.id() == source)
                            .map(|i| i.slot);
                        let tap = slot.map(|slot| (c.commands.clone(), slot, bus.clone()));
                        (bus, tap)
                    }
                },
            }
        };
        if let Some((commands, slot, bus)) = tap {
            commands
                .send(ChannelCommand::Tap {
                    slot,
                    bus: Some(bus),
                })
                .await
                .map_err(|_| format!("channel {channel:?} has stopped"))?;
        }
        let id = settings.id().to_string();
        let stats = match &previous {
            Some((last, _)) => OutputStatsHandle::carrying_counters(last),
            None => OutputStatsHandle::new(),
        };
        let events = self.events.clone();
        let (event_channel, event_output) = (channel.to_string(), id.clone());
        let stats = stats.with_listener(Arc::new(move |s| {
            let _ = events.send(ChannelEvent::Output {
                channel: event_channel.clone(),
                output: event_output.clone(),
                state: s.state.name(),
                last_error: s.last_error.clone(),
            });
        }));
        let cancel = self.cancel.child_token();
        let span = info_span!("output", channel = %channel, output = %id);
        let running = match &settings {
            OutputSettings::Srt(srt) => {
                let (mode, address) = match (srt.mode, srt.address, srt.listen) {
                    (SrtModeSetting::Caller, Some(address), _) => (
                        SrtOutputMode::Caller {
                            address,
                            stream_id: srt.stream_id.clone(),
                            passphrase: srt.passphrase.clone(),
                            key_length: srt.pbkeylen.unwrap_or(16),
                        },
                        address,
                    ),
                    (SrtModeSetting::Listener, _, Some(listen)) => (
                        SrtOutputMode::Listener {
                            listen,
                            max_pullers: usize::from(
                                srt.max_pullers
                                    .unwrap_or(crate::settings::DEFAULT_MAX_PULLERS),
                            ),
                            access: AccessPolicy {
                                passphrase: srt.passphrase.clone(),
                                stream_id: srt.stream_id.clone(),
                            },
                        },
                        listen,
                    ),
                    _ => return Err(format!("channel {channel:?} output {id:?} has no address")),
                };
                let egress = EgressSrtSettings {
                    id: id.clone(),
                    mode,
                    latency: Duration::from_millis(srt.latency_ms),
                    udp_buffer_bytes: UDP_BUFFER_BYTES,
                    retry_min: SRT_RETRY.0,
                    retry_max: SRT_RETRY.1,
                };
                let started = retry_while_in_use(|| {
                    SrtOutput::start(egress.clone(), bus.clone(), stats.clone(), cancel.clone())
                        .instrument(span.clone())
                })
                .await
                .map_err(|e| {
                    format!("channel {channel:?} output {id:?}: cannot start on {address}: {e}")
                })?;
                let address = started
                    .local_addr()
                    .map_or(address.to_string(), |a| a.to_string());
                RunningOutput {
                    settings,
                    address,
                    stats,
                    destination: None,
                    cancel,
                    srt: Some(started),
                }
            }
            OutputSettings::Rtmp(rtmp) => {
                let spec: DestinationSpec = rtmp.destination();
                let destination = spec.validate().map_err(|problems| {
                    let reasons: Vec<String> = problems.into_iter().map(|p| p.message).collect();
                    format!("channel {channel:?} output {id:?}: {}", reasons.join("; "))
                })?;
                let start = match previous {
                    Some((_, was_running)) => was_running || rtmp.autostart,
                    None => self.should_start(channel, &id, rtmp.autostart),
                };
                let bus =
                    span.in_scope(|| self.destination_bus(channel, rtmp, bus, &stats, &cancel))?;
                let control = span.in_scope(|| {
                    RtmpDestination::spawn(
                        RtmpDestinationSettings {
                            id: format!("{channel}/{id}"),
                            url: destination.url.clone(),
                            stream_key: destination.stream_key,
                            rules: destination.rules,
                            retry_min: destination.retry.0,
                            retry_max: destination.retry.1,
                        },
                        bus,
                        stats.clone(),
                        start,
                        cancel.clone(),
                    )
                });
                RunningOutput {
                    settings,
                    address: destination.url.to_string(),
                    stats,
                    destination: Some(control),
                    cancel,
                    srt: None,
                }
            }
        };
        info!(channel = %channel, output = %id, kind = running.settings.kind(), address = %running.address, "output started");
        let mut channels = guard(&self.channels);
        if let Some(c) = channels
            .iter_mut()
            .find(|c| c.settings.id.as_str() == channel)
        {
            c.outputs.push(running);
        }
        Ok(())
    }

    /// The bus an RTMP destination reads: the channel's (or its tap's) as it is, or one fed
    /// by the channel's shared transcode of its profile.
    #[cfg(feature = "engine")]
    fn destination_bus(
        &self,
        channel: &str,
        rtmp: &RtmpOutputSettings,
        bus: Arc<Bus>,
        stats: &OutputStatsHandle,
        cancel: &CancellationToken,
    ) -> Result<Arc<Bus>, String> {
        use crate::profiles::Transcode;
        use crate::transcode::{Mode, destination_bus};
        let (name, mode) = match &rtmp.transcode {
            Transcode::Off => return Ok(bus),
            Transcode::Auto => {
                let name = crate::profiles::for_preset(rtmp.preset);
                let rules = rtmp.preset.rules();
                match (name, rules) {
                    (Some(name), Some(rules)) => (name.to_string(), Mode::Auto(rules)),
                    _ => {
                        return Err(format!(
                            "channel {channel:?} output {:?}: transcode = \"auto\" needs a platform preset",
                            rtmp.id.as_str()
                        ));
                    }
                }
            }
            Transcode::Profile(name) => (name.clone(), Mode::Always),
        };
        let profile = crate::profiles::resolve(&guard(&self.profiles), &name).ok_or_else(|| {
            format!(
                "channel {channel:?} output {:?}: no profile {name:?}",
                rtmp.id.as_str()
            )
        })?;
        let registry = guard(&self.channels)
            .iter()
            .find(|c| c.settings.id.as_str() == channel)
            .map(|c| c.transcodes.clone())
            .ok_or_else(|| format!("channel {channel:?} is not running"))?;
        Ok(destination_bus(
            &registry,
            &name,
            &profile,
            mode,
            stats.clone(),
            cancel.clone(),
        ))
    }

    #[cfg(not(feature = "engine"))]
    fn destination_bus(
        &self,
        channel: &str,
        rtmp: &RtmpOutputSettings,
        bus: Arc<Bus>,
        _stats: &OutputStatsHandle,
        _cancel: &CancellationToken,
    ) -> Result<Arc<Bus>, String> {
        if rtmp.transcode.is_off() {
            Ok(bus)
        } else {
            Err(format!(
                "channel {channel:?} output {:?}: this build has no media engine to transcode with (built without the `gstreamer` feature)",
                rtmp.id.as_str()
            ))
        }
    }

    /// Whether a destination starts: what an operator last did wins over autostart, and
    /// nothing starts on its own while the saved choices are unknown.
    fn should_start(&self, channel: &str, output: &str, autostart: bool) -> bool {
        let choice = guard(&self.run_choices)
            .get(&(channel.to_string(), output.to_string()))
            .copied();
        match choice {
            Some(choice) => choice,
            None => autostart && !self.hold_destinations.load(Ordering::Acquire),
        }
    }

    /// Tells destinations to start or stop (`None`: every destination of the channel) and
    /// remembers the choice. Returns the ids told.
    /// `include_feeds`: whether "all" (`output` = `None`) takes in the MediaLive feeds.
    pub fn control_outputs(
        &self,
        channel: &str,
        output: Option<&str>,
        start: bool,
        include_feeds: bool,
    ) -> Result<Vec<String>, ControlError> {
        let channels = guard(&self.channels);
        let c = channels
            .iter()
            .find(|c| c.settings.id.as_str() == channel)
            .ok_or(ControlError::NoChannel)?;
        let targets: Vec<&RunningOutput> = match output {
            Some(id) => {
                let o = c
                    .outputs
                    .iter()
                    .find(|o| o.settings.id().as_str() == id)
                    .ok_or(ControlError::NoOutput)?;
                if o.destination.is_none() {
                    return Err(ControlError::AlwaysOn);
                }
                vec![o]
            }
            None => c
                .outputs
                .iter()
                .filter(|o| o.destination.is_some())
                .filter(|o| include_feeds || !is_medialive_feed(o.settings.id().as_str()))
                .collect(),
        };
        let command = if start {
            DestinationControl::Start
        } else {
            DestinationControl::Stop
        };
        for o in &targets {
            if o.destination.as_ref().is_some_and(|d| !d.send(command)) {
                return Err(ControlError::Busy);
            }
        }
        let ids: Vec<String> = targets
            .iter()
            .map(|o| o.settings.id().to_string())
            .collect();
        let mut choices = guard(&self.run_choices);
        for id in &ids {
            choices.insert((channel.to_string(), id.clone()), start);
        }
        Ok(ids)
    }

    /// Forgets the start/stop choice of a removed destination.
    pub fn forget_run_choice(&self, channel: &str, output: &str) {
        guard(&self.run_choices).remove(&(channel.to_string(), output.to_string()));
    }

    /// Forces `input` on air, or hands the channel back to automatic (`None`).
    pub fn switch(&self, channel: &str, input: Option<&str>) -> Result<(), SwitchError> {
        let channels = guard(&self.channels);
        let c = channels
            .iter()
            .find(|c| c.settings.id.as_str() == channel)
            .ok_or(SwitchError::NoChannel)?;
        let command = match input {
            None => lunora_switch::Command::Auto,
            Some(id) => lunora_switch::Command::Force(
                c.inputs
                    .iter()
                    .find(|i| i.settings.id().as_str() == id)
                    .ok_or(SwitchError::NoInput)?
                    .slot,
            ),
        };
        c.commands
            .try_send(ChannelCommand::Switch(command))
            .map_err(|_| SwitchError::Busy)
    }

    pub fn hls_playlist(&self, channel: &str) -> Option<String> {
        let hls = guard(&self.channels)
            .iter()
            .find(|c| c.settings.id.as_str() == channel)?
            .hls
            .clone();
        Some(hls.playlist())
    }

    pub fn hls_segment(&self, channel: &str, sequence: u64) -> Option<bytes::Bytes> {
        let hls = guard(&self.channels)
            .iter()
            .find(|c| c.settings.id.as_str() == channel)?
            .hls
            .clone();
        hls.segment(sequence)
    }

    /// Every channel's status, in one snapshot.
    pub fn channels(&self) -> Vec<ChannelStatus> {
        let now = Instant::now();
        let rtmp_address = self.rtmp_address();
        guard(&self.channels)
            .iter()
            .map(|c| {
                let runtime = lock(&c.runtime);
                let merging = c.settings.failover.merge_window().is_some();
                let mut inputs: Vec<&RunningInput> = c.inputs.iter().collect();
                // Main first, as the switcher ranks them.
                inputs.sort_by_key(|i| i.settings.role() != InputRole::Main);
                ChannelStatus {
                    id: c.settings.id.to_string(),
                    mode: c.settings.mode.name(),
                    config: serde_json::to_value(&c.settings).unwrap_or_default(),
                    active_input: runtime.active_input.clone(),
                    forced_input: runtime.forced_input.clone(),
                    inputs: inputs
                        .into_iter()
                        .map(|i| {
                            let mut status = input_status(
                                c.settings.id.as_str(),
                                i,
                                &runtime,
                                rtmp_address,
                                now,
                            );
                            if merging && i.settings.role() == InputRole::Backup {
                                status.health = merge_path_health(&status.stats);
                            }
                            status
                        })
                        .collect(),
                    outputs: c.outputs.iter().map(output_status).collect(),
                    switches: runtime.switches.clone(),
                    switch_counts: runtime.switch_counts(),
                    incompatible_switches_total: runtime.incompatible_total,
                    timeline_dropped_frames_total: runtime.timeline_dropped_frames,
                    hls: HlsView::new(c.settings.id.as_str(), c.hls.stats()),
                    #[cfg(feature = "engine")]
                    transcodes: c.transcodes.snapshot(),
                    #[cfg(not(feature = "engine"))]
                    transcodes: Vec::new(),
                    content_alignment: runtime.content_alignment.clone(),
                    slate: SlateView {
                        enabled: runtime.slate_enabled,
                        on_air: runtime.slate_on_air_since.is_some(),
                        on_air_since: runtime.slate_on_air_since.map(lunora_media::rfc3339),
                    },
                }
            })
            .collect()
    }

    /// Waits (bounded) for every task to end after the cancel token fired.
    pub async fn shutdown(&self) -> bool {
        self.cancel.cancel();
        self.tasks.close();
        tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_ok()
    }
}

/// Ids to stop (replaced by a changed version?) and settings to start (replacing one?).
type Differences<T> = (Vec<(String, bool)>, Vec<(T, bool)>);

/// What differs between the running components and the wanted ones, by id: those to stop
/// (and whether a changed version replaces them) and those to start (and whether they
/// replace a running one). Unchanged components appear in neither.
fn differences<T: PartialEq + Clone>(
    running: &[&T],
    wanted: &[T],
    id: impl Fn(&T) -> &str,
) -> Differences<T> {
    let mut stop = Vec::new();
    let mut start = Vec::new();
    for old in running {
        match wanted.iter().find(|w| id(w) == id(old)) {
            Some(same) if same == *old => {}
            Some(changed) => {
                stop.push((id(old).to_string(), true));
                start.push((changed.clone(), true));
            }
            None => stop.push((id(old).to_string(), false)),
        }
    }
    for new in wanted {
        if !running.iter().any(|old| id(old) == id(new)) {
            start.push((new.clone(), false));
        }
    }
    (stop, start)
}

/// Binds, retrying for a moment while the port is still held: a component that was just
/// stopped on the same port (a changed setting) lets go of its socket a few milliseconds after
/// its task ends.
async fn retry_while_in_use<T, F>(mut bind: impl FnMut() -> F) -> std::io::Result<T>
where
    F: std::future::Future<Output = std::io::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    loop {
        match bind().await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            result => return result,
        }
    }
}

fn input_status(
    channel: &str,
    input: &RunningInput,
    runtime: &crate::channel::ChannelRuntime,
    rtmp_address: Option<SocketAddr>,
    now: Instant,
) -> InputStatus {
    let ingest = match &input.settings {
        InputSettings::Srt(s) => IngestView {
            latency_ms: Some(s.latency_ms),
            passphrase_set: s.passphrase.is_some(),
            stream_id: s.stream_id.clone(),
            ..IngestView::default()
        },
        InputSettings::Rtmp(s) => IngestView {
            rtmp_app: Some("live"),
            stream_key_set: s.stream_key.is_some(),
            ..IngestView::default()
        },
        InputSettings::Rtp(_) | InputSettings::File(_) | InputSettings::TestPattern(_) => {
            IngestView::default()
        }
        InputSettings::Whip(s) => IngestView {
            whip_path: Some(format!("/whip/{channel}/{}", s.id)),
            token_set: s.token.is_some(),
            ..IngestView::default()
        },
    };
    InputStatus {
        id: input.settings.id().to_string(),
        role: input.settings.role().name(),
        kind: input.settings.kind(),
        listen: match input.settings {
            InputSettings::Rtmp(_) => rtmp_address.or(input.listen),
            _ => input.listen,
        },
        ingest,
        health: health_of(input.slot, runtime, now),
        config: input.settings.view(),
        stats: input.stats.snapshot(now),
    }
}

/// A merged channel's second path carries no program of its own (its packets go into the main
/// input's merged feed), so the switcher's view of it is always "lost": its health is whether
/// its packets come.
fn merge_path_health(stats: &lunora_ingest::InputStats) -> HealthView {
    let receiving = stats.state == lunora_ingest::ConnectionState::Connected;
    HealthView {
        state: if receiving { "healthy" } else { "lost" },
        reasons: Vec::new(),
        detail: Some(
            if receiving {
                "merge path: its packets feed the main input's merged stream"
            } else {
                "merge path: no packets; the merged stream runs on the main path alone"
            }
            .into(),
        ),
    }
}

/// The input's health as the switcher judges it, plus, when it is lost with a sender still
/// connected, for how long that sender has delivered nothing.
fn health_of(slot: usize, runtime: &crate::channel::ChannelRuntime, now: Instant) -> HealthView {
    let mut health = runtime.health.get(&slot).cloned().unwrap_or_default();
    if health.state == "lost"
        && let Some(since) = runtime.silent_since.get(&slot)
    {
        let silent = now.saturating_duration_since(*since).as_secs();
        health.reasons.push("connected_no_data");
        health.detail = Some(format!("connected, no data for {silent} s"));
    }
    health
}

fn output_status(output: &RunningOutput) -> OutputStatus {
    let (mode, destination) = match &output.settings {
        OutputSettings::Srt(s) => (
            match s.mode {
                SrtModeSetting::Caller => "caller",
                SrtModeSetting::Listener => "listener",
            },
            None,
        ),
        OutputSettings::Rtmp(s) => ("push", Some(DestinationView::from(&s.destination()))),
    };
    OutputStatus {
        id: output.settings.id().to_string(),
        kind: output.settings.kind(),
        mode,
        address: output.address.clone(),
        destination,
        config: output.settings.view(),
        stats: output.stats.snapshot(),
    }
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

/// The TS framing of an `rtp` input; `None` for `format = "sdp"`, which carries no TS.
fn rtp_ts_format(format: RtpFormatSetting) -> Option<RtpFormat> {
    match format {
        RtpFormatSetting::Mpegts => Some(RtpFormat::MpegTs),
        RtpFormatSetting::UdpTs => Some(RtpFormat::UdpTs),
        RtpFormatSetting::Sdp => None,
    }
}
