//! Content health: black or frozen pictures and silent audio, judged from measurements of a
//! sampled, low-resolution decode (the media engine makes them; this core never sees a pixel).
//!
//! A condition starts when its threshold has held for the configured duration, counted from
//! the first sample that met it, and ends at the first sample that does not. What it does to
//! the input's health and to switching (the `HOLD` after it ends, `error_clear` before a return)
//! is the same as for every other [`Reason`].

use std::collections::VecDeque;
use std::time::Duration;

use crate::health::Reason;

/// Thresholds and durations. The defaults follow MediaLive's input-loss behaviour settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentSettings {
    /// Mean luma (fraction of the full range) below which a picture is black.
    pub black_threshold: f32,
    pub black: Duration,
    pub freeze: Duration,
    /// RMS level (dBFS) below which audio is silent.
    pub silence_db: f32,
    pub silence: Duration,
}

impl Default for ContentSettings {
    fn default() -> Self {
        ContentSettings {
            black_threshold: 0.1,
            black: Duration::from_secs(2),
            freeze: Duration::from_secs(2),
            silence_db: -50.0,
            silence: Duration::from_secs(2),
        }
    }
}

/// Mean absolute change from the previous sampled picture (fraction of the range) below which
/// the picture counts as unchanged. Decoded frames of a still source differ by coding noise
/// only, far below this; the slowest real motion is far above it.
pub const FREEZE_CHANGE: f32 = 0.002;

/// What the probe measured on one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measurement {
    /// A sampled picture: its mean luma and its mean absolute change from the previous sample
    /// (fractions of the range; no change for the first picture).
    Picture { luma: f32, change: Option<f32> },
    /// The RMS level of a stretch of decoded audio, in dBFS over all its channels.
    Audio { rms_db: f32 },
}

/// A condition that started or ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentChange {
    pub reason: Reason,
    pub present: bool,
    /// Started: the first sample that met the threshold. Ended: the sample that did not.
    pub since: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
struct Condition {
    /// The first sample of the current run that met the threshold.
    since: Option<Duration>,
    raised: bool,
}

impl Condition {
    /// `began`: when the run would have begun if this sample starts it (a sample can say the
    /// condition already held before it was taken).
    fn observe(
        &mut self,
        now: Duration,
        began: Duration,
        holds: bool,
        duration: Duration,
        reason: Reason,
    ) -> Option<ContentChange> {
        if !holds {
            self.since = None;
            return std::mem::take(&mut self.raised).then_some(ContentChange {
                reason,
                present: false,
                since: now,
            });
        }
        let since = *self.since.get_or_insert(began);
        if !self.raised && now.saturating_sub(since) >= duration {
            self.raised = true;
            return Some(ContentChange {
                reason,
                present: true,
                since,
            });
        }
        None
    }
}

/// One input's content conditions, fed with measurements and the time they were taken.
#[derive(Debug, Clone)]
pub struct ContentDetector {
    settings: ContentSettings,
    black: Condition,
    frozen: Condition,
    silent: Condition,
    /// When the previous picture was measured.
    last_picture: Option<Duration>,
    changes: VecDeque<ContentChange>,
}

impl ContentDetector {
    pub fn new(settings: ContentSettings) -> Self {
        ContentDetector {
            settings,
            black: Condition::default(),
            frozen: Condition::default(),
            silent: Condition::default(),
            last_picture: None,
            changes: VecDeque::new(),
        }
    }

    /// New thresholds; runs in progress keep their start.
    pub fn set_settings(&mut self, settings: ContentSettings) {
        self.settings = settings;
    }

    pub fn handle(&mut self, now: Duration, measurement: Measurement) {
        match measurement {
            Measurement::Picture { luma, change } => self.handle_picture(now, luma, change),
            Measurement::Audio { rms_db } => self.handle_audio(now, rms_db),
        }
    }

    /// A black picture is not also reported frozen: black is the more useful reason. A picture
    /// unchanged from the previous one shows that the freeze began with the previous one.
    fn handle_picture(&mut self, now: Duration, luma: f32, change: Option<f32>) {
        let black = luma < self.settings.black_threshold;
        let frozen = !black && change.is_some_and(|c| c < FREEZE_CHANGE);
        let settings = self.settings;
        let previous = self.last_picture.replace(now).unwrap_or(now);
        let black = self
            .black
            .observe(now, now, black, settings.black, Reason::Black);
        let frozen = self
            .frozen
            .observe(now, previous, frozen, settings.freeze, Reason::Frozen);
        self.changes.extend(black.into_iter().chain(frozen));
    }

