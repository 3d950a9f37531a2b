//! Content-matched alignment: the frame offset between two encoders fed one source, learnt from
//! their pictures rather than their clocks.
//!
//! Two encoders each stamp their own clock and deliver with their own latency, so neither the
//! timestamps nor the arrival times say which frames carry the same picture. The media engine
//! decodes every picture of each input at low resolution and hands over a [`Fingerprint`] (the
//! mean luma of 16 × 9 blocks, with the picture's PTS); [`ContentAligner`] looks for the latest
//! stretch of one input's fingerprints in the other input's recent history and, when the best
//! placement is both close and clearly better than any other, takes the PTS difference there
//! as the shift between the two inputs. Pure: the caller passes the time.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use lunora_media::MpegTime;

pub const FINGERPRINT_COLUMNS: usize = 16;
pub const FINGERPRINT_ROWS: usize = 9;
const BLOCKS: usize = FINGERPRINT_COLUMNS * FINGERPRINT_ROWS;

/// How much of each input's recent pictures is kept: more than any offset two encoders of one
/// source have (latency differences of a few seconds) plus the stretch matched.
const HISTORY_TICKS: i64 = 12 * 90_000;
/// Fingerprints kept per input whatever their timestamps say (12 s at 60 pictures a second).
const HISTORY_PRINTS: usize = 720;
/// The stretch of the latest pictures looked for in the other input.
const QUERY_TICKS: i64 = 3 * 90_000 / 2;
/// A stretch with fewer pictures than this says too little.
const QUERY_MIN_PRINTS: usize = 12;
/// Searches are this far apart once an offset is known, and this far while one is missing.
const SEARCH_EVERY: Duration = Duration::from_secs(1);
const SEARCH_EVERY_UNKNOWN: Duration = Duration::from_millis(250);
/// Mean block difference (0–255 levels, each fingerprint's mean taken out) below which two
/// pictures may be the same: two encodings of one picture differ by coding noise, a level or
/// two once averaged over a block.
const MATCH_COST: f32 = 6.0;
/// The best placement must beat every placement more than a frame away by this factor, or the
/// content does not say where it is (a still picture, a static shot, a loop shorter than the
/// history).
const DISTINCT: f32 = 2.0;
/// Placements must cover at least this share of the stretch (decoders behind drop pictures).
const COVERAGE: f32 = 0.8;
/// Placements scored on the whole stretch after the first round.
const FINALISTS: usize = 6;

/// A picture's 16 × 9 block means, with its presentation time on its input's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub pts: MpegTime,
    pub blocks: [u8; BLOCKS],
}

impl Fingerprint {
    /// From an 8-bit grey picture whose rows are `width` bytes apart, `None` if it is smaller
    /// than one pixel per block.
    pub fn from_gray(pts: MpegTime, gray: &[u8], width: usize, height: usize) -> Option<Self> {
        if width < FINGERPRINT_COLUMNS
            || height < FINGERPRINT_ROWS
            || gray.len() < width.checked_mul(height)?
        {
            return None;
        }
        let mut sums = [0u32; BLOCKS];
        let mut counts = [0u32; BLOCKS];
        // Column edges of the blocks, so each row is summed a slice at a time.
        let edges: Vec<usize> = (0..=FINGERPRINT_COLUMNS)
            .map(|c| c * width / FINGERPRINT_COLUMNS)
            .collect();
        for (y, row) in gray.chunks_exact(width).take(height).enumerate() {
            let first = y * FINGERPRINT_ROWS / height * FINGERPRINT_COLUMNS;
            for (column, edge) in edges.windows(2).enumerate() {
                let span = &row[edge[0]..edge[1]];
                sums[first + column] += span.iter().map(|&p| u32::from(p)).sum::<u32>();
                counts[first + column] += u32::try_from(span.len()).unwrap_or(u32::MAX);
            }
        }
        let mut blocks = [0u8; BLOCKS];
        for ((block, sum), count) in blocks.iter_mut().zip(sums).zip(counts) {
            *block = u8::try_from(sum / count.max(1)).unwrap_or(u8::MAX);
        }
        Some(Fingerprint { pts, blocks })
    }
}

