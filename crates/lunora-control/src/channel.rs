//! One channel's task: feeds its inputs' events to the switcher, publishes what comes out on
//! the channel bus, raises [`ChannelEvent`]s, and keeps the view the API and metrics read.
//! Inputs join and leave the running task (the switcher numbers them by slot; a slot is never
//! reused, so a late event from a removed input's task reaches nothing).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use lunora_egress::Bus;
use lunora_ingest::{InputEvent, InputReceiver};
use lunora_media::Program;
use lunora_switch::{Health, InputSpec, Output, Policy, SwitchRecord, Switcher};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::content::ContentHealth;
use crate::events::ChannelEvent;
use crate::settings::SlateSettings;
use crate::slate::Slate;
use crate::status::{AlignmentView, HealthView, SwitchCount, SwitchView};

/// What the API and metrics show about the channel's switching; written only by its task.
#[derive(Debug, Default)]
pub(crate) struct ChannelRuntime {
    pub(crate) active_input: Option<String>,
    pub(crate) forced_input: Option<String>,
    /// By switcher slot.
    pub(crate) health: BTreeMap<usize, HealthView>,
    pub(crate) switches: Vec<SwitchView>,
    pub(crate) switch_counts: BTreeMap<(&'static str, &'static str, &'static str), u64>,
    pub(crate) incompatible_total: u64,
    pub(crate) timeline_dropped_frames: u64,
    /// By switcher slot: since when a connected sender has delivered nothing (set on connect
    /// and when the input is lost while still connected; cleared by media or a disconnect).
    pub(crate) silent_since: BTreeMap<usize, std::time::Instant>,
    pub(crate) slate_enabled: bool,
    pub(crate) slate_on_air_since: Option<SystemTime>,
    pub(crate) content_alignment: Vec<AlignmentView>,
}

impl ChannelRuntime {
    pub(crate) fn switch_counts(&self) -> Vec<SwitchCount> {
        self.switch_counts
            .iter()
            .map(|((from_role, to_role, reason), count)| SwitchCount {
                from_role,
                to_role,
                reason,
                count: *count,
            })
            .collect()
    }
}

pub(crate) type SharedRuntime = Arc<Mutex<ChannelRuntime>>;

pub(crate) fn lock(runtime: &SharedRuntime) -> MutexGuard<'_, ChannelRuntime> {
    runtime.lock().unwrap_or_else(|p| p.into_inner())
}

fn health_view(health: &Health) -> HealthView {
    HealthView {
        state: health.name(),
        reasons: match health {
            Health::Degraded(reasons) => reasons.iter().map(|r| r.name()).collect(),
            _ => Vec::new(),
        },
        detail: None,
    }
}

/// What the graph tells a running channel.
#[derive(Debug)]
pub(crate) enum ChannelCommand {
    Switch(lunora_switch::Command),
    /// Answers with the slot the input's events must carry.
    AddInput {
        spec: InputSpec,
        slot: oneshot::Sender<usize>,
    },
    RemoveInput(usize),
    SetPolicy(Policy),
    SetContent(crate::content::ContentWork),
    SetSlate(SlateSettings),
    /// The input in `slot` can be asked for a keyframe (a WebRTC publisher: RTCP PLI).
    KeyframeRequests {
        slot: usize,
        requester: KeyframeRequests,
    },
    /// Also publish the input in `slot`, as received, on `bus` (`None`: stop).
    Tap {
        slot: usize,
        bus: Option<Arc<Bus>>,
    },
}

/// Asks one input's sender for a keyframe.
#[derive(Clone)]
pub(crate) struct KeyframeRequests(pub(crate) Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for KeyframeRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyframeRequests")
    }
}

