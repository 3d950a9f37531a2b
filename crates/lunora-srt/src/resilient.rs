//! A listener that survives its own task dying.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener};
use tracing::{error, info, warn};

use crate::udp::bind_listener;

/// What [`ResilientListener::next`] produced.
#[derive(Debug)]
pub enum ListenerEvent {
    Request(ConnectionRequest),
    /// srt-tokio's listener task died (a malformed handshake can hit an `unimplemented!`
    /// inside srt-protocol) and the port was bound again. Connections made through the old
    /// listener are gone.
    Restarted,
}

/// An SRT listener that rebinds its port when srt-tokio's listener task stops.
#[derive(Debug)]
pub struct ResilientListener {
    label: String,
    address: SocketAddr,
    latency: Duration,
    buffer_bytes: usize,
    current: Option<(SrtListener, SrtIncoming)>,
}

impl ResilientListener {
    /// Binds now, so a port conflict is reported at start-up. `label` names the input or
    /// output in log lines.
    pub async fn bind(
        label: impl Into<String>,
        address: SocketAddr,
        latency: Duration,
        buffer_bytes: usize,
    ) -> io::Result<Self> {
        let (listener, incoming, local) = bind_listener(address, latency, buffer_bytes).await?;
        Ok(ResilientListener {
            label: label.into(),
            address: local,
            latency,
            buffer_bytes,
            current: Some((listener, incoming)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The next caller, or news that the listener had to be rebuilt. Cancel-safe.
    pub async fn next(&mut self) -> ListenerEvent {
        loop {
            match &mut self.current {
                Some((_, incoming)) => match incoming.incoming().next().await {
                    Some(request) => return ListenerEvent::Request(request),
                    None => {
                        error!(target: "lunora::srt", listener = %self.label, address = %self.address,
                            "SRT listener task stopped (a malformed handshake crashed it); rebinding");
                        self.current = None;
                    }
                },
                None => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    match bind_listener(self.address, self.latency, self.buffer_bytes).await {
                        Ok((listener, incoming, _)) => {
                            info!(target: "lunora::srt", listener = %self.label, address = %self.address, "SRT listener rebound");
                            self.current = Some((listener, incoming));
                            return ListenerEvent::Restarted;
                        }
                        Err(e) => {
                            warn!(target: "lunora::srt", listener = %self.label, address = %self.address, error = %e, "cannot rebind SRT port yet")
                        }
                    }
                }
            }
        }
    }
}
