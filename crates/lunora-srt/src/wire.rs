//! A strict check of SRT datagrams, run before srt-protocol's parser sees them.
//!
//! srt-protocol 0.4.4 panics on some handshakes a hostile or merely unusual peer can send (a
//! zero-length stream-id extension, any congestion/filter/group extension). Nothing from the
//! network reaches it unless this module has looked at every field that parser trusts. Names
//! follow the SRT draft (draft-sharabayko-srt, section 3): header, handshake, extension blocks.
//!
//! Pure: no I/O, no clock, no allocation.

/// Length of the SRT packet header shared by data and control packets.
pub const HEADER_LEN: usize = 16;
/// Length of the handshake control information that follows the header (CIF, 48 bytes).
pub const HANDSHAKE_CIF_LEN: usize = 48;
/// The longest stream id the SRT specification allows (512 bytes, `SRT_STREAMID_MAX`).
pub const STREAM_ID_MAX: usize = 512;

/// Control types (SRT draft, table 3).
mod control_type {
    pub(super) const HANDSHAKE: u16 = 0x0000;
    pub(super) const KEEPALIVE: u16 = 0x0001;
    pub(super) const ACK: u16 = 0x0002;
    pub(super) const NAK: u16 = 0x0003;
    pub(super) const CONGESTION_WARNING: u16 = 0x0004;
    pub(super) const SHUTDOWN: u16 = 0x0005;
    pub(super) const ACKACK: u16 = 0x0006;
    pub(super) const DROPREQ: u16 = 0x0007;
    pub(super) const PEERERROR: u16 = 0x0008;
    pub(super) const USER_DEFINED: u16 = 0x7FFF;
}

/// Handshake extension types (SRT draft, table 5: `SRT_CMD_*`).
mod extension_type {
    pub(super) const HSREQ: u16 = 1;
    pub(super) const HSRSP: u16 = 2;
    pub(super) const KMREQ: u16 = 3;
    pub(super) const KMRSP: u16 = 4;
    pub(super) const SID: u16 = 5;
    pub(super) const CONGESTION: u16 = 6;
    pub(super) const FILTER: u16 = 7;
    pub(super) const GROUP: u16 = 8;
}

/// Handshake types a listener can receive (SRT draft, table 7).
const HANDSHAKE_TYPE_INDUCTION: u32 = 0x0000_0001;
const HANDSHAKE_TYPE_CONCLUSION: u32 = 0xFFFF_FFFF;
/// A listener answers a refused conclusion with the rejection code (`SRT_REJ_*` + 1000, or an
/// application's code from 2000) in the handshake type field.
const HANDSHAKE_TYPE_REJECTIONS: std::ops::RangeInclusive<u32> = 1000..=9999;

/// Which end of the handshake receives the datagram: the two see different handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Our listening port: callers send requests (HSREQ, KMREQ, stream id).
    Listener,
    /// Our connection to a remote listener: it answers (HSRSP, KMRSP) or rejects.
    Caller,
}

/// Why a datagram was dropped without reaching the protocol. Closed, so each one is a metric
/// label (`lunora_srt_datagrams_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Shorter than the 16-byte header.
    TooShort,
    /// A control type the SRT specification does not define.
    UnknownControlType,
    /// A user-defined control packet with a subtype other than the HSv4 handshake and
    /// key-material ones.
    UnknownControlSubtype,
    /// A control packet shorter than its type's fixed fields.
    ControlTruncated,
    /// A handshake shorter than its 48-byte control information.
    HandshakeTruncated,
    /// A handshake version other than 4 or 5.
    HandshakeVersion,
    /// A handshake type this side never receives (waveahand and agreement; rejections on a
    /// listener).
    HandshakeType,
    /// An encryption field other than 0, 16, 24 or 32 bytes, or key material that does not
    /// agree with it.
    KeySize,
    /// An extension block whose length runs past the end of the datagram, or bytes left
    /// over that cannot hold an extension header.
    ExtensionTruncated,
    /// An extension block with a length its type does not allow (e.g. an empty stream id).
    ExtensionLength,
    /// An extension type the SRT specification does not define.
    UnknownExtension,
    /// The same extension twice in one handshake.
    DuplicateExtension,
    /// A responder's extension (HSRSP, KMRSP) in a caller's handshake: a listener only ever
    /// receives requests.
    ResponseExtension,
    /// A requester's extension (HSREQ, KMREQ) or a packet filter, congestion or group block
    /// in a listener's answer to our caller: we never ask for them, so it never answers them.
    RequestExtension,
    /// A data packet from a peer with no connection on this port.
    UnknownPeer,
    /// More handshakes in progress than the listener keeps.
    TooManyHandshakes,
    /// srt-protocol refused the datagram after our checks passed.
    ParseError,
    /// srt-protocol panicked while handling the datagram (contained to it).
    Panic,
    /// A legal handshake asking for something we do not support (answered with an SRT
    /// rejection, counted here too).
    Unsupported,
}

