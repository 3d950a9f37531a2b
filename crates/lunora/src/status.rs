//! The binary's view of the running graph, served to the HTTP layer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use lunora_api::{
    ChannelStatus, ControlError, DestinationError, DestinationView, HlsView, IngestView,
    InputStatus, OutputStatus, StatusSource, SwitchError,
};
use lunora_egress::{
    Bus, Control, DestinationSpec, HlsPreview, OutputState, OutputStatsHandle, RtmpDestination,
    RtmpDestinationSettings, SpecProblem, ValidDestination,
};
use lunora_ingest::StatsHandle;
use lunora_switch::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::channel::{ChannelRuntime, lock};
use crate::state::StateStore;

fn problems(problems: Vec<SpecProblem>) -> DestinationError {
    DestinationError::Invalid(problems.into_iter().map(|p| p.message).collect())
}

pub(crate) struct InputHandle {
    pub(crate) id: String,
    pub(crate) role: &'static str,
    /// `srt` or `rtmp`.
    pub(crate) kind: &'static str,
    pub(crate) listen: SocketAddr,
    pub(crate) ingest: IngestView,
    pub(crate) stats: StatsHandle,
}

pub(crate) struct OutputHandle {
    pub(crate) id: String,
    /// `srt` or `rtmp`.
    pub(crate) kind: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) address: String,
    pub(crate) stats: OutputStatsHandle,
    /// RTMP destinations: start/stop control and their settings.
    pub(crate) destination: Option<DestinationHandle>,
}

pub(crate) struct DestinationHandle {
    control: RtmpDestination,
    spec: DestinationSpec,
    /// Ends this destination's supervisor (removal, or replacement by an update).
    cancel: CancellationToken,
}

pub(crate) struct ChannelHandles {
    pub(crate) id: String,
    pub(crate) mode: &'static str,
    /// In the switcher's priority order (the index the switcher uses).
    pub(crate) inputs: Vec<InputHandle>,
    /// Changed at run time when destinations are added, updated or removed.
    pub(crate) outputs: Mutex<Vec<OutputHandle>>,
    pub(crate) runtime: Arc<Mutex<ChannelRuntime>>,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) bus: Arc<Bus>,
    pub(crate) cancel: CancellationToken,
    pub(crate) hls: HlsPreview,
}

impl ChannelHandles {
    /// Starts the supervisor of an RTMP destination (idle unless `start`).
    pub(crate) fn spawn_destination(
        &self,
        id: String,
        spec: DestinationSpec,
        destination: ValidDestination,
        start: bool,
        stats: OutputStatsHandle,
    ) -> OutputHandle {
        let settings = RtmpDestinationSettings {
            id: format!("{}/{id}", self.id),
            url: destination.url.clone(),
            stream_key: destination.stream_key,
            rules: destination.rules,
            retry_min: destination.retry.0,
            retry_max: destination.retry.1,
        };
        let cancel = self.cancel.child_token();
        let control = RtmpDestination::spawn(
            settings,
            self.bus.clone(),
            stats.clone(),
            start,
            cancel.clone(),
        );
        OutputHandle {
            id,
            kind: "rtmp",
            mode: "push",
            address: destination.url.to_string(),
            stats,
            destination: Some(DestinationHandle {
                control,
                spec,
                cancel,
            }),
        }
    }

    fn outputs(&self) -> MutexGuard<'_, Vec<OutputHandle>> {
        self.outputs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct Status {
    channels: Vec<ChannelHandles>,
    ready: AtomicBool,
    store: StateStore,
}

impl Status {
    pub(crate) fn new(channels: Vec<ChannelHandles>, store: StateStore) -> Self {
        Status {
            channels,
            ready: AtomicBool::new(false),
            store,
        }
    }

    fn channel(&self, id: &str) -> Option<&ChannelHandles> {
        self.channels.iter().find(|c| c.id == id)
    }

