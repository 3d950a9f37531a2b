//! An SDP session: H.264 video (RFC 6184) and AAC audio (RFC 3640 `mpeg4-generic` or RFC 6416
//! `MP4A-LATM`) on their own RTP ports,
//! put back in order, depacketized and placed on one 90 kHz timeline.
//!
//! Timeline: each stream's 32-bit RTP timestamps are extended across the wrap and scaled from
//! the stream's clock rate to 90 kHz. Where a stream starts on the timeline (its anchor) is
//! taken from its RTCP sender report when one has come (so audio and video sit exactly where
//! the sender sampled them), otherwise from when its first frame arrived. A stream's first
//! frames wait up to `report_wait` for a sender report before falling back to arrival time.
//! RTP carries presentation times only: H.264 decode times come from [`DecodeTimes`], with the
//! reordering depth the stream's SPS states.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use lunora_media::{AudioSpecificConfig, Codec, Frame, MpegTime, Program, Track, TrackId};
use thiserror::Error;

use crate::dts::{DecodeTimes, reorder_depth};
use crate::sdp::{Media, SessionDescription};
use crate::{
    AacDepacketizer, AacFrame, AacMode, H264Depacketizer, HeaderError, LatmConfig,
    LatmDepacketizer, LatmError, Released, Resequencer, ResequencerStats, RtpPacket, SenderReport,
};

const VIDEO_TRACK: TrackId = TrackId(1);
const AUDIO_TRACK: TrackId = TrackId(2);

const TICKS_PER_SECOND: i128 = 90_000;
/// Where the timeline starts: a stream sampled a little before the first one anchored (audio
/// just ahead of the first video frame) still gets a positive time.
const TIMELINE_START: i64 = 10 * 90_000;
/// A timestamp step larger than this (either way) is not a stream going on but a sender that
/// restarted or jumped: the stream is placed again by arrival time.
const JUMP_MAX: i128 = 10 * TICKS_PER_SECOND;
/// Packets of another SSRC are refused until the current one has been silent this long: a
/// second sender on the port cannot disrupt the first, and a restarted one is taken at once.
const SSRC_HOLD: Duration = Duration::from_secs(1);
/// Frames, and bytes of them, a stream may hold while it waits for a sender report; past
/// either it is placed by arrival time at once.
const PENDING_MAX: usize = 256;
const PENDING_BYTES_MAX: usize = 32 << 20;

/// Why an SDP has nothing this input can receive, or a stream in it cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamError {
    #[error(
        "no H.264 video or AAC (mpeg4-generic or MP4A-LATM) audio stream; the SDP has {0} (ffmpeg: -c:v libx264 / -c:a aac -f rtp)"
    )]
    NoneUsable(String),
    #[error("the AAC stream's fmtp has no usable config= (AudioSpecificConfig in hex)")]
    AacConfig,
    #[error(
        "the AAC stream's fmtp has no sizelength= (only mode=AAC-hbr/AAC-lbr AU headers are read)"
    )]
    AacMode,
    #[error("the MP4A-LATM stream's config= is not hex (a StreamMuxConfig)")]
    LatmHex,
    #[error(
        "the MP4A-LATM stream has cpresent=0 but no config= (the StreamMuxConfig in hex); give it, or send it in band with cpresent=1"
    )]
    LatmNoConfig,
    #[error("the MP4A-LATM stream's cpresent is {0:?}; it must be 0 or 1")]
    LatmCpresent(String),
    #[error("the MP4A-LATM stream's StreamMuxConfig (config=) cannot be used: {0}")]
    LatmConfig(LatmError),
    #[error("the video and audio streams are both on port {0}; each needs its own")]
    SamePort(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamKind {
    /// H.264 with its parameter sets from `sprop-parameter-sets` (NAL units without start
    /// codes).
    H264 { parameter_sets: Vec<Vec<u8>> },
    Aac {
        config: AudioSpecificConfig,
        mode: AacMode,
    },
    /// AAC as `MP4A-LATM`: the SDP's StreamMuxConfig, if it gives one, and whether one also
    /// comes in band (`cpresent=1`).
    Latm {
        config: Option<LatmConfig>,
        in_band: bool,
    },
}

/// One stream of the SDP that this input receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub port: u16,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub kind: StreamKind,
}

impl StreamSpec {
    pub fn is_video(&self) -> bool {
        matches!(self.kind, StreamKind::H264 { .. })
    }

