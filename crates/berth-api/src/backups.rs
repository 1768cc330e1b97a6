//! berth's backup API, under `/berth/v1` (in `openapi.yaml`): repositories,
//! backups of volumes, the list of backups, restore, forget, prune, check.
//! Handlers only parse; the work is `berth_core::backup`'s, off the async
//! workers (every call into the repository library blocks).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::backup::{AddRepo, KeepRules, Progress, RepoRecord, RepoSecrets};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::request::{blocking, json, read_json, Query};
use crate::types::VolumeJson;
use crate::ApiState;

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct SecretsBody {
    password: String,
    options: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct AddRepoBody {
    name: String,
    url: String,
    options: BTreeMap<String, String>,
    secrets: SecretsBody,
    init: bool,
}

/// A repository as the API shows it: never a secret, only which secret
/// options are set.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RepoJson {
    name: String,
    url: String,
    kind: &'static str,
    options: BTreeMap<String, String>,
    secret_options: Vec<String>,
    repository_id: String,
    created_at: String,
}

impl From<RepoRecord> for RepoJson {
    fn from(r: RepoRecord) -> Self {
        let kind = match r.location {
            berth_core::backup::Location::Local { .. } => "local",
            berth_core::backup::Location::S3 { .. } => "s3",
            berth_core::backup::Location::Sftp { .. } => "sftp",
        };
        RepoJson {
            name: r.name,
            url: r.url,
            kind,
            options: r.options,
            secret_options: r.secret_options,
            repository_id: r.repository_id,
            created_at: crate::types::rfc3339_local(r.created_at),
        }
    }
}

/// `POST /berth/v1/backup/repos` `{"Name", "Url", "Options", "Secrets": {"Password", "Options"}, "Init"}`
pub async fn add_repo(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: AddRepoBody = read_json(&headers, &body)?;
    let req = AddRepo {
        name: body.name,
        url: body.url,
        options: body.options,
        secrets: RepoSecrets {
            password: body.secrets.password,
            options: body.secrets.options,
        },
        init: body.init,
    };
    let svc = state.backups.clone();
    let record = blocking(move || svc.add_repo(req)).await?;
    Ok(json(StatusCode::CREATED, &RepoJson::from(record)))
}

/// `GET /berth/v1/backup/repos`
pub async fn repos(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let svc = state.backups.clone();
    let list = blocking(move || svc.repos()).await?;
    let list: Vec<RepoJson> = list.into_iter().map(RepoJson::from).collect();
    Ok(json(StatusCode::OK, &list))
}

/// `GET /berth/v1/backup/repos/{name}`
pub async fn repo(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.backups.clone();
    let record = blocking(move || svc.repo(&name)).await?;
    Ok(json(StatusCode::OK, &RepoJson::from(record)))
}

