//! `/containers` routes: create, list, inspect, start, stop, kill, wait,
//! attach, logs, remove, prune.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::container::jsonlog::LogReader;
use berth_core::container::{
    ContainerConfig, ContainerService, CreateContainer, HostConfig, Status, WaitCondition,
};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::container_json;
use crate::error::ApiError;
use crate::request::{blocking, json as json_response, read_json, Query};
use crate::streams::{self, StreamFilter};
use crate::ApiState;

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
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalid JSON: got EOF while reading request body",
        ));
    }
    let mut body: CreateBody = read_json(&headers, &body)?;
    body.config.extra.remove("HostConfig");
    body.config.extra.remove("NetworkingConfig");
    if body.config.tty {
        return Err(ApiError::bad_request(
            "berth does not support a TTY yet (-t): run without -t",
        ));
    }
    let req = CreateContainer {
        name: Query::parse(q.as_deref()).get("name").map(str::to_string),
        config: body.config,
        host_config: body.host_config.unwrap_or_default(),
    };
    let svc = state.containers.clone();
    let (record, warnings) = blocking(move || svc.create(req).map_err(ApiError::from)).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"Id": record.id, "Warnings": warnings}),
    ))
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
        let records = svc.list(all, &filters).map_err(ApiError::from)?;
        let records = records.into_iter().take(limit.unwrap_or(usize::MAX));
        Ok::<Vec<Value>, ApiError>(if with_size {
            // Sizes walk each writable layer: only when asked for.
            let usage = records.map(|r| svc.usage_of(r));
            usage
                .map(|u| container_json::summary_with_size(&u))
                .collect()
        } else {
            records.map(|r| container_json::summary(&r)).collect()
        })
    })
    .await?;
    Ok(json_response(StatusCode::OK, &items))
}

/// `POST /containers/prune`
pub async fn prune(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let svc = state.containers.clone();
    let report = blocking(move || svc.prune().map_err(ApiError::from)).await?;
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
    let (record, paths) = blocking(move || {
        let r = svc.resolve(&id).map_err(ApiError::from)?;
        let p = svc.paths(&r.id);
        Ok::<_, ApiError>((r, p))
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &container_json::inspect(&record, &paths),
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
    let query = Query::parse(q.as_deref());
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
    let svc = state.containers.clone();
    blocking(move || {
        svc.stop(&id, timeout, signal.as_deref())
            .map_err(ApiError::from)
    })
    .await?;
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
    blocking(move || svc.kill(&id, signal.as_deref()).map_err(ApiError::from)).await?;
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
    let filter = StreamFilter {
        stdout: query.bool("stdout"),
        stderr: query.bool("stderr"),
        timestamps: false,
    };
    let svc: Arc<ContainerService> = state.containers.clone();
    let (record, rx) = blocking({
        let svc = svc.clone();
        move || svc.subscribe(&id).map_err(ApiError::from)
    })
    .await?;
    let paths = svc.paths(&record.id);
    let exits = rx.borrow().exits;
    let stdin = if query.bool("stdin") && record.config.open_stdin {
        let open = |p: std::path::PathBuf| {
            tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(p)
        };
        let fifo = paths
            .ready_stdin_fifo()
            .and_then(open)
            .map_err(|e| ApiError::internal(format!("opening stdin: {e}")))?;
        Some(streams::StdinPipe {
            fifo,
            lifecycle: rx.clone(),
            exits_at_start: exits,
        })
    } else {
        None
    };
    let reader = LogReader::open(&paths.log(), true);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let (tx, frames) = mpsc::channel(64);
        if query_stream(&query) {
            tokio::spawn(streams::follow(reader, filter, rx, exits, tx));
        }
        streams::serve_attach(hyper_util::rt::TokioIo::new(upgraded), frames, stdin).await;
    });
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (
                header::CONTENT_TYPE,
                "application/vnd.docker.multiplexed-stream",
            ),
            (header::CONNECTION, "Upgrade"),
            (header::UPGRADE, "tcp"),
        ],
    )
        .into_response())
}

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
    let filter = StreamFilter {
        stdout: query.bool("stdout"),
        stderr: query.bool("stderr"),
        timestamps: query.bool("timestamps"),
    };
    if !filter.stdout && !filter.stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = query
        .get("tail")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(-1);
    let since = query
        .get("since")
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0);
    let until = query
        .get("until")
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0);
    let svc = state.containers.clone();
    let (record, rx) = blocking(move || svc.subscribe(&id).map_err(ApiError::from)).await?;
    let path = state.containers.paths(&record.id).log();
    let follow = query.bool("follow") && record.state.status == Status::Running;
    let (tx, mut frames) = mpsc::channel::<Bytes>(64);
    let exits = rx.borrow().exits;
    tokio::spawn(async move {
        let old = tokio::task::spawn_blocking({
            let path = path.clone();
            move || streams::history(&path, tail, since, until)
        })
        .await
        .unwrap_or_default();
        for entry in &old {
            if let Some(f) = filter.render(entry) {
                if tx.send(f).await.is_err() {
                    return;
                }
            }
        }
        if follow {
            streams::follow(LogReader::open(&path, true), filter, rx, exits, tx).await;
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| {
        frames
            .poll_recv(cx)
            .map(|f| f.map(Ok::<_, std::convert::Infallible>))
    });
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/vnd.docker.multiplexed-stream",
        )],
        Body::from_stream(body),
    )
        .into_response())
}