    /// `video` or `audio`.
    pub fn media(&self) -> &'static str {
        if self.is_video() { "video" } else { "audio" }
    }

    fn track(&self) -> (TrackId, Codec) {
        match self.kind {
            StreamKind::H264 { .. } => (VIDEO_TRACK, Codec::H264),
            StreamKind::Aac { .. } | StreamKind::Latm { .. } => (AUDIO_TRACK, Codec::AacAdts),
        }
    }

    /// The codec and RTP packetization, for logs and the input's status.
    pub fn packetization(&self) -> &'static str {
        match self.kind {
            StreamKind::H264 { .. } => "H.264 (RFC 6184)",
            StreamKind::Aac { .. } => "AAC mpeg4-generic (RFC 3640)",
            StreamKind::Latm { in_band: false, .. } => "AAC MP4A-LATM (RFC 6416)",
            StreamKind::Latm { in_band: true, .. } => "AAC MP4A-LATM (RFC 6416), config in band",
        }
    }

    fn from_media(media: &Media) -> Option<Result<StreamSpec, StreamError>> {
        let kind = match (media.kind.as_str(), media.encoding.as_str()) {
            ("video", "H264") => Ok(StreamKind::H264 {
                parameter_sets: media.sprop_parameter_sets(),
            }),
            ("audio", "MPEG4-GENERIC") => aac_kind(media),
            ("audio", "MP4A-LATM") => latm_kind(media),
            _ => return None,
        };
        Some(kind.map(|kind| StreamSpec {
            port: media.port,
            payload_type: media.payload_type,
            clock_rate: media.clock_rate,
            kind,
        }))
    }
}

fn aac_kind(media: &Media) -> Result<StreamKind, StreamError> {
    let config = media
        .config()
        .and_then(|c| AudioSpecificConfig::parse(&c))
        .ok_or(StreamError::AacConfig)?;
    let size_length = media
        .fmtp_number("sizelength")
        .ok_or(StreamError::AacMode)?;
    let index_length = media.fmtp_number("indexlength").unwrap_or(0);
    let mode = AacMode {
        size_length,
        index_length,
        index_delta_length: media
            .fmtp_number("indexdeltalength")
            .unwrap_or(index_length),
    };
    Ok(StreamKind::Aac { config, mode })
}

/// RFC 6416: `cpresent` defaults to 1 (config in band); with 0 the SDP's `config` is the only
/// one. `object` and `profile-level-id` are not needed: the StreamMuxConfig says it all.
fn latm_kind(media: &Media) -> Result<StreamKind, StreamError> {
    let in_band = match media.fmtp.get("cpresent").map(String::as_str) {
        None | Some("1") => true,
        Some("0") => false,
        Some(other) => return Err(StreamError::LatmCpresent(other.to_string())),
    };
    let config = match media.fmtp.get("config") {
        None => None,
        Some(_) => {
            let bytes = media.config().ok_or(StreamError::LatmHex)?;
            Some(LatmConfig::parse(&bytes).map_err(StreamError::LatmConfig)?)
        }
    };
    if config.is_none() && !in_band {
        return Err(StreamError::LatmNoConfig);
    }
    Ok(StreamKind::Latm { config, in_band })
}

/// The streams of `sdp` this input receives: the first H.264 video and the first AAC audio
/// stream (others are ignored).
pub fn usable_streams(sdp: &SessionDescription) -> Result<Vec<StreamSpec>, StreamError> {
    let mut video = None;
    let mut audio = None;
    for media in &sdp.media {
        let Some(spec) = StreamSpec::from_media(media) else {
            continue;
        };
        let spec = spec?;
        let slot = if spec.is_video() {
            &mut video
        } else {
            &mut audio
        };
        if slot.is_none() {
            *slot = Some(spec);
        }
    }
    let streams: Vec<StreamSpec> = video.into_iter().chain(audio).collect();
    match &streams[..] {
        [] => {
            let found: Vec<String> = sdp
                .media
                .iter()
                .map(|m| format!("{} {}/{}", m.kind, m.encoding, m.clock_rate))
                .collect();
            Err(StreamError::NoneUsable(found.join(", ")))
        }
        [a, b] if a.port == b.port => Err(StreamError::SamePort(a.port)),
        _ => Ok(streams),
    }
}

/// How a stream was put on the session's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// By its RTCP sender report: exactly where the sender sampled it.
    SenderReport,
    /// By when its first frame arrived (no report came in time, or it was unusable).
    Arrival,
}

/// Why a datagram on an RTP port was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Rejected {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("RTP payload type {found}, but the SDP gives {expected} for this port")]
    PayloadType { found: u8, expected: u8 },
    #[error(
        "RTP from SSRC {found:#010x} while SSRC {current:#010x} is sending; another sender is taken after 1 s of silence"
    )]
    Ssrc { found: u32, current: u32 },
}

impl Rejected {
    /// A short label for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Rejected::Header(e) => e.name(),
            Rejected::PayloadType { .. } => "payload_type",
            Rejected::Ssrc { .. } => "ssrc",
        }
    }
}

/// Resequencer and depacketizer totals over every stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SessionStats {
    pub packets_received: u64,
    pub packets_lost: u64,
    pub packets_reordered: u64,
    pub packets_duplicate: u64,
    pub packets_late: u64,
    pub sequence_resets: u64,
    /// Access units / audio frames dropped because a packet of theirs was lost or malformed.
    pub frames_dropped: u64,
}

