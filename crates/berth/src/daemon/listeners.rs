//! Every `-H` the daemon serves the API on, and how: unix sockets and
//! systemd's as they are; TCP with mutual TLS (`--tlsverify`), or, only
//! when the user says so explicitly (`--tls=false`, or `--tlsverify=false`
//! with `--tls`), without client authentication, with a warning at every
//! start. TCP ports are bound before the root is touched, unix sockets
//! once it is reconciled, and all of them are served by one app.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use tokio::net::{TcpListener, UnixListener};

pub use crate::client::connect::keep_alive;
use tokio::task::JoinHandle;

use super::socket::{self, Listen};
use super::tls::{self, TlsFiles, TlsListener};
use crate::certs;

/// How TCP listeners are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpMode {
    /// TLS, and a client certificate signed by the CA is required.
    MutualTls,
    /// TLS without client certificates (`--tls --tlsverify=false`).
    TlsAnyClient,
    /// Plain HTTP (`--tls=false`).
    Plain,
}

/// What `--tls` and `--tlsverify` say about TCP listeners: `None` given
/// means the flag was not given, `Some(false)` that it was set to false.
pub fn tcp_mode(tls: Option<bool>, tlsverify: Option<bool>) -> Result<TcpMode, String> {
    match (tls, tlsverify) {
        (_, Some(true)) => Ok(TcpMode::MutualTls),
        (Some(true), Some(false)) => Ok(TcpMode::TlsAnyClient),
        (Some(false), _) | (None, Some(false)) => Ok(TcpMode::Plain),
        (Some(true), None) => Err("--tls without --tlsverify serves the API to any client that connects; \
             add --tlsverify (client certificates signed by --tlscacert), or say --tlsverify=false \
             to accept an unauthenticated API"
            .into()),
        (None, None) => Err("a tcp:// listener needs --tlsverify with --tlscacert, --tlscert and \
             --tlskey (see `berth tls init`): the API gives root on this host to whoever reaches it; \
             say --tls=false to accept an unauthenticated API in plain HTTP"
            .into()),
    }
}

/// The TLS flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFlags {
    pub tls: Option<bool>,
    pub tlsverify: Option<bool>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFlags {
    /// The files, defaulting as dockerd: `$DOCKER_CERT_PATH` or `~/.docker`,
    /// `ca.pem`, `cert.pem`, `key.pem`. The CA only when clients are verified.
    fn files(&self, mode: &TcpMode) -> TlsFiles {
        TlsFiles {
            ca: (*mode == TcpMode::MutualTls).then(|| certs::or_default(&self.cacert, "ca.pem")),
            cert: certs::or_default(&self.cert, "cert.pem"),
            key: certs::or_default(&self.key, "key.pem"),
        }
    }
}

/// The hosts, parsed; refused when there is none, one twice, or more
/// than one `fd://` (systemd's variables are read once).
pub fn parse_hosts(hosts: &[String]) -> Result<Vec<Listen>> {
    if hosts.is_empty() {
        bail!("no --host to listen on");
    }
    let parsed: Vec<Listen> = hosts
        .iter()
        .map(|h| socket::parse_host(h))
        .collect::<Result<_>>()?;
    for (i, a) in parsed.iter().enumerate() {
        if parsed[..i].contains(a) {
            bail!("--host {} is given twice", hosts[i]);
        }
    }
    if parsed
        .iter()
        .filter(|l| matches!(l, Listen::Systemd(_)))
        .count()
        > 1
    {
        bail!("at most one fd:// host");
    }
    Ok(parsed)
}

/// How TCP hosts are served, checked (and its TLS files read) without
/// binding anything; `None` when there is no TCP host.
pub fn tcp_plan(hosts: &[Listen], flags: &TlsFlags) -> Result<Option<TcpPlan>> {
    if !hosts.iter().any(|h| matches!(h, Listen::Tcp(_))) {
        return Ok(None);
    }
    let mode = tcp_mode(flags.tls, flags.tlsverify).map_err(anyhow::Error::msg)?;
    let config = match mode {
        TcpMode::Plain => None,
        _ => Some(tls::server_config(&flags.files(&mode))?),
    };
    Ok(Some(TcpPlan { mode, config }))
}

/// How TCP listeners are served.
pub struct TcpPlan {
    pub mode: TcpMode,
    config: Option<Arc<rustls::ServerConfig>>,
}

