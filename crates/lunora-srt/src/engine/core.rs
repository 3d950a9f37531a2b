//! The sans-IO core of one SRT port: datagrams and the clock in, datagrams and events out.
//!
//! It drives srt-protocol's own state machines — `Listen` for each caller's handshake on a
//! listening port, `Connect` for our own call to a remote listener, and `DuplexConnection` for
//! each connection — but owns the session table itself, so a handshake that never finishes
//! expires, their number is bounded, and a panic inside srt-protocol costs only the datagram
//! (and, for a handshake, that half-made session).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use bytes::Bytes;
use srt_protocol::connection::DuplexConnection;
use srt_protocol::options::KeySize;
use srt_protocol::packet::{
    ControlPacket, ControlTypes, Packet, RejectReason, SeqNumber, TimeStamp,
};
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::protocol::pending_connection::listen::Listen;
use srt_protocol::protocol::pending_connection::{
    AccessControlResponse, ConnectionReject, ConnectionResult,
};
use srt_protocol::settings::{ConnInitSettings, KeySettings};

use crate::LinkStats;
use crate::wire::{self, DropCounts, DropReason, Side, Verdict};

/// Handshakes in progress that one port keeps; more are dropped until some finish or expire.
pub(crate) const MAX_PENDING: usize = 64;
/// A handshake not finished within this is forgotten (libsrt callers give up after 3 s).
pub(crate) const PENDING_EXPIRY: Duration = Duration::from_secs(10);
/// Longest sleep between timer checks when nothing is scheduled sooner.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// Our call gives up when the listener has not completed the handshake within this (libsrt's
/// default connect timeout).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Our call repeats its handshake this often until answered (libsrt's interval).
const CALL_RETRY: Duration = Duration::from_millis(250);

/// A caller asking to connect, for the owner to accept or reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerRequest {
    pub peer: SocketAddr,
    pub stream_id: Option<String>,
    pub key_size: KeySize,
}

/// The owner's answer to a [`CallerRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessDecision {
    /// Accept, with the key settings to decrypt with (the caller's own key length).
    Accept(Option<KeySettings>),
    Reject(RejectReason),
}

/// What the core tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    Request(CallerRequest),
    /// A caller was accepted and the handshake completed, or our own call connected.
    Connected {
        peer: SocketAddr,
        stream_id: Option<String>,
    },
    /// An accepted caller's handshake failed after all (e.g. a wrong passphrase).
    HandshakeFailed {
        peer: SocketAddr,
        encrypted: bool,
    },
    /// A legal handshake asked for something we do not support and was answered with an
    /// SRT rejection.
    Refused {
        peer: SocketAddr,
        reason: wire::Unsupported,
    },
    /// Payloads released by the receive buffer, oldest first.
    Received {
        peer: SocketAddr,
        items: Vec<(Instant, Bytes)>,
    },
    Statistics {
        peer: SocketAddr,
        link: LinkStats,
    },
    /// Our call did not connect: the listener refused it (with its reason) or never
    /// completed the handshake.
    CallFailed {
        peer: SocketAddr,
        reason: String,
    },
    /// The connection ended (peer shutdown or idle timeout).
    Closed {
        peer: SocketAddr,
    },
}

enum Session {
    Pending {
        listen: Box<Listen>,
        since: Instant,
        /// Waiting for the owner's decision.
        asked: bool,
        encrypted: bool,
    },
    /// Our call to a remote listener, until it connects.
    Calling {
        connect: Box<Connect>,
        since: Instant,
        next_retry: Instant,
        /// Why the latest answer was not accepted, for the failure message.
        last_problem: Option<String>,
    },
    Open(Box<DuplexConnection>),
}

/// One port's SRT state: a listener's, or a caller's (which talks to one listener only).
pub struct PortCore {
    side: Side,
    settings: ConnInitSettings,
    start: Instant,
    sessions: HashMap<SocketAddr, Session>,
    drops: DropCounts,
    last_drop: Option<(DropReason, SocketAddr)>,
    transmits: VecDeque<(Vec<u8>, SocketAddr)>,
    events: VecDeque<EngineEvent>,
}

