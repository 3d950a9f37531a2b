//! H.264 over RTP (RFC 6184, packetization modes 0 and 1): single NAL units, STAP-A and FU-A
//! to Annex B access units. An access unit with a lost packet is dropped whole: a decoder
//! copes with a missing picture far better than with a damaged one.

use lunora_media::H264NalType;

/// An access unit cannot grow past this (a sender that never sets the marker nor changes the
/// timestamp).
const ACCESS_UNIT_CAP: usize = 8 << 20;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// RTP timestamp (90 kHz for H.264).
    pub timestamp: u32,
    pub keyframe: bool,
    /// Annex B NAL units; keyframes carry SPS and PPS.
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct H264Depacketizer {
    /// SPS and PPS from the SDP (`sprop-parameter-sets`), Annex B, put in band on keyframes
    /// that lack them.
    parameter_sets: Vec<u8>,
    current: Option<Building>,
    /// A fragmented NAL unit being reassembled (FU-A).
    fragment: Option<Vec<u8>>,
    /// Access units dropped because a packet of theirs was lost or malformed.
    pub dropped: u64,
}

#[derive(Debug)]
struct Building {
    timestamp: u32,
    data: Vec<u8>,
    damaged: bool,
    has_idr: bool,
    has_sps: bool,
}

impl H264Depacketizer {
    /// `parameter_sets`: the NAL units of `sprop-parameter-sets`, without start codes.
    pub fn new(parameter_sets: &[Vec<u8>]) -> Self {
        let mut annex_b = Vec::new();
        for nal in parameter_sets.iter().filter(|n| !n.is_empty()) {
            annex_b.extend_from_slice(&START_CODE);
            annex_b.extend_from_slice(nal);
        }
        H264Depacketizer {
            parameter_sets: annex_b,
            ..Default::default()
        }
    }

    /// Packets went missing before the next one: the access unit they belonged to is damaged.
    pub fn lost(&mut self) {
        self.fragment = None;
        if let Some(current) = &mut self.current {
            current.damaged = true;
        } else {
            // The loss may have been the start of the next access unit.
            self.current = Some(Building {
                timestamp: 0,
                data: Vec::new(),
                damaged: true,
                has_idr: false,
                has_sps: false,
            });
        }
    }

