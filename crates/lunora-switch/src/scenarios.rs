//! Scenario tests in virtual time, named after what an operator sees, plus property tests.
//!
//! `Sim` plays two encoders fed the same source: 25 fps H.264 with a keyframe every second and
//! 48 kHz AAC, each on its own clock. Tests drop, degrade or restore them and check what leaves
//! the switcher.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use lunora_media::{Codec, Frame, MpegTime, Program, Track, TrackId};
use proptest::prelude::*;

use crate::align::Fingerprint;
use crate::*;

const FRAME: i64 = 3600; // 25 fps in 90 kHz ticks
const FRAME_MS: u64 = 40;
const AUDIO: i64 = 1920; // 1024 samples at 48 kHz

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Feed {
    Normal,
    Silent,
    /// Every fifth video frame only (frame-rate collapse, still flowing).
    Starved,
}

struct Encoder {
    /// Source-clock offset of this encoder's timestamps.
    base: i64,
    /// Keyframe phase in frames (the two encoders' GOPs are not aligned).
    phase: i64,
    video_pid: u16,
    audio_pid: u16,
    sps: &'static [u8],
    connected: bool,
}

struct Sim {
    switcher: Switcher,
    encoders: Vec<Encoder>,
    now_ms: u64,
    out: Vec<Frame>,
    switches: Vec<SwitchRecord>,
    all_lost: usize,
    programs: Vec<Program>,
    /// Index into `out` of the first frame after each switch.
    segment_starts: Vec<usize>,
    /// When each encoder first sent its SPS.
    sps_sent_at: [Option<Duration>; 2],
    /// The switcher's input index each encoder feeds (changes when an input is re-added).
    slots: [usize; 2],
    /// How late each encoder delivers the source (ms).
    lag_ms: [i64; 2],
    /// Hand the switcher a fingerprint of every picture, as the media engine would.
    fingerprints: bool,
}

/// A minimal SPS-like NAL per encoder (contents only need to differ).
const SPS_A: &[u8] = &[0x67, 0x64, 0x00, 0x28, 0xAA];
const SPS_B: &[u8] = &[0x67, 0x4D, 0x00, 0x28, 0xBB];

impl Sim {
    fn new(policy: Policy) -> Sim {
        Sim::with_second(policy, Role::Backup)
    }

