//! Packet synchronisation: turns arbitrary byte chunks (datagrams of any size, garbage,
//! truncated packets) into aligned 188-byte packets, reporting sync errors as data.
//!
//! Follows TR 101 290 §5.2.1: sync is lost after two consecutive corrupted sync bytes and
//! regained after five consecutive good ones. The stream starts out assumed in sync so a clean
//! stream loses nothing.

use crate::packet::{PACKET_SIZE, Packet, SYNC_BYTE};

const SYNC_LOSS_AFTER: u32 = 2;
const SYNC_ACQUIRE_AFTER: u32 = 5;

/// What the synchroniser saw.
#[derive(Debug)]
pub enum SyncOutput<'a> {
    Packet(Packet<'a>),
    /// A packet-start position did not hold 0x47.
    SyncByteError,
    /// Two consecutive sync byte errors: packets are dropped until sync is regained.
    SyncLoss,
    /// A chunk began with a fresh packet while a partial one was pending: the partial one
    /// was cut short by its sender and is discarded.
    TruncatedPacket,
}

#[derive(Debug)]
pub struct Resync {
    carry: Vec<u8>,
    in_sync: bool,
    bad_run: u32,
}

impl Default for Resync {
    fn default() -> Self {
        Resync {
            carry: Vec::with_capacity(PACKET_SIZE),
            in_sync: true,
            bad_run: 0,
        }
    }
}

impl Resync {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn in_sync(&self) -> bool {
        self.in_sync
    }

    /// Feeds one chunk. Aligned input (the usual 1316-byte datagram) is handed out in place,
    /// without copying.
    pub fn push(&mut self, data: &[u8], on_output: &mut impl FnMut(SyncOutput<'_>)) {
        if !self.carry.is_empty() {
            let looks_aligned =
                data.first() == Some(&SYNC_BYTE) && data.len().is_multiple_of(PACKET_SIZE);
            if looks_aligned && self.carry[0] == SYNC_BYTE && self.in_sync {
                self.carry.clear();
                on_output(SyncOutput::TruncatedPacket);
            } else {
                // Unaligned input (a byte stream cut anywhere, or hunting after garbage): this
                // path copies, the aligned one below does not.
                let mut carry = std::mem::take(&mut self.carry);
                carry.extend_from_slice(data);
                let used = self.process(&carry, on_output);
                carry.drain(..used);
                self.carry = carry;
                return;
            }
        }
        let used = self.process(data, on_output);
        self.carry.extend_from_slice(&data[used..]);
    }

    /// Processes whole packets from `data`; returns how many bytes were consumed. The rest
    /// (less than one packet, or a candidate awaiting confirmation) is left for the next chunk.
    fn process(&mut self, data: &[u8], on_output: &mut impl FnMut(SyncOutput<'_>)) -> usize {
        let mut pos = 0;
        while pos + PACKET_SIZE <= data.len() {
            let window = &data[pos..pos + PACKET_SIZE];
            if self.in_sync {
                if window[0] == SYNC_BYTE {
                    self.bad_run = 0;
                    if let Some(packet) = Packet::from_slice(window) {
                        on_output(SyncOutput::Packet(packet));
                    }
                    pos += PACKET_SIZE;
                    continue;
                }
                on_output(SyncOutput::SyncByteError);
                self.bad_run += 1;
                if self.bad_run >= SYNC_LOSS_AFTER {
                    self.in_sync = false;
                    on_output(SyncOutput::SyncLoss);
                    pos += 1;
                } else {
                    pos += PACKET_SIZE;
                }
                continue;
            }
            // Hunting: a candidate must show SYNC_ACQUIRE_AFTER sync bytes 188 apart.
            let Some(offset) = window.iter().position(|&b| b == SYNC_BYTE) else {
                pos += PACKET_SIZE;
                continue;
            };
            pos += offset;
            let needed = SYNC_ACQUIRE_AFTER as usize * PACKET_SIZE;
            if data.len() - pos < needed {
                // Not enough bytes to confirm yet: keep them for the next chunk.
                return pos;
            }
            let confirmed =
                (0..SYNC_ACQUIRE_AFTER as usize).all(|i| data[pos + i * PACKET_SIZE] == SYNC_BYTE);
            if confirmed {
                self.in_sync = true;
                self.bad_run = 0;
            } else {
                pos += 1;
            }
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(count: usize) -> Vec<u8> {
        let mut data = Vec::new();
        for i in 0..count {
            let mut p = [0u8; PACKET_SIZE];
            p[0] = SYNC_BYTE;
            p[3] = 0x10 | (i as u8 & 0x0F);
            data.extend(p);
        }
        data
    }

    fn run(resync: &mut Resync, chunks: &[&[u8]]) -> (usize, usize, usize, usize) {
        let (mut ok, mut bad, mut lost, mut truncated) = (0, 0, 0, 0);
        for chunk in chunks {
            resync.push(chunk, &mut |out| match out {
                SyncOutput::Packet(_) => ok += 1,
                SyncOutput::SyncByteError => bad += 1,
                SyncOutput::SyncLoss => lost += 1,
                SyncOutput::TruncatedPacket => truncated += 1,
            });
        }
        (ok, bad, lost, truncated)
    }

    #[test]
    fn aligned_datagrams_pass_untouched() {
        let data = packets(14);
        let mut r = Resync::new();
        assert_eq!(run(&mut r, &[&data[..1316], &data[1316..]]), (14, 0, 0, 0));
    }

    #[test]
    fn byte_stream_chunks_of_1456_are_reassembled() {
        let data = packets(31);
        let chunks: Vec<&[u8]> = data.chunks(1456).collect();
        let mut r = Resync::new();
        assert_eq!(run(&mut r, &chunks), (31, 0, 0, 0));
    }

    #[test]
    fn garbage_loses_sync_then_reacquires() {
        let mut data = packets(3);
        data.extend([0x00u8; 500]);
        data.extend(packets(10));
        let mut r = Resync::new();
        let (ok, bad, lost, _) = run(&mut r, &[&data]);
        assert_eq!((bad, lost), (2, 1));
        assert!(r.in_sync());
        // Three before the garbage; after it, the five confirming packets are delivered too.
        assert_eq!(ok, 13);
    }

    #[test]
    fn truncated_datagram_is_dropped_at_next_aligned_one() {
        let data = packets(14);
        let mut r = Resync::new();
        assert_eq!(run(&mut r, &[&data[..1300], &data[1316..]]), (13, 0, 0, 1));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut r = Resync::new();
        let mut seed = 0x1234_5678u32;
        let noise: Vec<u8> = (0..20_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        for chunk in noise.chunks(777) {
            r.push(chunk, &mut |_| {});
        }
    }
}
