//! The RTP input with `format = "sdp"`: H.264 and AAC (`mpeg4-generic` or `MP4A-LATM`) each on
//! its own UDP port, as an SDP describes them. One RTP socket per stream, plus its RTCP port (RTP port + 1) when that is
//! free, whose sender reports align audio with video; everything else is `lunora_rtp`'s
//! `SdpSession`, fed from here with datagrams and the clock.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use lunora_media::{Codec, keyframe_video_format};
use lunora_rtp::{Placement, SdpSession, StreamSpec};
use tokio::net::UdpSocket;
use tracing::{info, warn};

use crate::rtp::{DATAGRAM_MAX, bind_udp, recv_from};
use crate::stats::{
    BitrateMeter, ConnectionState, RtpStats, RtpStreamInfo, StatsHandle, VideoInfo,
};
use crate::{InputEvent, InputSender, SendError};

/// Packets each stream's reorder buffer may hold whatever its window.
const REORDER_PACKETS_MAX: usize = 1_000;
/// How long a stream's first frames wait for its RTCP sender report before being placed by
/// arrival time. ffmpeg sends one ahead of its first RTP packet, so it normally costs nothing.
const REPORT_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct SdpInputSettings {
    /// The input's id, used in every log line.
    pub id: String,
    /// The address the streams' ports are opened on: a local address or a multicast group.
    pub address: IpAddr,
    pub source: Option<Ipv4Addr>,
    pub interface: Option<Ipv4Addr>,
    /// The SDP's streams this input receives (video first).
    pub streams: Vec<StreamSpec>,
    pub reorder_window: Duration,
    pub input_loss: Duration,
    pub udp_buffer_bytes: usize,
}

#[derive(Debug)]
struct Ports {
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
}

/// An SDP input whose RTP ports are bound (so start-up can report "address in use" at once).
#[derive(Debug)]
pub struct BoundSdpInput {
    settings: SdpInputSettings,
    ports: Vec<Ports>,
    stats: StatsHandle,
}

impl BoundSdpInput {
    pub fn bind(settings: SdpInputSettings, stats: StatsHandle) -> std::io::Result<Self> {
        let open = |port: u16| {
            bind_udp(
                &settings.id,
                SocketAddr::new(settings.address, port),
                settings.source,
                settings.interface,
                settings.udp_buffer_bytes,
            )
        };
        let mut ports = Vec::with_capacity(settings.streams.len());
        for stream in &settings.streams {
            let rtp = open(stream.port)?;
            let rtcp = match stream.port.checked_add(1).map(open) {
                Some(Ok(socket)) => Some(socket),
                Some(Err(e)) => {
                    warn!(input = %settings.id, port = stream.port.saturating_add(1),
                        "cannot receive RTCP ({e}); this stream is aligned by arrival time instead of the sender's reports");
                    None
                }
                None => None,
            };
            ports.push(Ports { rtp, rtcp });
        }
        Ok(BoundSdpInput {
            settings,
            ports,
            stats,
        })
    }

    /// The first stream's RTP address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.ports.first().and_then(|p| p.rtp.local_addr().ok())
    }

    /// Receives until `shutdown` resolves, sending frames to `events` tagged with `index`.
    pub async fn run(self, index: usize, events: InputSender, shutdown: impl Future<Output = ()>) {
        let BoundSdpInput {
            settings,
            ports,
            stats,
        } = self;
        let all_rtcp = ports.iter().all(|p| p.rtcp.is_some());
        let report_wait = if all_rtcp {
            REPORT_WAIT
        } else {
            Duration::ZERO
        };
        let session = SdpSession::new(
            settings.streams.clone(),
            settings.reorder_window,
            REORDER_PACKETS_MAX,
            report_wait,
        );
        let mut receiver = Receiver::new(&settings, session, index, events, stats);
        let socket = |stream: usize, rtcp: bool| {
            ports
                .get(stream)
                .and_then(|p| if rtcp { p.rtcp.as_ref() } else { Some(&p.rtp) })
        };
        let [mut b0, mut b1, mut b2, mut b3] = std::array::from_fn(|_| vec![0u8; DATAGRAM_MAX]);
        let mut publish = tokio::time::interval(Duration::from_millis(250));
        tokio::pin!(shutdown);
        let listening: Vec<String> = settings
            .streams
            .iter()
            .map(|s| format!("{} on port {}", s.packetization(), s.port))
            .collect();
        info!(input = %settings.id, address = %settings.address, "RTP (SDP) input listening: {}", listening.join(", "));
        loop {
            let deadline = receiver.next_deadline();
            tokio::select! {
                _ = &mut shutdown => break,
                r = recv_from(socket(0, false), &mut b0) => receiver.rtp(0, r, &b0),
                r = recv_from(socket(1, false), &mut b1) => receiver.rtp(1, r, &b1),
                r = recv_from(socket(0, true), &mut b2) => receiver.rtcp(0, r, &b2),
                r = recv_from(socket(1, true), &mut b3) => receiver.rtcp(1, r, &b3),
                _ = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                } => receiver.poll(Instant::now()),
                _ = publish.tick() => receiver.tick(Instant::now()),
            }
        }
        info!(input = %settings.id, "RTP (SDP) input stopped");
    }
}

