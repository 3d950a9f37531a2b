//! RTP and plain UDP inputs carrying MPEG-TS: a UDP port (unicast, or a multicast group with
//! an optional source filter), RTP sequence numbers put back in order by `lunora_rtp`'s
//! reorder buffer, the TS fed to the same demux and analyser as SRT (`TsFeed`).
//!
//! Merging (SMPTE 2022-7): the channel's first input owns the merger; the second input's task
//! only receives on its own port and hands its datagrams over through [`MergePaths`], so
//! either input restarts alone and the merged feed picks the path up again.
//!
//! SMPTE 2022-1 FEC (`fec`): two more sockets on the same address, column FEC on port + 2 and
//! row FEC on + 4, feed a `FecDecoder` that also keeps a copy of each media packet; a packet it
//! rebuilds goes into the reorder buffer as if it had arrived. The reorder window is what
//! gives FEC its time: a packet rebuilt after the window gave up on it is counted late and
//! logged with the advice to raise `reorder_ms`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lunora_media::LogThrottle;
use lunora_rtp::{FecDecoder, PAYLOAD_TYPE_MP2T, Released, Resequencer, RtpPacket};
use lunora_ts::AnalyserSettings;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::InputSender;
use crate::stats::{RtpPathStats, RtpStats, StatsHandle};
use crate::ts_feed::TsFeed;

/// A datagram larger than this is cut (and then fails to parse): RTP over UDP stays under the
/// path MTU, and plain UDP TS is 7 × 188 bytes.
pub(crate) const DATAGRAM_MAX: usize = 9_000;
/// Packets the reorder buffer may hold whatever its window: 50 ms at 100 Mbit/s.
const REORDER_PACKETS_MAX: usize = 1_000;
/// Datagrams the second path may have waiting for the merger.
const PATH_QUEUE: usize = 2_048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpFormat {
    /// MPEG-TS over RTP (payload type 33).
    MpegTs,
    /// MPEG-TS straight in UDP datagrams, no RTP header.
    UdpTs,
}

#[derive(Debug, Clone)]
pub struct RtpInputSettings {
    /// The input's id, used in every log line.
    pub id: String,
    /// A unicast address, or a multicast group to join, with the port.
    pub listen: SocketAddr,
    /// Source-specific multicast: only this sender's packets for the group.
    pub source: Option<Ipv4Addr>,
    /// The interface (its address) to join the group on.
    pub interface: Option<Ipv4Addr>,
    pub format: RtpFormat,
    /// How long a missing sequence number is waited for (merged: the path differential
    /// absorbed).
    pub reorder_window: Duration,
    /// No packet for this long: the sender is gone.
    pub input_loss: Duration,
    pub analyser: AnalyserSettings,
    /// Kernel UDP buffer size requested for the port.
    pub udp_buffer_bytes: usize,
    /// SMPTE 2022-1 FEC: the column and row FEC addresses (`MpegTs` only).
    pub fec: Option<[SocketAddr; 2]>,
}

/// One datagram as the second path received it.
#[derive(Debug)]
pub struct PathDatagram {
    pub from: SocketAddr,
    pub at: Instant,
    pub bytes: Vec<u8>,
}

/// The merge pairs of the box: each merging channel's first input attaches a queue under the
/// channel's id; the second input's task sends there.
#[derive(Debug, Clone, Default)]
pub struct MergePaths(Arc<Mutex<HashMap<String, mpsc::Sender<PathDatagram>>>>);

impl MergePaths {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<PathDatagram>>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still whole.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The merger's end for `key`, replacing any earlier one.
    pub fn attach(&self, key: &str) -> mpsc::Receiver<PathDatagram> {
        let (sender, receiver) = mpsc::channel(PATH_QUEUE);
        self.lock().insert(key.to_string(), sender);
        receiver
    }

    /// Hands a datagram to `key`'s merger; false when there is none or it is behind.
    fn forward(&self, key: &str, datagram: PathDatagram) -> bool {
        let sender = self.lock().get(key).cloned();
        sender.is_some_and(|s| s.try_send(datagram).is_ok())
    }
}

