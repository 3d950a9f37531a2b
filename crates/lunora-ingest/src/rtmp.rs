//! RTMP ingest server (rml_rtmp sessions over tokio TCP), shared by every channel.
//!
//! OBS publishes to `rtmp://HOST:1935/live/<stream_key>`; the stream key picks the input. A
//! wrong or unknown key is refused at publish time (the log never shows the key), and so is a
//! second publisher on a key that is already live. With a certificate configured, the same
//! server also takes RTMPS (RTMP inside TLS) on a second port.
//!
//! The input's video format (size, frame rate, scan) is read from the SPS of the decoder
//! configuration record, which the FLV demuxer puts in front of every keyframe.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lunora_flv::{FlvDemux, FlvError, FlvEvent};
use lunora_media::{LogThrottle, Secret, keyframe_video_format, printable};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::stats::{BitrateMeter, ConnectionState, StatsHandle, VideoInfo};
use crate::{InputEvent, InputSender};

/// The application name OBS users expect (`rtmp://HOST/live`).
const APP: &str = "live";
/// Connections still setting up (handshake, connect, publish) at once. When all are taken, a
/// new connection closes the oldest of them, so sockets that never publish cannot lock a real
/// encoder out: an encoder needs well under a second to publish, a squatter is evicted.
const MAX_PENDING: usize = 64;
/// Connections from one address at once (publishing or not): a few encoders behind one NAT fit,
/// one host cannot take every pending place.
const MAX_PER_ADDRESS: usize = 8;
/// The whole setup phase (TLS, handshake, connect, publish) must be done by then.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);
/// A publishing connection that sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes a connection may send before its stream key is accepted. A real encoder sends about
/// 5 KiB (handshake 3 KiB, then connect/createStream/publish); without a bound a peer could
/// announce 16 MiB messages and make us buffer them on every connection.
const MAX_BYTES_BEFORE_PUBLISH: usize = 64 * 1024;

/// One RTMP input: where its stream key's media goes.
#[derive(Debug, Clone)]
pub struct RtmpInput {
    /// `channel/input`, for log lines.
    pub name: String,
    pub stream_key: Secret,
    /// The input's index in its channel (the switcher's numbering).
    pub index: usize,
    pub events: InputSender,
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
        let admission = Arc::new(Mutex::new(Admission::default()));
        // Refusals are logged once per 10 s per address, with the count left out.
        let mut refusals = LogThrottle::new(Duration::from_secs(10));
        let epoch = Instant::now();
        let warnings = Warnings {
            throttle: Arc::new(Mutex::new(LogThrottle::new(Duration::from_secs(10)))),
            epoch,
        };
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
            let admitted = lock(&admission).admit(peer.ip());
            let (id, evicted) = match admitted {
                Admitted::Yes { id, evicted, evict } => {
                    if let Some(tx) = evict {
                        // The oldest setup gives way; it was the closest to its deadline.
                        let _ = tx.send(());
                    }
                    (id, evicted)
                }
                Admitted::TooManyFromAddress => {
                    if let Some(suppressed) = refusals.due(epoch.elapsed(), peer.ip()) {
                        warn!(%peer, suppressed, "RTMP connection refused: {MAX_PER_ADDRESS} connections from this address already open");
                    }
                    continue;
                }
            };
            let ticket = Ticket {
                admission: admission.clone(),
                ip: peer.ip(),
                id,
            };
            let (inputs, warnings) = (inputs.clone(), warnings.clone());
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + PUBLISH_DEADLINE;
                let mut connection = Connection {
                    peer,
                    inputs,
                    ticket,
                    warnings,
                    publishing: None,
                    demux: FlvDemux::new(),
                    errors_logged: 0,
                    closing: None,
                    bitrate: BitrateMeter::new(Instant::now()),
                };
                let _ = stream.set_nodelay(true);
                let serve = async {
                    match tls {
                        None => connection.serve(stream, deadline).await,
                        Some(acceptor) => {
                            match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => connection.serve(stream, deadline).await,
                                Ok(Err(e)) => Ended::Failed(format!("TLS handshake failed: {e}")),
                                Err(_) => Ended::Failed("TLS handshake timed out".into()),
                            }
                        }
                    }
                };
                // Only a deliberate eviction counts: the sender is simply dropped once the
                // connection publishes, which must not end it.
                let outcome = tokio::select! {
                    outcome = serve => outcome,
                    Ok(()) = evicted => Ended::Failed(format!(
                        "closed before publishing: {MAX_PENDING} connections were setting up and a new one came"
                    )),
                };
                connection.finish(outcome);
            });
        }
    }
}

