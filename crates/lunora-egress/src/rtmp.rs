//! RTMP push destinations (rml_rtmp client sessions over tokio TCP) with a supervisor: each
//! destination starts and stops on its own, retries with exponential backoff and jitter while
//! started, and stops retrying (`failed`) when the far end refuses the stream key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lunora_flv::{FlvMux, FlvTag, TagKind};
use lunora_media::{Codec, Secret, printable};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::{info, warn};

use crate::bus::{Bus, BusItem};
use crate::conformance::{Conformance, PlatformRules};
use crate::stats::{DropReport, OutputState, OutputStatsHandle, with_jitter};

/// `rtmp[s]://host[:port]/app[/more]`: where to publish (the stream key is kept apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    pub host: String,
    pub port: u16,
    pub app: String,
    /// RTMPS: RTMP inside TLS.
    pub tls: bool,
}

impl RtmpUrl {
    /// Parses an `rtmp://` or `rtmps://` URL (default ports 1935 and 443).
    pub fn parse(url: &str) -> Result<RtmpUrl, String> {
        let (tls, rest) = match (url.strip_prefix("rtmps://"), url.strip_prefix("rtmp://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(format!("{url:?} is not an rtmp:// or rtmps:// URL")),
        };
        let (authority, app) = rest
            .split_once('/')
            .ok_or_else(|| format!("{url:?} has no application path (rtmp://host/app)"))?;
        let app = app.trim_end_matches('/');
        if app.is_empty() || authority.is_empty() {
            return Err(format!(
                "{url:?} needs a host and an application (rtmp://host/app)"
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("bad port in {url:?}"))?,
            ),
            None => (authority, if tls { 443 } else { 1935 }),
        };
        Ok(RtmpUrl {
            host: host.to_string(),
            port,
            app: app.to_string(),
            tls,
        })
    }

    pub fn tc_url(&self) -> String {
        format!(
            "{}://{}:{}/{}",
            if self.tls { "rtmps" } else { "rtmp" },
            self.host,
            self.port,
            self.app
        )
    }
}

impl std::fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The stream key never appears: it is not part of this type.
        write!(f, "{}/<key>", self.tc_url())
    }
}

#[derive(Debug, Clone)]
pub struct RtmpDestinationSettings {
    pub id: String,
    pub url: RtmpUrl,
    pub stream_key: Secret,
    /// The platform's ingest rules to check the stream against (none for custom servers).
    pub rules: Option<PlatformRules>,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Start,
    Stop,
}

/// Handle to a running destination supervisor.
#[derive(Debug, Clone)]
pub struct RtmpDestination {
    control: mpsc::Sender<Control>,
}

impl RtmpDestination {
    pub fn spawn(
        settings: RtmpDestinationSettings,
        bus: Arc<Bus>,
        stats: OutputStatsHandle,
        autostart: bool,
        cancel: CancellationToken,
    ) -> RtmpDestination {
        let (control, commands) = mpsc::channel(8);
        tokio::spawn(
            supervise(settings, bus, stats, autostart, commands, cancel).in_current_span(),
        );
        RtmpDestination { control }
    }

