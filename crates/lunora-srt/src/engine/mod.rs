//! Our own SRT I/O shell, for listening ports and for our calls to remote listeners: one
//! tokio task per UDP port drives the sans-IO [`PortCore`], so no datagram anyone sends can
//! take a connection on that port down.
//!
//! Per wake-up the task drains every datagram the kernel has queued (up to [`RECV_BATCH`],
//! several per system call), hands each to the core, runs the connections' timers once, sends
//! what the core produced (runs of equal-sized datagrams to one peer as one UDP GSO send) and
//! delivers released payloads as one batch per connection. There is no task per connection
//! and no channel per packet.
//!
//! The owner sends to an accepted connection through a [`ConnectionSender`]: a bounded queue
//! the task drains into srt-protocol's sender as its buffer frees up, so a slow peer makes
//! the owner wait (and skip ahead) instead of growing memory.

mod core;

pub use self::core::{AccessDecision, CALL_TIMEOUT, CallerRequest, EngineEvent, PortCore};

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use srt_protocol::options::{ByteCount, SocketOptions};
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, warn};

use crate::udp::bind_udp;
use crate::wire::DropCounts;

/// Datagrams taken from the socket per wake-up before the timers and sends run.
pub(crate) const RECV_BATCH: usize = 64;
/// Batches of payloads (and statistics) waiting for the owner; beyond this they are dropped
/// and counted rather than stalling the socket task.
const DELIVERY_QUEUE: usize = 256;
/// Payloads one connection's [`ConnectionSender`] may have waiting; beyond this `send` waits.
/// 128 TS datagrams are about 170 KB: 27 ms at 50 Mbit/s.
pub const SEND_QUEUE: usize = 128;
/// How long `close` waits for the task.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one warning of each kind per listener per interval.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of one listening port.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Names the input or output in every log line.
    pub label: String,
    pub address: SocketAddr,
    pub latency: Duration,
    /// Kernel UDP buffers and the SRT send buffer.
    pub buffer_bytes: usize,
}

impl EngineSettings {
    fn conn_init(&self) -> ConnInitSettings {
        let mut options = SocketOptions::default();
        options.receiver.latency = self.latency;
        options.sender.peer_latency = self.latency;
        // The 46 KB default stalls a sender above about 12 Mbit/s.
        options.sender.buffer_size =
            ByteCount(u64::try_from(self.buffer_bytes).unwrap_or(u64::MAX));
        options.session.statistics_interval = Duration::from_secs(1);
        ConnInitSettings::from(options)
    }
}

/// Our call to a remote SRT listener.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// Latency, buffers and the label; `address` is the listener to call (we send from an
    /// ephemeral port of the same address family).
    pub port: EngineSettings,
    pub stream_id: Option<String>,
    /// Passphrase and key length, when the listener expects encryption.
    pub key: Option<KeySettings>,
}

enum Command {
    Decide(SocketAddr, AccessDecision),
    Close(SocketAddr),
    /// The owner will send to this connection through the queue.
    Attach(SocketAddr, Arc<SendQueue>),
}

/// One connection's outgoing payloads, shared by its [`ConnectionSender`] and the port task.
#[derive(Debug, Default)]
struct SendQueue {
    state: Mutex<QueueState>,
    /// Signalled by the task when it took payloads or the connection ended.
    space: Notify,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<(Instant, Bytes)>,
    closed: bool,
}

impl SendQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.space.notify_one();
    }
}

/// The connection behind a [`ConnectionSender`] has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionClosed;

/// Sends payloads to one accepted connection of an [`SrtEngine`].
#[derive(Debug)]
pub struct ConnectionSender {
    queue: Arc<SendQueue>,
    /// Wakes the port task.
    wake: Arc<Notify>,
}

