//! A WHIP input (`whip` feature): the publisher's access units from `lunora_whip` become the
//! input's events — video through the loss gate onto the session's 90 kHz timeline, Opus
//! through the media engine to AAC (so RTMP destinations and MediaLive get AAC).

use std::time::{Duration, Instant};

use lunora_engine::{AudioToAac, Offer};
use lunora_ingest::{ConnectionState, InputEvent, InputSender, LipSyncSource, StatsHandle};
use lunora_media::{Codec, Frame, MpegTime, Program, Track, TrackId};
use lunora_whip::{
    Gate, InputHandle, Interleaver, LipSync, Media, SessionState, TrackClock, VideoCodec, VideoGate,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

const VIDEO: TrackId = TrackId(0x100);
const AUDIO: TrackId = TrackId(0x101);
/// How often link figures go to the channel (its health model reads loss from them).
const STATS_EVERY: Duration = Duration::from_millis(500);
/// Browsers send a keyframe only when asked (their GOP runs for minutes): asked this long after
/// the last one, so platforms, HLS segments and the switcher's `no_keyframe` rule see a
/// keyframe every two seconds, as from a broadcast encoder.
const KEYFRAME_EVERY: Duration = Duration::from_secs(2);
/// One AAC frame (1024 samples at 48 kHz) in 90 kHz ticks.
const AAC_FRAME_TICKS: i64 = 1_920;

/// What one connected publisher has set up.
struct Session {
    started: Instant,
    video: Option<(VideoGate, TrackClock)>,
    audio: Option<(AudioToAac, TrackClock)>,
    /// The video codec the program announced, once the first video unit came.
    announced: Option<VideoCodec>,
    /// When the last keyframe was passed on (or the session started).
    last_keyframe: Instant,
    lip_sync: LipSync,
    /// The last Opus packet's time handed to the converter: after lip sync moved audio
    /// back, packets up to it are dropped so audio time never runs backwards.
    last_audio: Option<MpegTime>,
    /// Video waiting for the converted audio of its time.
    held_video: Interleaver<Frame>,
    /// The publisher negotiated audio (Opus): the program has an AAC track.
    sends_audio: bool,
}

impl Session {
    fn new(started: Instant, sends_audio: bool) -> Session {
        Session {
            started,
            video: None,
            audio: None,
            announced: None,
            last_keyframe: Instant::now(),
            lip_sync: LipSync::default(),
            last_audio: None,
            held_video: Interleaver::default(),
            sends_audio,
        }
    }

    /// Moves audio onto the video's timeline when the sender's reports say they are apart.
    fn lip_sync(&mut self, slot: usize, stats: &StatsHandle) {
        let (Some((_, video)), Some((_, audio))) = (&self.video, &mut self.audio) else {
            return;
        };
        let trusted_before = self.lip_sync.trusted();
        if let Some(ticks) = self.lip_sync.audio_correction(video, audio) {
            audio.shift(ticks);
            info!(
                slot,
                moved_ms = ticks / 90,
                "WHIP input: audio re-timed to the publisher's clock (RTCP sender reports)"
            );
        }
        if self.lip_sync.trusted() && !trusted_before {
            stats.update(|s| s.lip_sync = Some(LipSyncSource::SenderReports));
        }
    }
}

pub(crate) async fn run(
    mut handle: InputHandle,
    slot: usize,
    events: InputSender,
    stats: StatsHandle,
    cancel: CancellationToken,
) {
    let mut session: Option<Session> = None;
    let mut packets = 0u64;
    let mut lost = 0u64;
    let mut window = (Instant::now(), 0u64);
    let mut ticker = tokio::time::interval(STATS_EVERY);
    loop {
        let held_video_due = session.as_ref().and_then(|s| s.held_video.deadline());
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = handle.state.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = handle.state.borrow_and_update().clone();
                match state {
                    SessionState::Connected { peer, started, audio, .. } => {
                        if let Some(old) = session.take() {
                            end(old, slot, &events, &stats).await;
                        }
                        stats.update(|s| {
                            s.state = ConnectionState::Connected;
                            s.peer = Some(peer.to_string());
                            s.connections_total += 1;
                            s.last_error = None;
                            s.lip_sync = Some(LipSyncSource::Arrival);
                        });
                        let _ = events.send(slot, InputEvent::Connected { peer: peer.to_string() });
                        session = Some(Session::new(started, audio));
                    }
                    SessionState::Idle => {
                        if let Some(old) = session.take() {
                            end(old, slot, &events, &stats).await;
                        }
                    }
                    SessionState::Handshake { .. } => {}
                }
            }
            media = handle.media.recv() => {
                let Some(media) = media else { break };
                let Some(current) = session.as_mut() else { continue };
                match media {
                    Media::Video { codec, data, keyframe, contiguous, time, rate, packets: n, arrival, report } => {
                        packets += n;
                        if !contiguous {
                            lost += 1;
                        }
                        let (gate, clock) = current
                            .video
                            .get_or_insert_with(|| (VideoGate::new(codec), TrackClock::new(rate)));
                        let pts = clock.ticks(time, arrival.saturating_duration_since(current.started));
                        let verdict = gate.offer(&data, keyframe, contiguous);
                        if let Some(report) = report
                            && current.lip_sync.video_report(report, time, rate)
                        {
                            current.lip_sync(slot, &stats);
                        }
                        match verdict {
                            Gate::Pass { data, keyframe } => {
                                if current.announced != Some(codec) {
                                    announce(current, codec, slot, &events).await;
                                }
                                if keyframe {
                                    current.last_keyframe = Instant::now();
                                }
                                let frame = Frame {
                                    track: VIDEO,
                                    codec: video_codec(codec),
                                    pts,
                                    dts: pts,
                                    keyframe,
                                    data,
                                };
                                if current.audio.is_some() {
                                    current.held_video.hold(pts, frame.data.len(), Instant::now(), frame);
                                    release_video(current, slot, &events, &stats, &mut window);
                                } else {
                                    send(frame, slot, &events, &stats, &mut window);
                                }
                            }
                            Gate::Drop { request_keyframe } => {
                                if request_keyframe {
                                    handle.request_keyframe();
                                }
                            }
                        }
                    }
                    Media::Audio { data, time, rate, arrival, report, .. } => {
                        // Audio waits for the program, which the first video unit announces.
                        if current.audio.is_none() {
                            continue;
                        }
                        if let Some(report) = report
                            && current.lip_sync.audio_report(report, time, rate)
                        {
                            current.lip_sync(slot, &stats);
                        }
                        let Some((converter, clock)) = current.audio.as_mut() else { continue };
                        let pts = clock.ticks(time, arrival.saturating_duration_since(current.started));
                        if current.last_audio.is_some_and(|last| pts <= last) {
                            continue;
                        }
                        current.last_audio = Some(pts);
                        window.1 += data.len() as u64;
                        if converter.offer(data, pts) == Offer::Dropped {
                            stats.update(|s| s.frames_dropped_total += 1);
                        }
                    }
                }
            }
            aac = next_aac(&mut session) => {
                match aac {
                    Some(frame) => {
                        let until = MpegTime(frame.pts.0.saturating_add(AAC_FRAME_TICKS));
                        send(frame, slot, &events, &stats, &mut window);
                        if let Some(current) = session.as_mut() {
                            current.held_video.audio_sent(until, Instant::now());
                            release_video(current, slot, &events, &stats, &mut window);
                        }
                    }
                    None => {
                        let why = session
                            .as_mut()
                            .and_then(|s| s.audio.take())
                            .map(|(converter, _)| {
                                let why = converter.error().unwrap_or_else(|| "it stopped".into());
                                tokio::task::spawn_blocking(move || converter.stop());
                                why
                            })
                            .unwrap_or_default();
                        warn!(slot, "WHIP input: the Opus → AAC conversion ended ({why}); video goes on without audio");
                        stats.update(|s| s.last_error = Some(format!("audio conversion: {why}")));
                        if let Some(current) = session.as_mut() {
                            for frame in current.held_video.drain() {
                                send(frame, slot, &events, &stats, &mut window);
                            }
                        }
                    }
                }
            }
            _ = sleep_until(held_video_due) => {
                if let Some(current) = session.as_mut() {
                    release_video(current, slot, &events, &stats, &mut window);
                }
            }
            _ = ticker.tick() => {
                if let Some(current) = session.as_mut()
                    && current.last_keyframe.elapsed() >= KEYFRAME_EVERY
                {
                    handle.request_keyframe();
                    // Asked once per interval, not at every tick while the answer travels.
                    current.last_keyframe = Instant::now();
                }
                if session.is_some() {
                    let _ = events.send(slot, InputEvent::Stats {
                        packets_received: packets,
                        packets_lost: lost,
                        tr101290_priority1: 0,
                    });
                }
                let elapsed = window.0.elapsed().as_secs_f64();
                if elapsed >= 1.0 {
                    let bits = window.1 as f64 * 8.0;
                    stats.update(|s| s.bitrate_bps = bits / elapsed);
                    window = (Instant::now(), 0);
                }
            }
        }
    }
    if let Some(old) = session.take() {
        end(old, slot, &events, &stats).await;
    }
}