    /// Asks the destination to start or stop; false if it is gone or flooded with commands.
    pub fn send(&self, control: Control) -> bool {
        self.control.try_send(control).is_ok()
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A write that makes no progress this long means the server stopped reading: reconnect.
const WRITE_STALL: Duration = Duration::from_secs(5);

enum Outcome {
    /// Stopped by the user (or shutdown).
    Stopped,
    /// The far end refused the stream: do not hammer it.
    Refused(String),
    /// Connection trouble: retry.
    Failed(String),
    /// The server hung up right after the publish request: how nginx-rtmp's `on_publish` and
    /// several platforms answer a wrong key, but also what a server restart looks like.
    ClosedAtPublish(String),
}

/// Hang-ups at publish in a row that count as a refused key.
const CLOSES_AT_PUBLISH_MEAN_REFUSED: u32 = 3;

/// A session that ends this soon after it started counts as a failed attempt: a server that
/// accepts the publish and then drops the stream (key in use elsewhere, a codec it will not
/// take) must not be reconnected to in a tight loop as if it had been live.
const SHORT_SESSION: Duration = Duration::from_secs(5);
/// Short sessions in a row after which the destination is `failed` and left alone.
const SHORT_SESSIONS_MEAN_FAILED: u32 = 5;

async fn supervise(
    settings: RtmpDestinationSettings,
    bus: Arc<Bus>,
    stats: OutputStatsHandle,
    autostart: bool,
    mut commands: mpsc::Receiver<Control>,
    cancel: CancellationToken,
) {
    let mut started = autostart;
    let mut backoff = settings.retry_min;
    let mut ever_live = false;
    let mut closes_at_publish = 0;
    let mut short_sessions = 0;
    loop {
        if !started {
            stats.lock().next_retry_seconds = None;
            tokio::select! {
                _ = cancel.cancelled() => return,
                command = commands.recv() => match command {
                    Some(Control::Start) => {
                        started = true;
                        backoff = settings.retry_min;
                        closes_at_publish = 0;
                        short_sessions = 0;
                        stats.lock().last_error = None;
                    }
                    Some(Control::Stop) => continue,
                    None => return,
                },
            }
        }
        stats.lock().state = OutputState::Connecting;
        let attempt = Instant::now();
        let stop = CancellationToken::new();
        let session = session(&settings, &bus, &stats, &stop, ever_live);
        tokio::pin!(session);
        let outcome = loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    stop.cancel();
                    let _ = (&mut session).await;
                    stats.lock().state = OutputState::Idle;
                    return;
                }
                command = commands.recv() => match command {
                    Some(Control::Stop) | None => {
                        stop.cancel();
                        break (&mut session).await;
                    }
                    Some(Control::Start) => {}
                },
                outcome = &mut session => break outcome,
            }
        };
        stats.lock().peers.clear();
        // How long the session was up, when it got as far as live.
        let lived = (stats.lock().state == OutputState::Live).then(|| attempt.elapsed());
        let outcome = match outcome {
            Outcome::Failed(error) if lived.is_some_and(|up| up < SHORT_SESSION) => {
                closes_at_publish = 0;
                short_sessions += 1;
                if short_sessions >= SHORT_SESSIONS_MEAN_FAILED {
                    Outcome::Refused(format!(
                        "the server dropped the stream within {} s of accepting it, {short_sessions} times in a row (last: {error}): check that the key is not in use elsewhere and that the platform takes this stream",
                        SHORT_SESSION.as_secs()
                    ))
                } else {
                    Outcome::Failed(format!(
                        "{error} within {} s of going live",
                        SHORT_SESSION.as_secs()
                    ))
                }
            }
            Outcome::ClosedAtPublish(error) => {
                closes_at_publish += 1;
                if closes_at_publish >= CLOSES_AT_PUBLISH_MEAN_REFUSED {
                    Outcome::Refused(format!(
                        "publish refused: the server hung up each time lunora asked to publish ({closes_at_publish} times in a row): check the stream key"
                    ))
                } else {
                    Outcome::Failed(format!("{error} when asked to publish"))
                }
            }
            other => {
                closes_at_publish = 0;
                if lived.is_some() {
                    short_sessions = 0;
                }
                other
            }
        };
        match outcome {
            Outcome::Stopped => {
                info!(output = %settings.id, "RTMP destination stopped");
                started = false;
                stats.lock().state = OutputState::Idle;
            }
            Outcome::Refused(reason) => {
                warn!(output = %settings.id, url = %settings.url, reason = %printable(&reason), "RTMP destination refused the stream; not retrying until started again");
                started = false;
                let mut s = stats.lock();
                s.state = OutputState::Failed;
                s.last_error = Some(reason);
            }
            Outcome::Failed(error) | Outcome::ClosedAtPublish(error) => {
                // A session that stayed live restarts the backoff from the bottom; a short
                // one is a failed attempt and the backoff keeps growing.
                if lived.is_some() {
                    ever_live = true;
                }
                if lived.is_some_and(|up| up >= SHORT_SESSION) {
                    backoff = settings.retry_min;
                }
                // Jitter spreads reconnects out but never below the configured minimum.
                let delay = with_jitter(backoff).max(settings.retry_min);
                warn!(output = %settings.id, url = %settings.url, error = %printable(&error), retry_in_ms = delay.as_millis() as u64, "RTMP destination not live");
                {
                    let mut s = stats.lock();
                    s.state = OutputState::Retrying;
                    s.last_error = Some(error);
                    s.next_retry_seconds = Some(delay.as_secs_f64());
                }
                let wait = tokio::time::sleep(delay);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = &mut wait => break,
                        command = commands.recv() => match command {
                            Some(Control::Stop) | None => {
                                started = false;
                                stats.lock().state = OutputState::Idle;
                                break;
                            }
                            Some(Control::Start) => {}
                        },
                    }
                }
                backoff = (backoff * 2).min(settings.retry_max);
            }
        }
    }
}

