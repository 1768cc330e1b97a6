//! `/containers` routes: create, list, inspect, start, stop, kill, wait,
//! attach, logs, remove, prune.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use berth_core::container::detach_keys::{parse_detach_keys, DEFAULT_DETACH_KEYS};
use berth_core::container::jsonlog::{LogEntry, LogReader};
use berth_core::container::options::parse_networking_config;
use berth_core::container::{
    ContainerConfig, ContainerPaths, ContainerRecord, ContainerService, CreateContainer,
    HostConfig, Lifecycle, Status, WaitCondition,
};
use berth_core::image::platform::Platform;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::container_json;
use crate::error::ApiError;
use crate::request::{blocking, json as json_response, read_json, Query};
use crate::streams::{self, StreamFilter};
use crate::version::ApiVersion;
use crate::ApiState;

/// The `Content-Type` of Docker's multiplexed stdout/stderr frames.
const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";
/// The `Content-Type` of a TTY's output, sent as it comes.
const RAW_STREAM: &str = "application/vnd.docker.raw-stream";

/// The create body: `Config` fields at the top level plus `HostConfig`.
#[derive(Debug, Default, serde::Deserialize)]
struct CreateBody {
    #[serde(flatten)]
    config: ContainerConfig,
    #[serde(rename = "HostConfig", default)]
    host_config: Option<HostConfig>,
}

/// `POST /containers/create?name=`
pub async fn create(
    State(state): State<ApiState>,
    Extension(version): Extension<ApiVersion>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalid JSON: got EOF while reading request body",
        ));
    }
    if body.trim_ascii() == b"null" {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container",
        ));
    }
    let mut body: CreateBody = read_json(&headers, &body)?;
    body.config.extra.remove("HostConfig");
    let endpoints = match body.config.extra.remove("NetworkingConfig") {
        Some(networking) => parse_networking_config(&networking)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => Default::default(),
    };
    let host_config = body.host_config.unwrap_or_default();
    check_mount_options_for(version, &host_config)?;
    let query = Query::parse(q.as_deref());
    let platform = match query.get("platform").filter(|p| !p.is_empty()) {
        Some(p) if version >= ApiVersion::new(1, 41) => {
            Some(Platform::parse(p).map_err(ApiError::bad_request)?)
        }
        _ => None,
    };
    let req = CreateContainer {
        name: query.get("name").map(str::to_string),
        platform,
        config: body.config,
        host_config,
        readonly_top_only: version < ApiVersion::new(1, 44),
        endpoints,
    };
    let svc = state.containers.clone();
    let (record, warnings) = blocking(move || svc.create(req).map_err(ApiError::from)).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"Id": record.id, "Warnings": warnings}),
    ))
}

/// Before API 1.44 read-only binds were read-only at their top only and
/// a request could not ask for more: Docker refuses one that does.
fn check_mount_options_for(version: ApiVersion, host: &HostConfig) -> Result<(), ApiError> {
    if version >= ApiVersion::new(1, 44) {
        return Ok(());
    }
    let forced = host
        .mounts
        .iter()
        .flatten()
        .any(|m| m["BindOptions"]["ReadOnlyForceRecursive"].as_bool() == Some(true));
    if forced {
        return Err(ApiError::bad_request(
            "BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer",
        ));
    }
    Ok(())
}

/// `GET /containers/json?all=&filters=`
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let filters = query.filters()?;
    let all = query.bool("all");
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let with_size = query.bool("size");
    let svc = state.containers.clone();
    let items = blocking(move || {
        let mut records = svc.list(all, &filters).map_err(ApiError::from)?;
        records.truncate(limit.unwrap_or(usize::MAX));
        let views = svc.network_views(&records).map_err(ApiError::from)?;
        let view = |id: &str| views.get(id).cloned().unwrap_or_default();
        Ok::<Vec<Value>, ApiError>(if with_size {
            // Sizes walk each writable layer: only when asked for.
            let usage = records.into_iter().map(|r| svc.usage_of(r));
            usage
                .map(|u| container_json::summary_with_size(&u, &view(&u.record.id)))
                .collect()
        } else {
            records
                .iter()
                .map(|r| container_json::summary(r, &view(&r.id)))
                .collect()
        })
    })
    .await?;
    Ok(json_response(StatusCode::OK, &items))
}

