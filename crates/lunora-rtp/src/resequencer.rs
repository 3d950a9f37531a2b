//! Puts RTP packets back in sequence order: the reorder buffer of one input, and with two
//! paths the SMPTE 2022-7 merger (the first copy of each sequence number wins).
//!
//! A packet is released as soon as every earlier sequence number has been; a missing one is
//! waited for at most `window` after the first packet held behind it arrived, then declared
//! lost. What is held is bounded by `max_packets` too, so a peer cannot grow it. Sequence
//! numbers are extended to 64 bits across the 16-bit wrap. A jump of more than
//! `RESET_DISTANCE` (a restarted sender) releases what is held and starts again there.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// A sequence number this far from the newest one starts a new stream.
const RESET_DISTANCE: i64 = 3_000;
/// Sequence numbers remembered after release: duplicates of these are recognised, and with
/// two paths, which path delivered each one is settled from this.
const HISTORY: usize = 8_192;

/// `sequence` extended to 64 bits as the one nearest `highest` (the 16-bit distance taken the
/// short way round).
pub(crate) fn extend_sequence(highest: u64, sequence: u16) -> u64 {
    // Only the low 16 bits of `highest` matter here; the truncation is the point.
    let delta = i64::from(sequence.wrapping_sub(highest as u16) as i16);
    highest.saturating_add_signed(delta)
}

/// Per-path figures (totals since the resequencer was made).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PathStats {
    /// Packets this path delivered (copies included).
    pub received: u64,
    /// Sequence numbers this path never delivered within the window.
    pub lost: u64,
    /// Packets this path delivered first: its share of the output.
    pub first: u64,
    /// Packets that arrived after a later one from this path.
    pub reordered: u64,
    /// Second copies of a sequence number from this same path.
    pub duplicates: u64,
    /// Packets that came after their sequence number was given up on or settled.
    pub late: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResequencerStats {
    /// Packets released, in order.
    pub released: u64,
    /// Sequence numbers no path delivered in time: gaps in the output.
    pub lost: u64,
    /// Sequence numbers released early because `max_packets` were held.
    pub overflowed: u64,
    /// Times the sequence jumped so far that the stream was started again.
    pub resets: u64,
    /// Mean of (arrival on path 1 − arrival on path 0) over packets both delivered, in ms;
    /// `None` until one has.
    pub delay_difference_ms: Option<f64>,
}

/// What comes out, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released<T> {
    Packet(T),
    /// This many sequence numbers before the next packet will never come.
    Lost(u64),
}

struct Held<T> {
    item: T,
    arrived: Duration,
}

#[derive(Clone, Copy, Default)]
struct Seen {
    /// Extended sequence number + 1 (0: empty slot).
    tag: u64,
    paths: u8,
    first_at: Duration,
}

pub struct Resequencer<T> {
    window: Duration,
    max_packets: usize,
    paths: Vec<PathStats>,
    /// The highest sequence number each path has delivered: reordering is per path.
    path_highest: Vec<Option<u64>>,
    stats: ResequencerStats,
    /// The next sequence number to release, and the highest seen; `None` before the first.
    next: Option<u64>,
    highest: u64,
    held: BTreeMap<u64, Held<T>>,
    history: Vec<Seen>,
    /// Released (or given up) sequence numbers waiting for their window to pass before each
    /// path's share is settled.
    unsettled: VecDeque<(u64, Duration)>,
    ready: VecDeque<Released<T>>,
}