pub(crate) struct ChannelTask {
    pub(crate) id: String,
    pub(crate) switcher: Switcher,
    pub(crate) bus: Arc<Bus>,
    pub(crate) runtime: SharedRuntime,
    pub(crate) events: broadcast::Sender<ChannelEvent>,
    /// Slots with a sender connected.
    pub(crate) connected: std::collections::BTreeSet<usize>,
    /// Slot → bus of outputs that send that input unswitched.
    pub(crate) taps: HashMap<usize, Arc<Bus>>,
    /// Each input's last program, so a tap opened mid-stream starts with one.
    pub(crate) programs: HashMap<usize, Program>,
    pub(crate) content: ContentHealth,
    pub(crate) slate: Slate,
    /// Slots whose sender can be asked for a keyframe.
    pub(crate) keyframe_requests: HashMap<usize, KeyframeRequests>,
    /// The pending cut's target last seen, so each decision asks once.
    pub(crate) asked: Option<usize>,
}

impl ChannelTask {
    pub(crate) async fn run(
        mut self,
        mut inputs: InputReceiver,
        mut commands: mpsc::Receiver<ChannelCommand>,
        cancel: CancellationToken,
    ) {
        let origin = Instant::now();
        self.publish_slate();
        loop {
            let next = self.switcher.poll_timeout();
            let wake = origin + self.slate.deadline().map_or(next, |slate| slate.min(next));
            tokio::select! {
                _ = cancel.cancelled() => break,
                event = inputs.recv() => {
                    let Some((slot, event)) = event else { break };
                    let now = origin.elapsed();
                    self.content.event(slot, &event, &self.switcher);
                    match event {
                        InputEvent::Connected { peer } => {
                            self.switcher.handle_connected(now, slot);
                            // A new sender's clock: what the pictures said about the old one
                            // is gone from the switcher, so from the status too.
                            self.publish_alignment(&[]);
                            self.connected.insert(slot);
                            lock(&self.runtime)
                                .silent_since
                                .insert(slot, std::time::Instant::now());
                            self.connection(slot, Some(peer));
                        }
                        InputEvent::Disconnected => {
                            self.switcher.handle_disconnected(now, slot);
                            self.connected.remove(&slot);
                            lock(&self.runtime).silent_since.remove(&slot);
                            self.connection(slot, None);
                        }
                        InputEvent::Program(program) => {
                            if let Some(tap) = self.taps.get(&slot) {
                                tap.publish_program(program.clone());
                            }
                            self.programs.insert(slot, program.clone());
                            self.switcher.handle_program(now, slot, program)
                        }
                        InputEvent::Frame(frame) => {
                            if let Some(tap) = self.taps.get(&slot) {
                                tap.publish_frame(frame.clone());
                            }
                            self.switcher.handle_frame(now, slot, frame)
                        }
                        InputEvent::Stats { packets_received, packets_lost, tr101290_priority1 } => {
                            self.switcher.handle_link(now, slot, packets_received, packets_lost);
                            self.switcher.handle_tr101290(now, slot, tr101290_priority1);
                        }
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.command(origin.elapsed(), command);
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = origin.elapsed();
                    self.switcher.handle_timeout(now);
                    self.slate.handle_timeout(now, &self.switcher);
                }
            }
            let aligned = self
                .content
                .poll(origin.elapsed(), &mut self.switcher, &self.id);
            if !aligned.is_empty() {
                self.publish_alignment(&aligned);
            }
            self.drain();
            self.ask_for_keyframe();
        }
    }

    fn command(&mut self, now: std::time::Duration, command: ChannelCommand) {
        match command {
            ChannelCommand::Switch(command) => {
                self.switcher.handle_command(now, command);
                let forced = self.switcher.forced().and_then(|i| self.name(i));
                info!(channel = %self.id, forced = ?forced, "manual switch command");
                lock(&self.runtime).forced_input = forced;
            }
            ChannelCommand::AddInput { spec, slot } => {
                let index = self.switcher.add_input(now, spec);
                if let Some(health) = self.switcher.health(index) {
                    lock(&self.runtime)
                        .health
                        .insert(index, health_view(health));
                }
                // The graph waits for this; if it went away the input is never started.
                let _ = slot.send(index);
            }
            ChannelCommand::RemoveInput(slot) => {
                self.switcher.remove_input(now, slot);
                self.publish_alignment(&[]);
                self.content.remove_input(slot);
                self.connected.remove(&slot);
                self.taps.remove(&slot);
                self.programs.remove(&slot);
                self.keyframe_requests.remove(&slot);
                let mut runtime = lock(&self.runtime);
                runtime.health.remove(&slot);
                runtime.silent_since.remove(&slot);
                runtime.forced_input = self.switcher.forced().and_then(|i| self.name(i));
            }
            ChannelCommand::KeyframeRequests { slot, requester } => {
                self.keyframe_requests.insert(slot, requester);
            }
            ChannelCommand::Tap { slot, bus } => match bus {
                Some(bus) => {
                    if let Some(program) = self.programs.get(&slot) {
                        bus.publish_program(program.clone());
                    }
                    self.taps.insert(slot, bus);
                }
                None => {
                    self.taps.remove(&slot);
                }
            },
            ChannelCommand::SetPolicy(policy) => {
                info!(channel = %self.id, "failover policy changed");
                self.switcher.set_policy(now, policy);
            }
            ChannelCommand::SetContent(work) => self.content.set_work(work),
            ChannelCommand::SetSlate(settings) => {
                info!(channel = %self.id, enabled = settings.enabled, "slate settings changed");
                self.slate.set_settings(settings, &mut self.switcher, now);
                self.publish_slate();
            }
        }
    }

    /// A cut now waits on an input that can send a keyframe at once: ask, instead of waiting
    /// for its encoder's next one (a switch then costs a round trip, not a GOP).
    fn ask_for_keyframe(&mut self) {
        let pending = self.switcher.pending_target();
        if pending == self.asked {
            return;
        }
        self.asked = pending;
        if let Some(target) = pending
            && let Some(requests) = self.keyframe_requests.get(&target)
        {
            info!(channel = %self.id, input = self.name(target).as_deref().unwrap_or("-"), "asking the input for a keyframe (RTCP PLI) for the cut");
            (requests.0)();
        }
    }

    fn name(&self, input: usize) -> Option<String> {
        self.switcher.spec(input).map(|s| s.id.clone())
    }

    fn role(&self, input: Option<usize>) -> &'static str {
        input
            .and_then(|i| self.switcher.spec(i))
            .map_or("none", |s| s.role.name())
    }

