//! Multiplexer: `Frame`s → MPEG-TS packets with PAT/PMT at a fixed interval, PCR on the video
//! PID, continuity counters and PIDs that stay the same for the life of the muxer.

use std::collections::HashMap;

use bytes::BytesMut;

use lunora_media::{Codec, Frame, MpegTime, Program, TrackId};

use crate::packet::{ContinuityCounter, PACKET_SIZE, Pcr, Pid, SYNC_BYTE};
use crate::pes::write_pes_header;
use crate::psi::{Pat, Pmt, PmtStream};

/// Seven packets: the payload size SRT and UDP carriers expect.
pub const DATAGRAM_SIZE: usize = 7 * PACKET_SIZE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MuxSettings {
    pub transport_stream_id: u16,
    pub program_number: u16,
    pub pmt_pid: Pid,
    /// Elementary streams get PIDs from here upwards, in order of first appearance.
    pub first_elementary_pid: Pid,
    /// PAT and PMT are repeated at least this often (90 kHz ticks of stream time).
    pub psi_interval: i64,
    /// PCR is repeated at least this often (90 kHz ticks).
    pub pcr_interval: i64,
    /// How far the PCR runs behind the latest DTS: the decoder's buffering headroom.
    pub pcr_delay: i64,
}

impl Default for MuxSettings {
    fn default() -> Self {
        MuxSettings {
            transport_stream_id: 1,
            program_number: 1,
            pmt_pid: Pid::new(0x1000).unwrap_or(Pid::NULL),
            first_elementary_pid: Pid::new(0x100).unwrap_or(Pid::NULL),
            psi_interval: 9_000,
            pcr_interval: 2_700,
            pcr_delay: 63_000,
        }
    }
}

#[derive(Debug, Clone)]
struct OutputStream {
    track: TrackId,
    pid: Pid,
    codec: Codec,
    stream_type: u8,
    stream_id: u8,
    descriptors: Vec<u8>,
}

/// Stream type and PES stream_id for a codec (`index` numbers streams of the same kind).
fn stream_type_and_id(codec: Codec, index: u8) -> (u8, u8) {
    match codec {
        Codec::H264 => (0x1B, 0xE0 + index),
        Codec::Hevc => (0x24, 0xE0 + index),
        Codec::AacAdts => (0x0F, 0xC0 + index),
        Codec::AacLatm => (0x11, 0xC0 + index),
        Codec::MpegAudio => (0x03, 0xC0 + index),
        Codec::Ac3 => (0x81, 0xBD),
        Codec::Eac3 => (0x87, 0xBD),
        Codec::Scte35 => (0x86, 0),
        Codec::Private { stream_type: 0x15 } => (0x15, 0xFC),
        Codec::Private { stream_type } => (stream_type, 0xBD),
    }
}

#[derive(Debug)]
pub struct Muxer {
    settings: MuxSettings,
    streams: Vec<OutputStream>,
    /// Every PID ever assigned, so a track that leaves and returns keeps its PID.
    assigned: HashMap<TrackId, Pid>,
    pcr_pid: Pid,
    pmt_version: u8,
    pmt_section: Vec<u8>,
    pat_section: Vec<u8>,
    counters: HashMap<Pid, ContinuityCounter>,
    clock: Option<MpegTime>,
    last_psi_at: Option<MpegTime>,
    last_pcr: Option<i64>,
    pes_header: Vec<u8>,
}

impl Muxer {
    pub fn new(settings: MuxSettings) -> Self {
        let pat = Pat {
            transport_stream_id: settings.transport_stream_id,
            version: 0,
            programs: vec![(settings.program_number, settings.pmt_pid)],
        };
        Muxer {
            settings,
            streams: Vec::new(),
            assigned: HashMap::new(),
            pcr_pid: Pid::NULL,
            pmt_version: 0,
            pmt_section: Vec::new(),
            // One program always fits a section.
            pat_section: pat.to_section().unwrap_or_default(),
            counters: HashMap::new(),
            clock: None,
            last_psi_at: None,
            last_pcr: None,
            pes_header: Vec::with_capacity(32),
        }
    }

    /// The PID a track is written on, once the program has named it.
    pub fn pid_of(&self, track: TrackId) -> Option<Pid> {
        self.streams
            .iter()
            .find(|s| s.track == track)
            .map(|s| s.pid)
    }

