//! Starting an exec's process through `berth exec-shim`, a single-threaded
//! helper the daemon spawns per exec (libcontainer's tenant builder forks
//! with raw clone calls, unsafe in the multi-threaded daemon). The helper
//! joins the container (namespaces, cgroup, seccomp), reaps the process
//! and reports on its fd 3, a `SOCK_SEQPACKET` pair: `started` (with the
//! terminal's master for a TTY), then `exited`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::ExecError;
use crate::container::shim_protocol::{self as protocol, ExecReply, FailureCause, Pid};

/// How long the helper may take to start the process.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What the helper is told.
#[derive(Debug, Clone)]
pub struct ExecLaunch {
    pub exe: PathBuf,
    pub container_id: String,
    pub runtime_root: PathBuf,
    pub bundle: PathBuf,
    /// The exec's OCI process (written 0600, removed once started).
    pub process_file: PathBuf,
    /// The container's folder, where a TTY's console socket is made.
    pub state_dir: PathBuf,
    pub tty: bool,
    /// The client sends stdin (else the process reads /dev/null).
    pub stdin: bool,
    /// Output goes to the client (else /dev/null: a detached exec).
    pub attached: bool,
}

/// The process's streams, held by the daemon.
#[derive(Debug)]
pub enum ExecIo {
    /// A detached exec: nothing to stream.
    Detached,
    /// Pipes: stdin (write end, if attached), stdout and stderr.
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// The terminal's master: output and input both.
    Terminal { master: OwnedFd },
}

/// A started exec: its pid, its streams, and the channel on which the
/// helper reports the exit.
#[derive(Debug)]
pub struct StartedExec {
    pub pid: Pid,
    pub io: ExecIo,
    pub control: OwnedFd,
    pub helper: Child,
}

/// Spawns the helper and waits for `started`.
pub fn launch(l: &ExecLaunch) -> Result<StartedExec, ExecError> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| ExecError::launch(format!("socketpair: {e}")))?;
    let mut command = helper_command(l);
    let fd = theirs.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; it clears close-on-exec on fd 3.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::dup2(fd, 3)?;
            Ok(())
        });
    }
    let mut helper = command
        .spawn()
        .map_err(|e| ExecError::launch(format!("spawning the exec helper: {e}")))?;
    drop(theirs);
    let pipes = take_pipes(&mut helper, l);
    match first_reply(ours.as_fd()) {
        Ok((pid, master)) => {
            let io = match (master, pipes) {
                (Some(master), _) if l.attached => ExecIo::Terminal { master },
                // A detached TTY exec keeps its terminal: closing the
                // master would hang it up (SIGHUP). Its output is read
                // and dropped, as Docker discards a detached exec's.
                (Some(master), _) => {
                    drain_terminal(master);
                    ExecIo::Detached
                }
                (None, Some(io)) => io,
                (None, None) => ExecIo::Detached,
            };
            Ok(StartedExec {
                pid,
                io,
                control: ours,
                helper,
            })
        }
        Err(e) => {
            let _ = helper.kill();
            let _ = helper.wait();
            Err(e)
        }
    }
}

/// Reads a terminal until its last slave closes (EIO), on its own thread.
fn drain_terminal(master: OwnedFd) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(nix::unistd::read(master.as_raw_fd(), &mut buf), Ok(n) if n > 0) {}
    });
}

fn helper_command(l: &ExecLaunch) -> Command {
    let mut cmd = Command::new(&l.exe);
    cmd.arg("exec-shim")
        .arg("--id")
        .arg(&l.container_id)
        .arg("--runtime-root")
        .arg(&l.runtime_root)
        .arg("--bundle")
        .arg(&l.bundle)
        .arg("--process")
        .arg(&l.process_file)
        .arg("--state-dir")
        .arg(&l.state_dir);
    if l.tty {
        cmd.arg("--tty");
    }
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let streams = l.attached && !l.tty;
    cmd.stdin(piped(streams && l.stdin))
        .stdout(piped(streams))
        .stderr(piped(streams));
    cmd
}

/// The daemon's ends of the process's pipes (attached, no TTY).
fn take_pipes(helper: &mut Child, l: &ExecLaunch) -> Option<ExecIo> {
    if !l.attached || l.tty {
        return None;
    }
    Some(ExecIo::Pipes {
        stdin: helper.stdin.take().map(OwnedFd::from),
        stdout: OwnedFd::from(helper.stdout.take()?),
        stderr: OwnedFd::from(helper.stderr.take()?),
    })
}

/// `started` (and the master sent with it) or the helper's failure.
fn first_reply(control: std::os::fd::BorrowedFd<'_>) -> Result<(Pid, Option<OwnedFd>), ExecError> {
    crate::container::shim::wait_readable(control, START_TIMEOUT).map_err(|e| match e {
        crate::container::shim_protocol::ShimError::Timeout(limit) => {
            ExecError::launch(format!("the exec helper did not answer within {limit:?}"))
        }
        other => ExecError::launch(other.to_string()),
    })?;
    match protocol::receive_packet::<ExecReply>(control) {
        Ok(Some((ExecReply::Started { pid }, master))) => Ok((pid, master)),
        Ok(Some((ExecReply::Failed { message, cause }, _))) => {
            Err(ExecError::Launch { message, cause })
        }
        Ok(Some((other, _))) => Err(ExecError::launch(format!(
            "the exec helper answered {other:?} out of turn"
        ))),
        Ok(None) => Err(ExecError::launch(
            "the exec helper exited without answering",
        )),
        Err(e) => Err(ExecError::launch(e.to_string())),
    }
}

/// Blocks until the helper reports the exit (or dies: 126 if it never
/// said, as a process that could not be waited for); reaps the helper.
pub fn wait_exit(started: &mut StartedExec) -> i64 {
    let code = loop {
        match protocol::receive_packet::<ExecReply>(started.control.as_fd()) {
            Ok(Some((ExecReply::Exited { exit_code }, _))) => break exit_code,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => break 126,
        }
    };
    let _ = started.helper.wait();
    code
}

/// The exec's process file in the container's folder.
pub fn process_file(state_dir: &Path, exec_id: &str) -> PathBuf {
    state_dir.join(format!("exec-{}.json", &exec_id[..12.min(exec_id.len())]))
}

impl ExecError {
    fn launch(message: impl Into<String>) -> Self {
        ExecError::Launch {
            message: message.into(),
            cause: FailureCause::Other,
        }
    }
}