    /// Takes one RTP payload; returns an access unit when this packet completes one (or
    /// starts the next).
    pub fn push(&mut self, timestamp: u32, marker: bool, payload: &[u8]) -> Option<AccessUnit> {
        let mut done = None;
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.timestamp != timestamp && !c.data.is_empty())
        {
            done = self.finish();
            self.fragment = None;
        }
        let current = self.current.get_or_insert_with(|| Building {
            timestamp,
            data: Vec::new(),
            damaged: false,
            has_idr: false,
            has_sps: false,
        });
        if current.data.is_empty() {
            // A damaged placeholder from `lost` takes this packet's timestamp.
            current.timestamp = timestamp;
        }
        let Some(&header) = payload.first() else {
            current.damaged = true;
            return done;
        };
        match header & 0x1f {
            1..=23 => Self::add_nal(current, payload),
            // STAP-A: 16-bit sizes, each NAL unit whole.
            24 => {
                let mut rest = &payload[1..];
                while !rest.is_empty() {
                    let Some((size, after)) = rest.split_first_chunk::<2>() else {
                        current.damaged = true;
                        break;
                    };
                    let size = usize::from(u16::from_be_bytes(*size));
                    let Some(nal) = after.get(..size).filter(|n| !n.is_empty()) else {
                        current.damaged = true;
                        break;
                    };
                    Self::add_nal(current, nal);
                    rest = &after[size..];
                }
            }
            // FU-A.
            28 => match payload.get(1) {
                None => current.damaged = true,
                Some(&fu) => {
                    let start = fu & 0x80 != 0;
                    let end = fu & 0x40 != 0;
                    let body = &payload[2..];
                    if start {
                        let mut nal = Vec::with_capacity(body.len() * 4);
                        nal.push((header & 0xe0) | (fu & 0x1f));
                        nal.extend_from_slice(body);
                        self.fragment = Some(nal);
                    } else if let Some(nal) = &mut self.fragment {
                        nal.extend_from_slice(body);
                    } else {
                        // A middle or end with no start: its start was lost.
                        current.damaged = true;
                    }
                    if self
                        .fragment
                        .as_ref()
                        .is_some_and(|n| n.len() > ACCESS_UNIT_CAP)
                    {
                        self.fragment = None;
                        current.damaged = true;
                    }
                    if end && let Some(nal) = self.fragment.take() {
                        Self::add_nal(current, &nal);
                    }
                }
            },
            // STAP-B, MTAP, FU-B: packetization mode 2, which we do not offer; 0, 30, 31 are
            // reserved.
            _ => current.damaged = true,
        }
        if current.data.len() > ACCESS_UNIT_CAP {
            current.damaged = true;
            current.data.clear();
        }
        if marker {
            // An earlier unit finished by a timestamp change cannot also be here: it emptied
            // `current` first.
            return self.finish().or(done);
        }
        done
    }

    fn add_nal(current: &mut Building, nal: &[u8]) {
        let Some(&header) = nal.first() else { return };
        match H264NalType::from_header(header) {
            H264NalType::IdrSlice => current.has_idr = true,
            H264NalType::Sps => current.has_sps = true,
            _ => {}
        }
        current.data.extend_from_slice(&START_CODE);
        current.data.extend_from_slice(nal);
    }

    fn finish(&mut self) -> Option<AccessUnit> {
        let current = self.current.take()?;
        if current.damaged {
            self.dropped += 1;
            return None;
        }
        if current.data.is_empty() {
            return None;
        }
        let data = if current.has_idr && !current.has_sps && !self.parameter_sets.is_empty() {
            [self.parameter_sets.as_slice(), &current.data].concat()
        } else {
            current.data
        };
        Some(AccessUnit {
            timestamp: current.timestamp,
            keyframe: current.has_idr,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&START_CODE[..], n].concat())
            .collect()
    }

    fn fu_a(nal: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let header = nal[0];
        let body = &nal[1..];
        let pieces: Vec<&[u8]> = body.chunks(chunk).collect();
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let mut fu = header & 0x1f;
                if i == 0 {
                    fu |= 0x80;
                }
                if i == pieces.len() - 1 {
                    fu |= 0x40;
                }
                [&[(header & 0xe0) | 28, fu][..], piece].concat()
            })
            .collect()
    }

    #[test]
    fn single_nal_units_make_an_access_unit_at_the_marker() {
        let mut d = H264Depacketizer::new(&[]);
        assert_eq!(d.push(3000, false, &[0x09, 0xf0]), None);
        let au = d.push(3000, true, &[0x41, 1, 2, 3]).unwrap();
        assert_eq!(au.data, annex_b(&[&[0x09, 0xf0], &[0x41, 1, 2, 3]]));
        assert!(!au.keyframe);
        assert_eq!(au.timestamp, 3000);
    }

    #[test]
    fn a_timestamp_change_ends_an_access_unit_without_a_marker() {
        let mut d = H264Depacketizer::new(&[]);
        assert_eq!(d.push(0, false, &[0x41, 1]), None);
        let au = d.push(3000, false, &[0x41, 2]).unwrap();
        assert_eq!((au.timestamp, au.data), (0, annex_b(&[&[0x41, 1]])));
        assert_eq!(d.push(3000, true, &[0x41, 3]).unwrap().timestamp, 3000);
    }

    #[test]
    fn stap_a_and_sprop_parameter_sets_on_keyframes() {
        let mut d = H264Depacketizer::new(&[SPS.to_vec(), PPS.to_vec()]);
        let idr = [0x65u8, 0x88, 0x80];
        let stap = [&[0x18, 0, 4][..], SPS, &[0, 4], PPS].concat();
        assert_eq!(d.push(0, false, &stap), None);
        let au = d.push(0, true, &idr).unwrap();
        assert!(au.keyframe);
        assert_eq!(au.data, annex_b(&[SPS, PPS, &idr]));
        // A keyframe without in-band parameter sets gets the SDP's.
        let au = d.push(3000, true, &idr).unwrap();
        assert_eq!(au.data, annex_b(&[SPS, PPS, &idr]));
        // A STAP-A whose size runs past the packet damages the unit.
        assert_eq!(d.push(6000, true, &[0x18, 0, 9, 0x41]), None);
        assert_eq!(d.dropped, 1);
    }

    #[test]
    fn fu_a_reassembles_and_a_lost_fragment_drops_the_access_unit() {
        let nal: Vec<u8> = [0x65]
            .into_iter()
            .chain((0..100).map(|i| i as u8))
            .collect();
        let mut d = H264Depacketizer::new(&[]);
        let packets = fu_a(&nal, 30);
        assert_eq!(packets.len(), 4);
        let mut out = None;
        for (i, p) in packets.iter().enumerate() {
            out = d.push(0, i == packets.len() - 1, p);
        }
        assert_eq!(out.unwrap().data, annex_b(&[&nal]));
        // The second fragment lost: nothing for that access unit, the next one is whole.
        for (i, p) in packets.iter().enumerate() {
            if i == 1 {
                d.lost();
                continue;
            }
            assert_eq!(d.push(3000, i == packets.len() - 1, p), None);
        }
        assert_eq!(d.dropped, 1);
        let au = d.push(6000, true, &[0x41, 7]).unwrap();
        assert_eq!(au.data, annex_b(&[&[0x41, 7]]));
        // The first fragment lost: the rest is not taken for a NAL unit either.
        d.lost();
        for (i, p) in packets.iter().enumerate().skip(1) {
            assert_eq!(d.push(9000, i == packets.len() - 1, p), None);
        }
        assert_eq!(d.dropped, 2);
    }

    #[test]
    fn a_loss_between_access_units_drops_only_the_next_one() {
        let mut d = H264Depacketizer::new(&[]);
        assert!(d.push(0, true, &[0x41, 1]).is_some());
        d.lost();
        assert_eq!(d.push(3000, true, &[0x41, 2]), None);
        assert!(d.push(6000, true, &[0x41, 3]).is_some());
    }

    #[test]
    fn hostile_payloads_never_panic() {
        let mut d = H264Depacketizer::new(&[]);
        for payload in [
            &[][..],
            &[0x1c],
            &[0x18],
            &[0x18, 0xff],
            &[0x18, 0, 0],
            &[0x1d, 0x80],
            &[0x00],
            &[0x1f, 0, 0],
        ] {
            let _ = d.push(0, true, payload);
        }
    }
}
