//! Decode times for H.264 that RTP carried: RFC 6184 gives each access unit its presentation
//! time only, and with B-frames units arrive in decode order with presentation times that go
//! back and forth — a muxer and every decoder downstream need an increasing decode time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use lunora_media::{AnnexBNalUnits, H264NalType, parse_h264_sps};

/// The deepest reordering taken from an SPS (the standard's limit is 16).
const DEPTH_MAX: u32 = 16;
/// Reordering assumed when a profile that allows B-frames has an SPS that does not say how
/// deep (no VUI bitstream restriction): a B-pyramid of three B-frames needs 2.
const DEPTH_UNSTATED: u32 = 4;
/// A presentation time this far (90 kHz ticks) from the last means a new timeline.
const JUMP: i64 = 10 * 90_000;

/// How many frames may come before one in decode order and after it in presentation order,
/// from the SPS in a keyframe access unit (Annex B); `None` when the unit carries no SPS.
pub fn reorder_depth(access_unit: &[u8]) -> Option<u32> {
    let sps = AnnexBNalUnits::new(access_unit)
        .find(|nal| nal.first().map(|h| H264NalType::from_header(*h)) == Some(H264NalType::Sps))?;
    let sps = parse_h264_sps(sps).ok()?;
    // Baseline (and constrained baseline) has no B slices.
    let depth = match (sps.max_num_reorder_frames, sps.profile_idc) {
        (Some(depth), _) => depth,
        (None, 66) => 0,
        (None, _) => DEPTH_UNSTATED,
    };
    Some(depth.min(DEPTH_MAX))
}

/// Gives each access unit, in decode order, the presentation time `depth` places earlier in
/// presentation order as its decode time. When the stream reorders no deeper than `depth`,
/// every presentation time that early has been seen by then, so decode times increase and
/// none is after its unit's presentation; nothing is held back. The first `depth` units, whose
/// slots lie before the stream began, get times just before the first one.
#[derive(Debug)]
pub struct DecodeTimes {
    depth: u32,
    /// Presentation times seen and not yet handed out as a decode time.
    unassigned: BinaryHeap<Reverse<i64>>,
    /// Units since the timeline began, up to `depth`.
    started: u32,
    first: Option<i64>,
    last_pts: Option<i64>,
    last_dts: Option<i64>,
    /// Units that came earlier in presentation order than their slot: the stream reorders
    /// deeper than `depth` (their decode time could not be before their presentation time
    /// and still increase; [`DecodeTimes::at_keyframe`] deepens from the next keyframe).
    pub too_deep: u64,
    too_deep_since_keyframe: bool,
}

