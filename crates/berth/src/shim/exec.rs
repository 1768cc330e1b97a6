//! `berth exec-shim` (hidden): runs one exec's process in a running
//! container with libcontainer's tenant builder, reaps it, and reports to
//! the daemon on fd 3 (`berth_core::container::exec`, typed
//! [`ExecReply`] packets). Its stdin, stdout and stderr are the process's
//! (pipes to the daemon, or /dev/null); with a TTY the terminal's master
//! goes to the daemon with the `started` message.
//!
//! libcontainer 0.7's tenant builder rebuilds the spec's `linux` section
//! without `seccomp`, so an exec would run unfiltered. The process is
//! therefore started by [`ProcessExecutor`], which loads the container's
//! filter right before `execve`. Loading a filter without
//! no-new-privileges needs `CAP_SYS_ADMIN`, so when the container lacks
//! it the process gets it (and `CAP_SETPCAP`, to drop from the bounding
//! set) only until the filter is loaded: it is dropped from every set
//! before the program runs, as runc loads the filter before dropping
//! capabilities.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_core::container::shim_protocol::{self as protocol, ExecReply, Pid};
use caps::{CapSet, Capability};
use clap::Args;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::{
    Capabilities as SpecCaps, Capability as SpecCap, LinuxSeccomp, Process, Spec,
};

use super::console::ConsoleSocket;
use super::runtime::docker_wording;
use super::Failure;

/// Arguments the daemon passes.
#[derive(Debug, Args)]
pub struct ExecShimArgs {
    #[arg(long)]
    id: String,
    #[arg(long)]
    runtime_root: PathBuf,
    #[arg(long)]
    bundle: PathBuf,
    /// The exec's OCI process.
    #[arg(long)]
    process: PathBuf,
    /// The container's folder (where a TTY's console socket is made).
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long)]
    tty: bool,
}

/// Runs the helper; returns its exit code.
pub fn run(args: ExecShimArgs) -> i32 {
    // SAFETY: the daemon put the control socket on fd 3 (launch.rs).
    let control = unsafe { OwnedFd::from_raw_fd(3) };
    let _ = nix::fcntl::fcntl(
        control.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let (pid, master) = match start(&args) {
        Ok(started) => started,
        Err(failure) => {
            let _ = protocol::send_packet(control.as_fd(), &failure.reply_exec(), None);
            return 1;
        }
    };
    let started = ExecReply::Started { pid };
    let _ = protocol::send_packet(
        control.as_fd(),
        &started,
        master.as_ref().map(|m| m.as_fd()),
    );
    drop(master);
    let exit_code = wait_for(pid);
    let _ = protocol::send_packet(control.as_fd(), &ExecReply::Exited { exit_code }, None);
    0
}

/// Starts the process; its pid and, with a TTY, the terminal's master.
fn start(args: &ExecShimArgs) -> Result<(Pid, Option<OwnedFd>), Failure> {
    let spec = Spec::load(args.bundle.join("config.json"))
        .map_err(|e| Failure::other(format!("reading the container's spec: {e}")))?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let lent = match &seccomp {
        Some(_) => lend_capabilities(&args.process)?,
        None => Vec::new(),
    };
    let console = args
        .tty
        .then(|| ConsoleSocket::bind(&args.state_dir, "exec"))
        .transpose()?;
    let executor = ProcessExecutor { seccomp, lent };
    let mut builder = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.runtime_root)
        .map_err(|e| Failure::other(e.to_string()))?
        .with_executor(executor);
    if let Some(console) = &console {
        builder = builder.with_console_socket(Some(console.path.clone()));
    }
    let pid = builder
        .as_tenant()
        .with_process(Some(&args.process))
        .with_detach(args.tty)
        .build()
        .map_err(|e| Failure::classify(docker_wording(&e.to_string())))?;
    let pid = Pid::new(i64::from(pid.as_raw()))
        .ok_or_else(|| Failure::other("the runtime reported no process"))?;
    let master = console.map(|c| c.receive_master()).transpose()?;
    Ok((pid, master))
}