impl std::fmt::Debug for PortCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortCore")
            .field("side", &self.side)
            .field("sessions", &self.sessions.len())
            .field("drops", &self.drops)
            .finish_non_exhaustive()
    }
}

impl PortCore {
    /// A listening port: callers' handshakes are answered and put to the owner as requests.
    pub fn listener(now: Instant, settings: ConnInitSettings) -> Self {
        Self::new(Side::Listener, now, settings)
    }

    /// A port that calls `remote` (with the key settings in `settings`) and talks to nobody
    /// else. The first handshake is queued at once; [`EngineEvent::Connected`] or
    /// [`EngineEvent::CallFailed`] follows.
    pub fn caller(
        now: Instant,
        settings: ConnInitSettings,
        remote: SocketAddr,
        stream_id: Option<String>,
    ) -> Self {
        // A fresh random socket id per call, as a listener gives each connection.
        let mut core = Self::new(Side::Caller, now, settings.copy_randomize());
        let local_ip = any_address_for(remote);
        // The initial sequence number only has to be unpredictable; the socket id just drawn
        // is (and spares a random-number dependency).
        let initial_sequence = SeqNumber::new_truncate(core.settings.local_sockid.0.rotate_left(7));
        let connect = Connect::new(
            remote,
            local_ip,
            core.settings.clone(),
            stream_id,
            initial_sequence,
        );
        core.sessions.insert(
            remote,
            Session::Calling {
                connect: Box::new(connect),
                since: now,
                next_retry: now,
                last_problem: None,
            },
        );
        core.handle_timeout(now);
        core
    }

    fn new(side: Side, now: Instant, settings: ConnInitSettings) -> Self {
        PortCore {
            side,
            settings,
            start: now,
            sessions: HashMap::new(),
            drops: DropCounts::default(),
            last_drop: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Datagrams dropped so far, by reason.
    pub fn drops(&self) -> &DropCounts {
        &self.drops
    }

    /// The latest drop, for a rate-limited log line.
    pub fn last_drop(&self) -> Option<(DropReason, SocketAddr)> {
        self.last_drop
    }

    pub fn connections(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| matches!(s, Session::Open(_)))
            .count()
    }

    fn drop_datagram(&mut self, reason: DropReason, peer: SocketAddr) {
        self.drops.add(reason);
        self.last_drop = Some((reason, peer));
    }

    /// One datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let amended;
        let bytes = match wire::inspect_as(self.side, datagram) {
            Verdict::Pass => datagram,
            Verdict::PassAmended(amendment) => {
                amended = wire::amend(datagram, &amendment);
                &amended[..]
            }
            Verdict::Refuse(refusal) => {
                self.drop_datagram(DropReason::Unsupported, from);
                if matches!(self.sessions.get(&from), Some(Session::Pending { .. })) {
                    self.sessions.remove(&from);
                }
                let reply = wire::rejection(&refusal, timestamp(self.start, now).as_micros());
                self.transmits.push_back((reply.to_vec(), from));
                self.events.push_back(EngineEvent::Refused {
                    peer: from,
                    reason: refusal.reason,
                });
                return;
            }
            Verdict::Drop(reason) => {
                self.drop_datagram(reason, from);
                return;
            }
        };
        let parsed = catch_unwind(|| Packet::parse(&mut &bytes[..], from.is_ipv6()));
        match parsed {
            Ok(Ok(packet)) => self.route(now, from, packet),
            Ok(Err(_)) => self.drop_datagram(DropReason::ParseError, from),
            Err(_) => self.drop_datagram(DropReason::Panic, from),
        }
    }

