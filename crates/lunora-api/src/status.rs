use std::net::SocketAddr;

use lunora_egress::OutputStats;
use lunora_ingest::InputStats;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ChannelStatus {
    pub id: String,
    pub mode: &'static str,
    /// The input currently on air, if any is.
    pub active_input: Option<String>,
    pub inputs: Vec<InputStatus>,
    pub outputs: Vec<OutputStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputStatus {
    pub id: String,
    pub role: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub listen: SocketAddr,
    #[serde(flatten)]
    pub stats: InputStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputStatus {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub mode: &'static str,
    /// Where it sends (caller) or listens (listener).
    pub address: String,
    #[serde(flatten)]
    pub stats: OutputStats,
}
