//! Program-specific information: section reassembly, CRC-32/MPEG-2, PAT and PMT
//! (ISO/IEC 13818-1 §2.4.4).

use crate::packet::Pid;

pub(crate) const TABLE_ID_PAT: u8 = 0x00;
pub(crate) const TABLE_ID_PMT: u8 = 0x02;
/// SCTE-35 `splice_info_section` table id.
pub(crate) const TABLE_ID_SCTE35: u8 = 0xFC;

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, initial 0xFFFFFFFF, no reflection, no final xor).
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFF, |crc, &byte| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ byte)]
    })
}

/// Reassembles PSI sections from the payloads of one PID.
#[derive(Debug, Default)]
pub struct SectionAssembler {
    buffer: Vec<u8>,
    /// False until a payload_unit_start has been seen (or after a discontinuity).
    in_section: bool,
}

impl SectionAssembler {
    /// Feeds one packet payload; complete sections (header to CRC) are appended to `out`.
    /// A lost packet (`discontinuity`) throws away the partial section.
    pub fn push(
        &mut self,
        payload: &[u8],
        payload_unit_start: bool,
        discontinuity: bool,
        out: &mut Vec<Vec<u8>>,
    ) {
        if discontinuity {
            self.buffer.clear();
            self.in_section = false;
        }
        let mut data = payload;
        if payload_unit_start {
            let Some((&pointer, rest)) = data.split_first() else {
                return;
            };
            let pointer = usize::from(pointer);
            if self.in_section && pointer <= rest.len() {
                self.buffer.extend_from_slice(&rest[..pointer]);
                self.drain_sections(out);
            }
            self.buffer.clear();
            self.in_section = true;
            data = rest.get(pointer..).unwrap_or_default();
        } else if !self.in_section {
            return;
        }
        self.buffer.extend_from_slice(data);
        self.drain_sections(out);
    }

    fn drain_sections(&mut self, out: &mut Vec<Vec<u8>>) {
        loop {
            match self.buffer.first() {
                None => return,
                Some(0xFF) => {
                    // Stuffing: the rest of this packet carries no more sections.
                    self.buffer.clear();
                    self.in_section = false;
                    return;
                }
                Some(_) => {}
            }
            if self.buffer.len() < 3 {
                return;
            }
            let total = 3 + (usize::from(self.buffer[1] & 0x0F) << 8 | usize::from(self.buffer[2]));
            if self.buffer.len() < total {
                return;
            }
            let rest = self.buffer.split_off(total);
            out.push(std::mem::replace(&mut self.buffer, rest));
        }
    }
}

/// Why a section could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SectionError {
    #[error("CRC-32 mismatch")]
    Crc,
    #[error("unexpected table_id 0x{0:02X}")]
    TableId(u8),
    #[error("section too short or malformed")]
    Malformed,
    /// A section to write would be longer than the standard allows.
    #[error("section of {0} bytes is longer than the 1021 allowed")]
    TooLong(usize),
}

/// The largest `section_length` of a PAT or PMT (ISO/IEC 13818-1 §2.4.4.3, §2.4.4.8).
const MAX_SECTION_LENGTH: usize = 1021;

/// Checks the long-form header and CRC; returns the body between the 8-byte header and the CRC.
fn long_section_body(section: &[u8], table_id: u8) -> Result<(&[u8], u8), SectionError> {
    let first = *section.first().ok_or(SectionError::Malformed)?;
    if first != table_id {
        return Err(SectionError::TableId(first));
    }
    if section.len() < 12 {
        return Err(SectionError::Malformed);
    }
    if crc32_mpeg2(section) != 0 {
        return Err(SectionError::Crc);
    }
    let version = (section[5] >> 1) & 0x1F;
    Ok((&section[8..section.len() - 4], version))
}