    fn emit(&self, event: ChannelEvent) {
        // No receiver (no SSE client) is the normal case.
        let _ = self.events.send(event);
    }

    fn connection(&self, slot: usize, peer: Option<String>) {
        if let Some(input) = self.name(slot) {
            self.emit(ChannelEvent::Connection {
                channel: self.id.clone(),
                input,
                state: if peer.is_some() {
                    "connected"
                } else {
                    "waiting"
                },
                peer,
            });
        }
    }

    fn drain(&mut self) {
        while let Some(output) = self.switcher.poll_output() {
            match output {
                Output::Frame(frame) => {
                    self.slate.observe(&frame);
                    self.bus.publish_frame(frame)
                }
                Output::Program(program) => self.bus.publish_program(program),
                Output::Switched(record) => self.switched(record),
                Output::HealthChanged { input, health } => {
                    let Some(name) = self.name(input) else {
                        continue;
                    };
                    match &health {
                        Health::Healthy => {
                            info!(channel = %self.id, input = %name, "input healthy")
                        }
                        Health::Degraded(reasons) => {
                            let reasons: Vec<&str> = reasons.iter().map(|r| r.name()).collect();
                            warn!(channel = %self.id, input = %name, reasons = %reasons.join(","), "input degraded")
                        }
                        Health::Lost => warn!(channel = %self.id, input = %name, "input lost"),
                    }
                    let view = health_view(&health);
                    {
                        let mut runtime = lock(&self.runtime);
                        runtime.health.insert(input, view.clone());
                        match health {
                            // Its last frame came `input_loss` ago.
                            Health::Lost if self.connected.contains(&input) => {
                                let loss = self.switcher.policy().health.input_loss;
                                let now = std::time::Instant::now();
                                let since = now.checked_sub(loss).unwrap_or(now);
                                runtime.silent_since.entry(input).or_insert(since);
                            }
                            _ => {
                                runtime.silent_since.remove(&input);
                            }
                        }
                    }
                    self.emit(ChannelEvent::Health {
                        channel: self.id.clone(),
                        input: name,
                        health: view,
                    });
                }
                Output::AllLost { at } => {
                    self.slate.all_lost(at);
                    if self.slate.enabled() {
                        warn!(channel = %self.id, "every input is lost: the slate follows unless one returns");
                    } else {
                        warn!(channel = %self.id, "every input is lost: output paused until one returns");
                    }
                    lock(&self.runtime).active_input = None;
                    self.emit(ChannelEvent::AllLost {
                        channel: self.id.clone(),
                    });
                }
            }
        }
        lock(&self.runtime).timeline_dropped_frames = self.switcher.dropped_frames();
    }

