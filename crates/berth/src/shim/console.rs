//! The console socket of a TTY: libcontainer connects to it and sends the
//! terminal's master (`SCM_RIGHTS`); used by the shim for a container's
//! terminal and by the exec helper for an exec's.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Failure;

/// The socket libcontainer sends a TTY's master to, made in the
/// container's folder under a short relative name (a socket path has at
/// most 107 bytes; the folder's may be longer).
pub struct ConsoleSocket {
    listener: UnixListener,
    pub path: PathBuf,
}

impl ConsoleSocket {
    pub fn bind(state_dir: &Path, prefix: &str) -> Result<Self, Failure> {
        let name = format!("{prefix}-{:08x}.sock", rand::random::<u32>());
        std::env::set_current_dir(state_dir)
            .map_err(|e| Failure::other(format!("entering {}: {e}", state_dir.display())))?;
        let bound = UnixListener::bind(&name);
        let _ = std::env::set_current_dir("/");
        let listener = bound.map_err(|e| Failure::other(format!("console socket: {e}")))?;
        Ok(ConsoleSocket {
            listener,
            path: state_dir.join(name),
        })
    }

    /// The master the container's process sent.
    pub fn receive_master(self) -> Result<OwnedFd, Failure> {
        let result = self.accept_master();
        let _ = std::fs::remove_file(&self.path);
        result
    }

    fn accept_master(&self) -> Result<OwnedFd, Failure> {
        self.listener
            .set_nonblocking(true)
            .map_err(|e| Failure::other(e.to_string()))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > deadline {
                        return Err(Failure::other("no terminal was sent"));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(Failure::other(format!("console socket: {e}"))),
            }
        };
        stream
            .set_nonblocking(false)
            .map_err(|e| Failure::other(e.to_string()))?;
        receive_fd(stream.as_fd())
    }
}

fn receive_fd(socket: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd, Failure> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| Failure::other(format!("receiving the terminal: {e}")))?;
    for cmsg in msg.cmsgs().map_err(|e| Failure::other(e.to_string()))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Failure::other("no terminal was sent"))
}
