//! An MPEG-TS byte stream → the channel's `InputEvent`s and the input's statistics: the TS
//! demux, the TR 101 290 analyser and its log policy, shared by every input that receives TS
//! (SRT, RTP, plain UDP).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use lunora_media::Codec;
use lunora_ts::{AnalyserSettings, DemuxEvent, Indicator, TsInput};
use tracing::warn;

use crate::stats::{
    BitrateMeter, ConnectionState, InputStats, RecentTr101290, StatsHandle, VideoInfo,
};
use crate::{InputEvent, InputSender};

const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Reads the link's (packets received, packets lost) from the input's statistics, for the
/// channel's health model.
pub(crate) type LinkFigures = fn(&InputStats) -> (u64, u64);

pub(crate) struct TsFeed {
    id: String,
    index: usize,
    ts: TsInput,
    origin: Instant,
    events: InputSender,
    pub(crate) stats: StatsHandle,
    link: LinkFigures,
    bitrate: BitrateMeter,
    seen_indicators: HashSet<Indicator>,
    recent_errors: RecentTr101290,
    unreported: BTreeMap<&'static str, u64>,
    last_summary: Instant,
}

impl TsFeed {
    pub(crate) fn new(
        id: String,
        index: usize,
        analyser: AnalyserSettings,
        events: InputSender,
        stats: StatsHandle,
        link: LinkFigures,
    ) -> Self {
        let now = Instant::now();
        TsFeed {
            id,
            index,
            ts: TsInput::new(analyser),
            origin: now,
            events,
            stats,
            link,
            bitrate: BitrateMeter::new(now),
            seen_indicators: HashSet::new(),
            recent_errors: RecentTr101290::default(),
            unreported: BTreeMap::new(),
            last_summary: now,
        }
    }

    /// A sender has started: a new connection for the demux and the analyser.
    pub(crate) fn connected(&mut self, peer: String) {
        self.ts.new_connection();
        self.seen_indicators.clear();
        {
            let mut stats = self.stats.lock();
            stats.state = ConnectionState::Connected;
            stats.peer = Some(peer.clone());
            stats.connections_total += 1;
        }
        let _ = self.events.send(self.index, InputEvent::Connected { peer });
    }

    pub(crate) fn disconnected(&mut self) {
        self.ts.connection_lost();
        {
            let mut stats = self.stats.lock();
            stats.state = ConnectionState::Waiting;
            stats.peer = None;
        }
        let _ = self.events.send(self.index, InputEvent::Disconnected);
        self.publish();
    }

    pub(crate) fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        self.ts.handle_bytes(now.duration_since(self.origin), data);
        self.bitrate
            .count(u64::try_from(data.len()).unwrap_or(u64::MAX));
        {
            let mut stats = self.stats.lock();
            stats.bytes_total += data.len() as u64;
            stats.last_packet_at = Some(now);
        }
        self.forward_events();
    }

    fn forward_events(&mut self) {
        let (mut video, mut audio, mut data, mut dropped) = (0, 0, 0, 0);
        while let Some(event) = self.ts.poll_event() {
            let event = match event {
                DemuxEvent::Program(program) => InputEvent::Program(program),
                DemuxEvent::Frame(frame) => {
                    match frame.codec {
                        c if c.is_video() => video += 1,
                        c if c.is_audio() => audio += 1,
                        _ => data += 1,
                    }
                    InputEvent::Frame(frame)
                }
            };
            if self.events.send(self.index, event) == Err(crate::SendError::Full) {
                dropped += 1;
            }
        }
        if video + audio + data + dropped > 0 {
            let mut stats = self.stats.lock();
            stats.frames_total.video += video;
            stats.frames_total.audio += audio;
            stats.frames_total.data += data;
            stats.frames_dropped_total += dropped;
        }
    }

    /// Copies the analyser's counters into the shared snapshot and tells the channel the
    /// link's figures. TR 101 290 errors are logged the first time each indicator fires on a
    /// connection, then as one summary line per `SUMMARY_INTERVAL`, so a stream with a
    /// chronic fault cannot flood the log.
    pub(crate) fn publish(&mut self) {
        let now = Instant::now();
        while let Some(event) = self.ts.poll_tr101290_event() {
            if self.seen_indicators.insert(event.indicator) {
                let pid = event
                    .pid
                    .map_or_else(|| "none".to_string(), |p| p.value().to_string());
                warn!(input = %self.id, indicator = event.indicator.name(), priority = event.indicator.priority(),
                    %pid, "TR 101 290 error (further ones are summarised every 10 s)");
            } else {
                *self.unreported.entry(event.indicator.name()).or_default() += 1;
            }
        }
        if !self.unreported.is_empty() && now.duration_since(self.last_summary) >= SUMMARY_INTERVAL
        {
            let summary: Vec<String> = self
                .unreported
                .iter()
                .map(|(name, n)| format!("{name}={n}"))
                .collect();
            warn!(input = %self.id, errors = %summary.join(" "), "TR 101 290 errors in the last interval");
            self.unreported.clear();
            self.last_summary = now;
        }
        let mut stats = self.stats.lock();
        let last_packet = stats.last_packet_at;
        self.bitrate
            .update(now, last_packet, &mut stats.bitrate_bps);
        let counters = self.ts.counters();
        stats.set_tr101290(&counters);
        self.recent_errors
            .update(now.duration_since(self.origin), &counters, &mut stats);
        let (packets_received, packets_lost) = (self.link)(&stats);
        let health = InputEvent::Stats {
            packets_received,
            packets_lost,
            tr101290_priority1: counters.priority_total(1),
        };
        if stats.state == ConnectionState::Connected {
            let _ = self.events.send(self.index, health);
        }
        stats.ts_packets_total = self.ts.packets();
        stats.truncated_packets_total = self.ts.truncated_packets();
        stats.pes_dropped_total = self.ts.demux_counters().pes_dropped;
        stats.pes_oversized_total = self.ts.demux_counters().pes_oversized;
        let codec = self.ts.video_codec().map_or("unknown", Codec::name);
        stats.video = self
            .ts
            .video_format()
            .map(|format| VideoInfo::new(codec, format));
    }
}