impl DropReason {
    pub const ALL: [DropReason; 19] = [
        DropReason::TooShort,
        DropReason::UnknownControlType,
        DropReason::UnknownControlSubtype,
        DropReason::ControlTruncated,
        DropReason::HandshakeTruncated,
        DropReason::HandshakeVersion,
        DropReason::HandshakeType,
        DropReason::KeySize,
        DropReason::ExtensionTruncated,
        DropReason::ExtensionLength,
        DropReason::UnknownExtension,
        DropReason::DuplicateExtension,
        DropReason::ResponseExtension,
        DropReason::RequestExtension,
        DropReason::UnknownPeer,
        DropReason::TooManyHandshakes,
        DropReason::ParseError,
        DropReason::Panic,
        DropReason::Unsupported,
    ];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::UnknownControlType => "unknown_control_type",
            DropReason::UnknownControlSubtype => "unknown_control_subtype",
            DropReason::ControlTruncated => "control_truncated",
            DropReason::HandshakeTruncated => "handshake_truncated",
            DropReason::HandshakeVersion => "handshake_version",
            DropReason::HandshakeType => "handshake_type",
            DropReason::KeySize => "key_size",
            DropReason::ExtensionTruncated => "extension_truncated",
            DropReason::ExtensionLength => "extension_length",
            DropReason::UnknownExtension => "unknown_extension",
            DropReason::DuplicateExtension => "duplicate_extension",
            DropReason::ResponseExtension => "response_extension",
            DropReason::RequestExtension => "request_extension",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::TooManyHandshakes => "too_many_handshakes",
            DropReason::ParseError => "parse_error",
            DropReason::Panic => "panic",
            DropReason::Unsupported => "unsupported",
        }
    }

    fn index(self) -> usize {
        // `ALL` lists every variant in declaration order.
        self as usize
    }
}

/// Legal handshake content we do not support. The caller gets an SRT rejection with the
/// matching `SRT_REJ_*` code instead of silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// A congestion controller other than `live` (libsrt's `transtype=file` asks for `file`).
    Congestion,
    /// A packet filter (FEC).
    Filter,
    /// Connection bonding (socket groups).
    Group,
}

impl Unsupported {
    /// The rejection code sent in the handshake type field (`SRT_REJ_CONGESTION` etc. + 1000).
    pub fn handshake_code(self) -> u32 {
        match self {
            Unsupported::Congestion => 1013,
            Unsupported::Filter => 1014,
            Unsupported::Group => 1015,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Unsupported::Congestion => {
                "the caller asked for file transfer mode (transtype=file); only live mode is supported"
            }
            Unsupported::Filter => {
                "the caller asked for a packet filter (FEC), which is not supported"
            }
            Unsupported::Group => "the caller asked for connection bonding, which is not supported",
        }
    }
}

/// What to do with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Well formed: hand it to the protocol as is.
    Pass,
    /// Legal, but srt-protocol needs it amended first (see [`Amendment`] and [`amend`]).
    PassAmended(Amendment),
    /// A conclusion handshake asking for something we do not support: answer with
    /// [`rejection`].
    Refuse(Refusal),
    Drop(DropReason),
}