impl SessionStats {
    fn add(&mut self, resequencer: &Resequencer<Packet>) {
        let ResequencerStats {
            released,
            lost,
            resets,
            ..
        } = resequencer.stats();
        self.packets_received += released;
        self.packets_lost += lost;
        self.sequence_resets += resets;
        for path in resequencer.path_stats() {
            self.packets_reordered += path.reordered;
            self.packets_duplicate += path.duplicates;
            self.packets_late += path.late;
        }
    }

    fn merge(&mut self, other: &SessionStats) {
        self.packets_received += other.packets_received;
        self.packets_lost += other.packets_lost;
        self.packets_reordered += other.packets_reordered;
        self.packets_duplicate += other.packets_duplicate;
        self.packets_late += other.packets_late;
        self.sequence_resets += other.sequence_resets;
        self.frames_dropped += other.frames_dropped;
    }
}

struct Packet {
    marker: bool,
    timestamp: u32,
    payload: Vec<u8>,
}

enum Depacketizer {
    H264(H264Depacketizer),
    Aac(AacDepacketizer),
    Latm(LatmDepacketizer),
}

impl Depacketizer {
    fn new(spec: &StreamSpec) -> Depacketizer {
        match &spec.kind {
            StreamKind::H264 { parameter_sets } => {
                Depacketizer::H264(H264Depacketizer::new(parameter_sets))
            }
            StreamKind::Aac { config, mode } => {
                Depacketizer::Aac(AacDepacketizer::new(*config, *mode))
            }
            StreamKind::Latm { config, in_band } => {
                Depacketizer::Latm(LatmDepacketizer::new(*config, *in_band, spec.clock_rate))
            }
        }
    }
}

struct Pending {
    extended: i64,
    arrived: Duration,
    keyframe: bool,
    data: Vec<u8>,
}

/// Extends 32-bit RTP timestamps to a continuous count across the wrap.
#[derive(Debug, Default, Clone, Copy)]
struct RtpUnwrap {
    last: Option<(u32, i64)>,
}

impl RtpUnwrap {
    fn extend(&mut self, timestamp: u32) -> i64 {
        let extended = match self.last {
            None => i64::from(timestamp),
            Some((wire, extended)) => extended + rtp_distance(timestamp, wire),
        };
        self.last = Some((timestamp, extended));
        extended
    }
}

/// `later - earlier` for 32-bit RTP timestamps, the short way round the wrap.
fn rtp_distance(later: u32, earlier: u32) -> i64 {
    let forward = i64::from(later.wrapping_sub(earlier));
    if forward >= 1 << 31 {
        forward - (1 << 32)
    } else {
        forward
    }
}

/// `ticks` of a `rate` Hz clock in 90 kHz ticks (floored).
fn to_90khz(ticks: i128, rate: u32) -> i128 {
    (ticks * TICKS_PER_SECOND).div_euclid(i128::from(rate.max(1)))
}

struct Stream {
    spec: StreamSpec,
    resequencer: Resequencer<Packet>,
    depacketizer: Depacketizer,
    ssrc: Option<u32>,
    last_packet: Option<Duration>,
    unwrap: RtpUnwrap,
    report: Option<SenderReport>,
    /// (extended RTP timestamp, timeline position) of the frame the stream was placed by.
    anchor: Option<(i64, i64)>,
    placed_by: Option<Placement>,
    last: Option<i64>,
    pending: VecDeque<Pending>,
    reorder: Duration,
    max_packets: usize,
    /// Totals of the reorder buffers of earlier senders.
    retired: SessionStats,
    /// H.264 only: decode times for what RTP gives presentation times.
    decode_times: Option<DecodeTimes>,
}

impl Stream {
    fn new(spec: StreamSpec, reorder: Duration, max_packets: usize) -> Stream {
        Stream {
            resequencer: Resequencer::new(1, reorder, max_packets),
            depacketizer: Depacketizer::new(&spec),
            spec,
            ssrc: None,
            last_packet: None,
            unwrap: RtpUnwrap::default(),
            report: None,
            anchor: None,
            placed_by: None,
            last: None,
            pending: VecDeque::new(),
            reorder,
            max_packets,
            retired: SessionStats::default(),
            decode_times: None,
        }
        .with_decode_times()
    }

    fn with_decode_times(mut self) -> Stream {
        self.decode_times = match self.spec.kind {
            StreamKind::H264 { .. } => Some(DecodeTimes::new(0)),
            StreamKind::Aac { .. } | StreamKind::Latm { .. } => None,
        };
        self
    }

    /// A new sender on the port: a fresh reorder buffer, the old one's totals kept.
    fn restart(&mut self) {
        let fresh = Resequencer::new(1, self.reorder, self.max_packets);
        let old = std::mem::replace(&mut self.resequencer, fresh);
        self.retired.add(&old);
        self.retired.frames_dropped += self.dropped();
        self.depacketizer = Depacketizer::new(&self.spec);
    }