    /// Declares the tracks to write. Tracks keep their PIDs across calls; the PMT version
    /// changes only when the stream list really changes.
    pub fn set_program(&mut self, program: &Program) {
        let mut streams = Vec::with_capacity(program.tracks.len());
        let (mut videos, mut audios) = (0u8, 0u8);
        // Track counts come from the sender's PMT: counted without overflow, and PIDs past
        // the last usable one become the null PID rather than wrapping.
        for track in &program.tracks {
            let next_free = u16::try_from(self.assigned.len())
                .ok()
                .and_then(|n| self.settings.first_elementary_pid.value().checked_add(n))
                .unwrap_or(u16::MAX);
            let pid = *self
                .assigned
                .entry(track.id)
                .or_insert(Pid::new(next_free).unwrap_or(Pid::NULL));
            let index = if track.codec.is_video() {
                videos = videos.saturating_add(1);
                videos - 1
            } else if track.codec.is_audio() {
                audios = audios.saturating_add(1);
                audios - 1
            } else {
                0
            };
            let (stream_type, stream_id) = stream_type_and_id(track.codec, index.min(15));
            streams.push(OutputStream {
                track: track.id,
                pid,
                codec: track.codec,
                stream_type,
                stream_id,
                descriptors: track.descriptors.to_vec(),
            });
        }
        let pcr_pid = streams
            .iter()
            .find(|s| s.codec.is_video())
            .or_else(|| streams.iter().find(|s| s.codec.is_audio()))
            .or(streams.first())
            .map_or(Pid::NULL, |s| s.pid);
        let has_scte35 = streams.iter().any(|s| s.codec == Codec::Scte35);
        let pmt = |version, streams: &[OutputStream]| Pmt {
            program_number: self.settings.program_number,
            version,
            pcr_pid,
            // Registration descriptor "CUEI" (SCTE 35 §8.1) so receivers look for cues.
            program_info: if has_scte35 {
                vec![0x05, 0x04, b'C', b'U', b'E', b'I']
            } else {
                Vec::new()
            },
            streams: streams
                .iter()
                .map(|s| PmtStream {
                    stream_type: s.stream_type,
                    elementary_pid: s.pid,
                    descriptors: s.descriptors.clone(),
                })
                .collect(),
        };
        // The descriptors and track list are the sender's: when they do not fit one PMT
        // section, the descriptors go first, then the tracks that still do not fit.
        if pmt(0, &streams).to_section().is_err() {
            for stream in &mut streams {
                stream.descriptors.clear();
            }
        }
        while pmt(0, &streams).to_section().is_err() && streams.pop().is_some() {}
        let section = |version| pmt(version, &streams).to_section().unwrap_or_default();
        let unchanged =
            !self.pmt_section.is_empty() && section(self.pmt_version) == self.pmt_section;
        if !unchanged {
            if !self.pmt_section.is_empty() {
                self.pmt_version = (self.pmt_version + 1) & 0x1F;
            }
            self.pmt_section = section(self.pmt_version);
            // Announce the new program before the next frame.
            self.last_psi_at = None;
        }
        self.streams = streams;
        self.pcr_pid = pcr_pid;
    }

    /// Appends the packets for one frame to `out`. Frames on tracks the program does not name
    /// are dropped (returns false).
    pub fn write_frame(&mut self, frame: &Frame, out: &mut BytesMut) -> bool {
        let Some(index) = self.streams.iter().position(|s| s.track == frame.track) else {
            return false;
        };
        let clock = self.clock.map_or(frame.dts, |c| c.max(frame.dts));
        self.clock = Some(clock);
        let is_video = frame.codec.is_video();
        let psi_due = self
            .last_psi_at
            .is_none_or(|at| clock - at >= self.settings.psi_interval);
        if psi_due || (is_video && frame.keyframe) {
            self.write_psi(out);
            self.last_psi_at = Some(clock);
        }
        // Only the Copy fields: cloning the stream would copy its descriptors on every frame.
        let (pid, codec, stream_id) = (
            self.streams[index].pid,
            self.streams[index].codec,
            self.streams[index].stream_id,
        );
        let pcr_pid = self.pcr_pid;
        let pcr_due = self
            .last_pcr
            .is_none_or(|last| clock.0 * 300 - last >= self.settings.pcr_interval * 300);
        let mut pcr = None;
        if pid == pcr_pid && (is_video || pcr_due) {
            pcr = self.next_pcr(clock);
        } else if pcr_due && let Some(value) = self.next_pcr(clock) {
            self.write_pcr_only(pcr_pid, value, out);
        }

        if codec == Codec::Scte35 {
            let mut section = Vec::with_capacity(frame.data.len() + 1);
            section.push(0); // pointer_field
            section.extend_from_slice(&frame.data);
            self.write_packets(pid, None, false, &[&section], true, out);
            return true;
        }
        let mut header = std::mem::take(&mut self.pes_header);
        header.clear();
        write_pes_header(
            &mut header,
            stream_id,
            Some(frame.pts.wrapped()),
            Some(frame.dts.wrapped()),
            frame.data.len(),
        );
        let random_access = frame.keyframe && (is_video || frame.codec.is_audio());
        self.write_packets(pid, pcr, random_access, &[&header, &frame.data], false, out);
        self.pes_header = header;
        true
    }