fn lock(admission: &Mutex<Admission>) -> std::sync::MutexGuard<'_, Admission> {
    admission.lock().unwrap_or_else(|p| p.into_inner())
}

/// Who may connect: connections per address, and the connections still setting up (oldest
/// first) with the means to close them.
#[derive(Debug, Default)]
struct Admission {
    per_address: HashMap<IpAddr, usize>,
    pending: VecDeque<(u64, oneshot::Sender<()>)>,
    next_id: u64,
}

#[derive(Debug)]
enum Admitted {
    /// Taken as setup `id`; `evicted` fires if a later connection needs its place, and
    /// `evict` is the oldest setup this one displaces.
    Yes {
        id: u64,
        evicted: oneshot::Receiver<()>,
        evict: Option<oneshot::Sender<()>>,
    },
    TooManyFromAddress,
}

impl Admission {
    fn admit(&mut self, ip: IpAddr) -> Admitted {
        let count = self.per_address.entry(ip).or_insert(0);
        if *count >= MAX_PER_ADDRESS {
            return Admitted::TooManyFromAddress;
        }
        *count += 1;
        let evict = if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front().map(|(_, tx)| tx)
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        let (tx, evicted) = oneshot::channel();
        self.pending.push_back((id, tx));
        Admitted::Yes { id, evicted, evict }
    }

    /// The connection published: it no longer competes for a setup place.
    fn published(&mut self, id: u64) {
        self.pending.retain(|(pending, _)| *pending != id);
    }

    fn left(&mut self, ip: IpAddr, id: u64) {
        self.published(id);
        if let Some(count) = self.per_address.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_address.remove(&ip);
            }
        }
    }
}

/// A connection's place in the [`Admission`]; given back when dropped.
#[derive(Debug)]
struct Ticket {
    admission: Arc<Mutex<Admission>>,
    ip: IpAddr,
    id: u64,
}

impl Ticket {
    fn published(&self) {
        lock(&self.admission).published(self.id);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.admission).left(self.ip, self.id);
    }
}

/// Refusals of a peer's requests (wrong application, unknown key), shared by every connection
/// so an encoder retrying in a loop is logged once per 10 s per address.
#[derive(Debug, Clone)]
struct Warnings {
    throttle: Arc<Mutex<LogThrottle<IpAddr>>>,
    epoch: Instant,
}

struct Connection {
    peer: SocketAddr,
    inputs: RtmpInputs,
    ticket: Ticket,
    warnings: Warnings,
    /// The input this connection publishes to.
    publishing: Option<Arc<Slot>>,
    demux: FlvDemux,
    errors_logged: u32,
    /// Set when the publisher was refused: close once the refusal has been written.
    closing: Option<&'static str>,
    bitrate: BitrateMeter,
}

#[derive(Debug)]
enum Ended {
    Closed,
    Refused(&'static str),
    Failed(String),
}

impl Connection {
    /// Serves the connection; `deadline` bounds everything before publishing.
    async fn serve(
        &mut self,
        mut stream: impl AsyncRead + AsyncWrite + Unpin,
        deadline: tokio::time::Instant,
    ) -> Ended {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut read_before_publish = 0usize;
        // Handshake.
        let mut handshake = Handshake::new(PeerType::Server);
        let remaining = loop {
            let n = match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
                Ok(Ok(0)) => return Ended::Closed,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Ended::Failed(e.to_string()),
                Err(_) => return Ended::Failed("handshake not done within 10 s".into()),
            };
            read_before_publish += n;
            if read_before_publish > MAX_BYTES_BEFORE_PUBLISH {
                return Ended::Failed("sent over 64 KiB without publishing".into());
            }
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
            let publishing = self.publishing.is_some();
            let read_by = if publishing {
                tokio::time::Instant::now() + IDLE_TIMEOUT
            } else {
                deadline
            };
            let n = match tokio::time::timeout_at(read_by, stream.read(&mut buffer)).await {
                Ok(Ok(0)) => return Ended::Closed,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Ended::Failed(e.to_string()),
                Err(_) if publishing => return Ended::Failed("no data for 10 s".into()),
                Err(_) => return Ended::Failed("did not start publishing within 10 s".into()),
            };
            if !publishing {
                read_before_publish += n;
                if read_before_publish > MAX_BYTES_BEFORE_PUBLISH {
                    return Ended::Failed("sent over 64 KiB without publishing".into());
                }
            }
            input = buffer[..n].to_vec();
            if let Some(slot) = &self.publishing {
                if slot.removed.load(Ordering::Acquire) {
                    return Ended::Failed("its input was removed".into());
                }
                let bytes = u64::try_from(n).unwrap_or(u64::MAX);
                self.bitrate.count(bytes);
                let now = Instant::now();
                let mut stats = slot.input.stats.lock();
                stats.bytes_total += bytes;
                self.bitrate.update(now, Some(now), &mut stats.bitrate_bps);
            }
        }
    }

