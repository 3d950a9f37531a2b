//! Content health for one channel: a probe per input slot (the media engine's low-resolution
//! decode) and a detector per slot that turns its measurements into the `black`, `frozen` and
//! `silent` conditions the switcher judges like any other health reason. The same probe
//! fingerprints every picture when aligned mode runs on the content clock; the fingerprints go
//! to the switcher, which learns the inputs' shifts from them.
//!
//! The channel task hands every input event to [`ContentHealth::event`] and calls
//! [`ContentHealth::poll`] after each wake-up. Nothing here waits: frames are offered to the
//! probe without blocking (dropped when it is behind), measurements are taken with `try_recv`,
//! and probes are started and stopped on the blocking pool, because both join GStreamer threads.
//! A slot's probe starts with each `Program` (so it decodes what the input now carries) and
//! with the first frame of each new sender, and stops when the sender goes or the input is
//! removed.

use std::collections::HashMap;
use std::time::Duration;

use lunora_ingest::InputEvent;
use lunora_media::{Codec, Program};
use lunora_switch::content::{ContentDetector, ContentSettings};
use lunora_switch::{Reason, Role, Switcher};
use tokio::sync::oneshot;
use tracing::warn;

use crate::settings::FailoverSettings;

#[cfg(feature = "engine")]
use lunora_engine::ContentProbe as Probe;

/// Without the media engine no probe can exist: `FailoverSettings::validate` refuses content
/// health in such a build, so `start_probe` is never reached.
#[cfg(not(feature = "engine"))]
#[derive(Debug)]
enum Probe {}

#[cfg(not(feature = "engine"))]
impl Probe {
    fn offer(&mut self, _: &lunora_media::Frame) {
        match *self {}
    }

    fn try_measurement(&mut self) -> Option<lunora_switch::content::Measurement> {
        match *self {}
    }

    fn try_fingerprint(&mut self) -> Option<lunora_switch::align::Fingerprint> {
        match *self {}
    }

    fn error(&self) -> Option<String> {
        match *self {}
    }
}

/// What a channel's probes are for.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct ContentWork {
    /// Content health's thresholds, when it runs.
    pub(crate) judge: Option<ContentSettings>,
    /// Aligned mode on the content clock: every picture is fingerprinted.
    pub(crate) fingerprint: bool,
}

impl ContentWork {
    pub(crate) fn of(failover: &FailoverSettings) -> ContentWork {
        ContentWork {
            judge: failover.content(),
            fingerprint: failover.content_alignment(),
        }
    }

    fn is_on(&self) -> bool {
        self.judge.is_some() || self.fingerprint
    }

    /// Whether probes made for `self` do what `other` needs (thresholds aside).
    fn same_probes(&self, other: &ContentWork) -> bool {
        self.judge.is_some() == other.judge.is_some() && self.fingerprint == other.fingerprint
    }
}

#[cfg(feature = "engine")]
fn start_probe(
    video: Option<Codec>,
    audio: Option<Codec>,
    work: ContentWork,
) -> Result<Probe, String> {
    let tasks = lunora_engine::ProbeTasks {
        measure: work.judge.is_some(),
        fingerprint: work.fingerprint,
    };
    Probe::start(video, audio, tasks).map_err(|e| e.to_string())
}

#[cfg(not(feature = "engine"))]
fn start_probe(
    _video: Option<Codec>,
    _audio: Option<Codec>,
    _work: ContentWork,
) -> Result<Probe, String> {
    Err("this build has no media engine (built without the `gstreamer` feature)".to_string())
}

#[cfg(not(feature = "engine"))]
fn stop_probe(probe: Probe) {
    match probe {}
}

/// Stops a probe off the async runtime: setting its pipelines to `Null` joins their threads.
#[cfg(feature = "engine")]
fn stop_probe(probe: Probe) {
    let dropped = probe.dropped();
    if dropped > 0 {
        tracing::debug!(
            frames = dropped,
            "content probe stopped; it dropped frames while behind"
        );
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(probe));
        }
        // The runtime is gone (the daemon is ending): nothing else is left to hold up.
        Err(_) => drop(probe),
    }
}

#[derive(Debug)]
enum ProbeState {
    Starting(oneshot::Receiver<Result<Probe, String>>),
    Running(Probe),
    /// It failed; the next `Program` tries again.
    Failed,
}

#[derive(Debug)]
struct Slot {
    probe: ProbeState,
    detector: ContentDetector,
    /// Conditions the switcher has been told are ongoing.
    ongoing: Vec<Reason>,
}

#[derive(Debug)]
pub(crate) struct ContentHealth {
    work: ContentWork,
    slots: HashMap<usize, Slot>,
    /// Each connected input's program, kept while off too, so turning content health on
    /// starts the probes at once.
    programs: HashMap<usize, Program>,
    /// Condition changes for the switcher, by slot, from a probe that stopped.
    ended: Vec<(usize, Reason)>,
}

impl ContentHealth {
    pub(crate) fn new(work: ContentWork) -> ContentHealth {
        ContentHealth {
            work,
            slots: HashMap::new(),
            programs: HashMap::new(),
            ended: Vec::new(),
        }
    }

    /// New thresholds apply to the running detectors; when the probes must do something else
    /// (content health or fingerprints turned on or off) every probe stops, what it found
    /// ends, and every connected input's probe starts again if there is still work.
    pub(crate) fn set_work(&mut self, work: ContentWork) {
        let previous = std::mem::replace(&mut self.work, work);
        if previous.same_probes(&work) {
            if let Some(settings) = work.judge {
                for slot in self.slots.values_mut() {
                    slot.detector.set_settings(settings);
                }
            }
            return;
        }
        self.stop_all();
        if work.is_on() {
            let programs: Vec<(usize, Program)> = self.programs.clone().into_iter().collect();
            for (slot, program) in programs {
                self.start(slot, &program);
            }
        }
    }