    fn route(&mut self, now: Instant, from: SocketAddr, packet: Packet) {
        match self.sessions.get_mut(&from) {
            Some(Session::Open(connection)) => {
                let handled = catch_unwind(AssertUnwindSafe(|| {
                    connection.handle_packet_input(now, Ok((packet, from)))
                }));
                // The connection stays: its state is still memory-safe, and dropping a live
                // feed for one odd datagram is the outcome this engine exists to prevent.
                if handled.is_err() {
                    self.drop_datagram(DropReason::Panic, from);
                }
            }
            Some(Session::Pending { .. }) => self.handle_pending(now, from, packet),
            Some(Session::Calling { connect, .. }) => {
                let result = catch_unwind(AssertUnwindSafe(|| {
                    connect.handle_packet(Ok((packet, from)), now)
                }));
                match result {
                    Ok(result) => self.apply(now, from, result),
                    Err(_) => self.drop_datagram(DropReason::Panic, from),
                }
            }
            None => {
                if self.side == Side::Caller || !packet.is_handshake() {
                    self.drop_datagram(DropReason::UnknownPeer, from);
                    return;
                }
                let pending = self.sessions.len() - self.connections();
                if pending >= MAX_PENDING {
                    self.drop_datagram(DropReason::TooManyHandshakes, from);
                    return;
                }
                self.sessions.insert(
                    from,
                    Session::Pending {
                        // Each connection gets its own socket id.
                        listen: Box::new(Listen::new(self.settings.copy_randomize(), true)),
                        since: now,
                        asked: false,
                        encrypted: false,
                    },
                );
                self.handle_pending(now, from, packet);
            }
        }
    }

