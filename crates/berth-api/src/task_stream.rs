//! A response made of the events a blocking task sends over a channel
//! (clone progress, volume export). The first event is awaited before
//! anything is answered, so a task that fails before it produces anything
//! gets its own status code; the rest become the body as they come.

use std::task::Poll;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::ApiError;

/// Answers with `rx`'s events. `early` turns a first event that is a
/// failure into the error answered instead. `render` makes body items:
/// it sees `None` when the task's channel closed, an item that is not
/// `Some(Ok(_))` ends the body after it.
pub async fn respond_with_events<E, F>(
    mut rx: mpsc::Receiver<E>,
    early: impl FnOnce(E) -> Result<E, ApiError>,
    content_type: &'static str,
    mut render: F,
) -> Result<Response, ApiError>
where
    E: Send + 'static,
    F: FnMut(Option<E>) -> Option<std::io::Result<Bytes>> + Send + 'static,
{
    let first = match rx.recv().await {
        Some(event) => early(event)?,
        None => return Err(ApiError::internal("the task ended without a result")),
    };
    let mut pending = Some(first);
    let mut ended = false;
    let body = futures_util::stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        let event = match pending.take() {
            Some(event) => Poll::Ready(Some(event)),
            None => rx.poll_recv(cx),
        };
        event.map(|e| {
            let item = render(e);
            ended = !matches!(item, Some(Ok(_)));
            item
        })
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}
