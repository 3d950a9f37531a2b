//! ETSI TR 101 290 measurements, priority 1 and 2, as counters plus timestamped events.
//!
//! Time is an input (`now`, a monotonic offset from any origin), so the analyser is tested in
//! virtual time. Interval checks (PAT, PMT, PID presence) are evaluated as packets arrive: when
//! nothing arrives at all that is input loss, judged elsewhere, not a TS error; after a gap the
//! interval clocks restart.

use std::collections::VecDeque;
use std::time::Duration;

use lunora_media::Codec;

use crate::demux::PsiNotice;
use crate::packet::{ContinuityCounter, Packet, Pcr, Pid};
use crate::pes::PesHeader;
use crate::psi::SectionError;

/// The TR 101 290 indicators Lunora measures (§5.2.1 priority 1, §5.2.2 priority 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Indicator {
    TsSyncLoss,
    SyncByteError,
    PatError,
    ContinuityCountError,
    PmtError,
    PidError,
    TransportError,
    CrcError,
    PcrRepetitionError,
    PcrDiscontinuityIndicatorError,
    PtsError,
}

impl Indicator {
    pub const ALL: [Indicator; 11] = [
        Indicator::TsSyncLoss,
        Indicator::SyncByteError,
        Indicator::PatError,
        Indicator::ContinuityCountError,
        Indicator::PmtError,
        Indicator::PidError,
        Indicator::TransportError,
        Indicator::CrcError,
        Indicator::PcrRepetitionError,
        Indicator::PcrDiscontinuityIndicatorError,
        Indicator::PtsError,
    ];

    /// TR 101 290 priority: 1 (decodability at risk) or 2 (should be monitored).
    pub fn priority(self) -> u8 {
        match self {
            Indicator::TsSyncLoss
            | Indicator::SyncByteError
            | Indicator::PatError
            | Indicator::ContinuityCountError
            | Indicator::PmtError
            | Indicator::PidError => 1,
            _ => 2,
        }
    }

    /// snake_case name, as used in metric labels and the API.
    pub fn name(self) -> &'static str {
        match self {
            Indicator::TsSyncLoss => "ts_sync_loss",
            Indicator::SyncByteError => "sync_byte_error",
            Indicator::PatError => "pat_error",
            Indicator::ContinuityCountError => "continuity_count_error",
            Indicator::PmtError => "pmt_error",
            Indicator::PidError => "pid_error",
            Indicator::TransportError => "transport_error",
            Indicator::CrcError => "crc_error",
            Indicator::PcrRepetitionError => "pcr_repetition_error",
            Indicator::PcrDiscontinuityIndicatorError => "pcr_discontinuity_indicator_error",
            Indicator::PtsError => "pts_error",
        }
    }

    fn index(self) -> usize {
        Indicator::ALL.iter().position(|i| *i == self).unwrap_or(0)
    }
}

/// One counter per indicator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tr101290Counters([u64; 11]);

impl Tr101290Counters {
    pub fn get(&self, indicator: Indicator) -> u64 {
        self.0[indicator.index()]
    }

    pub fn iter(&self) -> impl Iterator<Item = (Indicator, u64)> + '_ {
        Indicator::ALL.iter().map(|i| (*i, self.get(*i)))
    }

    pub fn priority_total(&self, priority: u8) -> u64 {
        self.iter()
            .filter(|(i, _)| i.priority() == priority)
            .map(|(_, n)| n)
            .sum()
    }

    fn bump(&mut self, indicator: Indicator) {
        self.0[indicator.index()] += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tr101290Event {
    pub indicator: Indicator,
    pub pid: Option<Pid>,
    pub at: Duration,
}

/// Thresholds; the defaults are TR 101 290's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyserSettings {
    pub pat_interval: Duration,
    pub pmt_interval: Duration,
    /// How long a PID listed in the PMT may stay silent (the standard leaves it to the user).
    pub pid_timeout: Duration,
    pub pcr_repetition: Duration,
    pub pcr_discontinuity: Duration,
    pub pts_repetition: Duration,
    /// Events kept until polled; further ones are not kept (the counters still count them).
    pub max_pending_events: usize,
}

