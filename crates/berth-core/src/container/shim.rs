//! The daemon's side of `berth shim`: spawning it, the start handshake
//! (typed messages, [`super::shim_protocol`]), the exit status it leaves
//! behind, watching it end, and ending it when something went wrong.
//!
//! After the handshake the pipes are closed and the shim runs on its own:
//! it writes the log and, when the container's process ends, `exit.json`,
//! then exits. The daemon learns of the end through a pidfd on the shim,
//! so it can restart in between without losing anything. A handshake that
//! fails in any way ends the shim and the container's cgroup: nothing is
//! left running that the daemon does not track.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cgroup::ContainerCgroup;
use super::shim_protocol::{self as protocol, Pid, ShimCommand, ShimError, ShimReply};

/// How long the shim may take to create the container.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the shim records when the container's process has ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, or 128 + signal number.
    pub exit_code: i64,
    /// RFC 3339 with nanoseconds.
    pub finished_at: String,
    /// The kernel's OOM killer ended a process of the container (read by
    /// the shim before the runtime removes the cgroup).
    #[serde(default)]
    pub oom_killed: bool,
}

impl ExitStatus {
    /// Writes `path` atomically and durably (temporary file, fsync,
    /// rename, fsync of the folder).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(self)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        match path.parent() {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        }
    }

    /// Reads `path`, `None` if it is not there (the process has not ended).
    pub fn read(path: &Path) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Arguments of one shim.
#[derive(Debug, Clone)]
pub struct ShimArgs {
    pub id: String,
    pub bundle: PathBuf,
    /// The container's folder (log, exit status, stdin FIFO).
    pub state_dir: PathBuf,
    /// The runtime's own state root.
    pub runtime_root: PathBuf,
    pub log: PathBuf,
    /// External OCI runtime binary; `None` = the embedded one.
    pub runtime: Option<String>,
    /// Give the container the stdin FIFO (`-i`).
    pub stdin: bool,
    /// Give the container a terminal (`-t`).
    pub tty: bool,
    /// json-file rotation (`--log-opt max-size/max-file/compress`).
    pub rotation: super::logrotate::Rotation,
}

/// A shim that has created its container and waits for `start`.
pub struct CreatedShim {
    pub init_pid: Pid,
    pub shim_pid: Pid,
    id: String,
    commands: ChildStdin,
    replies: BufReader<ChildStdout>,
}

/// Spawns `exe shim …` and waits until it has created the container. On
/// any failure the shim and whatever it started are ended.
pub fn spawn(exe: &Path, args: &ShimArgs) -> Result<CreatedShim, ShimError> {
    let shim_log = args.state_dir.join("shim.log");
    let stderr = std::fs::File::create(&shim_log)?;
    let mut child = shim_command(exe, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()?;
    let commands = child.stdin.take().expect("piped");
    let mut replies = BufReader::new(child.stdout.take().expect("piped"));
    let reply = read_reply(&mut replies, &shim_log);
    reap_launcher(child);
    match reply {
        Ok(ShimReply::Created { init_pid, shim_pid }) => Ok(CreatedShim {
            init_pid,
            shim_pid,
            id: args.id.clone(),
            commands,
            replies,
        }),
        Ok(other) => {
            end_shim(&args.id, &args.state_dir);
            Err(unexpected(other))
        }
        Err(e) => {
            end_shim(&args.id, &args.state_dir);
            Err(e)
        }
    }
}

/// The `exe shim …` command line for `args`.
fn shim_command(exe: &Path, args: &ShimArgs) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("shim")
        .arg("--id")
        .arg(&args.id)
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--state-dir")
        .arg(&args.state_dir)
        .arg("--runtime-root")
        .arg(&args.runtime_root)
        .arg("--log")
        .arg(&args.log);
    if let Some(runtime) = &args.runtime {
        cmd.arg("--runtime").arg(runtime);
    }
    if args.stdin {
        cmd.arg("--stdin");
    }
    if args.tty {
        cmd.arg("--tty");
    }
    if args.rotation.max_size > 0 {
        cmd.arg("--log-max-size")
            .arg(args.rotation.max_size.to_string())
            .arg("--log-max-file")
            .arg(args.rotation.max_file.to_string());
        if args.rotation.compress {
            cmd.arg("--log-compress");
        }
    }
    cmd
}

/// A `failed` reply is the shim's error; anything else is out of turn.
fn unexpected(reply: ShimReply) -> ShimError {
    match reply {
        ShimReply::Failed { message, cause } => ShimError::Failed { message, cause },
        other => ShimError::OutOfTurn(Box::new(other)),
    }
}

impl CreatedShim {
    /// Tells the shim to start the container's process. On any failure
    /// the shim and the container's processes are ended.
    pub fn start(mut self, state_dir: &Path) -> Result<(), ShimError> {
        let result = protocol::send(&mut self.commands, &ShimCommand::Start)
            .map_err(ShimError::from)
            .and_then(|()| read_reply(&mut self.replies, &state_dir.join("shim.log")));
        match result {
            Ok(ShimReply::Started) => Ok(()),
            Ok(other) => {
                end_shim(&self.id, state_dir);
                Err(unexpected(other))
            }
            Err(e) => {
                end_shim(&self.id, state_dir);
                Err(e)
            }
        }
    }
}

/// The shim forks once so it is not our child; the launcher exits at once.
fn reap_launcher(mut child: Child) {
    let _ = child.wait();
}

