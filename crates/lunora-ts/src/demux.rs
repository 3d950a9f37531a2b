//! Demultiplexer: transport stream packets → `Program` announcements and `Frame`s.
//!
//! Follows the first program of the PAT. PSI observations (a PAT or PMT arrived, a CRC failed)
//! are reported as [`PsiNotice`]s so the TR 101 290 analyser can judge their timing without
//! parsing tables twice.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use lunora_media::{
    AnnexBNalUnits, Codec, Frame, H264NalType, HevcNalType, MpegTime, Program, Track, TrackId,
    Unwrap33, VideoFormat, parse_h264_sps, parse_hevc_sps, parse_hevc_vps, split_adts_frames,
};

use crate::packet::{ContinuityCounter, Packet, Pid};
use crate::pes::PesHeader;
use crate::psi::{Pat, Pmt, SectionAssembler, SectionError, TABLE_ID_SCTE35, section_crc_ok};

/// What the demuxer produces, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemuxEvent {
    /// The program's track list, sent first and whenever the PMT changes.
    Program(Program),
    Frame(Frame),
}

/// A PSI observation for the analyser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PsiNotice {
    Pat {
        pmt_pids: Vec<Pid>,
    },
    Pmt {
        pid: Pid,
        elementary_pids: Vec<(Pid, Codec)>,
        pcr_pid: Pid,
    },
    SectionError {
        pid: Pid,
        error: SectionError,
    },
}

/// Counters of things the demuxer had to throw away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemuxCounters {
    /// PES packets dropped because a packet inside them was lost, they did not parse or they
    /// grew past the size cap (the latter also counted in `pes_oversized`).
    pub pes_dropped: u64,
    /// PES packets dropped because they grew past [`VIDEO_PES_CAP`] / [`OTHER_PES_CAP`].
    pub pes_oversized: u64,
    /// Bytes in a PES payload that did not form a whole audio frame.
    pub audio_bytes_discarded: u64,
}

/// The most a video PES (one access unit) may hold before it is dropped. Even an intra-only 4K
/// picture at contribution bitrates stays around 1–2 MiB; 8 MiB is a generous multiple that
/// still bounds what a sender of endless continuation packets can make us hold.
pub const VIDEO_PES_CAP: usize = 8 << 20;

/// The most an audio or other PES may hold. Legal non-video PES carry a 16-bit length (at most
/// 64 KiB); the margin covers senders that wrongly write length 0 on audio.
pub const OTHER_PES_CAP: usize = 256 << 10;

#[derive(Debug)]
struct ElementaryStream {
    track: TrackId,
    codec: Codec,
    buffer: BytesMut,
    /// Bytes of this stream's previous PES: a new one starts with room for a little more, so
    /// a typical frame is gathered in one allocation with no copying as it grows.
    last_pes_len: usize,
    last_cc: Option<ContinuityCounter>,
    broken: bool,
    format: Option<VideoFormat>,
    hevc_frame_rate: Option<f64>,
}

impl ElementaryStream {
    fn pes_cap(&self) -> usize {
        if self.codec.is_video() {
            VIDEO_PES_CAP
        } else {
            OTHER_PES_CAP
        }
    }
}

/// Maps a PMT entry to a codec (ISO/IEC 13818-1 Table 2-34, ATSC A/52, DVB EN 300 468).
pub fn codec_for_stream_type(stream_type: u8, descriptors: impl Iterator<Item = u8>) -> Codec {
    match stream_type {
        0x03 | 0x04 => Codec::MpegAudio,
        0x0F => Codec::AacAdts,
        0x11 => Codec::AacLatm,
        0x1B => Codec::H264,
        0x24 => Codec::Hevc,
        0x81 => Codec::Ac3,
        0x87 => Codec::Eac3,
        0x86 => Codec::Scte35,
        0x06 => {
            let mut codec = Codec::Private { stream_type };
            for tag in descriptors {
                match tag {
                    0x6A => codec = Codec::Ac3,
                    0x7A => codec = Codec::Eac3,
                    _ => {}
                }
            }
            codec
        }
        other => Codec::Private { stream_type: other },
    }
}