impl ConnectionSender {
    /// Queues one payload (one SRT message), waiting while [`SEND_QUEUE`] payloads are
    /// already waiting. Cancel-safe: a cancelled call queued nothing.
    pub async fn send(&self, payload: Bytes) -> Result<(), ConnectionClosed> {
        loop {
            let space = self.queue.space.notified();
            tokio::pin!(space);
            // Registered before the check, so a notification between the check and the
            // await is not lost.
            space.as_mut().enable();
            {
                let mut state = self.queue.lock();
                if state.closed {
                    return Err(ConnectionClosed);
                }
                if state.items.len() < SEND_QUEUE {
                    state.items.push_back((Instant::now(), payload));
                    drop(state);
                    self.wake.notify_one();
                    return Ok(());
                }
            }
            space.await;
        }
    }
}

/// Counters shared with the owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    pub datagrams_rejected: DropCounts,
    /// Payload batches the owner was too slow to take.
    pub deliveries_dropped: u64,
}

/// A listening SRT port. Dropping it stops the task too (without waiting).
#[derive(Debug)]
pub struct SrtEngine {
    label: String,
    local: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    control: mpsc::UnboundedReceiver<EngineEvent>,
    media: mpsc::Receiver<EngineEvent>,
    counters: Arc<Mutex<EngineCounters>>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Decide(peer, _) => write!(f, "Decide({peer})"),
            Command::Close(peer) => write!(f, "Close({peer})"),
            Command::Attach(peer, _) => write!(f, "Attach({peer})"),
        }
    }
}

impl SrtEngine {
    /// Binds now (so a port conflict is reported at start-up) and starts the port's task.
    pub fn bind(settings: EngineSettings) -> io::Result<Self> {
        let core = PortCore::listener(Instant::now(), settings.conn_init());
        Self::start(&settings, settings.address, core)
    }

    /// Calls a remote listener from a new ephemeral port. [`EngineEvent::Connected`] or
    /// [`EngineEvent::CallFailed`] (within [`CALL_TIMEOUT`]) follows; the port serves only
    /// that listener.
    pub fn call(settings: CallSettings) -> io::Result<Self> {
        let remote = settings.port.address;
        let mut conn_init = settings.port.conn_init();
        conn_init.key_settings = settings.key;
        let core = PortCore::caller(Instant::now(), conn_init, remote, settings.stream_id);
        let local = SocketAddr::new(self::core::any_address_for(remote), 0);
        Self::start(&settings.port, local, core)
    }