/// Changes that make a legal handshake readable to srt-protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amendment {
    /// A `live` congestion extension at `start..end`: what we run, but srt-protocol cannot
    /// parse that extension, so it goes.
    pub strip: Option<(usize, usize)>,
    /// libsrt callers left at their default key length (`pbkeylen` unset) leave the
    /// encryption field at 0 and give the length only in the key material; srt-protocol
    /// reads the field, so it is set from the key material (in bytes: 16, 24 or 32).
    pub key_bytes: Option<u8>,
}

/// `datagram` with `amendment` applied.
pub fn amend(datagram: &[u8], amendment: &Amendment) -> Vec<u8> {
    let mut out = datagram.to_vec();
    if let Some(bytes) = amendment.key_bytes
        && let Some(field) = out.get_mut(HEADER_LEN + 4..HEADER_LEN + 6)
    {
        // The encryption field is the type word's upper half, in units of 8 bytes.
        field.copy_from_slice(&u16::from(bytes / 8).to_be_bytes());
    }
    if let Some((start, end)) = amendment.strip
        && start <= end
        && end <= out.len()
    {
        out.drain(start..end);
    }
    out
}

/// What a rejection needs from the caller's conclusion handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Unsupported,
    /// The caller's socket id (the rejection is addressed to it).
    pub socket_id: u32,
    pub initial_sequence: u32,
    pub syn_cookie: u32,
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

/// Checks one datagram received on a listener's port.
pub fn inspect(datagram: &[u8]) -> Verdict {
    inspect_as(Side::Listener, datagram)
}

/// Checks one datagram received by `side`.
pub fn inspect_as(side: Side, datagram: &[u8]) -> Verdict {
    let (Some(first), Some(subtype)) = (be16(datagram, 0), be16(datagram, 2)) else {
        return Verdict::Drop(DropReason::TooShort);
    };
    if datagram.len() < HEADER_LEN {
        return Verdict::Drop(DropReason::TooShort);
    }
    // F bit (the top bit): 0 = data packet, 1 = control packet.
    if first & 0x8000 == 0 {
        return Verdict::Pass;
    }
    let control_type = first & 0x7FFF;
    let cif = datagram.len() - HEADER_LEN;
    use control_type::*;
    // Minimum CIF lengths are the fields srt-protocol reads unconditionally.
    let needed = match control_type {
        HANDSHAKE => return inspect_handshake(side, datagram),
        KEEPALIVE | SHUTDOWN | CONGESTION_WARNING | ACKACK | PEERERROR => 0,
        ACK | NAK => 4,
        DROPREQ => 8,
        USER_DEFINED => match subtype {
            // HSv4 HSREQ/HSRSP and in-band key refresh KMREQ/KMRSP.
            1 | 2 => 12,
            3 | 4 => 16,
            _ => return Verdict::Drop(DropReason::UnknownControlSubtype),
        },
        _ => return Verdict::Drop(DropReason::UnknownControlType),
    };
    if cif < needed {
        return Verdict::Drop(DropReason::ControlTruncated);
    }
    Verdict::Pass
}