    fn unplace(&mut self) {
        if let Some(times) = self.decode_times.as_mut() {
            *times = DecodeTimes::new(times.depth());
        }
        self.anchor = None;
        self.placed_by = None;
        self.last = None;
        self.unwrap = RtpUnwrap::default();
    }

    fn dropped(&self) -> u64 {
        match &self.depacketizer {
            Depacketizer::H264(d) => d.dropped,
            Depacketizer::Aac(d) => d.dropped,
            Depacketizer::Latm(d) => d.dropped,
        }
    }

    fn audio(&mut self, now: Duration, frames: Vec<AacFrame>) {
        for frame in frames {
            let extended = self.unwrap.extend(frame.timestamp);
            self.pending.push_back(Pending {
                extended,
                arrived: now,
                keyframe: true,
                data: frame.data,
            });
        }
    }

    /// Depacketizes what the resequencer lets go, into `pending`.
    fn release(&mut self, now: Duration) {
        while let Some(released) = self.resequencer.poll(now) {
            let packet = match released {
                Released::Packet(packet) => packet,
                Released::Lost(_) => {
                    match &mut self.depacketizer {
                        Depacketizer::H264(d) => d.lost(),
                        Depacketizer::Aac(d) => d.lost(),
                        Depacketizer::Latm(d) => d.lost(),
                    }
                    continue;
                }
            };
            match &mut self.depacketizer {
                Depacketizer::H264(d) => {
                    if let Some(unit) = d.push(packet.timestamp, packet.marker, &packet.payload) {
                        let extended = self.unwrap.extend(unit.timestamp);
                        self.pending.push_back(Pending {
                            extended,
                            arrived: now,
                            keyframe: unit.keyframe,
                            data: unit.data,
                        });
                    }
                }
                Depacketizer::Aac(d) => {
                    let frames = d.push(packet.timestamp, packet.marker, &packet.payload);
                    self.audio(now, frames);
                }
                Depacketizer::Latm(d) => {
                    let frames = d.push(packet.timestamp, packet.marker, &packet.payload);
                    self.audio(now, frames);
                }
            }
        }
    }
}

/// The sans-IO receiver of an SDP session. Streams are indexed as [`usable_streams`] returned
/// them.
pub struct SdpSession {
    streams: Vec<Stream>,
    report_wait: Duration,
    /// When the first stream was placed: arrival times are measured from here.
    origin: Option<Duration>,
    /// (wallclock in 90 kHz ticks, timeline position) of the first stream placed by a sender
    /// report; every later one is placed relative to it.
    wallclock: Option<(i128, i64)>,
    frames: VecDeque<Frame>,
}