/// A fingerprint as the search compares it: each block's level less the picture's mean (in
/// sixteenths of a level), so an encoder that codes the levels a little differently still
/// matches.
#[derive(Debug, Clone)]
struct Print {
    pts: i64,
    centred: [i16; BLOCKS],
}

impl Print {
    fn new(print: &Fingerprint) -> Print {
        let sum: i32 = print.blocks.iter().map(|&b| i32::from(b)).sum();
        let mean = sum * 16 / BLOCKS as i32;
        let mut centred = [0i16; BLOCKS];
        for (c, &b) in centred.iter_mut().zip(&print.blocks) {
            // At most 255 × 16 either way: fits.
            *c = i16::try_from(i32::from(b) * 16 - mean).unwrap_or(0);
        }
        Print {
            pts: print.pts.0,
            centred,
        }
    }

    /// Mean absolute difference per block, in levels.
    fn distance(&self, other: &Print) -> f32 {
        let total: i32 = self
            .centred
            .iter()
            .zip(&other.centred)
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .sum();
        total as f32 / (BLOCKS * 16) as f32
    }
}

/// What the aligner knows about a pair of inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// `pts_to = pts_from + shift` for the same picture, in 90 kHz ticks.
    pub shift: i64,
    /// Mean block difference at the match (lower is surer).
    pub cost: f32,
}

/// Learns and tracks the shift between every pair of inputs it is given fingerprints of.
#[derive(Debug, Default)]
pub struct ContentAligner {
    prints: HashMap<usize, VecDeque<Print>>,
    /// Keyed `(a, b)` with `a < b`: the shift from `a` to `b`.
    known: HashMap<(usize, usize), Alignment>,
    next_search: Duration,
}

impl ContentAligner {
    pub fn new() -> ContentAligner {
        ContentAligner::default()
    }

    /// Adds a decoded picture of `input`. Pictures come in presentation order; one that does
    /// not (a restarted decoder) starts the input's history again.
    pub fn push(&mut self, input: usize, print: &Fingerprint) {
        let print = Print::new(print);
        let history = self.prints.entry(input).or_default();
        if history.back().is_some_and(|last| print.pts <= last.pts) {
            history.clear();
        }
        history.push_back(print);
        while history.len() > HISTORY_PRINTS
            || history
                .front()
                .zip(history.back())
                .is_some_and(|(first, last)| last.pts - first.pts > HISTORY_TICKS)
        {
            history.pop_front();
        }
    }

    /// The input's clock restarted or it left: its pictures and every shift learnt with it go.
    pub fn forget(&mut self, input: usize) {
        self.prints.remove(&input);
        self.known.retain(|&(a, b), _| a != input && b != input);
        // Search again as soon as the new sender has said enough.
        self.next_search = Duration::ZERO;
    }

    /// `pts_to = pts_from + shift` for the same picture, once the pictures have said so.
    pub fn shift(&self, from: usize, to: usize) -> Option<i64> {
        if from == to {
            return Some(0);
        }
        let (pair, sign) = if from < to {
            ((from, to), 1)
        } else {
            ((to, from), -1)
        };
        self.known.get(&pair).map(|a| sign * a.shift)
    }