/// `POST /containers/prune?filters=` (`until`, `label`, `label!`)
pub async fn prune(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let filters = Query::parse(q.as_deref()).filters()?;
    let svc = state.containers.clone();
    let report = blocking(move || svc.prune(&filters).map_err(ApiError::from)).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"ContainersDeleted": report.deleted, "SpaceReclaimed": report.space_reclaimed}),
    ))
}

/// `GET /containers/{id}/json`
pub async fn inspect(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.containers.clone();
    let (record, paths, view) = blocking(move || {
        let r = svc.resolve(&id).map_err(ApiError::from)?;
        let p = svc.paths(&r.id);
        let mut views = svc.network_views(std::slice::from_ref(&r))?;
        let view = views.remove(&r.id).unwrap_or_default();
        Ok::<_, ApiError>((r, p, view))
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &container_json::inspect(&record, &paths, &view),
    ))
}

/// `POST /containers/{id}/start`
pub async fn start(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.containers.clone();
    blocking(move || svc.start(&id).map_err(ApiError::from)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/stop?t=&signal=`
pub async fn stop(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (timeout, signal) = stop_options(&Query::parse(q.as_deref()))?;
    let svc = state.containers.clone();
    let backups = state.backups.clone();
    blocking(move || {
        // Also when a backup has it stopped already: the user wants it so.
        backups.user_stopped(&id);
        svc.stop(&id, timeout, signal.as_deref())
            .map_err(ApiError::from)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `t=` and `signal=` of stop and restart.
fn stop_options(query: &Query) -> Result<(Option<i64>, Option<String>), ApiError> {
    let timeout = query
        .get("t")
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid value for t: {t}")))
        })
        .transpose()?;
    let signal = query
        .get("signal")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok((timeout, signal))
}

/// `POST /containers/{id}/restart?t=&signal=`
pub async fn restart(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (timeout, signal) = stop_options(&Query::parse(q.as_deref()))?;
    let svc = state.containers.clone();
    blocking(move || svc.restart(&id, timeout, signal.as_deref())).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/rename?name=`
pub async fn rename(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let name = Query::parse(q.as_deref())
        .get("name")
        .unwrap_or_default()
        .to_string();
    let svc = state.containers.clone();
    blocking(move || svc.rename(&id, &name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/kill?signal=`
pub async fn kill(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let signal = Query::parse(q.as_deref())
        .get("signal")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let svc = state.containers.clone();
    let backups = state.backups.clone();
    blocking(move || {
        backups.user_stopped(&id);
        svc.kill(&id, signal.as_deref()).map_err(ApiError::from)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/update`: resources and restart policy.
pub async fn update(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let changes: serde_json::Map<String, Value> = read_json(&headers, &body)?;
    let svc = state.containers.clone();
    blocking(move || svc.update(&id, &changes).map_err(ApiError::from)).await?;
    Ok(json_response(StatusCode::OK, &json!({"Warnings": []})))
}

/// `POST /containers/{id}/pause`
pub async fn pause(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.containers.clone();
    blocking(move || svc.pause(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/resize?h=&w=`
pub async fn resize(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let size = crate::exec::parse_window_size(&Query::parse(q.as_deref()))?;
    let svc = state.containers.clone();
    blocking(move || svc.resize(&id, size)).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /containers/{id}/unpause`
pub async fn unpause(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.containers.clone();
    blocking(move || svc.unpause(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /containers/{id}?force=&v=`
pub async fn remove(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let (force, volumes) = (query.bool("force"), query.bool("v"));
    let svc = state.containers.clone();
    blocking(move || svc.remove(&id, force, volumes).map_err(ApiError::from)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/wait?condition=`: headers at once, the result
/// when the condition is met (the docker CLI starts the container only
/// after the headers arrive).
pub async fn wait(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let condition = WaitCondition::parse(
        Query::parse(q.as_deref())
            .get("condition")
            .unwrap_or_default(),
    )
    .map_err(ApiError::from)?;
    let svc = state.containers.clone();
    let (_, rx) = blocking(move || svc.subscribe(&id).map_err(ApiError::from)).await?;
    let baseline = rx.borrow().clone();
    let body = futures_util::stream::once(async move {
        let code = berth_core::container::wait_for(rx, baseline, condition).await;
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("{{\"StatusCode\":{code}}}\n")))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=`: an HTTP
/// upgrade to a raw connection carrying multiplexed output frames.
pub async fn attach(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    mut req: Request,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let detach_keys = match query.get("detachKeys").filter(|k| !k.is_empty()) {
        Some(keys) => parse_detach_keys(keys).map_err(ApiError::bad_request)?,
        None => DEFAULT_DETACH_KEYS.to_vec(),
    };
    let (record, rx) = subscribe(&state.containers, id).await?;
    let tty = record.config.tty;
    let filter = stream_filter(&query, false, tty);
    let paths = state.containers.paths(&record.id);
    let exits = rx.borrow().exits;
    let stdin = if query.bool("stdin") && record.config.open_stdin {
        let keys = tty.then_some(detach_keys);
        Some(open_stdin(&paths, &rx, exits, keys)?)
    } else {
        None
    };
    let session = AttachSession {
        reader: LogReader::open(&paths.log(), true),
        output: Follow {
            filter,
            lifecycle: rx,
            exits_at_start: exits,
        },
        stream: query_stream(&query),
        stdin,
    };
    session.spawn(hyper::upgrade::on(&mut req));
    Ok(upgrade_response(stream_type(tty)))
}

/// Which streams a request asked for (`stdout=`, `stderr=`), and whether
/// each line carries its timestamp.
fn stream_filter(query: &Query, timestamps: bool, raw: bool) -> StreamFilter {
    StreamFilter {
        stdout: query.bool("stdout"),
        stderr: query.bool("stderr"),
        timestamps,
        raw,
    }
}

/// The `Content-Type` of a container's output: raw with a TTY.
fn stream_type(tty: bool) -> &'static str {
    if tty {
        RAW_STREAM
    } else {
        MULTIPLEXED_STREAM
    }
}

/// Subscribes to the lifecycle of `id` on the blocking pool, so a missing
/// container is an error before any response is sent.
async fn subscribe(
    svc: &Arc<ContainerService>,
    id: String,
) -> Result<(ContainerRecord, watch::Receiver<Lifecycle>), ApiError> {
    let svc = svc.clone();
    blocking(move || svc.subscribe(&id).map_err(ApiError::from)).await
}

/// Opens the container's stdin FIFO for the attach, with what closes it at
/// the right moment (the lifecycle and the exit count at attach time).
fn open_stdin(
    paths: &ContainerPaths,
    lifecycle: &watch::Receiver<Lifecycle>,
    exits_at_start: u64,
    detach_keys: Option<Vec<u8>>,
) -> Result<streams::StdinPipe, ApiError> {
    let open = |p: PathBuf| {
        tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(p)
    };
    let fifo = paths
        .ready_stdin_fifo()
        .and_then(open)
        .map_err(|e| ApiError::internal(format!("opening stdin: {e}")))?;
    Ok(streams::StdinPipe {
        fifo,
        lifecycle: lifecycle.clone(),
        exits_at_start,
        detach_keys,
    })
}

/// A follow of a container's log: which streams it shows, and the
/// lifecycle that says when the container has exited.
struct Follow {
    filter: StreamFilter,
    lifecycle: watch::Receiver<Lifecycle>,
    exits_at_start: u64,
}

impl Follow {
    /// Sends what `reader` reads into `tx` until the container exits and
    /// the log is drained, or the receiver goes away.
    async fn run(self, reader: LogReader, tx: mpsc::Sender<Bytes>) {
        streams::follow(reader, self.filter, self.lifecycle, self.exits_at_start, tx).await;
    }
}

/// What an attach connection serves once the client has switched protocols.
struct AttachSession {
    /// Opened at the log's end before the `101`, so output written from
    /// the start on (the client starts the container after the upgrade)
    /// is not missed.
    reader: LogReader,
    output: Follow,
    /// `stream=`: whether output frames are sent at all.
    stream: bool,
    stdin: Option<streams::StdinPipe>,
}

impl AttachSession {
    /// Serves the raw connection in the background once the upgrade is done.
    fn spawn(self, on_upgrade: hyper::upgrade::OnUpgrade) {
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let (tx, frames) = mpsc::channel(64);
            if self.stream {
                tokio::spawn(self.output.run(self.reader, tx));
            }
            let io = hyper_util::rt::TokioIo::new(upgraded);
            streams::serve_attach(io, frames, self.stdin).await;
        });
    }
}

/// The `101` that hands the connection over to the attach stream.
fn upgrade_response(content_type: &'static str) -> Response {
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONNECTION, "Upgrade"),
            (header::UPGRADE, "tcp"),
        ],
    )
        .into_response()
}

/// `stream=`: on unless given and false.
fn query_stream(query: &Query) -> bool {
    query.get("stream").is_none() || query.bool("stream")
}

/// `GET /containers/{id}/logs?stdout=&stderr=&follow=&timestamps=&tail=&since=&until=`
pub async fn logs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let mut filter = stream_filter(&query, query.bool("timestamps"), false);
    if !filter.stdout && !filter.stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let window = LogWindow::parse(&query);
    let (record, rx) = subscribe(&state.containers, id).await?;
    filter.raw = record.config.tty;
    let path = state.containers.paths(&record.id).log();
    let keep_following = query.bool("follow") && record.state.status == Status::Running;
    let (tx, frames) = mpsc::channel::<Bytes>(64);
    let exits = rx.borrow().exits;
    let output = Follow {
        filter,
        lifecycle: rx,
        exits_at_start: exits,
    };
    tokio::spawn(send_logs(path, window, output, keep_following, tx));
    Ok(stream_response(frames, stream_type(record.config.tty)))
}

/// The part of a log a logs request asks for.
#[derive(Debug, Clone, Copy)]
struct LogWindow {
    /// `tail=`: the last this many entries; -1 (the default, also for an
    /// unparsable value) is all.
    tail: i64,
    /// `since=`/`until=`: unix seconds; 0 (the default, also for an
    /// unparsable value) is unbounded.
    since: f64,
    until: f64,
}

impl LogWindow {
    /// Reads `tail`, `since` and `until` from the query.
    fn parse(query: &Query) -> Self {
        let number = |key: &str| query.get(key).and_then(|s| s.parse::<f64>().ok());
        LogWindow {
            tail: query
                .get("tail")
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(-1),
            since: number("since").unwrap_or(0.0),
            until: number("until").unwrap_or(0.0),
        }
    }
}

/// Sends the log's entries within `window`, then, when `keep_following`,
/// what the container writes until it exits; stops as soon as the client
/// goes away.
async fn send_logs(
    path: PathBuf,
    window: LogWindow,
    output: Follow,
    keep_following: bool,
    tx: mpsc::Sender<Bytes>,
) {
    let (history, reader) = read_history(path.clone(), window).await;
    for entry in &history {
        if let Some(f) = output.filter.render(entry) {
            if tx.send(f).await.is_err() {
                return;
            }
        }
    }
    if keep_following {
        // Right after the history: nothing written meanwhile is lost.
        output.run(reader, tx).await;
    }
}

/// The log's entries within `window`, read on the blocking pool, and the
/// reader that follows on from them (from the end if that task fails).
async fn read_history(path: PathBuf, window: LogWindow) -> (Vec<LogEntry>, LogReader) {
    let fallback = LogReader::open(&path, true);
    tokio::task::spawn_blocking(move || {
        streams::history_then_follow(&path, window.tail, window.since, window.until)
    })
    .await
    .unwrap_or((Vec::new(), fallback))
}

/// A `200` whose body is the frames arriving on `frames`, until its sender
/// is dropped.
fn stream_response(mut frames: mpsc::Receiver<Bytes>, content_type: &'static str) -> Response {
    let body = futures_util::stream::poll_fn(move |cx| {
        frames
            .poll_recv(cx)
            .map(|f| f.map(Ok::<_, std::convert::Infallible>))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}
