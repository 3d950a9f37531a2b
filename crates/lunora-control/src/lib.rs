//! The running graph: channels and their inputs and outputs, keyed by stable ids; the typed
//! commands that change it (each declaring the role it needs); and the events it raises.
//!
//! Architecture invariant: only this crate knows the running graph. The binary builds it from
//! the config file, the API changes it through [`Command`]s; media crates talk through
//! `lunora-media` types and bounded channels.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod profiles;
pub use profiles::{ProfileSettings, Transcode};
pub mod settings;

pub use settings::{
    ChannelId, ChannelMode, ChannelSettings, ChannelSpec, Component, FailoverSettings,
    GraphProblem, GraphSpec, ID_RULE, InputId, InputRole, InputSettings, MEDIALIVE_FEED, OutputId,
    OutputSettings, Problem, Resource, RtmpInputSettings, RtmpOutputSettings, SLATE_INPUT,
    SlateSettings, SrtInputSettings, SrtOutputMode, SrtOutputSettings, WhipEndpoint,
    WhipInputSettings, expand_env, is_medialive_feed,
};

mod accounts;
mod channel;
mod content;
mod control;
pub mod events;
mod graph;
mod slate;
pub mod status;
#[cfg(feature = "engine")]
mod transcode;
#[cfg(feature = "whip")]
mod whip;

pub use accounts::execute_account;
pub use control::{Actor, Command, CommandError, Control, Outcome, StoreHealth, overlaid};
pub use events::{ChannelEvent, ConfigChange};
pub use graph::{ApplyError, ControlError, Environment, FetchFile, Fetched, Graph, SwitchError};
pub use status::{
    AlignmentView, ChannelStatus, DestinationView, HealthView, HlsView, IngestView, InputStatus,
    OutputStatus, SlateView, SwitchCount, SwitchView, TranscodeView,
};

/// Types the API shows that come from the media crates.
pub use lunora_egress::{HlsSettings, OutputState, OutputStats};
pub use lunora_ingest::{
    ConnectionState, InputStats, RtmpsSettings, RtpPathStats, RtpStats, TlsError, tls_acceptor,
};
pub use lunora_store::{
    AuditEntry, AuditRecord, Opened as StoreOpened, SavedMediaLive, Store, StoreError, TokenInfo,
    UserInfo, UserRole,
};
pub use lunora_switch::Reason;
pub use lunora_ts::Indicator;
