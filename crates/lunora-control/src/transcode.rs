//! Transcoded destinations. Each channel has a registry of running transcodes keyed by profile:
//! every destination that sends one profile shares one transcode, which reads the channel's
//! program bus and publishes on a bus of its own; the last destination to stop frees it (its
//! pipeline to `Null`).
//!
//! A transcoding destination reads a bus of its own, fed by a task that holds a lease on the
//! shared transcode only while the destination is started (connecting, live or retrying), so
//! a stopped destination costs no CPU. With `transcode = "auto"` the same task first passes
//! the program through while it meets the preset's rules and turns to the transcode, for good,
//! at the first stream that does not.
//!
//! Architecture invariant: nothing here can block the channel. The transcode offers frames to
//! its pipeline without waiting (dropped and counted when it is behind), and every bus reader
//! skips ahead when it falls behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lunora_egress::{
    Bus, BusItem, BusReceiver, Conformance, OutputState, OutputStatsHandle, PlatformRules,
};
use lunora_engine::{Offer, TranscodeProfile, Transcoder};
use lunora_media::{Frame, LogThrottle, Program};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, warn};

use crate::profiles::ProfileSettings;
use crate::status::TranscodeView;

/// Items a transcode's bus and a destination's bus keep for readers that are behind.
const BUS_CAPACITY: usize = 256;

/// How often a feed looks at whether its destination is started.
const WATCH: Duration = Duration::from_millis(250);

pub(crate) fn engine_profile(settings: &ProfileSettings) -> TranscodeProfile {
    TranscodeProfile {
        width: settings.width,
        height: settings.height,
        frame_rate: settings.frame_rate.fraction(),
        video_bitrate_kbps: settings.video_bitrate_kbps,
        keyframe_interval_s: settings.keyframe_interval_s,
        deinterlace: settings.deinterlace,
    }
}

/// One transcode's counters, for the status and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) frames_dropped: AtomicU64,
}

struct Shared {
    name: String,
    bus: Arc<Bus>,
    destinations: usize,
    stop: CancellationToken,
    counters: Arc<Counters>,
}

/// A channel's running transcodes.
pub(crate) struct Transcodes {
    channel: String,
    program: Arc<Bus>,
    tasks: TaskTracker,
    /// The channel's token: its transcodes end with it.
    cancel: CancellationToken,
    running: Mutex<HashMap<TranscodeProfile, Shared>>,
}

impl Transcodes {
    pub(crate) fn new(
        channel: &str,
        program: Arc<Bus>,
        tasks: TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Transcodes> {
        Arc::new(Transcodes {
            channel: channel.to_string(),
            program,
            tasks,
            cancel,
            running: Mutex::new(HashMap::new()),
        })
    }

    fn running(&self) -> MutexGuard<'_, HashMap<TranscodeProfile, Shared>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The transcode of `profile` (started if none runs), held until the lease drops.
    fn lease(self: &Arc<Self>, name: &str, profile: TranscodeProfile) -> Lease {
        let mut running = self.running();
        let shared = running.entry(profile).or_insert_with(|| {
            let bus = Bus::new(BUS_CAPACITY);
            let stop = self.cancel.child_token();
            let counters = Arc::new(Counters::default());
            let span = tracing::info_span!("transcode", channel = %self.channel, profile = %name);
            self.tasks.spawn(
                run(
                    profile,
                    self.program.clone(),
                    bus.clone(),
                    counters.clone(),
                    stop.clone(),
                )
                .instrument(span),
            );
            Shared {
                name: name.to_string(),
                bus,
                destinations: 0,
                stop,
                counters,
            }
        });
        shared.destinations += 1;
        Lease {
            registry: self.clone(),
            profile,
            bus: shared.bus.clone(),
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<TranscodeView> {
        let mut all: Vec<TranscodeView> = self
            .running()
            .values()
            .map(|s| TranscodeView {
                profile: s.name.clone(),
                destinations: s.destinations,
                frames_in_total: s.counters.frames_in.load(Ordering::Relaxed),
                frames_out_total: s.counters.frames_out.load(Ordering::Relaxed),
                frames_dropped_total: s.counters.frames_dropped.load(Ordering::Relaxed),
            })
            .collect();
        all.sort_by(|a, b| a.profile.cmp(&b.profile));
        all
    }
}

/// A destination's hold on a shared transcode.
struct Lease {
    registry: Arc<Transcodes>,
    profile: TranscodeProfile,
    bus: Arc<Bus>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut running = self.registry.running();
        if let Some(shared) = running.get_mut(&self.profile) {
            shared.destinations = shared.destinations.saturating_sub(1);
            if shared.destinations == 0 {
                shared.stop.cancel();
                running.remove(&self.profile);
            }
        }
    }
}

/// How a destination uses a transcode.
pub(crate) enum Mode {
    Always,
    /// Once the program breaks these rules.
    Auto(PlatformRules),
}

/// The bus a transcoding destination reads, fed until `cancel` by a task that leases the
/// transcode of `profile` while the destination (`stats`) is started.
pub(crate) fn destination_bus(
    registry: &Arc<Transcodes>,
    name: &str,
    profile: &ProfileSettings,
    mode: Mode,
    stats: OutputStatsHandle,
    cancel: CancellationToken,
) -> Arc<Bus> {
    let out = Bus::new(BUS_CAPACITY);
    let feed = Feed {
        registry: registry.clone(),
        name: name.to_string(),
        profile: engine_profile(profile),
        out: out.clone(),
        stats,
        last_dts: HashMap::new(),
    };
    registry
        .tasks
        .spawn(feed.run(mode, cancel).in_current_span());
    out
}

struct Feed {
    registry: Arc<Transcodes>,
    name: String,
    profile: TranscodeProfile,
    out: Arc<Bus>,
    stats: OutputStatsHandle,
    /// The last decoding time sent per track: after the turn from the program to the
    /// transcode, nothing earlier is sent again.
    last_dts: HashMap<lunora_media::TrackId, i64>,
}

impl Feed {
    fn started(&self) -> bool {
        !matches!(
            self.stats.snapshot().state,
            OutputState::Idle | OutputState::Failed
        )
    }

    fn forward(&mut self, item: BusItem) {
        match item {
            BusItem::Program(program) => self.out.publish_program(Program::clone(&program)),
            BusItem::Frame(frame) => {
                let last = self.last_dts.entry(frame.track).or_insert(i64::MIN);
                if frame.dts.0 > *last {
                    *last = frame.dts.0;
                    self.out.publish_frame(Frame::clone(&frame));
                }
            }
        }
    }

    async fn run(mut self, mode: Mode, cancel: CancellationToken) {
        let mut checking = match mode {
            Mode::Always => None,
            Mode::Auto(rules) => Some((Conformance::new(rules), self.registry.program.subscribe())),
        };
        let mut lease: Option<(Lease, BusReceiver)> = None;
        let mut watch = tokio::time::interval(WATCH);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = watch.tick() => {
                    let wanted = checking.is_none() && self.started();
                    if wanted && lease.is_none() {
                        let held = self.registry.lease(&self.name, self.profile);
                        let receiver = held.bus.subscribe();
                        lease = Some((held, receiver));
                    } else if !wanted {
                        lease = None;
                    }
                }
                item = next(lease.as_mut().map(|(_, r)| r)) => match item {
                    Some(item) => self.forward(item),
                    None => lease = None,
                },
                item = next(checking.as_mut().map(|(_, r)| r)) => {
                    let Some(item) = item else { break };
                    let Some((conformance, _)) = checking.as_mut() else { continue };
                    if let BusItem::Frame(frame) = &item {
                        conformance.observe(frame);
                        let warnings = conformance.warnings();
                        if !warnings.is_empty() {
                            info!(profile = %self.name, reasons = %warnings.join("; "), "the stream breaks the platform's rules: transcoding from now on");
                            checking = None;
                            watch.reset_immediately();
                            continue;
                        }
                    }
                    self.forward(item);
                }
            }
        }
    }
}

