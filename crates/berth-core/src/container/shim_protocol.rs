//! The typed messages between the daemon and `berth shim`.
//!
//! One JSON object per line over the shim's stdin (daemon → shim:
//! [`ShimCommand`]) and stdout (shim → daemon: [`ShimReply`]). The order is
//! fixed: the shim creates the container and sends `created` (or `failed`);
//! the daemon records both pids, then sends `start` (or `abort`); the shim
//! answers `started` (or `failed`). Anything else — end of file, a line
//! that does not parse, a message out of order — is a [`ShimError`], and
//! the side that sees it tears the container down (the shim destroys it;
//! the daemon kills the shim and the container's cgroup).

use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::sys::process::Pid;

/// Serde for an `Option<Pid>` stored as Docker shows it: a number, 0 for
/// none (older rows, and `State.Pid` of a stopped container).
pub mod optional_pid {
    use super::*;

    pub fn serialize<S: Serializer>(pid: &Option<Pid>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(pid.map_or(0, i64::from))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Pid>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.and_then(Pid::new))
    }
}

/// Daemon → shim: the handshake's `start`/`abort` on the shim's stdin;
/// afterwards, for a TTY container, `resize` on its control socket
/// (`control.sock` in the container's folder, one command per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ShimCommand {
    /// Run the container's program.
    Start,
    /// The daemon gave up on this start: destroy the container and exit.
    Abort,
    /// Set the size of the container's terminal.
    Resize { height: u16, width: u16 },
}

/// Shim → daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ShimReply {
    /// The container exists; its first process waits for `start`.
    Created { init_pid: Pid, shim_pid: Pid },
    /// The container's program runs.
    Started,
    /// The terminal has the size asked for.
    Resized,
    /// Creating or starting failed; nothing is left behind.
    Failed {
        message: String,
        cause: FailureCause,
    },
}

/// Exec helper (`berth exec-shim`) → daemon, one message per packet on a
/// `SOCK_SEQPACKET` pair (the helper's fd 3): `started` (with a TTY the
/// terminal's master travels with it as `SCM_RIGHTS`) or `failed`, then
/// `exited` once the process has ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ExecReply {
    /// The process runs in the container; `pid` is its host PID.
    Started { pid: Pid },
    /// It could not be started; nothing is left behind.
    Failed {
        message: String,
        cause: FailureCause,
    },
    /// It ended: exit code, or 128 + signal number.
    Exited { exit_code: i64 },
}

/// Why a start failed, for Docker's status codes and exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// The program is missing or not executable (Docker: 400, exit 127).
    ProgramNotFound,
    /// The program exists but cannot be run (exec: Docker's exit 126).
    NotExecutable,
    /// Anything else (Docker: 500, exit 128).
    Other,
}

/// A failed exchange with a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("the shim did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the shim exited without answering: {0}")]
    Exited(String),
    #[error("talking to the shim: {0}")]
    Io(#[from] std::io::Error),
    #[error("the shim sent an unreadable message {line:?}: {detail}")]
    Unreadable { line: String, detail: String },
    #[error("the shim answered {0:?} out of turn")]
    OutOfTurn(Box<ShimReply>),
    #[error("{message}")]
    Failed {
        message: String,
        cause: FailureCause,
    },
}

/// Writes one message as a JSON line and flushes it.
pub fn send<W: Write, M: Serialize>(out: &mut W, message: &M) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Reads one message; `Ok(None)` at end of file (the other side is gone).
pub fn receive<R: BufRead, M: for<'de> Deserialize<'de>>(
    input: &mut R,
) -> Result<Option<M>, ShimError> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(line.trim_end())
        .map(Some)
        .map_err(|e| ShimError::Unreadable {
            line: line.trim_end().chars().take(200).collect(),
            detail: e.to_string(),
        })
}

/// Sends one message as one packet of a `SOCK_SEQPACKET` socket, with
/// `fd` attached (`SCM_RIGHTS`) if given.
pub fn send_packet<M: Serialize>(
    socket: BorrowedFd<'_>,
    message: &M,
    fd: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let bytes = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    let iov = [std::io::IoSlice::new(&bytes)];
    let fds: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&fds)]
    };
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// Largest packet [`receive_packet`] reads.
const MAX_PACKET: usize = 64 * 1024;

