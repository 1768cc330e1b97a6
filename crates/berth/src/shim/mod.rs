//! `berth shim` (hidden): one single-threaded process per running
//! container. It creates and starts the container with the embedded
//! runtime (youki's libcontainer) or an external OCI runtime binary, is the
//! parent (and subreaper) of its processes, writes their output to the
//! json-file log, and records the exit status in `exit.json` so the daemon
//! can read it even if it was down when the container ended.
//!
//! Single-threaded on purpose: libcontainer creates the container with a
//! raw clone3 from the calling process, which is only safe without other
//! threads. Handshake with the daemon: see `berth_core::container::shim`.

mod console;
pub mod copy;
pub mod exec;
mod propagation;
mod pump;
mod runtime;
mod terminal;

use std::fs::File;
use std::io::BufReader;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use berth_core::container::jsonlog::now_rfc3339_nano;
use berth_core::container::logrotate::Rotation;
use berth_core::container::shim::ExitStatus;
use berth_core::container::shim_protocol::{
    self as protocol, FailureCause, Pid, ShimCommand, ShimReply,
};
use clap::Args;
use nix::fcntl::OFlag;

/// Arguments the daemon passes.
#[derive(Debug, Args)]
pub struct ShimArgs {
    #[arg(long)]
    id: String,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long)]
    runtime_root: PathBuf,
    #[arg(long)]
    log: PathBuf,
    /// External OCI runtime binary (default: embedded libcontainer).
    #[arg(long)]
    runtime: Option<String>,
    /// Give the container the stdin FIFO of its folder.
    #[arg(long)]
    stdin: bool,
    /// Rotate the log past this many bytes (0: never).
    #[arg(long, default_value_t = 0)]
    log_max_size: u64,
    /// Log files kept, the live one included.
    #[arg(long, default_value_t = 1)]
    log_max_file: u32,
    /// Gzip rotated log files.
    #[arg(long)]
    log_compress: bool,
    /// Give the container a terminal (`-t`).
    #[arg(long)]
    tty: bool,
}

/// Runs the shim; returns the process exit code.
pub fn run(args: ShimArgs) -> i32 {
    // Fork once so the shim is not the daemon's child (the daemon reaps the
    // launcher at once and watches the shim through a pidfd).
    // SAFETY: single-threaded here; the child only continues this function.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            println!("error cannot fork the shim: {e}");
            return 1;
        }
    }
    let _ = nix::unistd::setsid();
    init_logging();
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let (commands, mut replies) = take_handshake_pipes();
    match supervise(&args, commands, &mut replies) {
        Ok(()) => 0,
        Err(failure) => {
            let _ = protocol::send(&mut replies, &failure.reply());
            eprintln!("shim {}: {}", args.id, failure.message);
            1
        }
    }
}

/// Why the shim gives up; sent to the daemon as a `failed` reply (the
/// daemon may be gone, so the send is best effort).
struct Failure {
    message: String,
    cause: FailureCause,
}

impl Failure {
    fn other(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            cause: FailureCause::Other,
        }
    }

    /// Docker's class: a missing program is a 400 (CLI exit code 127).
    fn classify(message: String) -> Self {
        let cause = if message.contains("executable file not found")
            || message.contains("no such file or directory")
        {
            FailureCause::ProgramNotFound
        } else if message.contains("permission denied") {
            FailureCause::NotExecutable
        } else {
            FailureCause::Other
        };
        Failure { message, cause }
    }

    fn reply_exec(&self) -> protocol::ExecReply {
        protocol::ExecReply::Failed {
            message: self.message.clone(),
            cause: self.cause,
        }
    }

    fn reply(&self) -> ShimReply {
        ShimReply::Failed {
            message: self.message.clone(),
            cause: self.cause,
        }
    }
}

/// Destroys a created container unless disarmed: every way out of the
/// handshake but a start acknowledged leaves nothing running (a daemon
/// that died mid-start used to leave the container's init waiting for
/// ever).
struct DestroyUnlessStarted<'a> {
    container: &'a mut runtime::ShimContainer,
    started: bool,
}

