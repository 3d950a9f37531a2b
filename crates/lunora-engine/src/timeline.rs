//! Where an engine source's frames go on its output timeline, and when they are due.
//!
//! Pure: fed with the pipeline's timestamps and a clock, so looping and pacing are tested in
//! virtual time. A looped file restarts its pipeline for every pass and so repeats the same
//! timestamps; every track of pass `k` is shifted by the same `k` times the pass length, so
//! audio and video keep the offset they have in the file however many passes are played. The
//! pass length is the video track's (first decoding time to the end of its last picture): the
//! pictures run on without a gap or a repeat. Audio is rarely exactly as long (AAC priming, a
//! last partial frame); an audio frame that would overlap the previous pass's last one by more
//! than half a frame is dropped, so audio decoding times keep rising with at most a fraction of
//! a frame's gap at the loop point.

use std::time::Duration;

use lunora_media::MpegTime;

/// Where the output timeline starts: a second in, so pictures whose decoding time precedes the
/// first one (B-frame reordering) stay positive.
const START: i64 = 90_000;

/// A frame further behind its due time than this moves the schedule instead of being sent in a
/// burst with everything after it (the machine stalled, or a restarted pipeline was slow).
const MAX_LATENESS: Duration = Duration::from_millis(500);

/// A frame's times as the pipeline stamped them, in 90 kHz ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub pts: i64,
    pub dts: i64,
    /// How long the frame lasts, when the pipeline says.
    pub duration: Option<i64>,
}

/// The two kinds of track an engine source carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Video,
    Audio,
}

#[derive(Debug, Default, Clone, Copy)]
struct TrackSpan {
    /// The earliest decoding time seen in the first pass.
    earliest: Option<i64>,
    /// The latest end (decoding time plus duration) seen in the first pass.
    end: Option<i64>,
    /// The last positive step between decoding times, used when a frame has no duration.
    step: Option<i64>,
    last_dts: Option<i64>,
    /// The last frame placed on the output timeline, and its length.
    last_placed: Option<(i64, i64)>,
}

/// Places one source's frames, pass after pass.
#[derive(Debug, Default)]
pub struct Timeline {
    /// The decoding time of the first frame seen, in the pipeline's ticks: it goes to `START`.
    anchor: Option<i64>,
    /// Length of one pass, known once the first pass has ended.
    pass_length: Option<i64>,
    tracks: [TrackSpan; 2],
    current_pass: u64,
}

/// A frame's times on the output timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub pts: MpegTime,
    pub dts: MpegTime,
}

fn index(kind: Kind) -> usize {
    match kind {
        Kind::Video => 0,
        Kind::Audio => 1,
    }
}

impl Timeline {
    pub fn new() -> Self {
        Timeline::default()
    }

    /// Places a frame of pass `pass` (0 for the first); `None` drops it (audio overlapping the
    /// previous pass). Passes must come in order, each one complete before the next begins (a
    /// pipeline per pass, read in order, guarantees it).
    pub fn place(&mut self, pass: u64, kind: Kind, stamp: Stamp) -> Option<Placed> {
        if pass != self.current_pass {
            if self.pass_length.is_none() {
                self.pass_length = Some(self.first_pass_length());
            }
            self.current_pass = pass;
        }
        let anchor = *self.anchor.get_or_insert(stamp.dts);
        let length = if pass == 0 {
            self.measure(kind, stamp)
        } else {
            self.length_of(kind, stamp)
        };
        let shift = START - anchor + self.passes_length(pass);
        let placed = Placed {
            pts: MpegTime(stamp.pts.saturating_add(shift)),
            dts: MpegTime(stamp.dts.saturating_add(shift)),
        };
        let track = &mut self.tracks[index(kind)];
        if let Some((last, last_length)) = track.last_placed
            && (placed.dts.0 <= last || placed.dts.0 < last + last_length / 2)
        {
            return None;
        }
        track.last_placed = Some((placed.dts.0, length));
        Some(placed)
    }