fn inspect_handshake(side: Side, d: &[u8]) -> Verdict {
    let field = |offset: usize| be32(d, HEADER_LEN + offset);
    let (
        Some(version),
        Some(type_word),
        Some(initial_sequence),
        Some(handshake_type),
        Some(socket_id),
        Some(syn_cookie),
    ) = (
        field(0),
        field(4),
        field(8),
        field(20),
        field(24),
        field(28),
    )
    else {
        return Verdict::Drop(DropReason::HandshakeTruncated);
    };
    if d.len() < HEADER_LEN + HANDSHAKE_CIF_LEN {
        return Verdict::Drop(DropReason::HandshakeTruncated);
    }
    if version != 4 && version != 5 {
        return Verdict::Drop(DropReason::HandshakeVersion);
    }
    let rejection = HANDSHAKE_TYPE_REJECTIONS.contains(&handshake_type);
    if handshake_type != HANDSHAKE_TYPE_INDUCTION
        && handshake_type != HANDSHAKE_TYPE_CONCLUSION
        && !(side == Side::Caller && rejection)
    {
        return Verdict::Drop(DropReason::HandshakeType);
    }
    // An induction (any version) and an HSv4 conclusion carry no extensions that
    // srt-protocol reads.
    if version == 4 || handshake_type == HANDSHAKE_TYPE_INDUCTION || rejection {
        return Verdict::Pass;
    }
    // Encryption field: key length in bytes divided by 8 (upper 16 bits of the type word).
    let key_bytes = (type_word >> 16) * 8;
    if !matches!(key_bytes, 0 | 16 | 24 | 32) {
        return Verdict::Drop(DropReason::KeySize);
    }
    let mut seen = [false; 9];
    let mut amendment = Amendment::default();
    let mut refuse = None;
    let mut at = HEADER_LEN + HANDSHAKE_CIF_LEN;
    while at < d.len() {
        let (Some(kind), Some(words)) = (be16(d, at), be16(d, at + 2)) else {
            return Verdict::Drop(DropReason::ExtensionTruncated);
        };
        let start = at;
        let body = at + 4;
        let len = usize::from(words) * 4;
        let end = body + len;
        let Some(content) = d.get(body..end) else {
            return Verdict::Drop(DropReason::ExtensionTruncated);
        };
        let Some(slot) = seen.get_mut(usize::from(kind)) else {
            return Verdict::Drop(DropReason::UnknownExtension);
        };
        if kind == 0 {
            return Verdict::Drop(DropReason::UnknownExtension);
        }
        if std::mem::replace(slot, true) {
            return Verdict::Drop(DropReason::DuplicateExtension);
        }
        use extension_type::*;
        let length_ok = match kind {
            // Version, flags, two latencies: three words.
            HSREQ | HSRSP => len == 12,
            // The key-material message header is four words; wrapped keys follow.
            KMREQ | KMRSP => len >= 16,
            SID => (1..=STREAM_ID_MAX).contains(&len),
            // The longest controller name libsrt knows fits in a few words.
            CONGESTION => (1..=16).contains(&len),
            FILTER | GROUP => true,
            _ => return Verdict::Drop(DropReason::UnknownExtension),
        };
        if !length_ok {
            return Verdict::Drop(DropReason::ExtensionLength);
        }
        if side == Side::Caller {
            // srt-protocol's caller reads only the responder's blocks (and a listener may
            // echo the stream id).
            match kind {
                HSRSP | SID => {}
                // Read by its own length fields, as a KMREQ is (below).
                KMRSP if key_material_len(content) != Some(len) => {
                    return Verdict::Drop(DropReason::ExtensionLength);
                }
                KMRSP => {}
                _ => return Verdict::Drop(DropReason::RequestExtension),
            }
            at = end;
            continue;
        }
        match kind {
            // srt-protocol reaches `unimplemented!("Expected kmreq")` on a KMRSP here.
            HSRSP | KMRSP => return Verdict::Drop(DropReason::ResponseExtension),
            KMREQ if key_bytes == 0 => match key_material_key_bytes(content) {
                Some(bytes) => amendment.key_bytes = Some(bytes),
                None => return Verdict::Drop(DropReason::KeySize),
            },
            // srt-protocol reads the key-material message by its own length fields and then
            // carries on from there, not from the block's end: leftover bytes would be read
            // as another extension (and reach an `unimplemented!`).
            KMREQ if key_material_len(content) != Some(len) => {
                return Verdict::Drop(DropReason::ExtensionLength);
            }
            CONGESTION => {
                if congestion_is_live(content) {
                    amendment.strip = Some((start, end));
                } else {
                    refuse.get_or_insert(Unsupported::Congestion);
                }
            }
            FILTER => {
                refuse.get_or_insert(Unsupported::Filter);
            }
            GROUP => {
                refuse.get_or_insert(Unsupported::Group);
            }
            _ => {}
        }
        at = end;
    }
    if let Some(reason) = refuse {
        return Verdict::Refuse(Refusal {
            reason,
            socket_id,
            initial_sequence,
            syn_cookie,
        });
    }
    if amendment == Amendment::default() {
        Verdict::Pass
    } else {
        Verdict::PassAmended(amendment)
    }
}

