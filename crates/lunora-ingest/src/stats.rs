//! The statistics an input publishes: one snapshot the API and `/metrics` both read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lunora_media::{RecentCount, VideoFormat};
use lunora_ts::Tr101290Counters;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Listening; no sender connected.
    #[default]
    Waiting,
    Connected,
}

/// Callers turned away, by reason.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct RejectCounts {
    pub stream_id: u64,
    pub passphrase: u64,
    pub busy: u64,
    pub handshake: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct FrameCounts {
    pub video: u64,
    pub audio: u64,
    pub data: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VideoInfo {
    pub codec: &'static str,
    pub width: u32,
    pub height: u32,
    pub frame_rate: Option<f64>,
    pub interlaced: bool,
}

/// An input's bitrate: bytes counted over windows of at least a second.
#[derive(Debug)]
pub(crate) struct BitrateMeter {
    window_start: Instant,
    window_bytes: u64,
}

impl BitrateMeter {
    pub(crate) fn new(now: Instant) -> BitrateMeter {
        BitrateMeter {
            window_start: now,
            window_bytes: 0,
        }
    }

    pub(crate) fn count(&mut self, bytes: u64) {
        self.window_bytes = self.window_bytes.saturating_add(bytes);
    }

    /// Sets `bitrate_bps` once a window is full, and to zero when nothing has come for a
    /// second (`last_packet`), so a silent sender does not keep its last figure.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        last_packet: Option<Instant>,
        bitrate_bps: &mut f64,
    ) {
        let elapsed = now.duration_since(self.window_start).as_secs_f64();
        if elapsed >= 1.0 {
            *bitrate_bps = self.window_bytes as f64 * 8.0 / elapsed;
            self.window_start = now;
            self.window_bytes = 0;
        }
        if last_packet.is_none_or(|at| now.duration_since(at) > Duration::from_secs(1)) {
            *bitrate_bps = 0.0;
        }
    }
}

impl VideoInfo {
    pub fn new(codec: &'static str, format: VideoFormat) -> Self {
        VideoInfo {
            codec,
            width: format.width,
            height: format.height,
            frame_rate: format.frame_rate,
            interlaced: format.interlaced,
        }
    }
}

/// One path of an RTP input: what it delivered, and (merged) what it supplied first.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RtpPathStats {
    /// The role of the input that receives this path: `main` or `backup`.
    pub path: &'static str,
    pub packets_received: u64,
    /// Sequence numbers this path never delivered in time.
    pub packets_lost: u64,
    /// Packets of the output this path supplied first (its share).
    pub packets_first: u64,
    pub packets_reordered: u64,
    pub packets_duplicate: u64,
    /// Packets that came after the reorder window had given up on them.
    pub packets_late: u64,
}

/// One stream of an RTP input with `format = "sdp"`: what the SDP says comes on its port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RtpStreamInfo {
    /// `video` or `audio`.
    pub media: &'static str,
    pub port: u16,
    /// Codec and RTP packetization, e.g. `AAC MP4A-LATM (RFC 6416)`.
    pub packetization: &'static str,
}

/// What a WebRTC input's audio is placed against its video by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LipSyncSource {
    /// Each track's first packet's arrival: as good as the two tracks' first packets were
    /// equally delayed on the way.
    Arrival,
    /// The publisher's RTCP sender reports: the instants it captured each track.
    SenderReports,
}

/// An RTP input's sequence-number figures (totals since the input started).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RtpStats {
    /// Packets put out in order (after reordering and, merged, after the first copy won).
    pub packets_received: u64,
    /// Sequence numbers that never came in time: gaps in what the input put out.
    pub packets_lost: u64,
    pub packets_reordered: u64,
    pub packets_duplicate: u64,
    pub packets_late: u64,
    /// Datagrams that were not RTP or carried another payload type, by reason.
    pub packets_invalid: BTreeMap<&'static str, u64>,
    /// Times the sequence jumped so far that the stream was taken as restarted.
    pub sequence_resets: u64,
    /// SMPTE 2022-1 FEC packets taken (`fec = true` only; both ports).
    pub fec_packets_received: u64,
    /// Media packets FEC rebuilt that came in time (in `packets_received`, not lost).
    pub packets_recovered: u64,
    /// Rebuilt after the reorder window had given up on them: `reorder_ms` is shorter than
    /// the FEC matrix takes to arrive.
    pub packets_recovered_late: u64,
    /// FEC packets dropped, by reason.
    pub fec_packets_invalid: BTreeMap<&'static str, u64>,
    /// The sender's FEC matrix as its FEC packets say: L (columns) and D (rows; column FEC
    /// only). Null until FEC came.
    pub fec_columns: Option<u8>,
    pub fec_rows: Option<u8>,
    /// With `switch = "merge"`: each path, in the order of the channel's inputs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<RtpPathStats>,
    /// Merged: mean arrival of path 2 minus path 1 over packets both delivered, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_difference_ms: Option<f64>,
    /// `format = "sdp"`: the streams received and how each is packetized.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<RtpStreamInfo>,
}

