//! The plugin protocol's transport: one HTTP/1.1 `POST` with a JSON body
//! per call, on a new connection (unix socket, or TCP for a `.spec`/`.json`
//! address), under a deadline. A connection per call is what makes a
//! plugin that restarted usable again at once, and keeps no lock or
//! pooled socket across calls.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
const MAX_ANSWER: u64 = 16 << 20;

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
    let mut answer = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        if Instant::now() >= deadline {
            return Err(timed_out());
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(timed_out()),
            Err(e) => return Err(CallError::Io(e)),
        }
        if answer.len() as u64 > MAX_ANSWER {
            return Err(CallError::Malformed("answer larger than 16 MiB".into()));
        }
        if let Some(done) = complete(&answer)? {
            return Ok(done);
        }
    }
    complete(&answer)?
        .or_else(|| parse_answer(&answer, true).ok())
        .ok_or_else(|| CallError::Malformed("the connection closed mid-answer".into()))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The answer, once all of it is read (by its length or chunked end);
/// `None` while more is to come.
fn complete(raw: &[u8]) -> Result<Option<(u16, Vec<u8>)>, CallError> {
    match parse_answer(raw, false) {
        Ok(done) => Ok(Some(done)),
        Err(Incomplete::More) => Ok(None),
        Err(Incomplete::Bad(why)) => Err(CallError::Malformed(why)),
    }
}

enum Incomplete {
    More,
    Bad(String),
}

/// Parses an HTTP answer: status line, headers, then a body by
/// `Content-Length`, chunked, or (at `eof`) to the end.
fn parse_answer(raw: &[u8], eof: bool) -> Result<(u16, Vec<u8>), Incomplete> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(Incomplete::More);
    };
    let head =
        std::str::from_utf8(&raw[..split]).map_err(|_| Incomplete::Bad("non-UTF-8 head".into()))?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| Incomplete::Bad(format!("bad status line in {head:?}")))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(rest).map(|body| (status, body));
    }
    match header("content-length").map(|v| v.parse::<usize>()) {
        Some(Ok(n)) if rest.len() >= n => Ok((status, rest[..n].to_vec())),
        Some(Ok(_)) => Err(Incomplete::More),
        Some(Err(_)) => Err(Incomplete::Bad("bad Content-Length".into())),
        None if eof => Ok((status, rest.to_vec())),
        None => Err(Incomplete::More),
    }
}

/// A chunked body, once its last chunk has come.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, Incomplete> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Err(Incomplete::More);
        };
        let size_text = std::str::from_utf8(&rest[..eol]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| Incomplete::Bad(format!("bad chunk size {size_text:?}")))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if size as u64 > MAX_ANSWER {
            return Err(Incomplete::Bad(format!("a chunk of {size} bytes")));
        }
        if rest.len() < size + 2 {
            return Err(Incomplete::More);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str, eof: bool) -> Option<(u16, String)> {
        parse_answer(raw.as_bytes(), eof)
            .ok()
            .map(|(s, b)| (s, String::from_utf8(b).unwrap()))
    }

    #[test]
    fn answers_by_length_chunks_or_close() {
        let by_len = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parsed(by_len, false), Some((200, "{}".into())));
        assert_eq!(parsed(&by_len[..by_len.len() - 1], false), None);
        let chunked = "HTTP/1.1 500 x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2\r\n\"}\r\n0\r\n\r\n";
        assert_eq!(parsed(chunked, false), Some((500, "{\"a\"}".into())));
        let closed = "HTTP/1.0 200 OK\r\nServer: x\r\n\r\n{\"Err\":\"\"}";
        assert_eq!(parsed(closed, false), None);
        assert_eq!(parsed(closed, true), Some((200, "{\"Err\":\"\"}".into())));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            parse_answer(b"NOT HTTP\r\n\r\n", true),
            Err(Incomplete::Bad(_))
        ));
        assert!(matches!(
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", true),
            Err(Incomplete::Bad(_))
        ));
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab";
        assert!(matches!(parse_answer(huge, false), Err(Incomplete::Bad(_))));
    }
}
