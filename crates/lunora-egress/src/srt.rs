//! SRT output: caller mode (into a MediaLive SRT listener input, reconnecting with backoff)
//! and listener mode (anyone allowed by the access policy may pull the clean feed).
//!
//! Each connection muxes the bus into its own transport stream, so every receiver gets
//! continuity counters and PSI that are correct from its first packet.
//!
//! Both run on our own SRT engine (`lunora_srt::SrtEngine`): every datagram is checked before
//! srt-protocol parses it, so nothing sent to the port can drop the pullers or the call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use lunora_media::{LogThrottle, Secret, printable};
use lunora_srt::wire::DropCounts;
use lunora_srt::{
    AccessDecision, AccessPolicy, CALL_TIMEOUT, CallSettings, ConnectionSender, EngineEvent,
    EngineSettings, SrtEngine,
};
use lunora_ts::{DATAGRAM_SIZE, MuxSettings, Muxer, PACKET_SIZE};
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{CoreRejectReason, RejectReason};
use srt_protocol::settings::KeySettings;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::{info, warn};

use crate::bus::{Bus, BusItem};
use crate::stats::{DropReport, OutputState, OutputStatsHandle, with_jitter};

#[derive(Debug, Clone)]
pub enum SrtOutputMode {
    Caller {
        address: SocketAddr,
        stream_id: Option<String>,
        passphrase: Option<Secret>,
        /// AES key length in bytes: 16, 24 or 32.
        key_length: u8,
    },
    Listener {
        listen: SocketAddr,
        access: AccessPolicy,
        /// Receivers served at once; more are refused (SRT's "backlog" rejection).
        max_pullers: usize,
    },
}

#[derive(Debug, Clone)]
pub struct SrtOutputSettings {
    pub id: String,
    pub mode: SrtOutputMode,
    pub latency: Duration,
    pub udp_buffer_bytes: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

/// A running SRT output.
#[derive(Debug)]
pub struct SrtOutput {
    local_addr: Option<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

/// A partial datagram waits this long for more packets before it is sent as it is.
const FLUSH_AFTER: Duration = Duration::from_millis(50);

impl SrtOutput {
    /// Starts the output. A listener binds before this returns, so a port conflict is an
    /// error here rather than a log line later.
    pub async fn start(
        settings: SrtOutputSettings,
        bus: Arc<Bus>,
        stats: OutputStatsHandle,
        cancel: CancellationToken,
    ) -> std::io::Result<SrtOutput> {
        match settings.mode.clone() {
            SrtOutputMode::Caller {
                address,
                stream_id,
                passphrase,
                key_length,
            } => {
                let caller = Caller {
                    address,
                    stream_id,
                    passphrase,
                    key_length,
                };
                let task = tokio::spawn(
                    run_caller(settings, caller, bus, stats, cancel).in_current_span(),
                );
                Ok(SrtOutput {
                    local_addr: None,
                    task,
                })
            }
            SrtOutputMode::Listener {
                listen,
                access,
                max_pullers,
            } => {
                let engine = SrtEngine::bind(EngineSettings {
                    label: settings.id.clone(),
                    address: listen,
                    latency: settings.latency,
                    buffer_bytes: settings.udp_buffer_bytes,
                })?;
                let local_addr = engine.local_addr();
                info!(output = %settings.id, listen = %local_addr, "SRT output listening");
                let task = tokio::spawn(
                    run_listener(settings, engine, access, max_pullers, bus, stats, cancel)
                        .in_current_span(),
                );
                Ok(SrtOutput {
                    local_addr: Some(local_addr),
                    task,
                })
            }
        }
    }