    fn handle_pending(&mut self, now: Instant, from: SocketAddr, packet: Packet) {
        let Some(Session::Pending { listen, .. }) = self.sessions.get_mut(&from) else {
            return;
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            listen.handle_packet(now, Ok((packet, from)))
        }));
        match result {
            Ok(result) => self.apply(now, from, result),
            Err(_) => {
                self.drop_datagram(DropReason::Panic, from);
                self.sessions.remove(&from);
            }
        }
    }

    fn apply(&mut self, _now: Instant, from: SocketAddr, result: ConnectionResult) {
        match result {
            ConnectionResult::SendPacket(packet) => self.send(packet),
            ConnectionResult::RequestAccess(request) => {
                if let Some(Session::Pending {
                    asked, encrypted, ..
                }) = self.sessions.get_mut(&from)
                {
                    *asked = true;
                    *encrypted = request.key_size != KeySize::Unspecified;
                }
                self.events.push_back(EngineEvent::Request(CallerRequest {
                    peer: from,
                    stream_id: request.stream_id.map(|s| s.to_string()),
                    key_size: request.key_size,
                }));
            }
            ConnectionResult::Reject(packet, reject) => {
                if let Some(packet) = packet {
                    self.send(packet);
                }
                let reason = match reject {
                    ConnectionReject::Rejected(reason) => {
                        format!("the listener refused the connection: {}", describe(reason))
                    }
                    ConnectionReject::Rejecting(reason) => {
                        format!("its answer was refused: {}", describe(reason))
                    }
                };
                self.end_pending(from, reason);
            }
            ConnectionResult::Connected(packet, connection) => {
                if let Some(packet) = packet {
                    self.send(packet);
                }
                let stream_id = connection.settings.stream_id.clone();
                self.sessions.insert(
                    from,
                    Session::Open(Box::new(DuplexConnection::new(connection))),
                );
                self.events.push_back(EngineEvent::Connected {
                    peer: from,
                    stream_id,
                });
            }
            ConnectionResult::Failure(error) => self.end_pending(from, error.to_string()),
            ConnectionResult::NotHandled(problem) => {
                if let Some(Session::Calling { last_problem, .. }) = self.sessions.get_mut(&from) {
                    *last_problem = Some(problem.to_string());
                }
            }
            // A retransmitted induction or conclusion while the owner decides, or a data
            // packet that raced the handshake: nothing to do.
            ConnectionResult::NoAction => {}
        }
    }

    /// Forgets a handshake that failed; for our own call the owner hears why.
    fn end_pending(&mut self, peer: SocketAddr, reason: String) {
        if let Some(Session::Calling { .. }) = self.sessions.remove(&peer) {
            self.events
                .push_back(EngineEvent::CallFailed { peer, reason });
        }
    }

    fn send(&mut self, (packet, to): (Packet, SocketAddr)) {
        let mut out = Vec::with_capacity(packet.wire_size());
        packet.serialize(&mut out);
        self.transmits.push_back((out, to));
    }

    /// The owner's answer to a [`EngineEvent::Request`]. Ignored if that handshake has gone.
    pub fn handle_decision(&mut self, now: Instant, peer: SocketAddr, decision: AccessDecision) {
        let Some(Session::Pending {
            listen,
            asked: true,
            encrypted,
            ..
        }) = self.sessions.get_mut(&peer)
        else {
            return;
        };
        let encrypted = *encrypted;
        let accepted = matches!(decision, AccessDecision::Accept(_));
        let response = match decision {
            AccessDecision::Accept(key) => AccessControlResponse::Accepted(key),
            AccessDecision::Reject(reason) => AccessControlResponse::Rejected(reason),
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            listen.handle_access_control_response(now, response)
        }));
        match result {
            Ok(result) => {
                if accepted && matches!(result, ConnectionResult::Reject(..)) {
                    self.events
                        .push_back(EngineEvent::HandshakeFailed { peer, encrypted });
                }
                self.apply(now, peer, result);
            }
            Err(_) => {
                self.drop_datagram(DropReason::Panic, peer);
                self.sessions.remove(&peer);
                if accepted {
                    self.events
                        .push_back(EngineEvent::HandshakeFailed { peer, encrypted });
                }
            }
        }
    }

    /// Hands queued payloads to `peer`'s sender, oldest first, while its send buffer holds
    /// less than half its capacity: srt-protocol drops what does not fit, and a dropped packet
    /// in the middle of a frame is a broken picture, so the rest waits in `queue` (bounded by
    /// the owner) instead. `None` when `peer` has no open connection.
    pub fn send_data(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        queue: &mut VecDeque<(Instant, Bytes)>,
    ) -> Option<usize> {
        let window = (self.settings.send_buffer_size.0 / 2).max(1);
        let Some(Session::Open(connection)) = self.sessions.get_mut(&peer) else {
            return None;
        };
        let mut taken = 0;
        let fed = catch_unwind(AssertUnwindSafe(|| {
            // `update_statistics` is what refreshes the buffered-packet count we read.
            connection.update_statistics(now);
            while connection.statistics().tx_buffered_data < window {
                let Some(item) = queue.pop_front() else { break };
                connection.handle_data_input(now, Some(item));
                taken += 1;
                connection.update_statistics(now);
            }
        }));
        if fed.is_err() {
            self.drop_datagram(DropReason::Panic, peer);
        }
        Some(taken)
    }

    /// Ends one connection: a shutdown packet goes to the peer.
    pub fn close_connection(&mut self, now: Instant, peer: SocketAddr) {
        if let Some(Session::Open(connection)) = self.sessions.remove(&peer) {
            self.send_shutdown(now, &connection);
        }
    }

    /// Ends every connection (shutdown packets sent) and forgets every handshake.
    pub fn shutdown(&mut self, now: Instant) {
        for (_, session) in std::mem::take(&mut self.sessions) {
            if let Session::Open(connection) = session {
                self.send_shutdown(now, &connection);
            }
        }
    }

    fn send_shutdown(&mut self, now: Instant, connection: &DuplexConnection) {
        let settings = connection.settings();
        let packet = Packet::Control(ControlPacket {
            timestamp: timestamp(settings.socket_start_time, now),
            dest_sockid: settings.remote_sockid,
            control_type: ControlTypes::Shutdown,
        });
        self.send((packet, settings.remote));
    }

    /// Runs every connection's timers and collects what they release. Call after each batch
    /// of datagrams and when [`PortCore::next_deadline`] passes.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut closed = Vec::new();
        let mut panicked = Vec::new();
        let mut retries = Vec::new();
        let mut call_failed = None;
        for (peer, session) in &mut self.sessions {
            match session {
                Session::Calling {
                    since,
                    next_retry,
                    last_problem,
                    ..
                } => {
                    if now.saturating_duration_since(*since) > CALL_TIMEOUT {
                        let why = last_problem.take().map_or_else(
                            || "no answer (is a listener running there, and does the network let UDP through?)".to_string(),
                            |problem| format!("the handshake did not complete: {problem}"),
                        );
                        call_failed =
                            Some((*peer, format!("{why} within {} s", CALL_TIMEOUT.as_secs())));
                    } else if now >= *next_retry {
                        *next_retry = now + CALL_RETRY;
                        retries.push(*peer);
                    }
                }
                Session::Open(connection) => {
                    let serviced = catch_unwind(AssertUnwindSafe(|| {
                        service(
                            now,
                            *peer,
                            connection,
                            &mut self.transmits,
                            &mut self.events,
                        )
                    }));
                    match serviced {
                        Ok(true) => {}
                        Ok(false) => closed.push(*peer),
                        Err(_) => panicked.push(*peer),
                    }
                }
                Session::Pending { since, .. } => {
                    if now.saturating_duration_since(*since) > PENDING_EXPIRY {
                        closed.push(*peer);
                    }
                }
            }
        }
        for peer in panicked {
            self.drop_datagram(DropReason::Panic, peer);
        }
        if let Some((peer, reason)) = call_failed {
            self.end_pending(peer, reason);
        }
        for peer in retries {
            let Some(Session::Calling { connect, .. }) = self.sessions.get_mut(&peer) else {
                continue;
            };
            match catch_unwind(AssertUnwindSafe(|| connect.handle_tick(now))) {
                Ok(result) => self.apply(now, peer, result),
                Err(_) => self.drop_datagram(DropReason::Panic, peer),
            }
        }
        for peer in closed {
            if let Some(Session::Open(_)) = self.sessions.remove(&peer) {
                self.events.push_back(EngineEvent::Closed { peer });
            }
        }
    }

    /// When [`PortCore::handle_timeout`] is next due.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let mut deadline = now + IDLE_TICK;
        for session in self.sessions.values() {
            match session {
                Session::Open(connection) => deadline = deadline.min(connection.next_timer(now)),
                Session::Calling { next_retry, .. } => deadline = deadline.min(*next_retry),
                Session::Pending { .. } => {}
            }
        }
        deadline.max(now)
    }

    pub fn poll_transmit(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        self.transmits.pop_front()
    }

    /// The datagram [`PortCore::poll_transmit`] would return next.
    pub fn peek_transmit(&self) -> Option<(&[u8], SocketAddr)> {
        self.transmits
            .front()
            .map(|(datagram, to)| (datagram.as_slice(), *to))
    }

    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }
}