    /// `Some(lines left out)` when a refusal of this peer should be logged now.
    fn warning_due(&self) -> Option<u64> {
        let Warnings { throttle, epoch } = &self.warnings;
        throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .due(epoch.elapsed(), self.peer.ip())
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
                    if let Some(suppressed) = self.warning_due() {
                        warn!(peer = %self.peer, app = %printable(&app_name), suppressed, "RTMP connection refused: the application must be \"{APP}\" (rtmp://HOST:1935/{APP})");
                    }
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
                    if let Some(suppressed) = self.warning_due() {
                        warn!(peer = %self.peer, suppressed, "rejected RTMP publisher: unknown stream key (check the key in the encoder)");
                    }
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
                    stats.peer = Some(self.peer.to_string());
                    stats.connections_total += 1;
                }
                let _ = input.events.send(
                    input.index,
                    InputEvent::Connected {
                        peer: self.peer.to_string(),
                    },
                );
                self.publishing = Some(slot);
                self.ticket.published();
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
        let mut format = None;
        for event in out {
            let event = match event {
                FlvEvent::Program(program) => InputEvent::Program(program),
                FlvEvent::Frame(frame) => {
                    if frame.codec.is_video() {
                        video += 1;
                        // Keyframes carry the decoder configuration record's parameter sets.
                        if frame.keyframe {
                            format = keyframe_video_format(frame.codec, &frame.data)
                                .map(|f| VideoInfo::new(frame.codec.name(), f))
                                .or(format);
                        }
                    } else {
                        audio += 1
                    }
                    InputEvent::Frame(frame)
                }
            };
            if input.events.send(input.index, event) == Err(crate::SendError::Full) {
                dropped += 1;
            }
        }
        let mut stats = input.stats.lock();
        stats.last_packet_at = Some(now);
        stats.frames_total.video += video;
        stats.frames_total.audio += audio;
        stats.frames_dropped_total += dropped;
        if format.is_some() {
            stats.video = format;
        }
    }

    fn finish(&mut self, outcome: Ended) {
        match &outcome {
            Ended::Closed => debug!(peer = %self.peer, "RTMP connection closed"),
            Ended::Refused(reason) => debug!(peer = %self.peer, reason, "RTMP connection refused"),
            Ended::Failed(error) => {
                info!(peer = %self.peer, error = %printable(error), "RTMP connection ended")
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
                .send(slot.input.index, InputEvent::Disconnected);
            slot.live.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_address_gets_at_most_its_share() {
        let mut admission = Admission::default();
        for _ in 0..MAX_PER_ADDRESS {
            assert!(matches!(admission.admit(ip(2)), Admitted::Yes { .. }));
        }
        assert!(matches!(
            admission.admit(ip(2)),
            Admitted::TooManyFromAddress
        ));
        assert!(matches!(admission.admit(ip(3)), Admitted::Yes { .. }));
    }

    #[test]
    fn a_full_setup_pool_evicts_its_oldest_never_a_publisher() {
        let mut admission = Admission::default();
        let mut first = None;
        // One publisher plus a full pool of setups.
        for n in 0..=MAX_PENDING {
            let Admitted::Yes { id, evicted, evict } = admission.admit(ip(10 + (n / 8) as u8))
            else {
                panic!("admitted");
            };
            assert!(evict.is_none());
            if n == 0 {
                // This one publishes: it must never be evicted.
                admission.published(id);
                drop(evicted);
            } else if n == 1 {
                first = Some(evicted);
            }
        }
        let Admitted::Yes { evict, .. } = admission.admit(ip(1)) else {
            panic!("a new address always gets in");
        };
        let mut evicted = first.expect("second connection");
        evict.expect("the oldest setup gives way").send(()).unwrap();
        assert_eq!(evicted.try_recv(), Ok(()));
    }

    #[test]
    fn leaving_gives_the_address_its_place_back() {
        let mut admission = Admission::default();
        let ids: Vec<u64> = (0..MAX_PER_ADDRESS)
            .map(|_| match admission.admit(ip(2)) {
                Admitted::Yes { id, .. } => id,
                Admitted::TooManyFromAddress => panic!("under the cap"),
            })
            .collect();
        admission.left(ip(2), ids[0]);
        assert!(matches!(admission.admit(ip(2)), Admitted::Yes { .. }));
        assert_eq!(admission.pending.len(), MAX_PER_ADDRESS);
    }
}
