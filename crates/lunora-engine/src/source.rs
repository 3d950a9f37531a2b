//! An engine source run as a channel input: it starts the source's pipeline, places each
//! access unit on a continuous timeline (pass after pass for a looped file), and hands it to
//! the channel when it is due in real time, like an encoder would send it.
//!
//! A pipeline that fails (a missing file, a stream it cannot play) disconnects the input with
//! the reason in its statistics and log, and is retried every `RETRY`.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lunora_ingest::{ConnectionState, InputEvent, InputSender, StatsHandle};
use lunora_media::{Codec, Frame, Program, Track, TrackId};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::EngineError;
use crate::pipeline::{self, Item, PatternSettings, Running, SlateSettings, VideoEncoding};
use crate::timeline::{Kind, Pacer, Timeline};

/// How long a failed source waits before it is started again.
const RETRY: Duration = Duration::from_secs(5);

/// How far ahead of real time frames are read: long enough to start the next pass of a looped
/// file before the current one has been sent.
const READ_AHEAD: i64 = 2 * 90_000;

/// A file whose demuxer has found only one track after this much media has only that one.
const ONE_TRACK_AFTER: i64 = 90_000;

/// And at most this many frames, whatever their timestamps say.
const READ_AHEAD_FRAMES: usize = 1024;

/// Fetches a remote file (`s3://…`) and answers with its local copy, or why it cannot.
pub type Fetch = std::sync::Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn Future<Output = Result<PathBuf, String>> + Send>>
        + Send
        + Sync,
>;

/// Where a file input's file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Path(PathBuf),
    /// Fetched with [`EngineInputSettings::fetch`] each time the input starts.
    Url(String),
}

/// What an engine input plays.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// An MP4 or MPEG-TS file; `looped` plays it forever on a continuous timeline.
    File {
        location: Location,
        looped: bool,
        /// For a file whose codecs a channel cannot carry.
        encoding: VideoEncoding,
    },
    TestPattern(PatternSettings),
    /// The channel's "broadcast hold" while every input is lost.
    Slate(SlateSettings),
}

impl Source {
    /// What the input shows as its sender.
    fn describe(&self) -> String {
        match self {
            Source::File {
                location: Location::Path(path),
                ..
            } => format!("file {}", path.display()),
            Source::File {
                location: Location::Url(url),
                ..
            } => format!("file {url}"),
            Source::TestPattern(p) => format!(
                "test pattern {}x{} {}/{} fps",
                p.width, p.height, p.frame_rate.0, p.frame_rate.1
            ),
            Source::Slate(s) => format!(
                "slate {}x{}{} {}/{} fps",
                s.width,
                s.height,
                if s.interlaced { "i" } else { "p" },
                s.frame_rate.0,
                s.frame_rate.1
            ),
        }
    }

    fn start(&self) -> Result<Running, EngineError> {
        match self {
            Source::File {
                location: Location::Path(path),
                encoding,
                ..
            } => pipeline::file(path, *encoding),
            Source::File {
                location: Location::Url(url),
                ..
            } => Err(EngineError::File(format!("{url} has not been fetched"))),
            Source::TestPattern(settings) => pipeline::test_pattern(settings),
            Source::Slate(settings) => pipeline::slate(settings),
        }
    }

    fn looped(&self) -> bool {
        matches!(self, Source::File { looped: true, .. })
    }
}

#[derive(Clone)]
pub struct EngineInputSettings {
    /// The input's id, used in every log line.
    pub id: String,
    pub source: Source,
    /// For a file at a URL.
    pub fetch: Option<Fetch>,
}

impl std::fmt::Debug for EngineInputSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineInputSettings")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("fetch", &self.fetch.is_some())
            .finish()
    }
}

impl EngineInputSettings {
    /// The source with a URL replaced by the local copy, fetched now.
    async fn resolved(&self) -> Result<Source, EngineError> {
        let Source::File {
            location: Location::Url(url),
            looped,
            encoding,
        } = &self.source
        else {
            return Ok(self.source.clone());
        };
        let Some(fetch) = &self.fetch else {
            return Err(EngineError::File(format!(
                "{url}: this build cannot fetch files (built without the `medialive` feature)"
            )));
        };
        let path = fetch(url.clone()).await.map_err(EngineError::File)?;
        Ok(Source::File {
            location: Location::Path(path),
            looped: *looped,
            encoding: *encoding,
        })
    }
}

fn track_id(kind: Kind) -> TrackId {
    match kind {
        Kind::Video => TrackId(0x100),
        Kind::Audio => TrackId(0x101),
    }
}

