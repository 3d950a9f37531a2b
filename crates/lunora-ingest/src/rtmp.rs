//! RTMP ingest server (rml_rtmp sessions over tokio TCP), shared by every channel.
//!
//! OBS publishes to `rtmp://HOST:1935/live/<stream_key>`; the stream key picks the input. A
//! wrong or unknown key is refused at publish time (the log never shows the key), and so is a
//! second publisher on a key that is already live. With a certificate configured, the same
//! server also takes RTMPS (RTMP inside TLS) on a second port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lunora_flv::{FlvDemux, FlvError, FlvEvent};
use lunora_media::Secret;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::InputEvent;
use crate::stats::{ConnectionState, StatsHandle};

/// The application name OBS users expect (`rtmp://HOST/live`).
const APP: &str = "live";
/// Simultaneous RTMP connections (publishers and half-open sockets alike).
const MAX_CONNECTIONS: usize = 64;
/// A connection that has not started publishing by then is closed.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// One RTMP input: where its stream key's media goes.
#[derive(Debug, Clone)]
pub struct RtmpInput {
    /// `channel/input`, for log lines.
    pub name: String,
    pub stream_key: Secret,
    /// The input's index in its channel (the switcher's numbering).
    pub index: usize,
    pub events: mpsc::Sender<(usize, InputEvent)>,
    pub stats: StatsHandle,
}

#[derive(Debug)]
struct Slot {
    input: RtmpInput,
    live: AtomicBool,
    /// Taken out of the server: a publisher still on it is disconnected.
    removed: AtomicBool,
}

/// The RTMP inputs the server takes publishers for. Inputs are added and removed while the
/// server runs; a publisher keeps its input until it leaves or the input is removed.
#[derive(Debug, Clone, Default)]
pub struct RtmpInputs(Arc<Mutex<Vec<Arc<Slot>>>>);

impl RtmpInputs {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Slot>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, input: RtmpInput) {
        self.lock().push(Arc::new(Slot {
            input,
            live: AtomicBool::new(false),
            removed: AtomicBool::new(false),
        }));
    }

    /// Removes the input named `name` (`channel/input`); its publisher, if any, is disconnected.
    pub fn remove(&self, name: &str) {
        self.lock().retain(|slot| {
            let keep = slot.input.name != name;
            if !keep {
                slot.removed.store(true, Ordering::Release);
            }
            keep
        });
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn find(&self, stream_key: &str) -> Option<Arc<Slot>> {
        self.lock()
            .iter()
            .find(|s| s.input.stream_key.expose() == stream_key)
            .cloned()
    }
}

/// Where RTMPS is taken and with which certificate.
#[derive(Debug, Clone)]
pub struct RtmpsSettings {
    pub listen: SocketAddr,
    /// PEM: the certificate chain, leaf first.
    pub certificate: std::path::PathBuf,
    /// PEM: the certificate's private key.
    pub private_key: std::path::PathBuf,
}

/// Why the RTMPS listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum RtmpsError {
    #[error("RTMPS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot bind the RTMPS listener on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// The bound RTMP server (and its RTMPS listener, when configured).
pub struct RtmpServer {
    listener: TcpListener,
    tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
}

impl std::fmt::Debug for RtmpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpServer")
            .field("listener", &self.listener)
            .field("rtmps", &self.tls.as_ref().map(|(l, _)| l))
            .finish()
    }
}

impl RtmpServer {
    pub async fn bind(address: SocketAddr) -> std::io::Result<RtmpServer> {
        Ok(RtmpServer {
            listener: TcpListener::bind(address).await?,
            tls: None,
        })
    }

    /// Adds the RTMPS listener.
    pub async fn with_rtmps(mut self, settings: &RtmpsSettings) -> Result<RtmpServer, RtmpsError> {
        let acceptor = crate::tls::tls_acceptor(&settings.certificate, &settings.private_key)?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| RtmpsError::Bind {
                    address: settings.listen,
                    source,
                })?;
        self.tls = Some((listener, acceptor));
        Ok(self)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The RTMPS listener's address, when there is one.
    pub fn rtmps_addr(&self) -> Option<SocketAddr> {
        self.tls
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// Serves `inputs` until `shutdown` resolves.
    pub async fn run(self, inputs: RtmpInputs, shutdown: impl Future<Output = ()>) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let accept_tls = async {
                match &self.tls {
                    Some((listener, acceptor)) => (listener.accept().await, Some(acceptor.clone())),
                    None => std::future::pending().await,
                }
            };
            let (accepted, tls) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => (accepted, None),
                accepted = accept_tls => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                warn!(%peer, "RTMP connection refused: {MAX_CONNECTIONS} connections already open");
                continue;
            };
            let inputs = inputs.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let mut connection = Connection {
                    peer,
                    inputs,
                    publishing: None,
                    demux: FlvDemux::new(),
                    errors_logged: 0,
                    closing: None,
                    window_start: Instant::now(),
                    window_bytes: 0,
                };
                let _ = stream.set_nodelay(true);
                let outcome = match tls {
                    None => connection.serve(stream).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(PUBLISH_DEADLINE, acceptor.accept(stream)).await
                        {
                            Ok(Ok(stream)) => connection.serve(stream).await,
                            Ok(Err(e)) => Ended::Failed(format!("TLS handshake failed: {e}")),
                            Err(_) => Ended::Failed("TLS handshake timed out".into()),
                        }
                    }
                };
                connection.finish(outcome);
            });
        }
    }
}

