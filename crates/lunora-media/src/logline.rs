//! Log lines that peers cannot abuse: repeated lines rate-limited per source, peer strings escaped
//! and bounded.

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

/// A string from a peer or a user, fit for a log line: control characters (newlines that would
/// forge log lines, terminal escapes) escaped, and cut after [`Printable::MAX_CHARS`]
/// characters with the length left out named.
#[derive(Debug, Clone, Copy)]
pub struct Printable<'a>(&'a str);

impl Printable<'_> {
    pub const MAX_CHARS: usize = 128;
}

/// See [`Printable`].
pub fn printable(text: &str) -> Printable<'_> {
    Printable(text)
}

impl std::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (shown, (i, c)) in self.0.char_indices().enumerate() {
            if shown == Self::MAX_CHARS {
                return write!(f, "…(+{} bytes)", self.0.len() - i);
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn control_characters_cannot_forge_a_log_line() {
        let forged = printable("live\n2026-11-29T08:00:00Z INFO lunora: forged\x1b[2J").to_string();
        assert!(!forged.contains('\n') && !forged.contains('\x1b'));
        assert_eq!(
            forged,
            "live\\n2026-11-29T08:00:00Z INFO lunora: forged\\u{1b}[2J"
        );
    }

    #[test]
    fn long_values_are_cut_and_say_how_much_was_left_out() {
        let long = "é".repeat(65_000);
        let shown = printable(&long).to_string();
        assert!(shown.starts_with(&"é".repeat(128)));
        assert!(shown.ends_with(&format!("…(+{} bytes)", 2 * (65_000 - 128))));
        assert_eq!(printable("short").to_string(), "short");
    }
}
