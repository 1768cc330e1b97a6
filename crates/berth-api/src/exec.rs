//! `/containers/{id}/exec` and `/exec/{id}/…`: create, start (attached
//! over an HTTP upgrade, or detached), resize, inspect — parsed into
//! `ContainerService::exec_*` calls; the session's I/O is [`crate::exec_io`].

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::container::exec::{ExecInfo, ExecRequest, WindowSize};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::exec_io;
use crate::request::{blocking, json as json_response, read_json, Query};
use crate::ApiState;

/// The create body (moby's `ExecOptions`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecCreateBody {
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    detach_keys: String,
    tty: bool,
    console_size: Option<[u16; 2]>,
    env: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    privileged: bool,
    user: String,
    working_dir: String,
}

/// The start body (moby's `ExecStartOptions`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecStartBody {
    detach: bool,
    tty: bool,
    console_size: Option<[u16; 2]>,
}

/// `ExecInspect`, field for field.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExecInspect {
    #[serde(rename = "ID")]
    id: String,
    running: bool,
    exit_code: Option<i64>,
    process_config: ProcessConfig,
    open_stdin: bool,
    open_stderr: bool,
    open_stdout: bool,
    can_remove: bool,
    #[serde(rename = "ContainerID")]
    container_id: String,
    /// Go's `[]byte`: base64.
    detach_keys: String,
    pid: i64,
}

#[derive(Debug, Serialize)]
struct ProcessConfig {
    tty: bool,
    entrypoint: String,
    arguments: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    privileged: Option<bool>,
    #[serde(skip_serializing_if = "String::is_empty")]
    user: String,
}

fn window_size(size: Option<[u16; 2]>) -> Option<WindowSize> {
    size.map(|[height, width]| WindowSize { height, width })
}

/// `POST /containers/{id}/exec`
pub async fn create(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: ExecCreateBody = read_json(&headers, &body)?;
    let request = ExecRequest {
        cmd: body.cmd.unwrap_or_default(),
        env: body.env.unwrap_or_default(),
        user: body.user,
        working_dir: body.working_dir,
        privileged: body.privileged,
        tty: body.tty,
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        detach_keys: body.detach_keys,
        console_size: window_size(body.console_size),
    };
    let svc = state.containers.clone();
    let exec_id = blocking(move || svc.exec_create(&id, request)).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": exec_id }),
    ))
}

/// `POST /exec/{id}/start`: detached, a 200 once the process runs;
/// attached, the connection is upgraded and carries its streams (raw with
/// `Tty`, multiplexed otherwise). A process that cannot start is reported
/// in the stream, as moby does, and its exec gets exit code 126 or 127.
pub async fn start(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let headers = req.headers().clone();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
    let body: ExecStartBody = read_json(&headers, &bytes)?;
    let size = window_size(body.console_size);
    let svc = state.containers.clone();
    if body.detach {
        blocking(move || svc.exec_start(&id, false, size).map(drop)).await?;
        return Ok(StatusCode::OK.into_response());
    }
    let claimed = {
        let svc = svc.clone();
        blocking(move || svc.exec_claim(&id)).await?
    };
    // Launched only once the client has switched protocols, as dockerd
    // does: output sent with the 101 could be swallowed by a client still
    // reading the response head (docker-py's buffered reader).
    let launch = move || {
        svc.exec_launch(claimed, true, size)
            .map_err(|e| e.to_string())
    };
    exec_io::spawn(on_upgrade, launch, body.tty);
    Ok(upgrade_response(body.tty))
}

fn upgrade_response(tty: bool) -> Response {
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
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

/// `POST /exec/{id}/resize?h=&w=`
pub async fn resize(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let size = parse_window_size(&Query::parse(q.as_deref()))?;
    let svc = state.containers.clone();
    blocking(move || svc.exec_resize(&id, size)).await?;
    Ok(StatusCode::OK.into_response())
}

/// `h` and `w` of a resize, as moby's `strconv.Atoi` reads them.
pub fn parse_window_size(query: &Query) -> Result<WindowSize, ApiError> {
    let number = |key: &str| -> Result<u16, ApiError> {
        let raw = query.get(key).unwrap_or_default();
        raw.parse::<u16>().map_err(|_| {
            ApiError::bad_request(format!("strconv.Atoi: parsing {raw:?}: invalid syntax"))
        })
    };
    Ok(WindowSize {
        height: number("h")?,
        width: number("w")?,
    })
}

/// `GET /exec/{id}/json`
pub async fn inspect(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.containers.clone();
    let info = blocking(move || svc.exec_inspect(&id)).await?;
    Ok(json_response(StatusCode::OK, &exec_inspect(info)))
}

fn exec_inspect(info: ExecInfo) -> ExecInspect {
    use base64::Engine;
    let req = info.request;
    let mut args = req.cmd.into_iter();
    ExecInspect {
        id: info.id,
        running: info.running,
        exit_code: info.exit_code,
        process_config: ProcessConfig {
            tty: req.tty,
            entrypoint: args.next().unwrap_or_default(),
            arguments: args.collect(),
            privileged: Some(req.privileged),
            user: req.user,
        },
        open_stdin: req.attach_stdin,
        open_stderr: req.attach_stderr,
        open_stdout: req.attach_stdout,
        can_remove: false,
        container_id: info.container_id,
        detach_keys: base64::engine::general_purpose::STANDARD.encode(&info.detach_keys),
        pid: info.pid.map_or(0, i64::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_parse() {
        let q = Query::parse(Some("h=40&w=120"));
        assert_eq!(
            parse_window_size(&q).unwrap(),
            WindowSize {
                height: 40,
                width: 120
            }
        );
        for bad in ["h=40", "h=x&w=1", "h=-1&w=2", "h=1&w=70000"] {
            assert!(
                parse_window_size(&Query::parse(Some(bad))).is_err(),
                "{bad}"
            );
        }
    }
}
