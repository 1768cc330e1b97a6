//! `GET /berth/v1/volumes/{name}/export`: a volume's contents as a tar
//! stream (`podman volume export`); `POST …/import`: a tar stream (plain,
//! gzip or zstd) merged into the volume (`podman volume import`).
//!
//! The core writes on a blocking thread into a [`ChannelWriter`]; the
//! response starts with the first bytes, so an error before any (no such
//! volume) keeps its own status code. A client that goes away makes the
//! next write fail, which ends the export and releases its mount.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_core::volume::{VolumeError, VolumeService};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::ApiState;

/// Bytes gathered before a chunk goes to the client.
const CHUNK: usize = 256 * 1024;
/// How long a client may stop reading before the export gives up.
const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

enum ExportEvent {
    Data(Bytes),
    Done(Result<u64, VolumeError>),
}

/// A blocking `Write` whose bytes go to the response, a chunk at a time.
struct ChannelWriter {
    runtime: tokio::runtime::Handle,
    tx: mpsc::Sender<ExportEvent>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
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
fn send_within(
    runtime: &tokio::runtime::Handle,
    tx: &mpsc::Sender<ExportEvent>,
    event: ExportEvent,
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

impl std::io::Write for ChannelWriter {
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

/// `GET /berth/v1/volumes/{name}/export`
pub async fn export(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::channel(8);
    let svc: Arc<VolumeService> = state.volumes.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            runtime: runtime.clone(),
            tx: tx.clone(),
            buffer: Vec::with_capacity(CHUNK),
        };
        let result = svc.export(&name, writer);
        if let Err(e) = &result {
            tracing::warn!(volume = %name, "export ended early: {e}");
        }
        let _ = send_within(&runtime, &tx, ExportEvent::Done(result));
    });
    let early = |event| match event {
        ExportEvent::Done(Err(e)) => Err(ApiError::from(e)),
        event => Ok(event),
    };
    crate::task_stream::respond_with_events(rx, early, "application/x-tar", body_item).await
}

/// `POST /berth/v1/volumes/{name}/import` (body: the tar stream)
pub async fn import(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let svc = state.volumes.clone();
    crate::request::with_upload(body, move |reader| {
        svc.import(&name, reader).map_err(ApiError::from)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The body's next item for an event (`None` ends the body as whole).
fn body_item(event: Option<ExportEvent>) -> Option<std::io::Result<Bytes>> {
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
