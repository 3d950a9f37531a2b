use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a UDP socket with explicit kernel buffer sizes. The default 64 KiB receive buffer
/// overflows at 50 Mbit/s; the kernel caps the request at `net.core.rmem_max`.
pub fn bind_udp(address: SocketAddr, buffer_bytes: usize) -> io::Result<tokio::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(address), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    socket.set_recv_buffer_size(buffer_bytes)?;
    socket.set_send_buffer_size(buffer_bytes)?;
    socket.bind(&address.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}
