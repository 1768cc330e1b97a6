//! The I/O of an attached exec once the connection is upgraded: output
//! (pipes or the terminal's master) to the client, raw or in Docker's
//! multiplexed frames; the client's bytes to the process's stdin, through
//! the detach-key scanner with a TTY. The session ends when the output is
//! closed, or [`DRAIN_LIMIT`] after the process ended if something it
//! started still holds the output open, or when the detach keys are typed.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use berth_core::container::detach_keys::{DetachScanner, Scanned};
use berth_core::container::exec::{ExecIo, ExecSession};
use berth_core::container::jsonlog::Stream;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};

use crate::streams::frame;

/// How long output is still forwarded after the process ended.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Once the client has switched protocols, launches the process and
/// serves its session, or writes why it could not start into the stream
/// (as moby does). `raw`: the start asked for `Tty` (no framing).
pub fn spawn<F>(on_upgrade: hyper::upgrade::OnUpgrade, launch: F, raw: bool)
where
    F: FnOnce() -> Result<ExecSession, String> + Send + 'static,
{
    tokio::spawn(async move {
        let upgraded = on_upgrade.await;
        let session = tokio::task::spawn_blocking(launch)
            .await
            .unwrap_or_else(|e| Err(format!("exec start: {e}")));
        let Ok(upgraded) = upgraded else {
            return;
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        match session {
            Ok(session) => serve(io, session, raw).await,
            Err(message) => {
                let (_, mut write) = tokio::io::split(io);
                let text = format!("{message}\r\n");
                let out = if raw {
                    Bytes::from(text)
                } else {
                    frame(Stream::Stdout, text.as_bytes())
                };
                let _ = write.write_all(&out).await;
                let _ = write.shutdown().await;
            }
        }
    });
}

async fn serve<IO>(io: IO, session: ExecSession, raw: bool)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (client_in, mut client_out) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let (detach_tx, detach_rx) = oneshot::channel::<()>();
    let input = match session.io {
        ExecIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            spawn_output(stdout, Stream::Stdout, raw, tx.clone());
            spawn_output(stderr, Stream::Stderr, raw, tx.clone());
            stdin.map(|fd| tokio::spawn(copy_stdin(client_in, fd)))
        }
        ExecIo::Terminal { master } => {
            let keys = session.detach_keys.clone();
            if let Ok(reader) = master.try_clone() {
                spawn_output(reader, Stream::Stdout, raw, tx.clone());
            }
            Some(tokio::spawn(copy_terminal_input(
                client_in, master, keys, detach_tx,
            )))
        }
        ExecIo::Detached => None,
    };
    drop(tx);
    let mut exit = session.exit.clone();
    let detached = crate::streams::detach_keys_typed(detach_rx);
    tokio::pin!(detached);
    let ended = drained_after_exit(session.exit);
    tokio::pin!(ended);
    let mut detaching = false;
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(frame) => if client_out.write_all(&frame).await.is_err() { break },
                None => break,
            },
            _ = &mut detached => { detaching = true; break },
            _ = &mut ended => break,
        }
    }
    if !detaching {
        // The client reads the exit code right after the stream ends (the
        // docker CLI inspects once): it must be recorded by then.
        let _ = exit.wait_for(Option::is_some).await;
    }
    let _ = client_out.shutdown().await;
    if let Some(task) = input {
        task.abort();
    }
}

/// Resolves [`DRAIN_LIMIT`] after the process has ended.
async fn drained_after_exit(mut exit: watch::Receiver<Option<i64>>) {
    let _ = exit.wait_for(Option::is_some).await;
    tokio::time::sleep(DRAIN_LIMIT).await;
}

/// Forwards what `fd` gives until end of file (EIO on a terminal's master
/// whose other side is closed).
fn spawn_output(fd: OwnedFd, stream: Stream, raw: bool, tx: mpsc::Sender<Bytes>) {
    let Ok(mut reader) = nonblocking(fd).and_then(pipe::Receiver::from_owned_fd_unchecked) else {
        return;
    };
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let out = if raw {
                Bytes::copy_from_slice(&buf[..n])
            } else {
                frame(stream, &buf[..n])
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
}

/// The client's bytes into the process's stdin pipe; closing it at the
/// client's end of input gives the process end of file.
async fn copy_stdin<R: AsyncRead + Unpin>(mut client: R, stdin: OwnedFd) {
    let Ok(mut pipe) = pipe::Sender::from_owned_fd(stdin) else {
        return;
    };
    let _ = tokio::io::copy(&mut client, &mut pipe).await;
}

/// The client's keystrokes into the terminal, until the detach keys.
async fn copy_terminal_input<R: AsyncRead + Unpin>(
    mut client: R,
    master: OwnedFd,
    keys: Vec<u8>,
    detach: oneshot::Sender<()>,
) {
    let Ok(mut terminal) = nonblocking(master).and_then(pipe::Sender::from_owned_fd_unchecked)
    else {
        return;
    };
    let mut scanner = DetachScanner::new(keys);
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match scanner.feed(&buf[..n]) {
            Scanned::Forward(bytes) => {
                if terminal.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Scanned::Detach(bytes) => {
                let _ = terminal.write_all(&bytes).await;
                let _ = detach.send(());
                return;
            }
        }
    }
}

/// Sets `O_NONBLOCK` (tokio's pipes need it; a terminal is not a pipe, so
/// the checked constructors would refuse it).
fn nonblocking(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags))?;
    Ok(fd)
}
