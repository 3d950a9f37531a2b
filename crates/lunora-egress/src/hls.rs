//! The channel's HLS preview: a bus reader feeding the sans-IO segmenter, which the HTTP layer
//! reads from memory. It runs only while someone watches: the first playlist request starts
//! it, and a minute without requests frees its segments (at 50 Mbit/s the listed and retired
//! segments hold ~80 MB).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use lunora_hls::{HlsSettings, HlsStats, Segmenter};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{Bus, BusItem};

/// The preview stops this long after the last request.
const IDLE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Demand {
    last_request: Mutex<Option<Instant>>,
    wake: Notify,
}

impl Demand {
    fn touch(&self) {
        *self.last_request.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.wake.notify_one();
    }

    fn wanted(&self) -> bool {
        self.last_request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < IDLE_AFTER)
    }
}

/// Shared view of one channel's preview.
#[derive(Debug, Clone)]
pub struct HlsPreview {
    segmenter: Arc<Mutex<Segmenter>>,
    demand: Arc<Demand>,
}

impl HlsPreview {
    /// Segments `bus` while the preview is watched, until `cancel`.
    pub fn spawn(bus: Arc<Bus>, settings: HlsSettings, cancel: CancellationToken) -> HlsPreview {
        let preview = HlsPreview {
            segmenter: Arc::new(Mutex::new(Segmenter::new(settings))),
            demand: Arc::default(),
        };
        let (segmenter, demand) = (preview.segmenter.clone(), preview.demand.clone());
        tokio::spawn(
            async move {
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = demand.wake.notified() => {}
                    }
                    if !demand.wanted() {
                        continue;
                    }
                    let mut receiver = bus.subscribe();
                    let mut check = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        let item = tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = check.tick() => {
                                if demand.wanted() { continue }
                                lock(&segmenter).pause();
                                break;
                            }
                            item = receiver.recv() => match item {
                                Some(item) => item,
                                None => return,
                            },
                        };
                        let mut segmenter = lock(&segmenter);
                        match item {
                            BusItem::Program(program) => segmenter.set_program(&program),
                            BusItem::Frame(frame) => segmenter.push(&frame, SystemTime::now()),
                        }
                    }
                }
            }
            .in_current_span(),
        );
        preview
    }

    /// The playlist; asking for it keeps the preview running.
    pub fn playlist(&self) -> String {
        self.demand.touch();
        lock(&self.segmenter).playlist().to_string()
    }

    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        self.demand.touch();
        lock(&self.segmenter).segment(sequence)
    }

    pub fn stats(&self) -> HlsStats {
        lock(&self.segmenter).stats()
    }
}

fn lock(segmenter: &Mutex<Segmenter>) -> MutexGuard<'_, Segmenter> {
    segmenter
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