/// What an RTP input does with its port.
#[derive(Debug)]
pub enum RtpRole {
    /// Receives alone.
    Single,
    /// The first of a merged pair: merges its own port with the second path's datagrams.
    Merger {
        second: mpsc::Receiver<PathDatagram>,
    },
    /// The second of a merged pair: forwards what it receives to the merger under `key`.
    Path { paths: MergePaths, key: String },
}

/// An RTP input whose port is bound (so start-up can report "address in use" at once).
#[derive(Debug)]
pub struct BoundRtpInput {
    settings: RtpInputSettings,
    socket: UdpSocket,
    /// The column and row FEC sockets.
    fec: Option<[UdpSocket; 2]>,
    stats: StatsHandle,
}

fn bind(settings: &RtpInputSettings, address: SocketAddr) -> std::io::Result<UdpSocket> {
    bind_udp(
        &settings.id,
        address,
        settings.source,
        settings.interface,
        settings.udp_buffer_bytes,
    )
}

/// Receives on `socket` when there is one; never otherwise.
pub(crate) async fn recv_from(
    socket: Option<&UdpSocket>,
    buffer: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buffer).await,
        None => std::future::pending().await,
    }
}

/// A UDP socket on `address`: bound, or joined to the multicast group `address` names
/// (source-specific when `source` is given) on `interface`.
pub(crate) fn bind_udp(
    id: &str,
    address: SocketAddr,
    source: Option<Ipv4Addr>,
    interface: Option<Ipv4Addr>,
    udp_buffer_bytes: usize,
) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_recv_buffer_size(udp_buffer_bytes)?;
    match address.ip() {
        IpAddr::V4(group) if group.is_multicast() => {
            // Several receivers of one group may share the port on a box.
            socket.set_reuse_address(true)?;
            socket.bind(&address.into())?;
            let interface = interface.unwrap_or(Ipv4Addr::UNSPECIFIED);
            match source {
                Some(source) => socket.join_ssm_v4(&source, &group, &interface)?,
                None => socket.join_multicast_v4(&group, &interface)?,
            }
        }
        IpAddr::V6(group) if group.is_multicast() => {
            socket.bind(&address.into())?;
            socket.join_multicast_v6(&group, 0)?;
        }
        _ => socket.bind(&address.into())?,
    }
    let socket = UdpSocket::from_std(socket.into())?;
    lunora_srt::warn_if_buffer_capped(id, &socket, udp_buffer_bytes);
    Ok(socket)
}

