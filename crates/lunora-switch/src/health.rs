//! Health of one input, as a pure function of what arrived and when.
//!
//! Arrival decides `Lost`; transport (SRT loss, TR 101 290 priority-1 errors) and elementary
//! stream symptoms (frame-rate or bitrate collapse, missing keyframes, timestamp jumps) decide
//! `Degraded`. Each symptom stays raised for `HOLD` after it was last seen, so a condition that
//! comes and goes reads as one degradation rather than a flicker.

use std::collections::VecDeque;
use std::time::Duration;

use lunora_media::Frame;

/// Why an input is degraded. Names are used as metric labels and in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The link lost packets above the threshold: SRT's own figures, or RTP sequence gaps
    /// (RTP and WebRTC inputs).
    LinkLoss,
    /// TR 101 290 priority-1 errors in the window.
    Tr101290,
    /// Video frame rate fell below half of what the input normally delivers.
    FrameRate,
    /// No keyframe for more than three GOPs.
    NoKeyframe,
    /// Decoding timestamps jumped by more than a second, or went backwards.
    TimestampJump,
    /// Bitrate fell below a quarter of the input's own average.
    Bitrate,
    /// The picture has been black for the configured time (content health).
    Black,
    /// The picture has not changed for the configured time (content health).
    Frozen,
    /// The audio has been below the silence level for the configured time (content health).
    Silent,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::LinkLoss,
        Reason::Tr101290,
        Reason::FrameRate,
        Reason::NoKeyframe,
        Reason::TimestampJump,
        Reason::Bitrate,
        Reason::Black,
        Reason::Frozen,
        Reason::Silent,
    ];

    /// The reasons a decode of the content finds (the others come from the stream itself).
    pub const CONTENT: [Reason; 3] = [Reason::Black, Reason::Frozen, Reason::Silent];

    pub fn name(self) -> &'static str {
        match self {
            Reason::LinkLoss => "link_loss",
            Reason::Tr101290 => "tr101290",
            Reason::FrameRate => "frame_rate",
            Reason::NoKeyframe => "no_keyframe",
            Reason::TimestampJump => "timestamp_jump",
            Reason::Bitrate => "bitrate",
            Reason::Black => "black",
            Reason::Frozen => "frozen",
            Reason::Silent => "silent",
        }
    }

    /// A name from a config file; `srt_loss` is what `link_loss` was called before RTP and
    /// WebRTC inputs reported loss too.
    pub fn from_name(name: &str) -> Option<Reason> {
        if name == "srt_loss" {
            return Some(Reason::LinkLoss);
        }
        Reason::ALL.into_iter().find(|r| r.name() == name)
    }

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Degraded(Vec<Reason>),
    Lost,
}

impl Health {
    pub fn name(&self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded(_) => "degraded",
            Health::Lost => "lost",
        }
    }
}

/// Thresholds. The defaults suit contribution encoders (GOP ≤ 2 s, CBR or capped VBR).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthSettings {
    /// No frame for this long: `Lost`.
    pub input_loss: Duration,
    /// SRT loss ratio over one statistics interval that counts as degraded.
    pub srt_loss_ratio: f64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            input_loss: Duration::from_millis(500),
            srt_loss_ratio: 0.01,
        }
    }
}

/// A symptom stays raised this long after it was last observed.
const HOLD: Duration = Duration::from_secs(2);
/// Window for frame-rate and bitrate measurement.
const WINDOW: Duration = Duration::from_secs(1);
/// Stream symptoms are judged only after the input has been up this long (the first
/// second after a connect has no history to compare with).
const WARM_UP: Duration = Duration::from_secs(2);
const TIMESTAMP_JUMP_TICKS: i64 = 90_000;

