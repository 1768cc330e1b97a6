//! The daemon's side of `berth shim`: spawning it, the start handshake,
//! the exit status it leaves behind, and watching it end.
//!
//! Protocol (one line each, over the shim's stdin/stdout pipes):
//! shim → `created <init pid> <shim pid>` or `error <message>`;
//! daemon → `start`; shim → `started` or `error <message>`. After that the
//! pipes are closed and the shim runs on its own: it writes the log and,
//! when the container's process ends, `exit.json`, then exits. The daemon
//! learns of the end through a pidfd on the shim, so it can restart in
//! between without losing anything.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ContainerError;

/// How long the shim may take to create the container.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the shim records when the container's process has ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, or 128 + signal number.
    pub exit_code: i64,
    /// RFC 3339 with nanoseconds.
    pub finished_at: String,
}

impl ExitStatus {
    /// Writes `path` atomically (temporary file, fsync, rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(self)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
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
}

/// A shim that has created its container and waits for `start`.
pub struct CreatedShim {
    pub init_pid: i64,
    pub shim_pid: i64,
    commands: ChildStdin,
    replies: BufReader<ChildStdout>,
}

/// Spawns `exe shim …` and waits until it has created the container.
pub fn spawn(exe: &Path, args: &ShimArgs) -> Result<CreatedShim, ContainerError> {
    let shim_log = args.state_dir.join("shim.log");
    let stderr =
        std::fs::File::create(&shim_log).map_err(|e| ContainerError::io("creating shim log", e))?;
    let mut child = shim_command(exe, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| ContainerError::io(format!("starting {} shim", exe.display()), e))?;
    let commands = child.stdin.take().expect("piped");
    let mut replies = BufReader::new(child.stdout.take().expect("piped"));
    let reply = read_reply(&mut replies, &shim_log);
    reap_launcher(child);
    let reply = reply?;
    match parse_created(&reply) {
        Some((init_pid, shim_pid)) => Ok(CreatedShim {
            init_pid,
            shim_pid,
            commands,
            replies,
        }),
        None => Err(start_error(&reply)),
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
    cmd
}

/// The init and shim pids of a `created <init pid> <shim pid>` reply
/// (0 for one that does not parse); `None` for any other reply.
fn parse_created(reply: &str) -> Option<(i64, i64)> {
    let mut words = reply.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("created"), Some(init), Some(shim)) => {
            Some((init.parse().unwrap_or(0), shim.parse().unwrap_or(0)))
        }
        _ => None,
    }
}

impl CreatedShim {
    /// Tells the shim to start the container's process.
    pub fn start(mut self) -> Result<(), ContainerError> {
        self.commands
            .write_all(b"start\n")
            .map_err(|e| ContainerError::io("talking to the shim", e))?;
        let reply = read_reply(&mut self.replies, Path::new("shim"))?;
        if reply.trim() == "started" {
            Ok(())
        } else {
            Err(start_error(&reply))
        }
    }
}

/// The shim forks once so it is not our child; the launcher exits at once.
fn reap_launcher(mut child: Child) {
    let _ = child.wait();
}

fn read_reply(
    replies: &mut BufReader<ChildStdout>,
    shim_log: &Path,
) -> Result<String, ContainerError> {
    let fd = replies.get_ref().as_fd();
    let mut pfd = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    let timeout = nix::poll::PollTimeout::try_from(HANDSHAKE_TIMEOUT.as_millis() as i32)
        .unwrap_or(nix::poll::PollTimeout::MAX);
    if replies.buffer().is_empty() && nix::poll::poll(&mut pfd, timeout).unwrap_or(0) == 0 {
        return Err(ContainerError::Start(
            "the shim did not answer in time".into(),
        ));
    }
    let mut line = String::new();
    replies
        .read_line(&mut line)
        .map_err(|e| ContainerError::io("reading from the shim", e))?;
    if line.is_empty() {
        let log = std::fs::read_to_string(shim_log).unwrap_or_default();
        return Err(ContainerError::Start(format!(
            "the shim exited without answering: {}",
            log.trim()
        )));
    }
    Ok(line.trim_end().to_string())
}

/// Turns a shim error into Docker's classes: a missing program is a 400
/// the CLI maps to exit code 127, like Docker's "executable file not found".
fn start_error(reply: &str) -> ContainerError {
    let message = reply.strip_prefix("error ").unwrap_or(reply).to_string();
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        ContainerError::StartNotFound(message)
    } else {
        ContainerError::Start(message)
    }
}

/// Blocks until process `pid` has ended (pidfd; works for processes that
/// are not our children, e.g. shims of a previous daemon). A process that
/// is already gone returns at once.
pub fn wait_for_exit(pid: i64) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return;
    }
    // SAFETY: the kernel just gave us this descriptor; we own it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    loop {
        let mut pfd = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => break,
        }
    }
}

/// Whether `pid` is alive and is the shim of container `id`.
pub fn is_shim_of(pid: i64, id: &str) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.contains(&b"shim".as_slice()) && args.contains(&id.as_bytes())
}