    /// Encoder 0 feeds the main; encoder 1 an input of role `second`.
    fn with_second(policy: Policy, second: Role) -> Sim {
        let specs = vec![
            InputSpec {
                id: "main".into(),
                role: Role::Main,
            },
            InputSpec {
                id: second.name().into(),
                role: second,
            },
        ];
        let mut sim = Sim {
            switcher: Switcher::new(policy, specs),
            encoders: vec![
                Encoder {
                    base: 1_000_000,
                    phase: 0,
                    video_pid: 0x100,
                    audio_pid: 0x101,
                    sps: SPS_A,
                    connected: false,
                },
                Encoder {
                    base: 7_777_777,
                    phase: 11,
                    video_pid: 0x1E1,
                    audio_pid: 0x1E2,
                    sps: SPS_B,
                    connected: false,
                },
            ],
            now_ms: 0,
            out: Vec::new(),
            switches: Vec::new(),
            all_lost: 0,
            programs: Vec::new(),
            segment_starts: Vec::new(),
            sps_sent_at: [None; 2],
            slots: [0, 1],
            lag_ms: [0, 3],
            fingerprints: false,
        };
        for i in 0..2 {
            sim.connect(i);
        }
        sim
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.now_ms)
    }

    fn connect(&mut self, i: usize) {
        let now = self.now();
        let e = &mut self.encoders[i];
        e.connected = true;
        let program = Program {
            tracks: vec![
                Track::new(TrackId(e.video_pid), Codec::H264),
                Track::new(TrackId(e.audio_pid), Codec::AacAdts),
            ],
        };
        self.switcher.handle_connected(now, self.slots[i]);
        self.switcher.handle_program(now, self.slots[i], program);
        self.drain();
    }

    fn video(&self, i: usize, n: i64) -> Frame {
        let e = &self.encoders[i];
        let keyframe = (n + e.phase) % 25 == 0;
        // Encoder A repeats its SPS on every keyframe; encoder B only on every second, so cuts
        // to B often need the switcher to put B's parameter sets in band.
        let mut data = vec![0, 0, 0, 1, 0x09, 0xF0];
        if keyframe && (i == 0 || (n + e.phase) % 50 == 0) {
            data.extend([0, 0, 0, 1]);
            data.extend(e.sps);
        }
        data.extend([0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }]);
        data.extend((n as u32).to_be_bytes());
        let dts = e.base + n * FRAME;
        Frame {
            track: TrackId(e.video_pid),
            codec: Codec::H264,
            pts: MpegTime(dts + 2 * FRAME),
            dts: MpegTime(dts),
            keyframe,
            data: data.into(),
        }
    }

    fn audio(&self, i: usize, n: i64) -> Frame {
        let e = &self.encoders[i];
        let dts = e.base + n * AUDIO;
        Frame {
            track: TrackId(e.audio_pid),
            codec: Codec::AacAdts,
            pts: MpegTime(dts),
            dts: MpegTime(dts),
            keyframe: true,
            data: Bytes::from((n as u32).to_be_bytes().to_vec()),
        }
    }

    /// Runs until `until_ms` with each input fed as `feeds` says at each millisecond.
    fn run(&mut self, until_ms: u64, feeds: impl Fn(usize, u64) -> Feed) {
        while self.now_ms < until_ms {
            self.now_ms += 1;
            let now = self.now();
            for i in 0..2 {
                let feed = feeds(i, self.now_ms);
                if feed == Feed::Silent || !self.encoders[i].connected {
                    continue;
                }
                // Source time t (ms) → frame n. Both encoders see the same source; encoder B
                // delivers later (a different path, by default 3 ms).
                let t = self.now_ms as i64 - self.lag_ms[i];
                if t >= 0 && t % FRAME_MS as i64 == 0 {
                    let n = t / FRAME_MS as i64;
                    if feed == Feed::Normal || n % 5 == 0 {
                        let frame = self.video(i, n);
                        if frame.data.windows(5).any(|w| w == [0, 0, 0, 1, 0x67]) {
                            self.sps_sent_at[i].get_or_insert(now);
                        }
                        let pts = frame.pts;
                        self.switcher.handle_frame(now, self.slots[i], frame);
                        if self.fingerprints {
                            let print = Fingerprint {
                                pts,
                                blocks: crate::align::test_scene(n),
                            };
                            self.switcher.handle_fingerprint(now, self.slots[i], &print);
                        }
                    }
                }
                // Audio every 40 ms too (roughly), muxed 20 ms ahead of video.
                let ta = t + 20;
                if ta >= 0 && (ta * 90) % AUDIO < 90 {
                    let n = ta * 90 / AUDIO;
                    let frame = self.audio(i, n);
                    self.switcher.handle_frame(now, self.slots[i], frame);
                }
            }
            if self.switcher.poll_timeout() <= now {
                self.switcher.handle_timeout(now);
            }
            self.drain();
        }
    }

    fn drain(&mut self) {
        while let Some(output) = self.switcher.poll_output() {
            match output {
                Output::Frame(f) => self.out.push(f),
                Output::Switched(r) => {
                    self.segment_starts.push(self.out.len());
                    self.switches.push(r)
                }
                Output::AllLost { .. } => self.all_lost += 1,
                Output::Program(p) => self.programs.push(p),
                Output::HealthChanged { .. } => {}
            }
        }
    }

    fn command(&mut self, command: Command) {
        let now = self.now();
        self.switcher.handle_command(now, command);
        self.drain();
    }

    /// The encoder feeding switcher input `slot`, now or before it was re-added.
    fn encoder_of(&self, slot: usize) -> usize {
        self.slots
            .iter()
            .position(|&s| s == slot)
            .unwrap_or(slot % 2)
    }

    /// Takes encoder `i`'s input out of the channel (an operator removed it).
    fn remove(&mut self, i: usize) {
        let now = self.now();
        self.switcher.remove_input(now, self.slots[i]);
        self.drain();
    }

    /// Adds encoder `i` back as a new input of the running channel.
    fn add(&mut self, i: usize, spec: InputSpec) {
        let now = self.now();
        self.slots[i] = self.switcher.add_input(now, spec);
        self.connect(i);
    }

    /// Switches after the start.
    fn later_switches(&self) -> Vec<&SwitchRecord> {
        self.switches
            .iter()
            .filter(|s| s.reason != SwitchReason::Start)
            .collect()
    }

    fn video_out(&self) -> Vec<&Frame> {
        self.out.iter().filter(|f| f.codec.is_video()).collect()
    }

    /// The invariants every scenario must keep.
    fn check_invariants(&self) {
        let mut last: HashMap<TrackId, MpegTime> = HashMap::new();
        for f in &self.out {
            if let Some(prev) = last.insert(f.track, f.dts) {
                assert!(
                    f.dts > prev,
                    "DTS not strictly increasing on output track {:?}: {prev:?} then {:?}",
                    f.track,
                    f.dts
                );
            }
        }
        // After every switch, the first video frame is a keyframe carrying the new input's
        // own SPS in band (once that input has ever sent one).
        let video = self.video_out();
        assert!(
            video.first().is_none_or(|f| f.keyframe),
            "output starts on a keyframe"
        );
        for (switch, start) in self.switches.iter().zip(&self.segment_starts) {
            let first = self.out[*start..]
                .iter()
                .find(|f| f.codec.is_video())
                .expect("a video frame after a switch");
            assert!(
                first.keyframe,
                "the first video frame after a switch is a keyframe"
            );
            let encoder = self.encoder_of(switch.to);
            let sps = if encoder == 0 { SPS_A } else { SPS_B };
            if self.sps_sent_at[encoder].is_some_and(|at| at < switch.at) {
                assert!(
                    first.data.windows(sps.len()).any(|w| w == sps),
                    "keyframe after switch to {} lacks its SPS",
                    switch.to
                );
            }
        }
        // Output track ids are the fixed slots.
        for f in &self.out {
            assert!(
                f.track == TrackId(0) || f.track == TrackId(1),
                "unexpected output track {:?}",
                f.track
            );
        }
    }

    /// Aligned mode: audio and video keep one offset against source time across seams too.
    fn check_av_sync_across_seams(&self) {
        let deltas = |video: bool| -> Vec<i64> {
            self.out
                .iter()
                .filter(|f| f.codec.is_video() == video)
                .map(|f| f.dts.0 - source_number(f) * if video { FRAME } else { AUDIO })
                .collect()
        };
        let (v, a) = (deltas(true), deltas(false));
        let spread = |d: &[i64]| {
            d.iter()
                .max()
                .zip(d.iter().min())
                .map_or(0, |(max, min)| max - min)
        };
        assert!(
            spread(&v) <= 1,
            "video drifts against source time by {}",
            spread(&v)
        );
        assert!(
            spread(&a) <= AUDIO,
            "audio drifts against source time by {}",
            spread(&a)
        );
    }

    /// No audio frame starts inside the previous one (decoders' output would go backwards).
    fn check_no_audio_overlap(&self) {
        let audio: Vec<&Frame> = self.out.iter().filter(|f| !f.codec.is_video()).collect();
        for w in audio.windows(2) {
            assert!(
                w[1].dts - w[0].dts >= AUDIO,
                "audio frames overlap: {:?} then {:?}",
                w[0].dts,
                w[1].dts
            );
        }
    }

    /// Checks A/V sync: within each segment between switches, every frame's output DTS minus
    /// its source time (read back from the payload) is the same for audio and video, within
    /// one audio frame.
    fn check_av_sync(&self) {
        let mut bounds = self.segment_starts.clone();
        bounds.push(self.out.len());
        for segment in bounds.windows(2) {
            let deltas: Vec<i64> = self.out[segment[0]..segment[1]]
                .iter()
                .map(|f| {
                    let tail: [u8; 4] = f.data[f.data.len() - 4..].try_into().expect("4 bytes");
                    let n = i64::from(u32::from_be_bytes(tail));
                    f.dts.0 - n * if f.codec.is_video() { FRAME } else { AUDIO }
                })
                .collect();
            if let (Some(min), Some(max)) = (deltas.iter().min(), deltas.iter().max()) {
                assert!(
                    max - min <= AUDIO,
                    "A/V offset drifts by {} ticks within a segment",
                    max - min
                );
            }
        }
    }
}