    /// Everything learnt, keyed `(a, b)` with `a < b`.
    pub fn alignments(&self) -> impl Iterator<Item = ((usize, usize), Alignment)> + '_ {
        self.known
            .iter()
            .map(|(&pair, &alignment)| (pair, alignment))
    }

    /// Searches every pair when due; returns the pairs whose shift is new or moved by more
    /// than half a picture.
    pub fn poll(&mut self, now: Duration) -> Vec<(usize, usize)> {
        if now < self.next_search {
            return Vec::new();
        }
        let mut inputs: Vec<usize> = self.prints.keys().copied().collect();
        inputs.sort_unstable();
        let mut changed = Vec::new();
        let mut missing = false;
        for (i, &a) in inputs.iter().enumerate() {
            for &b in &inputs[i + 1..] {
                let found = self.search(a, b);
                let previous = self.known.get(&(a, b)).copied();
                match found {
                    Some((shift, cost)) => {
                        let step = self.picture_ticks(a).max(1);
                        if previous.is_none_or(|p| (p.shift - shift).abs() * 2 > step) {
                            changed.push((a, b));
                        }
                        self.known.insert((a, b), Alignment { shift, cost });
                    }
                    None => missing |= previous.is_none(),
                }
            }
        }
        self.next_search = now
            + if missing {
                SEARCH_EVERY_UNKNOWN
            } else {
                SEARCH_EVERY
            };
        changed
    }

    /// The shift from `a` to `b`: the latest stretch of each looked for in the other.
    fn search(&self, a: usize, b: usize) -> Option<(i64, f32)> {
        let forward = self.place(a, b);
        let backward = self.place(b, a).map(|(shift, cost)| (-shift, cost));
        match (forward, backward) {
            (Some(f), Some(r)) => Some(if r.1 < f.1 { r } else { f }),
            (f, r) => f.or(r),
        }
    }

    /// Where `query`'s latest stretch sits in `history`'s pictures: the shift from `query` to
    /// `history` and its cost, if the placement is unambiguous. Every placement is first
    /// scored on a dozen pictures of the stretch; only the best few are scored on all of it.
    fn place(&self, query: usize, history: usize) -> Option<(i64, f32)> {
        let (query_prints, history_prints) = (self.prints.get(&query)?, self.prints.get(&history)?);
        let last = query_prints.back()?.pts;
        let stretch: Vec<&Print> = query_prints
            .iter()
            .filter(|p| last - p.pts <= QUERY_TICKS)
            .collect();
        if stretch.len() < QUERY_MIN_PRINTS {
            return None;
        }
        let sample: Vec<&Print> = (0..QUERY_MIN_PRINTS)
            .map(|i| stretch[i * (stretch.len() - 1) / (QUERY_MIN_PRINTS - 1)])
            .collect();
        let tolerance = self.picture_ticks(history) / 2;
        let history_pts: Vec<i64> = history_prints.iter().map(|p| p.pts).collect();
        let score = |prints: &[&Print], shift: i64| {
            let (mut total, mut matched) = (0.0f32, 0usize);
            for print in prints {
                if let Some(partner) = nearest(&history_pts, print.pts + shift, tolerance) {
                    total += print.distance(&history_prints[partner]);
                    matched += 1;
                }
            }
            (matched as f32 >= prints.len() as f32 * COVERAGE).then(|| total / matched as f32)
        };
        let anchor = stretch[stretch.len() / 2].pts;
        let mut placements: Vec<(i64, f32)> = history_pts
            .iter()
            .filter_map(|&candidate| {
                let shift = candidate - anchor;
                score(&sample, shift).map(|cost| (shift, cost))
            })
            .collect();
        placements.sort_by(|x, y| x.1.total_cmp(&y.1));
        let mut finalists: Vec<(i64, f32)> = placements
            .iter()
            .take(FINALISTS)
            .filter_map(|&(shift, _)| score(&stretch, shift).map(|cost| (shift, cost)))
            .collect();
        finalists.sort_by(|x, y| x.1.total_cmp(&y.1));
        let &(shift, cost) = finalists.first()?;
        // The runner-up is the best placement more than a picture away, on either scoring:
        // a near-miss on the sample alone is enough to call the content ambiguous.
        let runner_up = finalists
            .iter()
            .chain(placements.iter())
            .filter(|(other, _)| (other - shift).abs() > tolerance * 3)
            .map(|&(_, cost)| cost)
            .min_by(f32::total_cmp);
        let distinct = runner_up.is_some_and(|runner_up| runner_up >= cost * DISTINCT + 0.5);
        (cost <= MATCH_COST && distinct).then_some((shift, cost))
    }

    /// The input's picture interval: the median step between its recent pictures.
    fn picture_ticks(&self, input: usize) -> i64 {
        let Some(prints) = self.prints.get(&input) else {
            return 3003;
        };
        let mut steps: Vec<i64> = prints
            .iter()
            .zip(prints.iter().skip(1))
            .rev()
            .take(31)
            .map(|(a, b)| b.pts - a.pts)
            .filter(|step| *step > 0)
            .collect();
        if steps.is_empty() {
            return 3003;
        }
        steps.sort_unstable();
        steps[steps.len() / 2]
    }
}

