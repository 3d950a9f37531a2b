//! Datagrams from a few peers through the SRT listener core: `wire::inspect`, srt-protocol's
//! `Packet::parse`, its handshake (`Listen`) and connection (`DuplexConnection`) machines, with
//! accept/reject decisions and timers in between. The core contains panics itself; here any
//! panic it had to contain is a finding (a hole in `wire`), so the target fails on one.
//!
//! Input: frames of `[control][length u16 BE][datagram]`. `control` picks the peer (low two
//! bits); 0x40 copies the SYN cookie of the last handshake we sent that peer into the
//! datagram (so the fuzzer reaches conclusion handling without guessing 32 bits); 0x80 makes
//! the frame a decision instead (accept with the caller's key length, or reject).
//!
//! Run: `cargo fuzz run srt_listener corpus/srt_listener seeds/srt_listener` from this
//! directory.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lunora_srt::wire::DropReason;
use lunora_srt::{AccessDecision, EngineEvent, PortCore};
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{CoreRejectReason, RejectReason};
use srt_protocol::settings::{ConnInitSettings, KeySettings};

/// Offset of the SYN cookie in a handshake datagram (16-byte header + 28).
const COOKIE: usize = 44;

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let mut core = PortCore::listener(now, ConnInitSettings::default());
    let peers: [SocketAddr; 4] = [
        SocketAddr::from(([127, 0, 0, 1], 5000)),
        SocketAddr::from(([127, 0, 0, 1], 5001)),
        SocketAddr::from(([10, 0, 0, 2], 5000)),
        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 5000)),
    ];
    let mut cookies = [[0u8; 4]; 4];
    let mut requests = Vec::new();
    let mut rest = data;
    while let Some((&control, after)) = rest.split_first() {
        let peer_index = usize::from(control & 3);
        let peer = peers[peer_index];
        if control & 0x80 != 0 {
            rest = after;
            if let Some((peer, key_size)) = requests.pop() {
                let decision = match (control & 0x10 != 0, key_size) {
                    (true, _) => AccessDecision::Reject(RejectReason::Core(CoreRejectReason::Peer)),
                    (false, KeySize::Unspecified) => AccessDecision::Accept(None),
                    (false, key_size) => AccessDecision::Accept(Some(KeySettings {
                        key_size,
                        passphrase: Passphrase::try_from("fuzz-passphrase".to_string())
                            .unwrap_or_else(|_| unreachable!()),
                    })),
                };
                core.handle_decision(now, peer, decision);
            }
        } else {
            let Some((len, after)) = after.split_first_chunk::<2>() else { return };
            let len = usize::from(u16::from_be_bytes(*len)).min(after.len());
            let (datagram, after) = after.split_at(len);
            rest = after;
            let mut datagram = datagram.to_vec();
            if control & 0x40 != 0
                && let Some(slot) = datagram.get_mut(COOKIE..COOKIE + 4)
            {
                slot.copy_from_slice(&cookies[peer_index]);
            }
            core.handle_datagram(now, peer, &datagram);
        }
        now += Duration::from_millis(u64::from(control & 0x0C) * 5);
        core.handle_timeout(now);
        while let Some((sent, to)) = core.poll_transmit() {
            if let (Some(i), Some(cookie)) = (
                peers.iter().position(|p| *p == to),
                sent.get(COOKIE..COOKIE + 4),
            ) && sent.first().is_some_and(|b| *b == 0x80)
                && sent.get(1) == Some(&0)
            {
                cookies[i].copy_from_slice(cookie);
            }
        }
        while let Some(event) = core.poll_event() {
            if let EngineEvent::Request(request) = event {
                requests.push((request.peer, request.key_size));
            }
        }
        assert_eq!(
            core.drops().get(DropReason::Panic),
            0,
            "srt-protocol panicked on a datagram wire::inspect let through"
        );
    }
});
