//! SRT listener input (srt-tokio).
//!
//! One caller at a time per input. A new caller is accepted at once when the current one has
//! gone silent for `input_loss` (an encoder reboot), and refused while the current one is live.
//! Every request is accepted or rejected explicitly: srt-tokio panics its listener task on a
//! key-length mismatch or an encrypted caller meeting an unencrypted listener, so neither case
//! may reach its default handling. Should the listener task die anyway (a malformed handshake
//! can still hit an `unimplemented!` inside srt-protocol), the input rebinds its port.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use lunora_media::Codec;
use lunora_srt::{AccessPolicy, LinkStats, ListenerEvent, ResilientListener};
use lunora_ts::{AnalyserSettings, DemuxEvent, Indicator, TsInput};
use srt_protocol::packet::{RejectReason, ServerRejectReason};
use srt_protocol::settings::KeySettings;
use srt_protocol::statistics::SocketStatistics;
use srt_tokio::{ConnectionRequest, SrtSocket};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::InputEvent;
use crate::stats::{ConnectionState, StatsHandle, VideoInfo};

#[derive(Debug, Clone)]
pub struct SrtInputSettings {
    /// The input's id, used in every log line.
    pub id: String,
    pub listen: SocketAddr,
    pub latency: Duration,
    pub access: AccessPolicy,
    /// A connected caller silent for this long may be replaced by a new caller.
    pub input_loss: Duration,
    pub analyser: AnalyserSettings,
    /// Kernel UDP buffer size requested for the port.
    pub udp_buffer_bytes: usize,
}

type LinkStatsStream = Pin<Box<dyn Stream<Item = SocketStatistics> + Send>>;

struct Session {
    socket: SrtSocket,
    peer: SocketAddr,
    /// Connection time or the last datagram, whichever is later: a caller that has just
    /// connected gets the same `input_loss` grace as one that is sending.
    last_activity: Instant,
}

/// An SRT input whose port is bound (so start-up can report "address in use" at once).
#[derive(Debug)]
pub struct BoundSrtInput {
    settings: SrtInputSettings,
    listener: ResilientListener,
    stats: StatsHandle,
}

enum Decision {
    Accept(Option<KeySettings>),
    Reject {
        reason: RejectReason,
        why: String,
        count: fn(&mut crate::RejectCounts),
    },
}

fn count_stream_id(c: &mut crate::RejectCounts) {
    c.stream_id += 1;
}

fn count_passphrase(c: &mut crate::RejectCounts) {
    c.passphrase += 1;
}

