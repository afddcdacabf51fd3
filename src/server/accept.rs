//! The HTTP listener's accept loop, in place of `axum::serve`: what a public listener must
//! refuse before any request reaches a route. A client must send its request head within
//! `header_timeout` (slowloris: a client that never finishes its headers is dropped, and
//! since admission is decided by the route, it never holds an admission permit), the head
//! may be at most `max_header_bytes` (431 beyond), and one source address may have at most
//! `max_pending_per_ip` connections that have not yet become a call (a WebSocket upgrade
//! hands the socket to the call and frees the slot), so one host cannot exhaust the file
//! descriptors before admission. On stop it accepts no more and lets open requests finish;
//! upgraded calls are not its business (the call tracker drains them).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::telemetry::metrics;

/// The listener's connection limits (`[server]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time a client has to send its whole request head.
    pub header_timeout: Duration,
    /// Largest request head (start line and headers).
    pub max_header_bytes: usize,
    /// Connections one source address may hold before they become calls (0: no limit).
    pub max_pending_per_ip: usize,
}

/// Connections per source address that have not become calls, in shards by address, so
/// no one lock is taken by every call: a shard is locked once when a connection is
/// accepted and once when it upgrades or closes, never per frame.
#[derive(Default)]
struct Pending([Mutex<HashMap<IpAddr, usize>>; SHARDS]);

const SHARDS: usize = 16;

fn shard(ip: &IpAddr) -> usize {
    use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(ip) as usize % SHARDS
}

/// One pending connection's place in [`Pending`]; freed when dropped.
struct Slot {
    pending: Arc<Pending>,
    ip: IpAddr,
}

impl Pending {
    fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<Slot> {
        let mut map = self.0[shard(&ip)].lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if limit > 0 && *n >= limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            pending: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.pending.0[shard(&self.ip)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` with `limits` (over TLS when `tls` is given) until `stop`,
/// then waits for open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    (limits, tls): (ConnLimits, Option<Arc<super::tls::Tls>>),
    stop: CancellationToken,
) -> std::io::Result<()> {
    let pending = Arc::new(Pending::default());
    let connections = TaskTracker::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        // hyper's read buffer must hold the largest head (and never be below its minimum).
        .max_buf_size(limits.max_header_bytes.max(8_192) + 1_024);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // the listener itself is fine; back off briefly instead of spinning.
                    tracing::warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(super::ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Some(slot) = pending.take(peer.ip(), limits.max_pending_per_ip) else {
            metrics::connection_refused("per_ip");
            tracing::debug!(peer = %peer.ip(), limit = limits.max_pending_per_ip,
                "Connection refused: too many pending connections from this address.");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (http, router, stop) = (http.clone(), router.clone(), stop.clone());
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        connections.spawn(async move {
            // Held until the request head is read and answered, or the socket is upgraded to
            // a call: the upgrade ends the connection's future.
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                return serve_one(&http, stream, router, stop).await;
            };
            // The handshake counts against the header timeout: a client that stalls in it
            // holds a slot no longer than one that stalls in its headers.
            match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_one(&http, tls, router, stop).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed."),
                Err(_) => metrics::connection_refused("header_timeout"),
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// One connection, plain or TLS, until it ends or is upgraded to a call.
async fn serve_one<IO>(http: &http1::Builder, io: IO, router: Router, stop: CancellationToken)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = http
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
        .with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = stop.cancelled() => {
            // Finish the request in hand, take no other on this connection.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        // hyper ends a connection whose head did not arrive in time with a timeout.
        if e.is_timeout() {
            metrics::connection_refused("header_timeout");
        }
        tracing::debug!(error = %e, "HTTP connection ended with an error.");
    }
}
