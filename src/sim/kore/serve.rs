//! The loopback HTTP server every simulator runs on: bind, serve an axum router in a task,
//! stop on drop. It lives here because the Kore simulator was the first user; the Twilio API
//! fake shares it.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A running server that shuts down gracefully when dropped.
pub struct LocalServer {
    addr: SocketAddr,
    stop: CancellationToken,
}

// === impl LocalServer ===

impl LocalServer {
    /// Binds `addr` (`127.0.0.1:0` for an ephemeral port) and serves `app` until dropped.
    pub async fn start(addr: &str, app: Router) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
        });
        Ok(Self { addr, stop })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
