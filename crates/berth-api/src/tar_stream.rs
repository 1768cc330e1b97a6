//! Tar streams written by the core on a blocking thread (a volume's or
//! container's export, `docker save`) into a [`ChannelWriter`] whose
//! chunks become the response body. The response starts with the first
//! bytes, so an error before any (no such volume) keeps its own status
//! code; a failure after them cuts the body short, so the client sees a
//! broken archive, never a whole-looking one. A client that goes away
//! makes the next write fail, which ends the work and releases what it
//! holds (a mount).

use std::fmt::Display;

use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::ApiError;

/// Bytes gathered before a chunk goes to the client.
const CHUNK: usize = 256 * 1024;
/// How long a client may stop reading before the export gives up.
const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

enum ExportEvent<E> {
    Data(Bytes),
    Done(Result<u64, E>),
}

/// A blocking `Write` whose bytes go to the response, a chunk at a time.
pub struct ChannelWriter<E> {
    runtime: tokio::runtime::Handle,
    tx: mpsc::Sender<ExportEvent<E>>,
    buffer: Vec<u8>,
}

impl<E> ChannelWriter<E> {
    /// Hands the buffered bytes to the response.
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        send_within(&self.runtime, &self.tx, ExportEvent::Data(chunk))
    }
}

/// Sends `event`, waiting at most [`STALL_LIMIT`] for room: a client that
/// stops reading ends the export (its mount would otherwise be held, and
/// the volume kept in use, for ever). Runs on a blocking-pool thread, where
/// blocking on the runtime is allowed.
fn send_within<E>(
    runtime: &tokio::runtime::Handle,
    tx: &mpsc::Sender<ExportEvent<E>>,
    event: ExportEvent<E>,
) -> std::io::Result<()> {
    match runtime.block_on(tokio::time::timeout(STALL_LIMIT, tx.send(event))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "the client went away",
        )),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client stopped reading",
        )),
    }
}

impl<E> std::io::Write for ChannelWriter<E> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Runs `work` on a blocking thread with a writer into the response, an
/// `application/x-tar` body. `what` names the work in the log.
pub async fn stream_tar<E, F>(what: String, work: F) -> Result<Response, ApiError>
where
    E: Into<ApiError> + Display + Send + 'static,
    F: FnOnce(ChannelWriter<E>) -> Result<u64, E> + Send + 'static,
{
    stream_body(what, "application/x-tar", work).await
}

/// [`stream_tar`] for a body of another `content_type`.
pub async fn stream_body<E, F>(
    what: String,
    content_type: &'static str,
    work: F,
) -> Result<Response, ApiError>
where
    E: Into<ApiError> + Display + Send + 'static,
    F: FnOnce(ChannelWriter<E>) -> Result<u64, E> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(8);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            runtime: runtime.clone(),
            tx: tx.clone(),
            buffer: Vec::with_capacity(CHUNK),
        };
        let result = work(writer);
        if let Err(e) = &result {
            tracing::warn!("{what} ended early: {e}");
        }
        let _ = send_within(&runtime, &tx, ExportEvent::Done(result));
    });
    let early = |event: ExportEvent<E>| match event {
        ExportEvent::Done(Err(e)) => Err(e.into()),
        event => Ok(event),
    };
    crate::task_stream::respond_with_events(rx, early, content_type, body_item).await
}

/// The body's next item for an event (`None` ends the body as whole).
fn body_item<E: Display>(event: Option<ExportEvent<E>>) -> Option<std::io::Result<Bytes>> {
    match event {
        Some(ExportEvent::Data(bytes)) => Some(Ok(bytes)),
        Some(ExportEvent::Done(Ok(_))) => None,
        // After the first bytes a failure can only cut the stream short,
        // so the client sees a broken archive, never a whole-looking one.
        Some(ExportEvent::Done(Err(e))) => Some(Err(std::io::Error::other(e.to_string()))),
        // The task ended without a result (it panicked): likewise.
        None => Some(Err(std::io::Error::other("the export ended unexpectedly"))),
    }
}