impl std::fmt::Debug for SdpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdpSession")
            .field("streams", &self.streams.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SdpSession {
    /// `reorder`: how long a missing packet is waited for; `max_packets`: what each stream's
    /// reorder buffer may hold; `report_wait`: how long a stream's first frames wait for a
    /// sender report (zero when no RTCP is received).
    pub fn new(
        streams: Vec<StreamSpec>,
        reorder: Duration,
        max_packets: usize,
        report_wait: Duration,
    ) -> SdpSession {
        SdpSession {
            streams: streams
                .into_iter()
                .map(|s| Stream::new(s, reorder, max_packets))
                .collect(),
            report_wait,
            origin: None,
            wallclock: None,
            frames: VecDeque::new(),
        }
    }

    pub fn program(&self) -> Program {
        Program {
            tracks: self
                .streams
                .iter()
                .map(|s| {
                    let (id, codec) = s.spec.track();
                    Track::new(id, codec)
                })
                .collect(),
        }
    }

    /// A datagram from `stream`'s RTP port, `now` since any fixed origin.
    pub fn rtp(&mut self, stream: usize, now: Duration, datagram: &[u8]) -> Result<(), Rejected> {
        let Some(s) = self.streams.get_mut(stream) else {
            return Ok(());
        };
        let packet = RtpPacket::parse(datagram)?;
        if packet.payload_type != s.spec.payload_type {
            return Err(Rejected::PayloadType {
                found: packet.payload_type,
                expected: s.spec.payload_type,
            });
        }
        if let Some(current) = s.ssrc.filter(|ssrc| *ssrc != packet.ssrc) {
            if s.last_packet
                .is_some_and(|at| now.saturating_sub(at) < SSRC_HOLD)
            {
                return Err(Rejected::Ssrc {
                    found: packet.ssrc,
                    current,
                });
            }
            // A restarted sender: its sequence numbers and clocks start again elsewhere.
            s.restart();
            self.replace();
        }
        let s = &mut self.streams[stream];
        s.ssrc = Some(packet.ssrc);
        s.last_packet = Some(now);
        s.resequencer.push(
            now,
            0,
            packet.sequence,
            Packet {
                marker: packet.marker,
                timestamp: packet.timestamp,
                payload: packet.payload.to_vec(),
            },
        );
        self.poll(now);
        Ok(())
    }

    /// A datagram from `stream`'s RTCP port; true when it was a sender report for it.
    pub fn rtcp(&mut self, stream: usize, now: Duration, datagram: &[u8]) -> bool {
        let Some(s) = self.streams.get_mut(stream) else {
            return false;
        };
        let Some(report) = SenderReport::parse(datagram) else {
            return false;
        };
        if s.ssrc.is_some_and(|ssrc| ssrc != report.ssrc) {
            return false;
        }
        s.report = Some(report);
        self.poll(now);
        true
    }

    /// The sender is gone (or restarted): every stream is placed again when it comes back,
    /// later on the same timeline.
    pub fn replace(&mut self) {
        self.wallclock = None;
        for s in &mut self.streams {
            s.unplace();
            s.report = None;
            s.ssrc = None;
        }
    }

    pub fn next_deadline(&self) -> Option<Duration> {
        self.streams
            .iter()
            .flat_map(|s| {
                let waiting = s
                    .pending
                    .front()
                    .filter(|_| s.anchor.is_none())
                    .map(|p| p.arrived + self.report_wait);
                [s.resequencer.next_deadline(), waiting]
            })
            .flatten()
            .min()
    }

    /// Releases what the reorder windows and the report wait let go by `now`.
    pub fn poll(&mut self, now: Duration) {
        for index in 0..self.streams.len() {
            self.streams[index].release(now);
            self.place(index, now);
        }
    }

    /// How `stream` was put on the timeline; `None` until it has been.
    pub fn placement(&self, stream: usize) -> Option<Placement> {
        self.streams.get(stream).and_then(|s| s.placed_by)
    }

    /// Why a stream's audio was last dropped, once (only MP4A-LATM says why: its in-band
    /// configs and element lengths are what a sender gets wrong).
    pub fn take_audio_error(&mut self) -> Option<LatmError> {
        self.streams
            .iter_mut()
            .find_map(|s| match &mut s.depacketizer {
                Depacketizer::Latm(d) => d.take_error(),
                _ => None,
            })
    }

    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    pub fn stats(&self) -> SessionStats {
        let mut total = SessionStats::default();
        for s in &self.streams {
            total.add(&s.resequencer);
            total.merge(&s.retired);
            total.frames_dropped += s.dropped();
        }
        total
    }

    /// Puts `stream`'s pending frames on the timeline once it can be placed.
    fn place(&mut self, index: usize, now: Duration) {
        let s = &self.streams[index];
        let Some(first) = s.pending.front() else {
            return;
        };
        if s.anchor.is_none() {
            let report = s.report.filter(|r| Some(r.ssrc) == s.ssrc);
            let waited = now.saturating_sub(first.arrived) >= self.report_wait;
            let full = s.pending.len() >= PENDING_MAX
                || s.pending.iter().map(|p| p.data.len()).sum::<usize>() >= PENDING_BYTES_MAX;
            if report.is_none() && !waited && !full {
                return;
            }
            let (extended, arrived) = (first.extended, first.arrived);
            let (position, placement) = self.anchor_position(index, extended, arrived, report);
            let s = &mut self.streams[index];
            s.anchor = Some((extended, position));
            s.placed_by = Some(placement);
        }
        let (track, codec) = self.streams[index].spec.track();
        while let Some(frame) = self.streams[index].pending.pop_front() {
            let Some(pts) = self.position(index, &frame) else {
                continue;
            };
            let dts = match self.streams[index].decode_times.as_mut() {
                Some(times) => {
                    if frame.keyframe {
                        times.at_keyframe(reorder_depth(&frame.data));
                    }
                    times.dts(pts)
                }
                None => pts,
            };
            self.frames.push_back(Frame {
                track,
                codec,
                pts: MpegTime(pts),
                dts: MpegTime(dts),
                keyframe: frame.keyframe,
                data: Bytes::from(frame.data),
            });
        }
    }

    fn arrival_position(&mut self, arrived: Duration) -> i64 {
        let origin = *self.origin.get_or_insert(arrived);
        let since = arrived.saturating_sub(origin).as_nanos();
        let ticks = i128::try_from(since).unwrap_or(i128::MAX / TICKS_PER_SECOND)
            * TICKS_PER_SECOND
            / 1_000_000_000;
        i64::try_from(ticks)
            .unwrap_or(i64::MAX / 2)
            .saturating_add(TIMELINE_START)
    }

    fn anchor_position(
        &mut self,
        index: usize,
        extended: i64,
        arrived: Duration,
        report: Option<SenderReport>,
    ) -> (i64, Placement) {
        let arrival = self.arrival_position(arrived);
        let Some(report) = report else {
            return (arrival, Placement::Arrival);
        };
        let rate = self.streams[index].spec.clock_rate;
        // The report's RTP timestamp is near the frame's: the short way round the wrap.
        let wire = u32::try_from(extended.rem_euclid(1 << 32)).unwrap_or_default();
        let since_report = i128::from(rtp_distance(wire, report.rtp));
        let wallclock = report.ntp_ticks() + to_90khz(since_report, rate);
        match self.wallclock {
            Some((reference, position)) => i64::try_from(wallclock - reference)
                .ok()
                .and_then(|d| position.checked_add(d))
                .map_or((arrival, Placement::Arrival), |p| {
                    (p, Placement::SenderReport)
                }),
            None => {
                self.wallclock = Some((wallclock, arrival));
                (arrival, Placement::SenderReport)
            }
        }
    }

    /// The frame's place on the timeline; a jump re-places the stream by arrival time.
    fn position(&mut self, index: usize, frame: &Pending) -> Option<i64> {
        let s = &self.streams[index];
        let (extended, position) = s.anchor?;
        let jumped = s.last.is_some_and(|last| {
            (i128::from(frame.extended) - i128::from(last)).abs() > {
                JUMP_MAX * i128::from(s.spec.clock_rate) / TICKS_PER_SECOND
            }
        });
        if jumped {
            let position = self.arrival_position(frame.arrived);
            let s = &mut self.streams[index];
            s.anchor = Some((frame.extended, position));
            s.placed_by = Some(Placement::Arrival);
            s.last = Some(frame.extended);
            return Some(position);
        }
        let since = i128::from(frame.extended) - i128::from(extended);
        let ticks = to_90khz(since, s.spec.clock_rate);
        let pts = i64::try_from(ticks).ok()?.checked_add(position)?;
        self.streams[index].last = Some(frame.extended);
        Some(pts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const MS: Duration = Duration::from_millis(1);

    fn specs() -> Vec<StreamSpec> {
        vec![
            StreamSpec {
                port: 5004,
                payload_type: 96,
                clock_rate: 90_000,
                kind: StreamKind::H264 {
                    parameter_sets: vec![SPS.to_vec(), PPS.to_vec()],
                },
            },
            StreamSpec {
                port: 5006,
                payload_type: 97,
                clock_rate: 48_000,
                kind: StreamKind::Aac {
                    config: AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap(),
                    mode: AacMode::HBR,
                },
            },
        ]
    }

    fn rtp(
        pt: u8,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&sequence.to_be_bytes());
        p.extend_from_slice(&timestamp.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn aac(frame: &[u8]) -> Vec<u8> {
        let mut p = 16u16.to_be_bytes().to_vec();
        p.extend_from_slice(&(u16::try_from(frame.len()).unwrap() << 3).to_be_bytes());
        p.extend_from_slice(frame);
        p
    }

    fn sender_report(ssrc: u32, ntp_seconds: f64, rtp: u32) -> Vec<u8> {
        let ntp = (ntp_seconds * 4_294_967_296.0) as u64;
        let mut p = vec![0x80, 200, 0, 6];
        for w in [ssrc, (ntp >> 32) as u32, ntp as u32, rtp, 0, 0] {
            p.extend_from_slice(&w.to_be_bytes());
        }
        p
    }

    fn frames(session: &mut SdpSession) -> Vec<Frame> {
        std::iter::from_fn(|| session.poll_frame()).collect()
    }

    #[test]
    fn rtp_timestamps_unwrap_across_the_32_bit_wrap() {
        let mut unwrap = RtpUnwrap::default();
        assert_eq!(unwrap.extend(u32::MAX - 10), i64::from(u32::MAX - 10));
        assert_eq!(unwrap.extend(5), i64::from(u32::MAX) + 6);
        // A small step back (reordered frames) stays near.
        assert_eq!(unwrap.extend(u32::MAX), i64::from(u32::MAX));
        assert_eq!(to_90khz(48_000, 48_000), 90_000);
        assert_eq!(to_90khz(1024, 48_000), 1920);
        assert_eq!(to_90khz(-1, 44_100), -3);
    }

    #[test]
    fn sdp_streams_are_checked() {
        let text = "v=0\nc=IN IP4 127.0.0.1\nm=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n\
            a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkDxWhAAAADAEAAAAwDxYuS,aMuMsg==\n\
            m=audio 5006 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/48000/2\n\
            a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1190\n";
        let streams = usable_streams(&SessionDescription::parse(text).unwrap()).unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[1].kind, specs()[1].kind);
        let vp8 = "m=video 5004 RTP/AVP 96\na=rtpmap:96 VP8/90000\n";
        let error = usable_streams(&SessionDescription::parse(vp8).unwrap()).unwrap_err();
        assert!(error.to_string().contains("video VP8/90000"), "{error}");
        let no_config =
            "m=audio 5006 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/48000/2\na=fmtp:97 sizelength=13\n";
        assert_eq!(
            usable_streams(&SessionDescription::parse(no_config).unwrap()),
            Err(StreamError::AacConfig)
        );
        let same = text.replace("5006", "5004");
        assert_eq!(
            usable_streams(&SessionDescription::parse(&same).unwrap()),
            Err(StreamError::SamePort(5004))
        );
    }

    fn latm_sdp(fmtp: &str) -> Result<Vec<StreamSpec>, StreamError> {
        let text = format!(
            "v=0\nc=IN IP4 127.0.0.1\nm=audio 5006 RTP/AVP 97\na=rtpmap:97 MP4A-LATM/48000/2\n{fmtp}"
        );
        usable_streams(&SessionDescription::parse(&text).unwrap())
    }

    #[test]
    fn mp4a_latm_streams_are_checked() {
        // What ffmpeg -rtpflags latm writes.
        let ffmpeg =
            latm_sdp("a=fmtp:97 profile-level-id=41;cpresent=0;config=400023203fc0\n").unwrap();
        let StreamKind::Latm { config, in_band } = &ffmpeg[0].kind else {
            panic!("{ffmpeg:?}")
        };
        assert_eq!(config.unwrap().audio.sample_rate(), 48_000);
        assert!(!in_band);
        assert_eq!(ffmpeg[0].packetization(), "AAC MP4A-LATM (RFC 6416)");
        // cpresent defaults to 1: no config needed, it comes in band.
        let in_band = latm_sdp("").unwrap();
        assert_eq!(
            in_band[0].kind,
            StreamKind::Latm {
                config: None,
                in_band: true
            }
        );
        assert_eq!(
            latm_sdp("a=fmtp:97 cpresent=0\n"),
            Err(StreamError::LatmNoConfig)
        );
        assert_eq!(
            latm_sdp("a=fmtp:97 cpresent=yes;config=400023203fc0\n"),
            Err(StreamError::LatmCpresent("yes".into()))
        );
        assert_eq!(
            latm_sdp("a=fmtp:97 cpresent=0;config=40002\n"),
            Err(StreamError::LatmHex)
        );
        let version1 = latm_sdp("a=fmtp:97 cpresent=0;config=c00023203fc0\n").unwrap_err();
        assert_eq!(version1, StreamError::LatmConfig(LatmError::MuxVersion));
        assert!(
            version1.to_string().contains("audioMuxVersion 1"),
            "{version1}"
        );
    }

    #[test]
    fn mp4a_latm_audio_is_placed_on_the_timeline() {
        let streams = latm_sdp("a=fmtp:97 cpresent=0;config=400023203fc0\n").unwrap();
        let mut session = SdpSession::new(streams, 20 * MS, 100, Duration::ZERO);
        let element = |raw: &[u8]| [&[u8::try_from(raw.len()).unwrap()][..], raw].concat();
        // The first packet may be the middle of an element: skipped up to its marker bit.
        for (sequence, timestamp) in [(0u16, 7u32), (1, 1031), (2, 2055)] {
            session
                .rtp(
                    0,
                    MS,
                    &rtp(97, 2, sequence, timestamp, true, &element(b"aac")),
                )
                .unwrap();
        }
        session.poll(100 * MS);
        let out = frames(&mut session);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].codec, Codec::AacAdts);
        assert_eq!(&out[0].data[7..], b"aac");
        assert_eq!(out[1].pts.0 - out[0].pts.0, 1920);
        // A broken element is counted and its reason kept for the log.
        session
            .rtp(0, 200 * MS, &rtp(97, 2, 3, 3079, true, &[200, 1]))
            .unwrap();
        session.poll(300 * MS);
        assert_eq!(session.stats().frames_dropped, 1);
        assert_eq!(
            session.take_audio_error(),
            Some(LatmError::ElementTruncated)
        );
        assert_eq!(session.take_audio_error(), None);
    }

    #[test]
    fn sender_reports_align_audio_with_video_whatever_the_arrival() {
        let mut session = SdpSession::new(specs(), 20 * MS, 100, 500 * MS);
        // Both streams sampled at wallclock 1000 s; RTP clocks start at random points.
        session.rtcp(0, Duration::ZERO, &sender_report(1, 1000.0, 4_294_900_000));
        session.rtcp(1, Duration::ZERO, &sender_report(2, 1000.0, 7));
        // The video frame for wallclock 1000.5 s arrives first, at 2 s (an encoder's delay)…
        let idr = [0x65, 0x88];
        let v = rtp(96, 1, 0, 4_294_945_000, true, &idr);
        session.rtp(0, 2000 * MS, &v).unwrap();
        // …the audio for 1000.5 s at 2.1 s, the video's next frame crosses the 32-bit wrap.
        session
            .rtp(1, 2100 * MS, &rtp(97, 2, 0, 7 + 24_000, true, &aac(b"abc")))
            .unwrap();
        let out = frames(&mut session);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].track, VIDEO_TRACK);
        assert_eq!(out[0].pts, MpegTime(TIMELINE_START));
        assert!(out[0].keyframe);
        assert!(
            out[0].data.starts_with(&[0, 0, 0, 1, 0x67]),
            "parameter sets in band"
        );
        assert_eq!(out[1].track, AUDIO_TRACK);
        assert_eq!(out[1].pts, out[0].pts, "same wallclock, same PTS");
        assert_eq!(session.placement(1), Some(Placement::SenderReport));
        // Later video frames keep the 90 kHz clock across the wrap.
        let later = 4_294_945_000u32.wrapping_add(90_000);
        session
            .rtp(0, 2040 * MS, &rtp(96, 1, 1, later, true, &[0x41, 1]))
            .unwrap();
        let out = frames(&mut session);
        assert_eq!(out[0].pts, MpegTime(TIMELINE_START + 90_000));
        assert_eq!(out[0].dts, out[0].pts);
    }

    #[test]
    fn without_reports_streams_are_placed_by_arrival_after_the_wait() {
        let mut session = SdpSession::new(specs(), 20 * MS, 100, 500 * MS);
        session
            .rtp(1, 100 * MS, &rtp(97, 2, 0, 1000, true, &aac(b"a")))
            .unwrap();
        assert!(frames(&mut session).is_empty(), "waits for a sender report");
        assert!(session.next_deadline() <= Some(600 * MS));
        session
            .rtp(0, 300 * MS, &rtp(96, 1, 0, 5, true, &[0x65, 1]))
            .unwrap();
        session.poll(599 * MS);
        assert!(frames(&mut session).is_empty());
        session.poll(600 * MS);
        let out = frames(&mut session);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pts, MpegTime(TIMELINE_START));
        session.poll(800 * MS);
        let out = frames(&mut session);
        assert_eq!(session.placement(0), Some(Placement::Arrival));
        // Placed 200 ms after the audio, as it arrived.
        assert_eq!(out[0].pts, MpegTime(TIMELINE_START + 18_000));
        // The next audio frame: 1024 samples at 48 kHz later.
        session
            .rtp(1, 900 * MS, &rtp(97, 2, 1, 2024, true, &aac(b"b")))
            .unwrap();
        assert_eq!(frames(&mut session)[0].pts, MpegTime(TIMELINE_START + 1920));
    }

    #[test]
    fn a_restarted_sender_is_placed_again_later_on_the_timeline() {
        let mut session = SdpSession::new(specs(), 20 * MS, 100, Duration::ZERO);
        session
            .rtp(0, Duration::ZERO, &rtp(96, 1, 0, 90_000, true, &[0x65, 1]))
            .unwrap();
        session
            .rtp(0, 40 * MS, &rtp(96, 1, 1, 93_600, true, &[0x41, 1]))
            .unwrap();
        // Another sender while the first is on: refused.
        let intruder = rtp(96, 9, 500, 7, true, &[0x65, 1]);
        assert_eq!(
            session.rtp(0, 1000 * MS, &intruder).unwrap_err().name(),
            "ssrc"
        );
        // After a second of silence a new SSRC whose clock starts far away is taken, and a
        // jump of an hour on the same SSRC.
        session.rtp(0, 1040 * MS, &intruder).unwrap();
        session
            .rtp(
                0,
                2000 * MS,
                &rtp(96, 9, 501, 7 + 324_000_000, true, &[0x41, 1]),
            )
            .unwrap();
        let pts: Vec<i64> = frames(&mut session)
            .iter()
            .map(|f| f.pts.0 - TIMELINE_START)
            .collect();
        assert_eq!(pts, [0, 3600, 93_600, 180_000]);
    }

    #[test]
    fn losses_and_hostile_datagrams_are_counted_not_fatal() {
        let mut session = SdpSession::new(specs(), 20 * MS, 100, Duration::ZERO);
        assert_eq!(
            session.rtp(0, Duration::ZERO, &[1, 2, 3]),
            Err(Rejected::Header(HeaderError::Short(3)))
        );
        let wrong = rtp(97, 1, 0, 0, true, &[0x65]);
        assert_eq!(
            session.rtp(0, Duration::ZERO, &wrong).unwrap_err().name(),
            "payload_type"
        );
        assert!(!session.rtcp(0, Duration::ZERO, &[0xff; 40]));
        // Frame 1 in two FU-A packets, the second lost: frame 1 is dropped, and frame 2 too,
        // as nothing tells whether the lost packet began it; frame 3 comes out.
        let fu_start = rtp(96, 1, 0, 0, false, &[0x7c, 0x85, 1]);
        session.rtp(0, Duration::ZERO, &fu_start).unwrap();
        session
            .rtp(0, MS, &rtp(96, 1, 2, 3000, true, &[0x41, 2]))
            .unwrap();
        session
            .rtp(0, MS, &rtp(96, 1, 3, 6000, true, &[0x41, 3]))
            .unwrap();
        session.poll(100 * MS);
        let out = frames(&mut session);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data[5], 3);
        let stats = session.stats();
        assert_eq!(
            (
                stats.packets_received,
                stats.packets_lost,
                stats.frames_dropped
            ),
            (3, 1, 1)
        );
    }
}