    pub(crate) fn event(&mut self, slot: usize, event: &InputEvent, switcher: &Switcher) {
        match event {
            // The slate is the channel's own card and silence: judging it would only report so.
            InputEvent::Program(_)
                if switcher
                    .spec(slot)
                    .is_some_and(|spec| spec.role == Role::Slate) => {}
            InputEvent::Program(program) => {
                self.programs.insert(slot, program.clone());
                if self.work.is_on() {
                    self.start(slot, program);
                }
            }
            InputEvent::Frame(frame) => match self.slots.get_mut(&slot) {
                Some(Slot {
                    probe: ProbeState::Running(probe),
                    ..
                }) => probe.offer(frame),
                Some(_) => {}
                // A new sender of the same program (an SRT input's demux does not announce an
                // unchanged program again): a new probe, whose decoder starts on its clock.
                None if self.work.is_on() => {
                    if let Some(program) = self.programs.get(&slot).cloned() {
                        self.start(slot, &program);
                    }
                }
                None => {}
            },
            // The sender went or another took over: its clock and stream end here. The
            // program is kept for the next sender.
            InputEvent::Connected { .. } | InputEvent::Disconnected => self.remove(slot),
            InputEvent::Stats { .. } => {}
        }
    }

    /// The input left the channel.
    pub(crate) fn remove_input(&mut self, slot: usize) {
        self.programs.remove(&slot);
        self.remove(slot);
    }

    /// Stops the slot's probe; what it found ends.
    fn remove(&mut self, slot: usize) {
        if let Some(old) = self.slots.remove(&slot) {
            self.ended
                .extend(old.ongoing.iter().map(|reason| (slot, *reason)));
            if let ProbeState::Running(probe) = old.probe {
                stop_probe(probe);
            }
        }
    }

    fn start(&mut self, slot: usize, program: &Program) {
        self.remove(slot);
        let codec = |video: bool| {
            program
                .tracks
                .iter()
                .map(|t| t.codec)
                .find(|c| if video { c.is_video() } else { c.is_audio() })
        };
        let (video, audio) = (codec(true), codec(false));
        let (sender, receiver) = oneshot::channel();
        let work = self.work;
        tokio::task::spawn_blocking(move || {
            let probe = start_probe(video, audio, work);
            // The slot went away meanwhile: the probe is dropped here, on the blocking pool.
            let _ = sender.send(probe);
        });
        self.slots.insert(
            slot,
            Slot {
                probe: ProbeState::Starting(receiver),
                detector: ContentDetector::new(self.work.judge.unwrap_or_default()),
                ongoing: Vec::new(),
            },
        );
    }

    /// Stops every probe (the channel is going away).
    fn stop_all(&mut self) {
        let slots: Vec<usize> = self.slots.keys().copied().collect();
        for slot in slots {
            self.remove(slot);
        }
    }

    /// Takes what the probes measured and tells the switcher which conditions started or ended
    /// and which pictures it got. Returns the pairs of inputs whose shift the pictures have
    /// just established or moved.
    pub(crate) fn poll(
        &mut self,
        now: Duration,
        switcher: &mut Switcher,
        channel: &str,
    ) -> Vec<(usize, usize)> {
        let mut aligned = Vec::new();
        for (slot, reason) in self.ended.drain(..) {
            switcher.handle_content(now, slot, reason, false);
        }
        for (&index, slot) in &mut self.slots {
            let input = || {
                switcher
                    .spec(index)
                    .map_or_else(String::new, |s| s.id.clone())
            };
            if let ProbeState::Starting(receiver) = &mut slot.probe {
                match receiver.try_recv() {
                    Ok(Ok(probe)) => slot.probe = ProbeState::Running(probe),
                    Ok(Err(error)) => {
                        warn!(channel, input = %input(), "content health is off for this input: {error}");
                        slot.probe = ProbeState::Failed;
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                    Err(oneshot::error::TryRecvError::Closed) => slot.probe = ProbeState::Failed,
                }
            }
            let ProbeState::Running(probe) = &mut slot.probe else {
                continue;
            };
            if let Some(error) = probe.error() {
                warn!(channel, input = %input(), "content health stops until the input's next program: {error}");
                if let ProbeState::Running(probe) =
                    std::mem::replace(&mut slot.probe, ProbeState::Failed)
                {
                    stop_probe(probe);
                }
                // Nothing judges the content any more: what was found is no longer known.
                for reason in slot.ongoing.drain(..) {
                    switcher.handle_content(now, index, reason, false);
                }
                continue;
            }
            while let Some(measurement) = probe.try_measurement() {
                slot.detector.handle(now, measurement);
            }
            while let Some(print) = probe.try_fingerprint() {
                aligned.extend(switcher.handle_fingerprint(now, index, &print));
            }
            while let Some(change) = slot.detector.poll_change() {
                slot.ongoing.retain(|r| *r != change.reason);
                if change.present {
                    slot.ongoing.push(change.reason);
                }
                switcher.handle_content(now, index, change.reason, change.present);
            }
        }
        aligned
    }
}

impl Drop for ContentHealth {
    fn drop(&mut self) {
        // A stopped channel's probes are stopped off the async runtime too.
        self.stop_all();
    }
}