impl Drop for DestroyUnlessStarted<'_> {
    fn drop(&mut self) {
        if !self.started {
            self.container.destroy();
        }
    }
}

/// The shim logs to its stderr (`shim.log` in the container's folder);
/// `BERTH_SHIM_LOG` sets the level (default: warn).
fn init_logging() {
    let level = std::env::var("BERTH_SHIM_LOG").unwrap_or_else(|_| "warn".into());
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Moves the handshake pipes off fds 0 and 1 (close-on-exec copies) and
/// points 0 and 1 at /dev/null, so nothing the shim starts inherits them.
fn take_handshake_pipes() -> (BufReader<File>, File) {
    let dup = |fd: RawFd| -> File {
        let new = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
            .expect("dup handshake pipe");
        // SAFETY: fcntl just returned this new descriptor.
        unsafe { File::from_raw_fd(new) }
    };
    let commands = dup(0);
    let replies = dup(1);
    if let Ok(null) = nix::fcntl::open("/dev/null", OFlag::O_RDWR, nix::sys::stat::Mode::empty()) {
        let _ = nix::unistd::dup2(null, 0);
        let _ = nix::unistd::dup2(null, 1);
        let _ = nix::unistd::close(null);
    }
    (BufReader::new(commands), replies)
}

fn supervise(
    args: &ShimArgs,
    mut commands: BufReader<File>,
    replies: &mut File,
) -> Result<(), Failure> {
    let (stdio, output) = container_stdio(args)?;
    let mut container = runtime::create(args, stdio).map_err(Failure::classify)?;
    let init_pid = Pid::new(i64::from(container.init_pid()))
        .ok_or_else(|| Failure::other("the runtime reported no init process"))?;
    let mut guard = DestroyUnlessStarted {
        container: &mut container,
        started: false,
    };
    let output = output.ready(args)?;
    if args.runtime.is_none() {
        propagation::apply(&args.bundle, init_pid.raw()).map_err(Failure::other)?;
    }
    handshake(&mut guard, init_pid, &mut commands, replies)?;
    drop(guard);
    drop(commands);
    let rotation = Rotation {
        max_size: args.log_max_size,
        max_file: args.log_max_file.max(1),
        compress: args.log_compress,
    };
    let exit_code = match output {
        Output::Pipes { stdout, stderr } => {
            pump::run(&args.log, rotation, stdout, stderr, init_pid.raw())
        }
        Output::Terminal(io) => terminal::run(&args.log, rotation, io, init_pid.raw()),
        Output::Console(_) => unreachable!("ready() received the terminal"),
    };
    let status = ExitStatus {
        exit_code,
        finished_at: now_rfc3339_nano(),
        oom_killed: berth_core::container::cgroup::ContainerCgroup::of(&args.id).oom_kills() > 0,
    };
    if let Err(e) = status.write(&args.state_dir.join("exit.json")) {
        eprintln!("shim {}: cannot record exit status: {e}", args.id);
    }
    container.destroy();
    Ok(())
}

/// Where the container's output goes: pipes to the log, or (`-t`) its
/// terminal, first as the console socket the runtime sends it to.
enum Output {
    Pipes { stdout: OwnedFd, stderr: OwnedFd },
    Console(console::ConsoleSocket),
    Terminal(terminal::TerminalIo),
}

impl Output {
    /// After create: the terminal received, its size set from the spec's
    /// `consoleSize`, its stdin FIFO and control socket opened.
    fn ready(self, args: &ShimArgs) -> Result<Self, Failure> {
        let Output::Console(socket) = self else {
            return Ok(self);
        };
        let master = socket.receive_master()?;
        if let Some(size) = console_size(&args.bundle) {
            let _ =
                berth_core::sys::terminal::set_window_size(std::os::fd::AsFd::as_fd(&master), size);
        }
        let stdin = if args.stdin {
            Some(open_fifo(args, OFlag::O_RDWR | OFlag::O_NONBLOCK)?)
        } else {
            None
        };
        let control = terminal::bind_control(&args.state_dir)
            .map_err(|e| Failure::other(format!("control socket: {e}")))?;
        Ok(Output::Terminal(terminal::TerminalIo {
            master,
            stdin,
            control,
        }))
    }
}

/// The container's stdio as the runtime gets it, and the shim's side.
fn container_stdio(args: &ShimArgs) -> Result<(runtime::Stdio, Output), Failure> {
    if args.tty {
        let socket = console::ConsoleSocket::bind(&args.state_dir, "console")?;
        let path = socket.path.clone();
        return Ok((runtime::Stdio::Console(path), Output::Console(socket)));
    }
    let pipe =
        || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Failure::other(format!("pipe: {e}")));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdin = open_stdin(args).map_err(Failure::other)?;
    let stdio = runtime::Stdio::Pipes {
        stdin,
        stdout: out_w,
        stderr: err_w,
    };
    Ok((
        stdio,
        Output::Pipes {
            stdout: out_r,
            stderr: err_r,
        },
    ))
}

