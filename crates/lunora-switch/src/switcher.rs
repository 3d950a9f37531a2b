//! The switcher: picks the input on air, cuts at keyframes, keeps the output timeline
//! continuous.
//!
//! Cutting never re-encodes, so a cut can only land on a keyframe of the incoming input:
//! - while the outgoing input still flows (degraded), it stays on air until the incoming
//!   input's next keyframe, and the keyframe follows its last frame by one frame duration —
//!   no gap;
//! - when the outgoing input is lost, the incoming input's next keyframe goes out after the real
//!   time that passed, so the output stays tied to the wall clock;
//! - in aligned mode the output runs a delay behind live, and a cut replays the incoming
//!   input's frames from the keyframe whose content time is not after the outgoing input's last
//!   frame, giving a seam without a gap or a repeat.
//!
//! Output DTS is strictly increasing per track; audio and data of the incoming input start at
//! the first frame at or after the video cut, so A/V sync is kept.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use lunora_media::{Codec, Frame, MpegTime, Program, TrackId};

use crate::align::{Alignment, ContentAligner, Fingerprint};
use crate::health::{Health, HealthSettings, InputHealth, Reason};
use crate::params::ParameterSets;
use crate::tracks::{adopt_codecs, map_tracks, output_program};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Main,
    Backup,
    /// The channel's own "broadcast hold" picture: on air only while no other input can be,
    /// and off air at the first keyframe of any input that returns (no `error_clear` wait).
    Slate,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Main => "main",
            Role::Backup => "backup",
            Role::Slate => "slate",
        }
    }

    fn priority(self) -> u8 {
        match self {
            Role::Main => 0,
            Role::Backup => 1,
            Role::Slate => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub id: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    /// Return to the highest-priority input once it has been healthy for `error_clear`.
    Primary,
    /// Stay on whatever input is on air while it is fine.
    Equal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchMode {
    Cut,
    /// Output runs `delay` behind live (default: the measured GOP) for frame-accurate seams
    /// between two encoders fed the same source.
    Aligned {
        delay: Option<Duration>,
        clock: AlignedClock,
    },
}

/// How aligned mode relates the two encoders' timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlignedClock {
    /// Same content arrives at the same time on both inputs (encoders of one model and
    /// setting): the clocks are related through arrival times.
    Arrival,
    /// Both encoders stamp frames from the same source clock (timecode-locked PTS): the same
    /// content carries the same timestamp, whatever each encoder's latency.
    Shared,
    /// Each encoder stamps its own clock: the pictures say which frames match (fingerprints
    /// from the media engine, see [`crate::align`]); arrival times stand in until they have.
    Content,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub health: HealthSettings,
    pub preference: Preference,
    pub error_clear: Duration,
    /// Which degradations move the channel off an input (loss always does).
    pub triggers: Vec<Reason>,
    pub mode: SwitchMode,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            health: HealthSettings::default(),
            preference: Preference::Primary,
            error_clear: Duration::from_secs(5),
            triggers: Reason::ALL.to_vec(),
            mode: SwitchMode::Cut,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Put this input on air and keep it there (falling back only while it is lost).
    Force(usize),
    /// Let the policy decide again.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchReason {
    /// The first input goes on air.
    Start,
    /// The input on air stopped.
    InputLost,
    Degraded(Reason),
    ReturnToPrimary,
    Manual,
    /// Every input had been lost; this one came back.
    Resume,
    /// Every input has been lost: the slate holds the output.
    Slate,
}

impl SwitchReason {
    pub fn name(self) -> &'static str {
        match self {
            SwitchReason::Start => "start",
            SwitchReason::InputLost => "input_lost",
            SwitchReason::Degraded(reason) => reason.name(),
            SwitchReason::ReturnToPrimary => "return_to_primary",
            SwitchReason::Manual => "manual",
            SwitchReason::Resume => "resume",
            SwitchReason::Slate => "slate",
        }
    }
}

/// One switch, as the log, the API and the metrics report it.
#[derive(Debug, Clone, PartialEq)]
pub struct SwitchRecord {
    pub from: Option<usize>,
    pub to: usize,
    pub reason: SwitchReason,
    /// When the policy decided.
    pub decided_at: Duration,
    /// When the cut happened (the incoming keyframe arrived).
    pub at: Duration,
    /// Wall-clock time between the last frame of the outgoing input that went out and the
    /// incoming keyframe, minus one frame: zero for a seamless cut.
    pub gap: Duration,
    /// For a loss: time from the outgoing input's last frame to the decision.
    pub detection: Option<Duration>,
    /// Input-clock distance, in frames, from the outgoing input's last video frame sent to
    /// the incoming keyframe, minus one. Meaningful when the two encoders share a clock (fed
    /// the same source with its timestamps): 0 means no frame skipped or repeated, positive
    /// counts skipped frames, negative repeated ones.
    pub content_step_frames: Option<i64>,
    /// Codec or resolution differ between the two inputs (the switch happens anyway).
    pub incompatible: Vec<String>,
    /// Aligned mode: how far (in frames) the seam is from content-exact.
    pub seam_error_frames: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Program(Program),
    Frame(Frame),
    Switched(SwitchRecord),
    HealthChanged {
        input: usize,
        health: Health,
    },
    /// Every input is lost: the output pauses.
    AllLost {
        at: Duration,
    },
}

