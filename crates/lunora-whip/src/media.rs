//! Sans-IO media handling for one WebRTC session: RTP media time to the channel's 90 kHz
//! timeline, and the video gate that keeps a decoder-safe stream after loss.
//!
//! str0m depacketizes (FU-A/STAP-A/AP/FU reassembly, reordering within its buffer, extended
//! RTP timestamps across the 32-bit wrap); what comes here is one access unit at a time.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use lunora_media::{AnnexBNalUnits, H264NalType, HevcNalType, MpegTime};

/// The largest access unit taken from a peer; a bigger one is dropped and the video waits for
/// the next keyframe (a 4K intra picture at broadcast bitrates is a few MiB).
pub const MAX_ACCESS_UNIT: usize = 8 * 1024 * 1024;

/// Maps one RTP stream's extended media time to 90 kHz ticks on the session's timeline.
///
/// Audio and video of one peer run on independent RTP clocks with random offsets; each track
/// is anchored at its first access unit's arrival (relative to the session's start), and
/// after that follows its own media time, so network jitter moves no timestamp after the
/// first. The two tracks are then within the first packets' arrival spread of each other
/// until [`crate::LipSync`] places audio by the sender's reports.
#[derive(Debug, Clone)]
pub struct TrackClock {
    rate: u32,
    anchor: Option<(u64, i64)>,
}

impl TrackClock {
    /// `rate`: the RTP clock rate (90 000 for video, 48 000 for Opus).
    pub fn new(rate: u32) -> TrackClock {
        TrackClock {
            rate: rate.max(1),
            anchor: None,
        }
    }

    /// `media_time`: extended (unwrapped) RTP time; `arrival`: since the session started.
    pub fn ticks(&mut self, media_time: u64, arrival: Duration) -> MpegTime {
        if self.anchor.is_none() {
            let base = i64::try_from(arrival.as_micros() * 9 / 100).unwrap_or(i64::MAX / 2);
            self.anchor = Some((media_time, base));
        }
        let ticks = self.mapped(i128::from(media_time)).unwrap_or_default();
        MpegTime(i64::try_from(ticks).unwrap_or(if ticks < 0 {
            i64::MIN / 2
        } else {
            i64::MAX / 2
        }))
    }

    /// Where `media_time` (extended, may be before the first unit) lands on the timeline;
    /// `None` before the first unit anchored the track.
    pub fn mapped(&self, media_time: i128) -> Option<i128> {
        let (first, base) = self.anchor?;
        let delta = media_time - i128::from(first);
        Some(i128::from(base) + delta * 90_000 / i128::from(self.rate))
    }

    /// Moves every later time by `ticks` (lip sync re-placing this track).
    pub fn shift(&mut self, ticks: i64) {
        if let Some((_, base)) = self.anchor.as_mut() {
            *base = base.saturating_add(ticks);
        }
    }
}

/// Video codecs a WHIP peer may send us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    Hevc,
}

/// What to do with an access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Pass it on (with parameter sets added in front of a keyframe that lacked them).
    Pass { data: Bytes, keyframe: bool },
    /// Drop it; `request_keyframe` when the sender should be asked for one now.
    Drop { request_keyframe: bool },
}

/// Lets video through only from a keyframe on, and again from the next keyframe after a gap
/// (a lost packet leaves references a decoder does not have). Keeps the last parameter sets so
/// that every keyframe sent on carries them in band, as the channel's outputs expect.
#[derive(Debug)]
pub struct VideoGate {
    codec: VideoCodec,
    waiting: bool,
    parameter_sets: Option<Bytes>,
}

impl VideoGate {
    pub fn new(codec: VideoCodec) -> VideoGate {
        VideoGate {
            codec,
            waiting: true,
            parameter_sets: None,
        }
    }

    /// `contiguous`: no RTP packet was lost since the previous access unit.
    pub fn offer(&mut self, data: &[u8], keyframe: bool, contiguous: bool) -> Gate {
        if data.len() > MAX_ACCESS_UNIT {
            self.waiting = true;
            return Gate::Drop {
                request_keyframe: true,
            };
        }
        if !contiguous && !keyframe {
            let request_keyframe = !self.waiting;
            self.waiting = true;
            return Gate::Drop { request_keyframe };
        }
        if !keyframe {
            return if self.waiting {
                Gate::Drop {
                    request_keyframe: false,
                }
            } else {
                Gate::Pass {
                    data: Bytes::copy_from_slice(data),
                    keyframe: false,
                }
            };
        }
        let found = self.parameter_sets_in(data);
        let data = match (found, &self.parameter_sets) {
            (Some(sets), _) => {
                self.parameter_sets = Some(sets);
                Bytes::copy_from_slice(data)
            }
            (None, Some(sets)) => {
                let mut out = BytesMut::with_capacity(sets.len() + data.len());
                out.extend_from_slice(sets);
                out.extend_from_slice(data);
                out.freeze()
            }
            // A keyframe nobody can decode: wait for one with its parameter sets.
            (None, None) => {
                return Gate::Drop {
                    request_keyframe: true,
                };
            }
        };
        self.waiting = false;
        Gate::Pass {
            data,
            keyframe: true,
        }
    }