impl BoundRtpInput {
    pub fn bind(settings: RtpInputSettings, stats: StatsHandle) -> std::io::Result<Self> {
        let socket = bind(&settings, settings.listen)?;
        let fec = match settings.fec {
            Some([column, row]) => Some([bind(&settings, column)?, bind(&settings, row)?]),
            None => None,
        };
        Ok(BoundRtpInput {
            settings,
            socket,
            fec,
            stats,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap_or(self.settings.listen)
    }

    /// Receives until `shutdown` resolves, sending what it demuxes to `events` tagged with
    /// `index` (a forwarding path sends only its connection and link figures).
    pub async fn run(
        self,
        role: RtpRole,
        index: usize,
        events: InputSender,
        shutdown: impl Future<Output = ()>,
    ) {
        let BoundRtpInput {
            settings,
            socket,
            fec,
            stats,
        } = self;
        let listen = socket.local_addr().unwrap_or(settings.listen);
        let (mut second, forward) = match role {
            RtpRole::Single => (None, None),
            RtpRole::Merger { second } => (Some(second), None),
            RtpRole::Path { paths, key } => (None, Some((paths, key))),
        };
        let mut receiver = Receiver::new(&settings, index, events, stats, second.is_some());
        let mut buffer = vec![0u8; DATAGRAM_MAX];
        let (column, row) = match &fec {
            Some([column, row]) => (Some(column), Some(row)),
            None => (None, None),
        };
        let mut fec_buffers = [vec![0u8; DATAGRAM_MAX], vec![0u8; DATAGRAM_MAX]];
        let [column_buffer, row_buffer] = &mut fec_buffers;
        let mut publish = tokio::time::interval(Duration::from_millis(250));
        tokio::pin!(shutdown);
        info!(input = %settings.id, listen = %listen, format = ?settings.format, fec = ?settings.fec, "RTP input listening");
        loop {
            let deadline = receiver.next_deadline();
            tokio::select! {
                _ = &mut shutdown => break,
                received = socket.recv_from(&mut buffer) => match received {
                    Ok((length, from)) => {
                        let now = Instant::now();
                        let bytes = &buffer[..length];
                        match &forward {
                            Some((paths, key)) => receiver.forward(paths, key, from, now, bytes),
                            None => receiver.datagram(0, from, now, bytes),
                        }
                    }
                    // ICMP errors and the like: the port stays open.
                    Err(e) => receiver.receive_error(&e),
                },
                received = recv_from(column, column_buffer) => match received {
                    Ok((length, from)) => receiver.fec_datagram(from, Instant::now(), &column_buffer[..length]),
                    Err(e) => receiver.receive_error(&e),
                },
                received = recv_from(row, row_buffer) => match received {
                    Ok((length, from)) => receiver.fec_datagram(from, Instant::now(), &row_buffer[..length]),
                    Err(e) => receiver.receive_error(&e),
                },
                datagram = async {
                    match &mut second {
                        Some(second) => second.recv().await,
                        None => std::future::pending().await,
                    }
                } => match datagram {
                    Some(d) => receiver.datagram(1, d.from, d.at, &d.bytes),
                    None => second = None,
                },
                _ = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                } => receiver.release(Instant::now()),
                _ = publish.tick() => receiver.tick(Instant::now()),
            }
        }
        info!(input = %settings.id, "RTP input stopped");
    }
}

struct Receiver {
    id: String,
    format: RtpFormat,
    feed: TsFeed,
    resequencer: Resequencer<Vec<u8>>,
    origin: Instant,
    input_loss: Duration,
    /// The sender's address while packets come.
    peer: Option<SocketAddr>,
    last_packet: Option<Instant>,
    rtp: RtpStats,
    /// Datagrams the second path could not hand to the merger (none attached, or behind).
    forward_failed: u64,
    forwarded_bytes: u64,
    last_error_log: Option<Instant>,
    /// SMPTE 2022-1 FEC, when the input takes it.
    fec: Option<FecDecoder>,
    fec_logs: LogThrottle<&'static str>,
    /// Rebuilt packets the reorder buffer counted as reordered (they come after later
    /// ones by nature): taken out of `packets_reordered`, which is about the network.
    fec_reordered: u64,
}

impl Receiver {
    fn new(
        settings: &RtpInputSettings,
        index: usize,
        events: InputSender,
        stats: StatsHandle,
        merged: bool,
    ) -> Self {
        let paths = if merged { 2 } else { 1 };
        Receiver {
            id: settings.id.clone(),
            format: settings.format,
            feed: TsFeed::new(
                settings.id.clone(),
                index,
                settings.analyser,
                events,
                stats,
                |s| {
                    s.rtp
                        .as_ref()
                        .map_or((0, 0), |r| (r.packets_received, r.packets_lost))
                },
            ),
            resequencer: Resequencer::new(paths, settings.reorder_window, REORDER_PACKETS_MAX),
            origin: Instant::now(),
            input_loss: settings.input_loss,
            peer: None,
            last_packet: None,
            rtp: RtpStats::default(),
            forward_failed: 0,
            forwarded_bytes: 0,
            last_error_log: None,
            // Media kept for recovery outlives the window a little: a column's first packets
            // arrive up to a matrix before the loss the window waits on.
            fec: settings
                .fec
                .map(|_| FecDecoder::new(settings.reorder_window * 2 + Duration::from_millis(100))),
            fec_logs: LogThrottle::new(Duration::from_secs(10)),
            fec_reordered: 0,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.resequencer.next_deadline().map(|at| self.origin + at)
    }

    fn arrived(&mut self, from: SocketAddr, now: Instant) {
        self.last_packet = Some(now);
        if self.peer.is_none() {
            info!(input = %self.id, peer = %from, "RTP input receiving");
            self.peer = Some(from);
            self.feed.connected(from.to_string());
        }
    }

    fn invalid(&mut self, reason: &'static str, from: SocketAddr, why: &dyn std::fmt::Display) {
        *self.rtp.packets_invalid.entry(reason).or_default() += 1;
        if self.log_allowed() {
            warn!(input = %self.id, peer = %from, "dropped a datagram that is not what this input takes: {why} (further ones are counted, one line per 10 s)");
        }
    }

    fn log_allowed(&mut self) -> bool {
        let now = Instant::now();
        let allowed = self
            .last_error_log
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10));
        if allowed {
            self.last_error_log = Some(now);
        }
        allowed
    }

