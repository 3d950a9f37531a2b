//! SMPTE 2022-1 forward error correction, receiving side: the RFC 2733 FEC header as 2022-1
//! extends it, and XOR recovery of lost media packets from row and column FEC.
//!
//! The sender arranges media packets in a matrix of L columns by D rows (sequence numbers
//! row by row). A column FEC packet (`D` bit 0, offset L, NA D) is the XOR of one column, a
//! row FEC packet (`D` bit 1, offset 1, NA L) the XOR of one row. One missing packet in a row
//! or a column is rebuilt from the others; a rebuilt packet can leave another row or column
//! with only one missing, so recovery repeats until nothing changes.
//!
//! Everything the sender controls is bounded: the matrix (L, D ≤ 20, L × D ≤ 100, the 2022-1
//! levels A and B), media packets kept (count and age), FEC packets waiting for their media
//! (count and age), and how far an FEC packet's SNBase may lie from the media's sequence.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use thiserror::Error;

use crate::header::{HeaderError, RtpPacket};
use crate::resequencer::extend_sequence;

/// The FEC header that follows the FEC packet's RTP header.
pub const FEC_HEADER_LEN: usize = 16;
/// The largest L or D 2022-1 allows.
pub const MATRIX_SIDE_MAX: u8 = 20;
/// The largest L × D 2022-1 allows.
pub const MATRIX_PACKETS_MAX: u16 = 100;
/// Media packets kept for recovery whatever their age: several matrices' worth.
const MEDIA_HELD_MAX: usize = 1_000;
/// FEC packets kept waiting for their media: a matrix has at most 20 + 20 of them.
const FEC_HELD_MAX: usize = 256;
/// FEC packets kept from before the first media packet (a busy receiver may read its FEC
/// sockets first): one matrix's worth.
const EARLY_MAX: usize = 40;
/// An SNBase further than this from the newest media sequence number protects nothing we
/// hold (20 × 20 matrices are 400 packets; this leaves room for reordering).
const FAR_DISTANCE: i64 = 1_000;
/// A media sequence number this far from the newest starts a new stream (as the resequencer).
const RESET_DISTANCE: i64 = 3_000;

/// Why an FEC packet (or a recovery from it) was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FecError {
    #[error("FEC datagram is not RTP: {0}")]
    Rtp(HeaderError),
    #[error("FEC payload of {0} bytes is shorter than the 2022-1 FEC header (16)")]
    ShortHeader(usize),
    #[error("FEC header E bit is 0 or X bit is 1: not SMPTE 2022-1")]
    NotSmpte2022_1,
    #[error("FEC type {0} is not XOR (0)")]
    Type(u8),
    #[error("FEC offset or NA is zero")]
    MatrixZero,
    #[error("row FEC with offset {0}, not 1")]
    RowOffset(u8),
    #[error(
        "FEC matrix of {columns} columns × {rows} rows is beyond SMPTE 2022-1 (L, D ≤ 20, L × D ≤ 100)"
    )]
    MatrixTooLarge { columns: u8, rows: u8 },
    #[error("FEC SNBase is {0} sequence numbers away from the media")]
    Far(i64),
    #[error("FEC protects packets already gone (it came too late)")]
    Late,
    #[error("recovered length {length} is longer than the FEC payload ({available} bytes)")]
    Length { length: usize, available: usize },
    #[error("a protected media packet is longer than the FEC payload")]
    MediaLonger,
    #[error("more FEC packets waiting than a matrix sends: the oldest dropped")]
    Overflow,
}

impl FecError {
    /// A short label for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            FecError::Rtp(_) => "not_rtp",
            FecError::ShortHeader(_) => "short_header",
            FecError::NotSmpte2022_1 => "not_2022_1",
            FecError::Type(_) => "type",
            FecError::MatrixZero => "matrix_zero",
            FecError::RowOffset(_) => "row_offset",
            FecError::MatrixTooLarge { .. } => "matrix_too_large",
            FecError::Far(_) => "sequence_far",
            FecError::Late => "late",
            FecError::Length { .. } => "length",
            FecError::MediaLonger => "media_longer",
            FecError::Overflow => "overflow",
        }
    }
}

