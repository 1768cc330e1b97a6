//! A restic repository over SFTP, as restic's own sftp backend does it:
//! `ssh [user@]host -s sftp` (or the `command` option's program) is run
//! and spoken to on its standard input and output. The layout is
//! restic's. Reads and writes keep several requests in flight; files are
//! written under a temporary name, synced (`fsync@openssh.com` when
//! offered) and renamed into place, so a cut write never leaves a partial
//! file under its real name. A connection that breaks is made again on
//! the next call.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use rustic_core::{BytesList, FileType, Id, ReadBackend, RusticResult, WriteBackend};

use super::sftp_wire::{kind, open, parse_reply, parse_version, status, Attrs, Packet, Reply};
use super::{backend_error, object_path, BackendError};

/// Bytes per READ or WRITE (what every server accepts).
const CHUNK: usize = 32 * 1024;
/// Requests kept in flight by one read or write.
const WINDOW: usize = 16;
/// Largest reply accepted (a READDIR of many names; DATA of one chunk).
const MAX_PACKET: usize = 4 << 20;
/// Most bytes reserved ahead of a read (the rest grows as data comes).
const MAX_PREALLOCATED: usize = 64 << 20;
/// Most entries one folder listing may return.
const MAX_LISTED: usize = 50_000_000;
/// Lines of the server's (ssh's) standard error kept for error messages.
const STDERR_KEPT: usize = 2048;

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct SftpConfig {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The repository's folder on the server.
    pub root: String,
}

impl SftpConfig {
    /// `ssh` with the options given, or the `command` option split on
    /// white space (restic's `sftp.command`).
    pub fn new(
        user: Option<&str>,
        endpoint: &str,
        root: &str,
        options: &BTreeMap<String, String>,
    ) -> Self {
        let command = match options.get("command") {
            Some(c) => c.split_whitespace().map(String::from).collect(),
            None => ssh_command(user, endpoint, options),
        };
        SftpConfig {
            command,
            root: root.trim_end_matches('/').to_string(),
        }
    }
}

fn ssh_command(
    user: Option<&str>,
    endpoint: &str,
    options: &BTreeMap<String, String>,
) -> Vec<String> {
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p)),
        _ => (endpoint, None),
    };
    // Never a prompt; a dead peer is noticed within a minute.
    let mut cmd: Vec<String> = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30"]
        .into_iter()
        .chain([
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
        ])
        .map(String::from)
        .collect();
    if let Some(p) = port {
        cmd.extend(["-p".into(), p.into()]);
    }
    if let Some(key) = options.get("key") {
        cmd.extend(["-i".into(), key.clone()]);
    }
    let checking = match options.get("known_hosts_strategy").map(String::as_str) {
        Some("accept") => Some("no"),
        Some("add") => Some("accept-new"),
        Some("strict") => Some("yes"),
        _ => None,
    };
    if let Some(c) = checking {
        cmd.extend(["-o".into(), format!("StrictHostKeyChecking={c}")]);
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    debug_assert!(!host.starts_with('-'), "parse_url refuses it");
    let target = match user {
        Some(u) => format!("{u}@{host}"),
        None => host.to_string(),
    };
    cmd.extend([target, "-s".into(), "sftp".into()]);
    cmd
}

