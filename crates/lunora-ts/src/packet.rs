//! Zero-copy view of one 188-byte transport stream packet (ISO/IEC 13818-1 §2.4.3.2), with
//! accessors named after the standard's fields.

pub const PACKET_SIZE: usize = 188;
pub const SYNC_BYTE: u8 = 0x47;

/// A 13-bit packet identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(u16);

impl Pid {
    pub const PAT: Pid = Pid(0x0000);
    pub const NULL: Pid = Pid(0x1FFF);
    pub const MAX: u16 = 0x1FFF;

    /// `None` when `value` does not fit in 13 bits.
    pub const fn new(value: u16) -> Option<Pid> {
        if value <= Pid::MAX {
            Some(Pid(value))
        } else {
            None
        }
    }

    pub(crate) const fn from_masked(value: u16) -> Pid {
        Pid(value & Pid::MAX)
    }

    pub const fn value(self) -> u16 {
        self.0
    }
}

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:04X}", self.0)
    }
}

/// The 4-bit `continuity_counter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContinuityCounter(u8);

impl ContinuityCounter {
    pub const fn new(value: u8) -> ContinuityCounter {
        ContinuityCounter(value & 0x0F)
    }

    pub const fn value(self) -> u8 {
        self.0
    }

    pub const fn next(self) -> ContinuityCounter {
        ContinuityCounter((self.0 + 1) & 0x0F)
    }

    /// True if `self` is the counter a packet with payload must carry after `previous`.
    pub const fn follows(self, previous: ContinuityCounter) -> bool {
        self.0 == previous.next().0
    }
}

/// Program clock reference: 33-bit base at 90 kHz plus a 9-bit extension at 27 MHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pcr {
    pub base: u64,
    pub extension: u16,
}

impl Pcr {
    /// Wrap period of the full 27 MHz value.
    pub const WRAP_27MHZ: i64 = (1 << 33) * 300;

    pub fn from_27mhz(ticks: i64) -> Pcr {
        let ticks = ticks.rem_euclid(Pcr::WRAP_27MHZ);
        Pcr {
            base: (ticks / 300) as u64,
            extension: (ticks % 300) as u16,
        }
    }

    pub fn as_27mhz(self) -> i64 {
        self.base as i64 * 300 + i64::from(self.extension)
    }

    /// `self - earlier` in 27 MHz ticks, the short way round the wrap.
    pub fn diff_27mhz(self, earlier: Pcr) -> i64 {
        let diff = (self.as_27mhz() - earlier.as_27mhz()).rem_euclid(Pcr::WRAP_27MHZ);
        if diff >= Pcr::WRAP_27MHZ / 2 {
            diff - Pcr::WRAP_27MHZ
        } else {
            diff
        }
    }

    fn parse(bytes: &[u8; 6]) -> Pcr {
        let base = (u64::from(bytes[0]) << 25)
            | (u64::from(bytes[1]) << 17)
            | (u64::from(bytes[2]) << 9)
            | (u64::from(bytes[3]) << 1)
            | (u64::from(bytes[4]) >> 7);
        let extension = (u16::from(bytes[4] & 1) << 8) | u16::from(bytes[5]);
        Pcr { base, extension }
    }

    pub fn write(self, out: &mut [u8; 6]) {
        let base = self.base & ((1 << 33) - 1);
        out[0] = (base >> 25) as u8;
        out[1] = (base >> 17) as u8;
        out[2] = (base >> 9) as u8;
        out[3] = (base >> 1) as u8;
        out[4] = (((base & 1) as u8) << 7) | 0x7E | ((self.extension >> 8) as u8 & 1);
        out[5] = self.extension as u8;
    }
}

/// A borrowed 188-byte packet. Construction checks only the length; every field accessor is
/// total, so hostile bytes can never cause a panic.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    data: &'a [u8; PACKET_SIZE],
}

