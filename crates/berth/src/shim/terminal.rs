//! The shim's main loop for a TTY container (`-t`): the terminal's master
//! is the container's only output and input. What it prints goes to the
//! json-file log as `stdout` entries, chunk by chunk (a prompt has no
//! newline); what is written to the stdin FIFO (`-i`) is typed into it;
//! `resize` commands on the control socket set its size. Children are
//! reaped as in [`super::pump`]; the loop ends when the first process has
//! exited and the terminal is drained (or the drain limit passed).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_core::container::jsonlog::{LogWriter, Stream};
use berth_core::container::logrotate::Rotation;
use berth_core::container::shim_protocol::{self as protocol, ShimCommand, ShimReply};
use berth_core::sys::terminal::{set_window_size, WindowSize};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::pump::{open_log, reap, DRAIN_LIMIT};

/// Name of the control socket in the container's folder.
pub const CONTROL_SOCKET: &str = "control.sock";

/// The terminal loop's inputs.
pub struct TerminalIo {
    pub master: OwnedFd,
    /// The stdin FIFO, opened read-write (so it never reports end of file
    /// between two attaches), if the container has `-i`.
    pub stdin: Option<OwnedFd>,
    pub control: UnixListener,
}

/// Runs until the first process has exited and the terminal is drained;
/// returns its exit code (128 + signal when killed).
pub fn run(log_path: &Path, rotation: Rotation, io: TerminalIo, init_pid: i32) -> i64 {
    let mut log = open_log(log_path, rotation);
    let _ = set_nonblocking(&io.master);
    let mut state = Loop {
        master: Some(io.master),
        stdin: io.stdin,
        pending: Vec::new(),
        control: io.control,
    };
    let mut exit_code = None;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        let drained = state.master.is_none() || drain_deadline.is_some_and(|d| Instant::now() > d);
        if exit_code.is_some() && drained {
            return exit_code.unwrap_or(255);
        }
        state.step(&mut log);
        if exit_code.is_none() {
            exit_code = reap(init_pid);
            if exit_code.is_some() {
                drain_deadline = Some(Instant::now() + DRAIN_LIMIT);
            }
        }
    }
}

struct Loop {
    master: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    /// Typed input the terminal has not taken yet.
    pending: Vec<u8>,
    control: UnixListener,
}

impl Loop {
    /// One poll and what it found ready.
    fn step(&mut self, log: &mut Option<LogWriter>) {
        let Some(master) = self.master.as_ref() else {
            // Output is closed; keep serving resizes until the exit.
            let mut fds = [PollFd::new(self.control.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) > 0 {
                self.serve_control();
            }
            return;
        };
        let mut master_events = PollFlags::POLLIN;
        if !self.pending.is_empty() {
            master_events |= PollFlags::POLLOUT;
        }
        let take_input = self.pending.is_empty() && self.stdin.is_some();
        let mut fds = vec![
            PollFd::new(master.as_fd(), master_events),
            PollFd::new(self.control.as_fd(), PollFlags::POLLIN),
        ];
        if let (true, Some(stdin)) = (take_input, self.stdin.as_ref()) {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) <= 0 {
            return;
        }
        let ready: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        if !ready[0].is_empty() {
            self.read_output(log);
            self.write_input();
        }
        if !ready[1].is_empty() {
            self.serve_control();
        }
        if ready.get(2).is_some_and(|r| !r.is_empty()) {
            self.read_input();
            self.write_input();
        }
    }

    /// Logs what the terminal printed; EIO (no slave left open) or end of
    /// file closes it.
    fn read_output(&mut self, log: &mut Option<LogWriter>) {
        let Some(master) = self.master.as_ref() else {
            return;
        };
        let mut buf = [0u8; 32 * 1024];
        match nix::unistd::read(master.as_raw_fd(), &mut buf) {
            Ok(0) => self.master = None,
            Ok(n) => {
                if let Some(writer) = log {
                    if let Err(e) = writer.write(Stream::Stdout, &buf[..n]) {
                        eprintln!("shim: writing log: {e}");
                    }
                }
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(_) => self.master = None,
        }
    }

    fn read_input(&mut self) {
        let Some(stdin) = self.stdin.as_ref() else {
            return;
        };
        let mut buf = [0u8; 8 * 1024];
        match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
            Ok(n) if n > 0 => self.pending.extend_from_slice(&buf[..n]),
            Ok(_) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(_) => self.stdin = None,
        }
    }

    /// Types pending input into the terminal as far as it takes it.
    fn write_input(&mut self) {
        let Some(master) = self.master.as_ref() else {
            self.pending.clear();
            return;
        };
        if self.pending.is_empty() {
            return;
        }
        match nix::unistd::write(master, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(_) => self.pending.clear(),
        }
    }

    /// Answers one command on the control socket.
    fn serve_control(&mut self) {
        let Ok((stream, _)) = self.control.accept() else {
            return;
        };
        let reply = match read_command(&stream) {
            Ok(ShimCommand::Resize { height, width }) => self.resize(WindowSize { height, width }),
            Ok(other) => failed(format!("unexpected command {other:?}")),
            Err(e) => failed(e),
        };
        let mut stream = stream;
        let _ = protocol::send(&mut stream, &reply);
        let _ = stream.flush();
    }

    fn resize(&self, size: WindowSize) -> ShimReply {
        match self
            .master
            .as_ref()
            .map(|m| set_window_size(m.as_fd(), size))
        {
            Some(Ok(())) | None => ShimReply::Resized,
            Some(Err(e)) => failed(format!("resizing the terminal: {e}")),
        }
    }
}

fn read_command(stream: &UnixStream) -> Result<ShimCommand, String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    if reader.fill_buf().map_err(|e| e.to_string())?.is_empty() {
        return Err("no command".into());
    }
    protocol::receive::<_, ShimCommand>(&mut reader)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no command".into())
}

fn failed(message: String) -> ShimReply {
    ShimReply::Failed {
        message,
        cause: protocol::FailureCause::Other,
    }
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Binds the control socket in `state_dir` under its short name (the
/// folder's path may be longer than a socket path may be).
pub fn bind_control(state_dir: &Path) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(state_dir.join(CONTROL_SOCKET));
    std::env::set_current_dir(state_dir)?;
    let bound = UnixListener::bind(CONTROL_SOCKET);
    let _ = std::env::set_current_dir("/");
    let listener = bound?;
    listener.set_nonblocking(false)?;
    Ok(listener)
}