/// Runs the input until `shutdown` resolves, sending to `events` tagged with `index`.
pub async fn run(
    settings: EngineInputSettings,
    index: usize,
    events: InputSender,
    stats: StatsHandle,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut input = Input {
        id: settings.id.clone(),
        index,
        events,
        stats,
        window_start: Instant::now(),
        window_bytes: 0,
    };
    info!(input = %settings.id, source = %settings.source.describe(), "engine input started");
    loop {
        let outcome = tokio::select! {
            _ = &mut shutdown => break,
            outcome = async {
                let source = settings.resolved().await?;
                Session::new(&source).play(&mut input).await
            } => outcome,
        };
        input.lost();
        match outcome {
            Ok(()) => {
                info!(input = %settings.id, "the file has played to its end (set loop = true to play it forever)");
                shutdown.as_mut().await;
                break;
            }
            Err(error) => {
                warn!(input = %settings.id, "{error}; trying again in {} s", RETRY.as_secs());
                input
                    .stats
                    .update(|s| s.last_error = Some(error.to_string()));
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
    input.lost();
    info!(input = %settings.id, "engine input stopped");
}

/// The channel-facing side: events and statistics.
struct Input {
    id: String,
    index: usize,
    events: InputSender,
    stats: StatsHandle,
    window_start: Instant,
    window_bytes: u64,
}

impl Input {
    fn connected(&mut self, source: &Source, program: Program) {
        info!(input = %self.id, "engine input on air");
        self.stats.update(|s| {
            s.state = ConnectionState::Connected;
            s.peer = Some(source.describe());
            s.connections_total += 1;
            s.last_error = None;
        });
        let _ = self.events.send(
            self.index,
            InputEvent::Connected {
                peer: source.describe(),
            },
        );
        let _ = self.events.send(self.index, InputEvent::Program(program));
    }

    fn lost(&mut self) {
        let mut was_connected = false;
        self.stats.update(|s| {
            was_connected = s.state == ConnectionState::Connected;
            s.state = ConnectionState::Waiting;
            s.peer = None;
            s.bitrate_bps = 0.0;
        });
        if was_connected {
            let _ = self.events.send(self.index, InputEvent::Disconnected);
        }
    }

    fn send(&mut self, frame: Frame) {
        let (bytes, _) = self.stats.send_frame(&self.events, self.index, frame);
        self.window_bytes += bytes;
    }

    fn publish(&mut self) {
        let elapsed = self.window_start.elapsed().as_secs_f64();
        if elapsed >= 1.0 {
            let bits = self.window_bytes as f64 * 8.0;
            self.stats.update(|s| s.bitrate_bps = bits / elapsed);
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
    }
}

/// One run of the source, from its first pass to its end or an error.
struct Session<'a> {
    source: &'a Source,
    timeline: Timeline,
    pacer: Pacer,
    origin: Instant,
    pass: u64,
    running: Option<Running>,
    /// The pipeline of the next pass, being started.
    starting: Option<JoinHandle<Result<Running, EngineError>>>,
    ended: Vec<Kind>,
    /// Placed frames waiting for their time, in decoding order.
    pending: VecDeque<Frame>,
    /// The tracks, from the first pass (every pass has the same).
    tracks: Option<Vec<(Kind, Codec)>>,
    announced: bool,
}

impl<'a> Session<'a> {
    fn new(source: &'a Source) -> Self {
        Session {
            source,
            timeline: Timeline::new(),
            pacer: Pacer::default(),
            origin: Instant::now(),
            pass: 0,
            running: None,
            starting: None,
            ended: Vec::new(),
            pending: VecDeque::new(),
            tracks: None,
            announced: false,
        }
    }

    fn start_pass(&mut self) {
        let source = self.source.clone();
        self.starting = Some(tokio::task::spawn_blocking(move || source.start()));
    }

    fn room(&self) -> bool {
        match (self.pending.front(), self.pending.back()) {
            (Some(first), Some(last)) => {
                self.pending.len() < READ_AHEAD_FRAMES && last.dts - first.dts < READ_AHEAD
            }
            _ => true,
        }
    }

    /// Plays until the source ends (`Ok`) or fails.
    async fn play(mut self, input: &mut Input) -> Result<(), EngineError> {
        self.start_pass();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let result = loop {
            let due = self.pending.front().map(|frame| {
                let now = self.origin.elapsed();
                let due = self.pacer.due(now, frame.dts);
                tokio::time::Instant::now() + due.saturating_sub(now)
            });
            let room = self.room();
            tokio::select! {
                // Due frames first: reading ahead must never delay them.
                biased;
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    if let Err(e) = self.release(input) {
                        break Err(e);
                    }
                }
                started = started(&mut self.starting) => match started {
                    Ok(running) => {
                        self.running = Some(running);
                        self.ended.clear();
                    }
                    Err(e) => break Err(e),
                },
                item = next_item(&mut self.running), if room => {
                    match item {
                        Some(item) => self.take(item),
                        None => break Err(EngineError::Pipeline("the pipeline stopped".to_string())),
                    }
                }
                _ = tick.tick() => {
                    if let Some(error) = self.running.as_ref().and_then(Running::error) {
                        break Err(EngineError::Pipeline(error));
                    }
                    input.publish();
                }
            }
            if self.tracks.is_none() {
                self.tracks = self.found_tracks();
            }
            if self.pass_ended() {
                if let Some(running) = self.running.take() {
                    tokio::task::spawn_blocking(move || running.stop());
                }
                if self.source.looped() {
                    self.pass += 1;
                    self.start_pass();
                }
            }
            if self.running.is_none() && self.starting.is_none() && self.pending.is_empty() {
                break Ok(());
            }
        };
        if let Some(running) = self.running.take() {
            tokio::task::spawn_blocking(move || running.stop());
        }
        result
    }

    fn pass_ended(&self) -> bool {
        let Some(running) = &self.running else {
            return false;
        };
        let (tracks, _) = running.tracks();
        !tracks.is_empty() && tracks.iter().all(|(kind, _)| self.ended.contains(kind))
    }

    /// The tracks to announce, once they are known: all the demuxer can have, or what it has
    /// found after a second of media (a file with only video or only audio), or at the end.
    fn found_tracks(&self) -> Option<Vec<(Kind, Codec)>> {
        let (tracks, complete) = self.running.as_ref()?.tracks();
        let read_a_while = match (self.pending.front(), self.pending.back()) {
            (Some(first), Some(last)) => last.dts - first.dts >= ONE_TRACK_AFTER,
            _ => false,
        };
        (complete || read_a_while || !self.ended.is_empty()).then_some(tracks)
    }

    fn take(&mut self, item: Item) {
        match item {
            Item::Frame {
                kind,
                codec,
                stamp,
                keyframe,
                data,
            } => {
                let Some(placed) = self.timeline.place(self.pass, kind, stamp) else {
                    return;
                };
                let frame = Frame {
                    track: track_id(kind),
                    codec,
                    pts: placed.pts,
                    dts: placed.dts,
                    keyframe,
                    data,
                };
                let at = self
                    .pending
                    .iter()
                    .rposition(|f| f.dts <= frame.dts)
                    .map_or(0, |i| i + 1);
                self.pending.insert(at, frame);
            }
            Item::Ended(kind) => self.ended.push(kind),
        }
    }

    /// Sends every frame that is due, announcing the program first.
    fn release(&mut self, input: &mut Input) -> Result<(), EngineError> {
        if !self.announced {
            let Some(tracks) = self.tracks.clone() else {
                // The demuxer has not found all its streams yet; the frames wait.
                return Ok(());
            };
            if tracks.is_empty() {
                return Err(EngineError::File(
                    "it has no video or audio stream".to_string(),
                ));
            }
            let program = Program {
                tracks: tracks
                    .iter()
                    .map(|&(kind, codec)| Track::new(track_id(kind), codec))
                    .collect(),
            };
            input.connected(self.source, program);
            self.announced = true;
        }
        let now = self.origin.elapsed();
        while let Some(frame) = self.pending.front() {
            if self.pacer.due(now, frame.dts) > now {
                break;
            }
            if let Some(frame) = self.pending.pop_front() {
                input.send(frame);
            }
        }
        Ok(())
    }
}

/// The next pipeline to finish starting, or never.
async fn started(
    starting: &mut Option<JoinHandle<Result<Running, EngineError>>>,
) -> Result<Running, EngineError> {
    let Some(task) = starting.as_mut() else {
        return std::future::pending().await;
    };
    let result = task.await;
    *starting = None;
    result.map_err(|e| EngineError::Pipeline(format!("the pipeline did not start: {e}")))?
}

/// The running pipeline's next item, or never; `None` when its queue has closed.
async fn next_item(running: &mut Option<Running>) -> Option<Item> {
    match running.as_mut() {
        Some(running) => running.items.recv().await,
        None => std::future::pending().await,
    }
}