    /// Says what the pictures established (the pairs in `changed` are new or moved) and shows
    /// every pair the switcher knows in the status.
    fn publish_alignment(&self, changed: &[(usize, usize)]) {
        let name = |slot| {
            self.switcher
                .spec(slot)
                .map_or_else(String::new, |spec| spec.id.clone())
        };
        let mut views: Vec<AlignmentView> = self
            .switcher
            .alignments()
            .map(|((a, b), alignment)| {
                let view = AlignmentView {
                    from: name(a),
                    to: name(b),
                    shift_seconds: alignment.shift as f64 / 90_000.0,
                    match_cost: f64::from(alignment.cost),
                };
                if changed.contains(&(a, b)) {
                    info!(
                        channel = %self.id,
                        from = %view.from,
                        to = %view.to,
                        "content alignment: a picture stamped t on {} is stamped t {:+.4} s on {} \
                         (matched with a mean block difference of {:.1} levels)",
                        view.from,
                        view.shift_seconds,
                        view.to,
                        view.match_cost,
                    );
                }
                view
            })
            .collect();
        views.sort_by(|x, y| (&x.from, &x.to).cmp(&(&y.from, &y.to)));
        lock(&self.runtime).content_alignment = views;
    }

    fn publish_slate(&self) {
        let mut runtime = lock(&self.runtime);
        runtime.slate_enabled = self.slate.enabled();
        runtime.slate_on_air_since = self.slate.on_air_since;
    }

    fn switched(&mut self, record: SwitchRecord) {
        self.slate.switched(record.to);
        self.publish_slate();
        let from = record.from.and_then(|i| self.name(i));
        let to = self.name(record.to).unwrap_or_default();
        let wait = record.at.saturating_sub(record.decided_at);
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        info!(
            channel = %self.id,
            from = from.as_deref().unwrap_or("-"),
            to = %to,
            reason = record.reason.name(),
            keyframe_wait_ms = millis(wait),
            gap_ms = millis(record.gap),
            "switch"
        );
        if !record.incompatible.is_empty() {
            warn!(channel = %self.id, to = %to, differences = %record.incompatible.join("; "), "switched to an input whose stream differs");
        }
        let at = lunora_media::rfc3339(SystemTime::now());
        let from_role = self.role(record.from);
        let to_role = self.role(Some(record.to));
        let view = SwitchView {
            from,
            to: to.clone(),
            reason: record.reason.name(),
            at,
            decision_to_cut_ms: millis(wait),
            gap_ms: millis(record.gap),
            detection_ms: record.detection.map(millis),
            content_step_frames: record.content_step_frames,
            seam_error_frames: record.seam_error_frames,
            incompatible: record.incompatible,
        };
        {
            let mut runtime = lock(&self.runtime);
            runtime.active_input = Some(to);
            *runtime
                .switch_counts
                .entry((from_role, to_role, record.reason.name()))
                .or_default() += 1;
            if !view.incompatible.is_empty() {
                runtime.incompatible_total += 1;
            }
            runtime.switches.push(view.clone());
            if runtime.switches.len() > 20 {
                runtime.switches.remove(0);
            }
        }
        self.emit(ChannelEvent::Switch {
            channel: self.id.clone(),
            switch: view,
        });
    }
}
