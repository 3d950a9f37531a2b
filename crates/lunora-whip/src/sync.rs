//! Sans-IO A/V timing for one WebRTC session: lip sync from the sender's RTCP reports, and the
//! interleaving that keeps video from running ahead of audio the box converts.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use lunora_media::MpegTime;

use crate::media::TrackClock;

/// One RTCP sender report: the sender's wallclock at one RTP time of one of its tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// The RTP timestamp the report names (32 bits, at the track's rate).
    pub rtp_time: u32,
    /// The sender's clock (NTP) at that RTP time.
    pub wallclock: SystemTime,
}

/// A report placed on its track's extended media time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placed {
    report: SenderReport,
    media_time: u64,
    rate: u32,
    /// This report and the track's one before it agree on the rate its RTP time runs at.
    steady: bool,
}

/// Below this the tracks count as in sync (a little under one AAC frame at 48 kHz).
const TOLERANCE_TICKS: i64 = 900;
/// How far a track's reports may stray from its nominal rate between two of them (1 %).
const RATE_TOLERANCE_DIVISOR: i128 = 100;
/// Reports closer together than this say too little about the rate to check it.
const RATE_CHECK_SPAN_NS: i128 = 200_000_000;
/// A correction larger than this says the reports are not about one clock (a broken or
/// hostile sender); the arrival-based timing stays.
const PLAUSIBLE_TICKS: i64 = 10 * 90_000;

/// Lip sync from the sender's own clock.
///
/// Each [`TrackClock`] is anchored at its first packet's arrival, which a busy box or a
/// jittery network stamps late by a different amount per track (0.3 s apart was seen on a
/// loaded 2-core box). The sender's reports say which RTP times of the two tracks it took at
/// the same instant; from them the audio track is moved onto the video track's timeline.
/// Reports are trusted only when they hold together: each track's last two agree on the rate
/// its RTP time runs at (GStreamer's `webrtcbin` on a loaded box sent reports whose RTP time
/// ran at twice the rate), and a move is made only when two successive report pairs agree on
/// it (its first reports were 0.57 s off, both tracks alike).
#[derive(Debug, Default)]
pub struct LipSync {
    video: Option<Placed>,
    audio: Option<Placed>,
    /// What the last report pair asked for, waiting for the next to agree.
    unconfirmed: Option<i64>,
    /// Two successive report pairs have agreed: audio is placed by the sender's clock.
    trusted: bool,
}

impl LipSync {
    /// Takes the video track's latest report, as carried by a unit at `media_time` (extended);
    /// true when it is a new one.
    pub fn video_report(&mut self, report: SenderReport, media_time: u64, rate: u32) -> bool {
        replace(&mut self.video, report, media_time, rate)
    }

    /// The same for the audio track.
    pub fn audio_report(&mut self, report: SenderReport, media_time: u64, rate: u32) -> bool {
        replace(&mut self.audio, report, media_time, rate)
    }

    /// 90 kHz ticks to add to the audio track's times so that audio and video the sender
    /// took at the same instant carry the same PTS; call after each new report. `None` until
    /// two successive report pairs agree on it, when the tracks already agree, or when the
    /// reports are implausible.
    pub fn audio_correction(&mut self, video: &TrackClock, audio: &TrackClock) -> Option<i64> {
        let Some(wanted) = self.apart(video, audio) else {
            self.unconfirmed = None;
            return None;
        };
        let confirmed = self
            .unconfirmed
            .replace(wanted)
            .is_some_and(|before| (before - wanted).abs() <= TOLERANCE_TICKS);
        self.trusted |= confirmed;
        if !confirmed || wanted.abs() <= TOLERANCE_TICKS {
            return None;
        }
        // Once moved, the next pair measures from the new place.
        self.unconfirmed = None;
        Some(wanted)
    }

    /// Whether audio is placed by the sender's reports (two successive pairs agreed) rather
    /// than by the first packets' arrival.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// How far audio is from where the latest reports put it, in 90 kHz ticks.
    fn apart(&self, video: &TrackClock, audio: &TrackClock) -> Option<i64> {
        let (v, a) = (self.video?, self.audio?);
        if !(v.steady && a.steady) {
            return None;
        }
        let video_time = extend(v.report.rtp_time, v.media_time);
        let audio_time = extend(a.report.rtp_time, a.media_time);
        // The audio track's RTP time at the instant of the video report.
        let apart_ns = signed_nanos(v.report.wallclock, a.report.wallclock)?;
        let audio_at = audio_time + apart_ns * i128::from(a.rate) / 1_000_000_000;
        let correction = video.mapped(video_time)? - audio.mapped(audio_at)?;
        let correction = i64::try_from(correction).ok()?;
        (correction.abs() <= PLAUSIBLE_TICKS).then_some(correction)
    }
}

