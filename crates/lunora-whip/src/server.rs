//! The I/O shell: one UDP socket for every WebRTC session, one tokio task driving each
//! session's sans-IO `str0m::Rtc`, and the publish/delete calls the HTTP layer makes.

use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lunora_media::Secret;
use str0m::change::SdpOffer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::media::VideoCodec;
use crate::registry::{Refusal, Registry, SessionId};
use crate::sync::SenderReport;

/// Media queued per input before the oldest is dropped: about two seconds of 30 fps video with
/// its audio.
const MEDIA_QUEUE: usize = 256;
/// Commands (new sessions, deletes, keyframe requests) waiting for the UDP task.
const COMMAND_QUEUE: usize = 64;
/// ICE and DTLS must be done within this time of the answer, or the session is ended.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the task looks at handshake deadlines when no session wants a timer.
const TICK: Duration = Duration::from_millis(250);
/// The largest datagram read; WebRTC keeps packets under the path MTU.
const DATAGRAM: usize = 2048;

/// `[whip]` of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhipSettings {
    /// The one UDP port every session uses.
    pub udp_listen: SocketAddr,
    /// The addresses the answer offers as host candidates (at `udp_listen`'s port).
    pub ice_addresses: Vec<IpAddr>,
    /// Box-wide cap on sessions (handshaking or live).
    pub max_sessions: usize,
}

/// One access unit from a publisher, as str0m reassembled it.
#[derive(Debug, Clone)]
pub enum Media {
    Video {
        codec: VideoCodec,
        data: Bytes,
        keyframe: bool,
        /// No RTP packet missing since the previous unit.
        contiguous: bool,
        /// Extended RTP time at `rate`.
        time: u64,
        rate: u32,
        /// RTP packets this unit spanned.
        packets: u64,
        arrival: Instant,
        /// The track's latest RTCP sender report, once one came.
        report: Option<SenderReport>,
    },
    Audio {
        data: Bytes,
        time: u64,
        rate: u32,
        channels: u8,
        arrival: Instant,
        report: Option<SenderReport>,
    },
}

/// What an input's publisher is doing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SessionState {
    #[default]
    Idle,
    /// Answered; ICE and DTLS under way.
    Handshake {
        session: SessionId,
        started: Instant,
    },
    Connected {
        session: SessionId,
        started: Instant,
        peer: SocketAddr,
        /// Opus was negotiated: the publisher sends audio.
        audio: bool,
    },
}

#[derive(Debug, Clone)]
struct Sink {
    media: mpsc::Sender<Media>,
    state: Arc<watch::Sender<SessionState>>,
}

/// A successful publish: the session's id (its URL's last segment) and the answer SDP.
#[derive(Debug, Clone)]
pub struct Published {
    pub session: SessionId,
    pub answer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the offer cannot be used: {0}")]
    Offer(String),
    #[error("the WebRTC task is not keeping up or has stopped; try again")]
    Unavailable,
}

enum Command {
    Start(Box<Live>),
    End(SessionId),
    Keyframe(String),
}

struct Shared {
    registry: Mutex<Registry<Sink>>,
    commands: mpsc::Sender<Command>,
    settings: WhipSettings,
    local: SocketAddr,
    counters: Mutex<Counters>,
}

/// Totals since start, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sessions_total: u64,
    pub refused_total: u64,
    pub handshake_timeouts_total: u64,
    pub media_dropped_total: u64,
    pub datagrams_unmatched_total: u64,
    pub keyframe_requests_total: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The WHIP side of the box. Cheap to clone.
#[derive(Clone)]
pub struct WhipServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WhipServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhipServer")
            .field("local", &self.shared.local)
            .finish()
    }
}