/// Index of the time in `sorted` nearest `target`, if within `tolerance`.
fn nearest(sorted: &[i64], target: i64, tolerance: i64) -> Option<usize> {
    let at = sorted.partition_point(|&t| t < target);
    [at.checked_sub(1), Some(at)]
        .into_iter()
        .flatten()
        .filter(|&i| i < sorted.len())
        .min_by_key(|&i| (sorted[i] - target).abs())
        .filter(|&i| (sorted[i] - target).abs() <= tolerance)
}

/// A picture of a moving scene: frame `n` of a pseudo-random pattern that changes every frame,
/// the same on every input that carries frame `n`.
#[cfg(test)]
pub(crate) fn test_scene(n: i64) -> [u8; BLOCKS] {
    let mut blocks = [0u8; BLOCKS];
    let mut state = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for block in &mut blocks {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *block = 16 + (state % 200) as u8;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(n: i64) -> [u8; BLOCKS] {
        test_scene(n)
    }

    /// Input `input` carries scene frames `first..last`, stamped `offset + n × step`, with
    /// `noise` levels of coding difference.
    fn feed(
        aligner: &mut ContentAligner,
        input: usize,
        frames: std::ops::Range<i64>,
        offset: i64,
        noise: u8,
    ) {
        for n in frames {
            let mut blocks = scene(n);
            for (i, block) in blocks.iter_mut().enumerate() {
                let wobble = ((n as usize + i) % 3) as u8 * noise / 2;
                *block = block.saturating_add(wobble);
            }
            aligner.push(
                input,
                &Fingerprint {
                    pts: MpegTime(offset + n * 3003),
                    blocks,
                },
            );
        }
    }

    #[test]
    fn block_means_of_a_grey_picture() {
        // Left half black, right half white, 160 × 90.
        let picture: Vec<u8> = (0..90)
            .flat_map(|_| (0..160).map(|x| if x < 80 { 16 } else { 235 }))
            .collect();
        let print = Fingerprint::from_gray(MpegTime(7), &picture, 160, 90).unwrap();
        assert_eq!(print.blocks[0], 16);
        assert_eq!(print.blocks[15], 235);
        assert_eq!(print.blocks[8 * 16 + 7], 16);
        assert_eq!(print.blocks[8 * 16 + 8], 235);
        assert!(Fingerprint::from_gray(MpegTime(0), &picture, 160, 91).is_none());
        assert!(Fingerprint::from_gray(MpegTime(0), &[0; 8], 8, 1).is_none());
    }

    #[test]
    fn a_level_offset_is_no_difference() {
        let a = Fingerprint {
            pts: MpegTime(0),
            blocks: scene(1),
        };
        let mut b = a.clone();
        for block in &mut b.blocks {
            *block += 10;
        }
        assert!(Print::new(&a).distance(&Print::new(&b)) < 0.1);
        let c = Fingerprint {
            pts: MpegTime(0),
            blocks: scene(2),
        };
        assert!(Print::new(&a).distance(&Print::new(&c)) > 20.0);
    }

    #[test]
    fn learns_the_shift_between_two_clocks_whichever_input_is_late() {
        for lag in [-40i64, -7, 0, 3, 55] {
            let mut aligner = ContentAligner::new();
            // Input 1's clock is 17 h ahead and a third of a frame off input 0's grid; it
            // carries the content `lag` frames later (positive) or earlier.
            let offset = 17 * 3600 * 90_000 + 1001;
            feed(&mut aligner, 0, 0..200 + lag.min(0), 0, 2);
            feed(&mut aligner, 1, 0..200 - lag.max(0), offset, 2);
            aligner.poll(Duration::ZERO);
            assert_eq!(aligner.shift(0, 1), Some(offset), "lag {lag}");
            assert_eq!(aligner.shift(1, 0), Some(-offset), "lag {lag}");
        }
    }

    #[test]
    fn dropped_pictures_do_not_move_the_match() {
        let mut aligner = ContentAligner::new();
        feed(&mut aligner, 0, 0..150, 0, 0);
        for n in 0..150 {
            if n % 5 != 2 {
                feed(&mut aligner, 1, n..n + 1, 500_000, 1);
            }
        }
        aligner.poll(Duration::ZERO);
        assert_eq!(aligner.shift(0, 1), Some(500_000));
    }

    #[test]
    fn a_still_picture_says_nothing_and_the_last_shift_stays() {
        let mut aligner = ContentAligner::new();
        feed(&mut aligner, 0, 0..100, 0, 0);
        feed(&mut aligner, 1, 0..100, 90_000, 0);
        assert_eq!(aligner.poll(Duration::ZERO), vec![(0, 1)]);
        for n in 100..300 {
            for (input, offset) in [(0, 0), (1, 90_000)] {
                aligner.push(
                    input,
                    &Fingerprint {
                        pts: MpegTime(offset + n * 3003),
                        blocks: scene(0),
                    },
                );
            }
        }
        assert_eq!(aligner.poll(Duration::from_secs(5)), vec![]);
        assert_eq!(aligner.shift(0, 1), Some(90_000));
        // Another source on one input: nothing matches, nothing is claimed.
        let mut unrelated = ContentAligner::new();
        feed(&mut unrelated, 0, 0..100, 0, 0);
        feed(&mut unrelated, 1, 1000..1100, 0, 0);
        unrelated.poll(Duration::ZERO);
        assert_eq!(unrelated.shift(0, 1), None);
    }

    #[test]
    fn a_restarted_encoder_is_learnt_again() {
        let mut aligner = ContentAligner::new();
        feed(&mut aligner, 0, 0..100, 0, 0);
        feed(&mut aligner, 1, 0..100, 5_000, 0);
        aligner.poll(Duration::ZERO);
        assert_eq!(aligner.shift(0, 1), Some(5_000));
        aligner.forget(1);
        assert_eq!(aligner.shift(0, 1), None);
        feed(&mut aligner, 0, 100..160, 0, 0);
        feed(&mut aligner, 1, 110..160, -2_000_000, 0);
        assert_eq!(aligner.poll(Duration::from_millis(100)), vec![(0, 1)]);
        // Searches are spaced once the shift is known.
        feed(&mut aligner, 1, 160..170, 0, 0);
        assert!(aligner.poll(Duration::from_millis(900)).is_empty());
        assert_eq!(aligner.shift(0, 1), Some(-2_000_000));
    }

    #[test]
    fn history_is_bounded() {
        let mut aligner = ContentAligner::new();
        feed(&mut aligner, 0, 0..5000, 0, 0);
        let kept = &aligner.prints[&0];
        assert!(kept.len() <= HISTORY_PRINTS);
        assert!(kept.back().unwrap().pts - kept.front().unwrap().pts <= HISTORY_TICKS);
        // Timestamps that go back start the history again rather than confusing the search.
        aligner.push(
            0,
            &Fingerprint {
                pts: MpegTime(0),
                blocks: scene(0),
            },
        );
        assert_eq!(aligner.prints[&0].len(), 1);
    }
}