fn replace(slot: &mut Option<Placed>, report: SenderReport, media_time: u64, rate: u32) -> bool {
    if slot.is_some_and(|p| p.report == report) {
        return false;
    }
    let rate = rate.max(1);
    let steady = slot.is_some_and(|before| {
        let Some(span) = signed_nanos(report.wallclock, before.report.wallclock) else {
            return false;
        };
        if span < 0 {
            return false;
        }
        if span < RATE_CHECK_SPAN_NS {
            return before.steady;
        }
        let advanced =
            extend(report.rtp_time, media_time) - extend(before.report.rtp_time, before.media_time);
        let expected = span * i128::from(rate) / 1_000_000_000;
        (advanced - expected).abs() <= expected / RATE_TOLERANCE_DIVISOR
    });
    *slot = Some(Placed {
        report,
        media_time,
        rate,
        steady,
    });
    true
}

/// The extended time of the 32-bit RTP time `rtp_time`, taken nearest `near` (an extended
/// time of the same track): a report may be from just before or after a wrap.
fn extend(rtp_time: u32, near: u64) -> i128 {
    let low = u32::try_from(near & u64::from(u32::MAX)).unwrap_or(0);
    let apart = i32::from_be_bytes(rtp_time.wrapping_sub(low).to_be_bytes());
    i128::from(near) + i128::from(apart)
}

/// `later - earlier` in nanoseconds, either sign.
fn signed_nanos(later: SystemTime, earlier: SystemTime) -> Option<i128> {
    match later.duration_since(earlier) {
        Ok(d) => i128::try_from(d.as_nanos()).ok(),
        Err(e) => i128::try_from(e.duration().as_nanos()).ok().map(|n| -n),
    }
}

/// The longest video is held waiting for audio: beyond it audio counts as stalled and video
/// goes on alone (the converter's start on a loaded box took up to 1 s).
pub const MAX_HOLD: Duration = Duration::from_millis(1_500);
/// Held video beyond this many bytes goes on regardless (a peer's units are ≤ 8 MiB each).
const MAX_HOLD_BYTES: usize = 64 * 1024 * 1024;

/// Holds video until the converted audio of the same time has gone out, so the channel's
/// outputs carry the two interleaved as a muxer would: the Opus → AAC conversion runs behind
/// the video by its own latency (about 1 s while it starts), and a stream whose audio trails
/// its video by that much is one a player or a platform's ingest cannot find the audio in
/// within its probe window. Once no audio has gone out for [`MAX_HOLD`] (a publisher without
/// a microphone, a conversion that stalled) video goes straight on until audio comes again.
#[derive(Debug)]
pub struct Interleaver<T> {
    held: VecDeque<(MpegTime, Instant, usize, T)>,
    held_bytes: usize,
    /// The end of the last audio frame sent.
    audio_until: Option<MpegTime>,
    /// When the first video unit was held, and when audio last went out.
    first_held: Option<Instant>,
    audio_sent_at: Option<Instant>,
}

impl<T> Default for Interleaver<T> {
    fn default() -> Self {
        Interleaver {
            held: VecDeque::new(),
            held_bytes: 0,
            audio_until: None,
            first_held: None,
            audio_sent_at: None,
        }
    }
}

impl<T> Interleaver<T> {
    /// Holds a video unit of `bytes` at `pts`, which came at `now`.
    pub fn hold(&mut self, pts: MpegTime, bytes: usize, now: Instant, unit: T) {
        self.first_held.get_or_insert(now);
        self.held_bytes += bytes;
        self.held.push_back((pts, now, bytes, unit));
    }

    /// Audio up to `until` (a frame's PTS plus its duration) went out at `now`.
    pub fn audio_sent(&mut self, until: MpegTime, now: Instant) {
        self.audio_until = Some(self.audio_until.map_or(until, |t| t.max(until)));
        self.audio_sent_at = Some(now);
    }

    /// The next unit that may go now: audio has reached its time, it has waited
    /// [`MAX_HOLD`], audio has stopped coming, or too much is held.
    pub fn release(&mut self, now: Instant) -> Option<T> {
        let (pts, since, _, _) = self.held.front()?;
        let due = self.audio_until.is_some_and(|until| *pts <= until)
            || now.saturating_duration_since(*since) >= MAX_HOLD
            || self.no_audio(now)
            || self.held_bytes > MAX_HOLD_BYTES;
        due.then(|| self.pop()).flatten()
    }