    fn start(settings: &EngineSettings, address: SocketAddr, core: PortCore) -> io::Result<Self> {
        let socket = bind_udp(address, settings.buffer_bytes)?;
        let local = socket.local_addr()?;
        crate::udp::warn_if_buffer_capped(&settings.label, &socket, settings.buffer_bytes);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (control_tx, control) = mpsc::unbounded_channel();
        let (media_tx, media) = mpsc::channel(DELIVERY_QUEUE);
        let counters = Arc::new(Mutex::new(EngineCounters::default()));
        let wake = Arc::new(Notify::new());
        let task = PortTask {
            label: settings.label.clone(),
            core,
            socket,
            commands: command_rx,
            control: control_tx,
            media: media_tx,
            counters: counters.clone(),
            wake: wake.clone(),
            outgoing: HashMap::new(),
            deliveries_dropped: 0,
            drop_log: RateLimit::default(),
            io_log: RateLimit::default(),
            delivery_log: RateLimit::default(),
        };
        // The owner's span (channel, input or output) names every line the task logs.
        let task = tokio::spawn(task.run().in_current_span());
        Ok(SrtEngine {
            label: settings.label.clone(),
            local,
            commands,
            control,
            media,
            counters,
            wake,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next event; `None` once the port's task has ended. Handshake and connection news
    /// comes before queued payloads. Cancel-safe.
    pub async fn next(&mut self) -> Option<EngineEvent> {
        tokio::select! {
            biased;
            Some(event) = self.control.recv() => Some(event),
            Some(event) = self.media.recv() => Some(event),
            else => None,
        }
    }

    /// Answers a [`EngineEvent::Request`].
    pub fn decide(&self, peer: SocketAddr, decision: AccessDecision) {
        let _ = self.commands.send(Command::Decide(peer, decision));
    }

    /// Ends one connection (a shutdown packet is sent to the peer).
    pub fn close_connection(&self, peer: SocketAddr) {
        let _ = self.commands.send(Command::Close(peer));
    }

    /// A sender for a connection announced by [`EngineEvent::Connected`]. Its `send` fails
    /// once that connection has ended (or had already ended).
    pub fn sender(&self, peer: SocketAddr) -> ConnectionSender {
        let queue = Arc::new(SendQueue::default());
        if self
            .commands
            .send(Command::Attach(peer, queue.clone()))
            .is_err()
        {
            queue.close();
        }
        ConnectionSender {
            queue,
            wake: self.wake.clone(),
        }
    }

    pub fn counters(&self) -> EngineCounters {
        *self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends shutdown to every connection and waits (at most 2 s) for the task to end.
    pub async fn close(self) {
        let SrtEngine {
            label,
            commands,
            mut task,
            ..
        } = self;
        // The task treats the end of the command channel as the order to shut down.
        drop(commands);
        if tokio::time::timeout(CLOSE_TIMEOUT, &mut task)
            .await
            .is_err()
        {
            warn!(target: "lunora::srt", listener = %label, "SRT port task did not stop within 2 s; aborting it");
            task.abort();
        }
    }
}

/// At most one message per [`LOG_INTERVAL`]; counts what it held back.
#[derive(Debug, Default)]
struct RateLimit {
    last: Option<Instant>,
    held: u64,
}

impl RateLimit {
    /// `Some(held back since the last one)` when a message may be logged now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < LOG_INTERVAL => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

/// Receive slots per `recvmmsg` call.
const SLOTS: usize = 8;
/// Room for one datagram: SRT's largest (1500-byte MTU) with a margin; longer ones arrive
/// truncated, which `wire` then rejects.
const SLOT_DATAGRAM: usize = 1_536;

/// Largest UDP GSO send: the kernel's limit is 64 KiB of payload.
const GSO_BYTES: usize = 60_000;

/// Batched UDP. Receive: one `recvmmsg` fills up to [`SLOTS`] buffers, and with UDP GRO each
/// buffer can hold several same-sized datagrams from one peer (`stride` apart). Send: a run of
/// equal-sized datagrams to one peer (an SRT sender's data packets) leaves in one system call
/// with UDP GSO, the kernel cutting it into datagrams.
struct BatchIo {
    state: Option<quinn_udp::UdpSocketState>,
    buffer: Vec<u8>,
    slot_len: usize,
    meta: [quinn_udp::RecvMeta; SLOTS],
    /// A GSO run being assembled.
    outgoing: Vec<u8>,
}

impl BatchIo {
    fn new(socket: &UdpSocket, label: &str) -> Self {
        // quinn-udp configures the socket (GRO, packet info) once; without it we fall back
        // to one datagram per system call.
        let state = match quinn_udp::UdpSocketState::new(socket.into()) {
            Ok(state) => Some(state),
            Err(e) => {
                warn!(target: "lunora::srt", listener = %label, error = %e, "batched UDP receive unavailable; receiving one datagram per call");
                None
            }
        };
        let segments = state
            .as_ref()
            .map_or(1, quinn_udp::UdpSocketState::gro_segments)
            .max(1);
        let slot_len = SLOT_DATAGRAM * segments;
        BatchIo {
            state,
            buffer: vec![0; slot_len * SLOTS],
            slot_len,
            meta: [quinn_udp::RecvMeta::default(); SLOTS],
            outgoing: Vec::with_capacity(GSO_BYTES),
        }
    }

    /// Sends everything the core has queued, in GSO runs where the kernel offers it. A
    /// failed send (an ICMP error from a peer that left) costs that run only; the first such
    /// error is returned once everything else went out.
    async fn send_all(&mut self, socket: &UdpSocket, core: &mut PortCore) -> io::Result<()> {
        let mut failed = None;
        let segments_max = self
            .state
            .as_ref()
            .map_or(1, quinn_udp::UdpSocketState::max_gso_segments)
            .max(1);
        while let Some((first, to)) = core.poll_transmit() {
            let segment = first.len();
            self.outgoing.clear();
            self.outgoing.extend_from_slice(&first);
            let mut segments = 1;
            // Every segment but the last must be exactly `segment` long.
            while segments < segments_max && self.outgoing.len() + segment <= GSO_BYTES {
                match core.peek_transmit() {
                    Some((next, next_to)) if next_to == to && next.len() <= segment => {
                        let last = next.len() < segment;
                        if let Some((next, _)) = core.poll_transmit() {
                            self.outgoing.extend_from_slice(&next);
                        }
                        segments += 1;
                        if last {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            let transmit = quinn_udp::Transmit {
                destination: to,
                ecn: None,
                contents: &self.outgoing,
                segment_size: (segments > 1).then_some(segment),
                src_ip: None,
            };
            let sent = match &self.state {
                Some(state) => loop {
                    match socket.try_io(tokio::io::Interest::WRITABLE, || {
                        state.try_send(socket.into(), &transmit)
                    }) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if let Err(e) = socket.writable().await {
                                break Err(e);
                            }
                        }
                        result => break result,
                    }
                },
                None => socket.send_to(&self.outgoing, to).await.map(drop),
            };
            if let Err(e) = sent {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Takes what one system call returns and hands each datagram to `handle`. Returns how
    /// many datagrams there were; `WouldBlock` when none were waiting.
    fn receive(
        &mut self,
        socket: &UdpSocket,
        mut handle: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let Some(state) = &self.state else {
            let buffer = self.buffer.get_mut(..SLOT_DATAGRAM).unwrap_or_default();
            let (len, from) = socket.try_recv_from(buffer)?;
            handle(from, buffer.get(..len).unwrap_or_default());
            return Ok(1);
        };
        let mut chunks = self.buffer.chunks_mut(self.slot_len);
        let mut slices: [std::io::IoSliceMut<'_>; SLOTS] =
            std::array::from_fn(|_| std::io::IoSliceMut::new(chunks.next().unwrap_or_default()));
        let meta = &mut self.meta;
        let filled = socket.try_io(tokio::io::Interest::READABLE, || {
            state.recv(socket.into(), &mut slices, meta)
        })?;
        let mut datagrams = 0;
        for (slice, meta) in slices.iter().zip(meta.iter()).take(filled) {
            let received = slice.get(..meta.len).unwrap_or_default();
            for datagram in received.chunks(meta.stride.max(1)) {
                handle(meta.addr, datagram);
                datagrams += 1;
            }
        }
        Ok(datagrams)
    }
}

struct PortTask {
    label: String,
    core: PortCore,
    socket: UdpSocket,
    commands: mpsc::UnboundedReceiver<Command>,
    control: mpsc::UnboundedSender<EngineEvent>,
    media: mpsc::Sender<EngineEvent>,
    counters: Arc<Mutex<EngineCounters>>,
    wake: Arc<Notify>,
    /// Queues of connections the owner sends to.
    outgoing: HashMap<SocketAddr, Arc<SendQueue>>,
    deliveries_dropped: u64,
    drop_log: RateLimit,
    io_log: RateLimit,
    delivery_log: RateLimit,
}

impl PortTask {
    async fn run(mut self) {
        let mut io = BatchIo::new(&self.socket, &self.label);
        let mut reported_drops = 0;
        loop {
            let deadline = self.core.next_deadline(Instant::now());
            tokio::select! {
                readable = self.socket.readable() => {
                    if let Err(e) = readable {
                        self.io_warning(&e, "waiting for datagrams");
                    }
                    let now = Instant::now();
                    let mut taken = 0;
                    while taken < RECV_BATCH {
                        let core = &mut self.core;
                        match io.receive(&self.socket, |from, datagram| core.handle_datagram(now, from, datagram)) {
                            Ok(n) => taken += n.max(1),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            // An ICMP error from an earlier send surfaces here; the next
                            // datagram is unaffected.
                            Err(e) => {
                                self.io_warning(&e, "receiving");
                                taken += 1;
                            }
                        }
                    }
                }
                command = self.commands.recv() => match command {
                    Some(Command::Decide(peer, decision)) => self.core.handle_decision(Instant::now(), peer, decision),
                    Some(Command::Close(peer)) => {
                        self.core.close_connection(Instant::now(), peer);
                        if let Some(queue) = self.outgoing.remove(&peer) {
                            queue.close();
                        }
                    }
                    Some(Command::Attach(peer, queue)) => {
                        // A caller that reconnected from the same address replaces its
                        // predecessor, whose sender is told.
                        if let Some(old) = self.outgoing.insert(peer, queue) {
                            old.close();
                        }
                    }
                    None => break,
                },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            self.take_outgoing(Instant::now());
            self.core.handle_timeout(Instant::now());
            self.flush(&mut io).await;
            self.dispatch();
            let total = self.core.drops().total();
            if total != reported_drops {
                reported_drops = total;
                self.log_drop();
                self.publish();
            }
        }
        let now = Instant::now();
        self.core.shutdown(now);
        self.flush(&mut io).await;
        self.publish();
        debug!(target: "lunora::srt", listener = %self.label, "SRT port task stopped");
    }

    fn publish(&self) {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        counters.datagrams_rejected = *self.core.drops();
        counters.deliveries_dropped = self.deliveries_dropped;
    }
}

/// However the task ends (shut down, or aborted by `close` after 2 s), every sender learns
/// its connection is gone rather than waiting for room forever.
impl Drop for PortTask {
    fn drop(&mut self) {
        for queue in self.outgoing.values() {
            queue.close();
        }
    }
}

impl PortTask {
    /// Moves what owners queued into their connections, as far as each one's send buffer
    /// allows; the rest stays queued for the next turn (an ACK or a timer).
    fn take_outgoing(&mut self, now: Instant) {
        let core = &mut self.core;
        self.outgoing.retain(|peer, queue| {
            let mut state = queue.lock();
            if state.items.is_empty() {
                return true;
            }
            match core.send_data(now, *peer, &mut state.items) {
                Some(0) => true,
                Some(_) => {
                    drop(state);
                    queue.space.notify_one();
                    true
                }
                None => {
                    state.closed = true;
                    drop(state);
                    queue.space.notify_one();
                    false
                }
            }
        });
    }

    async fn flush(&mut self, io: &mut BatchIo) {
        if let Err(e) = io.send_all(&self.socket, &mut self.core).await {
            self.io_warning(&e, "sending");
        }
    }

    fn dispatch(&mut self) {
        while let Some(event) = self.core.poll_event() {
            match event {
                EngineEvent::Received { .. } | EngineEvent::Statistics { .. } => {
                    if self.media.try_send(event).is_err() {
                        self.deliveries_dropped += 1;
                        if let Some(held) = self.delivery_log.allow(Instant::now()) {
                            warn!(target: "lunora::srt", listener = %self.label, dropped = self.deliveries_dropped, held,
                                "SRT receiver is behind; dropped a batch of payloads");
                        }
                        self.publish();
                    }
                }
                event => {
                    if let EngineEvent::Closed { peer } = &event
                        && let Some(queue) = self.outgoing.remove(peer)
                    {
                        queue.close();
                    }
                    let _ = self.control.send(event);
                }
            }
        }
    }

    fn log_drop(&mut self) {
        let Some((reason, peer)) = self.core.last_drop() else {
            return;
        };
        if self.drop_log.allow(Instant::now()).is_some() {
            warn!(target: "lunora::srt", listener = %self.label, %peer, reason = reason.name(),
                dropped_total = self.core.drops().total(), "dropped an SRT datagram (logged at most once a second)");
        }
    }

    fn io_warning(&mut self, error: &io::Error, doing: &str) {
        if let Some(held) = self.io_log.allow(Instant::now()) {
            warn!(target: "lunora::srt", listener = %self.label, error = %error, held, "UDP error while {doing}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccessPolicy;
    use bytes::Bytes;
    use futures::SinkExt;
    use lunora_media::Secret;
    use srt_tokio::SrtSocket;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn encrypted_caller_survives_hostile_datagrams_and_close_sends_shutdown() {
        let mut engine = SrtEngine::bind(EngineSettings {
            label: "test".into(),
            address: "127.0.0.1:0".parse().unwrap(),
            latency: Duration::from_millis(80),
            buffer_bytes: 1 << 20,
        })
        .unwrap();
        let port = engine.local_addr().port();
        let policy = AccessPolicy {
            passphrase: Some(Secret::new("engine-passphrase")),
            stream_id: Some("cam-1".into()),
        };
        let caller = tokio::spawn(async move {
            let mut socket = SrtSocket::builder()
                .latency(Duration::from_millis(80))
                .encryption(32, "engine-passphrase")
                .call(
                    format!("127.0.0.1:{port}").as_str(),
                    Some("#!::r=cam-1,m=publish"),
                )
                .await
                .unwrap();
            for i in 0..200u32 {
                socket
                    .send((Instant::now(), Bytes::from(i.to_be_bytes().to_vec())))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            socket
        });
        let hostile = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut received = Vec::new();
        let mut connected = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.len() < 200 && Instant::now() < deadline {
            let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(2), engine.next()).await
            else {
                break;
            };
            match event {
                EngineEvent::Request(request) => {
                    let decision =
                        match policy.judge(request.stream_id.as_deref(), request.key_size) {
                            Ok(key) => AccessDecision::Accept(key),
                            Err(refusal) => AccessDecision::Reject(refusal.reject_reason()),
                        };
                    engine.decide(request.peer, decision);
                }
                EngineEvent::Connected { peer, stream_id } => {
                    assert_eq!(stream_id.as_deref(), Some("#!::r=cam-1,m=publish"));
                    connected = Some(peer);
                    // Mid-stream: the datagram that used to kill the listener, and garbage.
                    hostile
                        .send_to(
                            &crate::wire::tests::issue_10_datagram(),
                            ("127.0.0.1", port),
                        )
                        .unwrap();
                    hostile.send_to(&[0xFF; 100], ("127.0.0.1", port)).unwrap();
                }
                EngineEvent::Received { items, .. } => {
                    received.extend(items.into_iter().map(|(_, b)| b));
                }
                EngineEvent::Closed { peer } => panic!("{peer} closed"),
                _ => {}
            }
        }
        assert_eq!(received.len(), 200);
        for (i, item) in received.iter().enumerate() {
            assert_eq!(&item[..], &u32::try_from(i).unwrap().to_be_bytes());
        }
        let counters = engine.counters();
        assert_eq!(
            counters
                .datagrams_rejected
                .get(crate::wire::DropReason::ExtensionLength),
            1
        );
        assert!(connected.is_some());
        let mut socket = caller.await.unwrap();
        let started = Instant::now();
        engine.close().await;
        assert!(started.elapsed() < Duration::from_secs(2));
        // The caller hears the shutdown: its stream ends.
        use futures::StreamExt;
        let end = tokio::time::timeout(Duration::from_secs(3), async {
            while let Some(Ok(_)) = socket.next().await {}
        })
        .await;
        assert!(end.is_ok(), "caller did not see the shutdown");
    }
}