fn feeds(schedule: &'static [(usize, u64, u64, Feed)]) -> impl Fn(usize, u64) -> Feed {
    move |i, t| {
        schedule
            .iter()
            .find(|(input, from, to, _)| *input == i && (*from..*to).contains(&t))
            .map_or(Feed::Normal, |s| s.3)
    }
}

#[test]
fn no_drops() {
    let mut sim = Sim::new(Policy::default());
    sim.run(20_000, |_, _| Feed::Normal);
    sim.check_invariants();
    sim.check_av_sync();
    assert_eq!(sim.switches.len(), 1);
    assert_eq!(sim.switches[0].to, 0);
    assert!(sim.later_switches().is_empty());
    // Every main frame from its first keyframe (frame 25, at 1 s) to frame 500 (at 20 s).
    assert_eq!(sim.video_out().len(), 476, "no frame lost");
}

#[test]
fn removing_the_input_on_air_cuts_to_the_backup_at_its_keyframe() {
    let mut sim = Sim::new(Policy::default());
    sim.run(5_000, |_, _| Feed::Normal);
    sim.remove(0);
    sim.run(10_000, |_, _| Feed::Normal);
    sim.check_invariants();
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert_eq!((switches[0].from, switches[0].to), (Some(0), 1));
    assert!(switches[0].at - Duration::from_secs(5) <= Duration::from_secs(1));
    assert_eq!(sim.switcher.inputs(), &[1]);
    assert!(sim.switcher.spec(0).is_none(), "a removed input is gone");
    sim.command(Command::Force(0));
    assert_eq!(
        sim.switcher.forced(),
        None,
        "a removed input cannot be forced"
    );
}

