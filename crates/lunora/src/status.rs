//! The binary's view of the running graph, served to the HTTP layer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lunora_api::{ChannelStatus, InputStatus, OutputStatus, StatusSource};
use lunora_egress::OutputStatsHandle;
use lunora_ingest::StatsHandle;

use crate::channel::ChannelRuntime;

pub(crate) struct InputHandle {
    pub(crate) id: String,
    pub(crate) role: &'static str,
    pub(crate) listen: SocketAddr,
    pub(crate) stats: StatsHandle,
}

pub(crate) struct OutputHandle {
    pub(crate) id: String,
    pub(crate) mode: &'static str,
    pub(crate) address: String,
    pub(crate) stats: OutputStatsHandle,
}

pub(crate) struct ChannelHandles {
    pub(crate) id: String,
    pub(crate) mode: &'static str,
    pub(crate) inputs: Vec<InputHandle>,
    pub(crate) outputs: Vec<OutputHandle>,
    pub(crate) runtime: Arc<Mutex<ChannelRuntime>>,
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
            .map(|c| ChannelStatus {
                id: c.id.clone(),
                mode: c.mode,
                active_input: c.runtime.lock().unwrap_or_else(|p| p.into_inner()).active_input.clone(),
                inputs: c
                    .inputs
                    .iter()
                    .map(|i| InputStatus { id: i.id.clone(), role: i.role, kind: "srt", listen: i.listen, stats: i.stats.snapshot(now) })
                    .collect(),
                outputs: c
                    .outputs
                    .iter()
                    .map(|o| OutputStatus { id: o.id.clone(), kind: "srt", mode: o.mode, address: o.address.clone(), stats: o.stats.snapshot() })
                    .collect(),
            })
            .collect()
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