/// One running server process.
struct Conn {
    child: Child,
    to: ChildStdin,
    from: ChildStdout,
    /// The end of what the server wrote on its standard error.
    stderr: Arc<Mutex<String>>,
    next_id: u32,
    posix_rename: bool,
    fsync: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Conn {
    fn start(command: &[String]) -> Result<Conn, BackendError> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| BackendError::Config("an empty sftp command".into()))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BackendError::Config(format!("starting {program}: {e}")))?;
        let to = child.stdin.take().expect("piped");
        let from = child.stdout.take().expect("piped");
        let stderr = keep_tail(child.stderr.take().expect("piped"));
        let mut conn = Conn {
            child,
            to,
            from,
            stderr,
            next_id: 1,
            posix_rename: false,
            fsync: false,
        };
        // INIT carries the version where other requests carry their id.
        let init = Packet::new(kind::INIT, 3).finish();
        let answer = conn
            .to
            .write_all(&init)
            .map_err(BackendError::Io)
            .and_then(|()| conn.read_packet());
        let answer = answer.map_err(|e| conn.explain(e))?;
        let (version, extensions) =
            parse_version(&answer).map_err(|m| BackendError::Protocol(m.0.into()))?;
        if version < 3 {
            return Err(BackendError::Protocol(format!("SFTP version {version}")));
        }
        conn.posix_rename = extensions.iter().any(|e| e == "posix-rename@openssh.com");
        conn.fsync = extensions.iter().any(|e| e == "fsync@openssh.com");
        if !conn.fsync {
            tracing::warn!(command = %program,
                "the SFTP server offers no fsync@openssh.com: files written to the repository are not synced");
        }
        Ok(conn)
    }

    /// A broken connection's error with what the server (ssh) said.
    fn explain(&mut self, e: BackendError) -> BackendError {
        // ssh's last words arrive just before it exits; one that is still
        // running (a banner on stdout, a peer that closed only the
        // channel) is given a second, then killed: never waited on for
        // ever with the backend's lock held.
        let mut status = None;
        for _ in 0..20 {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    break;
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(50)),
                Err(_) => break,
            }
        }
        if status.is_none() {
            let _ = self.child.kill();
            status = self.child.wait().ok();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let said = self.stderr.lock().trim().to_string();
        let status = status.map(|s| format!(" ({s})")).unwrap_or_default();
        match said.is_empty() {
            true => BackendError::Broken(format!("{e}{status}")),
            false => BackendError::Broken(format!("{e}{status}: {said}")),
        }
    }

    fn read_packet(&mut self) -> Result<Vec<u8>, BackendError> {
        let mut len = [0u8; 4];
        self.from.read_exact(&mut len).map_err(BackendError::Io)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_PACKET {
            return Err(BackendError::Protocol(format!("a packet of {len} bytes")));
        }
        let mut packet = vec![0; len];
        self.from
            .read_exact(&mut packet)
            .map_err(BackendError::Io)?;
        Ok(packet)
    }

    fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Sends requests built by `build` (given each its id) and returns the
    /// replies in the order sent.
    fn round(&mut self, packets: Vec<(u32, Vec<u8>)>) -> Result<Vec<Reply>, BackendError> {
        for (_, p) in &packets {
            self.to.write_all(p).map_err(BackendError::Io)?;
        }
        let mut replies: BTreeMap<u32, Reply> = BTreeMap::new();
        while replies.len() < packets.len() {
            let (id, reply) = parse_reply(&self.read_packet()?)
                .map_err(|m| BackendError::Protocol(m.0.into()))?;
            replies.insert(id, reply);
        }
        packets
            .iter()
            .map(|(id, _)| {
                replies
                    .remove(id)
                    .ok_or_else(|| BackendError::Protocol("a reply to no request".into()))
            })
            .collect()
    }

    fn call(&mut self, build: impl FnOnce(u32) -> Packet) -> Result<Reply, BackendError> {
        let id = self.id();
        let packet = build(id).finish();
        Ok(self.round(vec![(id, packet)])?.remove(0))
    }
}

/// Keeps the last [`STDERR_KEPT`] bytes `stream` gives, read on a thread
/// of its own until it closes.
fn keep_tail(mut stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let kept = Arc::new(Mutex::new(String::new()));
    let tail = kept.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            let mut t = tail.lock();
            t.push_str(&String::from_utf8_lossy(&buf[..n]));
            if t.len() > STDERR_KEPT {
                let mut cut = t.len() - STDERR_KEPT;
                while !t.is_char_boundary(cut) {
                    cut += 1;
                }
                t.drain(..cut);
            }
        }
    });
    kept
}

/// A STATUS that is not OK, as an error naming `path`.
fn failed(what: &str, path: &str, reply: Reply) -> BackendError {
    match reply {
        Reply::Status { code, message } => BackendError::Sftp {
            what: format!("{what} {path}"),
            code,
            message,
        },
        other => BackendError::Protocol(format!("{what} {path}: unexpected reply {other:?}")),
    }
}

fn expect_ok(what: &str, path: &str, reply: Reply) -> Result<(), BackendError> {
    match reply {
        Reply::Status {
            code: status::OK, ..
        } => Ok(()),
        other => Err(failed(what, path, other)),
    }
}

fn is_missing(e: &BackendError) -> bool {
    matches!(
        e,
        BackendError::Sftp {
            code: status::NO_SUCH_FILE,
            ..
        }
    )
}

/// The backend.
pub struct SftpBackend {
    config: SftpConfig,
    conn: Mutex<Option<Conn>>,
    /// Its operation's progress: once cancelled, calls waiting for the
    /// connection fail instead of running one after the other.
    stop: Arc<crate::backup::Progress>,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SftpBackend({})", self.config.root)
    }
}