/// A listener bound and not yet served.
pub enum Bound {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Binds the TCP hosts (first, before the root is touched).
pub async fn bind_tcp(hosts: &[Listen]) -> Result<Vec<(SocketAddr, TcpListener)>> {
    let mut bound = Vec::new();
    for host in hosts {
        if let Listen::Tcp(addr) = host {
            bound.push((*addr, socket::bind_tcp(*addr).await?));
        }
    }
    Ok(bound)
}

/// Says at every start what an unauthenticated TCP listener means.
pub fn warn_if_unauthenticated(plan: &TcpPlan, addr: SocketAddr) {
    match plan.mode {
        TcpMode::MutualTls => {
            tracing::info!(%addr, "serving the API over TCP with mutual TLS")
        }
        TcpMode::TlsAnyClient => tracing::warn!(%addr,
            "the API on this TCP address is encrypted but UNAUTHENTICATED (--tlsverify=false): anyone who can reach it is root on this host"),
        TcpMode::Plain => tracing::warn!(%addr,
            "the API on this TCP address is plain HTTP and UNAUTHENTICATED (--tls=false): anyone who can reach it is root on this host"),
    }
}

/// Serves `app` on every bound listener until `stop` turns true.
pub fn serve_all(
    app: berth_api::version::Versioned<axum::Router>,
    bound: Vec<Bound>,
    plan: Option<&TcpPlan>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<std::io::Result<()>>>> {
    let mut servers = Vec::new();
    for listener in bound {
        let (app, stop) = (app.clone(), stop.clone());
        let handle = match listener {
            Bound::Unix(l) => spawn_server(l, app, stop),
            Bound::Tcp(l) => match plan.and_then(|p| p.config.clone()) {
                Some(config) => spawn_server(TlsListener::start(l, config)?, app, stop),
                None => {
                    use axum::serve::ListenerExt;
                    spawn_server(l.tap_io(|s| keep_alive(s)), app, stop)
                }
            },
        };
        servers.push(handle);
    }
    Ok(servers)
}

/// Serves berth's volume plugin (`app`) on a unix socket at `path` until
/// `stop`. The socket is root's alone: whoever reaches it can mount any
/// volume.
pub fn serve_plugin(
    path: &std::path::Path,
    app: axum::Router,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<JoinHandle<std::io::Result<()>>> {
    let listener = super::socket::bind(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    tracing::info!(socket = %path.display(), "serving berth's drivers as a Docker volume plugin");
    let server = axum::serve(listener, app).with_graceful_shutdown(wait_for_stop(stop));
    Ok(tokio::spawn(server.into_future()))
}

/// Serves `app` on `listener` in a task of its own until `stop`.
fn spawn_server<L>(
    listener: L,
    app: berth_api::version::Versioned<axum::Router>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let make = axum::ServiceExt::into_make_service(app);
    let server = axum::serve(listener, make).with_graceful_shutdown(wait_for_stop(stop));
    tokio::spawn(server.into_future())
}

async fn wait_for_stop(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_needs_mutual_tls_or_an_explicit_no() {
        assert_eq!(tcp_mode(None, Some(true)), Ok(TcpMode::MutualTls));
        assert_eq!(tcp_mode(Some(true), Some(true)), Ok(TcpMode::MutualTls));
        assert_eq!(tcp_mode(Some(true), Some(false)), Ok(TcpMode::TlsAnyClient));
        assert_eq!(tcp_mode(Some(false), None), Ok(TcpMode::Plain));
        assert_eq!(tcp_mode(None, Some(false)), Ok(TcpMode::Plain));
        assert!(tcp_mode(None, None).unwrap_err().contains("--tls=false"));
        assert!(tcp_mode(Some(true), None).is_err());
    }

    #[test]
    fn hosts_are_checked_together() {
        let h = |v: &[&str]| parse_hosts(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(h(&["unix:///a", "tcp://127.0.0.1:2376"]).unwrap().len(), 2);
        assert!(h(&[]).is_err());
        assert!(h(&["unix:///a", "/a"]).is_err(), "the same socket twice");
        assert!(h(&["fd://", "fd://4"]).is_err());
    }

    #[test]
    fn default_files_are_dockers() {
        let flags = TlsFlags {
            cert: Some("/c".into()),
            ..Default::default()
        };
        let files = flags.files(&TcpMode::TlsAnyClient);
        assert_eq!(files.cert, PathBuf::from("/c"));
        assert!(files.key.ends_with("key.pem"));
        assert_eq!(files.ca, None, "no CA when clients are not verified");
        assert!(flags
            .files(&TcpMode::MutualTls)
            .ca
            .unwrap()
            .ends_with("ca.pem"));
    }
}