impl Default for AnalyserSettings {
    fn default() -> Self {
        AnalyserSettings {
            pat_interval: Duration::from_millis(500),
            pmt_interval: Duration::from_millis(500),
            pid_timeout: Duration::from_secs(5),
            pcr_repetition: Duration::from_millis(40),
            pcr_discontinuity: Duration::from_millis(100),
            pts_repetition: Duration::from_millis(700),
            max_pending_events: 256,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct PidState {
    last_cc: Option<ContinuityCounter>,
    repeats: u8,
    last_pcr: Option<Pcr>,
    last_pts_at: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Deadline {
    pid: Pid,
    due: Duration,
}

#[derive(Debug)]
pub struct Analyser {
    settings: AnalyserSettings,
    counters: Tr101290Counters,
    pids: Vec<PidState>,
    pat_due: Option<Duration>,
    pmt_due: Vec<Deadline>,
    /// Elementary PIDs that must keep appearing (audio and video).
    pid_due: Vec<Deadline>,
    pcr_pid: Option<Pid>,
    last_packet_at: Option<Duration>,
    events: VecDeque<Tr101290Event>,
}

impl Analyser {
    pub fn new(settings: AnalyserSettings) -> Self {
        Analyser {
            settings,
            counters: Tr101290Counters::default(),
            pids: vec![PidState::default(); usize::from(Pid::MAX) + 1],
            pat_due: None,
            pmt_due: Vec::new(),
            pid_due: Vec::new(),
            pcr_pid: None,
            last_packet_at: None,
            events: VecDeque::new(),
        }
    }

    pub fn counters(&self) -> Tr101290Counters {
        self.counters
    }

    pub fn poll_event(&mut self) -> Option<Tr101290Event> {
        self.events.pop_front()
    }

    pub fn record(&mut self, now: Duration, indicator: Indicator, pid: Option<Pid>) {
        self.counters.bump(indicator);
        if self.events.len() < self.settings.max_pending_events {
            self.events.push_back(Tr101290Event {
                indicator,
                pid,
                at: now,
            });
        }
    }

    pub fn handle_packet(&mut self, now: Duration, packet: &Packet<'_>) {
        self.check_intervals(now);
        let pid = packet.pid();
        if packet.transport_error_indicator() {
            self.record(now, Indicator::TransportError, Some(pid));
        }
        if pid == Pid::NULL {
            return;
        }
        if packet.transport_scrambling_control() != 0 {
            if pid == Pid::PAT {
                self.record(now, Indicator::PatError, Some(pid));
            } else if self.pmt_due.iter().any(|d| d.pid == pid) {
                self.record(now, Indicator::PmtError, Some(pid));
            }
        }
        for deadline in self.pid_due.iter_mut().filter(|d| d.pid == pid) {
            deadline.due = now + self.settings.pid_timeout;
        }
        self.check_continuity(now, packet);
        self.check_pcr(now, packet);
        self.check_pts(now, packet);
    }

    pub fn handle_psi(&mut self, now: Duration, notice: &PsiNotice) {
        match notice {
            PsiNotice::Pat { pmt_pids } => {
                self.pat_due = Some(now + self.settings.pat_interval);
                self.pmt_due.retain(|d| pmt_pids.contains(&d.pid));
                for pid in pmt_pids {
                    if !self.pmt_due.iter().any(|d| d.pid == *pid) {
                        self.pmt_due.push(Deadline {
                            pid: *pid,
                            due: now + self.settings.pmt_interval,
                        });
                    }
                }
            }
            PsiNotice::Pmt {
                pid,
                elementary_pids,
                pcr_pid,
            } => {
                if let Some(deadline) = self.pmt_due.iter_mut().find(|d| d.pid == *pid) {
                    deadline.due = now + self.settings.pmt_interval;
                }
                self.pcr_pid = Some(*pcr_pid);
                let watched = elementary_pids
                    .iter()
                    .filter(|(_, codec)| is_continuous(*codec));
                let mut next = Vec::with_capacity(elementary_pids.len());
                for (es_pid, _) in watched {
                    let due = self
                        .pid_due
                        .iter()
                        .find(|d| d.pid == *es_pid)
                        .map_or(now + self.settings.pid_timeout, |d| d.due);
                    next.push(Deadline { pid: *es_pid, due });
                }
                self.pid_due = next;
            }
            PsiNotice::SectionError { pid, error } => match error {
                SectionError::Crc => self.record(now, Indicator::CrcError, Some(*pid)),
                // (`TooLong` is a writer's error; parsing never reports it.)
                SectionError::TableId(_) | SectionError::Malformed | SectionError::TooLong(_)
                    if *pid == Pid::PAT =>
                {
                    self.record(now, Indicator::PatError, Some(*pid))
                }
                SectionError::TableId(_) | SectionError::Malformed | SectionError::TooLong(_) => {
                    self.record(now, Indicator::PmtError, Some(*pid))
                }
            },
        }
    }

    fn check_intervals(&mut self, now: Duration) {
        let gap = self.last_packet_at.map(|last| now.saturating_sub(last));
        self.last_packet_at = Some(now);
        if gap.is_none_or(|gap| gap > self.settings.pat_interval) {
            // First packet, or the input paused: restart every interval clock.
            self.pat_due = Some(now + self.settings.pat_interval);
            for d in &mut self.pmt_due {
                d.due = now + self.settings.pmt_interval;
            }
            for d in &mut self.pid_due {
                d.due = now + self.settings.pid_timeout;
                self.pids[usize::from(d.pid.value())].last_pts_at = None;
            }
            return;
        }
        if let Some(due) = self.pat_due.filter(|due| now > *due) {
            self.record(now, Indicator::PatError, Some(Pid::PAT));
            self.pat_due = Some(due.max(now) + self.settings.pat_interval);
        }
        for i in 0..self.pmt_due.len() {
            let Deadline { pid, due } = self.pmt_due[i];
            if now > due {
                self.pmt_due[i].due = now + self.settings.pmt_interval;
                self.record(now, Indicator::PmtError, Some(pid));
            }
        }
        for i in 0..self.pid_due.len() {
            let Deadline { pid, due } = self.pid_due[i];
            if now > due {
                self.pid_due[i].due = now + self.settings.pid_timeout;
                self.record(now, Indicator::PidError, Some(pid));
            }
        }
    }

    fn check_continuity(&mut self, now: Duration, packet: &Packet<'_>) {
        let pid = packet.pid();
        let cc = packet.continuity_counter();
        let discontinuity = packet
            .adaptation_field()
            .is_some_and(|af| af.discontinuity_indicator());
        let state = &mut self.pids[usize::from(pid.value())];
        let Some(last) = state.last_cc.replace(cc) else {
            return;
        };
        if discontinuity {
            state.repeats = 0;
            return;
        }
        let error = if !packet.has_payload() {
            // Packets without payload must not advance the counter.
            cc != last
        } else if cc == last {
            // One duplicate is allowed; a packet occurring more than twice is an error.
            state.repeats += 1;
            state.repeats > 1
        } else {
            state.repeats = 0;
            !cc.follows(last)
        };
        if error {
            self.record(now, Indicator::ContinuityCountError, Some(pid));
        }
    }

    fn check_pcr(&mut self, now: Duration, packet: &Packet<'_>) {
        let Some(af) = packet.adaptation_field() else {
            return;
        };
        let Some(pcr) = af.pcr() else { return };
        let pid = packet.pid();
        let state = &mut self.pids[usize::from(pid.value())];
        let previous = state.last_pcr.replace(pcr);
        if af.discontinuity_indicator() {
            return;
        }
        let Some(previous) = previous else { return };
        let diff = pcr.diff_27mhz(previous);
        let as_27mhz = |d: Duration| d.as_micros() as i64 * 27;
        if diff < 0 || diff > as_27mhz(self.settings.pcr_discontinuity) {
            self.record(now, Indicator::PcrDiscontinuityIndicatorError, Some(pid));
        } else if diff > as_27mhz(self.settings.pcr_repetition) {
            self.record(now, Indicator::PcrRepetitionError, Some(pid));
        }
    }

    fn check_pts(&mut self, now: Duration, packet: &Packet<'_>) {
        if !packet.payload_unit_start_indicator()
            || !self.pid_due.iter().any(|d| d.pid == packet.pid())
        {
            return;
        }
        let Some(header) = packet.payload().and_then(PesHeader::parse) else {
            return;
        };
        if header.pts.is_none() {
            return;
        }
        let pid = packet.pid();
        let state = &mut self.pids[usize::from(pid.value())];
        let previous = state.last_pts_at.replace(now);
        if previous.is_some_and(|at| now.saturating_sub(at) > self.settings.pts_repetition) {
            self.record(now, Indicator::PtsError, Some(pid));
        }
    }

    /// Forgets per-PID history, for a new connection on the same input.
    pub fn reset_stream_state(&mut self) {
        self.pids.fill(PidState::default());
        self.last_packet_at = None;
    }
}

/// Whether a codec's PID is expected to carry packets continuously (data PIDs such as SCTE-35
/// may legitimately stay silent for minutes).
fn is_continuous(codec: Codec) -> bool {
    codec.is_video() || codec.is_audio()
}
