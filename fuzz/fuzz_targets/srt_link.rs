//! Our calling port and our listening port talking to each other through a hostile network
//! the fuzzer controls: every datagram in flight may be delivered, corrupted, dropped,
//! duplicated or joined by one the fuzzer makes up, while the caller feeds payloads through
//! `send_data` and both sides' timers run. This reaches what the listener-only target cannot
//! guess its way into: the caller's handshake (`Connect`), key material answers, and both
//! connections' data, ACK/NAK and retransmission paths with encryption on.
//!
//! Nothing srt-protocol does may have to be contained: a panic either core caught (counted
//! as `DropReason::Panic`) fails the target, as a hole in `wire`.
//!
//! Input: one operation per byte (with operands after some):
//! - `op % 8 == 0`: deliver the next datagram in flight as it is;
//! - `1`: deliver it with the byte at `[index]` XORed with `[mask]`;
//! - `2`: drop it; `3`: deliver it twice;
//! - `4`: inject `[len][bytes]` into the listener (from the caller's address or a stranger's);
//! - `5`: the same into the caller (from the listener's address or a stranger's);
//! - `6`: the caller queues a payload of `[len]` bytes;
//! - `7`: advance the clock by `op / 8` × 7 ms and run both sides' timers.
//!
//! Run: `cargo fuzz run srt_link` from this directory.

#![no_main]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lunora_srt::wire::DropReason;
use lunora_srt::{AccessDecision, EngineEvent, PortCore};
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::settings::{ConnInitSettings, KeySettings};

const CALLER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5000);
const LISTENER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9000);
const STRANGER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6666);

fn keyed() -> ConnInitSettings {
    ConnInitSettings {
        key_settings: Some(KeySettings {
            key_size: KeySize::AES192,
            passphrase: Passphrase::try_from("fuzz-passphrase".to_string())
                .unwrap_or_else(|_| unreachable!()),
        }),
        ..ConnInitSettings::default()
    }
}

/// A datagram in flight and where it goes.
struct InFlight {
    bytes: Vec<u8>,
    to_listener: bool,
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut listener = PortCore::listener(now, ConnInitSettings::default());
    let mut caller = PortCore::caller(now, keyed(), LISTENER, Some("fuzz".into()));
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut outgoing: VecDeque<(Instant, Bytes)> = VecDeque::new();
    let mut rest = data;
    let mut take = |rest: &mut &[u8]| -> u8 {
        let (first, after) = rest.split_first().map_or((0, &[][..]), |(f, a)| (*f, a));
        *rest = after;
        first
    };
    while !rest.is_empty() {
        let op = take(&mut rest);
        match op % 8 {
            0..=3 => {
                let Some(mut datagram) = in_flight.pop_front() else { continue };
                match op % 8 {
                    1 => {
                        let (index, mask) = (usize::from(take(&mut rest)), take(&mut rest));
                        let at = index % datagram.bytes.len().max(1);
                        if let Some(byte) = datagram.bytes.get_mut(at) {
                            *byte ^= mask;
                        }
                    }
                    2 => continue,
                    _ => {}
                }
                let times = if op % 8 == 3 { 2 } else { 1 };
                for _ in 0..times {
                    if datagram.to_listener {
                        listener.handle_datagram(now, CALLER, &datagram.bytes);
                    } else {
                        caller.handle_datagram(now, LISTENER, &datagram.bytes);
                    }
                }
            }
            4 | 5 => {
                let from_peer = op & 0x80 != 0;
                let len = usize::from(take(&mut rest)).min(rest.len());
                let (bytes, after) = rest.split_at(len);
                rest = after;
                if op % 8 == 4 {
                    listener.handle_datagram(now, if from_peer { CALLER } else { STRANGER }, bytes);
                } else {
                    caller.handle_datagram(now, if from_peer { LISTENER } else { STRANGER }, bytes);
                }
            }
            6 => {
                let len = usize::from(take(&mut rest)) * 5 + 1;
                outgoing.push_back((now, Bytes::from(vec![op; len.min(1316)])));
                caller.send_data(now, LISTENER, &mut outgoing);
                // What does not fit waits, as the engine's queue would; bounded here too.
                outgoing.truncate(64);
            }
            _ => {
                now += Duration::from_millis(u64::from(op / 8) * 7);
                caller.send_data(now, LISTENER, &mut outgoing);
                listener.handle_timeout(now);
                caller.handle_timeout(now);
            }
        }
        while let Some(event) = listener.poll_event() {
            if let EngineEvent::Request(request) = event {
                let key = match request.key_size {
                    KeySize::Unspecified => None,
                    key_size => Some(KeySettings { key_size, ..keyed().key_settings.unwrap_or_else(|| unreachable!()) }),
                };
                listener.handle_decision(now, request.peer, AccessDecision::Accept(key));
            }
        }
        while caller.poll_event().is_some() {}
        while let Some((bytes, to)) = listener.poll_transmit() {
            if to == CALLER && in_flight.len() < 256 {
                in_flight.push_back(InFlight { bytes, to_listener: false });
            }
        }
        while let Some((bytes, to)) = caller.poll_transmit() {
            if to == LISTENER && in_flight.len() < 256 {
                in_flight.push_back(InFlight { bytes, to_listener: true });
            }
        }
        assert_eq!(listener.drops().get(DropReason::Panic), 0, "the listener contained a panic");
        assert_eq!(caller.drops().get(DropReason::Panic), 0, "the caller contained a panic");
    }
});