impl WhipServer {
    /// Binds the UDP port and starts the task that runs every session until `cancel`.
    pub async fn bind(
        settings: WhipSettings,
        cancel: CancellationToken,
    ) -> std::io::Result<WhipServer> {
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = UdpSocket::bind(settings.udp_listen).await?;
        let local = socket.local_addr()?;
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::new(settings.max_sessions, HANDSHAKE_TIMEOUT)),
            commands,
            settings,
            local,
            counters: Mutex::default(),
        });
        tokio::spawn(run(socket, shared.clone(), receiver, cancel));
        info!(listen = %local, "WHIP (WebRTC) ingest listening");
        Ok(WhipServer { shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    pub fn counters(&self) -> Counters {
        *lock(&self.shared.counters)
    }

    /// Sessions handshaking or live.
    pub fn sessions(&self) -> usize {
        lock(&self.shared.registry).sessions()
    }

    /// Takes publishers for `name` (`channel/input`) with `token`. Dropping the handle removes
    /// the input and ends its session.
    pub fn add_input(&self, name: &str, token: Secret) -> InputHandle {
        let (media, media_receiver) = mpsc::channel(MEDIA_QUEUE);
        let (state, state_receiver) = watch::channel(SessionState::Idle);
        let sink = Sink {
            media,
            state: Arc::new(state),
        };
        if let Some(old) = lock(&self.shared.registry).add_input(name, token, sink) {
            let _ = self.shared.commands.try_send(Command::End(old));
        }
        InputHandle {
            name: name.to_string(),
            server: self.clone(),
            media: media_receiver,
            state: state_receiver,
        }
    }

    /// Answers a publisher's offer for `input` (`channel/input`), or says why not.
    pub fn publish(
        &self,
        input: &str,
        bearer: Option<&str>,
        offer: &str,
    ) -> Result<Published, PublishError> {
        let refused = |e: PublishError| {
            lock(&self.shared.counters).refused_total += 1;
            e
        };
        // Who asks comes first: without the token, nothing about the offer is looked at.
        let session = session_id().map_err(refused)?;
        let now = Instant::now();
        let sink = lock(&self.shared.registry)
            .admit(input, bearer, session.clone(), now)
            .map_err(|e| refused(e.into()))?;
        let answered = SdpOffer::from_sdp_string(offer)
            .map_err(|e| PublishError::Offer(format!("not an SDP offer: {e}")))
            .and_then(|offer| self.answer(offer, now));
        match answered {
            Ok((rtc, answer)) => {
                let audio = answer
                    .lines()
                    .any(|l| l.starts_with("a=rtpmap:") && l.contains("opus/"));
                let live = Live {
                    id: session.clone(),
                    input: input.to_string(),
                    rtc,
                    sink: sink.clone(),
                    timeout: now,
                    peer: None,
                    video: None,
                    started: now,
                    audio,
                };
                if self
                    .shared
                    .commands
                    .try_send(Command::Start(Box::new(live)))
                    .is_err()
                {
                    lock(&self.shared.registry).end(&session);
                    return Err(refused(PublishError::Unavailable));
                }
                sink.state.send_replace(SessionState::Handshake {
                    session: session.clone(),
                    started: now,
                });
                lock(&self.shared.counters).sessions_total += 1;
                Ok(Published { session, answer })
            }
            Err(e) => {
                lock(&self.shared.registry).end(&session);
                Err(refused(e))
            }
        }
    }

    fn answer(&self, offer: SdpOffer, now: Instant) -> Result<(Rtc, String), PublishError> {
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_h264(true)
            .enable_h265(true)
            .enable_opus(true, false)
            .set_stats_interval(None)
            .build(now);
        let port = self.shared.local.port();
        for ip in &self.shared.settings.ice_addresses {
            let candidate = Candidate::host(SocketAddr::new(*ip, port), "udp")
                .map_err(|e| PublishError::Offer(format!("ice address {ip}: {e}")))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)))
            .map_err(|_| PublishError::Offer("the offer crashed the SDP parser".into()))?
            .map_err(|e| PublishError::Offer(e.to_string()))?;
        let answer = answer.to_sdp_string();
        let usable = answer.lines().any(|l| {
            l.starts_with("a=rtpmap:") && ["H264/", "H265/", "opus/"].iter().any(|c| l.contains(c))
        });
        if !usable {
            return Err(PublishError::Offer(
                "it offers neither H.264/HEVC video nor Opus audio".into(),
            ));
        }
        Ok((rtc, answer))
    }

    /// A one-use bearer token for `input` (`channel/input`) that expires in two minutes: what
    /// the dashboard's "go live" page publishes with, so the input's own token never reaches a
    /// browser. `None` when there is no such input.
    pub fn issue_credential(&self, input: &str) -> Option<Secret> {
        let credential = Secret::new(session_id().ok()?);
        lock(&self.shared.registry)
            .issue(input, credential.clone(), Instant::now())
            .then_some(credential)
    }

    /// Ends `input`'s session `session` (a DELETE on its URL). False when it is not live.
    pub fn end(&self, input: &str, session: &str) -> bool {
        let mut registry = lock(&self.shared.registry);
        if !registry.owns(input, session) {
            return false;
        }
        registry.end(session);
        drop(registry);
        let _ = self
            .shared
            .commands
            .try_send(Command::End(session.to_string()));
        true
    }

    fn remove_input(&self, name: &str) {
        if let Some(session) = lock(&self.shared.registry).remove_input(name) {
            let _ = self.shared.commands.try_send(Command::End(session));
        }
    }
}

