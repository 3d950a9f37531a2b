//! The HTTP connection loop. `axum::serve` has no connection cap and no header or idle
//! timeout, so idle sockets could pile up until file descriptors ran out and every listener of
//! the daemon failed; this loop bounds connections (in all and per address) and gives hyper a
//! timer so slow request heads and idle keep-alive connections are closed.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use lunora_media::LogThrottle;
use tokio::sync::watch;
use tracing::warn;

/// Open connections at once: far above what dashboards, API clients and Prometheus need, far
/// below the unit's file descriptor limit (65,536), so RTMP and SRT keep theirs.
pub(crate) const MAX_CONNECTIONS: usize = 4096;
/// Open connections from one address: room for a reverse proxy's pool or a busy office NAT,
/// not for one host to take every place.
pub(crate) const MAX_PER_ADDRESS: usize = 256;
/// From a connection's start, or the end of its last response, until a whole request head has
/// arrived. hyper runs this timer while it waits for a head, so it bounds slow headers and
/// idle keep-alive connections alike.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may take to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Connections {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl Connections {
    fn admit(&mut self, ip: IpAddr) -> Result<(), &'static str> {
        if self.total >= MAX_CONNECTIONS {
            return Err("the connection limit is reached");
        }
        let count = self.per_address.entry(ip).or_insert(0);
        if *count >= MAX_PER_ADDRESS {
            return Err("too many connections from this address");
        }
        *count += 1;
        self.total += 1;
        Ok(())
    }

    fn left(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(count) = self.per_address.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_address.remove(&ip);
            }
        }
    }
}

fn lock(connections: &Mutex<Connections>) -> MutexGuard<'_, Connections> {
    connections.lock().unwrap_or_else(|p| p.into_inner())
}

/// A connection's place, given back when its task ends.
#[derive(Debug)]
struct Place {
    connections: Arc<Mutex<Connections>>,
    ip: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        lock(&self.connections).left(self.ip);
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish
/// for up to [`SHUTDOWN_GRACE`].
pub(crate) async fn serve_connections<L>(
    mut listener: L,
    router: Router,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener<Addr = SocketAddr>,
{
    let connections = Arc::new(Mutex::new(Connections::default()));
    let (stop, stopping) = watch::channel(false);
    let mut refusals = LogThrottle::new(Duration::from_secs(10));
    let epoch = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        if let Err(reason) = lock(&connections).admit(peer.ip()) {
            // Closed at once rather than left in the backlog, where it would hold a
            // descriptor and delay the next client.
            drop(io);
            if let Some(suppressed) = refusals.due(epoch.elapsed(), peer.ip()) {
                warn!(%peer, suppressed, "HTTP connection refused: {reason}");
            }
            continue;
        }
        let place = Place {
            connections: connections.clone(),
            ip: peer.ip(),
        };
        let router = router.clone();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let _place = place;
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let mut router = router.clone();
                tower_service::Service::call(&mut router, request.map(Body::new))
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stopping.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
            }
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        });
    }
    drop(stopping);
    let _ = stop.send(true);
    // Every connection task holds a receiver; all are gone once they have finished.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), stop.closed()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_every_place() {
        let mut connections = Connections::default();
        let one = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..MAX_PER_ADDRESS {
            connections.admit(one).unwrap();
        }
        assert!(connections.admit(one).is_err());
        connections.admit(IpAddr::from([10, 0, 0, 2])).unwrap();
        connections.left(one);
        connections.admit(one).unwrap();
    }

    #[test]
    fn the_total_is_capped() {
        let mut connections = Connections::default();
        for n in 0..MAX_CONNECTIONS {
            let ip = IpAddr::from([10, 1, (n / 256) as u8, n as u8]);
            connections.admit(ip).unwrap();
        }
        assert!(connections.admit(IpAddr::from([10, 2, 0, 1])).is_err());
    }
}