/// Receives one packet: the message and the descriptor sent with it;
/// `Ok(None)` when the other side has closed its end.
pub fn receive_packet<M: for<'de> Deserialize<'de>>(
    socket: BorrowedFd<'_>,
) -> Result<Option<(M, Option<OwnedFd>)>, ShimError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; MAX_PACKET];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (len, fd) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = loop {
            match recvmsg::<()>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other.map_err(std::io::Error::from)?,
            }
        };
        let mut fd = None;
        for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        (msg.bytes, fd)
    };
    if len == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&buf[..len])
        .map(|m| Some((m, fd)))
        .map_err(|e| ShimError::Unreadable {
            line: String::from_utf8_lossy(&buf[..len.min(200)]).into_owned(),
            detail: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<M: Serialize + for<'de> Deserialize<'de>>(m: &M) -> M {
        let mut buf = Vec::new();
        send(&mut buf, m).unwrap();
        assert!(buf.ends_with(b"\n"));
        receive(&mut buf.as_slice()).unwrap().unwrap()
    }

    #[test]
    fn messages_round_trip_as_json_lines() {
        let created = ShimReply::Created {
            init_pid: Pid::new(42).unwrap(),
            shim_pid: Pid::new(41).unwrap(),
        };
        assert_eq!(round_trip(&created), created);
        assert_eq!(round_trip(&ShimCommand::Start), ShimCommand::Start);
        let failed = ShimReply::Failed {
            message: "exec: \"x\": executable file not found in $PATH".into(),
            cause: FailureCause::ProgramNotFound,
        };
        assert_eq!(round_trip(&failed), failed);
    }

    #[test]
    fn packets_carry_a_message_and_a_descriptor() {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        use std::os::fd::AsFd;
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let started = ExecReply::Started {
            pid: Pid::new(9).unwrap(),
        };
        send_packet(a.as_fd(), &started, Some(file.as_fd())).unwrap();
        send_packet(a.as_fd(), &ExecReply::Exited { exit_code: 3 }, None).unwrap();
        let (m, fd) = receive_packet::<ExecReply>(b.as_fd()).unwrap().unwrap();
        assert_eq!(m, started);
        assert!(fd.is_some());
        let (m, fd) = receive_packet::<ExecReply>(b.as_fd()).unwrap().unwrap();
        assert_eq!(m, ExecReply::Exited { exit_code: 3 });
        assert!(fd.is_none());
        drop(a);
        assert!(receive_packet::<ExecReply>(b.as_fd()).unwrap().is_none());
    }

    #[test]
    fn pids_are_positive() {
        for bad in [0, -1, i64::from(i32::MAX) + 1] {
            assert!(Pid::new(bad).is_none(), "{bad}");
        }
        let line = br#"{"reply":"created","init_pid":0,"shim_pid":7}"#;
        let err = receive::<_, ShimReply>(&mut line.as_slice()).unwrap_err();
        assert!(matches!(err, ShimError::Unreadable { .. }), "{err}");
    }

    #[test]
    fn end_of_file_and_garbage() {
        assert!(receive::<_, ShimReply>(&mut b"".as_slice())
            .unwrap()
            .is_none());
        let err = receive::<_, ShimReply>(&mut b"created 1 2\n".as_slice()).unwrap_err();
        assert!(matches!(err, ShimError::Unreadable { .. }));
    }

    #[test]
    fn stored_pids_read_zero_as_none() {
        #[derive(Serialize, Deserialize)]
        struct S {
            #[serde(with = "optional_pid", default)]
            pid: Option<Pid>,
        }
        let s: S = serde_json::from_str(r#"{"pid":0}"#).unwrap();
        assert!(s.pid.is_none());
        let s: S = serde_json::from_str(r#"{"pid":12}"#).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"pid":12}"#);
        let none = S { pid: None };
        assert_eq!(serde_json::to_string(&none).unwrap(), r#"{"pid":0}"#);
    }
}