/// Non-video frames kept per standby input, so that audio muxed ahead of its video is still
/// there when a cut lands on that video's keyframe.
const STANDBY_TAIL: usize = 128;
/// Automatic switches for degradation are at least this far apart (losses are not held back).
const MIN_DWELL: Duration = Duration::from_secs(1);
/// How often the switcher wants to re-evaluate health when nothing else wakes it.
const TICK: Duration = Duration::from_millis(50);
/// On the content clock, the longest a return to the primary waits for the pictures to relate
/// it to the input on air.
const CONTENT_RETURN_WAIT: Duration = Duration::from_secs(10);
/// Default video frame duration until one is measured (59.94 Hz field pairs).
const DEFAULT_FRAME_TICKS: i64 = 1_501;

#[derive(Debug)]
struct Input {
    spec: InputSpec,
    health: InputHealth,
    state: Health,
    program: Option<Program>,
    params: ParameterSets,
    video_codec: Option<Codec>,
    last_video_dts: Option<MpegTime>,
    frame_ticks: i64,
    /// Non-video frames recently received while not on air.
    tail: VecDeque<Frame>,
    /// Aligned mode: frames received, with their arrival, until they are released or too old.
    window: VecDeque<(Duration, Frame)>,
    /// Aligned mode: (arrival in 90 kHz ticks − DTS) of recent video frames. Their minimum is
    /// the input's clock relative to the wall clock, with network jitter filtered out.
    clock_samples: VecDeque<i64>,
    /// Removed from the channel: its slot stays (indices are never reused, so a late event
    /// from its task cannot reach another input) but it is never on air again.
    retired: bool,
}