/// Checks only the CRC of a long-form section of any table.
pub(crate) fn section_crc_ok(section: &[u8]) -> bool {
    section.len() >= 4 && crc32_mpeg2(section) == 0
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pat {
    pub transport_stream_id: u16,
    pub version: u8,
    /// (program_number, program_map_PID); program 0 (the NIT) is left out.
    pub programs: Vec<(u16, Pid)>,
}

impl Pat {
    pub fn parse(section: &[u8]) -> Result<Pat, SectionError> {
        let (body, version) = long_section_body(section, TABLE_ID_PAT)?;
        let programs = body
            .chunks_exact(4)
            .map(|e| {
                (
                    u16::from_be_bytes([e[0], e[1]]),
                    Pid::from_masked(u16::from_be_bytes([e[2], e[3]])),
                )
            })
            .filter(|(number, _)| *number != 0)
            .collect();
        Ok(Pat {
            transport_stream_id: u16::from_be_bytes([section[3], section[4]]),
            version,
            programs,
        })
    }

    pub fn to_section(&self) -> Result<Vec<u8>, SectionError> {
        let mut body = Vec::with_capacity(self.programs.len() * 4);
        for (number, pid) in &self.programs {
            body.extend(number.to_be_bytes());
            body.extend((0xE000 | pid.value()).to_be_bytes());
        }
        long_section(TABLE_ID_PAT, self.transport_stream_id, self.version, &body)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmtStream {
    pub stream_type: u8,
    pub elementary_pid: Pid,
    pub descriptors: Vec<u8>,
}

impl PmtStream {
    /// The descriptors as (tag, body) pairs; a truncated last descriptor is ignored.
    pub fn descriptors(&self) -> impl Iterator<Item = (u8, &[u8])> {
        Descriptors {
            rest: &self.descriptors,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pmt {
    pub program_number: u16,
    pub version: u8,
    pub pcr_pid: Pid,
    pub program_info: Vec<u8>,
    pub streams: Vec<PmtStream>,
}

impl Pmt {
    pub fn parse(section: &[u8]) -> Result<Pmt, SectionError> {
        let (body, version) = long_section_body(section, TABLE_ID_PMT)?;
        if body.len() < 4 {
            return Err(SectionError::Malformed);
        }
        let pcr_pid = Pid::from_masked(u16::from_be_bytes([body[0], body[1]]));
        let info_length = usize::from(u16::from_be_bytes([body[2], body[3]]) & 0x0FFF);
        let program_info = body
            .get(4..4 + info_length)
            .ok_or(SectionError::Malformed)?
            .to_vec();
        let mut rest = &body[4 + info_length..];
        let mut streams = Vec::new();
        while rest.len() >= 5 {
            let es_info_length = usize::from(u16::from_be_bytes([rest[3], rest[4]]) & 0x0FFF);
            let descriptors = rest
                .get(5..5 + es_info_length)
                .ok_or(SectionError::Malformed)?
                .to_vec();
            streams.push(PmtStream {
                stream_type: rest[0],
                elementary_pid: Pid::from_masked(u16::from_be_bytes([rest[1], rest[2]])),
                descriptors,
            });
            rest = &rest[5 + es_info_length..];
        }
        Ok(Pmt {
            program_number: u16::from_be_bytes([section[3], section[4]]),
            version,
            pcr_pid,
            program_info,
            streams,
        })
    }

    /// The section, or `TooLong` when the descriptors (which come from the sender's own PMT)
    /// do not fit: a length is never cut to its field's width.
    pub fn to_section(&self) -> Result<Vec<u8>, SectionError> {
        let length_field = |n: usize| {
            u16::try_from(n)
                .ok()
                .filter(|n| *n <= 0x03FF)
                .ok_or(SectionError::TooLong(n))
        };
        let mut body = Vec::new();
        body.extend((0xE000 | self.pcr_pid.value()).to_be_bytes());
        body.extend((0xF000 | length_field(self.program_info.len())?).to_be_bytes());
        body.extend(&self.program_info);
        for stream in &self.streams {
            body.push(stream.stream_type);
            body.extend((0xE000 | stream.elementary_pid.value()).to_be_bytes());
            body.extend((0xF000 | length_field(stream.descriptors.len())?).to_be_bytes());
            body.extend(&stream.descriptors);
        }
        long_section(TABLE_ID_PMT, self.program_number, self.version, &body)
    }
}

fn long_section(
    table_id: u8,
    id_extension: u16,
    version: u8,
    body: &[u8],
) -> Result<Vec<u8>, SectionError> {
    let section_length = 5 + body.len() + 4;
    let length_field = u16::try_from(section_length)
        .ok()
        .filter(|_| section_length <= MAX_SECTION_LENGTH)
        .ok_or(SectionError::TooLong(section_length))?;
    let mut section = Vec::with_capacity(3 + section_length);
    section.push(table_id);
    section.extend((0xB000 | length_field).to_be_bytes());
    section.extend(id_extension.to_be_bytes());
    section.push(0xC1 | ((version & 0x1F) << 1)); // current_next_indicator = 1
    section.push(0); // section_number
    section.push(0); // last_section_number
    section.extend(body);
    let crc = crc32_mpeg2(&section);
    section.extend(crc.to_be_bytes());
    Ok(section)
}

struct Descriptors<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Descriptors<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let [tag, length, rest @ ..] = self.rest else {
            return None;
        };
        let body = rest.get(..usize::from(*length))?;
        self.rest = &rest[usize::from(*length)..];
        Some((*tag, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(v: u16) -> Pid {
        Pid::from_masked(v)
    }

    #[test]
    fn crc_of_known_pat() {
        // PAT from ffmpeg's mpegts muxer: program 1 on PMT PID 0x1000.
        let pat = [
            0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00,
        ];
        assert_eq!(crc32_mpeg2(&pat), 0x2AB104B2);
    }

    #[test]
    fn pat_and_pmt_round_trip() {
        let pat = Pat {
            transport_stream_id: 1,
            version: 3,
            programs: vec![(1, pid(0x1000))],
        };
        assert_eq!(Pat::parse(&pat.to_section().unwrap()), Ok(pat));
        let pmt = Pmt {
            program_number: 1,
            version: 0,
            pcr_pid: pid(0x100),
            program_info: vec![0x05, 0x04, b'C', b'U', b'E', b'I'],
            streams: vec![
                PmtStream {
                    stream_type: 0x1B,
                    elementary_pid: pid(0x100),
                    descriptors: vec![],
                },
                PmtStream {
                    stream_type: 0x0F,
                    elementary_pid: pid(0x101),
                    descriptors: vec![0x0A, 4, b'e', b'n', b'g', 0],
                },
            ],
        };
        let parsed = Pmt::parse(&pmt.to_section().unwrap()).expect("valid pmt");
        assert_eq!(parsed, pmt);
        assert_eq!(
            parsed.streams[1].descriptors().collect::<Vec<_>>(),
            vec![(0x0A, &b"eng\0"[..])]
        );
    }

    #[test]
    fn lengths_that_do_not_fit_their_fields_are_errors() {
        let stream = |descriptors: usize| PmtStream {
            stream_type: 0x1B,
            elementary_pid: pid(0x100),
            descriptors: vec![0x05; descriptors],
        };
        let pmt = |streams| Pmt {
            program_number: 1,
            version: 0,
            pcr_pid: pid(0x100),
            program_info: vec![],
            streams,
        };
        assert_eq!(
            pmt(vec![stream(5000)]).to_section(),
            Err(SectionError::TooLong(5000))
        );
        assert_eq!(
            pmt(vec![stream(600), stream(600)]).to_section(),
            Err(SectionError::TooLong(1223))
        );
        assert_eq!(pmt(vec![stream(990)]).to_section().unwrap().len(), 3 + 1008);
    }

    #[test]
    fn corrupted_section_fails_crc() {
        let mut section = Pat {
            transport_stream_id: 1,
            version: 0,
            programs: vec![(1, pid(0x1000))],
        }
        .to_section()
        .unwrap();
        section[9] ^= 0x01;
        assert_eq!(Pat::parse(&section), Err(SectionError::Crc));
        assert_eq!(Pmt::parse(&section), Err(SectionError::TableId(0)));
        assert_eq!(Pat::parse(&[0x00, 0xB0]), Err(SectionError::Malformed));
    }

    #[test]
    fn assembler_handles_split_and_packed_sections() {
        let section = Pat {
            transport_stream_id: 7,
            version: 1,
            programs: vec![(1, pid(0x20)), (2, pid(0x21))],
        }
        .to_section()
        .unwrap();
        let mut asm = SectionAssembler::default();
        let mut out = Vec::new();
        // Split across two payloads.
        let mut first = vec![0u8];
        first.extend(&section[..10]);
        asm.push(&first, true, false, &mut out);
        assert!(out.is_empty());
        asm.push(&section[10..], false, false, &mut out);
        assert_eq!(out, vec![section.clone()]);
        // Two sections in one payload followed by stuffing.
        out.clear();
        let mut packed = vec![0u8];
        packed.extend(&section);
        packed.extend(&section);
        packed.extend([0xFF; 20]);
        asm.push(&packed, true, false, &mut out);
        assert_eq!(out.len(), 2);
        // A continuation without a start is ignored.
        out.clear();
        let mut fresh = SectionAssembler::default();
        fresh.push(&section[3..], false, false, &mut out);
        assert!(out.is_empty());
    }
}