/// A byte stream to the server: plain TCP or TLS over it.
trait IoStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoStream for T {}

struct Link {
    stream: Box<dyn IoStream>,
    session: ClientSession,
    buffer: Vec<u8>,
}

impl Link {
    async fn write(
        &mut self,
        results: Vec<ClientSessionResult>,
        events: &mut Vec<ClientSessionEvent>,
    ) -> Result<u64, String> {
        let mut written = 0;
        for result in results {
            match result {
                ClientSessionResult::OutboundResponse(packet) => {
                    self.stream
                        .write_all(&packet.bytes)
                        .await
                        .map_err(|e| format!("write failed: {e}"))?;
                    written += packet.bytes.len() as u64;
                }
                ClientSessionResult::RaisedEvent(event) => events.push(event),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(written)
    }

    async fn read(&mut self, events: &mut Vec<ClientSessionEvent>) -> Result<(), String> {
        let n = self
            .stream
            .read(&mut self.buffer)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        let results = self
            .session
            .handle_input(&self.buffer[..n])
            .map_err(|e| format!("bad RTMP data from the server: {e:?}"))?;
        self.write(results, events).await?;
        Ok(())
    }
}

/// TLS client for RTMPS: the system's trust store (which honours `SSL_CERT_FILE`), with the
/// `ring` provider named explicitly (a workspace that unifies features can otherwise end up with
/// two providers and panic).
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates found on this system (install ca-certificates or set SSL_CERT_FILE)".into());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn refusal(event: &ClientSessionEvent) -> Option<String> {
    match event {
        ClientSessionEvent::ConnectionRequestRejected { description } => {
            Some(format!("connection rejected: {description}"))
        }
        ClientSessionEvent::UnhandleableOnStatusCode { code }
            if code.contains("BadName")
                || code.contains("Denied")
                || code.contains("Rejected")
                || code.contains("Failed") =>
        {
            Some(format!("publish refused ({code}): check the stream key"))
        }
        _ => None,
    }
}

async fn connect(settings: &RtmpDestinationSettings) -> Result<(Link, SocketAddr), Outcome> {
    let address = format!("{}:{}", settings.url.host, settings.url.port);
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Outcome::Failed(format!("connecting to {address}: {e}"))),
        Err(_) => {
            return Err(Outcome::Failed(format!(
                "connecting to {address}: no answer within 5 s"
            )));
        }
    };
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map_err(|e| Outcome::Failed(e.to_string()))?;
    let failed = |e: String| Outcome::Failed(e);
    let mut stream: Box<dyn IoStream> = if settings.url.tls {
        let tls = tls_connector().map_err(failed)?;
        let name = rustls::pki_types::ServerName::try_from(settings.url.host.clone())
            .map_err(|e| failed(format!("bad TLS server name {:?}: {e}", settings.url.host)))?;
        match tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, stream)).await {
            Ok(Ok(stream)) => Box::new(stream),
            Ok(Err(e)) => return Err(failed(format!("TLS with {address}: {e}"))),
            Err(_) => return Err(failed(format!("TLS with {address}: no answer within 5 s"))),
        }
    } else {
        Box::new(stream)
    };
    let mut buffer = vec![0; 64 * 1024];
    // Handshake, on the bare stream: the session exists only once it is done.
    let mut handshake = Handshake::new(PeerType::Client);
    let p0p1 = handshake
        .generate_outbound_p0_and_p1()
        .map_err(|e| failed(format!("{e:?}")))?;
    stream
        .write_all(&p0p1)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let remaining = loop {
        let n = tokio::time::timeout(CONNECT_TIMEOUT, stream.read(&mut buffer))
            .await
            .map_err(|_| failed("RTMP handshake timed out".into()))?
            .map_err(|e| failed(e.to_string()))?;
        if n == 0 {
            return Err(failed(
                "the server closed the connection during the handshake".into(),
            ));
        }
        match handshake
            .process_bytes(&buffer[..n])
            .map_err(|e| failed(format!("bad RTMP handshake: {e:?}")))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => stream
                .write_all(&response_bytes)
                .await
                .map_err(|e| failed(e.to_string()))?,
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream
                    .write_all(&response_bytes)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                break remaining_bytes;
            }
        }
    };
    let mut config = ClientSessionConfig::new();
    config.tc_url = Some(settings.url.tc_url());
    let (session, initial) = ClientSession::new(config).map_err(|e| failed(format!("{e:?}")))?;
    let mut link = Link {
        stream,
        session,
        buffer,
    };
    let mut events = Vec::new();
    link.write(initial, &mut events).await.map_err(failed)?;
    if !remaining.is_empty() {
        let results = link
            .session
            .handle_input(&remaining)
            .map_err(|e| failed(format!("{e:?}")))?;
        link.write(results, &mut events).await.map_err(failed)?;
    }
    let request = link
        .session
        .request_connection(settings.url.app.clone())
        .map_err(|e| failed(format!("{e:?}")))?;
    link.write(vec![request], &mut events)
        .await
        .map_err(failed)?;
    // Connect, then publish.
    let deadline = Instant::now() + CONNECT_TIMEOUT * 2;
    let mut publish_requested = false;
    loop {
        for event in std::mem::take(&mut events) {
            if let Some(reason) = refusal(&event) {
                return Err(Outcome::Refused(reason));
            }
            match event {
                ClientSessionEvent::ConnectionRequestAccepted if !publish_requested => {
                    publish_requested = true;
                    let request = link
                        .session
                        .request_publishing(
                            settings.stream_key.expose().to_string(),
                            PublishRequestType::Live,
                        )
                        .map_err(|e| failed(format!("{e:?}")))?;
                    link.write(vec![request], &mut events)
                        .await
                        .map_err(failed)?;
                }
                ClientSessionEvent::PublishRequestAccepted => return Ok((link, peer)),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            return Err(failed(
                "the server did not accept the stream within 10 s".into(),
            ));
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, link.read(&mut events)).await {
            Ok(Err(e)) if publish_requested => return Err(Outcome::ClosedAtPublish(e)),
            Ok(result) => result.map_err(failed)?,
            Err(_) => return Err(failed("no answer from the server".into())),
        }
    }
}