    fn receive_error(&mut self, error: &std::io::Error) {
        if self.log_allowed() {
            warn!(input = %self.id, "UDP receive error: {error}");
        }
    }

    fn datagram(&mut self, path: usize, from: SocketAddr, now: Instant, bytes: &[u8]) {
        if self.format == RtpFormat::UdpTs {
            self.arrived(from, now);
            self.feed.handle_bytes(now, bytes);
            return;
        }
        let packet = match RtpPacket::parse(bytes) {
            Ok(packet) => packet,
            Err(e) => return self.invalid(e.name(), from, &e),
        };
        if packet.payload_type != PAYLOAD_TYPE_MP2T {
            let why = format!(
                "RTP payload type {}, not 33 (MPEG-TS); is the sender set to rtp_mpegts?",
                packet.payload_type
            );
            return self.invalid("payload_type", from, &why);
        }
        self.arrived(from, now);
        let at = now.saturating_duration_since(self.origin);
        self.resequencer
            .push(at, path, packet.sequence, packet.payload.to_vec());
        if let Some(fec) = &mut self.fec {
            fec.push_media(at, packet.sequence, bytes);
            self.take_recovered(at);
        }
        self.release(now);
    }

    /// A column or row FEC datagram.
    fn fec_datagram(&mut self, from: SocketAddr, now: Instant, bytes: &[u8]) {
        let at = now.saturating_duration_since(self.origin);
        let Some(fec) = &mut self.fec else {
            return;
        };
        if let Err(e) = fec.push_fec(at, bytes)
            && let Some(left_out) = self.fec_logs.due(at, "invalid")
        {
            warn!(input = %self.id, peer = %from, reason = e.name(), left_out, "dropped an FEC packet: {e} (counted in fec_packets_invalid; one line per 10 s)");
        }
        self.take_recovered(at);
        self.release(now);
    }

    /// Puts what FEC rebuilt into the reorder buffer, as if it had just arrived.
    fn take_recovered(&mut self, at: Duration) {
        let Some(fec) = &mut self.fec else {
            return;
        };
        while let Some(datagram) = fec.poll() {
            let Ok(packet) = RtpPacket::parse(&datagram) else {
                *self
                    .rtp
                    .fec_packets_invalid
                    .entry("rebuilt_not_rtp")
                    .or_default() += 1;
                continue;
            };
            let before = self.resequencer.path_stats()[0];
            self.resequencer
                .push(at, 0, packet.sequence, packet.payload.to_vec());
            let after = self.resequencer.path_stats()[0];
            self.fec_reordered += after.reordered - before.reordered;
            if after.late > before.late {
                self.rtp.packets_recovered_late += 1;
                let matrix = fec.matrix();
                if let Some(left_out) = self.fec_logs.due(at, "late") {
                    warn!(input = %self.id, left_out, columns = ?matrix.columns, rows = ?matrix.rows, "FEC rebuilt a packet after the reorder window had given it up as lost: reorder_ms is shorter than one FEC matrix takes to arrive; raise it (counted in packets_recovered_late; one line per 10 s)");
                }
            } else {
                self.rtp.packets_recovered += 1;
            }
        }
    }