/// The next reply, waiting at most [`HANDSHAKE_TIMEOUT`] (a signal
/// interrupting the wait does not count as the time running out).
fn read_reply(
    replies: &mut BufReader<ChildStdout>,
    shim_log: &Path,
) -> Result<ShimReply, ShimError> {
    if replies.buffer().is_empty() {
        wait_readable(replies.get_ref().as_fd(), HANDSHAKE_TIMEOUT)?;
    }
    match protocol::receive(replies)? {
        Some(reply) => Ok(reply),
        None => {
            let log = std::fs::read_to_string(shim_log).unwrap_or_default();
            Err(ShimError::Exited(log.trim().to_string()))
        }
    }
}

/// Waits until `fd` is readable (or at end of file), at most `limit`.
pub(super) fn wait_readable(
    fd: std::os::fd::BorrowedFd<'_>,
    limit: Duration,
) -> Result<(), ShimError> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let timeout = nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
        let mut pfd = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut pfd, timeout) {
            Ok(0) => return Err(ShimError::Timeout(limit)),
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ShimError::Io(e.into())),
        }
    }
}

/// How long [`end_shim`] keeps killing processes with a shim's command line.
const SHIM_KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Ends everything a shim of container `id` left: the shim processes
/// (found by their command line, whose `--state-dir` is this container's
/// folder, so another daemon's shims are never touched), then every
/// process in the container's cgroup. The runtime's helper processes are
/// clones of the shim with its command line; one cloned just before the
/// kill would go on creating cgroup folders after they were removed, so
/// the shim's command line is killed until none is left, and only then the
/// cgroup. Idempotent.
pub fn end_shim(id: &str, state_dir: &Path) {
    let deadline = Instant::now() + SHIM_KILL_TIMEOUT;
    loop {
        let pids = shims_of(id, state_dir);
        if pids.is_empty() || Instant::now() >= deadline {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(pid.to_nix(), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    end_cgroup(id);
}

/// Ends every process in the container's cgroup and removes its folders;
/// processes that outlive every SIGKILL are logged.
pub fn end_cgroup(id: &str) {
    if let Err(e) = ContainerCgroup::of(id).kill_all(id) {
        tracing::error!(container = %id, error = %e, "container processes left running");
    }
}

/// Processes whose command line is `… shim … --id ID … --state-dir DIR`.
pub fn shims_of(id: &str, state_dir: &Path) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter_map(Pid::new)
        .filter(|pid| is_shim_of(Some(*pid), id, state_dir))
        .collect()
}

/// Every live shim whose `--state-dir` is under `containers_dir`, by
/// container ID (one daemon's shims; other roots' are left alone).
pub fn shims_under(containers_dir: &Path) -> HashMap<String, Vec<Pid>> {
    let mut found: HashMap<String, Vec<Pid>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter_map(Pid::new)
    {
        if let Some(args) = shim_cmdline(pid) {
            let dir = Path::new(&args.state_dir);
            if dir.parent() == Some(containers_dir) {
                found.entry(args.id).or_default().push(pid);
            }
        }
    }
    found
}

/// The `--id` and `--state-dir` of a shim's command line.
struct ShimCmdline {
    id: String,
    state_dir: String,
}

fn shim_cmdline(pid: Pid) -> Option<ShimCmdline> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    parse_shim_cmdline(&raw)
}

/// Parses a NUL-separated command line; `None` unless it is a shim's.
fn parse_shim_cmdline(raw: &[u8]) -> Option<ShimCmdline> {
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.get(1).map(String::as_str) != Some("shim") {
        return None;
    }
    let value = |flag: &str| {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).cloned()
    };
    Some(ShimCmdline {
        id: value("--id")?,
        state_dir: value("--state-dir")?,
    })
}

pub use crate::sys::process::wait_for_exit;

/// The shim's control socket in the container's folder (TTY containers).
pub const CONTROL_SOCKET: &str = "control.sock";

/// Asks the shim of a TTY container to resize its terminal. The socket is
/// reached through `/proc/self/fd/N/…` of the folder, since the folder's
/// path may be longer than a socket address allows.
pub fn resize_terminal(
    state_dir: &Path,
    size: crate::sys::terminal::WindowSize,
) -> Result<(), ShimError> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(state_dir)?;
    let path = format!("/proc/self/fd/{}/{CONTROL_SOCKET}", dir.as_raw_fd());
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let command = ShimCommand::Resize {
        height: size.height,
        width: size.width,
    };
    protocol::send(&mut stream, &command)?;
    match protocol::receive::<_, ShimReply>(&mut BufReader::new(&stream))? {
        Some(ShimReply::Resized) => Ok(()),
        Some(other) => Err(unexpected(other)),
        None => Err(ShimError::Exited(
            "the shim closed its control socket".into(),
        )),
    }
}

/// Whether `pid` is alive and is the shim (or a process forked from it,
/// such as the container's init before it runs the program) of container
/// `id` with folder `state_dir`.
pub fn is_shim_of(pid: Option<Pid>, id: &str, state_dir: &Path) -> bool {
    let Some(args) = pid.and_then(shim_cmdline) else {
        return false;
    };
    args.id == id && Path::new(&args.state_dir) == state_dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_command_lines_are_recognised() {
        let raw =
            b"/usr/bin/berth\0shim\0--id\0abc\0--bundle\0/b\0--state-dir\0/r/containers/abc\0";
        let args = parse_shim_cmdline(raw).unwrap();
        assert_eq!(args.id, "abc");
        assert_eq!(args.state_dir, "/r/containers/abc");
        assert!(parse_shim_cmdline(b"/usr/bin/berth\0daemon\0--id\0abc").is_none());
        assert!(parse_shim_cmdline(b"/usr/bin/berth\0shim\0--id").is_none());
    }

    #[test]
    fn a_missing_pid_is_no_shim() {
        assert!(!is_shim_of(None, "x", Path::new("/x")));
        let me = Pid::current();
        assert!(!is_shim_of(Some(me), "x", Path::new("/x")));
    }
}
