use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

/// The life cycle every output reports (the names the API and metrics use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputState {
    /// Not running (stopped, or a listener with nobody connected).
    #[default]
    Idle,
    Connecting,
    Live,
    /// Lost its peer; trying again after a backoff.
    Retrying,
    /// Gave up until started again.
    Failed,
}

impl OutputState {
    pub const ALL: [OutputState; 5] = [
        OutputState::Idle,
        OutputState::Connecting,
        OutputState::Live,
        OutputState::Retrying,
        OutputState::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OutputState::Idle => "idle",
            OutputState::Connecting => "connecting",
            OutputState::Live => "live",
            OutputState::Retrying => "retrying",
            OutputState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputStats {
    pub state: OutputState,
    /// Connected peers (a listener output may have several).
    pub peers: Vec<SocketAddr>,
    pub bytes_total: u64,
    pub frames_total: u64,
    pub dropped_frames_total: u64,
    pub reconnects_total: u64,
    pub last_error: Option<String>,
    /// Seconds until the next connection attempt, while retrying.
    pub next_retry_seconds: Option<f64>,
    /// Where the stream breaks the destination platform's rules.
    pub warnings: Vec<String>,
    /// SRT datagrams dropped on the output's port before reaching the protocol, by reason
    /// (SRT outputs only; every reason from the start).
    pub srt_datagrams_rejected: BTreeMap<&'static str, u64>,
}

impl OutputStats {
    pub(crate) fn set_datagrams_rejected(&mut self, counts: &lunora_srt::wire::DropCounts) {
        for (reason, n) in counts.iter() {
            self.srt_datagrams_rejected.insert(reason.name(), n);
        }
    }
}

/// Called with the stats whenever an output's state or last error changes, so events reach
/// the dashboard as they happen rather than when someone next looks.
pub type StateListener = Arc<dyn Fn(&OutputStats) + Send + Sync>;

#[derive(Clone, Default)]
pub struct OutputStatsHandle {
    stats: Arc<Mutex<OutputStats>>,
    listener: Option<StateListener>,
}

impl std::fmt::Debug for OutputStatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputStatsHandle")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl OutputStatsHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle that tells `listener` about every change of state or last error.
    pub fn with_listener(self, listener: StateListener) -> Self {
        OutputStatsHandle {
            listener: Some(listener),
            ..self
        }
    }

    /// A fresh handle that goes on counting from `previous` (an output replaced by new settings).
    pub fn carrying_counters(previous: &OutputStats) -> Self {
        OutputStatsHandle {
            stats: Arc::new(Mutex::new(OutputStats {
                bytes_total: previous.bytes_total,
                frames_total: previous.frames_total,
                dropped_frames_total: previous.dropped_frames_total,
                reconnects_total: previous.reconnects_total,
                ..OutputStats::default()
            })),
            listener: None,
        }
    }

    pub fn snapshot(&self) -> OutputStats {
        self.lock().clone()
    }

    pub(crate) fn lock(&self) -> StatsGuard<'_> {
        let stats = self
            .stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = self
            .listener
            .as_ref()
            .map(|_| (stats.state, stats.last_error.clone()));
        StatsGuard {
            stats,
            before,
            listener: self.listener.as_ref(),
        }
    }
}

/// The locked stats; tells the listener on release when state or last error changed.
pub(crate) struct StatsGuard<'a> {
    stats: MutexGuard<'a, OutputStats>,
    before: Option<(OutputState, Option<String>)>,
    listener: Option<&'a StateListener>,
}

impl std::ops::Deref for StatsGuard<'_> {
    type Target = OutputStats;

    fn deref(&self) -> &OutputStats {
        &self.stats
    }
}

impl std::ops::DerefMut for StatsGuard<'_> {
    fn deref_mut(&mut self) -> &mut OutputStats {
        &mut self.stats
    }
}

impl Drop for StatsGuard<'_> {
    fn drop(&mut self) {
        if let (Some((state, error)), Some(listener)) = (&self.before, self.listener)
            && (*state != self.stats.state || *error != self.stats.last_error)
        {
            listener(&self.stats);
        }
    }
}

/// A delay in `[base/2, base]`, so outputs that failed together do not retry together.
pub(crate) fn with_jitter(base: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}

/// Drop summaries are logged at most this often per connection.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Folds the frames a bus reader skipped into its output's counters, with a log line at most
/// once per `DROP_LOG_INTERVAL`.
#[derive(Debug, Default)]
pub(crate) struct DropReport {
    reported: u64,
    last_log: Option<Instant>,
}

impl DropReport {
    /// `dropped` is the reader's running total; `why` is the log line.
    pub(crate) fn update(
        &mut self,
        output: &str,
        dropped: u64,
        stats: &mut OutputStats,
        why: &str,
    ) {
        if dropped == self.reported {
            return;
        }
        stats.dropped_frames_total += dropped - self.reported;
        self.reported = dropped;
        if self
            .last_log
            .is_none_or(|at| at.elapsed() >= DROP_LOG_INTERVAL)
        {
            tracing::warn!(output = %output, dropped_frames = dropped, "{why}");
            self.last_log = Some(Instant::now());
        }
    }
}