struct Receiver {
    id: String,
    session: SdpSession,
    origin: Instant,
    index: usize,
    events: InputSender,
    stats: StatsHandle,
    input_loss: Duration,
    /// The sender's address while packets come.
    peer: Option<SocketAddr>,
    last_packet: Option<Instant>,
    rtp: RtpStats,
    bitrate: BitrateMeter,
    /// Bytes since the totals were last published.
    unpublished_bytes: u64,
    last_error_log: Option<Instant>,
    /// Each stream's name and how it was last put on the timeline, to log when that changes.
    placed: Vec<(&'static str, u16, Option<Placement>)>,
}

impl Receiver {
    fn new(
        settings: &SdpInputSettings,
        session: SdpSession,
        index: usize,
        events: InputSender,
        stats: StatsHandle,
    ) -> Self {
        let now = Instant::now();
        Receiver {
            id: settings.id.clone(),
            session,
            origin: now,
            index,
            events,
            stats,
            input_loss: settings.input_loss,
            peer: None,
            last_packet: None,
            rtp: RtpStats {
                streams: settings
                    .streams
                    .iter()
                    .map(|s| RtpStreamInfo {
                        media: s.media(),
                        port: s.port,
                        packetization: s.packetization(),
                    })
                    .collect(),
                ..RtpStats::default()
            },
            bitrate: BitrateMeter::new(now),
            unpublished_bytes: 0,
            last_error_log: None,
            placed: settings
                .streams
                .iter()
                .map(|s| (s.media(), s.port, None))
                .collect(),
        }
    }

    fn since_origin(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.session.next_deadline().map(|at| self.origin + at)
    }