    /// The access unit's parameter sets (H.264 SPS+PPS, HEVC VPS+SPS+PPS) as Annex B, when it
    /// carries all of them.
    fn parameter_sets_in(&self, data: &[u8]) -> Option<Bytes> {
        let mut out = BytesMut::new();
        let mut seen = [false; 3];
        for nal in AnnexBNalUnits::new(data) {
            let Some(&header) = nal.first() else { continue };
            let index = match self.codec {
                VideoCodec::H264 => match H264NalType::from_header(header) {
                    H264NalType::Sps => Some(1),
                    H264NalType::Pps => Some(2),
                    _ => None,
                },
                VideoCodec::Hevc => match HevcNalType::from_header(header) {
                    HevcNalType::Vps => Some(0),
                    HevcNalType::Sps => Some(1),
                    HevcNalType::Pps => Some(2),
                    _ => None,
                },
            };
            if let Some(index) = index {
                seen[index] = true;
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal);
            }
        }
        let complete = match self.codec {
            VideoCodec::H264 => seen[1] && seen[2],
            VideoCodec::Hevc => seen.iter().all(|s| *s),
        };
        complete.then(|| out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f];
    const PPS: &[u8] = &[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80];
    const IDR: &[u8] = &[0, 0, 0, 1, 0x65, 0x88, 0x84];
    const SLICE: &[u8] = &[0, 0, 0, 1, 0x41, 0x9a, 0x02];

    fn keyframe() -> Vec<u8> {
        [SPS, PPS, IDR].concat()
    }

    #[test]
    fn video_and_audio_clocks_meet_on_the_90khz_timeline() {
        let mut video = TrackClock::new(90_000);
        let mut audio = TrackClock::new(48_000);
        // Random RTP offsets; audio arrives 20 ms after video.
        assert_eq!(video.ticks(1_000_000, Duration::from_millis(100)).0, 9_000);
        assert_eq!(audio.ticks(7_777, Duration::from_millis(120)).0, 10_800);
        // One second of media later, whatever the arrival jitter.
        assert_eq!(
            video.ticks(1_090_000, Duration::from_millis(1_180)).0,
            99_000
        );
        assert_eq!(
            audio.ticks(7_777 + 48_000, Duration::from_millis(1_100)).0,
            100_800
        );
    }

    #[test]
    fn media_time_past_the_32_bit_wrap_keeps_counting() {
        let mut clock = TrackClock::new(90_000);
        let before = u64::from(u32::MAX) - 1_500;
        assert_eq!(clock.ticks(before, Duration::ZERO).0, 0);
        // str0m extends the RTP timestamp past 2^32; the timeline keeps going forward.
        assert_eq!(clock.ticks(before + 3_000, Duration::ZERO).0, 3_000);
        // A reordered earlier unit maps before, not to a huge value.
        assert_eq!(clock.ticks(before - 3_000, Duration::ZERO).0, -3_000);
    }

    #[test]
    fn opus_time_scales_without_drift() {
        let mut clock = TrackClock::new(48_000);
        clock.ticks(0, Duration::ZERO);
        // 20 ms Opus frames for an hour: exact multiples of 1800 ticks.
        let hour = 48_000 * 3_600;
        assert_eq!(clock.ticks(hour, Duration::ZERO).0, 90_000 * 3_600);
    }

    #[test]
    fn video_waits_for_a_keyframe_with_parameter_sets() {
        let mut gate = VideoGate::new(VideoCodec::H264);
        assert_eq!(
            gate.offer(SLICE, false, true),
            Gate::Drop {
                request_keyframe: false
            }
        );
        // An IDR without SPS/PPS and none seen yet: undecodable, ask for another.
        assert_eq!(
            gate.offer(IDR, true, true),
            Gate::Drop {
                request_keyframe: true
            }
        );
        let Gate::Pass { keyframe: true, .. } = gate.offer(&keyframe(), true, true) else {
            panic!("a keyframe with its parameter sets passes");
        };
        assert!(matches!(
            gate.offer(SLICE, false, true),
            Gate::Pass {
                keyframe: false,
                ..
            }
        ));
    }

    #[test]
    fn loss_drops_to_the_next_keyframe_and_asks_once() {
        let mut gate = VideoGate::new(VideoCodec::H264);
        gate.offer(&keyframe(), true, true);
        assert_eq!(
            gate.offer(SLICE, false, false),
            Gate::Drop {
                request_keyframe: true
            }
        );
        assert_eq!(
            gate.offer(SLICE, false, false),
            Gate::Drop {
                request_keyframe: false
            }
        );
        assert_eq!(
            gate.offer(SLICE, false, true),
            Gate::Drop {
                request_keyframe: false
            }
        );
        // A keyframe after loss is fine even without SPS/PPS: the last ones go in front.
        let Gate::Pass { data, keyframe } = gate.offer(IDR, true, false) else {
            panic!("the keyframe passes");
        };
        assert!(keyframe);
        assert_eq!(&data[..], &keyframe_bytes_with(IDR)[..]);
    }

    fn keyframe_bytes_with(idr: &[u8]) -> Vec<u8> {
        [SPS, PPS, idr].concat()
    }

    #[test]
    fn an_oversized_access_unit_is_dropped() {
        let mut gate = VideoGate::new(VideoCodec::H264);
        gate.offer(&keyframe(), true, true);
        let huge = vec![0u8; MAX_ACCESS_UNIT + 1];
        assert_eq!(
            gate.offer(&huge, true, true),
            Gate::Drop {
                request_keyframe: true
            }
        );
        assert!(matches!(gate.offer(SLICE, false, true), Gate::Drop { .. }));
    }
}