    fn next_pcr(&mut self, clock: MpegTime) -> Option<Pcr> {
        let value = (clock.0 - self.settings.pcr_delay) * 300;
        if self.last_pcr.is_some_and(|last| value <= last) {
            return None;
        }
        self.last_pcr = Some(value);
        Some(Pcr::from_27mhz(value))
    }

    fn write_psi(&mut self, out: &mut BytesMut) {
        let pat = std::mem::take(&mut self.pat_section);
        let pmt = std::mem::take(&mut self.pmt_section);
        for (pid, section) in [(Pid::PAT, &pat), (self.settings.pmt_pid, &pmt)] {
            if section.is_empty() {
                continue;
            }
            let mut payload = Vec::with_capacity(section.len() + 1);
            payload.push(0);
            payload.extend_from_slice(section);
            self.write_packets(pid, None, false, &[&payload], true, out);
        }
        self.pat_section = pat;
        self.pmt_section = pmt;
    }

    fn write_pcr_only(&mut self, pid: Pid, pcr: Pcr, out: &mut BytesMut) {
        let cc = self.counters.get(&pid).copied().unwrap_or_default();
        let start = out.len();
        out.resize(start + PACKET_SIZE, 0xFF);
        let packet = &mut out[start..];
        packet[0] = SYNC_BYTE;
        packet[1] = (pid.value() >> 8) as u8;
        packet[2] = pid.value() as u8;
        // Adaptation field only: the continuity counter does not advance.
        packet[3] = 0x20 | cc.value();
        packet[4] = 183;
        packet[5] = 0x10;
        if let Ok(field) = (&mut packet[6..12]).try_into() {
            pcr.write(field);
        }
    }

    /// Splits the concatenation of `parts` into packets on `pid`. The first packet carries
    /// PUSI, the PCR and the random access flag; the last is padded with adaptation-field
    /// stuffing, or with 0xFF after the data for sections (`pad_with_ff`).
    fn write_packets(
        &mut self,
        pid: Pid,
        pcr: Option<Pcr>,
        random_access: bool,
        parts: &[&[u8]],
        pad_with_ff: bool,
        out: &mut BytesMut,
    ) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut written = 0;
        let mut part = 0;
        let mut offset = 0;
        let mut first = true;
        let counter = self.counters.entry(pid).or_default();
        while written < total {
            let cc = counter.next();
            *counter = cc;
            let start = out.len();
            out.resize(start + PACKET_SIZE, 0xFF);
            let packet = &mut out[start..start + PACKET_SIZE];
            packet[0] = SYNC_BYTE;
            packet[1] = (if first { 0x40 } else { 0 }) | (pid.value() >> 8) as u8;
            packet[2] = pid.value() as u8;

            let mut flags = 0u8;
            let mut field_len = 0usize; // adaptation field bytes after the length byte
            if first && random_access {
                flags |= 0x40;
                field_len = 1;
            }
            if first && let Some(_) = pcr {
                flags |= 0x10;
                field_len = 7;
            }
            let header_len = 4 + if field_len > 0 { 1 + field_len } else { 0 };
            let remaining = total - written;
            let room = PACKET_SIZE - header_len;
            let needs_stuffing = remaining < room && !pad_with_ff;
            let (adaptation, payload_start) = if needs_stuffing {
                // Grow the adaptation field so the payload ends exactly at the packet end.
                let af_total = PACKET_SIZE - 4 - remaining; // length byte + body
                (Some(af_total - 1), PACKET_SIZE - remaining)
            } else if field_len > 0 {
                (Some(field_len), header_len)
            } else {
                (None, 4)
            };
            match adaptation {
                Some(length) => {
                    packet[3] = 0x30 | cc.value();
                    packet[4] = length as u8;
                    if length > 0 {
                        packet[5] = flags;
                        if let Some(pcr) = pcr.filter(|_| first)
                            && let Ok(field) = (&mut packet[6..12]).try_into()
                        {
                            pcr.write(field);
                        }
                    }
                }
                None => packet[3] = 0x10 | cc.value(),
            }
            // Copy payload bytes from the parts.
            let mut cursor = payload_start;
            while cursor < PACKET_SIZE && part < parts.len() {
                let source = &parts[part][offset..];
                let take = source.len().min(PACKET_SIZE - cursor);
                packet[cursor..cursor + take].copy_from_slice(&source[..take]);
                cursor += take;
                written += take;
                offset += take;
                if offset == parts[part].len() {
                    part += 1;
                    offset = 0;
                }
            }
            first = false;
        }
    }
}