    fn log_allowed(&mut self, now: Instant) -> bool {
        let allowed = self
            .last_error_log
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10));
        if allowed {
            self.last_error_log = Some(now);
        }
        allowed
    }

    fn rtp(
        &mut self,
        stream: usize,
        received: std::io::Result<(usize, SocketAddr)>,
        buffer: &[u8],
    ) {
        let now = Instant::now();
        let (length, from) = match received {
            Ok(received) => received,
            // ICMP errors and the like: the port stays open.
            Err(e) => {
                if self.log_allowed(now) {
                    warn!(input = %self.id, "UDP receive error: {e}");
                }
                return;
            }
        };
        let datagram = buffer.get(..length).unwrap_or(buffer);
        if let Err(e) = self.session.rtp(stream, self.since_origin(now), datagram) {
            *self.rtp.packets_invalid.entry(e.name()).or_default() += 1;
            if self.log_allowed(now) {
                warn!(input = %self.id, peer = %from, "dropped a datagram that is not what the SDP describes: {e} (further ones are counted, one line per 10 s)");
            }
            return;
        }
        let length = u64::try_from(length).unwrap_or(u64::MAX);
        self.bitrate.count(length);
        self.unpublished_bytes += length;
        self.last_packet = Some(now);
        if self.peer.is_none() {
            self.connected(from);
        }
        self.forward_frames();
    }

    fn rtcp(
        &mut self,
        stream: usize,
        received: std::io::Result<(usize, SocketAddr)>,
        buffer: &[u8],
    ) {
        // Receive errors and what is not a sender report are of no consequence: the reports
        // only refine the alignment.
        if let Ok((length, _)) = received {
            let now = self.since_origin(Instant::now());
            let datagram = buffer.get(..length).unwrap_or(buffer);
            if self.session.rtcp(stream, now, datagram) {
                self.forward_frames();
            }
        }
    }

    fn connected(&mut self, from: SocketAddr) {
        info!(input = %self.id, peer = %from, "RTP (SDP) input receiving");
        self.peer = Some(from);
        let peer = from.to_string();
        {
            let mut stats = self.stats.lock();
            stats.state = ConnectionState::Connected;
            stats.peer = Some(peer.clone());
            stats.connections_total += 1;
        }
        let _ = self.events.send(self.index, InputEvent::Connected { peer });
        let _ = self
            .events
            .send(self.index, InputEvent::Program(self.session.program()));
    }

    fn poll(&mut self, now: Instant) {
        self.session.poll(self.since_origin(now));
        self.forward_frames();
    }

    fn forward_frames(&mut self) {
        self.log_placements();
        let (mut video, mut audio, mut dropped) = (0, 0, 0);
        let mut format = None;
        while let Some(frame) = self.session.poll_frame() {
            if frame.codec == Codec::H264 {
                video += 1;
                if frame.keyframe {
                    format = keyframe_video_format(frame.codec, &frame.data)
                        .map(|f| VideoInfo::new(frame.codec.name(), f))
                        .or(format);
                }
            } else {
                audio += 1;
            }
            if self.events.send(self.index, InputEvent::Frame(frame)) == Err(SendError::Full) {
                dropped += 1;
            }
        }
        if video + audio > 0 {
            let mut stats = self.stats.lock();
            stats.frames_total.video += video;
            stats.frames_total.audio += audio;
            stats.frames_dropped_total += dropped;
            if format.is_some() {
                stats.video = format;
            }
        }
    }

    fn log_placements(&mut self) {
        for (index, (stream, port, logged)) in self.placed.iter_mut().enumerate() {
            let placement = self.session.placement(index);
            if placement == *logged {
                continue;
            }
            *logged = placement;
            match placement {
                Some(Placement::SenderReport) => {
                    info!(input = %self.id, stream, "{stream} placed by its RTCP sender report: audio and video are aligned as the sender sampled them")
                }
                Some(Placement::Arrival) => {
                    warn!(input = %self.id, stream, "{stream} placed by arrival time: no usable RTCP sender report on port {} in time; audio/video alignment is only as good as the packets' arrival", u32::from(*port) + 1)
                }
                None => {}
            }
        }
    }

    /// Notices a silent sender and publishes the statistics.
    fn tick(&mut self, now: Instant) {
        self.poll(now);
        if let Some(e) = self.session.take_audio_error()
            && self.log_allowed(now)
        {
            warn!(input = %self.id, "dropped MP4A-LATM audio: {e} (counted in pes_dropped_total; one line per 10 s)");
        }
        if let (Some(peer), Some(last)) = (self.peer, self.last_packet)
            && now.duration_since(last) >= self.input_loss
        {
            info!(input = %self.id, %peer, "RTP (SDP) input: no packets for {} ms", self.input_loss.as_millis());
            self.peer = None;
            self.session.replace();
            {
                let mut stats = self.stats.lock();
                stats.state = ConnectionState::Waiting;
                stats.peer = None;
            }
            let _ = self.events.send(self.index, InputEvent::Disconnected);
        }
        self.publish(now);
    }

    fn publish(&mut self, now: Instant) {
        let totals = self.session.stats();
        let rtp = &mut self.rtp;
        rtp.packets_received = totals.packets_received;
        rtp.packets_lost = totals.packets_lost;
        rtp.packets_reordered = totals.packets_reordered;
        rtp.packets_duplicate = totals.packets_duplicate;
        rtp.packets_late = totals.packets_late;
        rtp.sequence_resets = totals.sequence_resets;
        let mut stats = self.stats.lock();
        stats.rtp = Some(self.rtp.clone());
        stats.bytes_total += std::mem::take(&mut self.unpublished_bytes);
        // Access units lost with a packet never reach the channel: reported as dropped data.
        stats.pes_dropped_total = totals.frames_dropped;
        if let Some(last) = self.last_packet {
            stats.last_packet_at = Some(last);
        }
        self.bitrate
            .update(now, self.last_packet, &mut stats.bitrate_bps);
        if stats.state == ConnectionState::Connected {
            let health = InputEvent::Stats {
                packets_received: totals.packets_received,
                packets_lost: totals.packets_lost,
                tr101290_priority1: 0,
            };
            let _ = self.events.send(self.index, health);
        }
    }
}