    /// The bound address in listener mode.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Resolves once the output has ended (after its cancel token fired) and its port is free.
    pub async fn finished(self) {
        let _ = self.task.await;
    }
}

struct Caller {
    address: SocketAddr,
    stream_id: Option<String>,
    passphrase: Option<Secret>,
    key_length: u8,
}

fn key_size(bytes: u8) -> KeySize {
    match bytes {
        24 => KeySize::AES192,
        32 => KeySize::AES256,
        _ => KeySize::AES128,
    }
}

/// Calls the listener; `Ok` once connected, with the engine and the listener's address.
async fn connect(
    settings: &SrtOutputSettings,
    caller: &Caller,
) -> Result<(SrtEngine, SocketAddr), String> {
    let key = match &caller.passphrase {
        Some(p) => Some(KeySettings {
            key_size: key_size(caller.key_length),
            passphrase: Passphrase::try_from(p.expose().to_string())
                .map_err(|_| "passphrase must be 10–79 characters".to_string())?,
        }),
        None => None,
    };
    let mut engine = SrtEngine::call(CallSettings {
        port: EngineSettings {
            label: settings.id.clone(),
            address: caller.address,
            latency: settings.latency,
            buffer_bytes: settings.udp_buffer_bytes,
        },
        stream_id: caller.stream_id.clone(),
        key,
    })
    .map_err(|e| format!("opening a UDP port to call {}: {e}", caller.address))?;
    // The engine gives up by itself after CALL_TIMEOUT; this bound only guards against a
    // port task that stopped answering.
    let outcome = tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(1), async {
        loop {
            match engine.next().await {
                Some(EngineEvent::Connected { peer, .. }) => return Ok(peer),
                Some(EngineEvent::CallFailed { reason, .. }) => return Err(reason),
                Some(_) => {}
                None => return Err("the SRT port task stopped".to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no answer".to_string()));
    match outcome {
        Ok(peer) => Ok((engine, peer)),
        Err(reason) => {
            engine.close().await;
            Err(format!("connecting to {}: {reason}", caller.address))
        }
    }
}

/// Resolves with the reason once the call's connection has ended; until then keeps the
/// output's count of rejected datagrams current (the engine reports about once a second).
async fn call_ended(
    engine: &mut SrtEngine,
    stats: &OutputStatsHandle,
    rejected_before: &DropCounts,
) -> String {
    loop {
        match engine.next().await {
            Some(EngineEvent::Closed { .. }) => return "the listener closed the connection".into(),
            None => return "the SRT port task stopped".into(),
            Some(EngineEvent::Statistics { .. }) => {
                let rejected = rejected_before.plus(&engine.counters().datagrams_rejected);
                stats.lock().set_datagrams_rejected(&rejected);
            }
            // The listener has nothing else to say to a sender.
            Some(_) => {}
        }
    }
}

async fn run_caller(
    settings: SrtOutputSettings,
    caller: Caller,
    bus: Arc<Bus>,
    stats: OutputStatsHandle,
    cancel: CancellationToken,
) {
    let mut backoff = settings.retry_min;
    let mut attempts = 0u64;
    // Datagrams rejected on the ports of finished calls (each attempt has its own port).
    let mut rejected_before = DropCounts::default();
    stats.lock().set_datagrams_rejected(&rejected_before);
    while !cancel.is_cancelled() {
        stats.lock().state = OutputState::Connecting;
        attempts += 1;
        let result = tokio::select! {
            _ = cancel.cancelled() => break,
            result = connect(&settings, &caller) => result,
        };
        let error = match result {
            Ok((mut engine, peer)) => {
                info!(output = %settings.id, %peer, "SRT output connected");
                {
                    let mut s = stats.lock();
                    s.state = OutputState::Live;
                    s.peers = vec![peer];
                    s.next_retry_seconds = None;
                    if attempts > 1 {
                        s.reconnects_total += 1;
                    }
                }
                backoff = settings.retry_min;
                let sender = engine.sender(peer);
                let outcome = tokio::select! {
                    outcome = pump(&settings.id, &sender, &bus, &stats, &cancel) => outcome,
                    reason = call_ended(&mut engine, &stats, &rejected_before) => Err(reason),
                };
                rejected_before = rejected_before.plus(&engine.counters().datagrams_rejected);
                {
                    let mut s = stats.lock();
                    s.peers.clear();
                    s.set_datagrams_rejected(&rejected_before);
                }
                // A shutdown packet tells the listener at once rather than by its idle timeout.
                engine.close().await;
                match outcome {
                    Ok(()) => break,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let delay = with_jitter(backoff);
        warn!(output = %settings.id, error = %error, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "SRT output not connected");
        {
            let mut s = stats.lock();
            s.state = OutputState::Retrying;
            s.last_error = Some(error);
            s.next_retry_seconds = Some(delay.as_secs_f64());
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        backoff = (backoff * 2).min(settings.retry_max);
    }
    stats.lock().state = OutputState::Idle;
}

/// One accepted puller and the task sending it the channel.
struct Puller {
    /// Tells this connection's task apart from a later one from the same address.
    serial: u64,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn run_listener(
    settings: SrtOutputSettings,
    mut engine: SrtEngine,
    access: AccessPolicy,
    max_pullers: usize,
    bus: Arc<Bus>,
    stats: OutputStatsHandle,
    cancel: CancellationToken,
) {
    // A caller retrying with a wrong stream id in a loop is logged once per 10 s per address.
    let mut refusals = LogThrottle::new(Duration::from_secs(10));
    let epoch = Instant::now();
    let mut pullers: HashMap<SocketAddr, Puller> = HashMap::new();
    let mut serial = 0u64;
    // A puller's task reports here when it stopped on its own (bus closed, send failed).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(SocketAddr, u64, Result<(), String>)>();
    let mut reject = |peer: SocketAddr, why: String| {
        // The text may carry the caller's stream id: escaped and bounded.
        if let Some(suppressed) = refusals.due(epoch.elapsed(), peer.ip()) {
            warn!(output = %settings.id, %peer, suppressed, "rejected SRT caller: {}", printable(&why));
        }
        stats.lock().last_error = Some(format!("rejected {peer}: {}", printable(&why)));
    };
    stats
        .lock()
        .set_datagrams_rejected(&engine.counters().datagrams_rejected);
    let mut publish = tokio::time::interval(Duration::from_secs(1));
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = publish.tick() => {
                stats.lock().set_datagrams_rejected(&engine.counters().datagrams_rejected);
                continue;
            }
            Some((peer, ended, outcome)) = done_rx.recv() => {
                if pullers.get(&peer).is_some_and(|p| p.serial == ended) {
                    pullers.remove(&peer);
                    engine.close_connection(peer);
                    puller_left(&settings.id, &stats, peer, outcome.err().as_deref().unwrap_or("stopped"));
                }
                continue;
            }
            event = engine.next() => match event {
                Some(event) => event,
                None => {
                    warn!(output = %settings.id, "SRT engine stopped unexpectedly");
                    break;
                }
            },
        };
        match event {
            EngineEvent::Request(request) => {
                // A puller reconnecting from the same address replaces itself.
                let full = pullers.len() >= max_pullers && !pullers.contains_key(&request.peer);
                let decision = match access.judge(request.stream_id.as_deref(), request.key_size) {
                    Ok(_) if full => {
                        reject(
                            request.peer,
                            format!(
                                "the output is full: {max_pullers} receivers connected (max_pullers)"
                            ),
                        );
                        AccessDecision::Reject(RejectReason::Core(CoreRejectReason::Backlog))
                    }
                    Ok(key) => AccessDecision::Accept(key),
                    Err(refusal) => {
                        reject(request.peer, refusal.to_string());
                        AccessDecision::Reject(refusal.reject_reason())
                    }
                };
                engine.decide(request.peer, decision);
            }
            EngineEvent::HandshakeFailed { peer, encrypted } => {
                let why = if encrypted {
                    "handshake failed (wrong passphrase?)"
                } else {
                    "handshake failed"
                };
                reject(peer, why.to_string());
            }
            EngineEvent::Refused { peer, reason } => reject(peer, reason.describe().to_string()),
            EngineEvent::Connected { peer, .. } => {
                if let Some(old) = pullers.remove(&peer) {
                    // The same address again: the engine has replaced that connection.
                    old.cancel.cancel();
                    puller_left(&settings.id, &stats, peer, "replaced by a new connection");
                }
                serial += 1;
                let sender = engine.sender(peer);
                let (id, bus, stats_, token, done) = (
                    settings.id.clone(),
                    bus.clone(),
                    stats.clone(),
                    cancel.child_token(),
                    done_tx.clone(),
                );
                let this = serial;
                let task_token = token.clone();
                let task = tokio::spawn(
                    async move {
                        let outcome = pump(&id, &sender, &bus, &stats_, &task_token).await;
                        let _ = done.send((peer, this, outcome));
                    }
                    .in_current_span(),
                );
                info!(output = %settings.id, %peer, "SRT output caller connected");
                {
                    let mut s = stats.lock();
                    s.peers.push(peer);
                    s.state = OutputState::Live;
                }
                pullers.insert(
                    peer,
                    Puller {
                        serial,
                        cancel: token,
                        task,
                    },
                );
            }
            EngineEvent::Closed { peer } => {
                if let Some(puller) = pullers.remove(&peer) {
                    puller.cancel.cancel();
                    puller_left(&settings.id, &stats, peer, "peer closed the connection");
                }
            }
            // A puller has nothing to say, and the output has no use for link statistics; a
            // listening port makes no calls.
            EngineEvent::Received { .. }
            | EngineEvent::Statistics { .. }
            | EngineEvent::CallFailed { .. } => {}
        }
    }
    // Shutdown packets to every puller; their senders fail, so their tasks end.
    engine.close().await;
    for (_, puller) in pullers.drain() {
        puller.cancel.cancel();
        let _ = puller.task.await;
    }
    let mut s = stats.lock();
    s.peers.clear();
    s.state = OutputState::Idle;
}

fn puller_left(id: &str, stats: &OutputStatsHandle, peer: SocketAddr, reason: &str) {
    info!(output = %id, %peer, reason, "SRT output caller left");
    let mut s = stats.lock();
    if let Some(at) = s.peers.iter().position(|p| *p == peer) {
        s.peers.remove(at);
    }
    if s.peers.is_empty() {
        s.state = OutputState::Idle;
    }
}

/// How fast a new peer is sent the cached GOP it joins with: four times 50 Mbit/s, so it is
/// caught up within a quarter of a GOP, but not at wire speed. A burst of a whole GOP (6 MB at
/// 50 Mbit/s) overflows a receiver's UDP buffer (Linux's default is 208 KB), and what SRT then
/// retransmits arrives too late to play: the peer would get nothing.
const CATCH_UP_BYTES_PER_SECOND: f64 = 25e6;

/// Spaces the catch-up burst so it leaves at `CATCH_UP_BYTES_PER_SECOND`.
#[derive(Debug)]
struct Pacer {
    started: tokio::time::Instant,
    bytes: f64,
}

impl Pacer {
    async fn pace(&mut self, bytes: usize) {
        self.bytes += bytes as f64;
        let due = self.started + Duration::from_secs_f64(self.bytes / CATCH_UP_BYTES_PER_SECOND);
        // Sleep in steps of at least a millisecond (the timer's grain), not per datagram.
        if due > tokio::time::Instant::now() + Duration::from_millis(1) {
            tokio::time::sleep_until(due).await;
        }
    }
}

/// Sends the bus to one peer until its connection ends (`Err` with the reason) or `cancel`
/// fires / the bus closes (`Ok`).
async fn pump(
    id: &str,
    socket: &ConnectionSender,
    bus: &Arc<Bus>,
    stats: &OutputStatsHandle,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let mut receiver = bus.subscribe();
    let mut pacer = Pacer {
        started: tokio::time::Instant::now(),
        bytes: 0.0,
    };
    let mut muxer = Muxer::new(MuxSettings::default());
    let mut out = BytesMut::with_capacity(256 * 1024);
    let mut drops = DropReport::default();
    // One timer, re-armed after each write, rather than a new one per loop turn.
    let flush = tokio::time::sleep(FLUSH_AFTER);
    tokio::pin!(flush);
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = &mut flush, if !out.is_empty() => {
                let whole = out.len() - out.len() % PACKET_SIZE;
                let datagram = out.split_to(whole).freeze();
                send(socket, datagram, stats).await?;
                continue;
            }
            item = receiver.recv() => match item {
                Some(item) => item,
                None => return Ok(()),
            },
        };
        let mut sent_frame = false;
        match item {
            BusItem::Program(program) => muxer.set_program(&program),
            BusItem::Frame(frame) => {
                sent_frame = muxer.write_frame(&frame, &mut out);
                let catching_up = receiver.catching_up();
                while out.len() >= DATAGRAM_SIZE {
                    let datagram = out.split_to(DATAGRAM_SIZE).freeze();
                    if catching_up {
                        pacer.pace(datagram.len()).await;
                    }
                    send(socket, datagram, stats).await?;
                }
                flush
                    .as_mut()
                    .reset(tokio::time::Instant::now() + FLUSH_AFTER);
            }
        }
        let mut s = stats.lock();
        s.frames_total += u64::from(sent_frame);
        drops.update(
            id,
            receiver.dropped_frames(),
            &mut s,
            "SRT peer is too slow; skipped to the next keyframe",
        );
    }
}

async fn send(
    socket: &ConnectionSender,
    datagram: Bytes,
    stats: &OutputStatsHandle,
) -> Result<(), String> {
    let length = u64::try_from(datagram.len()).unwrap_or(u64::MAX);
    socket
        .send(datagram)
        .await
        .map_err(|_| "peer closed the connection".to_string())?;
    stats.lock().bytes_total += length;
    Ok(())
}