/// Adds `CAP_SYS_ADMIN` and `CAP_SETPCAP` to the process's capabilities
/// where they are missing (rewriting the process file); returns those
/// lent, for the executor to take back once the filter is loaded. With
/// no-new-privileges no capability is needed.
fn lend_capabilities(process_file: &Path) -> Result<Vec<Capability>, Failure> {
    let bytes = std::fs::read(process_file)
        .map_err(|e| Failure::other(format!("reading {}: {e}", process_file.display())))?;
    let mut process: Process = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::other(format!("the exec's process: {e}")))?;
    let Some(mut caps) = process.capabilities().clone() else {
        return Ok(Vec::new());
    };
    if process.no_new_privileges() == Some(true) {
        return Ok(Vec::new());
    }
    let mut lent = Vec::new();
    for (spec_cap, cap) in [
        (SpecCap::SysAdmin, Capability::CAP_SYS_ADMIN),
        (SpecCap::Setpcap, Capability::CAP_SETPCAP),
    ] {
        if caps
            .effective()
            .as_ref()
            .is_some_and(|e| e.contains(&spec_cap))
        {
            continue;
        }
        let add = |set: &Option<SpecCaps>| {
            let mut set = set.clone().unwrap_or_default();
            set.insert(spec_cap);
            Some(set)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        lent.push(cap);
    }
    process.set_capabilities(Some(caps));
    let json = serde_json::to_vec(&process).map_err(|e| Failure::other(e.to_string()))?;
    std::fs::write(process_file, json)
        .map_err(|e| Failure::other(format!("writing {}: {e}", process_file.display())))?;
    Ok(lent)
}

/// Starts a container's process (its init, or an exec): gives it the
/// signal state a process started by Docker has, loads the seccomp filter
/// of an exec, takes back the capabilities lent for it, then runs the
/// program as libcontainer's default executor does.
#[derive(Clone, Default)]
pub(super) struct ProcessExecutor {
    /// An exec's filter (libcontainer loads an init's from the spec).
    seccomp: Option<LinuxSeccomp>,
    lent: Vec<Capability>,
}

/// Every signal back to its default action and none blocked. The shim is
/// Rust, which ignores SIGPIPE (and the C library keeps two real-time
/// signals of its own), and ignored signals survive `execve`: a
/// container's `yes | head` would never end (`yes` is told EPIPE, not
/// killed), as no process Docker starts behaves.
fn default_signals() -> Result<(), ExecutorError> {
    /// The kernel's `struct sigaction` (x86_64 and aarch64 alike).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signal in (1..=64).filter(|s| *s != libc::SIGKILL && *s != libc::SIGSTOP) {
        // SAFETY: rt_sigaction with a valid struct and no old-action
        // pointer; the raw call, because the C library refuses to touch
        // the real-time signals it reserves.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(ExecutorError::Other(format!(
                "resetting signal {signal}: {e}"
            )));
        }
    }
    nix::sys::signal::SigSet::empty()
        .thread_set_mask()
        .map_err(|e| ExecutorError::Other(format!("unblocking signals: {e}")))
}

impl Executor for ProcessExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        default_signals()?;
        if let Some(seccomp) = &self.seccomp {
            libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|e| ExecutorError::Other(format!("loading seccomp: {e}")))?;
        }
        // SETPCAP (if lent) goes last: dropping from the bounding set needs it.
        for cap in &self.lent {
            caps::drop(None, CapSet::Bounding, *cap)
                .map_err(|e| ExecutorError::Other(format!("dropping {cap}: {e}")))?;
        }
        for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
            for cap in &self.lent {
                caps::drop(None, set, *cap)
                    .map_err(|e| ExecutorError::Other(format!("dropping {cap}: {e}")))?;
            }
        }
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}

/// Reaps children until `pid` has ended; its exit code (128 + signal).
fn wait_for(pid: Pid) -> i64 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid.raw() => return i64::from(code),
            Ok(WaitStatus::Signaled(p, signal, _)) if p.as_raw() == pid.raw() => {
                return 128 + signal as i64
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 255,
        }
    }
}