/// 128 random bits in hex: a session URL nobody can guess.
fn session_id() -> Result<SessionId, PublishError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| PublishError::Unavailable)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// One input's end of the server: its publisher's media and state.
#[derive(Debug)]
pub struct InputHandle {
    name: String,
    server: WhipServer,
    pub media: mpsc::Receiver<Media>,
    pub state: watch::Receiver<SessionState>,
}

impl InputHandle {
    /// Asks the publisher for a keyframe now (RTCP PLI), e.g. because the switcher is about to
    /// put this input on air.
    pub fn request_keyframe(&self) {
        let _ = self
            .server
            .shared
            .commands
            .try_send(Command::Keyframe(self.name.clone()));
    }

    /// A handle the channel can keep to ask for keyframes without holding the input.
    pub fn keyframe_requester(&self) -> KeyframeRequester {
        KeyframeRequester {
            name: self.name.clone(),
            commands: self.server.shared.commands.clone(),
        }
    }
}

impl Drop for InputHandle {
    fn drop(&mut self) {
        self.server.remove_input(&self.name);
    }
}

/// Sends PLIs to one input's publisher.
#[derive(Debug, Clone)]
pub struct KeyframeRequester {
    name: String,
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Start(live) => write!(f, "Start({})", live.id),
            Command::End(id) => write!(f, "End({id})"),
            Command::Keyframe(name) => write!(f, "Keyframe({name})"),
        }
    }
}

impl KeyframeRequester {
    pub fn request(&self) {
        let _ = self.commands.try_send(Command::Keyframe(self.name.clone()));
    }
}

/// A session the task drives.
struct Live {
    id: SessionId,
    input: String,
    rtc: Rtc,
    sink: Sink,
    /// When str0m next wants `Input::Timeout`.
    timeout: Instant,
    /// The address its last accepted datagram came from.
    peer: Option<SocketAddr>,
    video: Option<Mid>,
    started: Instant,
    /// The answer accepted Opus.
    audio: bool,
}

