//! `GET /berth/v1/volumes/{name}/export`: a volume's contents as a tar
//! stream (`podman volume export`); `POST …/import`: a tar stream (plain,
//! gzip or zstd) merged into the volume (`podman volume import`).
//! The export streams through [`crate::tar_stream`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_core::volume::VolumeService;

use crate::error::ApiError;
use crate::ApiState;

/// `GET /berth/v1/volumes/{name}/export`
pub async fn export(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let svc: Arc<VolumeService> = state.volumes.clone();
    let what = format!("export of volume {name}");
    crate::tar_stream::stream_tar(what, move |writer| svc.export(&name, writer)).await
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
