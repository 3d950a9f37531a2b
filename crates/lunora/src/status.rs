//! The binary's view of the running graph, served to the HTTP layer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Instant;

use lunora_api::{ChannelStatus, ControlError, InputStatus, OutputStatus, StatusSource, SwitchError};
use lunora_egress::{Control, RtmpDestination};
use lunora_switch::Command;
use tokio::sync::mpsc;
use lunora_egress::OutputStatsHandle;
use lunora_ingest::StatsHandle;

use crate::channel::{ChannelRuntime, lock};

pub(crate) struct InputHandle {
    pub(crate) id: String,
    pub(crate) role: &'static str,
    /// `srt` or `rtmp`.
    pub(crate) kind: &'static str,
    pub(crate) listen: SocketAddr,
    pub(crate) stats: StatsHandle,
}

pub(crate) struct OutputHandle {
    pub(crate) id: String,
    /// `srt` or `rtmp`.
    pub(crate) kind: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) address: String,
    pub(crate) stats: OutputStatsHandle,
    /// Start/stop control, for outputs that have it (RTMP destinations).
    pub(crate) control: Option<RtmpDestination>,
}

pub(crate) struct ChannelHandles {
    pub(crate) id: String,
    pub(crate) mode: &'static str,
    /// In the switcher's priority order (the index the switcher uses).
    pub(crate) inputs: Vec<InputHandle>,
    pub(crate) outputs: Vec<OutputHandle>,
    pub(crate) runtime: Arc<Mutex<ChannelRuntime>>,
    pub(crate) commands: mpsc::Sender<Command>,
}

pub(crate) struct Status {
    channels: Vec<ChannelHandles>,
    ready: AtomicBool,
}

impl Status {
    pub(crate) fn new(channels: Vec<ChannelHandles>) -> Self {
        Status { channels, ready: AtomicBool::new(false) }
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
                            health: runtime.health.get(index).cloned().unwrap_or_default(),
                            stats: i.stats.snapshot(now),
                        })
                        .collect(),
                    outputs: c
                        .outputs
                        .iter()
                        .map(|o| OutputStatus { id: o.id.clone(), kind: o.kind, mode: o.mode, address: o.address.clone(), stats: o.stats.snapshot() })
                        .collect(),
                    switches: runtime.switches.clone(),
                    switch_counts: runtime.switch_counts(),
                    incompatible_switches_total: runtime.incompatible_total,
                    timeline_dropped_frames_total: runtime.timeline_dropped_frames,
                }
            })
            .collect()
    }

    fn switch(&self, channel: &str, input: &str) -> Result<(), SwitchError> {
        let c = self.channels.iter().find(|c| c.id == channel).ok_or(SwitchError::NoChannel)?;
        let command = if input == "auto" {
            Command::Auto
        } else {
            Command::Force(c.inputs.iter().position(|i| i.id == input).ok_or(SwitchError::NoInput)?)
        };
        c.commands.try_send(command).map_err(|_| SwitchError::Busy)
    }

    fn control_outputs(&self, channel: &str, output: Option<&str>, start: bool) -> Result<usize, ControlError> {
        let c = self.channels.iter().find(|c| c.id == channel).ok_or(ControlError::NoChannel)?;
        let targets: Vec<&OutputHandle> = match output {
            Some(id) => {
                let o = c.outputs.iter().find(|o| o.id == id).ok_or(ControlError::NoOutput)?;
                if o.control.is_none() {
                    return Err(ControlError::AlwaysOn);
                }
                vec![o]
            }
            None => c.outputs.iter().filter(|o| o.control.is_some()).collect(),
        };
        let command = if start { Control::Start } else { Control::Stop };
        for o in &targets {
            if let Some(control) = &o.control
                && !control.send(command)
            {
                return Err(ControlError::Busy);
            }
        }
        Ok(targets.len())
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
