//! The API's listeners (`-H`, repeatable). `unix:///path`: berth binds it
//! (a stale socket file left by a crashed daemon is replaced, a live one —
//! another daemon listening — is refused; mode 0660) and removes it at
//! shutdown. `fd://` (systemd socket activation, as `dockerd -H fd://`):
//! the listening socket systemd passed (`LISTEN_FDS`/`LISTEN_PID`,
//! descriptors from 3), which stays systemd's. `tcp://ADDR:PORT`: served
//! with TLS (`tls.rs`) unless the user said otherwise.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tokio::net::{TcpListener, UnixListener};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Where the daemon listens, from `--host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A socket file berth binds.
    Path(PathBuf),
    /// The socket systemd passed: `fd://` (the first) or `fd://N`.
    Systemd(Option<RawFd>),
    /// A TCP address.
    Tcp(SocketAddr),
}

/// Parses `--host`: `unix:///path`, `/path`, `fd://`, `fd://N` or
/// `tcp://ADDR:PORT` (`tcp://:PORT` is every address, as in dockerd).
pub fn parse_host(host: &str) -> Result<Listen> {
    if let Some(rest) = host.strip_prefix("tcp://") {
        return parse_tcp(host, rest).map(Listen::Tcp);
    }
    if let Some(rest) = host.strip_prefix("fd://") {
        if rest.is_empty() {
            return Ok(Listen::Systemd(None));
        }
        let fd: RawFd = rest
            .parse()
            .ok()
            .filter(|fd| *fd >= LISTEN_FDS_START)
            .with_context(|| {
                format!("invalid host {host:?}: fd:// takes a descriptor number from 3")
            })?;
        return Ok(Listen::Systemd(Some(fd)));
    }
    Ok(Listen::Path(PathBuf::from(crate::client::socket_path(
        host,
    )?)))
}

fn parse_tcp(host: &str, rest: &str) -> Result<SocketAddr> {
    let rest = rest.trim_end_matches('/');
    let with_ip = match rest.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => rest.to_string(),
    };
    if let Ok(addr) = with_ip.parse() {
        return Ok(addr);
    }
    // A name: the first address it resolves to (as dockerd binds).
    with_ip
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| {
            format!("invalid host {host:?}: tcp://ADDRESS:PORT, e.g. tcp://0.0.0.0:2376")
        })
}

/// The socket systemd passed, taken before anything else happens (a
/// daemon that cannot serve must not touch its root); `None` for a path,
/// which is bound only once the root is reconciled ([`listen`]).
pub fn take_passed(listen: &Listen) -> Result<Option<UnixListener>> {
    match listen {
        Listen::Path(_) | Listen::Tcp(_) => Ok(None),
        Listen::Systemd(fd) => from_systemd(*fd).map(Some),
    }
}

/// The unix listener (`passed` if systemd gave one), and the socket file
/// to remove at shutdown (none for a socket systemd owns). `None` for TCP,
/// which is bound earlier ([`bind_tcp`]).
pub fn listen_unix(
    listen: &Listen,
    passed: Option<UnixListener>,
) -> Result<Option<(UnixListener, Option<PathBuf>)>> {
    match (listen, passed) {
        (_, Some(listener)) => Ok(Some((listener, None))),
        (Listen::Path(path), None) => Ok(Some((bind(path)?, Some(path.clone())))),
        (Listen::Systemd(fd), None) => Ok(Some((from_systemd(*fd)?, None))),
        (Listen::Tcp(_), None) => Ok(None),
    }
}

/// Binds a TCP address (before the root is touched: a taken port stops
/// the start with nothing made).
pub async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on tcp://{addr}"))
}

/// Binds the unix socket at `path`.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another daemon is listening on {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting mode of {}", path.display()))?;
    Ok(listener)
}

/// Most descriptors berth takes from systemd (`LISTEN_FDS` beyond it is
/// refused: it can only be a mistake).
const MAX_PASSED: RawFd = 64;

