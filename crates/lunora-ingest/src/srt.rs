//! SRT listener input, on our own SRT engine (`lunora_srt::SrtEngine`).
//!
//! One caller at a time per input. A new caller is accepted at once when the current one has
//! gone silent for `input_loss` (an encoder reboot), and refused while the current one is live.
//! Every request is accepted or rejected explicitly, with the reason logged and counted. The
//! engine checks every datagram before srt-protocol parses it and contains a panic to the one
//! datagram, so nothing another host sends to the port can disturb the connected caller;
//! what it drops is counted per reason in `srt_datagrams_rejected`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lunora_srt::{
    AccessDecision, AccessPolicy, CallerRequest, EngineEvent, EngineSettings, LinkStats, Refusal,
    SrtEngine,
};
use lunora_ts::AnalyserSettings;
use srt_protocol::packet::{RejectReason, ServerRejectReason};
use tracing::{info, warn};

use crate::InputSender;
use crate::stats::StatsHandle;
use crate::ts_feed::TsFeed;

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

struct Session {
    peer: SocketAddr,
    /// Connection time or the last payload, whichever is later: a caller that has just
    /// connected gets the same `input_loss` grace as one that is sending.
    last_activity: Instant,
}

/// An SRT input whose port is bound (so start-up can report "address in use" at once).
#[derive(Debug)]
pub struct BoundSrtInput {
    settings: SrtInputSettings,
    engine: SrtEngine,
    stats: StatsHandle,
}

enum Decision {
    Accept(Option<srt_protocol::settings::KeySettings>),
    Reject {
        reason: RejectReason,
        /// Groups repeats for log rate limiting.
        kind: &'static str,
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
        let engine = SrtEngine::bind(EngineSettings {
            label: settings.id.clone(),
            address: settings.listen,
            latency: settings.latency,
            buffer_bytes: settings.udp_buffer_bytes,
        })?;
        stats
            .lock()
            .set_datagrams_rejected(&engine.counters().datagrams_rejected);
        Ok(BoundSrtInput {
            settings,
            engine,
            stats,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.engine.local_addr()
    }

    /// Receives until `shutdown` resolves, sending what it demuxes to `events` tagged with
    /// `index`. Never blocks on `events`: when the channel is behind, frames are dropped and
    /// counted; control events always get through.
    pub async fn run(self, index: usize, events: InputSender, shutdown: impl Future<Output = ()>) {
        let BoundSrtInput {
            settings,
            mut engine,
            stats,
        } = self;
        let mut input = Input {
            id: settings.id.clone(),
            feed: TsFeed::new(
                settings.id.clone(),
                index,
                settings.analyser,
                events,
                stats,
                |s| (s.srt.packets_received, s.srt.packets_lost),
            ),
            closed_link: LinkStats::default(),
            rejection_logs: BTreeMap::new(),
        };
        let mut session: Option<Session> = None;
        let mut publish = tokio::time::interval(Duration::from_millis(250));
        tokio::pin!(shutdown);
        info!(input = %settings.id, listen = %engine.local_addr(), "SRT input listening");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                event = engine.next() => match event {
                    Some(event) => input.handle_event(&settings, &engine, event, &mut session),
                    None => {
                        // The port task ends only when told to; seeing this is a bug.
                        warn!(input = %settings.id, "SRT engine stopped unexpectedly");
                        break;
                    }
                },
                _ = publish.tick() => {
                    let counters = engine.counters();
                    {
                        let mut stats = input.feed.stats.lock();
                        stats.set_datagrams_rejected(&counters.datagrams_rejected);
                        stats.srt_batches_dropped_total = counters.deliveries_dropped;
                    }
                    input.feed.publish();
                }
            }
        }
        engine.close().await;
        info!(input = %settings.id, "SRT input stopped");
    }
}

struct Input {
    id: String,
    feed: TsFeed,
    /// Link totals of connections that have ended.
    closed_link: LinkStats,
    /// Rejection warnings are logged at most once a second per kind: a peer retrying in a
    /// loop must not flood the log. The ones held back are counted in the next line.
    rejection_logs: BTreeMap<&'static str, (Instant, u64)>,
}