#[derive(Debug, Default)]
pub struct Demux {
    pmt_pid: Option<Pid>,
    pmt_version: Option<u8>,
    pmt_section: Option<Vec<u8>>,
    sections: HashMap<Pid, SectionAssembler>,
    streams: HashMap<Pid, ElementaryStream>,
    timeline: Unwrap33,
    last_dts: MpegTime,
    events: VecDeque<DemuxEvent>,
    notices: Vec<PsiNotice>,
    counters: DemuxCounters,
    scratch: Vec<Vec<u8>>,
}

impl Demux {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn counters(&self) -> DemuxCounters {
        self.counters
    }

    /// The most recent video format seen in a parameter set, if any.
    pub fn video_format(&self) -> Option<VideoFormat> {
        self.streams
            .values()
            .filter(|s| s.codec.is_video())
            .find_map(|s| s.format)
    }

    /// The codec of the first video track, if the program has one.
    pub fn video_codec(&self) -> Option<Codec> {
        self.streams
            .values()
            .map(|s| s.codec)
            .find(|c| c.is_video())
    }

    pub fn poll_event(&mut self) -> Option<DemuxEvent> {
        self.events.pop_front()
    }

    pub fn take_notices(&mut self) -> std::vec::Drain<'_, PsiNotice> {
        self.notices.drain(..)
    }

    pub fn handle_packet(&mut self, packet: &Packet<'_>) {
        if packet.transport_error_indicator() {
            // The analyser counts it; its bytes cannot be trusted.
            return;
        }
        let pid = packet.pid();
        let Some(payload) = packet.payload() else {
            return;
        };
        if pid == Pid::PAT || Some(pid) == self.pmt_pid || self.is_section_stream(pid) {
            self.handle_section_payload(pid, packet, payload);
        } else if self.streams.contains_key(&pid) {
            self.handle_pes_payload(pid, packet, payload);
        }
    }

    /// Throws away PES packets still being assembled: the sender vanished, and an unbounded
    /// (video) PES cannot be known to be complete. Counted in `pes_dropped`.
    /// The buffers are released, not just emptied, so a departed sender's largest PES does
    /// not stay allocated while the input waits for the next one.
    pub fn discard_partial(&mut self) {
        for stream in self.streams.values_mut() {
            if !stream.buffer.is_empty() {
                self.counters.pes_dropped += 1;
            }
            stream.buffer = BytesMut::new();
            stream.broken = false;
            stream.last_cc = None;
        }
    }

    /// Emits any PES still buffered: the end of a complete stream such as a file.
    pub fn flush(&mut self) {
        let pids: Vec<Pid> = self.streams.keys().copied().collect();
        for pid in pids {
            self.finish_pes(pid);
        }
    }

    fn is_section_stream(&self, pid: Pid) -> bool {
        self.streams
            .get(&pid)
            .is_some_and(|s| s.codec == Codec::Scte35)
    }

    fn handle_section_payload(&mut self, pid: Pid, packet: &Packet<'_>, payload: &[u8]) {
        let discontinuity = self.section_discontinuity(pid, packet);
        let mut sections = std::mem::take(&mut self.scratch);
        self.sections.entry(pid).or_default().push(
            payload,
            packet.payload_unit_start_indicator(),
            discontinuity,
            &mut sections,
        );
        for section in sections.drain(..) {
            self.handle_section(pid, section);
        }
        self.scratch = sections;
    }

    fn section_discontinuity(&mut self, pid: Pid, packet: &Packet<'_>) -> bool {
        match self.streams.get_mut(&pid) {
            Some(stream) => {
                let cc = packet.continuity_counter();
                let lost = stream
                    .last_cc
                    .is_some_and(|last| !cc.follows(last) && cc != last);
                stream.last_cc = Some(cc);
                lost
            }
            None => false,
        }
    }

    fn handle_section(&mut self, pid: Pid, section: Vec<u8>) {
        if pid == Pid::PAT {
            match Pat::parse(&section) {
                Ok(pat) => {
                    self.notices.push(PsiNotice::Pat {
                        pmt_pids: pat.programs.iter().map(|(_, p)| *p).collect(),
                    });
                    let first = pat
                        .programs
                        .iter()
                        .min_by_key(|(number, _)| *number)
                        .map(|(_, p)| *p);
                    if first != self.pmt_pid {
                        self.pmt_pid = first;
                        self.pmt_version = None;
                        self.pmt_section = None;
                    }
                }
                Err(error) => self.notices.push(PsiNotice::SectionError { pid, error }),
            }
        } else if Some(pid) == self.pmt_pid {
            match Pmt::parse(&section) {
                Ok(pmt) => {
                    self.notices.push(PsiNotice::Pmt {
                        pid,
                        elementary_pids: pmt
                            .streams
                            .iter()
                            .map(|s| {
                                (
                                    s.elementary_pid,
                                    codec_for_stream_type(
                                        s.stream_type,
                                        s.descriptors().map(|(t, _)| t),
                                    ),
                                )
                            })
                            .collect(),
                        pcr_pid: pmt.pcr_pid,
                    });
                    if self.pmt_section.as_deref() != Some(&section[..]) {
                        self.pmt_section = Some(section);
                        self.apply_pmt(&pmt);
                    }
                }
                Err(error) => self.notices.push(PsiNotice::SectionError { pid, error }),
            }
        } else if section.first() == Some(&TABLE_ID_SCTE35) {
            if !section_crc_ok(&section) {
                self.notices.push(PsiNotice::SectionError {
                    pid,
                    error: SectionError::Crc,
                });
                return;
            }
            let track = self
                .streams
                .get(&pid)
                .map(|s| s.track)
                .unwrap_or(TrackId(pid.value()));
            self.events.push_back(DemuxEvent::Frame(Frame {
                track,
                codec: Codec::Scte35,
                pts: self.last_dts,
                dts: self.last_dts,
                keyframe: true,
                data: Bytes::from(section),
            }));
        }
    }

    fn apply_pmt(&mut self, pmt: &Pmt) {
        self.pmt_version = Some(pmt.version);
        let mut tracks = Vec::with_capacity(pmt.streams.len());
        let mut kept = HashMap::with_capacity(pmt.streams.len());
        for entry in &pmt.streams {
            let pid = entry.elementary_pid;
            let codec =
                codec_for_stream_type(entry.stream_type, entry.descriptors().map(|(tag, _)| tag));
            let language = entry
                .descriptors()
                .find(|(tag, body)| *tag == 0x0A && body.len() >= 3)
                .map(|(_, body)| [body[0], body[1], body[2]]);
            tracks.push(Track {
                id: TrackId(pid.value()),
                codec,
                language,
                descriptors: Bytes::copy_from_slice(&entry.descriptors),
            });
            let stream = match self.streams.remove(&pid) {
                Some(existing) if existing.codec == codec => existing,
                _ => ElementaryStream {
                    track: TrackId(pid.value()),
                    codec,
                    buffer: BytesMut::new(),
                    last_pes_len: 0,
                    last_cc: None,
                    broken: false,
                    format: None,
                    hevc_frame_rate: None,
                },
            };
            kept.insert(pid, stream);
        }
        self.streams = kept;
        self.sections.retain(|pid, _| {
            *pid == Pid::PAT || Some(*pid) == self.pmt_pid || self.streams.contains_key(pid)
        });
        self.events
            .push_back(DemuxEvent::Program(Program { tracks }));
    }

    fn handle_pes_payload(&mut self, pid: Pid, packet: &Packet<'_>, payload: &[u8]) {
        let cc = packet.continuity_counter();
        let discontinuity_flagged = packet
            .adaptation_field()
            .is_some_and(|af| af.discontinuity_indicator());
        let Some(stream) = self.streams.get_mut(&pid) else {
            return;
        };
        let duplicate = stream.last_cc == Some(cc);
        if duplicate && !discontinuity_flagged {
            return; // A legal duplicate packet: drop the copy.
        }
        let lost = stream.last_cc.is_some_and(|last| !cc.follows(last)) && !discontinuity_flagged;
        stream.last_cc = Some(cc);
        if lost {
            stream.broken = true;
        }
        if packet.payload_unit_start_indicator() {
            self.finish_pes(pid);
            if let Some(stream) = self.streams.get_mut(&pid) {
                // A fresh allocation rather than the tail of the last one, which the frame
                // just handed out keeps alive.
                let room = (stream.last_pes_len + stream.last_pes_len / 4)
                    .max(payload.len())
                    .max(4096)
                    .min(stream.pes_cap());
                stream.buffer = BytesMut::with_capacity(room);
                stream.buffer.extend_from_slice(payload);
            }
        } else if !stream.buffer.is_empty() {
            if !append_capped(stream, payload) {
                // Dropped whole: the continuation packets that follow find an empty buffer and
                // are ignored until the next payload unit start.
                stream.buffer = BytesMut::new();
                stream.broken = false;
                self.counters.pes_dropped += 1;
                self.counters.pes_oversized += 1;
                return;
            }
            let complete = PesHeader::parse(&stream.buffer).is_some_and(|h| {
                h.pes_packet_length != 0
                    && stream.buffer.len() >= 6 + usize::from(h.pes_packet_length)
            });
            if complete {
                self.finish_pes(pid);
            }
        }
    }

    fn finish_pes(&mut self, pid: Pid) {
        let Some(stream) = self.streams.get_mut(&pid) else {
            return;
        };
        if stream.buffer.is_empty() {
            stream.broken = false;
            return;
        }
        let pes = std::mem::take(&mut stream.buffer).freeze();
        stream.last_pes_len = pes.len();
        let broken = std::mem::take(&mut stream.broken);
        let Some(header) = PesHeader::parse(&pes).filter(|_| !broken) else {
            self.counters.pes_dropped += 1;
            return;
        };
        let payload_end = if header.pes_packet_length == 0 {
            pes.len()
        } else {
            (6 + usize::from(header.pes_packet_length)).min(pes.len())
        };
        if header.header_length > payload_end {
            self.counters.pes_dropped += 1;
            return;
        }
        let payload = pes.slice(header.header_length..payload_end);
        let (pts, dts) = match (header.pts, header.dts) {
            (Some(pts), dts) => {
                let dts = self.timeline.unwrap(dts.unwrap_or(pts));
                (self.timeline.unwrap_near(pts), dts)
            }
            (None, _) => (self.last_dts, self.last_dts),
        };
        self.last_dts = self.last_dts.max(dts);
        let (track, codec) = (stream.track, stream.codec);
        match codec {
            Codec::AacAdts => {
                let (frames, leftover) = split_adts_frames(&payload);
                self.counters.audio_bytes_discarded += leftover as u64;
                let mut offset = 0;
                for (header, range) in frames {
                    self.events.push_back(DemuxEvent::Frame(Frame {
                        track,
                        codec,
                        pts: pts + offset,
                        dts: dts + offset,
                        keyframe: true,
                        data: payload.slice(range),
                    }));
                    offset += header.frame_duration_90k();
                }
            }
            _ => {
                let keyframe = match codec {
                    Codec::H264 | Codec::Hevc => inspect_video_access_unit(stream, &payload),
                    _ => !matches!(codec, Codec::Private { .. }),
                };
                self.events.push_back(DemuxEvent::Frame(Frame {
                    track,
                    codec,
                    pts,
                    dts,
                    keyframe,
                    data: payload,
                }));
            }
        }
    }
}