async fn run(
    socket: UdpSocket,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<Command>,
    cancel: CancellationToken,
) {
    let destination = match shared.local.ip() {
        // A wildcard bind: packets are for the address the answer offered.
        ip if ip.is_unspecified() => shared
            .settings
            .ice_addresses
            .first()
            .map_or(shared.local, |ip| SocketAddr::new(*ip, shared.local.port())),
        _ => shared.local,
    };
    let mut sessions: Vec<Live> = Vec::new();
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let now = Instant::now();
        let next = sessions
            .iter()
            .map(|s| s.timeout)
            .min()
            .map_or(now + TICK, |t| t.min(now + TICK));
        tokio::select! {
            _ = cancel.cancelled() => break,
            command = commands.recv() => {
                let Some(command) = command else { break };
                match command {
                    Command::Start(live) => {
                        let mut live = *live;
                        if drive(&mut live, &socket, &shared) {
                            sessions.push(live);
                        } else {
                            finish(live, &shared, "the session failed at start");
                        }
                    }
                    Command::End(id) => {
                        if let Some(i) = sessions.iter().position(|s| s.id == id) {
                            let mut live = sessions.swap_remove(i);
                            live.rtc.disconnect();
                            finish(live, &shared, "ended by DELETE or the input's removal");
                        }
                    }
                    Command::Keyframe(name) => {
                        if let Some(live) = sessions.iter_mut().find(|s| s.input == name) {
                            request_keyframe(live, &shared);
                            drive(live, &socket, &shared);
                        }
                    }
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (length, source) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        debug!(error = %e, "WHIP UDP receive failed");
                        continue;
                    }
                };
                let now = Instant::now();
                let Some(data) = buf.get(..length) else { continue };
                let Ok(contents) = data.try_into() else {
                    lock(&shared.counters).datagrams_unmatched_total += 1;
                    continue;
                };
                let input = Input::Receive(now, Receive {
                    proto: Protocol::Udp,
                    source,
                    destination,
                    contents,
                });
                let Some(i) = sessions.iter().position(|s| s.rtc.accepts(&input)) else {
                    lock(&shared.counters).datagrams_unmatched_total += 1;
                    continue;
                };
                let Some(live) = sessions.get_mut(i) else { continue };
                live.peer = Some(source);
                let handled = catch_unwind(AssertUnwindSafe(|| live.rtc.handle_input(input)));
                let alive = match handled {
                    Ok(Ok(())) => drive(live, &socket, &shared),
                    Ok(Err(e)) => {
                        warn!(input = %live.input, peer = %source, error = %e, "WHIP session failed");
                        false
                    }
                    Err(_) => {
                        warn!(input = %live.input, peer = %source, "a datagram crashed the WebRTC stack; the session is ended");
                        false
                    }
                };
                if !alive {
                    let live = sessions.swap_remove(i);
                    finish(live, &shared, "the peer's connection failed");
                }
            }
            _ = tokio::time::sleep_until(next.into()) => {
                let now = Instant::now();
                let expired = lock(&shared.registry).expired(now);
                let mut i = 0;
                while let Some(live) = sessions.get_mut(i) {
                    let timed_out = expired.contains(&live.id);
                    let alive = !timed_out && (live.timeout > now || {
                        let handled = catch_unwind(AssertUnwindSafe(|| live.rtc.handle_input(Input::Timeout(now))));
                        matches!(handled, Ok(Ok(()))) && drive(live, &socket, &shared)
                    });
                    if alive {
                        i += 1;
                        continue;
                    }
                    let live = sessions.swap_remove(i);
                    if timed_out {
                        lock(&shared.counters).handshake_timeouts_total += 1;
                        finish(live, &shared, "ICE/DTLS did not complete in 15 s (is the UDP port reachable at the ice_addresses?)");
                    } else {
                        finish(live, &shared, "the peer went away (ICE disconnected)");
                    }
                }
            }
        }
    }
    for mut live in sessions {
        live.rtc.disconnect();
        finish(live, &shared, "the daemon is stopping");
    }
}

fn request_keyframe(live: &mut Live, shared: &Shared) {
    let Some(mid) = live.video else { return };
    let Some(mut writer) = live.rtc.writer(mid) else {
        return;
    };
    let kind = if writer.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
        KeyframeRequestKind::Pli
    } else {
        KeyframeRequestKind::Fir
    };
    if writer.request_keyframe(None, kind).is_ok() {
        lock(&shared.counters).keyframe_requests_total += 1;
    }
}

