//! The daemon's side listeners (metrics, the web view): HTTP/1 over TCP,
//! bound before the root is touched (a taken port stops the start with
//! nothing made), and bounded, because anyone who can reach them may
//! connect: at most [`MAX_CONNECTIONS`] at once (the rest wait in the
//! kernel's backlog and hold no descriptor of the daemon's), and a request
//! head must arrive within [`HEADER_TIMEOUT`], also on an idle keep-alive
//! connection. So a flood of half-open connections cannot use up the
//! descriptors the API and the containers need.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once by one side listener.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound side listener, not serving yet.
pub struct SideListener {
    what: &'static str,
    listener: TcpListener,
}

impl SideListener {
    /// Binds `addr` for `what` (named in errors and logs).
    pub async fn bind(what: &'static str, addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for {what} on {addr}"))?;
        Ok(SideListener { what, listener })
    }

    /// The address bound (the port chosen when 0 was asked).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves `app` until the process ends.
    pub fn serve(self, app: axum::Router) -> Result<()> {
        let addr = self.local_addr()?;
        tracing::info!(%addr, "serving {}", self.what);
        tokio::spawn(accept_loop(self.listener, app));
        Ok(())
    }
}

async fn accept_loop(listener: TcpListener, app: axum::Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // A slot first: while all are taken, nothing is accepted.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: wait instead of spinning.
                tracing::warn!(error = %e, "side listener cannot accept");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
            drop(slot);
        });
    }
}