    /// The second path of a merged pair: checked, counted, handed to the merger.
    fn forward(
        &mut self,
        paths: &MergePaths,
        key: &str,
        from: SocketAddr,
        now: Instant,
        bytes: &[u8],
    ) {
        if let Err(e) = RtpPacket::parse(bytes) {
            return self.invalid(e.name(), from, &e);
        }
        self.arrived(from, now);
        self.rtp.packets_received += 1;
        self.forwarded_bytes += bytes.len() as u64;
        let datagram = PathDatagram {
            from,
            at: now,
            bytes: bytes.to_vec(),
        };
        if !paths.forward(key, datagram) {
            self.forward_failed += 1;
            if self.log_allowed() {
                warn!(input = %self.id, dropped = self.forward_failed, "the merging input is not running or is behind; this path's packets are dropped");
            }
        }
    }

    fn release(&mut self, now: Instant) {
        let at = now.saturating_duration_since(self.origin);
        while let Some(released) = self.resequencer.poll(at) {
            match released {
                Released::Packet(payload) => self.feed.handle_bytes(now, &payload),
                // The demux sees the continuity break itself; the count is in the stats.
                Released::Lost(_) => {}
            }
        }
    }

    /// Notices a silent sender and publishes the statistics.
    fn tick(&mut self, now: Instant) {
        if let Some(fec) = &mut self.fec {
            fec.expire(now.saturating_duration_since(self.origin));
        }
        self.release(now);
        if let (Some(peer), Some(last)) = (self.peer, self.last_packet)
            && now.duration_since(last) >= self.input_loss
        {
            info!(input = %self.id, %peer, "RTP input: no packets for {} ms", self.input_loss.as_millis());
            self.peer = None;
            self.feed.disconnected();
        }
        if self.format == RtpFormat::MpegTs {
            self.copy_stats();
        }
        self.feed.publish();
    }

    fn copy_stats(&mut self) {
        let totals = self.resequencer.stats();
        let paths = self.resequencer.path_stats();
        let rtp = &mut self.rtp;
        // A forwarding path counts what it received itself; it runs no resequencer.
        if totals.released > 0 || paths.iter().any(|p| p.received > 0) {
            rtp.packets_received = totals.released;
            rtp.packets_lost = totals.lost;
            rtp.packets_reordered = paths
                .iter()
                .map(|p| p.reordered)
                .sum::<u64>()
                .saturating_sub(self.fec_reordered);
            rtp.packets_duplicate = paths.iter().map(|p| p.duplicates).sum();
            rtp.packets_late = paths.iter().map(|p| p.late).sum();
            rtp.sequence_resets = totals.resets;
        }
        if let Some(fec) = &self.fec {
            let stats = fec.stats();
            rtp.fec_packets_received = stats.received;
            rtp.fec_packets_invalid
                .extend(stats.invalid.iter().map(|(k, v)| (*k, *v)));
            let matrix = fec.matrix();
            rtp.fec_columns = matrix.columns;
            rtp.fec_rows = matrix.rows;
        }
        if paths.len() > 1 {
            rtp.paths = paths
                .iter()
                .zip(["main", "backup"])
                .map(|(p, path)| RtpPathStats {
                    path,
                    packets_received: p.received,
                    packets_lost: p.lost,
                    packets_first: p.first,
                    packets_reordered: p.reordered,
                    packets_duplicate: p.duplicates,
                    packets_late: p.late,
                })
                .collect();
            rtp.delay_difference_ms = totals.delay_difference_ms;
        }
        let rtp = rtp.clone();
        let last_packet = self.last_packet;
        let forwarded_bytes = self.forwarded_bytes;
        self.feed.stats.update(|s| {
            s.rtp = Some(rtp);
            s.bytes_total = s.bytes_total.max(forwarded_bytes);
            if last_packet.is_some() {
                s.last_packet_at = last_packet;
            }
        });
    }
}
