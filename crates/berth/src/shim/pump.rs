//! The shim's main loop: copy the container's stdout and stderr into the
//! json-file log line by line, reap children (the shim is a subreaper), and
//! return the first process's exit code once it has ended and its output
//! is drained.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_core::container::jsonlog::{LogWriter, Stream};
use berth_core::container::logrotate::Rotation;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Longest partial line kept before it is logged anyway (Docker: 16 KiB).
const MAX_LINE: usize = 16 * 1024;
/// How long output is drained after the first process ended.
pub(super) const DRAIN_LIMIT: Duration = Duration::from_secs(2);

struct Output {
    fd: Option<OwnedFd>,
    stream: Stream,
    pending: Vec<u8>,
}

impl Output {
    fn new(fd: OwnedFd, stream: Stream) -> Self {
        Output {
            fd: Some(fd),
            stream,
            pending: Vec::new(),
        }
    }

    /// Reads what is available; logs complete lines. Returns false at EOF.
    fn read(&mut self, log: &mut Option<LogWriter>) -> bool {
        let Some(fd) = &self.fd else { return false };
        let mut buf = [0u8; 32 * 1024];
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) | Err(_) => {
                self.flush(log, true);
                self.fd = None;
                false
            }
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.flush(log, false);
                true
            }
        }
    }

    fn flush(&mut self, log: &mut Option<LogWriter>, all: bool) {
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            write(log, self.stream, &line);
        }
        if (all || self.pending.len() >= MAX_LINE) && !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            write(log, self.stream, &rest);
        }
    }
}

fn write(log: &mut Option<LogWriter>, stream: Stream, line: &[u8]) {
    if let Some(writer) = log {
        if let Err(e) = writer.write(stream, line) {
            eprintln!("shim: writing log: {e}");
        }
    }
}

/// Runs until the first process (`init_pid`) has exited and the output is
/// drained; returns Docker's exit code (128 + signal when killed).
pub fn run(
    log_path: &Path,
    rotation: Rotation,
    stdout: OwnedFd,
    stderr: OwnedFd,
    init_pid: i32,
) -> i64 {
    let mut log = open_log(log_path, rotation);
    let mut outputs = [
        Output::new(stdout, Stream::Stdout),
        Output::new(stderr, Stream::Stderr),
    ];
    let exit_code = pump(&mut outputs, &mut log, init_pid);
    for output in &mut outputs {
        output.flush(&mut log, true);
    }
    exit_code.unwrap_or(255)
}

/// The json-file log writer; without one (reported) the output is still
/// drained, so the container never blocks on a full pipe.
pub(super) fn open_log(log_path: &Path, rotation: Rotation) -> Option<LogWriter> {
    match LogWriter::open_rotating(log_path, rotation) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("shim: cannot open log {}: {e}", log_path.display());
            None
        }
    }
}

/// Copies output into the log and reaps children until the first process
/// has exited and its output is closed or the drain limit has passed;
/// returns that process's exit code.
fn pump(outputs: &mut [Output; 2], log: &mut Option<LogWriter>, init_pid: i32) -> Option<i64> {
    let mut exit_code: Option<i64> = None;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        let open: Vec<usize> = (0..2).filter(|i| outputs[*i].fd.is_some()).collect();
        if finished(exit_code, &open, drain_deadline) {
            return exit_code;
        }
        if open.is_empty() {
            // Output closed but the process lives on: just wait for it.
            exit_code = Some(wait_blocking(init_pid));
            continue;
        }
        for i in poll_outputs(outputs, &open) {
            outputs[i].read(log);
        }
        if exit_code.is_none() {
            exit_code = reap(init_pid);
            if exit_code.is_some() {
                drain_deadline = Some(Instant::now() + DRAIN_LIMIT);
            }
        }
    }
}

/// Whether pumping is over: the first process has exited and its output
/// is closed (indices in `open`) or draining it took too long.
fn finished(exit_code: Option<i64>, open: &[usize], drain_deadline: Option<Instant>) -> bool {
    exit_code.is_some() && (open.is_empty() || drain_deadline.is_some_and(|d| Instant::now() > d))
}

fn poll_outputs(outputs: &[Output; 2], open: &[usize]) -> Vec<usize> {
    let mut fds: Vec<PollFd<'_>> = open
        .iter()
        .map(|i| {
            PollFd::new(
                outputs[*i].fd.as_ref().expect("open").as_fd(),
                PollFlags::POLLIN,
            )
        })
        .collect();
    if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) <= 0 {
        return Vec::new();
    }
    open.iter()
        .zip(fds.iter())
        .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
        .map(|(i, _)| *i)
        .collect()
}

/// Reaps every exited child; returns the first process's code if it ended.
pub(super) fn reap(init_pid: i32) -> Option<i64> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(status) => {
                if status.pid() == Some(Pid::from_raw(init_pid)) {
                    found = code_of(status);
                }
            }
        }
    }
}

fn wait_blocking(init_pid: i32) -> i64 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(status) if status.pid() == Some(Pid::from_raw(init_pid)) => {
                if let Some(code) = code_of(status) {
                    return code;
                }
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 255,
        }
    }
}

fn code_of(status: WaitStatus) -> Option<i64> {
    match status {
        WaitStatus::Exited(_, code) => Some(code as i64),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i64),
        _ => None,
    }
}