    /// Records a first-pass frame; returns its length.
    fn measure(&mut self, kind: Kind, stamp: Stamp) -> i64 {
        let span = &mut self.tracks[index(kind)];
        span.earliest = Some(span.earliest.map_or(stamp.dts, |e| e.min(stamp.dts)));
        if let Some(last) = span.last_dts
            && stamp.dts > last
        {
            span.step = Some(stamp.dts - last);
        }
        span.last_dts = Some(stamp.dts);
        let length = stamp.duration.filter(|d| *d > 0).or(span.step).unwrap_or(0);
        let end = stamp.dts + length;
        span.end = Some(span.end.map_or(end, |e| e.max(end)));
        length
    }

    fn length_of(&self, kind: Kind, stamp: Stamp) -> i64 {
        stamp
            .duration
            .filter(|d| *d > 0)
            .or(self.tracks[index(kind)].step)
            .unwrap_or(0)
    }

    /// How far the passes before `pass` reach: `pass` times the first pass's length.
    fn passes_length(&self, pass: u64) -> i64 {
        i64::try_from(pass)
            .unwrap_or(i64::MAX)
            .saturating_mul(self.pass_length.unwrap_or(0))
    }

    /// The video track's span, or the audio track's in a file without video.
    fn first_pass_length(&self) -> i64 {
        self.tracks
            .iter()
            .find_map(|t| Some(t.end? - t.earliest?))
            .unwrap_or(0)
    }
}

/// Real-time pacing: a frame is due when as much wall time has passed since the first one as
/// output time has. `now` is time since any fixed origin.
#[derive(Debug, Default)]
pub struct Pacer {
    /// The wall time and output decoding time the schedule is anchored at.
    anchor: Option<(Duration, MpegTime)>,
}