/// A rejection reason as an operator reads it, with libsrt's code (what other tools print).
fn describe(reason: RejectReason) -> String {
    let code = i32::from(reason);
    match reason {
        RejectReason::Core(srt_protocol::packet::CoreRejectReason::BadSecret) => {
            format!("wrong or missing passphrase (SRT code {code})")
        }
        RejectReason::Core(srt_protocol::packet::CoreRejectReason::Unsecure) => {
            format!("the listener requires a passphrase (SRT code {code})")
        }
        reason => format!("{reason} (SRT code {code})"),
    }
}

/// The wildcard address of `remote`'s family: where a call to `remote` is sent from.
pub(crate) fn any_address_for(remote: SocketAddr) -> std::net::IpAddr {
    match remote {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// An SRT packet timestamp: microseconds since `start`, wrapping at 2^32 as the spec says.
fn timestamp(start: Instant, now: Instant) -> TimeStamp {
    let micros = now.saturating_duration_since(start).as_micros() % (1u128 << 32);
    TimeStamp::from_micros(u32::try_from(micros).unwrap_or(0))
}

/// Timers, outgoing packets, released payloads and statistics of one connection. False once
/// the connection has closed.
fn service(
    now: Instant,
    peer: SocketAddr,
    connection: &mut DuplexConnection,
    transmits: &mut VecDeque<(Vec<u8>, SocketAddr)>,
    events: &mut VecDeque<EngineEvent>,
) -> bool {
    connection.check_timers(now);
    if connection.should_update_statistics(now) {
        connection.update_statistics(now);
        events.push_back(EngineEvent::Statistics {
            peer,
            link: LinkStats::from_socket(connection.statistics()),
        });
    }
    while let Some((packet, to)) = connection.next_packet(now) {
        let mut out = Vec::with_capacity(packet.wire_size());
        packet.serialize(&mut out);
        transmits.push_back((out, to));
    }
    let mut items = Vec::new();
    while let Some(item) = connection.next_data(now) {
        items.push(item);
    }
    if !items.is_empty() {
        events.push_back(EngineEvent::Received { peer, items });
    }
    connection.is_open()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(now: Instant) -> PortCore {
        PortCore::listener(now, ConnInitSettings::default())
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/fixtures/{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn induction_is_answered_and_garbage_counted() {
        let now = Instant::now();
        let mut core = core(now);
        core.handle_datagram(now, peer(), &fixture("ffmpeg-sid-0"));
        let (reply, to) = core.poll_transmit().unwrap();
        assert_eq!(to, peer());
        assert_eq!(wire::inspect(&reply), Verdict::Pass);
        core.handle_datagram(now, peer(), &[0xFF; 40]);
        core.handle_datagram(now, "127.0.0.1:1".parse().unwrap(), &[0; 40]);
        assert_eq!(core.drops().get(DropReason::UnknownControlSubtype), 1);
        assert_eq!(core.drops().get(DropReason::UnknownPeer), 1);
    }

    /// A caller (srt-protocol's own `Connect` and `DuplexConnection`) and the core in virtual
    /// time: handshake, access decision, 100 messages delivered in order, while another host
    /// sends issue 10's datagram and garbage after every step.
    #[test]
    fn caller_in_virtual_time_gets_every_message_through_hostile_noise() {
        use srt_protocol::packet::SeqNumber;
        use srt_protocol::protocol::pending_connection::connect::Connect;

        let start = Instant::now();
        let mut now = start;
        let caller: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let attacker: SocketAddr = "127.0.0.1:40002".parse().unwrap();
        let listener: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let mut core = core(now);
        let mut connect = Connect::new(
            listener,
            caller.ip(),
            ConnInitSettings::default(),
            Some("cam-1".into()),
            SeqNumber::new_truncate(1),
        );
        let mut connection: Option<DuplexConnection> = None;
        let serialize = |packet: &Packet| {
            let mut out = Vec::new();
            packet.serialize(&mut out);
            out
        };
        let mut to_listener: Vec<Vec<u8>> = Vec::new();
        if let ConnectionResult::SendPacket((packet, _)) = connect.handle_tick(now) {
            to_listener.push(serialize(&packet));
        }
        let mut sent = 0u32;
        let mut received = Vec::new();
        let mut stream_id = None;
        for _ in 0..400 {
            for datagram in to_listener.drain(..) {
                core.handle_datagram(now, caller, &datagram);
            }
            core.handle_datagram(now, attacker, &crate::wire::tests::issue_10_datagram());
            core.handle_datagram(now, attacker, &[0x80, 0x00, 0x00, 0x00, 1, 2, 3]);
            core.handle_timeout(now);
            while let Some(event) = core.poll_event() {
                match event {
                    EngineEvent::Request(request) => {
                        assert_eq!(request.stream_id.as_deref(), Some("cam-1"));
                        core.handle_decision(now, request.peer, AccessDecision::Accept(None));
                    }
                    EngineEvent::Connected { stream_id: id, .. } => stream_id = id,
                    EngineEvent::Received { items, .. } => {
                        received.extend(items.into_iter().map(|(_, b)| b))
                    }
                    EngineEvent::Closed { peer } => panic!("{peer} closed"),
                    _ => {}
                }
            }
            while let Some((datagram, to)) = core.poll_transmit() {
                if to != caller {
                    continue;
                }
                let packet = Packet::parse(&mut &datagram[..], false).unwrap();
                match &mut connection {
                    Some(connection) => connection.handle_packet_input(now, Ok((packet, listener))),
                    None => match connect.handle_packet(Ok((packet, listener)), now) {
                        ConnectionResult::SendPacket((packet, _)) => {
                            to_listener.push(serialize(&packet))
                        }
                        ConnectionResult::Connected(packet, made) => {
                            if let Some((packet, _)) = packet {
                                to_listener.push(serialize(&packet));
                            }
                            connection = Some(DuplexConnection::new(made));
                        }
                        other => panic!("caller handshake: {other:?}"),
                    },
                }
            }
            if let Some(connection) = &mut connection {
                if sent < 100 {
                    connection.handle_data_input(
                        now,
                        Some((now, Bytes::from(sent.to_be_bytes().to_vec()))),
                    );
                    sent += 1;
                }
                connection.check_timers(now);
                while let Some((packet, _)) = connection.next_packet(now) {
                    to_listener.push(serialize(&packet));
                }
            }
            now += Duration::from_millis(5);
        }
        assert_eq!(stream_id.as_deref(), Some("cam-1"));
        assert_eq!(received.len(), 100);
        for (i, item) in received.iter().enumerate() {
            assert_eq!(&item[..], &u32::try_from(i).unwrap().to_be_bytes());
        }
        assert_eq!(core.drops().get(DropReason::ExtensionLength), 400);
        assert_eq!(core.drops().get(DropReason::Panic), 0);
        assert_eq!(core.connections(), 1);
    }

    #[test]
    fn pending_handshakes_are_bounded_and_expire() {
        let now = Instant::now();
        let mut core = core(now);
        let induction = fixture("slt-plain-0");
        for port in 0..(MAX_PENDING as u16 + 5) {
            let from = SocketAddr::from(([127, 0, 0, 1], 20000 + port));
            core.handle_datagram(now, from, &induction);
        }
        assert_eq!(core.drops().get(DropReason::TooManyHandshakes), 5);
        core.handle_timeout(now + PENDING_EXPIRY + Duration::from_secs(1));
        assert!(core.sessions.is_empty());
    }

    fn keyed(passphrase: &str, key_size: KeySize) -> ConnInitSettings {
        ConnInitSettings {
            key_settings: Some(KeySettings {
                key_size,
                passphrase: srt_protocol::options::Passphrase::try_from(passphrase.to_string())
                    .unwrap(),
            }),
            ..ConnInitSettings::default()
        }
    }

    /// Our caller core and our listener core in virtual time, datagrams carried between
    /// them; the listener decides with `decide`. Returns the caller's events and what the
    /// listener received.
    fn call_through(
        caller_settings: ConnInitSettings,
        decide: impl Fn(&CallerRequest) -> AccessDecision,
        messages: u32,
    ) -> (Vec<EngineEvent>, Vec<Bytes>) {
        let start = Instant::now();
        let mut now = start;
        let caller_addr: SocketAddr = "127.0.0.1:41000".parse().unwrap();
        let listener_addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let mut listener = core(now);
        let mut caller = PortCore::caller(now, caller_settings, listener_addr, Some("feed".into()));
        let mut caller_events = Vec::new();
        let mut received = Vec::new();
        let mut queue = VecDeque::new();
        let mut sent = 0;
        let mut connected = false;
        for _ in 0..1000 {
            while let Some((datagram, to)) = caller.poll_transmit() {
                assert_eq!(to, listener_addr);
                listener.handle_datagram(now, caller_addr, &datagram);
            }
            listener.handle_timeout(now);
            while let Some(event) = listener.poll_event() {
                match event {
                    EngineEvent::Request(request) => {
                        assert_eq!(request.stream_id.as_deref(), Some("feed"));
                        listener.handle_decision(now, request.peer, decide(&request));
                    }
                    EngineEvent::Received { items, .. } => {
                        received.extend(items.into_iter().map(|(_, b)| b))
                    }
                    _ => {}
                }
            }
            while let Some((datagram, to)) = listener.poll_transmit() {
                assert_eq!(to, caller_addr);
                caller.handle_datagram(now, listener_addr, &datagram);
            }
            // A stranger's handshake must not reach a calling port's state machines.
            caller.handle_datagram(
                now,
                "127.0.0.1:666".parse().unwrap(),
                &fixture("slt-plain-0"),
            );
            if connected && sent < messages {
                queue.push_back((now, Bytes::from(sent.to_be_bytes().to_vec())));
                sent += 1;
                caller.send_data(now, listener_addr, &mut queue);
            }
            caller.handle_timeout(now);
            while let Some(event) = caller.poll_event() {
                connected |= matches!(event, EngineEvent::Connected { .. });
                let failed = matches!(event, EngineEvent::CallFailed { .. });
                caller_events.push(event);
                if failed {
                    return (caller_events, received);
                }
            }
            now += Duration::from_millis(5);
        }
        assert_eq!(caller.drops().get(DropReason::Panic), 0);
        assert_eq!(listener.drops().get(DropReason::Panic), 0);
        (caller_events, received)
    }

    #[test]
    fn our_encrypted_call_connects_to_our_listener_and_delivers_in_order() {
        let (events, received) = call_through(
            keyed("call-passphrase", KeySize::AES256),
            |request| {
                assert_eq!(request.key_size, KeySize::AES256);
                AccessDecision::Accept(keyed("call-passphrase", request.key_size).key_settings)
            },
            200,
        );
        assert!(
            matches!(&events[0], EngineEvent::Connected { stream_id, .. } if stream_id.as_deref() == Some("feed")),
            "{events:?}"
        );
        assert_eq!(received.len(), 200);
        for (i, item) in received.iter().enumerate() {
            assert_eq!(&item[..], &u32::try_from(i).unwrap().to_be_bytes());
        }
    }

    #[test]
    fn a_refused_call_fails_with_the_listeners_reason() {
        let (events, _) = call_through(
            ConnInitSettings::default(),
            |_| {
                AccessDecision::Reject(RejectReason::Core(
                    srt_protocol::packet::CoreRejectReason::BadSecret,
                ))
            },
            0,
        );
        let Some(EngineEvent::CallFailed { reason, .. }) = events.last() else {
            panic!("no failure: {events:?}");
        };
        assert!(reason.contains("wrong or missing passphrase"), "{reason}");
    }

    #[test]
    fn a_call_nobody_answers_fails_after_the_timeout_having_retried() {
        let start = Instant::now();
        let remote: SocketAddr = "127.0.0.1:9002".parse().unwrap();
        let mut caller = PortCore::caller(start, ConnInitSettings::default(), remote, None);
        let mut inductions = 0;
        let mut failure = None;
        let mut now = start;
        while now < start + CALL_TIMEOUT + Duration::from_secs(1) && failure.is_none() {
            now = caller.next_deadline(now);
            caller.handle_timeout(now);
            while caller.poll_transmit().is_some() {
                inductions += 1;
            }
            if let Some(EngineEvent::CallFailed { reason, .. }) = caller.poll_event() {
                failure = Some((now - start, reason));
            }
        }
        let (after, reason) = failure.expect("the call never failed");
        assert!(
            after > CALL_TIMEOUT && after < CALL_TIMEOUT + Duration::from_millis(200),
            "{after:?}"
        );
        assert!(reason.contains("no answer"), "{reason}");
        assert!(inductions >= 10, "only {inductions} handshakes sent");
    }
}
