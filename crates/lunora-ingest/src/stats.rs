//! The statistics an input publishes: one snapshot the API and `/metrics` both read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use lunora_media::VideoFormat;
use lunora_ts::Tr101290Counters;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Listening; no sender connected.
    #[default]
    Waiting,
    Connected,
}

/// Callers turned away, by reason.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct RejectCounts {
    pub stream_id: u64,
    pub passphrase: u64,
    pub busy: u64,
    pub handshake: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct FrameCounts {
    pub video: u64,
    pub audio: u64,
    pub data: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VideoInfo {
    pub codec: &'static str,
    pub width: u32,
    pub height: u32,
    pub frame_rate: Option<f64>,
    pub interlaced: bool,
}

impl VideoInfo {
    pub(crate) fn new(codec: &'static str, format: VideoFormat) -> Self {
        VideoInfo {
            codec,
            width: format.width,
            height: format.height,
            frame_rate: format.frame_rate,
            interlaced: format.interlaced,
        }
    }
}

/// Everything known about one input. Counters are totals since the daemon started, across
/// connections, so they can be exported as Prometheus counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InputStats {
    pub state: ConnectionState,
    pub peer: Option<SocketAddr>,
    pub connections_total: u64,
    pub rejected_total: RejectCounts,
    pub bytes_total: u64,
    pub ts_packets_total: u64,
    pub bitrate_bps: f64,
    pub frames_total: FrameCounts,
    /// Frames the channel could not take in time (its queue was full).
    pub frames_dropped_total: u64,
    /// PES packets thrown away: a packet inside was lost, unparsable, or over the size cap.
    pub pes_dropped_total: u64,
    /// Of those, PES packets that grew past the size cap (a sender that never ends one).
    pub pes_oversized_total: u64,
    pub truncated_packets_total: u64,
    pub tr101290: BTreeMap<&'static str, u64>,
    pub srt: lunora_srt::LinkStats,
    /// SRT datagrams dropped before reaching the protocol, by reason (SRT inputs only).
    pub srt_datagrams_rejected: BTreeMap<&'static str, u64>,
    /// Batches of received SRT payloads dropped because the input's analysis fell behind the
    /// socket (the box is overloaded; what was dropped is lost).
    pub srt_batches_dropped_total: u64,
    pub video: Option<VideoInfo>,
    #[serde(skip)]
    pub last_packet_at: Option<Instant>,
    /// Seconds since the last packet, filled in when a snapshot is taken.
    pub seconds_since_last_packet: Option<f64>,
}

impl InputStats {
    pub(crate) fn set_datagrams_rejected(&mut self, counts: &lunora_srt::wire::DropCounts) {
        for (reason, n) in counts.iter() {
            self.srt_datagrams_rejected.insert(reason.name(), n);
        }
    }

    pub(crate) fn set_tr101290(&mut self, counters: &Tr101290Counters) {
        for (indicator, count) in counters.iter() {
            self.tr101290.insert(indicator.name(), count);
        }
    }
}

/// Shared handle to an input's statistics.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle(Arc<Mutex<InputStats>>);

impl StatsHandle {
    pub fn new() -> Self {
        let mut stats = InputStats::default();
        stats.set_tr101290(&Tr101290Counters::default());
        StatsHandle(Arc::new(Mutex::new(stats)))
    }

    /// A copy for the API and metrics, with ages computed against `now`.
    pub fn snapshot(&self, now: Instant) -> InputStats {
        let mut stats = self.lock().clone();
        stats.seconds_since_last_packet = stats
            .last_packet_at
            .map(|at| now.saturating_duration_since(at).as_secs_f64());
        stats
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, InputStats> {
        // A poisoned lock only means a panic elsewhere mid-update; the counters are still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
