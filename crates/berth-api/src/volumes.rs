//! `/volumes` routes: parse, call the volume service, shape the answer.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use berth_core::volume::CreateRequest;
use bytes::Bytes;

use crate::error::ApiError;
use crate::request::{blocking, json, json_bytes, read_json, Query};
use crate::types::{VolumeCreateBody, VolumeJson, VolumePruneJson};
use crate::version::ApiVersion;
use crate::ApiState;

/// Below this version, prune considers all unused volumes, not only
/// anonymous ones (moby adds `all=true` for older clients).
const PRUNE_ANONYMOUS_ONLY_SINCE: ApiVersion = ApiVersion::new(1, 42);

/// A list this long leaves megabytes freed behind it.
const LARGE_LIST: usize = 10_000;

/// `GET /volumes`
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let filters = Query::parse(q.as_deref()).filters().map_err(|e| {
        ApiError::bad_request(format!("error reading volume filters: {}", e.message))
    })?;
    let svc = state.volumes.clone();
    let (volumes, plugin_warnings) = blocking(move || {
        let mut volumes = svc.list_shared(&filters)?;
        let plugins = svc.check_plugins(&volumes);
        if !plugins.adopted.is_empty() {
            volumes = svc.list_shared(&filters)?; // with what was adopted
        }
        Ok::<_, berth_core::volume::VolumeError>((volumes, plugins.warnings))
    })
    .await?;
    let mut warnings = state.volumes.warnings();
    warnings.extend(plugin_warnings);
    let count = volumes.len();
    let warnings = (!warnings.is_empty()).then_some(warnings);
    let mut bytes = crate::volume_list_body::list_body(&volumes, warnings.as_deref());
    bytes.push(b'\n');
    let response = json_bytes(StatusCode::OK, bytes);
    drop(volumes);
    if count >= LARGE_LIST {
        // The rows copied for this answer are free again: give the pages
        // back now rather than at the next periodic release.
        tokio::task::spawn_blocking(berth_core::sys::release_free_memory);
    }
    Ok(response)
}

/// `POST /volumes/create`
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: VolumeCreateBody = read_json(&headers, &body)?;
    let req = CreateRequest {
        name: body.name,
        driver: body.driver.unwrap_or_default(),
        options: body.driver_opts.unwrap_or_default(),
        labels: body.labels.unwrap_or_default(),
    };
    let svc = state.volumes.clone();
    let (volume, _created) = blocking(move || svc.create(req)).await?;
    Ok(json(StatusCode::CREATED, &VolumeJson::from(volume)))
}

/// `GET /volumes/{name}`
pub async fn inspect(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.volumes.clone();
    let backups = state.backups.clone();
    // A local volume is answered from memory and one stat: no thread hop
    // (a median inspect went from 0.078 to 0.055 ms, BENCHMARKS.md).
    // Others (a plugin's Get is a call; a thin volume's status reads the
    // mount table) go to a blocking thread.
    let quick = svc.get_is_quick(&name);
    let work = move || {
        let volume = svc.get(&name)?;
        let schedule = backups.schedule(&name);
        Ok::<_, ApiError>((volume, schedule))
    };
    let (mut volume, schedule) = match quick {
        true => work()?,
        false => blocking(work).await?,
    };
    if let Some(s) = schedule {
        let status = volume.status.get_or_insert_with(Default::default);
        status.insert("BackupSchedule".into(), crate::backups::schedule_json(&s));
    }
    Ok(json(StatusCode::OK, &VolumeJson::from(volume)))
}

/// `DELETE /volumes/{name}?force=`
pub async fn remove(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let force = Query::parse(q.as_deref()).bool("force");
    let svc = state.volumes.clone();
    blocking(move || svc.remove(&name, force)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /volumes/prune`
pub async fn prune(
    State(state): State<ApiState>,
    Extension(version): Extension<ApiVersion>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let mut filters = Query::parse(q.as_deref()).filters()?;
    if version < PRUNE_ANONYMOUS_ONLY_SINCE {
        let all = filters.entry("all".into()).or_default();
        if !all.iter().any(|v| v == "true") {
            all.push("true".into());
        }
    }
    let svc = state.volumes.clone();
    let report = blocking(move || svc.prune(&filters)).await?;
    Ok(json(StatusCode::OK, &VolumePruneJson::from(report)))
}