/// Everything known about one input. Counters are totals since the daemon started, across
/// connections, so they can be exported as Prometheus counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InputStats {
    pub state: ConnectionState,
    /// Who is sending: the caller's address, or what an engine input plays.
    pub peer: Option<String>,
    pub connections_total: u64,
    pub rejected_total: RejectCounts,
    pub bytes_total: u64,
    pub ts_packets_total: u64,
    pub bitrate_bps: f64,
    pub frames_total: FrameCounts,
    /// Frames the channel could not take in time (its queue was full).
    pub frames_dropped_total: u64,
    /// PES packets thrown away: a packet inside was lost, unparsable, or over the size cap.
    pub pes_dropped_total: u64,
    /// Of those, PES packets that grew past the size cap (a sender that never ends one).
    pub pes_oversized_total: u64,
    pub truncated_packets_total: u64,
    pub tr101290: BTreeMap<&'static str, u64>,
    /// The same indicators counted over the last 5 minutes (in 10 s steps): zero again once
    /// the stream has been clean that long.
    pub tr101290_last_5min: BTreeMap<&'static str, u64>,
    pub srt: lunora_srt::LinkStats,
    /// SRT datagrams dropped before reaching the protocol, by reason (SRT inputs only).
    pub srt_datagrams_rejected: BTreeMap<&'static str, u64>,
    /// Batches of received SRT payloads dropped because the input's analysis fell behind the
    /// socket (the box is overloaded; what was dropped is lost).
    pub srt_batches_dropped_total: u64,
    /// RTP figures (RTP inputs only).
    pub rtp: Option<RtpStats>,
    /// What places audio against video (WebRTC inputs only, while a publisher is connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lip_sync: Option<LipSyncSource>,
    pub video: Option<VideoInfo>,
    /// Why the input is not receiving, when it knows (an engine source's pipeline error).
    pub last_error: Option<String>,
    #[serde(skip)]
    pub last_packet_at: Option<Instant>,
    /// Seconds since the last packet, filled in when a snapshot is taken.
    pub seconds_since_last_packet: Option<f64>,
}

impl InputStats {
    pub(crate) fn set_datagrams_rejected(&mut self, counts: &lunora_srt::wire::DropCounts) {
        for (reason, n) in counts.iter() {
            self.srt_datagrams_rejected.insert(reason.name(), n);
        }
    }

    pub(crate) fn set_tr101290(&mut self, counters: &Tr101290Counters) {
        for (indicator, count) in counters.iter() {
            self.tr101290.insert(indicator.name(), count);
        }
    }
}

/// The window of `InputStats::tr101290_last_5min`.
pub(crate) const RECENT_WINDOW: Duration = Duration::from_secs(5 * 60);
const RECENT_STEP: Duration = Duration::from_secs(10);