impl SftpBackend {
    pub fn new(config: SftpConfig, stop: Arc<crate::backup::Progress>) -> Self {
        SftpBackend {
            config,
            conn: Mutex::new(None),
            stop,
        }
    }

    /// Runs `work` on the connection, made first if there is none; a
    /// connection that fails on I/O or protocol is dropped, so the next
    /// call makes a new one.
    fn with<T>(
        &self,
        work: impl FnOnce(&mut Conn) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut guard = self.conn.lock();
        if self.stop.is_cancelled() {
            return Err(BackendError::Cancelled(super::CANCELLED));
        }
        if guard.is_none() {
            *guard = Some(Conn::start(&self.config.command)?);
        }
        let conn = guard.as_mut().expect("made above");
        match work(conn) {
            Err(e @ BackendError::Io(_)) => {
                let e = conn.explain(e);
                *guard = None;
                Err(e)
            }
            Err(e @ BackendError::Protocol(_)) => {
                *guard = None;
                Err(e)
            }
            other => other,
        }
    }

    fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.config.root)
    }

    fn stat(conn: &mut Conn, path: &str) -> Result<Option<Attrs>, BackendError> {
        match conn.call(|id| Packet::new(kind::STAT, id).str(path))? {
            Reply::Attrs(a) => Ok(Some(a)),
            Reply::Status {
                code: status::NO_SUCH_FILE,
                ..
            } => Ok(None),
            other => Err(failed("stat", path, other)),
        }
    }

    fn open(conn: &mut Conn, path: &str, flags: u32) -> Result<Vec<u8>, BackendError> {
        let mode = (flags & open::CREAT != 0).then_some(0o600);
        match conn.call(|id| Packet::new(kind::OPEN, id).str(path).u32(flags).attrs(mode))? {
            Reply::Handle(h) => Ok(h),
            other => Err(failed("open", path, other)),
        }
    }

    fn close(conn: &mut Conn, path: &str, handle: &[u8]) -> Result<(), BackendError> {
        let reply = conn.call(|id| Packet::new(kind::CLOSE, id).bytes(handle))?;
        expect_ok("close", path, reply)
    }

    /// The regular files in `dir` with their sizes (none when it is missing).
    fn read_dir(conn: &mut Conn, dir: &str) -> Result<Vec<(String, Attrs)>, BackendError> {
        let handle = match conn.call(|id| Packet::new(kind::OPENDIR, id).str(dir))? {
            Reply::Handle(h) => h,
            Reply::Status {
                code: status::NO_SUCH_FILE,
                ..
            } => return Ok(Vec::new()),
            other => return Err(failed("opendir", dir, other)),
        };
        let mut entries = Vec::new();
        let result = loop {
            match conn.call(|id| Packet::new(kind::READDIR, id).bytes(&handle)) {
                Ok(Reply::Name(names)) if entries.len() + names.len() <= MAX_LISTED => {
                    entries.extend(names)
                }
                Ok(Reply::Name(_)) => {
                    break Err(BackendError::Protocol(format!(
                        "more than {MAX_LISTED} entries in {dir}"
                    )))
                }
                Ok(Reply::Status {
                    code: status::EOF, ..
                }) => break Ok(()),
                Ok(other) => break Err(failed("readdir", dir, other)),
                Err(e) => break Err(e),
            }
        };
        Self::close(conn, dir, &handle)?;
        result.map(|()| entries)
    }

    /// `length` bytes from `offset` (to the end when `None`).
    fn read(
        conn: &mut Conn,
        path: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Vec<u8>, BackendError> {
        let handle = Self::open(conn, path, open::READ)?;
        let result = Self::read_open(conn, path, &handle, offset, length);
        let closed = Self::close(conn, path, &handle);
        let data = result?;
        closed?;
        Ok(data)
    }

    fn read_open(
        conn: &mut Conn,
        path: &str,
        handle: &[u8],
        offset: u64,
        length: Option<u64>,
    ) -> Result<Vec<u8>, BackendError> {
        let end = match length {
            Some(n) => offset + n,
            None => match conn.call(|id| Packet::new(kind::STAT, id).str(path))? {
                Reply::Attrs(Attrs { size: Some(s), .. }) => s,
                other => return Err(failed("stat", path, other)),
            },
        };
        // restic's files are far smaller; a server claiming more is wrong.
        if end - offset > u64::from(u32::MAX) {
            return Err(BackendError::Protocol(format!(
                "{path}: a size of {end} bytes"
            )));
        }
        let mut data = Vec::with_capacity(((end - offset) as usize).min(MAX_PREALLOCATED));
        let mut at = offset;
        while at < end {
            let mut asked = Vec::new();
            let mut batch = Vec::new();
            let mut next = at;
            while next < end && batch.len() < WINDOW {
                let n = (end - next).min(CHUNK as u64) as u32;
                let id = conn.id();
                batch.push((
                    id,
                    Packet::new(kind::READ, id)
                        .bytes(handle)
                        .u64(next)
                        .u32(n)
                        .finish(),
                ));
                asked.push(n as usize);
                next += u64::from(n);
            }
            for (reply, n) in conn.round(batch)?.into_iter().zip(asked) {
                let d = match reply {
                    Reply::Data(d) if !d.is_empty() && d.len() <= n => d,
                    Reply::Data(d) => {
                        return Err(BackendError::Protocol(format!(
                            "read of {path}: {} bytes for {n} asked",
                            d.len()
                        )))
                    }
                    other => return Err(failed("read", path, other)),
                };
                data.extend_from_slice(&d);
                at += d.len() as u64;
                if d.len() < n {
                    // A short read is allowed: what was asked after it
                    // is asked again from where it ended.
                    break;
                }
            }
        }
        Ok(data)
    }

    fn write(conn: &mut Conn, path: &str, content: &[u8]) -> Result<(), BackendError> {
        let handle = Self::open(conn, path, open::WRITE | open::CREAT | open::TRUNC)?;
        let result = Self::write_open(conn, path, &handle, content);
        let closed = Self::close(conn, path, &handle);
        result?;
        closed
    }

    fn write_open(
        conn: &mut Conn,
        path: &str,
        handle: &[u8],
        content: &[u8],
    ) -> Result<(), BackendError> {
        for window in content.chunks(CHUNK * WINDOW) {
            let base = window.as_ptr() as usize - content.as_ptr() as usize;
            let batch: Vec<(u32, Vec<u8>)> = window
                .chunks(CHUNK)
                .enumerate()
                .map(|(i, chunk)| {
                    let id = conn.id();
                    let at = (base + i * CHUNK) as u64;
                    (
                        id,
                        Packet::new(kind::WRITE, id)
                            .bytes(handle)
                            .u64(at)
                            .bytes(chunk)
                            .finish(),
                    )
                })
                .collect();
            for reply in conn.round(batch)? {
                expect_ok("write", path, reply)?;
            }
        }
        if conn.fsync {
            let reply = conn.call(|id| {
                Packet::new(kind::EXTENDED, id)
                    .str("fsync@openssh.com")
                    .bytes(handle)
            })?;
            expect_ok("fsync", path, reply)?;
        }
        Ok(())
    }

    fn rename(conn: &mut Conn, from: &str, to: &str) -> Result<(), BackendError> {
        if conn.posix_rename {
            let reply = conn.call(|id| {
                Packet::new(kind::EXTENDED, id)
                    .str("posix-rename@openssh.com")
                    .str(from)
                    .str(to)
            })?;
            return expect_ok("rename", from, reply);
        }
        // Plain SFTP rename refuses an existing target: a file rewritten
        // (the config, a lock) loses its old copy first.
        let _ = conn.call(|id| Packet::new(kind::REMOVE, id).str(to))?;
        let reply = conn.call(|id| Packet::new(kind::RENAME, id).str(from).str(to))?;
        expect_ok("rename", from, reply)
    }

    fn mkdir(conn: &mut Conn, path: &str) -> Result<(), BackendError> {
        let reply = conn.call(|id| Packet::new(kind::MKDIR, id).str(path).attrs(Some(0o700)))?;
        match expect_ok("mkdir", path, reply) {
            Ok(()) => Ok(()),
            // Already there (servers answer FAILURE for EEXIST).
            Err(e) if Self::stat(conn, path)?.is_some() => {
                tracing::trace!(error = %e, "folder exists");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn list(&self, tpe: FileType) -> Result<Vec<(Id, u32)>, BackendError> {
        self.with(|conn| {
            let dir = self.path(tpe.dirname());
            let mut files = Vec::new();
            if tpe == FileType::Pack {
                for (sub, attrs) in Self::read_dir(conn, &dir)? {
                    if sub.len() == 2 && !attrs.is_file() {
                        files.extend(Self::read_dir(conn, &format!("{dir}/{sub}"))?);
                    }
                }
            } else {
                files = Self::read_dir(conn, &dir)?;
            }
            Ok(files
                .into_iter()
                .filter(|(_, a)| a.is_file())
                .filter_map(|(name, a)| {
                    Some((Id::parse_some(&name, tpe)?, u32::try_from(a.size?).ok()?))
                })
                .collect())
        })
    }
}

impl ReadBackend for SftpBackend {
    fn location(&self) -> String {
        format!("sftp:{}", self.config.root)
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let wrap = |e| backend_error("listing the repository", e);
        if tpe == FileType::Config {
            let path = self.path("config");
            let attrs = self.with(|conn| Self::stat(conn, &path)).map_err(wrap)?;
            return Ok(attrs
                .map(|a| (Id::default(), a.size.unwrap_or(0) as u32))
                .into_iter()
                .collect());
        }
        self.list(tpe).map_err(wrap)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let path = self.path(&object_path(tpe, id));
        self.with(|conn| Self::read(conn, &path, 0, None))
            .map(Bytes::from)
            .map_err(|e| backend_error("reading from the repository", e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let path = self.path(&object_path(tpe, id));
        self.with(|conn| Self::read(conn, &path, offset.into(), Some(length.into())))
            .map(Bytes::from)
            .map_err(|e| backend_error("reading from the repository", e))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(&object_path(tpe, id))
    }
}

impl WriteBackend for SftpBackend {
    /// Makes the repository's folders (those there already are kept).
    fn create(&self) -> RusticResult<()> {
        self.with(|conn| {
            Self::mkdir(conn, &self.config.root)?;
            for tpe in rustic_core::ALL_FILE_TYPES {
                if tpe != FileType::Config {
                    Self::mkdir(conn, &self.path(tpe.dirname()))?;
                }
            }
            for i in 0u8..=255 {
                Self::mkdir(conn, &self.path(&format!("data/{i:02x}")))?;
            }
            Ok(())
        })
        .map_err(|e| backend_error("making the repository's folders", e))
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let path = self.path(&object_path(tpe, id));
        // Random: two writers of one file never share a temporary.
        let temp = format!("{path}-tmp-{:016x}", rand::random::<u64>());
        let body: Vec<u8> = content.into_vec().concat();
        self.with(|conn| {
            let written = match Self::write(conn, &temp, &body) {
                Err(e) if is_missing(&e) => {
                    // A folder restic or an older berth did not make.
                    let parent = &path[..path.rfind('/').expect("under the root")];
                    Self::mkdir(conn, parent)?;
                    Self::write(conn, &temp, &body)
                }
                other => other,
            };
            if let Err(e) = written.and_then(|()| Self::rename(conn, &temp, &path)) {
                let _ = conn.call(|id| Packet::new(kind::REMOVE, id).str(&temp));
                return Err(e);
            }
            Ok(())
        })
        .map_err(|e| backend_error("writing to the repository", e))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let path = self.path(&object_path(tpe, id));
        self.with(|conn| {
            let reply = conn.call(|id| Packet::new(kind::REMOVE, id).str(&path))?;
            expect_ok("remove", &path, reply)
        })
        .map_err(|e| backend_error("removing from the repository", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH_BASE: &[&str] = &[
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=30",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=4",
    ];

    #[test]
    fn ssh_command_from_the_url_and_options() {
        let mut opts = BTreeMap::new();
        let c = SftpConfig::new(Some("bk"), "host:2222", "/srv/r/", &opts);
        assert_eq!(
            c.command,
            [SSH_BASE, &["-p", "2222", "bk@host", "-s", "sftp"]].concat()
        );
        assert_eq!(c.root, "/srv/r");
        opts.insert("key".into(), "/k".into());
        opts.insert("known_hosts_strategy".into(), "add".into());
        let c = SftpConfig::new(None, "host", "/r", &opts);
        let tail = [
            "-i",
            "/k",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "host",
            "-s",
            "sftp",
        ];
        assert_eq!(c.command, [SSH_BASE, &tail].concat());
        let c = SftpConfig::new(None, "[::1]:22", "/r", &BTreeMap::new());
        assert_eq!(c.command[c.command.len() - 3], "::1");
        opts.insert("command".into(), "/usr/lib/openssh/sftp-server -e".into());
        let c = SftpConfig::new(None, "host", "/r", &opts);
        assert_eq!(c.command, ["/usr/lib/openssh/sftp-server", "-e"]);
    }
}