#[test]
fn a_main_added_at_run_time_takes_over_once_healthy() {
    let mut sim = Sim::new(Policy::default());
    sim.remove(0);
    sim.run(4_000, |_, _| Feed::Normal);
    assert_eq!(sim.switcher.active(), Some(1));
    sim.add(
        0,
        InputSpec {
            id: "new-main".into(),
            role: Role::Main,
        },
    );
    assert_eq!(sim.switcher.inputs(), &[2, 1], "a main comes first");
    sim.run(15_000, |_, _| Feed::Normal);
    sim.check_invariants();
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert_eq!(
        (switches[0].from, switches[0].to, switches[0].reason),
        (Some(1), 2, SwitchReason::ReturnToPrimary)
    );
}

#[test]
fn a_policy_change_applies_without_a_switch() {
    let mut sim = Sim::new(Policy::default());
    sim.run(3_000, |_, _| Feed::Normal);
    let policy = Policy {
        preference: Preference::Equal,
        health: HealthSettings {
            input_loss: Duration::from_millis(2_000),
            ..HealthSettings::default()
        },
        triggers: Vec::new(),
        ..Policy::default()
    };
    let now = sim.now();
    sim.switcher.set_policy(now, policy);
    // A 1 s silence is below the new loss threshold (the old one, 500 ms, would have moved
    // the channel to the backup): main stays on air.
    sim.run(10_000, feeds(&[(0, 5_000, 6_000, Feed::Silent)]));
    sim.check_invariants();
    assert!(sim.switches.iter().all(|s| s.to == 0), "{:?}", sim.switches);
}

#[test]
fn short_drop_below_threshold_no_switch() {
    let mut sim = Sim::new(Policy::default());
    sim.run(10_000, feeds(&[(0, 5_000, 5_300, Feed::Silent)]));
    sim.check_invariants();
    assert!(
        sim.later_switches().is_empty(),
        "{:?}",
        sim.later_switches()
    );
}

#[test]
fn main_lost_switches_at_backup_keyframe() {
    let mut sim = Sim::new(Policy::default());
    sim.run(12_000, feeds(&[(0, 5_000, 60_000, Feed::Silent)]));
    sim.check_invariants();
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 1, "{switches:?}");
    let s = switches[0];
    assert_eq!(
        (s.from, s.to, s.reason),
        (Some(0), 1, SwitchReason::InputLost)
    );
    // Detection: main's last frame (audio, muxed ahead) arrived just before 5000 ms; it is
    // declared lost 500 ms after that, to the millisecond (no polling delay).
    assert!(
        s.decided_at >= Duration::from_millis(5_480)
            && s.decided_at <= Duration::from_millis(5_500),
        "{:?}",
        s.decided_at
    );
    // The cut waits for backup's next keyframe: within one GOP of the decision.
    assert!(s.at - s.decided_at <= Duration::from_secs(1));
    // Output is tied to the wall clock: the DTS gap equals the real gap.
    let video = sim.video_out();
    let (before, after) = video
        .windows(2)
        .map(|w| (w[0], w[1]))
        .find(|(a, b)| b.dts - a.dts != FRAME)
        .expect("a gap at the switch");
    let dts_gap_ms = (after.dts - before.dts) / 90;
    let wall_gap_ms = (s.at.as_millis() as i64) - 4_960;
    assert!(
        (dts_gap_ms - wall_gap_ms).abs() <= FRAME_MS as i64,
        "DTS gap {dts_gap_ms} ms vs wall {wall_gap_ms} ms"
    );
}