#[derive(Debug, Clone)]
pub struct InputHealth {
    settings: HealthSettings,
    connected_at: Option<Duration>,
    last_frame_at: Option<Duration>,
    /// Arrival times of video frames within `WINDOW`.
    video_arrivals: VecDeque<Duration>,
    /// Long-run video frame rate (exponential average of healthy one-second windows).
    normal_fps: Option<f64>,
    /// (arrival, bytes) of all frames within `WINDOW`.
    byte_arrivals: VecDeque<(Duration, usize)>,
    window_bytes: usize,
    normal_bytes_per_window: Option<f64>,
    last_keyframe_at: Option<Duration>,
    /// Longest keyframe interval seen recently: the GOP.
    gop: Option<Duration>,
    last_video_dts: Option<i64>,
    raised: [Option<Duration>; Reason::ALL.len()],
    /// Conditions reported as ongoing (content health): raised at every evaluation until they
    /// end, then held like any symptom.
    ongoing: [bool; Reason::ALL.len()],
    /// Since when the input has been continuously healthy.
    healthy_since: Option<Duration>,
    last_link: Option<(u64, u64)>,
    last_tr101290: Option<u64>,
    has_video: bool,
    /// When the normal frame rate and bitrate were last learned (once a second, while fine).
    last_learned_at: Option<Duration>,
}

impl InputHealth {
    pub fn new(settings: HealthSettings) -> Self {
        InputHealth {
            settings,
            connected_at: None,
            last_frame_at: None,
            video_arrivals: VecDeque::new(),
            normal_fps: None,
            byte_arrivals: VecDeque::new(),
            window_bytes: 0,
            normal_bytes_per_window: None,
            last_keyframe_at: None,
            gop: None,
            last_video_dts: None,
            raised: [None; Reason::ALL.len()],
            ongoing: [false; Reason::ALL.len()],
            healthy_since: None,
            last_link: None,
            last_tr101290: None,
            has_video: false,
            last_learned_at: None,
        }
    }

    fn raise(&mut self, reason: Reason, now: Duration) {
        self.raised[reason.index()] = Some(now);
    }

    /// A condition observed elsewhere (content health) started or ended.
    pub fn set_ongoing(&mut self, now: Duration, reason: Reason, ongoing: bool) {
        self.ongoing[reason.index()] = ongoing;
        // Ending counts as its last sighting, so it is held from here like any symptom.
        self.raise(reason, now);
    }

    /// A new sender: history starts over, but what the input carries (video or not) stays
    /// known until its program says otherwise.
    pub fn connected(&mut self, now: Duration) {
        let has_video = self.has_video;
        *self = InputHealth::new(self.settings);
        self.has_video = has_video;
        self.connected_at = Some(now);
    }

    /// New thresholds from a changed policy; what was measured so far stays.
    pub fn set_settings(&mut self, settings: HealthSettings) {
        self.settings = settings;
    }

    pub fn disconnected(&mut self) {
        self.connected_at = None;
        self.healthy_since = None;
    }

    pub fn set_has_video(&mut self, has_video: bool) {
        self.has_video = has_video;
    }

    /// The GOP length measured on this input, if two keyframes have been seen.
    pub fn gop(&self) -> Option<Duration> {
        self.gop
    }

    pub fn last_frame_at(&self) -> Option<Duration> {
        self.last_frame_at
    }

    pub fn handle_frame(&mut self, now: Duration, frame: &Frame) {
        if self.connected_at.is_none() {
            self.connected_at = Some(now);
        }
        self.last_frame_at = Some(now);
        self.byte_arrivals.push_back((now, frame.data.len()));
        self.window_bytes += frame.data.len();
        if frame.codec.is_video() {
            self.video_arrivals.push_back(now);
            let dts = frame.dts.0;
            if let Some(last) = self.last_video_dts {
                let step = dts - last;
                if !(0..=TIMESTAMP_JUMP_TICKS).contains(&step) {
                    self.raise(Reason::TimestampJump, now);
                }
            }
            self.last_video_dts = Some(dts);
            if frame.keyframe {
                if let Some(previous) = self.last_keyframe_at {
                    let interval = now.saturating_sub(previous);
                    // Track the longest recent GOP, letting it shrink only slowly: a keyframe that
                    // arrives early through network jitter must not make the GOP look shorter.
                    self.gop = Some(match self.gop {
                        Some(gop) if interval < gop => gop.mul_f64(0.95) + interval.mul_f64(0.05),
                        _ => interval,
                    });
                }
                self.last_keyframe_at = Some(now);
            }
        }
        self.trim(now);
    }