/// One connection: connect, publish, then send the bus until stopped or broken.
async fn session(
    settings: &RtmpDestinationSettings,
    bus: &Arc<Bus>,
    stats: &OutputStatsHandle,
    stop: &CancellationToken,
    was_live: bool,
) -> Outcome {
    let (mut link, peer) = tokio::select! {
        _ = stop.cancelled() => return Outcome::Stopped,
        connected = connect(settings) => match connected {
            Ok(connected) => connected,
            Err(outcome) => return outcome,
        },
    };
    info!(output = %settings.id, url = %settings.url, %peer, "RTMP destination live");
    {
        let mut s = stats.lock();
        s.state = OutputState::Live;
        s.peers = vec![peer];
        s.next_retry_seconds = None;
        if was_live || s.last_error.is_some() {
            s.reconnects_total += 1;
        }
    }
    let mut receiver = bus.subscribe();
    let mut mux = FlvMux::new();
    let mut tags: Vec<FlvTag> = Vec::new();
    let mut events = Vec::new();
    let mut drops = DropReport::default();
    let mut conformance = settings.rules.map(Conformance::new);
    let mut last_check = Instant::now();
    // Audio the FLV muxer cannot carry (MP2, AC-3, …) is said once per session, for custom
    // servers too (presets also list it among the conformance warnings).
    let mut dropped_audio: Option<Codec> = None;
    loop {
        let item = tokio::select! {
            _ = stop.cancelled() => return Outcome::Stopped,
            read = link.read(&mut events) => {
                if let Err(e) = read {
                    return Outcome::Failed(e);
                }
                if let Some(reason) = events.drain(..).find_map(|e| refusal(&e)) {
                    return Outcome::Refused(reason);
                }
                continue;
            }
            item = receiver.recv() => match item {
                Some(item) => item,
                None => return Outcome::Stopped,
            },
        };
        let BusItem::Frame(frame) = item else {
            continue;
        };
        if let Some(conformance) = conformance.as_mut() {
            conformance.observe(&frame);
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                let warnings = conformance.warnings();
                let mut s = stats.lock();
                if warnings != s.warnings {
                    for warning in warnings.iter().filter(|w| !s.warnings.contains(w)) {
                        warn!(output = %settings.id, "stream breaks the platform's rules: {warning}");
                    }
                    s.warnings = warnings;
                }
            }
        }
        tags.clear();
        let unsupported = mux.unsupported_frames;
        mux.write_frame(&frame, &mut tags);
        if frame.codec.is_audio()
            && mux.unsupported_frames > unsupported
            && dropped_audio != Some(frame.codec)
        {
            dropped_audio = Some(frame.codec);
            warn!(output = %settings.id, codec = frame.codec.name(), "audio cannot go out over RTMP (AAC and MP3 can): the destination gets video only");
        }
        let mut written = 0;
        for tag in tags.drain(..) {
            let timestamp = RtmpTimestamp::new(tag.timestamp_ms);
            let packet = match tag.kind {
                TagKind::Video => link.session.publish_video_data(tag.body, timestamp, false),
                TagKind::Audio => link.session.publish_audio_data(tag.body, timestamp, false),
            };
            let packet = match packet {
                Ok(packet) => packet,
                Err(e) => return Outcome::Failed(format!("{e:?}")),
            };
            // A server that stops reading blocks the write: the operator's stop must still
            // work, and the state must not say `live` for long while nothing moves.
            let write = tokio::time::timeout(WRITE_STALL, link.write(vec![packet], &mut events));
            let result = tokio::select! {
                _ = stop.cancelled() => return Outcome::Stopped,
                result = write => result,
            };
            match result {
                Ok(Ok(n)) => written += n,
                Ok(Err(e)) => return Outcome::Failed(e),
                Err(_) => {
                    return Outcome::Failed(format!(
                        "the server took no data for {} s",
                        WRITE_STALL.as_secs()
                    ));
                }
            }
        }
        let mut s = stats.lock();
        s.bytes_total += written;
        s.frames_total += 1;
        drops.update(
            &settings.id,
            receiver.dropped_frames(),
            &mut s,
            "RTMP destination too slow; skipped to the next keyframe",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            RtmpUrl::parse("rtmp://a.example/live2"),
            Ok(RtmpUrl {
                host: "a.example".into(),
                port: 1935,
                app: "live2".into(),
                tls: false
            })
        );
        assert_eq!(
            RtmpUrl::parse("rtmp://127.0.0.1:19350/live/").map(|u| (u.port, u.app)),
            Ok((19350, "live".into()))
        );
        assert_eq!(
            RtmpUrl::parse("rtmps://a.rtmps.youtube.com/live2").map(|u| (u.port, u.tls)),
            Ok((443, true))
        );
        assert!(RtmpUrl::parse("http://a/b").is_err());
        assert!(RtmpUrl::parse("rtmp://host").is_err());
        assert_eq!(
            RtmpUrl::parse("rtmp://h/app").map(|u| u.to_string()),
            Ok("rtmp://h:1935/app/<key>".into())
        );
    }
}