#[test]
fn main_degraded_cuts_without_gap() {
    let mut sim = Sim::new(Policy::default());
    sim.run(12_000, feeds(&[(0, 5_000, 60_000, Feed::Starved)]));
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 1, "{switches:?}");
    let s = switches[0];
    assert_eq!(
        (s.from, s.to, s.reason),
        (Some(0), 1, SwitchReason::Degraded(Reason::FrameRate))
    );
    assert_eq!(s.gap, Duration::ZERO);
    // At the cut the output advances by exactly one frame.
    let video = sim.video_out();
    let cut = video
        .iter()
        .position(|f| {
            f.data.windows(5).any(|w| w == [0, 0, 0, 1, 0x67])
                && f.data.windows(5).any(|w| w == SPS_B)
        })
        .expect("backup keyframe");
    assert_eq!(video[cut].dts - video[cut - 1].dts, FRAME);
}

#[test]
fn primary_returns_after_error_clear() {
    let mut sim = Sim::new(Policy::default());
    sim.run(20_000, feeds(&[(0, 3_000, 6_000, Feed::Silent)]));
    sim.check_invariants();
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 2, "{switches:?}");
    assert_eq!(
        (switches[0].to, switches[0].reason),
        (1, SwitchReason::InputLost)
    );
    assert_eq!(
        (switches[1].to, switches[1].reason),
        (0, SwitchReason::ReturnToPrimary)
    );
    // Main is back at 6 s; it must be healthy for 5 s first.
    assert!(
        switches[1].decided_at >= Duration::from_millis(11_000),
        "{:?}",
        switches[1].decided_at
    );
    assert_eq!(
        switches[1].gap,
        Duration::ZERO,
        "returning to a healthy main is seamless"
    );
}

/// Main goes black from 3 s to 8 s (the detector says so at 5 s and 8 s).
fn black_main(triggers: Vec<Reason>) -> Sim {
    let mut sim = Sim::new(Policy {
        triggers,
        ..Policy::default()
    });
    sim.run(5_000, |_, _| Feed::Normal);
    let now = sim.now();
    sim.switcher.handle_content(now, 0, Reason::Black, true);
    sim.run(8_000, |_, _| Feed::Normal);
    let now = sim.now();
    sim.switcher.handle_content(now, 0, Reason::Black, false);
    sim.run(20_000, |_, _| Feed::Normal);
    sim.check_invariants();
    sim
}

#[test]
fn black_main_switches_to_backup_and_returns_after_error_clear() {
    let sim = black_main(vec![Reason::Black]);
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 2, "{switches:?}");
    assert_eq!(
        (switches[0].to, switches[0].reason),
        (1, SwitchReason::Degraded(Reason::Black))
    );
    assert_eq!(switches[0].decided_at, Duration::from_millis(5_000));
    assert_eq!(switches[0].gap, Duration::ZERO);
    // Black ends at 8 s, is held 2 s, then main must be healthy for error_clear (5 s).
    assert_eq!(
        (switches[1].to, switches[1].reason),
        (0, SwitchReason::ReturnToPrimary)
    );
    assert!(
        switches[1].decided_at >= Duration::from_millis(15_000),
        "{:?}",
        switches[1].decided_at
    );
}

#[test]
fn black_main_stays_on_air_when_black_is_not_a_trigger() {
    let sim = black_main(vec![Reason::LinkLoss]);
    assert!(sim.later_switches().is_empty());
    assert_eq!(sim.switcher.active(), Some(0));
}

#[test]
fn equal_preference_stays_on_backup() {
    let mut sim = Sim::new(Policy {
        preference: Preference::Equal,
        ..Policy::default()
    });
    sim.run(20_000, feeds(&[(0, 3_000, 6_000, Feed::Silent)]));
    sim.check_invariants();
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert_eq!(sim.switcher.active(), Some(1));
}

