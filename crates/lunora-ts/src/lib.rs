//! MPEG transport stream, sans-IO: packet views, PSI, demux to `Frame`s, mux from `Frame`s,
//! and the ETSI TR 101 290 analyser.
//!
//! Architecture invariant: no I/O, no clock, no async runtime. Time enters as a `now:
//! Duration` argument; broken streams are reported as counters and events, never as panics.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod analyser;
mod demux;
mod mux;
mod packet;
mod pes;
mod psi;
mod sync;

use std::time::Duration;

pub use analyser::{Analyser, AnalyserSettings, Indicator, Tr101290Counters, Tr101290Event};
pub use demux::{
    Demux, DemuxCounters, DemuxEvent, OTHER_PES_CAP, PsiNotice, VIDEO_PES_CAP,
    codec_for_stream_type,
};
pub use mux::{DATAGRAM_SIZE, MuxSettings, Muxer};
pub use packet::{AdaptationField, ContinuityCounter, PACKET_SIZE, Packet, Pcr, Pid, SYNC_BYTE};
pub use pes::{PesHeader, write_pes_header};
pub use psi::{Pat, Pmt, PmtStream, SectionAssembler, SectionError, crc32_mpeg2};
pub use sync::{Resync, SyncOutput};

/// Everything an MPEG-TS input does with received bytes: synchronise, analyse (on the raw
/// packets, before demux), then demultiplex.
#[derive(Debug)]
pub struct TsInput {
    resync: Resync,
    analyser: Analyser,
    demux: Demux,
    packets: u64,
    truncated_packets: u64,
}

impl TsInput {
    pub fn new(settings: AnalyserSettings) -> Self {
        TsInput {
            resync: Resync::new(),
            analyser: Analyser::new(settings),
            demux: Demux::new(),
            packets: 0,
            truncated_packets: 0,
        }
    }

    /// Feeds one received chunk (normally a 1316-byte datagram) that arrived at `now`.
    pub fn handle_bytes(&mut self, now: Duration, data: &[u8]) {
        let TsInput {
            resync,
            analyser,
            demux,
            packets,
            truncated_packets,
        } = self;
        resync.push(data, &mut |output| match output {
            SyncOutput::Packet(packet) => {
                *packets += 1;
                analyser.handle_packet(now, &packet);
                demux.handle_packet(&packet);
                for notice in demux.take_notices() {
                    analyser.handle_psi(now, &notice);
                }
            }
            SyncOutput::SyncByteError => analyser.record(now, Indicator::SyncByteError, None),
            SyncOutput::SyncLoss => analyser.record(now, Indicator::TsSyncLoss, None),
            SyncOutput::TruncatedPacket => *truncated_packets += 1,
        });
    }

    /// A new connection on the same input: forget per-PID history (continuity, PCR) so the
    /// new sender is not blamed for the old one's last packets.
    pub fn new_connection(&mut self) {
        self.resync = Resync::new();
        self.analyser.reset_stream_state();
    }

    /// The sender vanished: drop half-assembled frames rather than pass on a truncated one.
    pub fn connection_lost(&mut self) {
        self.demux.discard_partial();
    }

    pub fn poll_event(&mut self) -> Option<DemuxEvent> {
        self.demux.poll_event()
    }

    pub fn poll_tr101290_event(&mut self) -> Option<Tr101290Event> {
        self.analyser.poll_event()
    }

    pub fn counters(&self) -> Tr101290Counters {
        self.analyser.counters()
    }

    pub fn demux_counters(&self) -> DemuxCounters {
        self.demux.counters()
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn truncated_packets(&self) -> u64 {
        self.truncated_packets
    }

    pub fn video_format(&self) -> Option<lunora_media::VideoFormat> {
        self.demux.video_format()
    }

    pub fn video_codec(&self) -> Option<lunora_media::Codec> {
        self.demux.video_codec()
    }

    pub fn flush(&mut self) {
        self.demux.flush();
    }

    /// Analyses and demultiplexes a whole stream held in memory (a recording, an HLS segment),
    /// as if it had arrived in datagrams 1 ms apart, and flushes the last frames.
    pub fn from_recording(settings: AnalyserSettings, data: &[u8]) -> Self {
        let mut input = TsInput::new(settings);
        for (i, chunk) in data.chunks(DATAGRAM_SIZE).enumerate() {
            input.handle_bytes(Duration::from_millis(i as u64), chunk);
        }
        input.flush();
        input
    }

    /// Every program and frame demultiplexed so far, in order.
    pub fn take_programs_and_frames(
        &mut self,
    ) -> (Vec<lunora_media::Program>, Vec<lunora_media::Frame>) {
        let (mut programs, mut frames) = (Vec::new(), Vec::new());
        while let Some(event) = self.poll_event() {
            match event {
                DemuxEvent::Program(p) => programs.push(p),
                DemuxEvent::Frame(f) => frames.push(f),
            }
        }
        (programs, frames)
    }
}

#[cfg(test)]
mod tests;