/// The length a key-material message (SRT draft, section 3.2.2) says it has: a 16-byte
/// header, the salt (`SLen/4` words), one wrapped key per bit set in `KK` (`KLen/4` words
/// each) and the 8-byte wrapping integrity value.
fn key_material_len(content: &[u8]) -> Option<usize> {
    let key_flags = content.get(3)? & 0b11;
    let salt = usize::from(*content.get(14)?) * 4;
    let key = usize::from(*content.get(15)?) * 4;
    // KK: bit 0 even key, bit 1 odd key.
    let keys = match key_flags {
        0 => 0,
        0b11 => 2,
        _ => 1,
    };
    Some(16 + salt + key * keys + 8)
}

/// The key length a key-material message gives (`KLen`, in bytes), when it is one AES has.
fn key_material_key_bytes(content: &[u8]) -> Option<u8> {
    let bytes = content.get(15)?.checked_mul(4)?;
    matches!(bytes, 16 | 24 | 32).then_some(bytes)
}

/// String extensions are 32-bit words with their bytes reversed (libsrt writes host-order
/// words on little-endian machines); `live` arrives as `evil`.
fn congestion_is_live(content: &[u8]) -> bool {
    let mut name = [0u8; 16];
    for (word, out) in content.chunks(4).zip(name.chunks_mut(4)) {
        for (i, byte) in word.iter().rev().enumerate() {
            if let Some(slot) = out.get_mut(i) {
                *slot = *byte;
            }
        }
    }
    let used = content.len().min(name.len());
    let trimmed = name
        .get(..used)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .next()
        .unwrap_or_default();
    trimmed == b"live"
}

/// An SRT handshake rejecting a caller's conclusion: a v5 handshake whose type field carries
/// the rejection code, addressed to the caller's socket id.
pub fn rejection(refusal: &Refusal, timestamp_us: u32) -> [u8; HEADER_LEN + HANDSHAKE_CIF_LEN] {
    let mut out = [0u8; HEADER_LEN + HANDSHAKE_CIF_LEN];
    let words: [(usize, u32); 10] = [
        (0, 0x8000_0000),
        (8, timestamp_us),
        (12, refusal.socket_id),
        (HEADER_LEN, 5),
        (HEADER_LEN + 8, refusal.initial_sequence),
        (HEADER_LEN + 12, 1500),
        (HEADER_LEN + 16, 8192),
        (HEADER_LEN + 20, refusal.reason.handshake_code()),
        // Our socket id: none, the caller is not connected.
        (HEADER_LEN + 24, 0),
        (HEADER_LEN + 28, refusal.syn_cookie),
    ];
    for (at, value) in words {
        if let Some(slot) = out.get_mut(at..at + 4) {
            slot.copy_from_slice(&value.to_be_bytes());
        }
    }
    out
}

