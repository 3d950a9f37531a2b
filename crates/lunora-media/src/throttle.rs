//! Rate limiting for repeated log lines, per source, so a peer in a loop cannot flood the log.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// Says when a repeated line from one source (an address, an input) is due: at most once per
/// interval per source, with the number left out since. Time is the caller's monotonic clock.
#[derive(Debug)]
pub struct LogThrottle<K> {
    interval: Duration,
    sources: HashMap<K, (Duration, u64)>,
}

impl<K: Eq + Hash> LogThrottle<K> {
    /// Sources remembered at once; a flood from many sources forgets the stale ones first.
    const MAX_SOURCES: usize = 4096;

    pub fn new(interval: Duration) -> Self {
        LogThrottle {
            interval,
            sources: HashMap::new(),
        }
    }

    /// `Some(lines left out since the last one)` when a line from `source` should be written
    /// at `now`; `None` (and counted) otherwise.
    pub fn due(&mut self, now: Duration, source: K) -> Option<u64> {
        let interval = self.interval;
        if let Some((last, suppressed)) = self.sources.get_mut(&source) {
            if now.saturating_sub(*last) < interval {
                *suppressed += 1;
                return None;
            }
            *last = now;
            return Some(std::mem::take(suppressed));
        }
        if self.sources.len() >= Self::MAX_SOURCES {
            self.sources
                .retain(|_, (last, _)| now.saturating_sub(*last) < interval);
            if self.sources.len() >= Self::MAX_SOURCES {
                // Every source is recent: forgetting them all is bounded and only lets one
                // more line each through early.
                self.sources.clear();
            }
        }
        self.sources.insert(source, (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn one_line_per_interval_per_source_with_the_count_left_out() {
        let mut throttle = LogThrottle::new(S(10));
        assert_eq!(throttle.due(S(0), "a"), Some(0));
        assert_eq!(throttle.due(S(1), "a"), None);
        assert_eq!(
            throttle.due(S(2), "b"),
            Some(0),
            "another source is not held back"
        );
        assert_eq!(throttle.due(S(3), "a"), None);
        assert_eq!(throttle.due(S(11), "a"), Some(2));
    }

    #[test]
    fn a_flood_of_sources_stays_bounded() {
        let mut throttle = LogThrottle::new(S(10));
        for n in 0..100_000u32 {
            throttle.due(S(1), n);
        }
        assert!(throttle.sources.len() <= 4096);
    }
}
