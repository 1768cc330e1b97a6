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

mod pump;
mod runtime;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use berth_core::container::jsonlog::now_rfc3339_nano;
use berth_core::container::shim::ExitStatus;
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
        Err(e) => {
            let _ = writeln!(replies, "error {e}");
            eprintln!("shim {}: {e}", args.id);
            1
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
) -> Result<(), String> {
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let stdin = open_stdin(args)?;
    let mut container = runtime::create(args, stdin, out_w, err_w)?;
    let init_pid = container.init_pid();
    writeln!(replies, "created {init_pid} {}", std::process::id()).map_err(|e| e.to_string())?;
    let mut line = String::new();
    let _ = commands.read_line(&mut line);
    if line.trim() != "start" {
        // The daemon gave up on this start: leave nothing behind.
        container.destroy();
        return Err("start aborted by the daemon".into());
    }
    if let Err(e) = container.start() {
        container.destroy();
        return Err(e);
    }
    writeln!(replies, "started").map_err(|e| e.to_string())?;
    drop(commands);
    let exit_code = pump::run(&args.log, out_r, err_r, init_pid);
    let status = ExitStatus {
        exit_code,
        finished_at: now_rfc3339_nano(),
    };
    if let Err(e) = status.write(&args.state_dir.join("exit.json")) {
        eprintln!("shim {}: cannot record exit status: {e}", args.id);
    }
    container.destroy();
    Ok(())
}

/// The container's stdin: the FIFO in its folder (`-i`), else /dev/null.
fn open_stdin(args: &ShimArgs) -> Result<OwnedFd, String> {
    let open = |path: &std::path::Path, flags: OFlag| {
        nix::fcntl::open(
            path,
            flags | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        // SAFETY: open just returned this descriptor.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .map_err(|e| format!("opening {}: {e}", path.display()))
    };
    if !args.stdin {
        return open(std::path::Path::new("/dev/null"), OFlag::O_RDONLY);
    }
    // The daemon may have made the FIFO already (an attach before start).
    let fifo = args.state_dir.join("stdin");
    berth_core::container::ContainerPaths::ensure_fifo(&fifo)
        .map_err(|e| format!("mkfifo: {e}"))?;
    // Non-blocking open (no writer yet), then back to blocking reads.
    let fd = open(&fifo, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()),
    )
    .map_err(|e| format!("fcntl: {e}"))?;
    Ok(fd)
}