    fn save(
        &self,
        channel: &str,
        id: &str,
        spec: Option<DestinationSpec>,
    ) -> Result<(), DestinationError> {
        self.store.record(channel, id, spec).map_err(|e| {
            warn!(channel, output = id, file = %self.store.path().display(), error = %e, "cannot save a destination change");
            DestinationError::Storage(format!("writing {}: {e}", self.store.path().display()))
        })
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

impl StatusSource for Status {
    fn channels(&self) -> Vec<ChannelStatus> {
        let now = Instant::now();
        self.channels
            .iter()
            .map(|c| {
                let runtime = lock(&c.runtime);
                ChannelStatus {
                    id: c.id.clone(),
                    mode: c.mode,
                    active_input: runtime.active_input.clone(),
                    forced_input: runtime.forced_input.clone(),
                    inputs: c
                        .inputs
                        .iter()
                        .enumerate()
                        .map(|(index, i)| InputStatus {
                            id: i.id.clone(),
                            role: i.role,
                            kind: i.kind,
                            listen: i.listen,
                            ingest: i.ingest.clone(),
                            health: runtime.health.get(index).cloned().unwrap_or_default(),
                            stats: i.stats.snapshot(now),
                        })
                        .collect(),
                    outputs: c
                        .outputs()
                        .iter()
                        .map(|o| OutputStatus {
                            id: o.id.clone(),
                            kind: o.kind,
                            mode: o.mode,
                            address: o.address.clone(),
                            destination: o
                                .destination
                                .as_ref()
                                .map(|d| DestinationView::from(&d.spec)),
                            stats: o.stats.snapshot(),
                        })
                        .collect(),
                    switches: runtime.switches.clone(),
                    switch_counts: runtime.switch_counts(),
                    incompatible_switches_total: runtime.incompatible_total,
                    timeline_dropped_frames_total: runtime.timeline_dropped_frames,
                    hls: HlsView::new(&c.id, c.hls.stats()),
                }
            })
            .collect()
    }

    fn switch(&self, channel: &str, input: &str) -> Result<(), SwitchError> {
        let c = self.channel(channel).ok_or(SwitchError::NoChannel)?;
        let command = if input == "auto" {
            Command::Auto
        } else {
            Command::Force(
                c.inputs
                    .iter()
                    .position(|i| i.id == input)
                    .ok_or(SwitchError::NoInput)?,
            )
        };
        c.commands.try_send(command).map_err(|_| SwitchError::Busy)
    }

    fn control_outputs(
        &self,
        channel: &str,
        output: Option<&str>,
        start: bool,
    ) -> Result<usize, ControlError> {
        let c = self.channel(channel).ok_or(ControlError::NoChannel)?;
        let outputs = c.outputs();
        let targets: Vec<(&str, &DestinationHandle)> = match output {
            Some(id) => {
                let o = outputs
                    .iter()
                    .find(|o| o.id == id)
                    .ok_or(ControlError::NoOutput)?;
                vec![(
                    o.id.as_str(),
                    o.destination.as_ref().ok_or(ControlError::AlwaysOn)?,
                )]
            }
            None => outputs
                .iter()
                .filter_map(|o| Some((o.id.as_str(), o.destination.as_ref()?)))
                .collect(),
        };
        let command = if start { Control::Start } else { Control::Stop };
        for (_, d) in &targets {
            if !d.control.send(command) {
                return Err(ControlError::Busy);
            }
        }
        // Remembered so a restart brings back what the operator left running. A disk that
        // cannot take it must not stop the operator's command: it is logged instead.
        let ids: Vec<&str> = targets.iter().map(|(id, _)| *id).collect();
        if let Err(e) = self.store.record_running(channel, &ids, start) {
            warn!(channel, outputs = ?ids, file = %self.store.path().display(), error = %e, "cannot save which destinations run; after a restart autostart decides");
        }
        Ok(targets.len())
    }

    fn add_destination(
        &self,
        channel: &str,
        id: &str,
        spec: DestinationSpec,
    ) -> Result<(), DestinationError> {
        let c = self.channel(channel).ok_or(DestinationError::NoChannel)?;
        if !crate::config::valid_id(id) {
            return Err(DestinationError::BadId);
        }
        let destination = spec.validate().map_err(problems)?;
        let mut outputs = c.outputs();
        if outputs.iter().any(|o| o.id == id) {
            return Err(DestinationError::Exists);
        }
        self.save(channel, id, Some(spec.clone()))?;
        info!(channel, output = id, url = %destination.url, "RTMP destination added");
        let start = spec.autostart;
        outputs.push(c.spawn_destination(
            id.to_string(),
            spec,
            destination,
            start,
            OutputStatsHandle::new(),
        ));
        Ok(())
    }

    fn update_destination(
        &self,
        channel: &str,
        id: &str,
        mut spec: DestinationSpec,
    ) -> Result<(), DestinationError> {
        let c = self.channel(channel).ok_or(DestinationError::NoChannel)?;
        let mut outputs = c.outputs();
        let slot = outputs
            .iter_mut()
            .find(|o| o.id == id)
            .ok_or(DestinationError::NoOutput)?;
        let old = slot
            .destination
            .as_ref()
            .ok_or(DestinationError::NotDestination)?;
        if spec.stream_key.is_none() {
            spec.stream_key = old.spec.stream_key.clone();
        }
        let destination = spec.validate().map_err(problems)?;
        self.save(channel, id, Some(spec.clone()))?;
        let previous = slot.stats.snapshot();
        let was_running = !matches!(previous.state, OutputState::Idle | OutputState::Failed);
        old.cancel.cancel();
        info!(channel, output = id, url = %destination.url, restart = was_running, "RTMP destination updated");
        // Counters carry over so the metrics stay monotonic; the old supervisor keeps its own
        // handle while it winds down.
        let stats = OutputStatsHandle::carrying_counters(&previous);
        let start = spec.autostart || was_running;
        *slot = c.spawn_destination(id.to_string(), spec, destination, start, stats);
        Ok(())
    }

    fn remove_destination(&self, channel: &str, id: &str) -> Result<(), DestinationError> {
        let c = self.channel(channel).ok_or(DestinationError::NoChannel)?;
        let mut outputs = c.outputs();
        let index = outputs
            .iter()
            .position(|o| o.id == id)
            .ok_or(DestinationError::NoOutput)?;
        let destination = outputs[index]
            .destination
            .as_ref()
            .ok_or(DestinationError::NotDestination)?;
        self.save(channel, id, None)?;
        destination.cancel.cancel();
        outputs.remove(index);
        info!(channel, output = id, "RTMP destination removed");
        Ok(())
    }

    fn hls_playlist(&self, channel: &str) -> Option<String> {
        self.channel(channel).map(|c| c.hls.playlist())
    }

    fn hls_segment(&self, channel: &str, sequence: u64) -> Option<bytes::Bytes> {
        self.channel(channel)?.hls.segment(sequence)
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