impl<'a> Packet<'a> {
    pub fn new(data: &'a [u8; PACKET_SIZE]) -> Packet<'a> {
        Packet { data }
    }

    /// `None` unless `data` is exactly 188 bytes.
    pub fn from_slice(data: &'a [u8]) -> Option<Packet<'a>> {
        data.try_into().ok().map(Packet::new)
    }

    pub fn as_bytes(&self) -> &'a [u8; PACKET_SIZE] {
        self.data
    }

    pub fn sync_byte(&self) -> u8 {
        self.data[0]
    }

    pub fn transport_error_indicator(&self) -> bool {
        self.data[1] & 0x80 != 0
    }

    pub fn payload_unit_start_indicator(&self) -> bool {
        self.data[1] & 0x40 != 0
    }

    pub fn transport_priority(&self) -> bool {
        self.data[1] & 0x20 != 0
    }

    pub fn pid(&self) -> Pid {
        Pid::from_masked(u16::from_be_bytes([self.data[1], self.data[2]]))
    }

    pub fn transport_scrambling_control(&self) -> u8 {
        self.data[3] >> 6
    }

    /// `adaptation_field_control`: 1 payload only, 2 adaptation only, 3 both, 0 reserved.
    pub fn adaptation_field_control(&self) -> u8 {
        (self.data[3] >> 4) & 3
    }

    pub fn continuity_counter(&self) -> ContinuityCounter {
        ContinuityCounter::new(self.data[3])
    }

    pub fn has_payload(&self) -> bool {
        self.adaptation_field_control() & 1 != 0
    }

    pub fn adaptation_field(&self) -> Option<AdaptationField<'a>> {
        if self.adaptation_field_control() & 2 == 0 {
            return None;
        }
        let length = usize::from(self.data[4]);
        // A length of 0 is legal (one stuffing byte); more than 183 is corrupt.
        let body = self.data.get(5..5 + length)?;
        Some(AdaptationField { data: body })
    }

    /// The payload bytes, or `None` when the packet carries none or its adaptation field
    /// length is corrupt.
    pub fn payload(&self) -> Option<&'a [u8]> {
        if !self.has_payload() {
            return None;
        }
        let start = if self.adaptation_field_control() & 2 != 0 {
            5 + usize::from(self.data[4])
        } else {
            4
        };
        self.data.get(start..).filter(|p| !p.is_empty())
    }
}

/// The adaptation field after its length byte.
#[derive(Debug, Clone, Copy)]
pub struct AdaptationField<'a> {
    data: &'a [u8],
}

impl<'a> AdaptationField<'a> {
    fn flags(&self) -> u8 {
        self.data.first().copied().unwrap_or(0)
    }

    pub fn discontinuity_indicator(&self) -> bool {
        self.flags() & 0x80 != 0
    }

    pub fn random_access_indicator(&self) -> bool {
        self.flags() & 0x40 != 0
    }

    pub fn pcr(&self) -> Option<Pcr> {
        if self.flags() & 0x10 == 0 {
            return None;
        }
        let bytes: &[u8; 6] = self.data.get(1..7)?.try_into().ok()?;
        Some(Pcr::parse(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        let mut data = [0xFFu8; PACKET_SIZE];
        data[..4].copy_from_slice(&[0x47, 0x41, 0x00, 0x3A]);
        data[4] = 7;
        data[5] = 0x50; // random access + PCR
        Pcr {
            base: 123_456_789,
            extension: 299,
        }
        .write((&mut data[6..12]).try_into().expect("6 bytes"));
        let p = Packet::new(&data);
        assert!(p.payload_unit_start_indicator());
        assert!(!p.transport_error_indicator());
        assert_eq!(p.pid(), Pid::new(0x100).expect("valid"));
        assert_eq!(p.adaptation_field_control(), 3);
        assert_eq!(p.continuity_counter().value(), 10);
        let af = p.adaptation_field().expect("adaptation field");
        assert!(af.random_access_indicator());
        assert_eq!(
            af.pcr(),
            Some(Pcr {
                base: 123_456_789,
                extension: 299
            })
        );
        assert_eq!(p.payload().map(<[u8]>::len), Some(188 - 12));
    }

    #[test]
    fn corrupt_adaptation_length_yields_no_payload() {
        let mut data = [0u8; PACKET_SIZE];
        data[..5].copy_from_slice(&[0x47, 0x01, 0x00, 0x30, 200]);
        let p = Packet::new(&data);
        assert!(p.adaptation_field().is_none());
        assert!(p.payload().is_none());
    }

    #[test]
    fn continuity_counter_wraps() {
        assert!(ContinuityCounter::new(0).follows(ContinuityCounter::new(15)));
        assert!(!ContinuityCounter::new(2).follows(ContinuityCounter::new(0)));
    }

    #[test]
    fn pcr_diff_across_wrap() {
        let late = Pcr::from_27mhz(Pcr::WRAP_27MHZ - 300);
        let early = Pcr::from_27mhz(600);
        assert_eq!(early.diff_27mhz(late), 900);
    }
}
