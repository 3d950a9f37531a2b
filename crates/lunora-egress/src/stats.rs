use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

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
    pub const ALL: [OutputState; 5] = [OutputState::Idle, OutputState::Connecting, OutputState::Live, OutputState::Retrying, OutputState::Failed];

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
}

#[derive(Debug, Clone, Default)]
pub struct OutputStatsHandle(Arc<Mutex<OutputStats>>);

impl OutputStatsHandle {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> OutputStats {
        self.lock().clone()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, OutputStats> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