/// Appends `payload` unless the PES would grow past its cap (`false` then). Growth is done
/// here rather than by `BytesMut`'s doubling so the allocation itself never exceeds the cap.
fn append_capped(stream: &mut ElementaryStream, payload: &[u8]) -> bool {
    let cap = stream.pes_cap();
    let needed = stream.buffer.len() + payload.len();
    if needed > cap {
        return false;
    }
    if stream.buffer.capacity() < needed {
        let grown = (stream.buffer.len() * 2).max(needed).max(4096).min(cap);
        let mut buffer = BytesMut::with_capacity(grown);
        buffer.extend_from_slice(&stream.buffer);
        stream.buffer = buffer;
    }
    stream.buffer.extend_from_slice(payload);
    true
}

/// Reads the NAL units before the first slice: notes parameter sets and says whether the
/// access unit is a random access point. The slice itself is judged by its header byte alone,
/// so the cost does not grow with the picture size.
fn inspect_video_access_unit(stream: &mut ElementaryStream, payload: &[u8]) -> bool {
    let mut units = AnnexBNalUnits::new(payload);
    while let Some(header) = units.peek_header() {
        if stream.codec == Codec::H264 {
            match H264NalType::from_header(header) {
                H264NalType::IdrSlice => return true,
                H264NalType::NonIdrSlice => return false,
                H264NalType::Sps => {
                    if let Some(Ok(sps)) = units.next().map(parse_h264_sps) {
                        stream.format = Some(sps.format);
                    }
                }
                _ => {
                    units.next();
                }
            }
        } else {
            match HevcNalType::from_header(header) {
                HevcNalType::Irap(_) => return true,
                HevcNalType::Other(t) if t < 32 => return false,
                HevcNalType::Vps => {
                    if let Some(Ok(vps)) = units.next().map(parse_hevc_vps) {
                        stream.hevc_frame_rate = vps.frame_rate;
                    }
                }
                HevcNalType::Sps => {
                    if let Some(Ok(sps)) = units.next().map(parse_hevc_sps) {
                        stream.format = Some(VideoFormat {
                            frame_rate: stream.hevc_frame_rate,
                            ..sps.format
                        });
                    }
                }
                _ => {
                    units.next();
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use lunora_media::{Codec, Frame, MpegTime, Program, Track, TrackId};

    use super::*;
    use crate::PACKET_SIZE;
    use crate::mux::{MuxSettings, Muxer};

    /// PAT and PMT for one program with H.264 on 0x100 and AAC on 0x101, as the muxer writes them.
    fn psi_packets() -> Vec<[u8; PACKET_SIZE]> {
        let program = Program {
            tracks: vec![
                Track::new(TrackId(1), Codec::H264),
                Track::new(TrackId(2), Codec::AacAdts),
            ],
        };
        let mut muxer = Muxer::new(MuxSettings::default());
        muxer.set_program(&program);
        let mut out = BytesMut::new();
        let frame = Frame {
            track: TrackId(1),
            codec: Codec::H264,
            pts: MpegTime(0),
            dts: MpegTime(0),
            keyframe: true,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88]),
        };
        muxer.write_frame(&frame, &mut out);
        out.chunks_exact(PACKET_SIZE)
            .map(|c| c.try_into().unwrap())
            .filter(|p: &[u8; PACKET_SIZE]| {
                let pid = Packet::new(p).pid().value();
                pid == 0 || pid == 0x1000
            })
            .collect()
    }

    /// A payload-only packet on `pid`; the first carries an unbounded (length 0) PES header.
    fn pes_packet(pid: u16, cc: u8, start: bool, stream_id: u8) -> [u8; PACKET_SIZE] {
        let mut p = [0xAA; PACKET_SIZE];
        p[0] = 0x47;
        p[1] = (u8::from(start) << 6) | (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x10 | (cc & 0x0F);
        if start {
            p[4..18].copy_from_slice(&[0, 0, 1, stream_id, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1]);
        }
        p
    }

    fn held(demux: &Demux) -> usize {
        demux.streams.values().map(|s| s.buffer.capacity()).sum()
    }

    fn flood(demux: &mut Demux, pid: u16, stream_id: u8, bytes: usize) -> usize {
        demux.handle_packet(&Packet::new(&pes_packet(pid, 0, true, stream_id)));
        let mut most = 0;
        for i in 1..=bytes / 184 {
            demux.handle_packet(&Packet::new(&pes_packet(pid, i as u8, false, stream_id)));
            most = most.max(held(demux));
        }
        most
    }

    fn demux_with_program() -> Demux {
        let mut demux = Demux::new();
        for p in psi_packets() {
            demux.handle_packet(&Packet::new(&p));
        }
        assert!(matches!(demux.poll_event(), Some(DemuxEvent::Program(_))));
        demux
    }

    #[test]
    fn endless_video_pes_stays_under_the_cap_and_is_counted() {
        let mut demux = demux_with_program();
        let most = flood(&mut demux, 0x100, 0xE0, 100 << 20);
        assert!(most <= VIDEO_PES_CAP, "held {most} bytes");
        let counters = demux.counters();
        assert_eq!((counters.pes_oversized, counters.pes_dropped), (1, 1));
        assert_eq!(demux.poll_event(), None, "no truncated frame is passed on");
    }

    #[test]
    fn endless_audio_pes_is_capped_far_lower() {
        let mut demux = demux_with_program();
        let most = flood(&mut demux, 0x101, 0xC0, 10 << 20);
        assert!(most <= OTHER_PES_CAP, "held {most} bytes");
        assert_eq!(demux.counters().pes_oversized, 1);
    }

    #[test]
    fn a_lost_connection_frees_the_buffers() {
        let mut demux = demux_with_program();
        flood(&mut demux, 0x100, 0xE0, 4 << 20);
        assert!(held(&demux) >= 4 << 20);
        demux.discard_partial();
        assert_eq!(held(&demux), 0);
        assert_eq!(demux.counters().pes_dropped, 1);
    }
}
