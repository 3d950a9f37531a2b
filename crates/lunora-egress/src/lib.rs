//! Outputs: the channel bus every output reads from, the SRT output (caller or listener) and
//! RTMP push destinations.
//!
//! Architecture invariant: nothing an output does can block the switcher or another output.
//! Each reader of the bus has its own cursor; one that falls behind skips to the next keyframe
//! and counts what it skipped.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod bus;
mod conformance;
mod destination;
mod hls;
mod rtmp;
mod srt;
mod stats;

pub use bus::{Bus, BusItem, BusReceiver};
pub use conformance::{Conformance, PlatformRules};
pub use destination::{
    DEFAULT_RETRY, DestinationSpec, Preset, SpecField, SpecProblem, ValidDestination,
};
pub use hls::HlsPreview;
pub use lunora_hls::{HlsSettings, HlsStats};
pub use rtmp::{Control, RtmpDestination, RtmpDestinationSettings, RtmpUrl};
pub use srt::{SrtOutput, SrtOutputMode, SrtOutputSettings};
pub use stats::{OutputState, OutputStats, OutputStatsHandle, StateListener};