impl BoundSrtInput {
    pub async fn bind(settings: SrtInputSettings, stats: StatsHandle) -> std::io::Result<Self> {
        let listener = ResilientListener::bind(
            settings.id.clone(),
            settings.listen,
            settings.latency,
            settings.udp_buffer_bytes,
        )
        .await?;
        Ok(BoundSrtInput {
            settings,
            listener,
            stats,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Receives until `shutdown` resolves, sending what it demuxes to `events` tagged with
    /// `index`. Never blocks on `events`: when the channel is behind, frames are dropped and
    /// counted.
    pub async fn run(
        self,
        index: usize,
        events: mpsc::Sender<(usize, InputEvent)>,
        shutdown: impl Future<Output = ()>,
    ) {
        let BoundSrtInput {
            settings,
            mut listener,
            stats,
        } = self;
        let mut input = Input {
            id: settings.id.clone(),
            index,
            ts: TsInput::new(settings.analyser),
            origin: Instant::now(),
            events,
            stats,
            closed_link: LinkStats::default(),
            window_start: Instant::now(),
            window_bytes: 0,
            seen_indicators: HashSet::new(),
            unreported: BTreeMap::new(),
            last_summary: Instant::now(),
        };
        let mut session: Option<Session> = None;
        // Kept beside `session` so both can be polled in one select.
        let mut link: Option<LinkStatsStream> = None;
        let mut publish = tokio::time::interval(Duration::from_millis(250));
        tokio::pin!(shutdown);
        info!(input = %settings.id, listen = %listener.local_addr(), "SRT input listening");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                event = listener.next() => match event {
                    ListenerEvent::Request(request) => input.handle_request(&settings, request, &mut session, &mut link).await,
                    ListenerEvent::Restarted => {
                        link = None;
                        if session.take().is_some() {
                            input.disconnected();
                        }
                    }
                },
                packet = next_packet(&mut session) => match packet {
                    Some(Ok((_, bytes))) => {
                        let now = Instant::now();
                        input.handle_datagram(now, &bytes);
                        // Take whatever else is already waiting in one go: fewer trips
                        // through the select at 4,000+ datagrams a second.
                        if let Some(session) = session.as_mut() {
                            session.last_activity = now;
                            for _ in 0..BATCH {
                                match session.socket.next().now_or_never() {
                                    Some(Some(Ok((_, bytes)))) => input.handle_datagram(now, &bytes),
                                    _ => break,
                                }
                            }
                        }
                    }
                    Some(Err(e)) => {
                        info!(input = %settings.id, error = %e, "SRT caller connection failed");
                        session = None;
                        link = None;
                        input.disconnected();
                    }
                    None => {
                        info!(input = %settings.id, "SRT caller disconnected");
                        session = None;
                        link = None;
                        input.disconnected();
                    }
                },
                statistics = next_link_stats(&mut link) => {
                    if let Some(statistics) = statistics {
                        input.stats.lock().srt = input.closed_link.plus(&LinkStats::from_socket(&statistics));
                    }
                }
                _ = publish.tick() => input.publish(),
            }
        }
        if let Some(mut session) = session {
            let _ = session.socket.close_and_finish().await;
        }
        info!(input = %settings.id, "SRT input stopped");
    }
}

async fn next_packet(
    session: &mut Option<Session>,
) -> Option<Result<(Instant, Bytes), std::io::Error>> {
    match session {
        Some(session) => session.socket.next().await,
        None => std::future::pending().await,
    }
}

async fn next_link_stats(link: &mut Option<LinkStatsStream>) -> Option<SocketStatistics> {
    match link {
        Some(link) => link.next().await,
        None => std::future::pending().await,
    }
}

struct Input {
    id: String,
    index: usize,
    ts: TsInput,
    origin: Instant,
    events: mpsc::Sender<(usize, InputEvent)>,
    stats: StatsHandle,
    /// Link totals of connections that have ended.
    closed_link: LinkStats,
    window_start: Instant,
    window_bytes: u64,
    seen_indicators: HashSet<Indicator>,
    unreported: BTreeMap<&'static str, u64>,
    last_summary: Instant,
}

const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
/// Datagrams taken per wake-up when more are already queued.
const BATCH: usize = 64;

impl Input {
    fn decide(
        &self,
        settings: &SrtInputSettings,
        request: &ConnectionRequest,
        session: &Option<Session>,
    ) -> Decision {
        let key = match settings
            .access
            .judge(request.stream_id().map(|s| s.as_str()), request.key_size())
        {
            Ok(key) => key,
            Err(refusal) => {
                return Decision::Reject {
                    reason: refusal.reject_reason(),
                    why: refusal.to_string(),
                    count: if refusal.is_passphrase() {
                        count_passphrase
                    } else {
                        count_stream_id
                    },
                };
            }
        };
        if let Some(current) = session
            && current.last_activity.elapsed() < settings.input_loss
        {
            return Decision::Reject {
                reason: RejectReason::Server(ServerRejectReason::Conflict),
                why: format!("caller {} is live on this input", current.peer),
                count: |c| c.busy += 1,
            };
        }
        Decision::Accept(key)
    }

    async fn handle_request(
        &mut self,
        settings: &SrtInputSettings,
        request: ConnectionRequest,
        session: &mut Option<Session>,
        link: &mut Option<LinkStatsStream>,
    ) {
        let peer = request.remote();
        match self.decide(settings, &request, session) {
            Decision::Reject { reason, why, count } => {
                warn!(input = %self.id, %peer, "rejected SRT caller: {why}");
                count(&mut self.stats.lock().rejected_total);
                if let Err(e) = request.reject(reason).await {
                    debug!(input = %self.id, %peer, error = %e, "could not send SRT rejection");
                }
            }
            Decision::Accept(key) => {
                let encrypted = key.is_some();
                // A handshake that never completes must not stall the input.
                match tokio::time::timeout(Duration::from_secs(3), request.accept(key)).await {
                    Ok(Ok(mut socket)) => {
                        if let Some(previous) = session.take() {
                            info!(input = %self.id, old = %previous.peer, new = %peer, "replacing silent SRT caller");
                            self.disconnected();
                        }
                        *link = Some(Box::pin(socket.statistics().clone()));
                        *session = Some(Session {
                            socket,
                            peer,
                            last_activity: Instant::now(),
                        });
                        self.connected(peer);
                    }
                    Ok(Err(e)) => {
                        let why = if encrypted {
                            "handshake failed (wrong passphrase?)"
                        } else {
                            "handshake failed"
                        };
                        warn!(input = %self.id, %peer, error = %e, "rejected SRT caller: {why}");
                        let mut stats = self.stats.lock();
                        if encrypted {
                            stats.rejected_total.passphrase += 1
                        } else {
                            stats.rejected_total.handshake += 1
                        }
                    }
                    Err(_) => {
                        warn!(input = %self.id, %peer, "rejected SRT caller: handshake did not complete within 3 s");
                        self.stats.lock().rejected_total.handshake += 1;
                    }
                }
            }
        }
    }