/// Which dimension of the matrix an FEC packet protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FecDirection {
    /// One column: every L-th packet (2022-1 sends these on the media port + 2).
    Column,
    /// One row: L consecutive packets (on the media port + 4).
    Row,
}

/// The 2022-1 FEC header (RFC 2733's, with the 2022-1 fields in its last word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecHeader {
    pub sn_base_low: u16,
    pub length_recovery: u16,
    pub extended: bool,
    pub pt_recovery: u8,
    pub mask: u32,
    pub ts_recovery: u32,
    /// The X bit of the last word (2022-5's further extension; 0 in 2022-1).
    pub further_extension: bool,
    pub direction: FecDirection,
    pub fec_type: u8,
    pub index: u8,
    pub offset: u8,
    pub na: u8,
    pub sn_base_ext: u8,
}

impl FecHeader {
    /// Parses and checks the header at the start of an FEC packet's RTP payload.
    pub fn parse(payload: &[u8]) -> Result<FecHeader, FecError> {
        let h: &[u8; FEC_HEADER_LEN] = payload
            .first_chunk()
            .ok_or(FecError::ShortHeader(payload.len()))?;
        let header = FecHeader {
            sn_base_low: u16::from_be_bytes([h[0], h[1]]),
            length_recovery: u16::from_be_bytes([h[2], h[3]]),
            extended: h[4] & 0x80 != 0,
            pt_recovery: h[4] & 0x7f,
            mask: u32::from_be_bytes([0, h[5], h[6], h[7]]),
            ts_recovery: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            further_extension: h[12] & 0x80 != 0,
            direction: if h[12] & 0x40 != 0 {
                FecDirection::Row
            } else {
                FecDirection::Column
            },
            fec_type: (h[12] >> 3) & 0x07,
            index: h[12] & 0x07,
            offset: h[13],
            na: h[14],
            sn_base_ext: h[15],
        };
        header.check()?;
        Ok(header)
    }

    fn check(&self) -> Result<(), FecError> {
        if !self.extended || self.further_extension {
            return Err(FecError::NotSmpte2022_1);
        }
        if self.fec_type != 0 {
            return Err(FecError::Type(self.fec_type));
        }
        if self.offset == 0 || self.na == 0 {
            return Err(FecError::MatrixZero);
        }
        let (columns, rows) = match self.direction {
            FecDirection::Row if self.offset != 1 => return Err(FecError::RowOffset(self.offset)),
            FecDirection::Row => (self.na, 1),
            FecDirection::Column => (self.offset, self.na),
        };
        if columns > MATRIX_SIDE_MAX
            || rows > MATRIX_SIDE_MAX
            || u16::from(columns) * u16::from(rows) > MATRIX_PACKETS_MAX
        {
            return Err(FecError::MatrixTooLarge { columns, rows });
        }
        Ok(())
    }
}

/// The matrix the sender uses, as its FEC packets say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FecMatrix {
    /// L: from either kind of FEC packet.
    pub columns: Option<u8>,
    /// D: only column FEC says it.
    pub rows: Option<u8>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FecStats {
    /// FEC packets taken (valid ones; the invalid are in `invalid`).
    pub received: u64,
    /// Media packets rebuilt.
    pub recovered: u64,
    /// Sequence numbers an FEC packet protected that it could not rebuild before it expired
    /// (more than one missing in its row or column, and the other direction did not help).
    pub unrecovered: u64,
    /// FEC packets dropped, by [`FecError::name`].
    pub invalid: BTreeMap<&'static str, u64>,
}

struct Media {
    arrived: Duration,
    datagram: Vec<u8>,
}