#[test]
fn manual_force_backup_then_auto() {
    let mut sim = Sim::new(Policy::default());
    sim.run(3_000, |_, _| Feed::Normal);
    sim.command(Command::Force(1));
    sim.run(6_000, |_, _| Feed::Normal);
    assert_eq!(sim.switcher.active(), Some(1));
    assert_eq!(sim.later_switches()[0].reason, SwitchReason::Manual);
    assert_eq!(sim.later_switches()[0].gap, Duration::ZERO);
    sim.command(Command::Auto);
    sim.run(9_000, |_, _| Feed::Normal);
    sim.check_invariants();
    // Main has been healthy throughout, so auto returns to it at once.
    assert_eq!(sim.switcher.active(), Some(0));
    assert_eq!(sim.later_switches().len(), 2);
}

#[test]
fn both_lost_then_backup_returns() {
    let mut sim = Sim::new(Policy::default());
    sim.run(
        15_000,
        feeds(&[
            (0, 3_000, 60_000, Feed::Silent),
            (1, 3_000, 8_000, Feed::Silent),
        ]),
    );
    sim.check_invariants();
    assert_eq!(sim.all_lost, 1);
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert_eq!(
        (switches[0].to, switches[0].reason),
        (1, SwitchReason::Resume)
    );
    assert!(switches[0].at >= Duration::from_millis(8_000));
    // The timeline resumed forward by about the time without signal.
    let video = sim.video_out();
    let (a, b) = video
        .windows(2)
        .map(|w| (w[0], w[1]))
        .find(|(a, b)| b.dts - a.dts != FRAME)
        .expect("gap");
    assert!((b.dts - a.dts) / 90 >= 5_000, "{} ms", (b.dts - a.dts) / 90);
}

#[test]
fn the_slate_holds_the_output_while_all_is_lost_and_yields_at_the_first_keyframe_back() {
    let mut sim = Sim::with_second(Policy::default(), Role::Slate);
    // The slate only flows while the channel runs it (from 4.5 s, after the main was lost at
    // 3 s): before that it is connected but silent, and it never takes the air from a main
    // that is merely there.
    sim.run(
        16_000,
        feeds(&[
            (0, 3_000, 10_000, Feed::Silent),
            (1, 0, 4_500, Feed::Silent),
        ]),
    );
    sim.check_invariants();
    sim.check_no_audio_overlap();
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 2, "{switches:?}");
    assert_eq!(
        (switches[0].to, switches[0].reason),
        (1, SwitchReason::Slate)
    );
    // Back to the main at its first keyframe, without waiting for error_clear (5 s).
    assert_eq!(
        (switches[1].to, switches[1].reason),
        (0, SwitchReason::Resume)
    );
    assert!(
        switches[1].at < Duration::from_millis(11_100),
        "{switches:?}"
    );
    assert_eq!(switches[1].gap, Duration::ZERO);
    // From the slate to the main, pictures are back to back.
    let start = sim.segment_starts[2];
    let first = sim.out[start..]
        .iter()
        .find(|f| f.codec.is_video())
        .unwrap();
    let before = sim.out[..start]
        .iter()
        .rev()
        .find(|f| f.codec.is_video())
        .unwrap();
    assert_eq!(first.dts - before.dts, FRAME);
    assert_eq!(sim.all_lost, 1);
}

#[test]
fn flapping_main_does_not_storm() {
    let mut sim = Sim::new(Policy::default());
    // From 3 s, main drops for 0.6 s out of every 1.5 s until 30 s, then settles.
    sim.run(45_000, |i, t| {
        if i == 0 && (3_000..30_000).contains(&t) && t % 1_500 < 600 {
            Feed::Silent
        } else {
            Feed::Normal
        }
    });
    sim.check_invariants();
    let switches = sim.later_switches();
    assert_eq!(
        switches.len(),
        2,
        "one switch away, one back after main settles: {switches:?}"
    );
    // Main's last drop ends at 29.1 s; it must then stay healthy for error_clear (5 s).
    assert!(
        switches[1].decided_at >= Duration::from_millis(34_100),
        "{:?}",
        switches[1].decided_at
    );
}

#[test]
fn encoders_with_different_sps() {
    let mut sim = Sim::new(Policy::default());
    // Backup sends its SPS on every second keyframe only; main is lost at 7 s.
    sim.run(12_000, feeds(&[(0, 7_000, 60_000, Feed::Silent)]));
    sim.check_invariants();
    let switch = sim.later_switches()[0].clone();
    let start = sim.segment_starts[sim
        .switches
        .iter()
        .position(|s| *s == switch)
        .expect("recorded")];
    let first = sim.out[start..]
        .iter()
        .find(|f| f.codec.is_video())
        .expect("video after the cut");
    assert!(
        first.data.windows(SPS_B.len()).any(|w| w == SPS_B),
        "backup's own SPS goes in band before its first keyframe"
    );
    assert!(
        !first.data.windows(SPS_A.len()).any(|w| w == SPS_A),
        "never main's"
    );
    // The access unit delimiter stays first.
    assert_eq!(&first.data[..6], &[0, 0, 0, 1, 0x09, 0xF0]);
}