struct Connection {
    peer: SocketAddr,
    inputs: RtmpInputs,
    /// The input this connection publishes to.
    publishing: Option<Arc<Slot>>,
    demux: FlvDemux,
    errors_logged: u32,
    /// Set when the publisher was refused: close once the refusal has been written.
    closing: Option<&'static str>,
    window_start: Instant,
    window_bytes: u64,
}

#[derive(Debug)]
enum Ended {
    Closed,
    Refused(&'static str),
    Failed(String),
}

impl Connection {
    async fn serve(&mut self, mut stream: impl AsyncRead + AsyncWrite + Unpin) -> Ended {
        let mut buffer = vec![0u8; 64 * 1024];
        let opened = Instant::now();
        // Handshake.
        let mut handshake = Handshake::new(PeerType::Server);
        let remaining = loop {
            let n = match tokio::time::timeout(PUBLISH_DEADLINE, stream.read(&mut buffer)).await {
                Ok(Ok(0)) => return Ended::Closed,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Ended::Failed(e.to_string()),
                Err(_) => return Ended::Failed("handshake timed out".into()),
            };
            match handshake.process_bytes(&buffer[..n]) {
                Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                    if let Err(e) = stream.write_all(&response_bytes).await {
                        return Ended::Failed(e.to_string());
                    }
                }
                Ok(HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                }) => {
                    if let Err(e) = stream.write_all(&response_bytes).await {
                        return Ended::Failed(e.to_string());
                    }
                    break remaining_bytes;
                }
                Err(e) => return Ended::Failed(format!("bad RTMP handshake: {e:?}")),
            }
        };
        let (mut session, initial) = match ServerSession::new(ServerSessionConfig::new()) {
            Ok(created) => created,
            Err(e) => return Ended::Failed(format!("{e:?}")),
        };
        let mut pending = initial;
        let mut input = remaining;
        loop {
            if !input.is_empty() {
                match session.handle_input(&input) {
                    Ok(results) => pending.extend(results),
                    Err(e) => return Ended::Failed(format!("bad RTMP data: {e:?}")),
                }
            }
            // Results can raise requests whose answers produce more results: drain them all,
            // writing every outbound packet in order.
            while !pending.is_empty() {
                let results = std::mem::take(&mut pending);
                for result in results {
                    match result {
                        ServerSessionResult::OutboundResponse(packet) => {
                            if let Err(e) = stream.write_all(&packet.bytes).await {
                                return Ended::Failed(e.to_string());
                            }
                        }
                        ServerSessionResult::RaisedEvent(event) => {
                            match self.handle_event(&mut session, event) {
                                Ok(more) => pending.extend(more),
                                Err(ended) => return ended,
                            }
                        }
                        ServerSessionResult::UnhandleableMessageReceived(_) => {}
                    }
                }
            }
            if let Some(reason) = self.closing {
                let _ = stream.flush().await;
                return Ended::Refused(reason);
            }
            if self.publishing.is_none() && opened.elapsed() > PUBLISH_DEADLINE {
                return Ended::Failed("did not start publishing within 10 s".into());
            }
            let n = match tokio::time::timeout(PUBLISH_DEADLINE, stream.read(&mut buffer)).await {
                Ok(Ok(0)) => return Ended::Closed,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Ended::Failed(e.to_string()),
                Err(_) => return Ended::Failed("no data for 10 s".into()),
            };
            input = buffer[..n].to_vec();
            if let Some(slot) = &self.publishing {
                if slot.removed.load(Ordering::Acquire) {
                    return Ended::Failed("its input was removed".into());
                }
                self.window_bytes += n as u64;
                let elapsed = self.window_start.elapsed();
                let mut stats = slot.input.stats.lock();
                stats.bytes_total += n as u64;
                if elapsed >= Duration::from_secs(1) {
                    stats.bitrate_bps = self.window_bytes as f64 * 8.0 / elapsed.as_secs_f64();
                    self.window_start = Instant::now();
                    self.window_bytes = 0;
                }
            }
        }
    }

    fn handle_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, Ended> {
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if app_name != APP {
                    warn!(peer = %self.peer, app = %app_name, "RTMP connection refused: the application must be \"{APP}\" (rtmp://HOST:1935/{APP})");
                    return Err(Ended::Refused("wrong application name"));
                }
                session
                    .accept_request(request_id)
                    .map_err(|e| Ended::Failed(format!("{e:?}")))
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                let Some(slot) = self.inputs.find(&stream_key) else {
                    warn!(peer = %self.peer, "rejected RTMP publisher: unknown stream key (check the key in the encoder)");
                    return self.refuse(
                        session,
                        request_id,
                        "NetStream.Publish.BadName",
                        "invalid stream key",
                        "unknown stream key",
                    );
                };
                if slot.live.swap(true, Ordering::AcqRel) {
                    warn!(peer = %self.peer, input = %slot.input.name, "rejected RTMP publisher: another publisher is live on this key");
                    slot.input.stats.lock().rejected_total.busy += 1;
                    return self.refuse(
                        session,
                        request_id,
                        "NetStream.Publish.BadName",
                        "stream key already in use",
                        "key busy",
                    );
                }
                let input = &slot.input;
                info!(input = %input.name, peer = %self.peer, "RTMP publisher connected");
                {
                    let mut stats = input.stats.lock();
                    stats.state = ConnectionState::Connected;
                    stats.peer = Some(self.peer);
                    stats.connections_total += 1;
                }
                let _ = input
                    .events
                    .try_send((input.index, InputEvent::Connected { peer: self.peer }));
                self.publishing = Some(slot);
                session
                    .accept_request(request_id)
                    .map_err(|e| Ended::Failed(format!("{e:?}")))
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.media(|demux, out| demux.handle_video(timestamp.value, &data, out));
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.media(|demux, out| demux.handle_audio(timestamp.value, &data, out));
                Ok(Vec::new())
            }
            ServerSessionEvent::PublishStreamFinished { .. } => Err(Ended::Closed),
            _ => Ok(Vec::new()),
        }
    }

    /// Answers the publish request with an error (ffmpeg and OBS then report "invalid stream
    /// key" at once) and closes the connection once that answer is written.
    fn refuse(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        code: &str,
        description: &str,
        reason: &'static str,
    ) -> Result<Vec<ServerSessionResult>, Ended> {
        self.closing = Some(reason);
        session
            .reject_request(request_id, code, description)
            .map_err(|e| Ended::Failed(format!("{e:?}")))
    }

    fn media(
        &mut self,
        handle: impl FnOnce(&mut FlvDemux, &mut Vec<FlvEvent>) -> Result<(), FlvError>,
    ) {
        let Some(slot) = &self.publishing else { return };
        let mut out = Vec::new();
        if let Err(e) = handle(&mut self.demux, &mut out) {
            if self.errors_logged < 5 {
                self.errors_logged += 1;
                warn!(input = %slot.input.name, peer = %self.peer, error = %e, "unusable RTMP media message");
            }
            return;
        }
        let input = &slot.input;
        let now = Instant::now();
        let (mut video, mut audio, mut dropped) = (0, 0, 0);
        for event in out {
            let event = match event {
                FlvEvent::Program(program) => InputEvent::Program(program),
                FlvEvent::Frame(frame) => {
                    if frame.codec.is_video() {
                        video += 1
                    } else {
                        audio += 1
                    }
                    InputEvent::Frame(frame)
                }
            };
            if input.events.try_send((input.index, event)).is_err() {
                dropped += 1;
            }
        }
        let mut stats = input.stats.lock();
        stats.last_packet_at = Some(now);
        stats.frames_total.video += video;
        stats.frames_total.audio += audio;
        stats.frames_dropped_total += dropped;
    }

    fn finish(&mut self, outcome: Ended) {
        match &outcome {
            Ended::Closed => debug!(peer = %self.peer, "RTMP connection closed"),
            Ended::Refused(reason) => debug!(peer = %self.peer, reason, "RTMP connection refused"),
            Ended::Failed(error) => {
                info!(peer = %self.peer, error = %error, "RTMP connection ended")
            }
        }
        if let Some(slot) = self.publishing.take() {
            info!(input = %slot.input.name, peer = %self.peer, "RTMP publisher disconnected");
            {
                let mut stats = slot.input.stats.lock();
                stats.state = ConnectionState::Waiting;
                stats.peer = None;
                stats.bitrate_bps = 0.0;
            }
            let _ = slot
                .input
                .events
                .try_send((slot.input.index, InputEvent::Disconnected));
            slot.live.store(false, Ordering::Release);
        }
    }
}
