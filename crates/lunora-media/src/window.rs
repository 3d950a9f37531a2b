//! `RecentCount`: how many events happened in a sliding window ("errors in the last 5 min"),
//! fed from a cumulative total. Time is an input (any monotonic origin), so it is tested in
//! virtual time.

use std::collections::VecDeque;
use std::time::Duration;

/// Events in the last `window`, kept in buckets of `bucket` (so an event leaves the window
/// between `window - bucket` and `window` after it was seen). Memory is bounded by the number
/// of buckets whatever the rate.
#[derive(Debug, Clone)]
pub struct RecentCount {
    bucket_nanos: u128,
    buckets: u128,
    /// (bucket number, events in it), oldest first, only buckets with events.
    counts: VecDeque<(u128, u64)>,
    last_total: Option<u64>,
}

impl RecentCount {
    /// A window of `window` made of `bucket`-long steps (at least one step; a zero bucket is
    /// taken as one nanosecond).
    pub fn new(window: Duration, bucket: Duration) -> RecentCount {
        let bucket_nanos = bucket.as_nanos().max(1);
        RecentCount {
            bucket_nanos,
            buckets: window.as_nanos().div_ceil(bucket_nanos).max(1),
            counts: VecDeque::new(),
            last_total: None,
        }
    }

    fn bucket(&self, now: Duration) -> u128 {
        now.as_nanos() / self.bucket_nanos
    }

    /// Counts `n` events at `now`.
    pub fn add(&mut self, now: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let bucket = self.bucket(now);
        match self.counts.back_mut() {
            // A clock that went back counts in the newest bucket.
            Some((last, count)) if *last >= bucket => *count = count.saturating_add(n),
            _ => self.counts.push_back((bucket, n)),
        }
        self.expire(bucket);
    }

    /// Takes a cumulative total read at `now`: what it grew by since the last one is counted
    /// at `now`. The first total only sets the baseline; a total lower than the last (a
    /// counter that was reset) counts from zero.
    pub fn observe_total(&mut self, now: Duration, total: u64) {
        let grew = match self.last_total {
            None => 0,
            Some(last) if total >= last => total - last,
            Some(_) => total,
        };
        self.last_total = Some(total);
        self.add(now, grew);
    }

    /// Events in the window that ends at `now`.
    pub fn sum(&self, now: Duration) -> u64 {
        let oldest = self.oldest(self.bucket(now));
        self.counts
            .iter()
            .filter(|(bucket, _)| *bucket >= oldest)
            .fold(0u64, |sum, (_, n)| sum.saturating_add(*n))
    }

    fn oldest(&self, current: u128) -> u128 {
        (current + 1).saturating_sub(self.buckets)
    }

    fn expire(&mut self, current: u128) {
        let oldest = self.oldest(current);
        while self
            .counts
            .front()
            .is_some_and(|(bucket, _)| *bucket < oldest)
        {
            self.counts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn s(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    fn five_minutes() -> RecentCount {
        RecentCount::new(5 * MIN, s(10))
    }

    #[test]
    fn errors_leave_the_window_five_minutes_later_in_ten_second_steps() {
        let mut recent = five_minutes();
        recent.observe_total(s(0), 0);
        recent.observe_total(s(12), 3); // in bucket 10–20 s
        assert_eq!(recent.sum(s(12)), 3);
        recent.observe_total(s(100), 5);
        assert_eq!(recent.sum(s(100)), 5);
        // Still within 5 min of the first errors' bucket...
        assert_eq!(recent.sum(s(309)), 5);
        // ...then they age out, the later ones stay until theirs does.
        assert_eq!(recent.sum(s(310)), 2);
        assert_eq!(recent.sum(s(399)), 2);
        assert_eq!(recent.sum(s(400)), 0);
        // The total never grew again: the stream is healthy, the window is clear.
        recent.observe_total(s(500), 5);
        assert_eq!(recent.sum(s(500)), 0);
    }

    #[test]
    fn the_first_total_is_a_baseline_and_a_reset_counts_from_zero() {
        let mut recent = five_minutes();
        // A daemon that has seen 40 errors before this window began does not show them.
        recent.observe_total(s(1000), 40);
        assert_eq!(recent.sum(s(1000)), 0);
        recent.observe_total(s(1001), 42);
        // The counter restarted (a new analyser) and has seen 3 since.
        recent.observe_total(s(1002), 3);
        assert_eq!(recent.sum(s(1002)), 5);
    }

    #[test]
    fn a_steady_error_rate_keeps_a_bounded_number_of_buckets() {
        let mut recent = five_minutes();
        for second in 0..3600 {
            recent.add(s(second), 2);
        }
        assert!(recent.counts.len() <= 30, "{} buckets", recent.counts.len());
        // The window at 3599 s is the 30 buckets 3300–3599 s: 300 seconds of 2 errors.
        assert_eq!(recent.sum(s(3599)), 2 * 300);
        assert_eq!(recent.sum(s(3599) + 5 * MIN), 0);
    }

    #[test]
    fn huge_counts_saturate_instead_of_wrapping() {
        let mut recent = five_minutes();
        recent.add(s(0), u64::MAX);
        recent.add(s(1), 5);
        recent.add(s(20), 5);
        assert_eq!(recent.sum(s(20)), u64::MAX);
    }
}
