//! One channel's task: feeds its inputs' events to the switcher, publishes what comes out on
//! the channel bus, and keeps the view the API and metrics read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use lunora_api::{HealthView, SwitchCount, SwitchView};
use lunora_egress::Bus;
use lunora_ingest::InputEvent;
use lunora_switch::{Command, Health, Output, SwitchRecord, Switcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What the API and metrics show about the channel's switching; written only by its task.
#[derive(Debug, Default)]
pub(crate) struct ChannelRuntime {
    pub(crate) active_input: Option<String>,
    pub(crate) forced_input: Option<String>,
    pub(crate) health: Vec<HealthView>,
    pub(crate) switches: Vec<SwitchView>,
    pub(crate) switch_counts: BTreeMap<(&'static str, &'static str, &'static str), u64>,
    pub(crate) incompatible_total: u64,
    pub(crate) timeline_dropped_frames: u64,
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
    }
}

pub(crate) struct ChannelTask {
    pub(crate) id: String,
    pub(crate) switcher: Switcher,
    pub(crate) bus: Arc<Bus>,
    pub(crate) runtime: SharedRuntime,
}

impl ChannelTask {
    pub(crate) async fn run(
        mut self,
        mut events: mpsc::Receiver<(usize, InputEvent)>,
        mut commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
    ) {
        let origin = Instant::now();
        {
            let mut runtime = lock(&self.runtime);
            runtime.health = (0..self.input_count())
                .map(|i| self.switcher.health(i).map(health_view).unwrap_or_default())
                .collect();
        }
        loop {
            let wake = origin + self.switcher.poll_timeout();
            tokio::select! {
                _ = cancel.cancelled() => break,
                event = events.recv() => {
                    let Some((index, event)) = event else { break };
                    let now = origin.elapsed();
                    match event {
                        InputEvent::Connected { .. } => self.switcher.handle_connected(now, index),
                        InputEvent::Disconnected => self.switcher.handle_disconnected(now, index),
                        InputEvent::Program(program) => self.switcher.handle_program(now, index, program),
                        InputEvent::Frame(frame) => self.switcher.handle_frame(now, index, frame),
                        InputEvent::Stats { packets_received, packets_lost, tr101290_priority1 } => {
                            self.switcher.handle_link(now, index, packets_received, packets_lost);
                            self.switcher.handle_tr101290(now, index, tr101290_priority1);
                        }
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.switcher.handle_command(origin.elapsed(), command);
                    let forced = self.switcher.forced().and_then(|i| self.name(i));
                    info!(channel = %self.id, forced = ?forced, "manual switch command");
                    lock(&self.runtime).forced_input = forced;
                }
                _ = tokio::time::sleep_until(wake) => self.switcher.handle_timeout(origin.elapsed()),
            }
            self.drain();
        }
    }

    fn input_count(&self) -> usize {
        (0..)
            .take_while(|i| self.switcher.spec(*i).is_some())
            .count()
    }

    fn name(&self, input: usize) -> Option<String> {
        self.switcher.spec(input).map(|s| s.id.clone())
    }

    fn role(&self, input: Option<usize>) -> &'static str {
        input
            .and_then(|i| self.switcher.spec(i))
            .map_or("none", |s| s.role.name())
    }

    fn drain(&mut self) {
        while let Some(output) = self.switcher.poll_output() {
            match output {
                Output::Frame(frame) => self.bus.publish_frame(frame),
                Output::Program(program) => self.bus.publish_program(program),
                Output::Switched(record) => self.switched(record),
                Output::HealthChanged { input, health } => {
                    let name = self.name(input).unwrap_or_default();
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
                    if let Some(view) = lock(&self.runtime).health.get_mut(input) {
                        *view = health_view(&health);
                    }
                }
                Output::AllLost { .. } => {
                    warn!(channel = %self.id, "every input is lost: output paused until one returns");
                    lock(&self.runtime).active_input = None;
                }
            }
        }
        lock(&self.runtime).timeline_dropped_frames = self.switcher.dropped_frames();
    }

    fn switched(&mut self, record: SwitchRecord) {
        let from = record.from.and_then(|i| self.name(i));
        let to = self.name(record.to).unwrap_or_default();
        let wait = record.at.saturating_sub(record.decided_at);
        info!(
            channel = %self.id,
            from = from.as_deref().unwrap_or("-"),
            to = %to,
            reason = record.reason.name(),
            keyframe_wait_ms = wait.as_millis() as u64,
            gap_ms = record.gap.as_millis() as u64,
            "switch"
        );
        if !record.incompatible.is_empty() {
            warn!(channel = %self.id, to = %to, differences = %record.incompatible.join("; "), "switched to an input whose stream differs");
        }
        let at = lunora_media::rfc3339(SystemTime::now());
        let from_role = self.role(record.from);
        let to_role = self.role(Some(record.to));
        let mut runtime = lock(&self.runtime);
        runtime.active_input = Some(to.clone());
        *runtime
            .switch_counts
            .entry((from_role, to_role, record.reason.name()))
            .or_default() += 1;
        if !record.incompatible.is_empty() {
            runtime.incompatible_total += 1;
        }
        runtime.switches.push(SwitchView {
            from,
            to,
            reason: record.reason.name(),
            at,
            decision_to_cut_ms: wait.as_millis() as u64,
            gap_ms: record.gap.as_millis() as u64,
            detection_ms: record.detection.map(|d| d.as_millis() as u64),
            content_step_frames: record.content_step_frames,
            seam_error_frames: record.seam_error_frames,
            incompatible: record.incompatible,
        });
        if runtime.switches.len() > 20 {
            runtime.switches.remove(0);
        }
    }
}
