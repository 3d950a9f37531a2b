//! MPEG timestamps: 90 kHz ticks on a 33-bit wrapping clock.

use std::time::{Duration, SystemTime};

/// PTS/DTS wrap after 2^33 ticks (about 26.5 hours).
pub const WRAP_33_BIT: i64 = 1 << 33;

/// A timestamp in 90 kHz ticks on an *unwrapped* timeline (it keeps counting past 2^33),
/// so that arithmetic across a wrap is plain subtraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MpegTime(pub i64);

impl MpegTime {
    pub const ZERO: MpegTime = MpegTime(0);

    /// The value as it is written on the wire (33 bits).
    pub fn wrapped(self) -> u64 {
        self.0.rem_euclid(WRAP_33_BIT) as u64
    }

    /// Signed distance `self - earlier`, treating both as 33-bit wire values: the shortest way
    /// round the wrap.
    pub fn wrapping_diff_33(later: u64, earlier: u64) -> i64 {
        let diff = (later as i64 - earlier as i64).rem_euclid(WRAP_33_BIT);
        if diff >= WRAP_33_BIT / 2 {
            diff - WRAP_33_BIT
        } else {
            diff
        }
    }
}

impl std::ops::Add<i64> for MpegTime {
    type Output = MpegTime;
    fn add(self, ticks: i64) -> MpegTime {
        MpegTime(self.0 + ticks)
    }
}

impl std::ops::Sub for MpegTime {
    type Output = i64;
    fn sub(self, other: MpegTime) -> i64 {
        self.0 - other.0
    }
}

/// Turns a stream of 33-bit wire timestamps into an unwrapped, continuous timeline.
///
/// Each value is placed at the unwrapped position nearest to the previous one, so both forward
/// wraps and small backward steps (B-frame PTS, audio/video interleave) come out right.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwrap33 {
    last: Option<i64>,
}

impl Unwrap33 {
    pub fn unwrap(&mut self, wire: u64) -> MpegTime {
        let wire = (wire as i64).rem_euclid(WRAP_33_BIT);
        let value = match self.last {
            None => wire,
            Some(last) => {
                last + MpegTime::wrapping_diff_33(wire as u64, last.rem_euclid(WRAP_33_BIT) as u64)
            }
        };
        self.last = Some(value);
        MpegTime(value)
    }

    /// Like [`Unwrap33::unwrap`] but does not move the reference point; for values that sit
    /// near the reference (a PTS next to its DTS).
    pub fn unwrap_near(&self, wire: u64) -> MpegTime {
        let wire = (wire as i64).rem_euclid(WRAP_33_BIT);
        match self.last {
            None => MpegTime(wire),
            Some(last) => MpegTime(
                last + MpegTime::wrapping_diff_33(wire as u64, last.rem_euclid(WRAP_33_BIT) as u64),
            ),
        }
    }
}

/// RFC 3339 UTC with milliseconds (`2026-11-24T06:02:03.456Z`), without pulling in a date
/// crate. The caller supplies the time: this crate never reads the clock.
pub fn rfc3339(time: SystemTime) -> String {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = since_epoch.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formatting() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_500_123_456);
        assert_eq!(rfc3339(t), "2026-11-24T06:02:03.456Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    use super::*;

    #[test]
    fn unwrap_crosses_33_bit_wrap_forward() {
        let mut u = Unwrap33::default();
        let near_end = (WRAP_33_BIT - 3000) as u64;
        assert_eq!(u.unwrap(near_end), MpegTime(WRAP_33_BIT - 3000));
        assert_eq!(u.unwrap(3000), MpegTime(WRAP_33_BIT + 3000));
        assert_eq!(MpegTime(WRAP_33_BIT + 3000).wrapped(), 3000);
    }

    #[test]
    fn unwrap_allows_small_backward_steps() {
        let mut u = Unwrap33::default();
        u.unwrap(10_000);
        assert_eq!(u.unwrap(7_000), MpegTime(7_000));
        let mut u = Unwrap33::default();
        u.unwrap(1_000);
        assert_eq!(u.unwrap((WRAP_33_BIT - 1_000) as u64), MpegTime(-1_000));
    }

    #[test]
    fn wrapping_diff_takes_the_short_way() {
        assert_eq!(MpegTime::wrapping_diff_33(5, (WRAP_33_BIT - 5) as u64), 10);
        assert_eq!(MpegTime::wrapping_diff_33((WRAP_33_BIT - 5) as u64, 5), -10);
    }
}
