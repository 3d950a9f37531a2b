//! What happens in the graph, as it happens: switches, health and connection changes, output
//! states and configuration changes. Raised by the channel tasks, the outputs' supervisors and
//! the graph itself onto one broadcast; the API forwards them to web clients (SSE).

use serde::Serialize;

use crate::status::{HealthView, SwitchView};

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ChannelEvent {
    Switch {
        channel: String,
        switch: SwitchView,
    },
    Health {
        channel: String,
        input: String,
        health: HealthView,
    },
    Connection {
        channel: String,
        input: String,
        /// `connected` or `waiting`, as in the input's status.
        state: &'static str,
        peer: Option<String>,
    },
    /// Every input of the channel is lost.
    AllLost {
        channel: String,
    },
    Output {
        channel: String,
        output: String,
        state: &'static str,
        last_error: Option<String>,
    },
    /// A channel, input or output was added, changed or removed.
    Config {
        channel: String,
        component: &'static str,
        id: String,
        change: ConfigChange,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigChange {
    Added,
    Updated,
    Removed,
}

impl ConfigChange {
    /// A component started: `Updated` when it replaced a running one.
    pub fn of(replaced: bool) -> ConfigChange {
        if replaced {
            ConfigChange::Updated
        } else {
            ConfigChange::Added
        }
    }
}

impl ChannelEvent {
    /// The SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelEvent::Switch { .. } => "switch",
            ChannelEvent::Health { .. } | ChannelEvent::Connection { .. } => "input",
            ChannelEvent::AllLost { .. } => "all_lost",
            ChannelEvent::Output { .. } => "output",
            ChannelEvent::Config { .. } => "config",
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            ChannelEvent::Switch { channel, .. }
            | ChannelEvent::Health { channel, .. }
            | ChannelEvent::Connection { channel, .. }
            | ChannelEvent::AllLost { channel }
            | ChannelEvent::Output { channel, .. }
            | ChannelEvent::Config { channel, .. } => channel,
        }
    }
}
