//! End-to-end tests: the real `lunora` binary against real third-party peers.
//!
//! One test binary with modules (each test file would otherwise link its own binary, which is
//! slow on two cores). Every process a test starts is killed when its handle drops; every wait
//! is bounded. A missing peer binary fails the test loudly: `.ci/run` installs them.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod access;
mod api_fuzz;
mod common;
mod config_cli;
mod content;
mod control_plane;
mod engine_sources;
mod events;
mod failover;
mod hls;
mod http_limits;
mod input_health;
mod medialive;
mod metrics;
mod obs;
mod package;
mod rtmp_ingest;
mod rtmp_output;
mod rtp_ingest;
mod slate;
mod soak;
mod srt_engine;
mod srt_ingest;
mod srt_interop;
mod srt_output;
mod transcode;
mod ui;
mod whip;