/// `DELETE /berth/v1/backup/repos/{name}`: forgets the record only.
pub async fn remove_repo(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.backups.clone();
    let missing = name.clone();
    if !blocking(move || svc.remove_repo(&name)).await? {
        return Err(berth_core::backup::BackupError::NoSuchRepo(missing).into());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct BackupBody {
    repo: String,
    tags: Vec<String>,
    stop_containers: bool,
}

/// `POST /berth/v1/volumes/{name}/backup[?progress=1]` `{"Repo", "Tags"}`
pub async fn backup(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: BackupBody = read_json(&headers, &body)?;
    if body.repo.is_empty() {
        return Err(ApiError::bad_request("backup needs a Repo"));
    }
    let svc = state.backups.clone();
    let progress = Arc::new(Progress::default());
    let shared = progress.clone();
    let id = name.clone();
    let request = berth_core::backup::BackupRequest {
        tags: body.tags,
        stop_containers: body.stop_containers,
    };
    let work = move || svc.backup(&name, &body.repo, &request, shared);
    if Query::parse(q.as_deref()).bool("progress") {
        return crate::backup_progress::respond(id, "Backing up", progress, work).await;
    }
    let report = crate::backup_progress::run(progress, work).await?;
    Ok(json(StatusCode::CREATED, &report))
}

/// `GET /berth/v1/backups?repo=&volume=`
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let repo = q.get("repo").filter(|r| !r.is_empty()).map(str::to_string);
    let volume = q
        .get("volume")
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let svc = state.backups.clone();
    let list = blocking(move || svc.backups(repo.as_deref(), volume.as_deref())).await?;
    Ok(json(StatusCode::OK, &list))
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct RestoreBody {
    repo: String,
    snapshot: String,
    volume: Option<String>,
}

/// `POST /berth/v1/backups/restore[?progress=1]` `{"Repo", "Snapshot", "Volume"}`
pub async fn restore(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: RestoreBody = read_json(&headers, &body)?;
    if body.repo.is_empty() || body.snapshot.is_empty() {
        return Err(ApiError::bad_request("restore needs a Repo and a Snapshot"));
    }
    let svc = state.backups.clone();
    let progress = Arc::new(Progress::default());
    let shared = progress.clone();
    let id = body.snapshot.clone();
    // An empty name is no name: the backed-up volume's.
    let volume = body.volume.filter(|v| !v.is_empty());
    let work = move || {
        svc.restore(&body.repo, &body.snapshot, volume.as_deref(), shared)
            .map(VolumeJson::from)
    };
    if Query::parse(q.as_deref()).bool("progress") {
        return crate::backup_progress::respond(id, "Restoring", progress, work).await;
    }
    let volume = crate::backup_progress::run(progress, work).await?;
    Ok(json(StatusCode::CREATED, &volume))
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct ForgetBody {
    volume: Option<String>,
    keep: KeepRules,
}

/// `POST /berth/v1/backup/repos/{name}/forget` `{"Volume", "Keep": {"Last", "Daily", ...}}`
pub async fn forget(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: ForgetBody = read_json(&headers, &body)?;
    let svc = state.backups.clone();
    let report = blocking(move || svc.forget(&name, body.volume.as_deref(), &body.keep)).await?;
    Ok(json(StatusCode::OK, &report))
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct PruneBody {
    instant: bool,
}

/// `POST /berth/v1/backup/repos/{name}/prune` `{"Instant"}`
pub async fn prune(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: PruneBody = read_json(&headers, &body)?;
    let svc = state.backups.clone();
    let report = blocking(move || svc.prune(&name, body.instant)).await?;
    Ok(json(StatusCode::OK, &report))
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct CheckBody {
    read_data: bool,
}

/// `POST /berth/v1/backup/repos/{name}/check` `{"ReadData"}`
pub async fn check(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: CheckBody = read_json(&headers, &body)?;
    let svc = state.backups.clone();
    let report = blocking(move || svc.check(&name, body.read_data)).await?;
    Ok(json(StatusCode::OK, &report))
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct ScheduleBody {
    repo: String,
    every: Option<String>,
    cron: Option<String>,
    keep: Option<KeepRules>,
    tags: Vec<String>,
    stop_containers: bool,
}

/// A schedule as the API shows it (times in RFC 3339).
pub fn schedule_json(s: &berth_core::backup::Schedule) -> serde_json::Value {
    use berth_core::backup::When;
    let time = crate::types::rfc3339_local;
    let (every, cron) = match &s.when {
        When::Every(secs) => (Some(*secs), None),
        When::Cron(pattern) => (None, Some(pattern.clone())),
    };
    let last = s.last_run.as_ref().map(|l| {
        serde_json::json!({
            "Started": time(l.started), "Finished": time(l.finished),
            "Snapshot": l.snapshot, "Error": l.error,
        })
    });
    serde_json::json!({
        "Volume": s.volume, "Repo": s.repo, "EverySeconds": every, "Cron": cron,
        "Keep": s.keep, "Tags": s.tags, "StopContainers": s.stop_containers,
        "NextRun": time(s.next_run), "LastRun": last, "Failures": s.failures,
    })
}

/// `PUT /berth/v1/volumes/{name}/backup-schedule` `{"Repo", "Every" | "Cron", "Keep", "Tags", "StopContainers"}`
pub async fn set_schedule(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: ScheduleBody = read_json(&headers, &body)?;
    let req = berth_core::backup::ScheduleRequest {
        repo: body.repo,
        every: body.every,
        cron: body.cron,
        keep: body.keep,
        tags: body.tags,
        stop_containers: body.stop_containers,
    };
    let svc = state.backups.clone();
    let schedule = blocking(move || svc.set_schedule(&name, req)).await?;
    Ok(json(StatusCode::OK, &schedule_json(&schedule)))
}

/// `GET /berth/v1/volumes/{name}/backup-schedule`
pub async fn schedule(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match state.backups.schedule(&name) {
        Some(s) => Ok(json(StatusCode::OK, &schedule_json(&s))),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("volume {name} has no backup schedule"),
        }),
    }
}

/// `DELETE /berth/v1/volumes/{name}/backup-schedule`
pub async fn remove_schedule(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.backups.clone();
    let missing = name.clone();
    if !blocking(move || svc.remove_schedule(&name)).await? {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("volume {missing} has no backup schedule"),
        });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