#[test]
fn incompatible_backup_is_still_switched_to_and_reported() {
    let mut sim = Sim::new(Policy::default());
    // Backup turns out to be HEVC.
    sim.run(2_000, |_, _| Feed::Normal);
    let hevc = Program {
        tracks: vec![
            Track::new(TrackId(0x1E1), Codec::Hevc),
            Track::new(TrackId(0x1E2), Codec::AacAdts),
        ],
    };
    let now = sim.now();
    sim.switcher.handle_program(now, 1, hevc);
    sim.run(6_000, feeds(&[(0, 3_000, 60_000, Feed::Silent)]));
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 1);
    assert!(!switches[0].incompatible.is_empty(), "{switches:?}");
    assert_eq!(
        sim.programs.last().map(|p| p.tracks[0].codec),
        Some(Codec::Hevc),
        "PMT follows the new codec, same slots"
    );
}

/// Source frame number carried in a frame's payload.
fn source_number(f: &Frame) -> i64 {
    let tail: [u8; 4] = f.data[f.data.len() - 4..].try_into().expect("4 bytes");
    i64::from(u32::from_be_bytes(tail))
}

#[test]
fn aligned_seam_is_frame_accurate() {
    let mut sim = Sim::new(Policy {
        mode: SwitchMode::Aligned {
            delay: None,
            clock: AlignedClock::Arrival,
        },
        ..Policy::default()
    });
    // Main lost at 6 s; main back at 9 s; it returns after error_clear.
    sim.run(20_000, feeds(&[(0, 6_000, 9_000, Feed::Silent)]));
    sim.check_invariants();
    sim.check_av_sync_across_seams();
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 2, "{switches:?}");
    for s in &switches {
        assert_eq!(s.gap, Duration::ZERO, "{s:?}");
        assert_eq!(s.seam_error_frames, Some(0), "{s:?}");
    }
    // By content: every source frame exactly once, in order, across both seams.
    let numbers: Vec<i64> = sim.video_out().iter().map(|f| source_number(f)).collect();
    for w in numbers.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "content jumps from frame {} to {}",
            w[0],
            w[1]
        );
    }
    // And the output cadence never breaks.
    for w in sim.video_out().windows(2) {
        assert_eq!(w[1].dts - w[0].dts, FRAME);
    }
}

/// Two encoders with clocks of their own, the backup's content 600 ms behind the main's.
fn independent_clocks(clock: AlignedClock) -> Sim {
    let mut sim = Sim::new(Policy {
        mode: SwitchMode::Aligned { delay: None, clock },
        ..Policy::default()
    });
    sim.lag_ms = [0, 600];
    sim.fingerprints = true;
    // Main lost at 6 s; main back at 9 s; it returns after error_clear.
    sim.run(20_000, feeds(&[(0, 6_000, 9_000, Feed::Silent)]));
    sim
}

fn content_jumps(sim: &Sim) -> Vec<(i64, i64)> {
    let numbers: Vec<i64> = sim.video_out().iter().map(|f| source_number(f)).collect();
    numbers
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect()
}

#[test]
fn aligned_on_the_content_clock_is_frame_accurate_across_clocks_and_latencies() {
    let sim = independent_clocks(AlignedClock::Content);
    sim.check_invariants();
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 2, "{switches:?}");
    for s in &switches {
        assert_eq!(s.gap, Duration::ZERO, "{s:?}");
        assert_eq!(s.content_step_frames, Some(0), "{s:?}");
    }
    assert_eq!(content_jumps(&sim), vec![]);
    for w in sim.video_out().windows(2) {
        assert_eq!(w[1].dts - w[0].dts, FRAME);
    }
    let (pair, alignment) = sim.switcher.alignments().next().expect("an alignment");
    assert_eq!(pair, (0, 1));
    assert_eq!(alignment.shift, 7_777_777 - 1_000_000);
    // Arrival times alone are misled by the backup's latency: the same feeds repeat frames.
    let by_arrival = independent_clocks(AlignedClock::Arrival);
    assert!(!content_jumps(&by_arrival).is_empty());
}