impl Input {
    fn new(spec: InputSpec, health: HealthSettings) -> Input {
        Input {
            spec,
            health: InputHealth::new(health),
            state: Health::Lost,
            program: None,
            params: ParameterSets::default(),
            video_codec: None,
            last_video_dts: None,
            frame_ticks: DEFAULT_FRAME_TICKS,
            tail: VecDeque::new(),
            window: VecDeque::new(),
            clock_samples: VecDeque::new(),
            retired: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct LastOut {
    dts: MpegTime,
    step: i64,
    segment: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    target: usize,
    reason: SwitchReason,
    decided_at: Duration,
}

/// Aligned mode: a cut scheduled at a content-matching keyframe of the incoming input.
#[derive(Debug, Clone, Copy)]
struct Seam {
    pending: Pending,
    /// DTS (incoming clock) of the keyframe the incoming input starts on.
    key_dts: MpegTime,
    /// The keyframe's content time on the outgoing input's clock (fractional: the two
    /// encoders' frame grids need not line up).
    key_on_outgoing: i64,
}

#[derive(Debug)]
struct OnAir {
    input: usize,
    /// Added to the input's timestamps to get output timestamps.
    offset: i64,
    /// Input DTS of the keyframe the segment started on: earlier non-video frames are dropped.
    cut_dts: MpegTime,
    map: HashMap<TrackId, TrackId>,
    /// Input DTS of the last video frame sent from this segment.
    last_in_video: Option<MpegTime>,
}

#[derive(Debug)]
pub struct Switcher {
    policy: Policy,
    inputs: Vec<Input>,
    /// Indices of the inputs in service, by priority: the main first, then backups in the
    /// order they were added.
    order: Vec<usize>,
    on_air: Option<OnAir>,
    pending: Option<Pending>,
    forced: Option<usize>,
    output_program: Option<Program>,
    /// Per output track: last DTS sent, the step between its last two frames, and the segment
    /// (cut count) it was sent in.
    last_out: HashMap<TrackId, LastOut>,
    /// Incremented at every cut.
    segment: u64,
    /// Output DTS and wall time of the last video frame sent.
    last_video_out: Option<(MpegTime, Duration)>,
    /// Input DTS of the last video frame sent, on its own input's clock.
    last_in_video_sent: Option<MpegTime>,
    last_switch_at: Option<Duration>,
    /// The input that was on air when the output last lost its input.
    last_lost: Option<usize>,
    all_lost_reported: bool,
    outputs: VecDeque<Output>,
    next_tick: Duration,
    dropped_frames: u64,
    seam: Option<Seam>,
    /// Aligned mode with the content clock: what the pictures say about the inputs' shifts.
    aligner: ContentAligner,
}

impl Switcher {
    pub fn new(policy: Policy, inputs: Vec<InputSpec>) -> Self {
        let mut switcher = Switcher {
            inputs: Vec::new(),
            order: Vec::new(),
            policy,
            on_air: None,
            pending: None,
            forced: None,
            output_program: None,
            last_out: HashMap::new(),
            segment: 0,
            last_video_out: None,
            last_in_video_sent: None,
            last_switch_at: None,
            last_lost: None,
            all_lost_reported: false,
            outputs: VecDeque::new(),
            next_tick: Duration::ZERO,
            dropped_frames: 0,
            seam: None,
            aligner: ContentAligner::new(),
        };
        for spec in inputs {
            switcher.push_input(spec);
        }
        switcher
    }

    fn push_input(&mut self, spec: InputSpec) -> usize {
        let index = self.inputs.len();
        self.inputs.push(Input::new(spec, self.policy.health));
        self.order.push(index);
        // Stable: backups keep the order they were added in.
        let inputs = &self.inputs;
        self.order.sort_by_key(|&i| inputs[i].spec.role.priority());
        index
    }

    /// Adds an input to the running channel and returns its index for its events. Nothing on
    /// air changes until the policy prefers the new input.
    pub fn add_input(&mut self, now: Duration, spec: InputSpec) -> usize {
        let index = self.push_input(spec);
        self.evaluate(now);
        index
    }

    /// Takes an input out of service. When it is on air the channel moves on exactly as if it
    /// had been lost: to the next usable input at its next keyframe.
    pub fn remove_input(&mut self, now: Duration, input: usize) {
        let Some(i) = self.inputs.get_mut(input).filter(|i| !i.retired) else {
            return;
        };
        if i.retired {
            return;
        }
        i.retired = true;
        i.health.disconnected();
        i.state = Health::Lost;
        i.program = None;
        i.tail.clear();
        i.window.clear();
        i.clock_samples.clear();
        self.aligner.forget(input);
        self.order.retain(|&o| o != input);
        if self.forced == Some(input) {
            self.forced = None;
        }
        if self.pending.is_some_and(|p| p.target == input) {
            self.pending = None;
            self.seam = None;
        }
        if self.active() == Some(input) {
            self.lose_on_air(now);
        }
        self.evaluate(now);
    }

    /// Applies a changed failover policy to the running channel; the input on air stays.
    pub fn set_policy(&mut self, now: Duration, policy: Policy) {
        for input in &mut self.inputs {
            input.health.set_settings(policy.health);
        }
        self.policy = policy;
        self.evaluate(now);
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The input on air.
    pub fn active(&self) -> Option<usize> {
        self.on_air.as_ref().map(|a| a.input)
    }

    pub fn spec(&self, input: usize) -> Option<&InputSpec> {
        self.inputs
            .get(input)
            .filter(|i| !i.retired)
            .map(|i| &i.spec)
    }

    /// The inputs in service, by priority.
    pub fn inputs(&self) -> &[usize] {
        &self.order
    }

    pub fn forced(&self) -> Option<usize> {
        self.forced
    }

    /// The input a decided cut is waiting on for a keyframe: an input that can be asked for
    /// one (WebRTC) should be asked now.
    pub fn pending_target(&self) -> Option<usize> {
        self.pending.map(|p| p.target)
    }

    pub fn health(&self, input: usize) -> Option<&Health> {
        self.inputs.get(input).map(|i| &i.state)
    }

    /// Frames not sent because they would have broken the output timeline.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// When [`Switcher::handle_timeout`] should next be called: the periodic health tick, or
    /// sooner, the moment the input on air would count as lost (so detection is not late by
    /// up to a tick).
    pub fn poll_timeout(&self) -> Duration {
        let loss_deadline = self
            .on_air
            .as_ref()
            .and_then(|a| self.inputs[a.input].health.last_frame_at())
            .map(|at| at + self.policy.health.input_loss);
        let next = loss_deadline.map_or(self.next_tick, |deadline| deadline.min(self.next_tick));
        if self.policy.mode == SwitchMode::Cut {
            return next;
        }
        // Aligned mode: the next frame of the input on air becomes due.
        let delay = self.aligned_delay();
        let release = self
            .active()
            .and_then(|a| self.inputs[a].window.front())
            .map(|(at, _)| *at + delay);
        release.map_or(next, |r| r.min(next))
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        self.next_tick = now + TICK;
        self.evaluate(now);
        self.release_aligned(now);
    }

    pub fn handle_command(&mut self, now: Duration, command: Command) {
        self.forced = match command {
            Command::Force(input) if self.order.contains(&input) => Some(input),
            Command::Force(_) => self.forced,
            Command::Auto => None,
        };
        self.evaluate(now);
    }

    pub fn handle_connected(&mut self, now: Duration, input: usize) {
        let Some(i) = self.inputs.get_mut(input).filter(|i| !i.retired) else {
            return;
        };
        i.health.connected(now);
        i.last_video_dts = None;
        i.tail.clear();
        i.window.clear();
        i.clock_samples.clear();
        self.aligner.forget(input);
        if self.active() == Some(input) {
            // Same input, new sender: its clock restarted. Re-anchor at its first keyframe.
            self.lose_on_air(now);
        }
        self.evaluate(now);
    }

    pub fn handle_disconnected(&mut self, now: Duration, input: usize) {
        let Some(i) = self.inputs.get_mut(input).filter(|i| !i.retired) else {
            return;
        };
        i.health.disconnected();
        self.evaluate(now);
    }

    pub fn handle_program(&mut self, now: Duration, input: usize, program: Program) {
        let Some(i) = self.inputs.get_mut(input).filter(|i| !i.retired) else {
            return;
        };
        i.health
            .set_has_video(program.tracks.iter().any(|t| t.codec.is_video()));
        i.video_codec = program
            .tracks
            .iter()
            .map(|t| t.codec)
            .find(|c| c.is_video());
        i.program = Some(program);
        if self.active() == Some(input) {
            // The encoder changed its streams mid-air: remap at its next keyframe.
            self.lose_on_air(now);
        }
        self.evaluate(now);
    }

    /// SRT counters of the input's current connection.
    pub fn handle_link(
        &mut self,
        now: Duration,
        input: usize,
        packets_received: u64,
        packets_lost: u64,
    ) {
        if let Some(i) = self.inputs.get_mut(input).filter(|i| !i.retired) {
            i.health.handle_link(now, packets_received, packets_lost);
        }
    }

    /// TR 101 290 priority-1 error total of the input.
    pub fn handle_tr101290(&mut self, now: Duration, input: usize, priority1_total: u64) {
        if let Some(i) = self.inputs.get_mut(input).filter(|i| !i.retired) {
            i.health.handle_tr101290(now, priority1_total);
        }
    }

    /// A decoded picture of the input (aligned mode with the content clock learns the inputs'
    /// shifts from them; otherwise they are not needed). Returns the pairs of inputs whose
    /// shift the pictures have just established or moved.
    pub fn handle_fingerprint(
        &mut self,
        now: Duration,
        input: usize,
        print: &Fingerprint,
    ) -> Vec<(usize, usize)> {
        let usable = self
            .inputs
            .get(input)
            .is_some_and(|i| !i.retired && i.spec.role != Role::Slate);
        if !usable || !self.content_clock() {
            return Vec::new();
        }
        self.aligner.push(input, print);
        self.aligner.poll(now)
    }

    /// What the pictures say about two inputs, keyed `(a, b)` with `a < b`.
    pub fn alignments(&self) -> impl Iterator<Item = ((usize, usize), Alignment)> + '_ {
        self.aligner.alignments()
    }

    /// On the content clock a return to the primary (a choice, not an emergency) waits until
    /// the pictures have related the two inputs, so that its seam is content-exact; a picture
    /// that says nothing (a still) holds it back at most `CONTENT_RETURN_WAIT`.
    fn related_for_return(&self, current: usize, returning: usize, now: Duration) -> bool {
        !self.content_clock()
            || self.aligner.shift(current, returning).is_some()
            || self.inputs[returning].health.healthy_for(now)
                >= self.policy.error_clear + CONTENT_RETURN_WAIT
    }

    fn content_clock(&self) -> bool {
        matches!(
            self.policy.mode,
            SwitchMode::Aligned {
                clock: AlignedClock::Content,
                ..
            }
        )
    }

    /// A content condition (black, frozen, silent) of the input started or ended.
    pub fn handle_content(&mut self, now: Duration, input: usize, reason: Reason, present: bool) {
        if let Some(i) = self.inputs.get_mut(input).filter(|i| !i.retired) {
            i.health.set_ongoing(now, reason, present);
            self.evaluate(now);
        }
    }

    pub fn handle_frame(&mut self, now: Duration, input: usize, frame: Frame) {
        let Some(i) = self.inputs.get_mut(input).filter(|i| !i.retired) else {
            return;
        };
        i.health.handle_frame(now, &frame);
        if frame.codec.is_video() {
            if let Some(last) = i.last_video_dts {
                let step = frame.dts - last;
                if step > 0 && step < 90_000 {
                    i.frame_ticks = step;
                }
            }
            i.last_video_dts = Some(frame.dts);
            i.params.observe(frame.codec, &frame.data);
            if self.policy.mode != SwitchMode::Cut {
                i.clock_samples.push_back(ticks(now) - frame.dts.0);
                if i.clock_samples.len() > 100 {
                    i.clock_samples.pop_front();
                }
            }
        }
        if self.active().is_none() && self.pending.is_none() {
            // Nothing on air: decide now, so this very frame can start the output if it is a
            // keyframe, instead of waiting a GOP for the next one.
            self.evaluate(now);
        }
        if self.policy.mode == SwitchMode::Cut {
            self.route(now, input, frame);
        } else {
            self.inputs[input].window.push_back((now, frame));
            self.release_aligned(now);
        }
    }

    // ---- policy ----------------------------------------------------------------------------

    fn triggers(&self, health: &Health) -> Option<SwitchReason> {
        match health {
            Health::Healthy => None,
            Health::Lost => Some(SwitchReason::InputLost),
            Health::Degraded(reasons) => reasons
                .iter()
                .find(|r| self.policy.triggers.contains(r))
                .map(|r| SwitchReason::Degraded(*r)),
        }
    }

    fn evaluate(&mut self, now: Duration) {
        for position in 0..self.order.len() {
            let index = self.order[position];
            let health = self.inputs[index].health.evaluate(now);
            if health != self.inputs[index].state {
                self.inputs[index].state = health.clone();
                self.outputs.push_back(Output::HealthChanged {
                    input: index,
                    health,
                });
            }
        }
        if let Some(active) = self.active()
            && self.inputs[active].state == Health::Lost
            && (self.policy.mode == SwitchMode::Cut
                || (self.inputs[active].window.is_empty() && self.seam.is_none()))
        {
            // (Aligned mode first sends what it still holds of the lost input.)
            self.lose_on_air(now);
        }
        let desired = self.desired(now);
        match desired {
            Some((target, _)) if Some(target) == self.active() => self.pending = None,
            Some((target, reason)) => {
                if self.pending.is_none_or(|p| p.target != target) {
                    self.pending = Some(Pending {
                        target,
                        reason,
                        decided_at: now,
                    });
                }
            }
            None => self.pending = None,
        }
        if self
            .seam
            .is_some_and(|seam| self.pending.is_none_or(|p| p.target != seam.pending.target))
        {
            self.seam = None;
        }
        let nothing_flows =
            self.active().is_none() && self.inputs.iter().all(|i| i.state == Health::Lost);
        // (Retired inputs are always `Lost`.)
        if nothing_flows && self.last_video_out.is_some() && !self.all_lost_reported {
            self.all_lost_reported = true;
            self.outputs.push_back(Output::AllLost { at: now });
        }
    }

    /// Which input should be on air, and why a change would be made.
    fn desired(&self, now: Duration) -> Option<(usize, SwitchReason)> {
        let usable = |i: usize| self.inputs[i].state != Health::Lost;
        let fine = |i: usize| self.triggers(&self.inputs[i].state).is_none();
        let current = self.active();
        if let Some(forced) = self.forced
            && usable(forced)
        {
            return Some((forced, SwitchReason::Manual));
        }
        let is_slate = |i: usize| self.inputs[i].spec.role == Role::Slate;
        let by_priority = self.order.iter().copied().filter(|&i| !is_slate(i));
        let slate = self
            .order
            .iter()
            .copied()
            .find(|&i| is_slate(i) && usable(i));
        let returning = by_priority
            .clone()
            .find(|&i| fine(i))
            .or_else(|| by_priority.clone().find(|&i| usable(i)));
        let Some(current) = current else {
            let reason = if self.all_lost_reported {
                SwitchReason::Resume
            } else if self.last_lost.is_some() {
                SwitchReason::InputLost
            } else {
                SwitchReason::Start
            };
            return match (returning, slate) {
                (Some(input), _) => Some((input, reason)),
                (None, Some(slate)) => Some((slate, SwitchReason::Slate)),
                (None, None) => None,
            };
        };
        if is_slate(current) {
            return Some(returning.map_or((current, SwitchReason::Slate), |input| {
                (input, SwitchReason::Resume)
            }));
        }
        if fine(current) {
            if self.policy.preference == Preference::Primary {
                let better = by_priority
                    .clone()
                    .take_while(|&i| i != current)
                    .find(|&i| {
                        fine(i)
                            && self.inputs[i].health.healthy_for(now) >= self.policy.error_clear
                            && self.related_for_return(current, i, now)
                    });
                if let Some(better) = better {
                    return Some((better, SwitchReason::ReturnToPrimary));
                }
            }
            return Some((current, SwitchReason::Start));
        }
        // The input on air is degraded in a way that triggers a switch, or lost.
        let reason = self
            .triggers(&self.inputs[current].state)
            .unwrap_or(SwitchReason::InputLost);
        let lost = self.inputs[current].state == Health::Lost;
        let dwelling = !lost
            && self
                .last_switch_at
                .is_some_and(|at| now.saturating_sub(at) < MIN_DWELL);
        if dwelling {
            return Some((current, reason));
        }
        let mut others = by_priority.filter(|&i| i != current);
        let alternative = others.clone().find(|&i| fine(i));
        // Anything flowing beats an input that is gone, even if it is degraded itself.
        let alternative = if lost {
            alternative.or_else(|| others.find(|&i| usable(i)))
        } else {
            alternative
        };
        Some((alternative.unwrap_or(current), reason))
    }

    /// The input on air stopped (or restarted): nothing goes out until a keyframe re-anchors.
    fn lose_on_air(&mut self, now: Duration) {
        if let Some(on_air) = self.on_air.take() {
            self.last_lost = Some(on_air.input);
            self.last_switch_at = Some(now);
            self.pending = None;
            self.seam = None;
        }
    }

    // ---- routing (cut mode) ------------------------------------------------------------------

    fn can_start_on(&self, input: usize, frame: &Frame) -> bool {
        let has_video = self.inputs[input].video_codec.is_some();
        if has_video {
            frame.codec.is_video() && frame.keyframe
        } else {
            frame.keyframe
        }
    }

    fn route(&mut self, now: Duration, input: usize, frame: Frame) {
        if let Some(pending) = self.pending
            && pending.target == input
            && self.inputs[input].program.is_some()
            && self.can_start_on(input, &frame)
        {
            self.cut(now, input, pending, frame, None);
            return;
        }
        if self.active() == Some(input) {
            self.emit(now, frame);
            return;
        }
        if !frame.codec.is_video() {
            let tail = &mut self.inputs[input].tail;
            tail.push_back(frame);
            if tail.len() > STANDBY_TAIL {
                tail.pop_front();
            }
        }
    }

    /// Puts `input` on air starting with `keyframe`. `anchor` (aligned mode) is the output DTS
    /// the keyframe takes to continue the content exactly.
    fn cut(
        &mut self,
        now: Duration,
        input: usize,
        pending: Pending,
        keyframe: Frame,
        anchor: Option<MpegTime>,
    ) {
        let from = if pending.reason == SwitchReason::Start {
            None
        } else {
            self.active().or(self.last_lost)
        };
        let frame_ticks = self.inputs[input].frame_ticks;
        let (target, gap) = match (anchor, self.last_video_out) {
            (Some(anchor), _) => (anchor, Duration::ZERO),
            (None, None) => (keyframe.dts, Duration::ZERO),
            (None, Some((last_dts, last_at))) => {
                let elapsed = now.saturating_sub(last_at);
                let frame = Duration::from_micros((frame_ticks as u64 * 1000) / 90);
                if self.active().is_some() {
                    // The outgoing input is still on air: butt the keyframe against its last frame.
                    (last_dts + frame_ticks, Duration::ZERO)
                } else {
                    // A real pause: the output timeline moves on by the time that passed.
                    let ticks = (elapsed.as_micros() as i64 * 90 / 1000).max(frame_ticks);
                    let rounded = (ticks + frame_ticks / 2) / frame_ticks * frame_ticks;
                    (last_dts + rounded, elapsed.saturating_sub(frame))
                }
            }
        };
        let program = self.inputs[input].program.clone().unwrap_or_default();
        let mut incompatible = Vec::new();
        let output = match &self.output_program {
            Some(output) => output.clone(),
            None => {
                let output = output_program(&program);
                self.output_program = Some(output.clone());
                self.outputs.push_back(Output::Program(output.clone()));
                output
            }
        };
        let (map, problems) = map_tracks(&output, &program);
        incompatible.extend(problems);
        let adopted = adopt_codecs(&output, &program, &map);
        if adopted != output {
            self.output_program = Some(adopted.clone());
            self.outputs.push_back(Output::Program(adopted));
        }
        if let Some(previous) = from.filter(|f| *f != input)
            && let (Some(a), Some(b)) = (
                self.inputs[previous].params.format,
                self.inputs[input].params.format,
            )
            && (a.width, a.height) != (b.width, b.height)
        {
            incompatible.push(format!(
                "resolution {}x{} → {}x{}",
                a.width, a.height, b.width, b.height
            ));
        }
        let offset = target.0 - keyframe.dts.0;
        self.segment += 1;
        self.on_air = Some(OnAir {
            input,
            offset,
            cut_dts: keyframe.dts,
            map,
            last_in_video: None,
        });
        self.pending = None;
        self.last_switch_at = Some(now);
        self.all_lost_reported = false;
        self.last_lost = None;
        let record = SwitchRecord {
            from,
            to: input,
            reason: pending.reason,
            decided_at: pending.decided_at,
            at: now,
            gap,
            detection: (pending.reason == SwitchReason::InputLost
                || pending.reason == SwitchReason::Resume)
                .then(|| {
                    from.and_then(|f| self.inputs[f].health.last_frame_at())
                        .map(|last| pending.decided_at.saturating_sub(last))
                })
                .flatten(),
            content_step_frames: self.last_in_video_sent.and_then(|last| {
                // On the outgoing input's clock; only the pictures can say it across clocks.
                let shift = match from.filter(|_| self.content_clock()) {
                    Some(from) => self.aligner.shift(from, input)?,
                    None => 0,
                };
                Some((keyframe.dts.0 - shift - last.0) / frame_ticks.max(1) - 1)
            }),
            incompatible,
            seam_error_frames: None,
        };
        self.outputs.push_back(Output::Switched(record));

        let mut keyframe = keyframe;
        let codec = keyframe.codec;
        keyframe.data = self.inputs[input].params.in_band(codec, &keyframe.data);
        self.emit(now, keyframe);
        // Audio and data muxed ahead of the keyframe: send what belongs after the cut.
        let tail: Vec<Frame> = self.inputs[input].tail.drain(..).collect();
        for frame in tail {
            self.emit(now, frame);
        }
    }

    /// Sends a frame of the input on air, re-timed; drops what would break the timeline.
    fn emit(&mut self, now: Duration, frame: Frame) {
        let Some(on_air) = &self.on_air else { return };
        if !frame.codec.is_video() && frame.dts < on_air.cut_dts {
            return;
        }
        let Some(&track) = on_air.map.get(&frame.track) else {
            self.dropped_frames += 1;
            return;
        };
        let dts = frame.dts + on_air.offset;
        let pts = frame.pts + on_air.offset;
        if frame.codec.is_video()
            && let Some(last) = on_air.last_in_video
            && !(frame.dts > last && frame.dts - last <= 90_000)
        {
            // The input's clock jumped while on air: re-anchor at its next keyframe.
            let input = on_air.input;
            self.on_air = None;
            self.pending = Some(Pending {
                target: input,
                reason: SwitchReason::Degraded(Reason::TimestampJump),
                decided_at: now,
            });
            self.dropped_frames += 1;
            if self.can_start_on(input, &frame) {
                let pending = self.pending.take().unwrap_or(Pending {
                    target: input,
                    reason: SwitchReason::InputLost,
                    decided_at: now,
                });
                self.cut(now, input, pending, frame, None);
            }
            return;
        }
        let previous = self.last_out.get(&track).copied();
        if let Some(last) = previous {
            // Within a segment DTS must increase; across a cut a frame must also not overlap
            // the last one sent (an audio frame starting inside the previous one would make
            // decoders' output go backwards).
            let overlaps = !frame.codec.is_video()
                && last.segment != self.segment
                && dts.0 < last.dts.0 + last.step;
            if dts <= last.dts || overlaps {
                self.dropped_frames += 1;
                return;
            }
        }
        let step = previous
            .filter(|last| last.segment == self.segment)
            .map_or(0, |last| dts - last.dts);
        self.last_out.insert(
            track,
            LastOut {
                dts,
                step,
                segment: self.segment,
            },
        );
        if frame.codec.is_video() {
            self.last_video_out = Some((dts, now));
            self.last_in_video_sent = Some(frame.dts);
            if let Some(on_air) = self.on_air.as_mut() {
                on_air.last_in_video = Some(frame.dts);
            }
        }
        self.outputs.push_back(Output::Frame(Frame {
            track,
            codec: frame.codec,
            pts,
            dts,
            keyframe: frame.keyframe,
            data: frame.data,
        }));
    }

    // ---- aligned mode ------------------------------------------------------------------------

    fn aligned_delay(&self) -> Duration {
        match self.policy.mode {
            SwitchMode::Aligned {
                delay: Some(delay), ..
            } => delay,
            // One GOP, plus the time it takes to notice a loss, plus a margin: when the loss is
            // known, the standby still has a keyframe whose content the output has not reached.
            _ => {
                self.inputs
                    .iter()
                    .filter_map(|i| i.health.gop())
                    .max()
                    .unwrap_or(Duration::from_secs(1))
                    + self.policy.health.input_loss
                    + Duration::from_millis(200)
            }
        }
    }

    /// The input's clock against the wall clock (minimum of arrival − DTS), if measured.
    fn clock(&self, input: usize) -> Option<i64> {
        self.inputs[input].clock_samples.iter().min().copied()
    }

    /// `dts_to = dts_from + shift` for the same content on two inputs.
    fn shift(&self, from: usize, to: usize) -> Option<i64> {
        match self.policy.mode {
            SwitchMode::Aligned {
                clock: AlignedClock::Shared,
                ..
            } => Some(0),
            SwitchMode::Aligned {
                clock: AlignedClock::Content,
                ..
            } => self
                .aligner
                .shift(from, to)
                .or_else(|| Some(self.clock(from)? - self.clock(to)?)),
            _ => Some(self.clock(from)? - self.clock(to)?),
        }
    }

    /// Aligned mode: releases frames of the input on air once they are `delay` old, starts
    /// the output, and makes scheduled seams happen at the right frame.
    fn release_aligned(&mut self, now: Duration) {
        if self.policy.mode == SwitchMode::Cut {
            return;
        }
        let delay = self.aligned_delay();
        let due = now.saturating_sub(delay);
        let keep = delay * 2 + Duration::from_secs(1);
        for input in &mut self.inputs {
            while input
                .window
                .front()
                .is_some_and(|(at, _)| now.saturating_sub(*at) > keep)
            {
                input.window.pop_front();
            }
        }
        if self.active().is_none() {
            self.start_aligned(now, due);
        }
        if self.seam.is_none() {
            self.schedule_seam();
        }
        loop {
            let Some(active) = self.active() else { return };
            let next_due = self.inputs[active]
                .window
                .front()
                .is_some_and(|(at, _)| *at <= due);
            if !next_due {
                // The outgoing input has nothing more to send: if it is gone, the seam happens
                // when the keyframe it waits for is due.
                if let Some(seam) = self.seam
                    && self.inputs[active].window.is_empty()
                    && self.inputs[active].state == Health::Lost
                    && self.inputs[seam.pending.target]
                        .window
                        .iter()
                        .any(|(at, f)| f.dts == seam.key_dts && *at <= due)
                {
                    let anchor = self
                        .on_air
                        .as_ref()
                        .map(|a| MpegTime(seam.key_on_outgoing + a.offset));
                    self.make_seam(now, seam, anchor);
                    continue;
                }
                return;
            }
            let Some((_, frame)) = self.inputs[active].window.pop_front() else {
                return;
            };
            if let Some(seam) = self.seam
                && frame.dts.0 >= seam.key_on_outgoing - self.inputs[active].frame_ticks / 2
            {
                if frame.codec.is_video() {
                    // This frame's slot goes to the incoming keyframe.
                    let anchor = self.on_air.as_ref().map(|a| frame.dts + a.offset);
                    self.make_seam(now, seam, anchor);
                }
                continue;
            }
            self.emit(now, frame);
        }
    }

    /// Nothing on air (at the start, or the outgoing input ran dry before a seam was found):
    /// start on the pending input's keyframe that is due — the first one whose content comes
    /// after what was last sent, so a late seam leaves a gap rather than repeating frames.
    fn start_aligned(&mut self, now: Duration, due: Duration) {
        let Some(pending) = self
            .pending
            .filter(|p| self.inputs[p.target].program.is_some())
        else {
            return;
        };
        let target = pending.target;
        let after = match (self.last_lost, self.last_in_video_sent) {
            (Some(previous), Some(last)) => {
                self.shift(previous, target).map(|shift| last.0 + shift)
            }
            _ => None,
        };
        let Some(index) = self.inputs[target].window.iter().position(|(at, f)| {
            *at <= due && self.can_start_on(target, f) && after.is_none_or(|after| f.dts.0 > after)
        }) else {
            return;
        };
        let Some(keyframe) = self.take_from_keyframe(target, index) else {
            return;
        };
        self.seam = None;
        self.cut(now, target, pending, keyframe, None);
    }

    /// With a switch pending, finds the incoming input's first keyframe whose content comes
    /// after the last frame sent, and notes where on the outgoing input's clock it falls.
    fn schedule_seam(&mut self) {
        let (Some(active), Some(pending)) = (self.active(), self.pending) else {
            return;
        };
        let target = pending.target;
        if target == active || self.inputs[target].program.is_none() {
            return;
        }
        let (Some(shift), Some(last_sent)) = (self.shift(active, target), self.last_in_video_sent)
        else {
            return;
        };
        let frame_ticks = self.inputs[active].frame_ticks;
        let key = self.inputs[target].window.iter().map(|(_, f)| f).find(|f| {
            f.codec.is_video() && f.keyframe && f.dts.0 - shift > last_sent.0 + frame_ticks / 2
        });
        if let Some(key) = key {
            self.seam = Some(Seam {
                pending,
                key_dts: key.dts,
                key_on_outgoing: key.dts.0 - shift,
            });
        }
    }

    /// Takes the frame at `index` (a keyframe) out of `input`'s window, dropping what came
    /// before it except audio and data muxed ahead of it, which wait in the tail to go out right
    /// after the keyframe.
    fn take_from_keyframe(&mut self, input: usize, index: usize) -> Option<Frame> {
        let window = &mut self.inputs[input].window;
        let before: Vec<Frame> = window.drain(..index).map(|(_, f)| f).collect();
        let (_, keyframe) = window.pop_front()?;
        self.inputs[input].tail = before
            .into_iter()
            .filter(|f| !f.codec.is_video() && f.dts >= keyframe.dts)
            .collect();
        Some(keyframe)
    }

    /// Carries out a scheduled seam: the incoming input goes on air at its keyframe.
    fn make_seam(&mut self, now: Duration, seam: Seam, anchor: Option<MpegTime>) {
        self.seam = None;
        let target = seam.pending.target;
        let Some(index) = self.inputs[target]
            .window
            .iter()
            .position(|(_, f)| f.dts == seam.key_dts && f.codec.is_video())
        else {
            // The keyframe aged out of the window; a new seam will be found.
            return;
        };
        let Some(keyframe) = self.take_from_keyframe(target, index) else {
            return;
        };
        let outgoing = self.active();
        let frame_ticks = outgoing.map_or(DEFAULT_FRAME_TICKS, |a| self.inputs[a].frame_ticks);
        // How far the seam is from content-exact, in frames (the two frame grids may differ).
        let error = anchor.zip(self.on_air.as_ref()).map(|(anchor, a)| {
            (anchor.0 - a.offset - seam.key_on_outgoing) as f64 / frame_ticks as f64
        });
        self.cut(now, target, seam.pending, keyframe, anchor);
        if let Some(error) = error {
            let frames = error.round() as i64;
            if let Some(Output::Switched(record)) = self
                .outputs
                .iter_mut()
                .rev()
                .find(|o| matches!(o, Output::Switched(_)))
            {
                record.seam_error_frames = Some(frames);
            }
        }
    }
}

/// A duration in 90 kHz ticks.
fn ticks(d: Duration) -> i64 {
    (d.as_micros() * 90 / 1000) as i64
}