/// The descriptors systemd passed to this process: `LISTEN_PID` must be
/// ours (else they were meant for another process). The variables are
/// removed, so shims and containers do not inherit them.
fn passed_fds() -> Result<Vec<RawFd>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let me = std::process::id();
    match pid.as_deref().map(str::parse::<u32>) {
        None => bail!("--host fd:// needs a socket from systemd (LISTEN_PID and LISTEN_FDS are not set): start berth.socket, or listen on unix:///path"),
        Some(Ok(p)) if p == me => {}
        Some(_) => bail!("--host fd://: LISTEN_PID is {}, not this process ({me}): the sockets were meant for another process", pid.unwrap_or_default()),
    }
    let count: RawFd = count.and_then(|c| c.parse().ok()).unwrap_or(0);
    if !(1..=MAX_PASSED).contains(&count) {
        bail!("--host fd://: LISTEN_FDS must be from 1 to {MAX_PASSED}, not {count}");
    }
    Ok((LISTEN_FDS_START..LISTEN_FDS_START + count).collect())
}

/// The listening unix stream socket systemd passed (the first, or `fd`).
/// Other passed descriptors are left alone (systemd passes only what the
/// unit lists; closing numbers blindly could close the daemon's own).
fn from_systemd(fd: Option<RawFd>) -> Result<UnixListener> {
    let passed = passed_fds()?;
    let fd = fd.unwrap_or(LISTEN_FDS_START);
    if !passed.contains(&fd) {
        bail!("fd://{fd}: systemd passed descriptors {passed:?}");
    }
    check_listening_unix(fd)?;
    // SAFETY: fd is an open listening socket passed to this process, owned
    // from here on by the listener.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .context("marking the passed socket close-on-exec")?;
    std_listener
        .set_nonblocking(true)
        .context("making the passed socket non-blocking")?;
    UnixListener::from_std(std_listener).context("using the passed socket")
}

/// Refuses a descriptor that is not a listening unix stream socket.
fn check_listening_unix(fd: RawFd) -> Result<()> {
    use nix::sys::socket::{
        getsockname, getsockopt, sockopt, AddressFamily, SockaddrLike, SockaddrStorage,
    };
    // SAFETY: only borrowed for the two queries.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let listening = getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false);
    let family = getsockname::<SockaddrStorage>(fd)
        .ok()
        .and_then(|a| a.family());
    if !listening || family != Some(AddressFamily::Unix) {
        bail!("descriptor {fd} from systemd is not a listening unix socket (ListenStream=/path)");
    }
    Ok(())
}

/// Removes the socket file at shutdown.
pub fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(socket = %path.display(), error = %e, "could not remove socket");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse() {
        assert_eq!(parse_host("fd://").unwrap(), Listen::Systemd(None));
        assert_eq!(parse_host("fd://4").unwrap(), Listen::Systemd(Some(4)));
        assert!(parse_host("fd://2").is_err());
        assert!(parse_host("fd://x").is_err());
        assert_eq!(
            parse_host("unix:///run/b.sock").unwrap(),
            Listen::Path("/run/b.sock".into())
        );
        assert_eq!(
            parse_host("tcp://0.0.0.0:2376").unwrap(),
            Listen::Tcp("0.0.0.0:2376".parse().unwrap())
        );
        assert_eq!(
            parse_host("tcp://:2375").unwrap(),
            Listen::Tcp("0.0.0.0:2375".parse().unwrap())
        );
        assert_eq!(
            parse_host("tcp://[::1]:2376").unwrap(),
            Listen::Tcp("[::1]:2376".parse().unwrap())
        );
        assert!(parse_host("tcp://0.0.0.0").is_err(), "a port is needed");
        assert!(parse_host("tcp://1.2.3.4:99999").is_err());
        assert!(parse_host("http://x:1").is_err());
    }
}