/// Frees the session's input and tells it.
fn finish(live: Live, shared: &Shared, why: &str) {
    lock(&shared.registry).end(&live.id);
    // A newer session may already own the input; only this one's state is cleared.
    live.sink.state.send_if_modified(|state| {
        let ours = match state {
            SessionState::Idle => false,
            SessionState::Handshake { session, .. } | SessionState::Connected { session, .. } => {
                *session == live.id
            }
        };
        if ours {
            *state = SessionState::Idle;
        }
        ours
    });
    info!(input = %live.input, peer = ?live.peer, session = %live.id, lasted_s = live.started.elapsed().as_secs(), "WHIP session ended: {why}");
}

/// Runs the session's outputs until it wants a timer. False when it is over.
fn drive(live: &mut Live, socket: &UdpSocket, shared: &Shared) -> bool {
    loop {
        let output = catch_unwind(AssertUnwindSafe(|| live.rtc.poll_output()));
        match output {
            Ok(Ok(Output::Timeout(at))) => {
                live.timeout = at;
                return live.rtc.is_alive();
            }
            Ok(Ok(Output::Transmit(t))) => {
                // UDP sends do not block for long; one lost to a full buffer is like network loss.
                let _ = socket.try_send_to(&t.contents, t.destination);
            }
            Ok(Ok(Output::Event(event))) => {
                if !handle_event(live, event, shared) {
                    return false;
                }
            }
            Ok(Err(e)) => {
                warn!(input = %live.input, peer = ?live.peer, error = %e, "WHIP session failed");
                return false;
            }
            Err(_) => {
                warn!(input = %live.input, peer = ?live.peer, "the WebRTC stack crashed; the session is ended");
                return false;
            }
        }
    }
}

fn handle_event(live: &mut Live, event: Event, shared: &Shared) -> bool {
    match event {
        Event::Connected => {
            lock(&shared.registry).connected(&live.id);
            let peer = live.peer.unwrap_or(shared.local);
            info!(input = %live.input, peer = %peer, session = %live.id, "WHIP publisher connected");
            live.sink.state.send_replace(SessionState::Connected {
                session: live.id.clone(),
                started: live.started,
                peer,
                audio: live.audio,
            });
        }
        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => return false,
        Event::MediaAdded(added) if added.kind == MediaKind::Video => {
            live.video = Some(added.mid);
        }
        Event::MediaData(data) => {
            if let Some(media) = media(data)
                && live.sink.media.try_send(media).is_err()
            {
                lock(&shared.counters).media_dropped_total += 1;
            }
        }
        _ => {}
    }
    true
}

fn media(data: MediaData) -> Option<Media> {
    let spec = data.params.spec();
    let rate = spec.clock_rate.get();
    let time = data.time.numer();
    let packets = (**data.seq_range.end()).saturating_sub(**data.seq_range.start()) + 1;
    let report = data.last_sender_info.and_then(|info| {
        // str0m keeps the report's 32-bit RTP time as the numerator.
        Some(SenderReport {
            rtp_time: u32::try_from(info.rtp_time.numer()).ok()?,
            wallclock: info.ntp_time,
        })
    });
    let video = |codec, keyframe| Media::Video {
        codec,
        data: Bytes::copy_from_slice(&data.data),
        keyframe,
        contiguous: data.contiguous,
        time,
        rate,
        packets,
        arrival: data.network_time,
        report,
    };
    match (spec.codec, &data.codec_extra) {
        (RtcCodec::H264, str0m::format::CodecExtra::H264(extra)) => {
            Some(video(VideoCodec::H264, extra.is_keyframe))
        }
        (RtcCodec::H264, _) => Some(video(VideoCodec::H264, false)),
        (RtcCodec::H265, str0m::format::CodecExtra::H265(extra)) => {
            Some(video(VideoCodec::Hevc, extra.is_keyframe))
        }
        (RtcCodec::H265, _) => Some(video(VideoCodec::Hevc, false)),
        (RtcCodec::Opus, _) => Some(Media::Audio {
            data: Bytes::copy_from_slice(&data.data),
            time,
            rate,
            channels: spec.channels.unwrap_or(2),
            arrival: data.network_time,
            report,
        }),
        _ => None,
    }
}
