//! `POST /berth/v1/volumes/{name}/clone?progress=1`: the clone as a stream
//! of JSON lines in Docker's `jsonmessage` shape (what `docker pull`
//! prints from), so a client can draw a progress bar for a local copy.
//!
//! Checks that fail before the copy begins (no such volume, target taken,
//! bad name) still get their own status code: the response starts only
//! when the core reports the copy under way. A client that goes away
//! stops the copy, and the core rolls the new volume back.

use std::time::{Duration, Instant};

use axum::response::Response;
use berth_core::volume::{CloneProgress, Volume, VolumeError, VolumeService};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::progress_json;
use crate::types::VolumeJson;

/// Progress lines are sent at most this often (the last one always).
const REPORT_EVERY: Duration = Duration::from_millis(100);
/// How long the result waits for a client that stopped reading.
const RESULT_WAIT: Duration = Duration::from_secs(300);

enum CloneEvent {
    Progress(CloneProgress),
    Done(Result<Volume, VolumeError>),
}

/// Runs the clone on a blocking thread and answers with its progress.
pub async fn clone_with_progress(
    svc: std::sync::Arc<VolumeService>,
    src: String,
    dst: String,
) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::channel(16);
    let id = dst.clone();
    tokio::task::spawn_blocking(move || run_clone(&svc, &src, &dst, tx));
    let early = |event| match event {
        CloneEvent::Done(Err(e)) => Err(ApiError::from(e)),
        event => Ok(event),
    };
    let render = move |event: Option<CloneEvent>| event.map(|e| Ok(line(&id, e)));
    crate::task_stream::respond_with_events(rx, early, "application/json", render).await
}

fn run_clone(svc: &VolumeService, src: &str, dst: &str, tx: mpsc::Sender<CloneEvent>) {
    let mut last_sent: Option<Instant> = None;
    let result = svc.clone_volume_with_progress(src, dst, &mut |p| {
        let started = p.current == 0;
        if !started && last_sent.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return Ok(());
        }
        // Never block the copy on a slow reader (it holds both volumes'
        // locks): a report that does not fit is dropped; a closed channel
        // (the client went away) ends the copy.
        match tx.try_send(CloneEvent::Progress(p)) {
            Ok(()) => {
                last_sent = Some(Instant::now());
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(std::io::Error::other("the client went away"))
            }
        }
    });
    if let Err(e) = &result {
        tracing::warn!(src, dst, "clone failed and was rolled back: {e}");
    }
    send_result(&tx, CloneEvent::Done(result));
}

/// Sends the final event, giving a client that stopped reading
/// [`RESULT_WAIT`] to make room (the clone itself is over either way).
fn send_result(tx: &mpsc::Sender<CloneEvent>, mut event: CloneEvent) {
    let deadline = Instant::now() + RESULT_WAIT;
    while let Err(mpsc::error::TrySendError::Full(back)) = tx.try_send(event) {
        if Instant::now() >= deadline {
            return;
        }
        event = back;
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One JSON line: progress, the cloned volume (`aux`), or the error.
fn line(id: &str, event: CloneEvent) -> Bytes {
    let value = match event {
        CloneEvent::Progress(p) => progress_json::bytes_done("Copying", id, p.current, p.total),
        CloneEvent::Done(Ok(volume)) => json!({
            "status": "Cloned",
            "id": id,
            "aux": VolumeJson::from(volume),
        }),
        CloneEvent::Done(Err(e)) => progress_json::error(&e.to_string()),
    };
    progress_json::line(&value)
}
