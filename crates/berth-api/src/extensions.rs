//! berth's own API, under `/berth/v1` (documented in `openapi.yaml` next to
//! this crate): volume snapshots, clone, resize, rename, labels.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::request::{blocking, json, read_json, Query};
use crate::types::{PoolJson, VolumeJson};
use crate::ApiState;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SnapshotBody {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CloneBody {
    target: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ResizeBody {
    size: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RenameBody {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct LabelsBody {
    add: std::collections::BTreeMap<String, String>,
    remove: Vec<String>,
}

/// `GET /berth/v1/volumes/{name}/snapshots`
pub async fn snapshots(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.volumes.clone();
    let list = blocking(move || svc.snapshot_list(&name).map_err(ApiError::from)).await?;
    let items: Vec<_> = list
        .into_iter()
        .map(|s| json!({"Name": s.name, "CreatedAt": crate::types::rfc3339_local(s.created_at), "Allocated": s.allocated}))
        .collect();
    Ok(json(StatusCode::OK, &items))
}

/// `POST /berth/v1/volumes/{name}/snapshots` `{"Name": "…"}` (optional)
pub async fn snapshot_create(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: SnapshotBody = read_json(&headers, &body)?;
    let svc = state.volumes.clone();
    let snap = blocking(move || {
        svc.snapshot_create(&name, body.name.as_deref())
            .map_err(ApiError::from)
    })
    .await?;
    Ok(json(StatusCode::CREATED, &json!({"Name": snap})))
}

/// `DELETE /berth/v1/volumes/{name}/snapshots/{snap}`
pub async fn snapshot_remove(
    State(state): State<ApiState>,
    Path((name, snap)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let svc = state.volumes.clone();
    blocking(move || svc.snapshot_remove(&name, &snap).map_err(ApiError::from)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /berth/v1/volumes/{name}/snapshots/{snap}/restore`
pub async fn snapshot_restore(
    State(state): State<ApiState>,
    Path((name, snap)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let svc = state.volumes.clone();
    blocking(move || svc.snapshot_restore(&name, &snap).map_err(ApiError::from)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /berth/v1/volumes/{name}/clone[?progress=1]` `{"Target": "…"}`
pub async fn clone(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: CloneBody = read_json(&headers, &body)?;
    if body.target.is_empty() {
        return Err(ApiError::bad_request("clone needs a Target volume name"));
    }
    let svc = state.volumes.clone();
    if Query::parse(q.as_deref()).bool("progress") {
        return crate::clone_progress::clone_with_progress(svc, name, body.target).await;
    }
    let volume = blocking(move || {
        svc.clone_volume(&name, &body.target)
            .map_err(ApiError::from)
    })
    .await?;
    Ok(json(StatusCode::CREATED, &VolumeJson::from(volume)))
}

/// `GET /berth/v1/pools`
pub async fn pools(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let svc = state.volumes.clone();
    let pools = blocking(move || Ok::<_, ApiError>(svc.pools())).await?;
    let pools: Vec<PoolJson> = pools.into_iter().map(PoolJson::from).collect();
    Ok(json(StatusCode::OK, &pools))
}

/// `POST /berth/v1/pools/trim`
pub async fn trim(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let svc = state.volumes.clone();
    let trimmed = blocking(move || svc.trim().map_err(ApiError::from)).await?;
    Ok(json(StatusCode::OK, &json!({"Trimmed": trimmed})))
}

/// `POST /berth/v1/volumes/{name}/resize` `{"Size": "20G"}`
pub async fn resize(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: ResizeBody = read_json(&headers, &body)?;
    if body.size.is_empty() {
        return Err(ApiError::bad_request("resize needs a Size such as 20G"));
    }
    let svc = state.volumes.clone();
    let volume = blocking(move || svc.resize(&name, &body.size).map_err(ApiError::from)).await?;
    Ok(json(StatusCode::OK, &VolumeJson::from(volume)))
}

/// `POST /berth/v1/volumes/{name}/rename` `{"Name": "…"}`
pub async fn rename(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: RenameBody = read_json(&headers, &body)?;
    if body.name.is_empty() {
        return Err(ApiError::bad_request("rename needs the new Name"));
    }
    let svc = state.volumes.clone();
    let volume = blocking(move || svc.rename(&name, &body.name).map_err(ApiError::from)).await?;
    Ok(json(StatusCode::OK, &VolumeJson::from(volume)))
}

/// `POST /berth/v1/volumes/{name}/labels` `{"Add": {"k": "v"}, "Remove": ["k2"]}`
pub async fn labels(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: LabelsBody = read_json(&headers, &body)?;
    let svc = state.volumes.clone();
    let volume = blocking(move || {
        svc.update_labels(&name, &body.add, &body.remove)
            .map_err(ApiError::from)
    })
    .await?;
    Ok(json(StatusCode::OK, &VolumeJson::from(volume)))
}