#[test]
fn on_the_content_clock_a_return_waits_for_the_pictures_to_relate_the_inputs() {
    let mut sim = Sim::new(Policy {
        mode: SwitchMode::Aligned {
            delay: None,
            clock: AlignedClock::Content,
        },
        ..Policy::default()
    });
    // No fingerprints at all (a still picture would say as little).
    sim.run(30_000, feeds(&[(0, 6_000, 9_000, Feed::Silent)]));
    let switches = sim.later_switches();
    assert_eq!(switches.len(), 2, "{switches:?}");
    assert_eq!(
        switches[0].reason,
        SwitchReason::InputLost,
        "a loss never waits"
    );
    assert!(switches[0].at < Duration::from_secs(8));
    assert_eq!(switches[1].reason, SwitchReason::ReturnToPrimary);
    // Main healthy again from about 9 s: error_clear (5 s) plus the 10 s the return waits.
    assert!(switches[1].at >= Duration::from_secs(24), "{switches:?}");
}

#[test]
fn aligned_main_lost_soon_after_returning() {
    let mut sim = Sim::new(Policy {
        mode: SwitchMode::Aligned {
            delay: None,
            clock: AlignedClock::Arrival,
        },
        error_clear: Duration::from_secs(3),
        ..Policy::default()
    });
    // Main lost at 6 s, back at 8 s, returns on air after error_clear, lost again 1.5 s later.
    sim.run(30_000, |i, t| {
        if i == 0 && ((6_000..8_000).contains(&t) || t >= 16_500) {
            Feed::Silent
        } else {
            Feed::Normal
        }
    });
    sim.check_invariants();
    let switches = sim.later_switches();
    assert!(switches.len() >= 3, "{switches:?}");
    for s in &switches {
        assert_eq!(s.gap, Duration::ZERO, "{s:?}");
    }
    let numbers: Vec<i64> = sim.video_out().iter().map(|f| source_number(f)).collect();
    for w in numbers.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "content jumps from frame {} to {}; switches {switches:?}",
            w[0],
            w[1]
        );
    }
}

fn arbitrary_schedule() -> impl Strategy<Value = Vec<(usize, u64, u64, u8)>> {
    prop::collection::vec((0usize..2, 1_000u64..25_000, 50u64..4_000, 0u8..3), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn output_stays_conformant_under_random_loss_and_commands(
        schedule in arbitrary_schedule(),
        command_at in prop::option::of((2_000u64..20_000, 0usize..3)),
        aligned in any::<bool>(),
    ) {
        let mode = if aligned { SwitchMode::Aligned { delay: None, clock: AlignedClock::Arrival } } else { SwitchMode::Cut };
        let mut sim = Sim::new(Policy { mode, ..Policy::default() });
        let plan: Vec<(usize, u64, u64, Feed)> = schedule
            .iter()
            .map(|(i, from, len, kind)| (*i, *from, from + len, if *kind == 0 { Feed::Starved } else { Feed::Silent }))
            .collect();
        let feeds = move |i: usize, t: u64| plan.iter().find(|(input, from, to, _)| *input == i && (*from..*to).contains(&t)).map_or(Feed::Normal, |s| s.3);
        match command_at {
            Some((at, which)) => {
                sim.run(at, &feeds);
                sim.command(match which { 0 => Command::Force(0), 1 => Command::Force(1), _ => Command::Auto });
                sim.run(30_000, &feeds);
            }
            None => sim.run(30_000, &feeds),
        }
        sim.check_invariants();
        sim.check_av_sync();
        sim.check_no_audio_overlap();
        // No frame from an input that is not on air: each segment's video comes from the
        // input the switch named (encoders differ in their keyframe phase).
        for (switch, w) in sim.switches.iter().zip(sim.segment_starts.windows(2).map(|w| (w[0], w[1])).chain(std::iter::once((*sim.segment_starts.last().unwrap_or(&0), sim.out.len())))) {
            for f in sim.out[w.0..w.1].iter().filter(|f| f.codec.is_video() && f.keyframe) {
                let tail: [u8; 4] = f.data[f.data.len() - 4..].try_into().expect("4 bytes");
                let n = i64::from(u32::from_be_bytes(tail));
                let phase = sim.encoders[switch.to].phase;
                prop_assert_eq!((n + phase) % 25, 0, "keyframe of the wrong encoder in a segment of input {}", switch.to);
            }
        }
    }
}