/// `process.consoleSize` of the bundle's spec (libcontainer does not
/// apply it).
fn console_size(bundle: &std::path::Path) -> Option<berth_core::sys::terminal::WindowSize> {
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).ok()?).ok()?;
    let size = &spec["process"]["consoleSize"];
    Some(berth_core::sys::terminal::WindowSize {
        height: u16::try_from(size["height"].as_u64()?).ok()?,
        width: u16::try_from(size["width"].as_u64()?).ok()?,
    })
}

/// `created` → `start` → `started`. Anything but `start` (end of file when
/// the daemon died, `abort`, garbage) destroys the container (the guard).
fn handshake(
    guard: &mut DestroyUnlessStarted<'_>,
    init_pid: Pid,
    commands: &mut BufReader<File>,
    replies: &mut File,
) -> Result<(), Failure> {
    let created = ShimReply::Created {
        init_pid,
        shim_pid: Pid::current(),
    };
    protocol::send(replies, &created)
        .map_err(|e| Failure::other(format!("answering the daemon: {e}")))?;
    match protocol::receive::<_, ShimCommand>(commands) {
        Ok(Some(ShimCommand::Start)) => {}
        Ok(Some(ShimCommand::Abort | ShimCommand::Resize { .. })) | Ok(None) => {
            return Err(Failure::other("start aborted by the daemon"))
        }
        Err(e) => return Err(Failure::other(e.to_string())),
    }
    guard.container.start().map_err(Failure::classify)?;
    protocol::send(replies, &ShimReply::Started)
        .map_err(|e| Failure::other(format!("answering the daemon: {e}")))?;
    guard.started = true;
    Ok(())
}

/// The container's stdin: the FIFO in its folder (`-i`), else /dev/null.
fn open_stdin(args: &ShimArgs) -> Result<OwnedFd, String> {
    if !args.stdin {
        return open(std::path::Path::new("/dev/null"), OFlag::O_RDONLY);
    }
    // Non-blocking open (no writer yet), then back to blocking reads.
    let fd = open_fifo(args, OFlag::O_RDONLY | OFlag::O_NONBLOCK).map_err(|f| f.message)?;
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()),
    )
    .map_err(|e| format!("fcntl: {e}"))?;
    Ok(fd)
}

/// The stdin FIFO of the container's folder (the daemon may have made it
/// already, for an attach before start).
fn open_fifo(args: &ShimArgs, flags: OFlag) -> Result<OwnedFd, Failure> {
    let fifo = args.state_dir.join("stdin");
    berth_core::container::ContainerPaths::ensure_fifo(&fifo)
        .map_err(|e| Failure::other(format!("mkfifo: {e}")))?;
    open(&fifo, flags).map_err(Failure::other)
}

fn open(path: &std::path::Path, flags: OFlag) -> Result<OwnedFd, String> {
    nix::fcntl::open(
        path,
        flags | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    // SAFETY: open just returned this descriptor.
    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    .map_err(|e| format!("opening {}: {e}", path.display()))
}