impl Pacer {
    /// When the frame decoding at `dts` is due. A frame more than half a second late (a stall)
    /// re-anchors the schedule at `now`, so what follows is not sent in a burst.
    pub fn due(&mut self, now: Duration, dts: MpegTime) -> Duration {
        let (wall, at) = *self.anchor.get_or_insert((now, dts));
        let ticks = u64::try_from(dts - at).unwrap_or(0);
        let due = wall + Duration::from_micros(ticks.saturating_mul(100) / 9);
        if now.saturating_sub(due) > MAX_LATENESS {
            self.anchor = Some((now, dts));
            return now;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO_STEP: i64 = 3_000; // 30 fps
    const AUDIO_STEP: i64 = 1_920; // 1024 samples at 48 kHz

    /// A 10 s file: 300 video frames starting at 0 and 470 audio frames (10.027 s), in the
    /// order a demuxer interleaves them.
    fn one_pass() -> Vec<(Kind, Stamp)> {
        let mut frames = Vec::new();
        for i in 0..300 {
            frames.push((Kind::Video, i * VIDEO_STEP));
        }
        for i in 0..470 {
            frames.push((Kind::Audio, i * AUDIO_STEP));
        }
        frames.sort_by_key(|(_, t)| *t);
        let duration = |kind| match kind {
            Kind::Video => VIDEO_STEP,
            Kind::Audio => AUDIO_STEP,
        };
        frames
            .into_iter()
            .map(|(kind, t)| {
                (
                    kind,
                    Stamp {
                        pts: t,
                        dts: t,
                        duration: Some(duration(kind)),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_hundred_passes_keep_decoding_times_rising_without_gaps_and_av_in_step() {
        let mut timeline = Timeline::new();
        let mut last: [Option<i64>; 2] = [None, None];
        let mut dropped = 0;
        for pass in 0..100u64 {
            for (kind, stamp) in one_pass() {
                let Some(placed) = timeline.place(pass, kind, stamp) else {
                    assert_eq!(kind, Kind::Audio, "pass {pass}: a picture was dropped");
                    dropped += 1;
                    continue;
                };
                // Every track moves by the same whole number of video passes: A/V stay as in
                // the file.
                let pass = i64::try_from(pass).unwrap();
                assert_eq!(placed.dts.0, START + stamp.dts + pass * 300 * VIDEO_STEP);
                assert_eq!(placed.pts.0 - placed.dts.0, stamp.pts - stamp.dts);
                let k = index(kind);
                if let Some(previous) = last[k] {
                    let step = placed.dts.0 - previous;
                    let nominal = if kind == Kind::Video {
                        VIDEO_STEP
                    } else {
                        AUDIO_STEP
                    };
                    assert!(step > 0, "pass {pass} {kind:?}: dts fell or repeated");
                    if kind == Kind::Video {
                        assert_eq!(step, nominal, "pass {pass}: pictures not back to back");
                    } else {
                        assert!(step < 2 * nominal, "pass {pass}: audio gap of {step} ticks");
                    }
                }
                last[k] = Some(placed.dts.0);
            }
        }
        // The 470 audio frames are 2400 ticks longer than the video: one audio frame a pass
        // goes.
        assert_eq!(dropped, 99);
    }

    #[test]
    fn b_frame_decoding_times_before_the_first_frame_stay_positive_and_shift_later_passes() {
        let mut timeline = Timeline::new();
        // Audio first at 0, then video whose first decoding time is one frame earlier.
        let audio = |t| Stamp {
            pts: t,
            dts: t,
            duration: Some(AUDIO_STEP),
        };
        let video = |dts: i64| Stamp {
            pts: dts + 2 * VIDEO_STEP,
            dts,
            duration: Some(VIDEO_STEP),
        };
        let a = timeline.place(0, Kind::Audio, audio(0)).unwrap();
        let v = timeline.place(0, Kind::Video, video(-VIDEO_STEP)).unwrap();
        assert_eq!(a.dts, MpegTime(START));
        assert_eq!(v.dts, MpegTime(START - VIDEO_STEP));
        let last_video = timeline.place(0, Kind::Video, video(0)).unwrap();
        // The second pass's first picture follows the first pass's last one.
        let next = timeline.place(1, Kind::Video, video(-VIDEO_STEP)).unwrap();
        assert_eq!(next.dts.0, last_video.dts.0 + VIDEO_STEP);
    }

    #[test]
    fn frames_without_duration_use_the_previous_step() {
        let mut timeline = Timeline::new();
        for i in 0..10 {
            let _ = timeline.place(
                0,
                Kind::Video,
                Stamp {
                    pts: i * VIDEO_STEP,
                    dts: i * VIDEO_STEP,
                    duration: None,
                },
            );
        }
        let next = timeline.place(
            1,
            Kind::Video,
            Stamp {
                pts: 0,
                dts: 0,
                duration: None,
            },
        );
        assert_eq!(next.unwrap().dts, MpegTime(START + 10 * VIDEO_STEP));
    }

    #[test]
    fn the_pacer_follows_output_time_and_moves_its_schedule_after_a_stall() {
        let ms = Duration::from_millis;
        let mut pacer = Pacer::default();
        assert_eq!(pacer.due(ms(1_000), MpegTime(90_000)), ms(1_000));
        assert_eq!(
            pacer.due(ms(1_000), MpegTime(90_000 + 3_000)),
            ms(1_033) + Duration::from_micros(333)
        );
        assert_eq!(pacer.due(ms(1_500), MpegTime(180_000)), ms(2_000));
        // Found 2 s late: due now, and the frames after it follow from here.
        assert_eq!(pacer.due(ms(4_000), MpegTime(180_000)), ms(4_000));
        assert_eq!(pacer.due(ms(4_000), MpegTime(270_000)), ms(5_000));
        // A little late is sent at once without moving the schedule.
        assert_eq!(
            pacer.due(ms(5_200), MpegTime(273_000)),
            ms(5_033) + Duration::from_micros(333)
        );
    }
}