    /// SRT counters (totals for the current connection).
    pub fn handle_link(&mut self, now: Duration, packets_received: u64, packets_lost: u64) {
        if let Some((received, lost)) = self.last_link {
            let received = packets_received.saturating_sub(received);
            let lost = packets_lost.saturating_sub(lost);
            if received + lost > 0
                && lost as f64 / (received + lost) as f64 > self.settings.srt_loss_ratio
            {
                self.raise(Reason::LinkLoss, now);
            }
        }
        self.last_link = Some((packets_received, packets_lost));
    }

    /// TR 101 290 priority-1 total (any monotonic count).
    pub fn handle_tr101290(&mut self, now: Duration, priority1_total: u64) {
        if self
            .last_tr101290
            .is_some_and(|last| priority1_total > last)
        {
            self.raise(Reason::Tr101290, now);
        }
        self.last_tr101290 = Some(priority1_total);
    }

    fn trim(&mut self, now: Duration) {
        let horizon = now.saturating_sub(WINDOW);
        while self.video_arrivals.front().is_some_and(|t| *t < horizon) {
            self.video_arrivals.pop_front();
        }
        while let Some(&(t, bytes)) = self.byte_arrivals.front() {
            if t >= horizon {
                break;
            }
            self.byte_arrivals.pop_front();
            self.window_bytes -= bytes;
        }
    }

    /// Judges the input at `now`, updating the stream-level symptoms that depend on time.
    pub fn evaluate(&mut self, now: Duration) -> Health {
        self.trim(now);
        let lost = self.connected_at.is_none()
            || self
                .last_frame_at
                .is_none_or(|at| now.saturating_sub(at) >= self.settings.input_loss);
        if lost {
            self.healthy_since = None;
            return Health::Lost;
        }
        let warmed_up = self
            .connected_at
            .is_some_and(|at| now.saturating_sub(at) >= WARM_UP);
        // The input's own normal is learned once a second from windows that looked fine, so a
        // collapse is judged against the past rather than chased by it.
        let learn = warmed_up
            && self
                .last_learned_at
                .is_none_or(|at| now.saturating_sub(at) >= WINDOW);
        if warmed_up && self.has_video {
            let fps = self.video_arrivals.len() as f64 / WINDOW.as_secs_f64();
            match self.normal_fps {
                Some(normal) if fps < normal * 0.5 => self.raise(Reason::FrameRate, now),
                Some(normal) if learn => self.normal_fps = Some(normal * 0.8 + fps * 0.2),
                Some(_) => {}
                None => self.normal_fps = Some(fps),
            }
            if let (Some(gop), Some(last)) = (self.gop, self.last_keyframe_at)
                && now.saturating_sub(last) > gop * 3
            {
                self.raise(Reason::NoKeyframe, now);
            }
        }
        if warmed_up {
            let bytes = self.window_bytes as f64;
            match self.normal_bytes_per_window {
                Some(normal) if bytes < normal * 0.25 => self.raise(Reason::Bitrate, now),
                Some(normal) if learn => {
                    self.normal_bytes_per_window = Some(normal * 0.8 + bytes * 0.2)
                }
                Some(_) => {}
                None => self.normal_bytes_per_window = Some(bytes),
            }
        }
        if learn {
            self.last_learned_at = Some(now);
        }
        for reason in Reason::ALL {
            if self.ongoing[reason.index()] {
                self.raise(reason, now);
            }
        }
        let reasons: Vec<Reason> = Reason::ALL
            .iter()
            .zip(self.raised.iter())
            .filter(|(_, at)| at.is_some_and(|at| now.saturating_sub(at) < HOLD))
            .map(|(r, _)| *r)
            .collect();
        if reasons.is_empty() {
            self.healthy_since.get_or_insert(now);
            Health::Healthy
        } else {
            self.healthy_since = None;
            Health::Degraded(reasons)
        }
    }