struct Pending {
    arrived: Duration,
    base: u64,
    step: u64,
    count: u64,
    header: FecHeader,
    /// The FEC packet's own first RTP header byte and marker: with RFC 2733 they carry the
    /// XOR of the media packets' P, X, CC and M.
    bits: u8,
    marker: u8,
    ssrc: u32,
    payload: Vec<u8>,
}

impl Pending {
    fn protected(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.count).map(|i| self.base + i * self.step)
    }

    fn last(&self) -> u64 {
        self.base + (self.count - 1) * self.step
    }
}

/// A 2022-1 FEC receiver for one media stream: media packets and FEC packets in, rebuilt
/// media datagrams out.
pub struct FecDecoder {
    max_age: Duration,
    /// The newest media sequence number, extended; `None` before the first.
    highest: Option<u64>,
    /// Sequence numbers below this were dropped from `media` (or never held): FEC for them
    /// can no longer be trusted to find only the lost ones missing.
    floor: u64,
    media: BTreeMap<u64, Media>,
    pending: VecDeque<Pending>,
    /// FEC datagrams that came before any media packet, taken when the first one comes.
    early: VecDeque<(Duration, Vec<u8>)>,
    /// Sequence numbers already counted as unrecovered (pruned below `floor`).
    given_up: BTreeSet<u64>,
    matrix: FecMatrix,
    stats: FecStats,
    ready: VecDeque<Vec<u8>>,
}