/// TR 101 290 errors over the last 5 minutes, one sliding window per indicator, fed with the
/// analyser's totals. `now` is time since any fixed origin.
#[derive(Debug, Default)]
pub(crate) struct RecentTr101290(BTreeMap<&'static str, RecentCount>);

impl RecentTr101290 {
    pub(crate) fn update(
        &mut self,
        now: Duration,
        counters: &Tr101290Counters,
        stats: &mut InputStats,
    ) {
        for (indicator, total) in counters.iter() {
            let recent = self.0.entry(indicator.name()).or_insert_with(|| {
                // The analyser counts from zero when the input starts: that is the baseline,
                // so errors before the first update are in the window too.
                let mut recent = RecentCount::new(RECENT_WINDOW, RECENT_STEP);
                recent.observe_total(now, 0);
                recent
            });
            recent.observe_total(now, total);
            stats
                .tr101290_last_5min
                .insert(indicator.name(), recent.sum(now));
        }
    }
}

/// Shared handle to an input's statistics.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle(Arc<Mutex<InputStats>>);

impl StatsHandle {
    pub fn new() -> Self {
        let mut stats = InputStats::default();
        stats.set_tr101290(&Tr101290Counters::default());
        RecentTr101290::default().update(Duration::ZERO, &Tr101290Counters::default(), &mut stats);
        StatsHandle(Arc::new(Mutex::new(stats)))
    }

    /// A copy for the API and metrics, with ages computed against `now`.
    pub fn snapshot(&self, now: Instant) -> InputStats {
        let mut stats = self.lock().clone();
        stats.seconds_since_last_packet = stats
            .last_packet_at
            .map(|at| now.saturating_duration_since(at).as_secs_f64());
        stats
    }

    /// Hands `frame` to the channel as input `index` and counts it: its bytes, a frame (or a
    /// drop when the channel is behind) and, from a keyframe's parameter sets, the video
    /// format. For inputs that make frames themselves (engine sources, WHIP). Returns the
    /// frame's size in bytes and whether it was video.
    pub fn send_frame(
        &self,
        events: &crate::InputSender,
        index: usize,
        frame: lunora_media::Frame,
    ) -> (u64, bool) {
        let now = Instant::now();
        let bytes = frame.data.len() as u64;
        let is_video = frame.codec.is_video();
        let video = (frame.keyframe && is_video)
            .then(|| lunora_media::keyframe_video_format(frame.codec, &frame.data))
            .flatten()
            .map(|format| VideoInfo::new(frame.codec.name(), format));
        let dropped = events.send(index, crate::InputEvent::Frame(frame)).is_err();
        self.update(|s| {
            s.bytes_total += bytes;
            s.last_packet_at = Some(now);
            if dropped {
                s.frames_dropped_total += 1;
            } else if is_video {
                s.frames_total.video += 1;
            } else {
                s.frames_total.audio += 1;
            }
            if video.is_some() {
                s.video = video;
            }
        });
        (bytes, is_video)
    }

    /// Changes the statistics in place (for input kinds outside this crate).
    pub fn update(&self, change: impl FnOnce(&mut InputStats)) {
        change(&mut self.lock());
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, InputStats> {
        // A poisoned lock only means a panic elsewhere mid-update; the counters are still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lunora_ts::{AnalyserSettings, TsInput};

    #[test]
    fn recent_tr101290_errors_clear_after_five_clean_minutes_while_totals_stay() {
        // A continuity error: two packets on one PID with the same counter and a payload.
        let mut packet = [0xffu8; 188];
        packet[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10]);
        let mut skipped = packet;
        skipped[3] = 0x12;
        let mut ts = TsInput::new(AnalyserSettings::default());
        let mut stats = InputStats::default();
        let mut recent = RecentTr101290::default();
        let at = |s: u64| Duration::from_secs(s);
        recent.update(at(0), &ts.counters(), &mut stats);
        assert_eq!(stats.tr101290_last_5min["continuity_count_error"], 0);
        ts.handle_bytes(at(1), &[packet, skipped].concat());
        let total = ts.counters();
        recent.update(at(1), &total, &mut stats);
        stats.set_tr101290(&total);
        let errors = stats.tr101290_last_5min["continuity_count_error"];
        assert!(errors > 0, "{:?}", stats.tr101290_last_5min);
        assert_eq!(stats.tr101290["continuity_count_error"], errors);
        // Clean for five minutes: the recent figure clears, the total does not.
        recent.update(at(299), &total, &mut stats);
        assert_eq!(stats.tr101290_last_5min["continuity_count_error"], errors);
        recent.update(at(301), &total, &mut stats);
        assert_eq!(stats.tr101290_last_5min["continuity_count_error"], 0);
        assert_eq!(stats.tr101290["continuity_count_error"], errors);
        // Every indicator the totals have is in the window too.
        let names = |m: &BTreeMap<&'static str, u64>| m.keys().copied().collect::<Vec<_>>();
        assert_eq!(names(&stats.tr101290_last_5min), names(&stats.tr101290));
    }
}
