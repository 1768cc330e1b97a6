//! `HEAD|GET|PUT /containers/{id}/archive` (`docker cp`): parsed into
//! `ContainerService::copy_*` calls; the path's stat travels base64 JSON in
//! `X-Docker-Container-Path-Stat`, as dockerd sends it.

use std::io::Read;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use berth_core::container::copy::{CopyError, PathStat};
use bytes::Bytes;

use crate::error::ApiError;
use crate::request::{blocking, with_upload, Query};
use crate::ApiState;

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";
/// The same, as `HeaderName::from_static` wants it.
const STAT_HEADER_LOWER: &str = "x-docker-container-path-stat";

/// The `path=` of a request (moby: required).
fn path_of(query: &Query) -> Result<String, ApiError> {
    match query.get("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError::bad_request("path cannot be empty")),
    }
}

fn stat_header(stat: &PathStat) -> Result<HeaderValue, ApiError> {
    let json = serde_json::to_vec(stat).map_err(|e| ApiError::internal(e.to_string()))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    HeaderValue::from_str(&encoded).map_err(|e| ApiError::internal(e.to_string()))
}

/// `HEAD /containers/{id}/archive?path=`
pub async fn stat(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let path = path_of(&Query::parse(q.as_deref()))?;
    let svc = state.containers.clone();
    let stat = blocking(move || svc.copy_stat(&id, &path)).await?;
    Ok(([(STAT_HEADER, stat_header(&stat)?)], StatusCode::OK).into_response())
}

/// `GET /containers/{id}/archive?path=`: the tar, streamed as the helper
/// writes it.
pub async fn get(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let path = path_of(&Query::parse(q.as_deref()))?;
    let svc = state.containers.clone();
    let (stat, mut stream) = blocking(move || svc.copy_get(&id, &path)).await?;
    let header = stat_header(&stat)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match stream.stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        if let Err(e) = stream.finish() {
            tracing::warn!(error = %e, "copy from a container cut short");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let body = Body::from_stream(crate::streams::receiver_stream(rx));
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-tar"),
            ),
            (header::HeaderName::from_static(STAT_HEADER_LOWER), header),
        ],
        body,
    )
        .into_response())
}

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`
pub async fn put(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let path = path_of(&query)?;
    let keep_kinds = query.bool("noOverwriteDirNonDir");
    let copy_uid_gid = query.bool("copyUIDGID");
    let svc = state.containers.clone();
    with_upload(body, move |reader| {
        svc.copy_put(&id, &path, keep_kinds, copy_uid_gid, reader)
            .map_err(ApiError::from)
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

impl From<CopyError> for ApiError {
    fn from(e: CopyError) -> Self {
        ApiError {
            status: crate::error::status_for(e.kind()),
            message: e.to_string(),
        }
    }
}
