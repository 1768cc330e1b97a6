//! How the CLI reaches a daemon: a unix socket, or TCP in plain HTTP or
//! with mutual TLS (the docker CLI's `--tlsverify`, `--tlscacert`,
//! `--tlscert`, `--tlskey`, `$DOCKER_TLS_VERIFY`, `$DOCKER_CERT_PATH`).
//! The client always verifies a TLS daemon: `--tls` without verification
//! is refused rather than trusting any certificate.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::certs;

/// A connection the HTTP client speaks over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The client's TLS flags.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub tls: bool,
    pub verify: bool,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsOptions {
    /// `$DOCKER_TLS_VERIFY` (any non-empty value) turns verification on.
    pub fn with_env(mut self) -> Self {
        self.verify |= std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty());
        self
    }
}

/// Where the daemon is.
#[derive(Clone)]
pub enum Endpoint {
    Unix(String),
    Tcp {
        /// `host:port` to connect to.
        addr: String,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    },
}

impl Endpoint {
    /// The endpoint of `host` (`unix:///path`, `/path`, `tcp://HOST:PORT`).
    pub fn parse(host: &str, tls: &TlsOptions) -> Result<Endpoint> {
        let Some(addr) = host.strip_prefix("tcp://") else {
            return Ok(Endpoint::Unix(super::socket_path(host)?));
        };
        let addr = addr.trim_end_matches('/').to_string();
        let name = server_name(&addr)?;
        let tls = match (tls.tls, tls.verify) {
            (_, true) => Some((client_config(tls)?, name)),
            (true, false) => bail!(
                "--tls without --tlsverify would trust any daemon: berth's client verifies it (--tlsverify --tlscacert …)"
            ),
            (false, false) => None,
        };
        Ok(Endpoint::Tcp { addr, tls })
    }

    /// A new connection.
    pub async fn connect(&self, shown: &str) -> Result<Box<dyn Io>> {
        let unreachable = || {
            format!("Cannot connect to the berth daemon at {shown}. Is the berth daemon running?")
        };
        let (addr, tls) = match self {
            Endpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .with_context(unreachable)?;
                return Ok(Box::new(s));
            }
            Endpoint::Tcp { addr, tls } => (addr, tls),
        };
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(unreachable)?;
        s.set_nodelay(true)?;
        keep_alive(&s);
        let Some((config, name)) = tls else {
            return Ok(Box::new(s));
        };
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name.clone(), s)
            .await
            .with_context(|| format!("TLS with the daemon at {shown}"))?;
        Ok(Box::new(tls))
    }
}

/// TCP keep-alive probes on a connection after 15 s without
/// traffic (as Go's server, and so dockerd, sets them), every 15 s, four
/// unanswered ones ending it: a client whose host or link went away mid-
/// upload (a volume migration) is noticed in about a minute and a half,
/// and the import it was feeding is rolled back, instead of waiting on a
/// connection that will never speak again; the CLI's connections get the
/// same, so a migration waiting for the target's answer notices a dead link.
pub fn keep_alive(stream: &tokio::net::TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let set = setsockopt(stream, sockopt::KeepAlive, &true)
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepIdle, &15))
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepInterval, &15))
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepCount, &4));
    if let Err(e) = set {
        tracing::debug!(error = %e, "could not set TCP keep-alive");
    }
}

/// The name the daemon's certificate must be for: the host of `host:port`.
fn server_name(addr: &str) -> Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => bail!("tcp://{addr}: give the port (tcp://HOST:PORT)"),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .with_context(|| format!("tcp://{addr}: not a host name or address"))
}

fn client_config(tls: &TlsOptions) -> Result<Arc<rustls::ClientConfig>> {
    let roots = certs::read_roots(&certs::or_default(&tls.cacert, "ca.pem"))?;
    let chain = certs::read_certs(&certs::or_default(&tls.cert, "cert.pem"))?;
    let key = certs::read_key(&certs::or_default(&tls.key, "key.pem"))?;
    let config = rustls::ClientConfig::builder_with_provider(certs::provider())
        .with_protocol_versions(certs::VERSIONS)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("the client certificate and its key do not go together")?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_from_addresses() {
        assert!(matches!(
            server_name("localhost:2376").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name("127.0.0.1:2376").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:2376").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(server_name("localhost").is_err());
    }

    #[test]
    fn tls_without_verification_is_refused() {
        let opts = TlsOptions {
            tls: true,
            ..Default::default()
        };
        assert!(Endpoint::parse("tcp://h:1", &opts).is_err());
        assert!(matches!(
            Endpoint::parse("tcp://h:1", &TlsOptions::default()).unwrap(),
            Endpoint::Tcp { tls: None, .. }
        ));
        assert!(matches!(
            Endpoint::parse("unix:///x", &opts).unwrap(),
            Endpoint::Unix(p) if p == "/x"
        ));
    }
}
