//! SRT plumbing shared by inputs and outputs: socket binding with large buffers, the access
//! decision for incoming callers, and link statistics.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod access;
mod engine;
mod udp;
pub mod wire;

pub use access::{AccessPolicy, Refusal, stream_id_matches};
pub use engine::{
    AccessDecision, CALL_TIMEOUT, CallSettings, CallerRequest, ConnectionClosed, ConnectionSender,
    EngineCounters, EngineEvent, EngineSettings, PortCore, SEND_QUEUE, SrtEngine,
};
pub use udp::{bind_udp, warn_if_buffer_capped};

use serde::Serialize;
use srt_protocol::statistics::SocketStatistics;

/// Link counters of one SRT connection (or totals across several).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LinkStats {
    pub rtt_ms: f64,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// Packets reported lost (NAKs sent by a receiver, received by a sender).
    pub packets_lost: u64,
    pub packets_retransmitted: u64,
    pub packets_dropped: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub decrypt_errors: u64,
}

impl LinkStats {
    pub fn from_socket(s: &SocketStatistics) -> LinkStats {
        LinkStats {
            rtt_ms: s.rx_average_rtt.max(s.tx_average_rtt).as_secs_f64() * 1000.0,
            packets_received: s.rx_unique_data,
            packets_sent: s.tx_unique_data,
            // srt-protocol leaves rx_loss_data at 0 under loss; NAK counts reflect real loss.
            packets_lost: s.rx_loss_data.max(s.tx_nak).max(s.rx_nak),
            packets_retransmitted: s.rx_retransmit_data + s.tx_retransmit_data,
            packets_dropped: s.rx_dropped_data + s.tx_dropped_data,
            bytes_received: s.rx_bytes,
            bytes_sent: s.tx_bytes,
            decrypt_errors: s.rx_decrypt_errors,
        }
    }

    /// `self` (totals of finished connections) plus a live connection's counters.
    pub fn plus(&self, live: &LinkStats) -> LinkStats {
        LinkStats {
            rtt_ms: live.rtt_ms,
            packets_received: self.packets_received + live.packets_received,
            packets_sent: self.packets_sent + live.packets_sent,
            packets_lost: self.packets_lost + live.packets_lost,
            packets_retransmitted: self.packets_retransmitted + live.packets_retransmitted,
            packets_dropped: self.packets_dropped + live.packets_dropped,
            bytes_received: self.bytes_received + live.bytes_received,
            bytes_sent: self.bytes_sent + live.bytes_sent,
            decrypt_errors: self.decrypt_errors + live.decrypt_errors,
        }
    }
}