impl DecodeTimes {
    pub fn new(depth: u32) -> DecodeTimes {
        DecodeTimes {
            depth: depth.min(DEPTH_MAX),
            unassigned: BinaryHeap::new(),
            started: 0,
            first: None,
            last_pts: None,
            last_dts: None,
            too_deep: 0,
            too_deep_since_keyframe: false,
        }
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Call before the decode time of a keyframe that starts a new sequence (IDR: nothing
    /// after it in decode order is presented before it). `stated`: the depth its SPS gives.
    /// Starts the slots over when the depth changes, or deeper by two when the stream
    /// reordered deeper than the depth since the last keyframe.
    pub fn at_keyframe(&mut self, stated: Option<u32>) {
        let mut depth = stated.unwrap_or(self.depth);
        if self.too_deep_since_keyframe {
            depth = depth.max(self.depth.saturating_add(2));
        }
        let depth = depth.min(DEPTH_MAX);
        if depth != self.depth || self.too_deep_since_keyframe {
            let (last_dts, too_deep) = (self.last_dts, self.too_deep);
            *self = DecodeTimes::new(depth);
            self.last_dts = last_dts;
            self.too_deep = too_deep;
        }
    }

    /// The decode time of the next unit in decode order, presented at `pts`.
    pub fn dts(&mut self, pts: i64) -> i64 {
        if self
            .last_pts
            .is_some_and(|last| pts.saturating_sub(last).abs() > JUMP)
        {
            *self = DecodeTimes::new(self.depth);
        }
        self.last_pts = Some(pts);
        self.unassigned.push(Reverse(pts));
        let first = *self.first.get_or_insert(pts);
        let slot = if self.started < self.depth {
            let before = self.depth - self.started;
            self.started += 1;
            first.saturating_sub(i64::from(before))
        } else {
            self.unassigned.pop().map_or(pts, |Reverse(time)| time)
        };
        let mut dts = slot.min(pts);
        if let Some(last) = self.last_dts
            && dts <= last
        {
            dts = last.saturating_add(1);
        }
        if dts > pts {
            self.too_deep += 1;
            self.too_deep_since_keyframe = true;
        }
        self.last_dts = Some(dts);
        dts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: i64 = 3_600;

    fn run(depth: u32, presentation_order: &[i64]) -> (Vec<i64>, u64) {
        let mut times = DecodeTimes::new(depth);
        let dts = presentation_order
            .iter()
            .map(|n| times.dts(1_000_000 + n * FRAME))
            .collect();
        (dts, times.too_deep)
    }

    fn valid(presentation_order: &[i64], dts: &[i64]) {
        for (n, (p, d)) in presentation_order.iter().zip(dts).enumerate() {
            assert!(
                *d <= 1_000_000 + p * FRAME,
                "unit {n}: dts {d} after its pts"
            );
        }
        assert!(
            dts.windows(2).all(|w| w[0] < w[1]),
            "{dts:?} not increasing"
        );
    }

    #[test]
    fn b_pyramid_gets_increasing_decode_times_before_each_presentation() {
        // x264's -bf 3 with B-pyramid: I0 P4 B2 b1 b3 P8 B6 b5 b7, reordering 2 deep.
        let order = [0, 4, 2, 1, 3, 8, 6, 5, 7];
        let (dts, too_deep) = run(2, &order);
        valid(&order, &dts);
        assert_eq!(too_deep, 0);
        // From the third unit on, the slots are the presentation times in order.
        assert_eq!(
            &dts[2..],
            &[0, 1, 2, 3, 4, 5, 6].map(|n| 1_000_000 + n * FRAME)
        );
    }

    #[test]
    fn no_reordering_keeps_decode_time_equal_to_presentation_time() {
        let order = [0, 1, 2, 3, 4];
        let (dts, _) = run(0, &order);
        assert_eq!(dts, order.map(|n| 1_000_000 + n * FRAME));
    }

    #[test]
    fn deeper_reordering_than_announced_deepens_from_the_next_keyframe() {
        let gop = [0, 4, 2, 1, 3, 8, 6, 5, 7];
        let mut times = DecodeTimes::new(0);
        let first: Vec<i64> = gop.iter().map(|n| times.dts(n * FRAME)).collect();
        assert!(first.windows(2).all(|w| w[0] < w[1]), "still increasing");
        assert!(times.too_deep > 0);
        times.at_keyframe(None);
        assert_eq!(times.depth(), 2);
        let counted = times.too_deep;
        let second: Vec<i64> = gop.iter().map(|n| times.dts((9 + n) * FRAME)).collect();
        assert_eq!(times.too_deep, counted, "the next GOP fits");
        assert!(second[0] > first[first.len() - 1]);
        for (n, (p, d)) in gop.iter().zip(&second).enumerate() {
            assert!(*d <= (9 + p) * FRAME, "unit {n}: dts {d} after its pts");
        }
    }

    #[test]
    fn a_lost_unit_leaves_the_times_valid() {
        // b1 never came.
        let order = [0, 4, 2, 3, 8, 6, 5, 7];
        let (dts, too_deep) = run(2, &order);
        valid(&order, &dts);
        assert_eq!(too_deep, 0);
    }

    #[test]
    fn a_jump_in_presentation_time_starts_a_new_timeline() {
        let mut times = DecodeTimes::new(2);
        for n in [0, 2, 1] {
            times.dts(n * FRAME);
        }
        let far = 3_600 * 90_000;
        assert_eq!(times.dts(far), far - 2, "slots before the new first unit");
    }

    #[test]
    fn depth_comes_from_the_keyframes_sps() {
        // SPS of libx264 -bf 3 (VUI max_num_reorder_frames 2), then an IDR slice.
        let sps = [
            0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
        ];
        let unit = [&[0, 0, 0, 1][..], &sps, &[0, 0, 0, 1, 0x65, 0x88]].concat();
        assert_eq!(reorder_depth(&unit), Some(2));
        // libx264 baseline: no B-frames.
        let baseline = [
            0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
            0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0xa4, 0x80,
        ];
        assert_eq!(
            reorder_depth(&[&[0, 0, 0, 1][..], &baseline].concat()),
            Some(0)
        );
        // No SPS, or one cut short: nothing to go by.
        assert_eq!(reorder_depth(&[0, 0, 0, 1, 0x65, 0x88]), None);
        assert_eq!(reorder_depth(&[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e]), None);
    }
}
