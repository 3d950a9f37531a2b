//! The channel's HLS preview: a bus reader feeding the sans-IO segmenter, which the HTTP layer
//! reads from memory.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use lunora_hls::{HlsSettings, HlsStats, Segmenter};
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusItem};

/// Shared view of one channel's preview.
#[derive(Debug, Clone)]
pub struct HlsPreview {
    segmenter: Arc<Mutex<Segmenter>>,
}

impl HlsPreview {
    /// Starts segmenting `bus` until `cancel`.
    pub fn spawn(bus: Arc<Bus>, settings: HlsSettings, cancel: CancellationToken) -> HlsPreview {
        let preview = HlsPreview {
            segmenter: Arc::new(Mutex::new(Segmenter::new(settings))),
        };
        let segmenter = preview.segmenter.clone();
        tokio::spawn(async move {
            let mut receiver = bus.subscribe();
            loop {
                let item = tokio::select! {
                    _ = cancel.cancelled() => return,
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
        });
        preview
    }

    pub fn playlist(&self) -> String {
        lock(&self.segmenter).playlist().to_string()
    }

    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
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