impl std::fmt::Debug for FecDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FecDecoder")
            .field("media", &self.media.len())
            .field("pending", &self.pending.len())
            .field("matrix", &self.matrix)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl FecDecoder {
    /// `max_age`: how long media and FEC packets are kept for recovery. Past the reorder
    /// window a rebuilt packet would come too late anyway.
    pub fn new(max_age: Duration) -> Self {
        FecDecoder {
            max_age,
            highest: None,
            floor: 0,
            media: BTreeMap::new(),
            pending: VecDeque::new(),
            early: VecDeque::new(),
            given_up: BTreeSet::new(),
            matrix: FecMatrix::default(),
            stats: FecStats::default(),
            ready: VecDeque::new(),
        }
    }

    pub fn stats(&self) -> &FecStats {
        &self.stats
    }

    pub fn matrix(&self) -> FecMatrix {
        self.matrix
    }

    /// A media packet as it arrived (already parsed as RTP by the caller: `datagram` is whole).
    pub fn push_media(&mut self, now: Duration, sequence: u16, datagram: &[u8]) {
        self.expire(now);
        let before = self.highest;
        let ext = match self.highest {
            None => {
                // Far from 0 so that sequence numbers just before the first do not underflow.
                let ext = (1 << 32) | u64::from(sequence);
                self.highest = Some(ext);
                self.floor = ext.saturating_sub(FAR_DISTANCE as u64);
                ext
            }
            Some(highest) => {
                let ext = extend_sequence(highest, sequence);
                if ext.abs_diff(highest) > RESET_DISTANCE as u64 {
                    // A restarted sender: nothing held protects its packets.
                    let ext = (((highest >> 16) + 2) << 16) | u64::from(sequence);
                    self.media.clear();
                    self.pending.clear();
                    self.given_up.clear();
                    self.highest = Some(ext);
                    self.floor = ext;
                    ext
                } else {
                    self.highest = Some(highest.max(ext));
                    ext
                }
            }
        };
        if ext < self.floor || self.media.contains_key(&ext) {
            return;
        }
        self.media.insert(
            ext,
            Media {
                arrived: now,
                datagram: datagram.to_vec(),
            },
        );
        while self.media.len() > MEDIA_HELD_MAX {
            self.drop_oldest_media();
        }
        // Media normally comes before its FEC; one that comes after may complete a group,
        // and one past a group's last packet says that packet is overdue.
        let from = before.map_or(ext, |b| b.min(ext));
        if self.pending.iter().any(|p| p.last() >= from) {
            self.recover();
        }
        for (arrived, datagram) in std::mem::take(&mut self.early) {
            if let Err(e) = self.take_fec(arrived, &datagram) {
                self.count_invalid(e);
            }
        }
    }

    /// An FEC packet (column or row) as it arrived.
    pub fn push_fec(&mut self, now: Duration, datagram: &[u8]) -> Result<(), FecError> {
        self.expire(now);
        let result = self.take_fec(now, datagram);
        if let Err(e) = result {
            self.count_invalid(e);
        }
        result
    }

    fn count_invalid(&mut self, error: FecError) {
        *self.stats.invalid.entry(error.name()).or_default() += 1;
    }

    fn take_fec(&mut self, now: Duration, datagram: &[u8]) -> Result<(), FecError> {
        let packet = RtpPacket::parse(datagram).map_err(FecError::Rtp)?;
        let header = FecHeader::parse(packet.payload)?;
        let Some(highest) = self.highest else {
            if self.early.len() == EARLY_MAX {
                self.early.pop_front();
            }
            self.early.push_back((now, datagram.to_vec()));
            return Ok(());
        };
        let base = extend_sequence(highest, header.sn_base_low);
        let distance = base as i64 - highest as i64;
        if distance.abs() > FAR_DISTANCE {
            return Err(FecError::Far(distance));
        }
        if base < self.floor {
            return Err(FecError::Late);
        }
        let (step, count) = match header.direction {
            FecDirection::Column => (u64::from(header.offset), u64::from(header.na)),
            FecDirection::Row => (1, u64::from(header.na)),
        };
        let duplicate = self
            .pending
            .iter()
            .any(|p| p.base == base && p.step == step && p.count == count);
        self.stats.received += 1;
        self.note_matrix(&header);
        if duplicate {
            return Ok(());
        }
        let first = datagram.first().copied().unwrap_or(0);
        let second = datagram.get(1).copied().unwrap_or(0);
        self.pending.push_back(Pending {
            arrived: now,
            base,
            step,
            count,
            header,
            bits: first & 0x3f,
            marker: second & 0x80,
            ssrc: packet.ssrc,
            payload: packet.payload[FEC_HEADER_LEN..].to_vec(),
        });
        if self.pending.len() > FEC_HELD_MAX {
            self.pending.pop_front();
            self.count_invalid(FecError::Overflow);
        }
        self.recover();
        Ok(())
    }

    fn note_matrix(&mut self, header: &FecHeader) {
        match header.direction {
            FecDirection::Column => {
                self.matrix.columns = Some(header.offset);
                self.matrix.rows = Some(header.na);
            }
            FecDirection::Row => self.matrix.columns = Some(header.na),
        }
    }

    /// Drops what is older than the age limit, counting what FEC could not rebuild.
    pub fn expire(&mut self, now: Duration) {
        while let Some(p) = self.pending.front() {
            if now.saturating_sub(p.arrived) < self.max_age {
                break;
            }
            if let Some(p) = self.pending.pop_front() {
                self.give_up(&p);
            }
        }
        while let Some((_, m)) = self.media.first_key_value() {
            if now.saturating_sub(m.arrived) < self.max_age {
                break;
            }
            self.drop_oldest_media();
        }
    }

    fn drop_oldest_media(&mut self) {
        if let Some((ext, _)) = self.media.pop_first() {
            self.floor = self.floor.max(ext + 1);
        }
        // FEC for what is gone could now take a packet that came for a lost one.
        while let Some(index) = self.pending.iter().position(|p| p.base < self.floor) {
            if let Some(p) = self.pending.remove(index) {
                self.give_up(&p);
            }
        }
        self.given_up = self.given_up.split_off(&self.floor);
    }

    fn give_up(&mut self, pending: &Pending) {
        let missing: Vec<u64> = pending
            .protected()
            .filter(|s| !self.media.contains_key(s) && *s >= self.floor)
            .collect();
        for s in missing {
            if self.given_up.insert(s) {
                self.stats.unrecovered += 1;
            }
        }
    }

    /// Rebuilds every packet that is alone missing in its row or column, until none is. A
    /// packet is only rebuilt once a later one has arrived: FEC on its own port can overtake
    /// the last media packets of its group, which are then late, not lost.
    fn recover(&mut self) {
        let Some(highest) = self.highest else {
            return;
        };
        loop {
            let mut progress = false;
            let mut index = 0;
            while index < self.pending.len() {
                let (first, second) = {
                    let mut missing = self.pending[index]
                        .protected()
                        .filter(|s| !self.media.contains_key(s));
                    (missing.next(), missing.next())
                };
                match (first, second) {
                    (_, Some(_)) => index += 1,
                    (Some(sequence), None) if sequence >= highest => index += 1,
                    (None, None) => {
                        self.pending.remove(index);
                    }
                    (Some(sequence), None) => {
                        let Some(pending) = self.pending.remove(index) else {
                            break;
                        };
                        match self.rebuild(&pending, sequence) {
                            Ok(datagram) => {
                                self.stats.recovered += 1;
                                self.given_up.remove(&sequence);
                                self.media.insert(
                                    sequence,
                                    Media {
                                        arrived: pending.arrived,
                                        datagram: datagram.clone(),
                                    },
                                );
                                self.ready.push_back(datagram);
                                progress = true;
                            }
                            Err(e) => self.count_invalid(e),
                        }
                    }
                }
            }
            if !progress {
                break;
            }
        }
    }

    /// XORs the packets `pending` protects, all but `sequence`, into its recovery fields.
    fn rebuild(&self, pending: &Pending, sequence: u64) -> Result<Vec<u8>, FecError> {
        let header = &pending.header;
        let mut region = pending.payload.clone();
        let mut length = header.length_recovery;
        let mut payload_type = header.pt_recovery;
        let mut timestamp = header.ts_recovery;
        let mut bits = pending.bits;
        let mut marker = pending.marker;
        let mut ssrc = pending.ssrc;
        for s in pending.protected().filter(|s| *s != sequence) {
            let Some(media) = self.media.get(&s) else {
                continue;
            };
            let d = &media.datagram;
            let Some(protected) = d.get(12..) else {
                continue;
            };
            if protected.len() > region.len() {
                return Err(FecError::MediaLonger);
            }
            region
                .iter_mut()
                .zip(protected)
                .for_each(|(out, byte)| *out ^= byte);
            // `protected.len()` fits: it is no longer than the FEC payload of one datagram.
            length ^= u16::try_from(protected.len()).map_err(|_| FecError::MediaLonger)?;
            payload_type ^= d[1] & 0x7f;
            marker ^= d[1] & 0x80;
            bits ^= d[0] & 0x3f;
            timestamp ^= u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
            ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        }
        let length = usize::from(length);
        if length > region.len() {
            return Err(FecError::Length {
                length,
                available: region.len(),
            });
        }
        region.truncate(length);
        let mut datagram = Vec::with_capacity(12 + length);
        datagram.push(0x80 | bits);
        datagram.push(marker | payload_type);
        // The low 16 bits are the wire's sequence number.
        datagram.extend_from_slice(&(sequence as u16).to_be_bytes());
        datagram.extend_from_slice(&timestamp.to_be_bytes());
        datagram.extend_from_slice(&ssrc.to_be_bytes());
        datagram.extend_from_slice(&region);
        Ok(datagram)
    }

    /// The next rebuilt media datagram, whole, as if it had arrived.
    pub fn poll(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A media datagram whose payload says its sequence number (lengths vary with it).
    fn media(sequence: u16) -> Vec<u8> {
        let mut d = vec![0x80, 33 | if sequence.is_multiple_of(3) { 0x80 } else { 0 }];
        d.extend_from_slice(&sequence.to_be_bytes());
        d.extend_from_slice(&(u32::from(sequence) * 3003).to_be_bytes());
        d.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        let len = 20 + usize::from(sequence % 7);
        d.extend((0..len).map(|i| (i as u16 ^ sequence.wrapping_mul(31)) as u8));
        d
    }

    /// The FEC packet a 2022-1 sender makes for `count` packets from `base`, `step` apart.
    fn fec(base: u16, step: u8, count: u8, direction: FecDirection) -> Vec<u8> {
        let protected: Vec<Vec<u8>> = (0..u16::from(count))
            .map(|i| media(base.wrapping_add(i * u16::from(step))))
            .collect();
        let longest = protected.iter().map(|d| d.len() - 12).max().unwrap();
        let mut region = vec![0u8; longest];
        let (mut length, mut pt, mut ts, mut bits, mut marker) = (0u16, 0u8, 0u32, 0u8, 0u8);
        for d in &protected {
            for (o, b) in region.iter_mut().zip(&d[12..]) {
                *o ^= b;
            }
            length ^= (d.len() - 12) as u16;
            pt ^= d[1] & 0x7f;
            marker ^= d[1] & 0x80;
            bits ^= d[0] & 0x3f;
            ts ^= u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        }
        let mut out = vec![0x80 | bits, 96 | marker, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        out.extend_from_slice(&base.to_be_bytes());
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&[0x80 | pt, 0, 0, 0]);
        out.extend_from_slice(&ts.to_be_bytes());
        let d_bit = if direction == FecDirection::Row {
            0x40
        } else {
            0
        };
        out.extend_from_slice(&[d_bit, step, count, 0]);
        out.extend_from_slice(&region);
        out
    }

    /// Every column and row FEC packet of an L × D matrix starting at `base`.
    fn matrix_fec(base: u16, columns: u8, rows: u8) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for c in 0..columns {
            out.push(fec(
                base.wrapping_add(u16::from(c)),
                columns,
                rows,
                FecDirection::Column,
            ));
        }
        for r in 0..rows {
            let first = base.wrapping_add(u16::from(r) * u16::from(columns));
            out.push(fec(first, 1, columns, FecDirection::Row));
        }
        out
    }

    /// Sends one matrix minus `lost` and the next matrix's first packet, then the FEC;
    /// returns the sequence numbers rebuilt, each checked byte for byte.
    fn run(decoder: &mut FecDecoder, base: u16, l: u8, d: u8, lost: &[u16]) -> Vec<u16> {
        let total = u16::from(l) * u16::from(d);
        for i in 0..=total {
            let s = base.wrapping_add(i);
            if !lost.contains(&s) {
                decoder.push_media(ms(u64::from(i)), s, &media(s));
            }
        }
        for f in matrix_fec(base, l, d) {
            decoder.push_fec(ms(u64::from(total)), &f).unwrap();
        }
        let mut rebuilt = Vec::new();
        while let Some(datagram) = decoder.poll() {
            let s = RtpPacket::parse(&datagram).unwrap().sequence;
            assert_eq!(datagram, media(s), "packet {s} rebuilt wrong");
            rebuilt.push(s);
        }
        rebuilt.sort_unstable();
        rebuilt
    }

    #[test]
    fn a_single_loss_in_a_column_is_rebuilt_with_its_header() {
        let mut decoder = FecDecoder::new(ms(1000));
        assert_eq!(run(&mut decoder, 1000, 5, 4, &[1007]), vec![1007]);
        assert_eq!(decoder.stats().recovered, 1);
        assert_eq!(decoder.stats().received, 9);
        assert!(decoder.stats().invalid.is_empty());
        assert_eq!(
            decoder.matrix(),
            FecMatrix {
                columns: Some(5),
                rows: Some(4)
            }
        );
    }

    #[test]
    fn a_burst_along_a_row_is_rebuilt_by_the_columns() {
        let mut decoder = FecDecoder::new(ms(1000));
        let burst: Vec<u16> = (510..520).collect();
        assert_eq!(run(&mut decoder, 500, 10, 5, &burst), burst);
        assert_eq!(decoder.stats().unrecovered, 0);
    }

    #[test]
    fn two_losses_in_a_column_and_a_row_are_rebuilt_by_iterating() {
        // 4 × 4 from 0: 0 and 4 share column 0; 4 and 5 share row 1; 5 and 9 share column 1.
        // Row 0 rebuilds 0, then column 0 rebuilds 4, then row 1 rebuilds 5, then column 1
        // rebuilds 9: no single pass could.
        let mut decoder = FecDecoder::new(ms(1000));
        assert_eq!(run(&mut decoder, 0, 4, 4, &[0, 4, 5, 9]), vec![0, 4, 5, 9]);
    }

    #[test]
    fn an_unrecoverable_pattern_is_reported_lost() {
        // A 2 × 2 square of losses: two in each of their rows and columns.
        let mut decoder = FecDecoder::new(ms(1000));
        assert_eq!(run(&mut decoder, 0, 4, 4, &[5, 6, 9, 10, 15]), vec![15]);
        assert_eq!(decoder.stats().unrecovered, 0, "not before the FEC expires");
        decoder.expire(ms(5000));
        assert_eq!(decoder.stats().unrecovered, 4);
        assert_eq!(decoder.stats().recovered, 1);
    }

    #[test]
    fn recovery_works_across_the_sequence_wrap() {
        let mut decoder = FecDecoder::new(ms(1000));
        // 65530 + 20 packets runs through 65535 to 14.
        assert_eq!(
            run(&mut decoder, 65_530, 5, 4, &[65_533, 65_535, 0, 2]),
            vec![0, 2, 65_533, 65_535]
        );
        assert_eq!(run(&mut decoder, 14, 5, 4, &[20]), vec![20]);
    }

    #[test]
    fn what_is_kept_is_bounded_by_age_and_count() {
        let mut decoder = FecDecoder::new(ms(100));
        for s in 0..5_000u16 {
            decoder.push_media(ms(0), s, &media(s));
        }
        assert!(decoder.media.len() <= MEDIA_HELD_MAX);
        // Media gone by age: FEC for it is late, not a false recovery.
        decoder.push_media(ms(500), 5_000, &media(5_000));
        assert_eq!(decoder.media.len(), 1);
        assert_eq!(
            decoder.push_fec(ms(500), &fec(4_990, 1, 10, FecDirection::Row)),
            Err(FecError::Late)
        );
        // FEC that never finds its media is dropped after the age, and is bounded meanwhile.
        for i in 0..400u16 {
            let _ = decoder.push_fec(ms(500), &fec(5_001 + i % 50, 1, 20, FecDirection::Row));
        }
        assert!(decoder.pending.len() <= FEC_HELD_MAX);
        decoder.expire(ms(1000));
        assert!(decoder.pending.is_empty());
        assert!(decoder.poll().is_none());
    }

    #[test]
    fn hostile_fec_packets_are_counted_and_dropped() {
        let mut decoder = FecDecoder::new(ms(1000));
        let good = fec(100, 1, 5, FecDirection::Row);
        // FEC before any media waits for the first media packet (and only so many do).
        for _ in 0..100 {
            assert_eq!(decoder.push_fec(ms(0), &good), Ok(()));
        }
        assert_eq!(decoder.early.len(), EARLY_MAX);
        assert_eq!(decoder.stats().received, 0);
        for s in [100, 101, 102, 103, 105] {
            decoder.push_media(ms(0), s, &media(s));
        }
        assert_eq!(decoder.poll(), Some(media(104)));
        assert_eq!(decoder.stats().received, EARLY_MAX as u64);
        assert_eq!(decoder.stats().recovered, 1);
        let mut decoder = FecDecoder::new(ms(1000));
        for s in [100, 101, 102, 103, 105] {
            decoder.push_media(ms(0), s, &media(s));
        }
        let with = |at: usize, value: u8| {
            let mut d = good.clone();
            d[at] = value;
            d
        };
        let cases: Vec<(Vec<u8>, FecError)> = vec![
            (good[..11].to_vec(), FecError::Rtp(HeaderError::Short(11))),
            (good[..27].to_vec(), FecError::ShortHeader(15)),
            (with(16, good[16] & 0x7f), FecError::NotSmpte2022_1),
            (with(24, 0xc0), FecError::NotSmpte2022_1),
            (with(24, 0x48), FecError::Type(1)),
            (with(25, 0), FecError::MatrixZero),
            (with(26, 0), FecError::MatrixZero),
            (with(25, 2), FecError::RowOffset(2)),
            (
                with(26, 21),
                FecError::MatrixTooLarge {
                    columns: 21,
                    rows: 1,
                },
            ),
            (
                fec(100, 20, 6, FecDirection::Column),
                FecError::MatrixTooLarge {
                    columns: 20,
                    rows: 6,
                },
            ),
            (with(12, 0x90), FecError::Far(-28_677)),
        ];
        for (datagram, error) in &cases {
            assert_eq!(decoder.push_fec(ms(1), datagram), Err(*error));
        }
        // A length recovery past the FEC payload rebuilds nothing.
        let mut long = good.clone();
        long[14] = 0xff;
        decoder.push_fec(ms(1), &long).unwrap();
        assert!(decoder.poll().is_none());
        assert_eq!(decoder.stats().invalid.get("length"), Some(&1));
        // A protected packet longer than the FEC payload rebuilds nothing either.
        let mut short = fec(100, 1, 5, FecDirection::Row);
        short.truncate(12 + FEC_HEADER_LEN + 4);
        short[14] = 0;
        short[15] = 4;
        decoder.push_fec(ms(1), &short).unwrap();
        assert!(decoder.poll().is_none());
        assert_eq!(decoder.stats().invalid.get("media_longer"), Some(&1));
        assert_eq!(decoder.stats().recovered, 0);
        let invalid: u64 = decoder.stats().invalid.values().sum();
        assert_eq!(invalid, cases.len() as u64 + 2);
        // Every prefix of a valid packet is taken or refused, never a panic.
        for n in 0..=good.len() {
            let _ = decoder.push_fec(ms(2), &good[..n]);
        }
        // And the good one still works.
        let mut decoder = FecDecoder::new(ms(1000));
        for s in [100, 101, 102, 103, 105] {
            decoder.push_media(ms(0), s, &media(s));
        }
        decoder.push_fec(ms(1), &good).unwrap();
        assert_eq!(decoder.poll(), Some(media(104)));
    }

    #[test]
    fn a_late_media_packet_completes_a_group_and_duplicates_are_ignored() {
        let mut decoder = FecDecoder::new(ms(1000));
        for s in [0u16, 1, 3, 5] {
            decoder.push_media(ms(0), s, &media(s));
        }
        let row = fec(0, 1, 5, FecDirection::Row);
        decoder.push_fec(ms(1), &row).unwrap();
        decoder.push_fec(ms(1), &row).unwrap();
        assert!(decoder.poll().is_none());
        decoder.push_media(ms(2), 2, &media(2));
        assert_eq!(decoder.poll(), Some(media(4)));
        assert!(decoder.poll().is_none());
        assert_eq!(decoder.stats().received, 2);
    }

    #[test]
    fn fec_that_overtakes_its_last_media_packet_waits_for_a_later_one() {
        // Packets 0–3 of a row of five, then the row's FEC.
        let row_short_of_4 = || {
            let mut decoder = FecDecoder::new(ms(1000));
            for s in 0u16..4 {
                decoder.push_media(ms(0), s, &media(s));
            }
            decoder
                .push_fec(ms(1), &fec(0, 1, 5, FecDirection::Row))
                .unwrap();
            decoder
        };
        let mut decoder = row_short_of_4();
        // 4 is still on its way, not lost.
        assert!(decoder.poll().is_none());
        decoder.push_media(ms(2), 4, &media(4));
        assert!(decoder.poll().is_none());
        assert_eq!(decoder.stats().recovered, 0);
        // Had 5 come instead, 4 would have been overdue and rebuilt.
        let mut decoder = row_short_of_4();
        decoder.push_media(ms(2), 5, &media(5));
        assert_eq!(decoder.poll(), Some(media(4)));
    }
}