    /// No audio went out for [`MAX_HOLD`], or none since video began that long ago.
    fn no_audio(&self, now: Instant) -> bool {
        self.audio_sent_at
            .or(self.first_held)
            .is_some_and(|at| now.saturating_duration_since(at) >= MAX_HOLD)
    }

    /// Everything held, in order (audio has ended).
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.held_bytes = 0;
        self.held.drain(..).map(|(_, _, _, unit)| unit)
    }

    /// When the oldest held unit must go if audio does not come first.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.front().map(|(_, since, _, _)| *since + MAX_HOLD)
    }

    fn pop(&mut self) -> Option<T> {
        let (_, _, bytes, unit) = self.held.pop_front()?;
        self.held_bytes = self.held_bytes.saturating_sub(bytes);
        Some(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_secs_f64(secs)
    }

    /// A sender that took video RTP 1_000_000 and audio RTP 50_000 at wallclock 0.
    fn video_report(secs: f64) -> (SenderReport, u64) {
        let rtp = 1_000_000 + (secs * 90_000.0) as u64;
        (
            SenderReport {
                rtp_time: rtp as u32,
                wallclock: at(secs),
            },
            rtp,
        )
    }

    fn audio_report(secs: f64) -> (SenderReport, u64) {
        let rtp = 50_000 + (secs * 48_000.0) as u64;
        (
            SenderReport {
                rtp_time: rtp as u32,
                wallclock: at(secs),
            },
            rtp,
        )
    }

    /// Anchored on arrival: video's first unit at 100 ms, audio's at 420 ms — the box was busy
    /// when the audio came and read it 320 ms late.
    fn clocks() -> (TrackClock, TrackClock) {
        let mut video = TrackClock::new(90_000);
        let mut audio = TrackClock::new(48_000);
        video.ticks(1_000_000, Duration::from_millis(100));
        audio.ticks(50_000, Duration::from_millis(420));
        (video, audio)
    }

    #[test]
    fn reports_move_audio_onto_the_instant_video_was_taken() {
        let (video, mut audio) = clocks();
        let mut sync = LipSync::default();
        // As from a browser: video reports every second, audio every five, never together.
        let (report, time) = video_report(1.0);
        assert!(sync.video_report(report, time, 90_000));
        let (report, time) = audio_report(2.3);
        assert!(sync.audio_report(report, time, 48_000));
        let (report, time) = video_report(2.0);
        assert!(sync.video_report(report, time, 90_000));
        assert_eq!(
            sync.audio_correction(&video, &audio),
            None,
            "one audio report says nothing of its rate yet"
        );
        let (report, time) = audio_report(7.3);
        sync.audio_report(report, time, 48_000);
        assert_eq!(
            sync.audio_correction(&video, &audio),
            None,
            "one report pair is not yet trusted"
        );
        let (report, time) = video_report(8.0);
        sync.video_report(report, time, 90_000);
        assert!(!sync.trusted());
        let correction = sync.audio_correction(&video, &audio).expect("a correction");
        assert_eq!(correction, -28_800, "320 ms earlier");
        assert!(sync.trusted());
        audio.shift(correction);
        for secs in [9.0, 10.0] {
            let (report, time) = video_report(secs);
            sync.video_report(report, time, 90_000);
            assert_eq!(sync.audio_correction(&video, &audio), None, "in sync now");
        }
        let (mut video, mut audio) = (video, audio);
        assert_eq!(
            audio.ticks(50_000 + 48_000, Duration::ZERO),
            video.ticks(1_090_000, Duration::ZERO),
            "a second later both tracks meet"
        );
        // The same report again is nothing new.
        let (report, time) = video_report(10.0);
        assert!(!sync.video_report(report, time + 4_000, 90_000));
    }

    #[test]
    fn reports_whose_rtp_time_runs_at_the_wrong_rate_move_nothing() {
        let (video, audio) = clocks();
        let mut sync = LipSync::default();
        // RTP time in the reports runs at twice the rate, as GStreamer's did on a busy box.
        for n in 0..6 {
            let secs = f64::from(n);
            let (mut report, time) = video_report(2.0 * secs);
            report.wallclock = at(secs);
            sync.video_report(report, time, 90_000);
            let (mut report, time) = audio_report(2.0 * secs);
            report.wallclock = at(secs);
            sync.audio_report(report, time, 48_000);
            assert_eq!(sync.audio_correction(&video, &audio), None);
        }
        assert!(!sync.trusted());
    }

    #[test]
    fn first_reports_that_disagree_with_the_next_move_nothing() {
        let mut video = TrackClock::new(90_000);
        let mut audio = TrackClock::new(48_000);
        video.ticks(1_000_000, Duration::ZERO);
        audio.ticks(50_000, Duration::ZERO);
        let mut sync = LipSync::default();
        // Two steady reports per track, then one video report 570 ms off.
        for secs in [1.0, 2.0] {
            let (report, time) = video_report(secs);
            sync.video_report(report, time, 90_000);
            let (report, time) = audio_report(secs);
            sync.audio_report(report, time, 48_000);
        }
        assert_eq!(sync.audio_correction(&video, &audio), None, "in sync");
        let (mut report, time) = video_report(2.2);
        report.wallclock = at(2.2 - 0.57);
        sync.video_report(report, time, 90_000);
        assert_eq!(
            sync.audio_correction(&video, &audio),
            None,
            "one pair says so"
        );
        let (report, time) = video_report(3.0);
        sync.video_report(report, time, 90_000);
        assert_eq!(sync.audio_correction(&video, &audio), None);
    }

    #[test]
    fn reports_that_cannot_be_one_clock_change_nothing() {
        let (video, audio) = clocks();
        let mut sync = LipSync::default();
        for secs in [0.0, 1.0, 2.0] {
            let (report, time) = video_report(secs);
            sync.video_report(report, time, 90_000);
            let (mut report, time) = audio_report(secs);
            report.wallclock = at(secs + 3_600.0);
            sync.audio_report(report, time, 48_000);
            assert_eq!(sync.audio_correction(&video, &audio), None);
        }
    }

    #[test]
    fn a_report_across_the_32_bit_wrap_is_placed_near_the_track() {
        let near = u64::from(u32::MAX) + 10;
        assert_eq!(extend(u32::MAX - 5, near), i128::from(u32::MAX) - 5);
        assert_eq!(extend(20, near), i128::from(u32::MAX) + 21);
    }

    #[test]
    fn video_waits_for_audio_of_its_time_or_for_the_longest_hold() {
        let start = Instant::now();
        let mut order = Interleaver::default();
        order.hold(MpegTime(0), 10, start, "v0");
        order.hold(MpegTime(3_000), 10, start, "v1");
        assert_eq!(order.release(start), None, "no audio yet");
        order.audio_sent(MpegTime(1_920), start);
        assert_eq!(order.release(start), Some("v0"));
        assert_eq!(order.release(start), None);
        order.audio_sent(MpegTime(3_840), start);
        assert_eq!(order.release(start), Some("v1"));
        // Audio runs behind: video waits up to the longest hold, not longer.
        let later = start + MAX_HOLD / 2;
        order.hold(MpegTime(6_000), 10, later, "v2");
        assert_eq!(order.deadline(), Some(later + MAX_HOLD));
        assert_eq!(order.release(later), None);
        order.audio_sent(MpegTime(5_760), later + MAX_HOLD / 2);
        assert_eq!(order.release(later + MAX_HOLD / 2), None);
        assert_eq!(order.release(later + MAX_HOLD), Some("v2"));
        assert_eq!(order.deadline(), None);
    }

    #[test]
    fn without_audio_video_waits_only_until_audio_counts_as_gone() {
        let start = Instant::now();
        let mut order = Interleaver::default();
        // A publisher with no microphone: the first units wait the longest hold...
        order.hold(MpegTime(0), 10, start, 0);
        assert_eq!(order.release(start), None);
        let gone = start + MAX_HOLD;
        order.hold(MpegTime(3_000), 10, gone, 1);
        assert_eq!(order.release(gone), Some(0));
        // ...then go straight on, the one just held too.
        assert_eq!(order.release(gone), Some(1));
        order.hold(MpegTime(6_000), 10, gone, 2);
        assert_eq!(order.release(gone), Some(2));
        // Audio comes back: video waits for it again.
        order.audio_sent(MpegTime(7_680), gone);
        order.hold(MpegTime(9_000), 10, gone, 3);
        assert_eq!(order.release(gone), None);
        order.audio_sent(MpegTime(9_600), gone);
        assert_eq!(order.release(gone), Some(3));
    }

    #[test]
    fn held_video_is_bounded_in_bytes() {
        let now = Instant::now();
        let mut order = Interleaver::default();
        for n in 0..9 {
            order.hold(MpegTime(n * 3_000), 8 * 1024 * 1024, now, n);
        }
        assert_eq!(order.release(now), Some(0), "72 MiB held: the oldest goes");
        assert_eq!(order.release(now), None, "64 MiB held: within the bound");
        assert_eq!(
            order.drain().collect::<Vec<_>>(),
            (1..9).collect::<Vec<_>>()
        );
    }
}
