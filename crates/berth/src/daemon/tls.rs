//! The API over TCP with TLS, as dockerd's `--tls`, `--tlsverify`,
//! `--tlscacert`, `--tlscert` and `--tlskey` (rustls, TLS 1.2 and 1.3
//! only). With `--tlsverify` a client must present a certificate signed
//! by the CA: the handshake fails otherwise, before any request is read.
//! Handshakes run in tasks of their own, each within
//! [`HANDSHAKE_TIMEOUT`], at most [`MAX_HANDSHAKES`] at once and
//! [`MAX_HANDSHAKES_PER_IP`] from one address; a connection over either
//! limit is closed at once, so the port keeps being served and a client
//! that connects and says nothing holds up no one else.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::certs;

/// Handshakes under way at once on one listener, and from one address.
pub const MAX_HANDSHAKES: usize = 256;
pub const MAX_HANDSHAKES_PER_IP: usize = 16;
/// Time a client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA client certificates must be signed by (`--tlsverify`).
    pub ca: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The server's TLS configuration from its files.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    let provider = certs::provider();
    let chain = certs::read_certs(&files.cert)?;
    let key = certs::read_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(certs::VERSIONS)
        .context("TLS versions")?;
    let builder = match &files.ca {
        Some(ca) => {
            let roots = certs::read_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .context("the server certificate and its key do not go together")?;
    Ok(Arc::new(config))
}

/// A TCP listener whose connections come out of a finished handshake.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`, handshaking with `config`.
    pub fn start(tcp: TcpListener, config: Arc<ServerConfig>) -> Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(TlsListener { ready, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshaking = Arc::new(Handshaking::default());
    loop {
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            // The server stopped: let go of the port now.
            () = ready.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "API listener cannot accept");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        super::listeners::keep_alive(&stream);
        // Over the limits the connection is closed at once: the port keeps
        // being served, and one address cannot take every slot.
        let Some(slot) = handshaking.clone().enter(peer.ip()) else {
            tracing::debug!(%peer, "too many TLS handshakes under way; connection closed");
            continue;
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let outcome = handshake.await;
            drop(slot);
            match outcome {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                Err(_) => tracing::info!(%peer, "TLS handshake not finished in time"),
            }
        });
    }
}

/// Handshakes under way, in all and per client address.
#[derive(Default)]
struct Handshaking {
    state: parking_lot::Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A handshake's place; given back when dropped.
struct Slot {
    of: Arc<Handshaking>,
    ip: IpAddr,
}

impl Handshaking {
    fn enter(self: Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut state = self.state.lock();
        let mine = state.per_ip.get(&ip).copied().unwrap_or(0);
        // Counted apart, and an address entered only when it gets a slot:
        // refused addresses leave nothing behind.
        if state.total >= MAX_HANDSHAKES || mine >= MAX_HANDSHAKES_PER_IP {
            return None;
        }
        state.total += 1;
        state.per_ip.insert(ip, mine + 1);
        drop(state);
        Some(Slot { of: self, ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.of.state.lock();
        state.total -= 1;
        if let Some(n) = state.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                state.per_ip.remove(&self.ip);
            }
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended (only when the server stops): wait
            // for the shutdown that follows.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::UnixTime;
    use rustls::server::danger::ClientCertVerifier;

    /// `berth tls init`'s files, written into a temporary folder.
    fn init_files() -> (tempfile::TempDir, TlsFiles) {
        let dir = tempfile::tempdir().unwrap();
        let pems = crate::cli::tls::make(&crate::cli::tls::server_names(&[]), 30).unwrap();
        let names = crate::cli::tls::FILES;
        for (name, pem) in names.iter().zip(&pems) {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        let files = TlsFiles {
            ca: Some(dir.path().join("ca.pem")),
            cert: dir.path().join("server-cert.pem"),
            key: dir.path().join("server-key.pem"),
        };
        (dir, files)
    }

    fn verifier(ca: &std::path::Path) -> Arc<dyn ClientCertVerifier> {
        let roots = certs::read_roots(ca).unwrap();
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), certs::provider())
            .build()
            .unwrap()
    }

    #[test]
    fn tls_init_makes_files_the_server_takes_and_clients_pass() {
        let (dir, files) = init_files();
        server_config(&files).unwrap();
        let client = certs::read_certs(&dir.path().join("cert.pem")).unwrap();
        let ours = verifier(files.ca.as_ref().unwrap());
        ours.verify_client_cert(&client[0], &[], UnixTime::now())
            .unwrap();
        // A client of another CA does not pass.
        let (_other_dir, other) = init_files();
        let theirs = verifier(other.ca.as_ref().unwrap());
        assert!(theirs
            .verify_client_cert(&client[0], &[], UnixTime::now())
            .is_err());
    }

    #[test]
    fn handshake_slots_are_capped_per_address_and_given_back() {
        let h = Arc::new(Handshaking::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mine: Vec<Slot> = (0..MAX_HANDSHAKES_PER_IP)
            .map(|_| h.clone().enter(a).unwrap())
            .collect();
        assert!(h.clone().enter(a).is_none(), "one address is capped");
        let other = h.clone().enter(b).expect("another address still gets in");
        drop(mine);
        drop(other);
        let state = h.state.lock();
        assert!(
            state.per_ip.is_empty() && state.total == 0,
            "every slot given back"
        );
        drop(state);
        assert!(h.clone().enter(a).is_some());
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let (dir, mut files) = init_files();
        files.key = dir.path().join("key.pem"); // the client's key
        let e = server_config(&files).unwrap_err().to_string();
        assert!(e.contains("do not go together"), "{e}");
        files.cert = dir.path().join("missing.pem");
        assert!(server_config(&files).is_err());
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        files.cert = dir.path().join("empty.pem");
        let e = format!("{:#}", server_config(&files).unwrap_err());
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
