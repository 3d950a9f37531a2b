//! The failover core: input health, the switching policy and a continuous output timeline.
//!
//! Architecture invariant: pure and sans-IO. It is fed frames, link statistics, analyser
//! counters, commands and the time (`now: Duration` since any origin); it hands back output
//! frames, events and when it next needs to be woken. One task per channel owns it.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod align;
pub mod content;
mod health;
mod params;
mod switcher;
mod tracks;

pub use health::{Health, HealthSettings, InputHealth, Reason};
pub use switcher::{
    AlignedClock, Command, InputSpec, Output, Policy, Preference, Role, SwitchMode, SwitchReason,
    SwitchRecord, Switcher,
};

#[cfg(test)]
mod scenarios;