    fn connected(&mut self, peer: SocketAddr) {
        info!(input = %self.id, %peer, "SRT caller connected");
        self.ts.new_connection();
        self.seen_indicators.clear();
        {
            let mut stats = self.stats.lock();
            stats.state = ConnectionState::Connected;
            stats.peer = Some(peer);
            stats.connections_total += 1;
        }
        let _ = self
            .events
            .try_send((self.index, InputEvent::Connected { peer }));
    }

    fn disconnected(&mut self) {
        self.ts.connection_lost();
        {
            let mut stats = self.stats.lock();
            stats.state = ConnectionState::Waiting;
            stats.peer = None;
            self.closed_link = stats.srt;
        }
        let _ = self.events.try_send((self.index, InputEvent::Disconnected));
        self.publish();
    }

    fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        self.ts.handle_bytes(now.duration_since(self.origin), data);
        self.window_bytes += data.len() as u64;
        {
            let mut stats = self.stats.lock();
            stats.bytes_total += data.len() as u64;
            stats.last_packet_at = Some(now);
        }
        self.forward_events();
    }

    fn forward_events(&mut self) {
        let (mut video, mut audio, mut data, mut dropped) = (0, 0, 0, 0);
        while let Some(event) = self.ts.poll_event() {
            let event = match event {
                DemuxEvent::Program(program) => InputEvent::Program(program),
                DemuxEvent::Frame(frame) => {
                    match frame.codec {
                        c if c.is_video() => video += 1,
                        c if c.is_audio() => audio += 1,
                        _ => data += 1,
                    }
                    InputEvent::Frame(frame)
                }
            };
            if self.events.try_send((self.index, event)).is_err() {
                dropped += 1;
            }
        }
        if video + audio + data + dropped > 0 {
            let mut stats = self.stats.lock();
            stats.frames_total.video += video;
            stats.frames_total.audio += audio;
            stats.frames_total.data += data;
            stats.frames_dropped_total += dropped;
        }
    }

    /// Copies the analyser's counters into the shared snapshot. TR 101 290 errors are logged
    /// the first time each indicator fires on a connection, then as one summary line per
    /// `SUMMARY_INTERVAL`, so a stream with a chronic fault cannot flood the log.
    fn publish(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.window_start).as_secs_f64();
        while let Some(event) = self.ts.poll_tr101290_event() {
            if self.seen_indicators.insert(event.indicator) {
                warn!(input = %self.id, indicator = event.indicator.name(), priority = event.indicator.priority(),
                    pid = ?event.pid.map(|p| p.value()), "TR 101 290 error (further ones are summarised every 10 s)");
            } else {
                *self.unreported.entry(event.indicator.name()).or_default() += 1;
            }
        }
        if !self.unreported.is_empty() && now.duration_since(self.last_summary) >= SUMMARY_INTERVAL
        {
            let summary: Vec<String> = self
                .unreported
                .iter()
                .map(|(name, n)| format!("{name}={n}"))
                .collect();
            warn!(input = %self.id, errors = %summary.join(" "), "TR 101 290 errors in the last interval");
            self.unreported.clear();
            self.last_summary = now;
        }
        let mut stats = self.stats.lock();
        if elapsed >= 1.0 {
            stats.bitrate_bps = self.window_bytes as f64 * 8.0 / elapsed;
            self.window_start = now;
            self.window_bytes = 0;
        }
        if stats
            .last_packet_at
            .is_none_or(|at| now.duration_since(at) > Duration::from_secs(1))
        {
            stats.bitrate_bps = 0.0;
        }
        let counters = self.ts.counters();
        stats.set_tr101290(&counters);
        let health = InputEvent::Stats {
            packets_received: stats.srt.packets_received,
            packets_lost: stats.srt.packets_lost,
            tr101290_priority1: counters.priority_total(1),
        };
        if stats.state == ConnectionState::Connected {
            let _ = self.events.try_send((self.index, health));
        }
        stats.ts_packets_total = self.ts.packets();
        stats.truncated_packets_total = self.ts.truncated_packets();
        stats.pes_dropped_total = self.ts.demux_counters().pes_dropped;
        let codec = self.ts.video_codec().map_or("unknown", Codec::name);
        stats.video = self
            .ts
            .video_format()
            .map(|format| VideoInfo::new(codec, format));
    }
}
