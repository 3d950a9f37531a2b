use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a UDP socket with explicit kernel buffer sizes. The default 64 KiB receive buffer
/// overflows at 50 Mbit/s; the kernel caps the request at `net.core.rmem_max`.
pub fn bind_udp(address: SocketAddr, buffer_bytes: usize) -> io::Result<tokio::net::UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_recv_buffer_size(buffer_bytes)?;
    socket.set_send_buffer_size(buffer_bytes)?;
    socket.bind(&address.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// Tells the operator once, at bind, when the kernel gave the port less receive buffer than
/// asked for: at 50 Mbit/s a small buffer means kernel drops and retransmissions.
pub fn warn_if_buffer_capped(label: &str, socket: &tokio::net::UdpSocket, requested: usize) {
    let Ok(granted) = socket2::SockRef::from(socket).recv_buffer_size() else {
        return;
    };
    // Linux reports twice the usable size it granted (the rest is bookkeeping).
    if granted / 2 < requested {
        let rmem_max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        tracing::warn!(target: "lunora::srt", listener = %label, requested, granted = granted / 2, %rmem_max,
            "the kernel capped the UDP receive buffer (net.core.rmem_max); raise it with `sysctl -w net.core.rmem_max={requested}` to avoid drops at high bitrates");
    }
}
