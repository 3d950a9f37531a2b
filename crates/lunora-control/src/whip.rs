//! A WHIP input (`whip` feature): the publisher's access units from `lunora_whip` become the
//! input's events — video through the loss gate onto the session's 90 kHz timeline, Opus
//! through the media engine to AAC (so RTMP destinations and MediaLive get AAC).

use std::time::{Duration, Instant};

use lunora_engine::{AudioToAac, Offer};
use lunora_ingest::{ConnectionState, InputEvent, InputSender, StatsHandle, VideoInfo};
use lunora_media::{Codec, Frame, Program, Track, TrackId, keyframe_video_format};
use lunora_whip::{Gate, InputHandle, Media, SessionState, TrackClock, VideoCodec, VideoGate};
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

/// What one connected publisher has set up.
struct Session {
    started: Instant,
    video: Option<(VideoGate, TrackClock)>,
    audio: Option<(AudioToAac, TrackClock)>,
    /// The video codec the program announced, once the first video unit came.
    announced: Option<VideoCodec>,
    /// When the last keyframe was passed on (or the session started).
    last_keyframe: Instant,
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
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = handle.state.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = handle.state.borrow_and_update().clone();
                match state {
                    SessionState::Connected { peer, started, .. } => {
                        if let Some(old) = session.take() {
                            end(old, slot, &events, &stats).await;
                        }
                        stats.update(|s| {
                            s.state = ConnectionState::Connected;
                            s.peer = Some(peer.to_string());
                            s.connections_total += 1;
                            s.last_error = None;
                        });
                        let _ = events.send(slot, InputEvent::Connected { peer: peer.to_string() });
                        session = Some(Session { started, video: None, audio: None, announced: None, last_keyframe: Instant::now() });
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
                    Media::Video { codec, data, keyframe, contiguous, time, rate, packets: n, arrival } => {
                        packets += n;
                        if !contiguous {
                            lost += 1;
                        }
                        let (gate, clock) = current
                            .video
                            .get_or_insert_with(|| (VideoGate::new(codec), TrackClock::new(rate)));
                        let pts = clock.ticks(time, arrival.saturating_duration_since(current.started));
                        match gate.offer(&data, keyframe, contiguous) {
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
                                send(frame, slot, &events, &stats, &mut window);
                            }
                            Gate::Drop { request_keyframe } => {
                                if request_keyframe {
                                    handle.request_keyframe();
                                }
                            }
                        }
                    }
                    Media::Audio { data, time, arrival, .. } => {
                        // Audio waits for the program, which the first video unit announces.
                        let Some((converter, clock)) = current.audio.as_mut() else { continue };
                        let pts = clock.ticks(time, arrival.saturating_duration_since(current.started));
                        window.1 += data.len() as u64;
                        if converter.offer(data, pts) == Offer::Dropped {
                            stats.update(|s| s.frames_dropped_total += 1);
                        }
                    }
                }
            }
            aac = next_aac(&mut session) => {
                match aac {
                    Some(frame) => send(frame, slot, &events, &stats, &mut window),
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
                    }
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

/// Announces the program (video + AAC audio) and starts the audio conversion for it.
async fn announce(session: &mut Session, codec: VideoCodec, slot: usize, events: &InputSender) {
    if session.audio.is_none() {
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
    let now = Instant::now();
    let bytes = frame.data.len() as u64;
    let video = (frame.keyframe && frame.codec.is_video())
        .then(|| keyframe_video_format(frame.codec, &frame.data))
        .flatten()
        .map(|format| VideoInfo::new(frame.codec.name(), format));
    let is_video = frame.codec.is_video();
    let dropped = events.send(slot, InputEvent::Frame(frame)).is_err();
    if is_video {
        window.1 += bytes;
    }
    stats.update(|s| {
        s.bytes_total += bytes;
        s.last_packet_at = Some(now);
        if dropped {
            s.frames_dropped_total += 1;
        } else if is_video {
            s.frames_total.video += 1;
        } else {
            s.frames_total.audio += 1;
        }
        if video.is_some() {
            s.video = video;
        }
    });
}

async fn end(session: Session, slot: usize, events: &InputSender, stats: &StatsHandle) {
    if let Some((converter, _)) = session.audio {
        // Stopping joins GStreamer's threads.
        let _ = tokio::task::spawn_blocking(move || converter.stop()).await;
    }
    stats.update(|s| {
        s.state = ConnectionState::Waiting;
        s.peer = None;
        s.bitrate_bps = 0.0;
    });
    info!(
        slot,
        lasted_s = session.started.elapsed().as_secs(),
        "WHIP publisher gone"
    );
    let _ = events.send(slot, InputEvent::Disconnected);
}
