//! A long backup operation (backup, restore) answered as a stream of JSON
//! lines in Docker's `jsonmessage` shape, like clone's: progress lines
//! (`progressDetail` current/total bytes) while it runs, then the result
//! (`aux`) or the error. Checks that fail before data moves still get their
//! own status code. A client that goes away cancels the operation, with or
//! without the stream ([`run`]).

use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use berth_core::backup::{BackupError, Progress};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::progress_json;

const REPORT_EVERY: Duration = Duration::from_millis(200);

enum Event<T> {
    Progress { current: u64, total: u64 },
    Done(Result<T, BackupError>),
}

/// Runs `work` on a blocking thread, reporting `progress`.
pub async fn respond<T, F>(
    id: String,
    status: &'static str,
    progress: Arc<Progress>,
    work: F,
) -> Result<Response, ApiError>
where
    T: Serialize + Send + 'static,
    F: FnOnce() -> Result<T, BackupError> + Send + 'static,
{
    let (done_tx, done_rx) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let _ = done_tx.send(work());
    });
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(report(progress, done_rx, tx));
    let early = |event| match event {
        Event::Done(Err(e)) => Err(ApiError::from(e)),
        event => Ok(event),
    };
    let render = move |event: Option<Event<T>>| event.map(|e| Ok(line(&id, status, e)));
    crate::task_stream::respond_with_events(rx, early, "application/json", render).await
}

/// Sends progress every [`REPORT_EVERY`] once the operation has started,
/// then its result; cancels it when the client has gone.
async fn report<T>(
    progress: Arc<Progress>,
    mut done: oneshot::Receiver<Result<T, BackupError>>,
    tx: mpsc::Sender<Event<T>>,
) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        tokio::select! {
            result = &mut done => {
                let result = result.unwrap_or(Err(BackupError::Cancelled));
                let _ = tx.send(Event::Done(result)).await;
                return;
            }
            _ = tick.tick() => {
                if !progress.is_started() {
                    continue;
                }
                let current = progress.done.load(std::sync::atomic::Ordering::Relaxed);
                let total = progress.total.load(std::sync::atomic::Ordering::Relaxed);
                if tx.send(Event::Progress { current, total }).await.is_err() {
                    progress.cancel();
                }
            }
        }
    }
}

/// Runs `work` on a blocking thread and answers its result in one piece
/// (no progress stream); a client that goes away meanwhile (the request's
/// future is dropped) cancels it, as closing the stream does.
pub async fn run<T, F>(progress: Arc<Progress>, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BackupError> + Send + 'static,
{
    /// Cancels the operation unless disarmed (taken) when it has ended.
    struct CancelOnDrop(Option<Arc<Progress>>);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            if let Some(progress) = self.0.take() {
                tracing::info!("the client went away: cancelling its backup or restore");
                progress.cancel();
            }
        }
    }
    let mut armed = CancelOnDrop(Some(progress));
    let result = crate::request::blocking(work).await;
    armed.0 = None;
    result
}

fn line<T: Serialize>(id: &str, status: &str, event: Event<T>) -> Bytes {
    let value = match event {
        Event::Progress { current, total } => progress_json::bytes_done(status, id, current, total),
        Event::Done(Ok(result)) => json!({"status": "Done", "id": id, "aux": result}),
        Event::Done(Err(e)) => progress_json::error(&e.to_string()),
    };
    progress_json::line(&value)
}