    /// How long the input has been continuously healthy (as of its last evaluation).
    pub fn healthy_for(&self, now: Duration) -> Duration {
        self.healthy_since
            .map_or(Duration::ZERO, |since| now.saturating_sub(since))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use lunora_media::{Codec, MpegTime, TrackId};

    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn video(dts: i64, keyframe: bool) -> Frame {
        Frame {
            track: TrackId(1),
            codec: Codec::H264,
            pts: MpegTime(dts),
            dts: MpegTime(dts),
            keyframe,
            data: Bytes::from(vec![0u8; 1000]),
        }
    }

    /// Feeds 25 fps video (keyframe each second) from `from` to `to`.
    fn feed(h: &mut InputHealth, from: u64, to: u64) {
        let mut t = from;
        while t < to {
            h.handle_frame(ms(t), &video(t as i64 * 90, t.is_multiple_of(1000)));
            t += 40;
        }
    }

    #[test]
    fn silent_input_is_lost_after_threshold() {
        let mut h = InputHealth::new(HealthSettings::default());
        h.set_has_video(true);
        h.connected(ms(0));
        feed(&mut h, 0, 3000);
        assert_eq!(h.evaluate(ms(3000)), Health::Healthy);
        assert_eq!(h.evaluate(ms(3000 - 40 + 499)), Health::Healthy);
        assert_eq!(h.evaluate(ms(3000 - 40 + 500)), Health::Lost);
    }

    #[test]
    fn frame_rate_collapse_degrades() {
        let mut h = InputHealth::new(HealthSettings::default());
        h.set_has_video(true);
        h.connected(ms(0));
        for t in (0..4000).step_by(40) {
            h.handle_frame(ms(t), &video(t as i64 * 90, t.is_multiple_of(1000)));
            h.evaluate(ms(t));
        }
        // Now 5 fps.
        let mut degraded = false;
        for t in (4000..6000).step_by(200) {
            h.handle_frame(ms(t), &video(t as i64 * 90, false));
            degraded |= matches!(h.evaluate(ms(t)), Health::Degraded(ref r) if r.contains(&Reason::FrameRate));
        }
        assert!(degraded);
    }

    #[test]
    fn timestamp_jump_degrades_then_clears() {
        let mut h = InputHealth::new(HealthSettings::default());
        h.set_has_video(true);
        h.connected(ms(0));
        feed(&mut h, 0, 3000);
        h.handle_frame(ms(3000), &video(10 * 90_000, false));
        assert_eq!(
            h.evaluate(ms(3000)),
            Health::Degraded(vec![Reason::TimestampJump])
        );
        let mut t = 3040;
        while t < 6000 {
            h.handle_frame(
                ms(t),
                &video(10 * 90_000 + (t as i64 - 3000) * 90, t % 1000 == 0),
            );
            t += 40;
        }
        assert_eq!(h.evaluate(ms(6000)), Health::Healthy);
    }

    #[test]
    fn link_loss_and_tr101290_errors_degrade() {
        let mut h = InputHealth::new(HealthSettings::default());
        h.connected(ms(0));
        feed(&mut h, 0, 1000);
        h.handle_link(ms(500), 1000, 0);
        h.handle_link(ms(1000), 2000, 50);
        h.handle_tr101290(ms(500), 0);
        h.handle_tr101290(ms(1000), 3);
        assert_eq!(
            h.evaluate(ms(1000)),
            Health::Degraded(vec![Reason::LinkLoss, Reason::Tr101290])
        );
    }

    #[test]
    fn a_content_condition_degrades_while_ongoing_and_is_held_after_it_ends() {
        let mut h = InputHealth::new(HealthSettings::default());
        h.set_has_video(true);
        h.connected(ms(0));
        feed(&mut h, 0, 3000);
        h.set_ongoing(ms(3000), Reason::Black, true);
        feed(&mut h, 3000, 8000);
        assert_eq!(h.evaluate(ms(8000)), Health::Degraded(vec![Reason::Black]));
        h.set_ongoing(ms(8000), Reason::Black, false);
        feed(&mut h, 8000, 11000);
        assert_eq!(h.evaluate(ms(9900)), Health::Degraded(vec![Reason::Black]));
        assert_eq!(h.evaluate(ms(10_000)), Health::Healthy);
    }

    #[test]
    fn missing_keyframes_degrade() {
        let mut h = InputHealth::new(HealthSettings::default());
        h.set_has_video(true);
        h.connected(ms(0));
        feed(&mut h, 0, 3000);
        let mut t = 3000;
        while t < 7000 {
            h.handle_frame(ms(t), &video(t as i64 * 90, false));
            t += 40;
        }
        assert!(
            matches!(h.evaluate(ms(7000)), Health::Degraded(ref r) if r.contains(&Reason::NoKeyframe))
        );
    }
}