/// Sends the held video that may go now.
fn release_video(
    session: &mut Session,
    slot: usize,
    events: &InputSender,
    stats: &StatsHandle,
    window: &mut (Instant, u64),
) {
    while let Some(frame) = session.held_video.release(Instant::now()) {
        send(frame, slot, events, stats, window);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

async fn next_aac(session: &mut Option<Session>) -> Option<Frame> {
    match session.as_mut().and_then(|s| s.audio.as_mut()) {
        Some((converter, _)) => converter.next().await,
        None => std::future::pending().await,
    }
}

fn video_codec(codec: VideoCodec) -> Codec {
    match codec {
        VideoCodec::H264 => Codec::H264,
        VideoCodec::Hevc => Codec::Hevc,
    }
}

/// Announces the program (video, and AAC audio when the publisher sends audio) and starts the
/// audio conversion for it.
async fn announce(session: &mut Session, codec: VideoCodec, slot: usize, events: &InputSender) {
    if session.sends_audio && session.audio.is_none() {
        let started = tokio::task::spawn_blocking(|| {
            AudioToAac::start(
                "audio/x-opus,channel-mapping-family=0,channels=2,rate=48000",
                AUDIO,
            )
        })
        .await;
        match started {
            Ok(Ok(converter)) => session.audio = Some((converter, TrackClock::new(48_000))),
            Ok(Err(e)) => {
                warn!(slot, error = %e, "WHIP input: cannot start the Opus → AAC conversion; video only")
            }
            Err(e) => {
                warn!(slot, error = %e, "WHIP input: the Opus → AAC conversion did not start")
            }
        }
    }
    let mut tracks = vec![Track::new(VIDEO, video_codec(codec))];
    if session.audio.is_some() {
        tracks.push(Track::new(AUDIO, Codec::AacAdts));
    }
    session.announced = Some(codec);
    let _ = events.send(slot, InputEvent::Program(Program { tracks }));
}

fn send(
    frame: Frame,
    slot: usize,
    events: &InputSender,
    stats: &StatsHandle,
    window: &mut (Instant, u64),
) {
    let (bytes, is_video) = stats.send_frame(events, slot, frame);
    if is_video {
        window.1 += bytes;
    }
}

async fn end(mut session: Session, slot: usize, events: &InputSender, stats: &StatsHandle) {
    // What the publisher sent before it left is still the program.
    let mut window = (Instant::now(), 0);
    for frame in session.held_video.drain() {
        send(frame, slot, events, stats, &mut window);
    }
    if let Some((converter, _)) = session.audio {
        // Stopping joins GStreamer's threads.
        let _ = tokio::task::spawn_blocking(move || converter.stop()).await;
    }
    stats.update(|s| {
        s.state = ConnectionState::Waiting;
        s.peer = None;
        s.bitrate_bps = 0.0;
        s.lip_sync = None;
    });
    info!(
        slot,
        lasted_s = session.started.elapsed().as_secs(),
        "WHIP publisher gone"
    );
    let _ = events.send(slot, InputEvent::Disconnected);
}
