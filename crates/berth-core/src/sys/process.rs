//! Processes by pidfd: opening one, signalling through it, waiting for its
//! end, and which cgroup a process is in. A pidfd names one process for
//! good, so a signal sent through it can never reach a process that took
//! over a recycled pid.

use std::num::NonZeroI32;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

/// A process ID: always positive, so a missing pid can never become
/// `kill(0, …)` (which signals the caller's whole process group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Pid(NonZeroI32);

impl Pid {
    /// `Some` for a positive value that fits a `pid_t`.
    pub fn new(raw: i64) -> Option<Pid> {
        i32::try_from(raw)
            .ok()
            .filter(|p| *p > 0)
            .and_then(NonZeroI32::new)
            .map(Pid)
    }

    /// This process.
    pub fn current() -> Pid {
        Pid::new(i64::from(std::process::id())).expect("own pid is positive")
    }

    pub fn raw(self) -> i32 {
        self.0.get()
    }

    /// As nix's type, for signals and waits.
    pub fn to_nix(self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.raw())
    }
}

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<i64> for Pid {
    type Error = String;
    fn try_from(raw: i64) -> Result<Self, String> {
        Pid::new(raw).ok_or_else(|| format!("not a process ID: {raw}"))
    }
}

impl From<Pid> for i64 {
    fn from(p: Pid) -> i64 {
        i64::from(p.raw())
    }
}

/// A pidfd for `pid`; `None` if the process is gone.
pub fn pidfd_open(pid: Pid) -> std::io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.raw(), 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: the kernel just gave us this descriptor; we own it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// Sends `signal` through a pidfd; a process that has ended meanwhile is
/// not an error.
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: nix::sys::signal::Signal) -> std::io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

/// Blocks until process `pid` has ended (works for processes that are not
/// our children, e.g. shims of a previous daemon). A process already gone
/// returns at once.
pub fn wait_for_exit(pid: Pid) {
    let Ok(Some(fd)) = pidfd_open(pid) else {
        return;
    };
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

/// Whether process `pid` is in a cgroup whose path is `path` (in any
/// hierarchy), read from `/proc/PID/cgroup`.
pub fn in_cgroup(pid: Pid, path: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|text| cgroup_listed(&text, path))
        .unwrap_or(false)
}

/// Whether a `/proc/PID/cgroup` text (`ID:CONTROLLERS:PATH` lines) lists
/// `path`.
fn cgroup_listed(text: &str, path: &str) -> bool {
    text.lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .any(|p| p == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_lines_are_matched_by_path() {
        let text = "9:name=systemd:/\n8:pids:/berth/abc\n0::/\n";
        assert!(cgroup_listed(text, "/berth/abc"));
        assert!(!cgroup_listed(text, "/berth/ab"));
    }

    #[test]
    fn own_process_has_a_pidfd() {
        assert!(pidfd_open(Pid::current()).unwrap().is_some());
    }
}