impl Input {
    fn decide(
        &self,
        settings: &SrtInputSettings,
        request: &CallerRequest,
        session: &Option<Session>,
    ) -> Decision {
        let key = match settings
            .access
            .judge(request.stream_id.as_deref(), request.key_size)
        {
            Ok(key) => key,
            Err(refusal) => {
                return Decision::Reject {
                    reason: refusal.reject_reason(),
                    kind: match refusal {
                        Refusal::StreamId { .. } => "stream_id",
                        Refusal::UnexpectedEncryption => "unexpected_encryption",
                        Refusal::NotEncrypted => "not_encrypted",
                        Refusal::InvalidPassphrase => "invalid_passphrase",
                    },
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
                kind: "busy",
                why: format!("caller {} is live on this input", current.peer),
                count: |c| c.busy += 1,
            };
        }
        Decision::Accept(key)
    }

    fn handle_event(
        &mut self,
        settings: &SrtInputSettings,
        engine: &SrtEngine,
        event: EngineEvent,
        session: &mut Option<Session>,
    ) {
        let is_current = |peer: &SocketAddr, session: &Option<Session>| {
            session.as_ref().is_some_and(|s| s.peer == *peer)
        };
        match event {
            EngineEvent::Request(request) => {
                let peer = request.peer;
                match self.decide(settings, &request, session) {
                    Decision::Reject {
                        reason,
                        kind,
                        why,
                        count,
                    } => {
                        if let Some(held) = self.rejection_log_allowed(kind) {
                            warn!(input = %self.id, %peer, stream_id = ?request.stream_id, also_rejected = held, "rejected SRT caller: {why}");
                        }
                        count(&mut self.feed.stats.lock().rejected_total);
                        engine.decide(peer, AccessDecision::Reject(reason));
                    }
                    Decision::Accept(key) => engine.decide(peer, AccessDecision::Accept(key)),
                }
            }
            EngineEvent::Connected { peer, .. } => {
                if let Some(previous) = session.take() {
                    info!(input = %self.id, old = %previous.peer, new = %peer, "replacing silent SRT caller");
                    engine.close_connection(previous.peer);
                    self.disconnected();
                }
                *session = Some(Session {
                    peer,
                    last_activity: Instant::now(),
                });
                self.connected(peer);
            }
            EngineEvent::HandshakeFailed { peer, encrypted } => {
                let why = if encrypted {
                    "handshake failed (wrong passphrase?)"
                } else {
                    "handshake failed"
                };
                if let Some(held) = self.rejection_log_allowed("handshake_failed") {
                    warn!(input = %self.id, %peer, also_rejected = held, "rejected SRT caller: {why}");
                }
                let mut stats = self.feed.stats.lock();
                if encrypted {
                    stats.rejected_total.passphrase += 1
                } else {
                    stats.rejected_total.handshake += 1
                }
            }
            EngineEvent::Refused { peer, reason } => {
                if let Some(held) = self.rejection_log_allowed("unsupported") {
                    warn!(input = %self.id, %peer, also_rejected = held, "rejected SRT caller: {}", reason.describe());
                }
                self.feed.stats.lock().rejected_total.handshake += 1;
            }
            EngineEvent::Received { peer, items } => {
                let Some(current) = session.as_mut().filter(|s| s.peer == peer) else {
                    return;
                };
                let now = Instant::now();
                current.last_activity = now;
                for (_, bytes) in items {
                    self.feed.handle_bytes(now, &bytes);
                }
            }
            EngineEvent::Statistics { peer, link } => {
                if is_current(&peer, session) {
                    self.feed.stats.lock().srt = self.closed_link.plus(&link);
                }
            }
            EngineEvent::Closed { peer } => {
                if is_current(&peer, session) {
                    info!(input = %self.id, %peer, "SRT caller disconnected");
                    *session = None;
                    self.disconnected();
                }
            }
            // A listening input makes no calls.
            EngineEvent::CallFailed { .. } => {}
        }
    }

    /// `Some(rejections of this kind held back since its last line)` when one may be logged.
    fn rejection_log_allowed(&mut self, kind: &'static str) -> Option<u64> {
        let now = Instant::now();
        match self.rejection_logs.get_mut(kind) {
            Some((at, held)) if now.duration_since(*at) < Duration::from_secs(1) => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                self.rejection_logs.insert(kind, (now, 0));
                Some(0)
            }
        }
    }

    fn connected(&mut self, peer: SocketAddr) {
        info!(input = %self.id, %peer, "SRT caller connected");
        self.feed.connected(peer.to_string());
    }

    fn disconnected(&mut self) {
        self.closed_link = self.feed.stats.lock().srt;
        self.feed.disconnected();
    }
}