impl<T> std::fmt::Debug for Resequencer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resequencer")
            .field("window", &self.window)
            .field("held", &self.held.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<T> Resequencer<T> {
    /// `paths`: 1 for a reorder buffer, 2 for a merger (at most 8).
    pub fn new(paths: usize, window: Duration, max_packets: usize) -> Self {
        Resequencer {
            window,
            max_packets: max_packets.max(1),
            paths: vec![PathStats::default(); paths.clamp(1, 8)],
            path_highest: vec![None; paths.clamp(1, 8)],
            stats: ResequencerStats::default(),
            next: None,
            highest: 0,
            held: BTreeMap::new(),
            history: vec![Seen::default(); HISTORY],
            unsettled: VecDeque::new(),
            ready: VecDeque::new(),
        }
    }

    pub fn stats(&self) -> ResequencerStats {
        self.stats
    }

    pub fn path_stats(&self) -> &[PathStats] {
        &self.paths
    }

    /// Packets held waiting for an earlier one.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// When [`Resequencer::poll`] next has something to do without a new packet.
    pub fn next_deadline(&self) -> Option<Duration> {
        let gap = self.held.values().next().map(|h| h.arrived + self.window);
        let settle = self.unsettled.front().map(|(_, at)| *at + self.window);
        match (gap, settle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn extend(&self, sequence: u16) -> u64 {
        extend_sequence(self.highest, sequence)
    }

    fn slot(&mut self, ext: u64) -> &mut Seen {
        let index = (ext % HISTORY as u64) as usize;
        &mut self.history[index]
    }

    /// Takes a packet from `path` (out-of-range paths count as the last).
    pub fn push(&mut self, now: Duration, path: usize, sequence: u16, item: T) {
        let path = path.min(self.paths.len() - 1);
        let bit = 1u8 << path;
        self.paths[path].received += 1;
        let Some(next) = self.next else {
            // Far from 0 so that early packets reordered before the first do not underflow.
            let ext = (1 << 32) | u64::from(sequence);
            self.next = Some(ext);
            self.highest = ext;
            self.path_highest[path] = Some(ext);
            return self.accept(now, path, ext, item);
        };
        let ext = self.extend(sequence);
        if (ext as i64 - self.highest as i64).abs() > RESET_DISTANCE {
            // A new epoch past everything remembered, so no old entry can match and the
            // history need not be cleared (a peer jumping on every packet costs no more).
            let ext = (((self.highest >> 16) + 2) << 16) | u64::from(sequence);
            self.reset(now);
            self.next = Some(ext);
            self.highest = ext;
            self.path_highest[path] = Some(ext);
            return self.accept(now, path, ext, item);
        }
        let window = self.window;
        let seen = *self.slot(ext);
        if seen.tag == ext + 1 && seen.paths & bit != 0 {
            self.paths[path].duplicates += 1;
            return;
        }
        match self.path_highest[path] {
            Some(highest) if ext < highest => self.paths[path].reordered += 1,
            _ => self.path_highest[path] = Some(ext),
        }
        if seen.tag == ext + 1 {
            self.slot(ext).paths |= bit;
            self.note_delay(path, now.saturating_sub(seen.first_at));
            if ext < next && now.saturating_sub(seen.first_at) > window {
                self.paths[path].late += 1;
            }
            return;
        }
        if ext < next {
            // Given up on as lost before this copy came.
            self.paths[path].late += 1;
            return;
        }
        self.accept(now, path, ext, item);
    }

    fn accept(&mut self, now: Duration, path: usize, ext: u64, item: T) {
        self.highest = self.highest.max(ext);
        self.paths[path].first += 1;
        *self.slot(ext) = Seen {
            tag: ext + 1,
            paths: 1 << path,
            first_at: now,
        };
        self.held.insert(ext, Held { item, arrived: now });
        while self.held.len() > self.max_packets {
            self.stats.overflowed += 1;
            self.release_first(now);
        }
    }

    /// Path 1's arrival minus path 0's, averaged (the first copy came `after` earlier).
    fn note_delay(&mut self, later_path: usize, after: Duration) {
        if self.paths.len() != 2 {
            return;
        }
        let ms = after.as_secs_f64() * 1000.0;
        let sample = if later_path == 1 { ms } else { -ms };
        self.stats.delay_difference_ms = Some(match self.stats.delay_difference_ms {
            None => sample,
            Some(mean) => mean + (sample - mean) / 16.0,
        });
    }

    /// Releases the first held packet, declaring whatever is missing before it lost.
    fn release_first(&mut self, now: Duration) {
        let Some((ext, held)) = self.held.pop_first() else {
            return;
        };
        let next = self.next.unwrap_or(ext);
        if ext > next {
            let gap = ext - next;
            self.stats.lost += gap;
            for path in &mut self.paths {
                path.lost += gap;
            }
            self.ready.push_back(Released::Lost(gap));
        }
        self.next = Some(ext + 1);
        self.stats.released += 1;
        self.unsettled.push_back((ext, now));
        self.ready.push_back(Released::Packet(held.item));
    }

    fn reset(&mut self, now: Duration) {
        self.stats.resets += 1;
        while !self.held.is_empty() {
            self.release_first(now);
        }
        self.settle(Duration::MAX);
        self.path_highest.fill(None);
    }

    /// Settles each path's share of sequence numbers released more than `window` before
    /// `now` (or, when too many wait, the oldest ones).
    fn settle(&mut self, now: Duration) {
        while let Some(&(ext, at)) = self.unsettled.front() {
            if now.saturating_sub(at) < self.window && self.unsettled.len() < HISTORY / 2 {
                break;
            }
            self.unsettled.pop_front();
            let seen = *self.slot(ext);
            if seen.tag != ext + 1 {
                continue;
            }
            for (index, path) in self.paths.iter_mut().enumerate() {
                if seen.paths & (1 << index) == 0 {
                    path.lost += 1;
                }
            }
        }
    }

    /// The next thing released at `now`: packets in order, with gaps reported as `Lost`.
    pub fn poll(&mut self, now: Duration) -> Option<Released<T>> {
        self.settle(now);
        loop {
            if let Some(ready) = self.ready.pop_front() {
                return Some(ready);
            }
            let (&ext, held) = self.held.iter().next()?;
            let due = Some(ext) == self.next || now.saturating_sub(held.arrived) >= self.window;
            if !due {
                return None;
            }
            self.release_first(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(r: &mut Resequencer<u16>, now: Duration) -> Vec<Released<u16>> {
        std::iter::from_fn(|| r.poll(now)).collect()
    }

    fn packets(seqs: &[u16]) -> Vec<Released<u16>> {
        seqs.iter().map(|s| Released::Packet(*s)).collect()
    }

    #[test]
    fn in_order_packets_pass_at_once() {
        let mut r = Resequencer::new(1, ms(50), 100);
        for s in 0..5 {
            r.push(ms(0), 0, s, s);
        }
        assert_eq!(drain(&mut r, ms(0)), packets(&[0, 1, 2, 3, 4]));
        assert_eq!(r.path_stats()[0].reordered, 0);
    }

    #[test]
    fn reordered_packets_come_out_in_order_across_the_wrap() {
        let mut r = Resequencer::new(1, ms(50), 100);
        let order = [65533u16, 65535, 65534, 1, 0, 2];
        let mut out = Vec::new();
        for (i, s) in order.iter().enumerate() {
            r.push(ms(i as u64), 0, *s, *s);
            out.extend(drain(&mut r, ms(i as u64)));
        }
        assert_eq!(out, packets(&[65533, 65534, 65535, 0, 1, 2]));
        assert_eq!(r.path_stats()[0].reordered, 2);
        assert_eq!(r.stats().lost, 0);
    }

    #[test]
    fn a_missing_packet_is_waited_for_only_the_window() {
        let mut r = Resequencer::new(1, ms(50), 100);
        r.push(ms(0), 0, 10, 10);
        r.push(ms(10), 0, 12, 12);
        assert_eq!(drain(&mut r, ms(10)), packets(&[10]));
        assert_eq!(r.next_deadline(), Some(ms(60)));
        assert_eq!(drain(&mut r, ms(59)), vec![]);
        assert_eq!(
            drain(&mut r, ms(60)),
            vec![Released::Lost(1), Released::Packet(12)]
        );
        // The lost one arriving now is late and dropped.
        r.push(ms(70), 0, 11, 11);
        assert_eq!(drain(&mut r, ms(70)), vec![]);
        let path = r.path_stats()[0];
        assert_eq!((path.late, path.lost, r.stats().lost), (1, 1, 1));
    }

    #[test]
    fn duplicates_are_dropped_whether_held_or_released() {
        let mut r = Resequencer::new(1, ms(50), 100);
        r.push(ms(0), 0, 1, 1);
        r.push(ms(0), 0, 3, 3);
        r.push(ms(0), 0, 3, 3);
        assert_eq!(drain(&mut r, ms(0)), packets(&[1]));
        r.push(ms(1), 0, 1, 1);
        r.push(ms(1), 0, 2, 2);
        assert_eq!(drain(&mut r, ms(1)), packets(&[2, 3]));
        assert_eq!(r.path_stats()[0].duplicates, 2);
        assert_eq!(r.stats().lost, 0);
    }

    #[test]
    fn what_is_held_is_bounded() {
        let mut r = Resequencer::new(1, ms(50), 4);
        r.push(ms(0), 0, 0, 0);
        for s in 2..10 {
            r.push(ms(0), 0, s, s);
        }
        let out = drain(&mut r, ms(0));
        assert!(r.held() <= 4);
        assert_eq!(
            out[..3],
            [Released::Packet(0), Released::Lost(1), Released::Packet(2)]
        );
        assert_eq!(r.stats().overflowed, 5);
    }

    #[test]
    fn a_far_jump_starts_a_new_stream() {
        let mut r = Resequencer::new(1, ms(50), 100);
        r.push(ms(0), 0, 100, 100);
        r.push(ms(0), 0, 102, 102);
        r.push(ms(1), 0, 40_000, 40_000);
        r.push(ms(1), 0, 40_001, 40_001);
        assert_eq!(
            drain(&mut r, ms(1)),
            vec![
                Released::Packet(100),
                Released::Lost(1),
                Released::Packet(102),
                Released::Packet(40_000),
                Released::Packet(40_001)
            ]
        );
        assert_eq!(r.stats().resets, 1);
    }

    #[test]
    fn a_sender_restarting_on_every_packet_is_a_reset_each_time_not_a_duplicate() {
        let mut r = Resequencer::new(1, ms(50), 100);
        let mut out = Vec::new();
        for i in 0..10_000u32 {
            // 0, 30000, 0, 30000, …: each one a jump from the last.
            let s = if i % 2 == 0 { 0 } else { 30_000 };
            r.push(ms(u64::from(i)), 0, s, s);
            out.extend(drain(&mut r, ms(u64::from(i))));
        }
        assert_eq!(out.len(), 10_000);
        assert_eq!(r.stats().resets, 9_999);
        assert_eq!(r.path_stats()[0].duplicates, 0);
        assert_eq!(r.stats().lost, 0);
    }

    #[test]
    fn merge_first_copy_wins_and_either_path_fills_the_other_s_gaps() {
        let mut r = Resequencer::new(2, ms(100), 1000);
        let mut out = Vec::new();
        // Path 0 is 20 ms ahead; it loses every 5th packet, path 1 every 7th.
        for s in 0u16..100 {
            let t = u64::from(s);
            if s % 5 != 1 {
                r.push(ms(t), 0, s, s);
            }
            if s % 7 != 1 {
                r.push(ms(t + 20), 1, s, s);
            }
            out.extend(drain(&mut r, ms(t)));
        }
        // The gaps both paths left hold everything behind them for the window, then each
        // path's share is settled a window after release.
        out.extend(drain(&mut r, ms(1000)));
        out.extend(drain(&mut r, ms(2000)));
        // Only sequence numbers both lost are missing.
        let both: u64 = (0..100).filter(|s| s % 35 == 1).count() as u64;
        let delivered: Vec<u16> = out
            .iter()
            .filter_map(|r| match r {
                Released::Packet(s) => Some(*s),
                Released::Lost(_) => None,
            })
            .collect();
        let expected: Vec<u16> = (0..100).filter(|s| s % 35 != 1).collect();
        assert_eq!(delivered, expected);
        assert_eq!(r.stats().lost, both);
        let [p0, p1] = [r.path_stats()[0], r.path_stats()[1]];
        assert_eq!(p0.received, 80);
        assert_eq!(p1.received, 85);
        assert_eq!(p0.lost, 20);
        assert_eq!(p1.lost, 15);
        assert_eq!(p0.first + p1.first, 100 - both);
        assert_eq!(p0.first, 80);
        let delay = r.stats().delay_difference_ms.unwrap();
        assert!((delay - 20.0).abs() < 0.5, "{delay}");
    }

    #[test]
    fn merge_absorbs_a_path_differential_within_the_window_only() {
        // Path 1 is 80 ms behind and is the only one with packet 5.
        let run = |window: u64| {
            let mut r = Resequencer::new(2, ms(window), 1000);
            let mut out = Vec::new();
            for s in 0u16..20 {
                let t = u64::from(s) * 5;
                if s != 5 {
                    r.push(ms(t), 0, s, s);
                }
                out.extend(drain(&mut r, ms(t)));
            }
            for s in 0u16..20 {
                let t = u64::from(s) * 5 + 80;
                r.push(ms(t), 1, s, s);
                out.extend(drain(&mut r, ms(t)));
            }
            out.extend(drain(&mut r, ms(10_000)));
            (out, r.stats(), r.path_stats().to_vec())
        };
        let (out, stats, paths) = run(100);
        assert_eq!(out, packets(&(0..20).collect::<Vec<_>>()));
        assert_eq!((stats.lost, paths[0].lost, paths[1].lost), (0, 1, 0));
        assert_eq!((paths[0].first, paths[1].first), (19, 1));
        let (out, stats, paths) = run(50);
        assert!(out.contains(&Released::Lost(1)));
        assert_eq!(stats.lost, 1);
        assert_eq!(paths[1].late, 20);
    }

    #[test]
    fn merge_with_one_path_gone_loses_nothing() {
        let mut r = Resequencer::new(2, ms(50), 1000);
        let mut out = Vec::new();
        for s in 0u16..500 {
            r.push(ms(u64::from(s)), 1, s, s);
            out.extend(drain(&mut r, ms(u64::from(s))));
        }
        out.extend(drain(&mut r, ms(10_000)));
        assert_eq!(out.len(), 500);
        assert_eq!(r.stats().lost, 0);
        assert_eq!(r.path_stats()[0].lost, 500);
        assert_eq!(r.path_stats()[1].first, 500);
    }
}