/// The next item of `receiver`, or never.
async fn next(receiver: Option<&mut BusReceiver>) -> Option<BusItem> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// The next frame out of the transcoder, or never.
async fn transcoded(transcoder: &mut Option<Transcoder>) -> Option<Frame> {
    match transcoder.as_mut() {
        Some(transcoder) => transcoder.next().await,
        None => std::future::pending().await,
    }
}

fn stop(transcoder: Option<Transcoder>) {
    if let Some(transcoder) = transcoder {
        // Joining GStreamer's threads blocks.
        tokio::task::spawn_blocking(move || transcoder.stop());
    }
}

/// One shared transcode: the channel's program in, the profile's stream out on `out`. A new
/// program with other codecs gets a new pipeline; a new resolution does not (the decoder
/// follows it and the output size is the profile's).
async fn run(
    profile: TranscodeProfile,
    program: Arc<Bus>,
    out: Arc<Bus>,
    counters: Arc<Counters>,
    stop_token: CancellationToken,
) {
    info!(
        width = profile.width,
        height = profile.height,
        "transcode started"
    );
    let mut receiver = program.subscribe();
    let mut transcoder: Option<Transcoder> = None;
    let mut input: Option<Arc<Program>> = None;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut drops = LogThrottle::new(Duration::from_secs(10));
    let origin = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = stop_token.cancelled() => break,
            frame = transcoded(&mut transcoder) => match frame {
                Some(frame) => {
                    counters.frames_out.fetch_add(1, Ordering::Relaxed);
                    out.publish_frame(frame);
                }
                None => {
                    warn!("the transcode pipeline stopped; starting it again");
                    stop(transcoder.take());
                }
            },
            item = receiver.recv() => match item {
                None => break,
                Some(BusItem::Program(new)) => {
                    if !transcoder.as_ref().is_some_and(|t| t.reads(&new)) {
                        stop(transcoder.take());
                    }
                    input = Some(new);
                }
                Some(BusItem::Frame(frame)) => {
                    if let Some(transcoder) = transcoder.as_mut() {
                        match transcoder.offer(&frame) {
                            Offer::Taken => {
                                counters.frames_in.fetch_add(1, Ordering::Relaxed);
                            }
                            Offer::Dropped => {
                                counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
                                if let Some(left_out) = drops.due(origin.elapsed(), ()) {
                                    warn!(dropped_total = transcoder.dropped(), left_out, "the transcode is behind the channel: frames dropped (the box is short of CPU for this profile)");
                                }
                            }
                            Offer::Ignored => {}
                        }
                    }
                }
            },
            _ = check.tick() => {
                if let Some(error) = transcoder.as_ref().and_then(Transcoder::error) {
                    warn!(error = %error, "the transcode pipeline failed; starting it again");
                    stop(transcoder.take());
                }
            }
        }
        if transcoder.is_none()
            && let Some(program) = input.clone()
        {
            let started =
                tokio::task::spawn_blocking(move || Transcoder::start(&profile, &program)).await;
            match started {
                Ok(Ok(started)) => {
                    if out.current_program().as_deref() != Some(started.program()) {
                        out.publish_program(started.program().clone());
                    }
                    transcoder = Some(started);
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot transcode this program; waiting for the next one");
                    input = None;
                }
                Err(e) => {
                    warn!(error = %e, "the transcode did not start");
                    input = None;
                }
            }
        }
    }
    stop(transcoder);
    info!("transcode stopped");
}