    fn handle_audio(&mut self, now: Duration, rms_db: f32) {
        let settings = self.settings;
        let silent = rms_db < settings.silence_db;
        self.changes.extend(self.silent.observe(
            now,
            now,
            silent,
            settings.silence,
            Reason::Silent,
        ));
    }

    pub fn poll_change(&mut self) -> Option<ContentChange> {
        self.changes.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn changes(d: &mut ContentDetector) -> Vec<(Reason, bool, u64)> {
        std::iter::from_fn(|| d.poll_change())
            .map(|c| (c.reason, c.present, c.since.as_millis() as u64))
            .collect()
    }

    /// Five pictures a second from `from` to `to`, each of `luma` and `change`.
    fn pictures(d: &mut ContentDetector, from: u64, to: u64, luma: f32, change: f32) {
        for t in (from..to).step_by(200) {
            d.handle_picture(ms(t), luma, Some(change));
        }
    }

    #[test]
    fn a_black_stretch_is_reported_after_its_duration_and_ends_with_the_picture() {
        let mut d = ContentDetector::new(ContentSettings::default());
        pictures(&mut d, 0, 5000, 0.5, 0.05);
        assert!(changes(&mut d).is_empty());
        pictures(&mut d, 5000, 6800, 0.06, 0.0);
        assert!(
            changes(&mut d).is_empty(),
            "1.8 s of black is not yet black"
        );
        pictures(&mut d, 6800, 9000, 0.06, 0.0);
        assert_eq!(changes(&mut d), vec![(Reason::Black, true, 5000)]);
        pictures(&mut d, 9000, 9400, 0.5, 0.05);
        assert_eq!(changes(&mut d), vec![(Reason::Black, false, 9000)]);
    }

    #[test]
    fn a_still_picture_is_frozen_but_a_black_one_only_black() {
        let mut d = ContentDetector::new(ContentSettings::default());
        pictures(&mut d, 0, 3000, 0.5, 0.0005);
        assert_eq!(changes(&mut d), vec![(Reason::Frozen, true, 0)]);
        pictures(&mut d, 3000, 6000, 0.02, 0.0);
        assert_eq!(
            changes(&mut d),
            vec![(Reason::Frozen, false, 3000), (Reason::Black, true, 3000)]
        );
    }

    #[test]
    fn a_freeze_counts_from_the_first_picture_that_stayed() {
        let mut d = ContentDetector::new(ContentSettings::default());
        pictures(&mut d, 0, 5000, 0.5, 0.05);
        // The picture at 5 s differs from the one before; every later one equals it.
        d.handle_picture(ms(5000), 0.5, Some(0.05));
        pictures(&mut d, 5200, 6999, 0.5, 0.0);
        assert!(changes(&mut d).is_empty());
        pictures(&mut d, 7000, 7200, 0.5, 0.0);
        assert_eq!(changes(&mut d), vec![(Reason::Frozen, true, 5000)]);
    }

    #[test]
    fn a_short_dip_raises_nothing() {
        let mut d = ContentDetector::new(ContentSettings::default());
        for round in 0..10 {
            let t = round * 2000;
            pictures(&mut d, t, t + 1800, 0.0, 0.0);
            pictures(&mut d, t + 1800, t + 2000, 0.5, 0.1);
            d.handle_audio(ms(t), -90.0);
            d.handle_audio(ms(t + 1900), -20.0);
        }
        assert!(changes(&mut d).is_empty());
    }

    #[test]
    fn silence_follows_its_own_threshold_and_duration() {
        let mut d = ContentDetector::new(ContentSettings {
            silence_db: -40.0,
            silence: ms(1000),
            ..ContentSettings::default()
        });
        for t in (0..2000).step_by(100) {
            d.handle_audio(ms(t), -30.0);
        }
        for t in (2000..3500).step_by(100) {
            d.handle_audio(ms(t), -45.0);
        }
        d.handle_audio(ms(3500), -12.0);
        assert_eq!(
            changes(&mut d),
            vec![(Reason::Silent, true, 2000), (Reason::Silent, false, 3500)]
        );
    }
}
