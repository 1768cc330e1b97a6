//! The plugin protocol's transport: one HTTP/1.1 `POST` with a JSON body
//! per call, on a new connection (unix socket, or TCP for a `.spec`/`.json`
//! address), under a deadline. A connection per call is what makes a
//! plugin that restarted usable again at once, and keeps no lock or
//! pooled socket across calls.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::answer::{AnswerParser, Step};

/// Where a plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Unix(path) => write!(f, "unix://{}", path.display()),
            Addr::Tcp(host) => write!(f, "tcp://{host}"),
        }
    }
}

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing listens (yet): the socket is missing or refuses.
    #[error("cannot connect: {0}")]
    Unreachable(std::io::Error),
    #[error("no answer within {0} s")]
    TimedOut(u64),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("malformed HTTP answer: {0}")]
    Malformed(String),
}

/// The largest answer read (a `List` of many volumes fits easily).
pub(super) const MAX_ANSWER: u64 = 16 << 20;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(addr: &Addr, timeout: Duration) -> Result<Box<dyn Stream>, CallError> {
    let set = |r: std::io::Result<()>| r.map_err(CallError::Io);
    match addr {
        Addr::Unix(path) => {
            let s = connect_unix(path, timeout)?;
            set(s.set_read_timeout(Some(timeout)))?;
            set(s.set_write_timeout(Some(timeout)))?;
            Ok(Box::new(s))
        }
        Addr::Tcp(host) => {
            use std::net::ToSocketAddrs;
            let target = (host.to_socket_addrs().map_err(CallError::Unreachable)?)
                .next()
                .ok_or_else(|| CallError::Malformed(format!("no address for {host}")))?;
            let s = std::net::TcpStream::connect_timeout(&target, timeout)
                .map_err(CallError::Unreachable)?;
            set(s.set_read_timeout(Some(timeout)))?;
            set(s.set_write_timeout(Some(timeout)))?;
            Ok(Box::new(s))
        }
    }
}

/// Connects to a unix socket within `timeout`: a plugin that stopped
/// accepting fills its backlog, and a blocking connect would then wait
/// for ever. Non-blocking attempts, retried while the backlog is full.
fn connect_unix(
    path: &std::path::Path,
    timeout: Duration,
) -> Result<std::os::unix::net::UnixStream, CallError> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let addr = UnixAddr::new(path).map_err(|e| CallError::Unreachable(e.into()))?;
    let deadline = Instant::now() + timeout;
    loop {
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let fd = socket(AddressFamily::Unix, SockType::Stream, flags, None)
            .map_err(|e| CallError::Io(e.into()))?;
        match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => {
                let stream = std::os::unix::net::UnixStream::from(fd);
                stream.set_nonblocking(false).map_err(CallError::Io)?;
                return Ok(stream);
            }
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(CallError::TimedOut(timeout.as_secs()));
            }
            Err(e) => return Err(CallError::Unreachable(e.into())),
        }
    }
}

/// `POST path` with `body`; the answer's status and body. The whole call
/// (connect, send, answer) must finish within `timeout`.
pub fn post(
    addr: &Addr,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), CallError> {
    let deadline = Instant::now() + timeout;
    let timed_out = || CallError::TimedOut(timeout.as_secs());
    let mut stream = connect(addr, timeout)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\n\
         Accept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
    sent.map_err(|e| {
        if is_timeout(&e) {
            timed_out()
        } else {
            CallError::Io(e)
        }
    })?;
    let mut answer = AnswerParser::default();
    let mut buf = [0u8; 64 * 1024];
    loop {
        if Instant::now() >= deadline {
            return Err(timed_out());
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Err(timed_out()),
            Err(e) => return Err(CallError::Io(e)),
        };
        if (answer.len() + n) as u64 > MAX_ANSWER {
            return Err(CallError::Malformed("answer larger than 16 MiB".into()));
        }
        if let Step::Done(status, body) = answer.feed(&buf[..n]).map_err(CallError::Malformed)? {
            return Ok((status, body));
        }
    }
    answer.finish().map_err(CallError::Malformed)
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