/// Datagrams dropped on one listener, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    pub fn add(&mut self, reason: DropReason) {
        if let Some(n) = self.0.get_mut(reason.index()) {
            *n += 1;
        }
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0.get(reason.index()).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `self` plus another port's counts (e.g. a finished call's).
    pub fn plus(&self, other: &DropCounts) -> DropCounts {
        let mut sum = *self;
        for (total, n) in sum.0.iter_mut().zip(other.0) {
            *total += n;
        }
        sum
    }

    /// Every reason with its count, zeros included (so every series exists from the start).
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}.bin")).unwrap()
    }

    /// The datagram from issue 10 (fixtures/issue-10-zero-length-stream-id.txt dissects it).
    pub(crate) fn issue_10_datagram() -> Vec<u8> {
        fixture("issue-10-zero-length-stream-id")
    }

    #[test]
    fn issue_10_zero_length_stream_id_is_dropped() {
        let d = issue_10_datagram();
        assert_eq!(d.len(), 72);
        assert_eq!(inspect(&d), Verdict::Drop(DropReason::ExtensionLength));
    }

    #[test]
    fn real_callers_pass() {
        for name in [
            "slt-plain-0",
            "slt-plain-1",
            "slt-aes256-sid-0",
            "slt-aes256-sid-1",
            "ffmpeg-sid-0",
            "ffmpeg-sid-1",
            "ffmpeg-aes128-0",
            "ffmpeg-aes128-1",
            "slt-file-0",
        ] {
            assert_eq!(inspect(&fixture(name)), Verdict::Pass, "{name}");
        }
    }

    #[test]
    fn transtype_file_is_refused_with_the_congestion_reason() {
        let d = fixture("slt-file-1");
        let Verdict::Refuse(refusal) = inspect(&d) else {
            panic!("not refused: {:?}", inspect(&d));
        };
        assert_eq!(refusal.reason, Unsupported::Congestion);
        assert_eq!(
            refusal.socket_id,
            u32::from_be_bytes([0x14, 0xdf, 0xa9, 0x6e])
        );
        let reply = rejection(&refusal, 7);
        assert_eq!(
            &reply[HEADER_LEN + 20..HEADER_LEN + 24],
            &1013u32.to_be_bytes()
        );
        assert_eq!(&reply[12..16], &refusal.socket_id.to_be_bytes());
        // Our own rejection is a well-formed handshake to our own checks.
        assert_eq!(inspect(&reply), Verdict::Drop(DropReason::HandshakeType));
    }

    #[test]
    fn live_congestion_extension_is_stripped() {
        let mut d = fixture("slt-file-1");
        let at = d.len() - 4;
        d[at..].copy_from_slice(b"evil");
        let verdict = inspect(&d);
        assert_eq!(
            verdict,
            Verdict::PassAmended(Amendment {
                strip: Some((d.len() - 8, d.len())),
                key_bytes: None,
            })
        );
        let Verdict::PassAmended(amendment) = verdict else {
            unreachable!()
        };
        assert_eq!(amend(&d, &amendment).len(), d.len() - 8);
    }

    #[test]
    fn unknown_and_truncated_extensions_are_dropped() {
        let base = fixture("ffmpeg-sid-1");
        let mut unknown = base.clone();
        unknown.extend_from_slice(&[0, 9, 0, 1, 1, 2, 3, 4]);
        assert_eq!(
            inspect(&unknown),
            Verdict::Drop(DropReason::UnknownExtension)
        );
        let mut huge = base.clone();
        huge.extend_from_slice(&[0, 200, 0, 1, 1, 2, 3, 4]);
        assert_eq!(inspect(&huge), Verdict::Drop(DropReason::UnknownExtension));
        let mut truncated = base.clone();
        truncated.extend_from_slice(&[0, 5, 0, 9, 1, 2, 3, 4]);
        assert_eq!(
            inspect(&truncated),
            Verdict::Drop(DropReason::ExtensionTruncated)
        );
        let mut stub = base.clone();
        stub.extend_from_slice(&[0, 5]);
        assert_eq!(
            inspect(&stub),
            Verdict::Drop(DropReason::ExtensionTruncated)
        );
        let mut twice = base.clone();
        twice.extend_from_slice(&base[base.len() - 12..]);
        assert_eq!(
            inspect(&twice),
            Verdict::Drop(DropReason::DuplicateExtension)
        );
        let mut filter = base.clone();
        filter.extend_from_slice(&[0, 7, 0, 1, b'c', b'e', b'f', b':']);
        assert!(matches!(
            inspect(&filter),
            Verdict::Refuse(Refusal {
                reason: Unsupported::Filter,
                ..
            })
        ));
    }

    #[test]
    fn key_material_must_fill_its_block_exactly() {
        // Found by the srt_listener fuzz target: a KMREQ whose salt length says less than
        // its block holds left bytes srt-protocol read as an unknown extension.
        let mut d = fixture("slt-aes256-sid-1");
        let km = d.len() - 72;
        assert_eq!(&d[km - 4..km], &[0, 3, 0, 0x12]);
        assert_eq!(inspect(&d), Verdict::Pass);
        d[km + 14] = 2;
        assert_eq!(inspect(&d), Verdict::Drop(DropReason::ExtensionLength));
    }

    #[test]
    fn responses_from_a_caller_are_dropped() {
        // Found by the fuzz target: a conclusion carrying KMRSP instead of KMREQ.
        let mut d = fixture("slt-aes256-sid-1");
        let km = d.len() - 72;
        d[km - 3] = 4;
        assert_eq!(inspect(&d), Verdict::Drop(DropReason::ResponseExtension));
    }

    #[test]
    fn a_caller_takes_answers_and_rejections_but_not_requests() {
        let request = fixture("slt-aes256-sid-1");
        assert_eq!(
            inspect_as(Side::Caller, &request),
            Verdict::Drop(DropReason::RequestExtension)
        );
        let Verdict::Refuse(refusal) = inspect(&fixture("slt-file-1")) else {
            panic!("transtype=file not refused");
        };
        let rejection = rejection(&refusal, 0);
        assert_eq!(inspect_as(Side::Caller, &rejection), Verdict::Pass);
        assert_eq!(
            inspect(&rejection),
            Verdict::Drop(DropReason::HandshakeType)
        );
    }

    #[test]
    fn key_material_needs_a_key_size() {
        let original = fixture("ffmpeg-aes128-1");
        let mut d = original.clone();
        // libsrt's default key length: the encryption field is 0 and the key material says
        // 16 bytes. srt-protocol (which reached `unimplemented!("expected no secrets")` on
        // this) gets the field filled in.
        d[HEADER_LEN + 4] = 0;
        d[HEADER_LEN + 5] = 0;
        let Verdict::PassAmended(amendment) = inspect(&d) else {
            panic!("not amended: {:?}", inspect(&d));
        };
        assert_eq!(amendment.key_bytes, Some(16));
        assert_eq!(amend(&d, &amendment), original);
        // Key material naming no AES key length: nothing to fill in.
        let klen = 0x54 + 15;
        assert_eq!(d[klen], 4);
        d[klen] = 5;
        assert_eq!(inspect(&d), Verdict::Drop(DropReason::KeySize));
        d[HEADER_LEN + 5] = 1;
        assert_eq!(inspect(&d), Verdict::Drop(DropReason::KeySize));
    }

    #[test]
    fn garbage_and_short_datagrams() {
        assert_eq!(inspect(&[]), Verdict::Drop(DropReason::TooShort));
        assert_eq!(inspect(&[0x80; 15]), Verdict::Drop(DropReason::TooShort));
        assert_eq!(
            inspect(&[0xFF; 64]),
            Verdict::Drop(DropReason::UnknownControlSubtype)
        );
        assert_eq!(
            inspect(&[0x80, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Verdict::Drop(DropReason::UnknownControlType)
        );
        assert_eq!(
            inspect(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Verdict::Drop(DropReason::HandshakeTruncated)
        );
        let mut version = fixture("slt-plain-1");
        version[HEADER_LEN + 3] = 6;
        assert_eq!(
            inspect(&version),
            Verdict::Drop(DropReason::HandshakeVersion)
        );
        let mut agreement = fixture("slt-plain-1");
        agreement[HEADER_LEN + 23] = 0xFE;
        assert_eq!(
            inspect(&agreement),
            Verdict::Drop(DropReason::HandshakeType)
        );
        // A data packet is the protocol's business.
        assert_eq!(inspect(&[0; 16]), Verdict::Pass);
    }

    #[test]
    fn drop_reason_names_are_unique_and_indexed_in_order() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
