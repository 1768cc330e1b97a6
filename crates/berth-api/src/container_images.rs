//! Containers as images and archives: `POST /commit` (`docker commit`),
//! `GET /containers/{id}/changes` (`docker diff`) and `GET
//! /containers/{id}/export` (`docker export`). Each parses the request
//! into one core call.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use berth_core::container::changes::Change;
use berth_core::container::commit::CommitRequest;
use berth_core::container::ContainerConfig;
use berth_core::image::Reference;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::request::{blocking, json, read_json, Query};
use crate::ApiState;

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`
/// (body: an optional container config).
pub async fn commit(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let container = query.get("container").unwrap_or_default().to_string();
    let req = parse_commit(&query, read_json::<Value>(&headers, &body)?)?;
    let svc = state.containers.clone();
    let image = blocking(move || svc.commit(&container, req).map_err(ApiError::from)).await?;
    Ok(json(StatusCode::CREATED, &json!({"Id": image.id})))
}

/// The commit request a query and body stand for.
fn parse_commit(query: &Query, body: Value) -> Result<CommitRequest, ApiError> {
    let reference = match query.get("repo").filter(|r| !r.is_empty()) {
        Some(repo) => Some(Reference::from_parts(
            repo,
            query.get("tag").unwrap_or_default(),
        )?),
        None => None,
    };
    let config: Option<ContainerConfig> = match body {
        Value::Null => None,
        value => Some(
            serde_json::from_value(value)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?,
        ),
    };
    let text = |key: &str| query.get(key).filter(|v| !v.is_empty()).map(str::to_string);
    Ok(CommitRequest {
        reference,
        comment: text("comment"),
        author: text("author"),
        // Docker pauses unless told not to.
        pause: query.get("pause").is_none() || query.bool("pause"),
        changes: query
            .all("changes")
            .into_iter()
            .map(str::to_string)
            .collect(),
        config,
    })
}

/// `GET /containers/{id}/changes`: `null` when nothing changed, as
/// dockerd answers.
pub async fn changes(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.containers.clone();
    let changes = blocking(move || svc.changes(&id).map_err(ApiError::from)).await?;
    Ok(json(StatusCode::OK, &changes_json(&changes)))
}

fn changes_json(changes: &[Change]) -> Value {
    if changes.is_empty() {
        return Value::Null;
    }
    changes
        .iter()
        .map(|c| json!({"Path": c.path, "Kind": c.kind as u8}))
        .collect()
}

/// `GET /containers/{id}/export`: the root filesystem as a tar stream.
pub async fn export(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.containers.clone();
    let what = format!("export of container {id}");
    crate::tar_stream::stream_tar(what, move |writer| svc.export(&id, writer)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_pauses_unless_told_not_to() {
        let req = parse_commit(&Query::parse(Some("container=c")), Value::Null).expect("parsed");
        assert!(req.pause);
        assert!(req.reference.is_none() && req.config.is_none());
        let q = Query::parse(Some(
            "container=c&pause=0&repo=app&tag=v1&changes=ENV+A%3D1&comment=m",
        ));
        let req = parse_commit(&q, json!({"Cmd": ["sh"]})).expect("parsed");
        assert!(!req.pause);
        assert_eq!(
            req.reference.map(|r| r.to_string()).as_deref(),
            Some("app:v1")
        );
        assert_eq!(req.changes, vec!["ENV A=1".to_string()]);
        assert_eq!(req.comment.as_deref(), Some("m"));
        assert_eq!(req.config.and_then(|c| c.cmd), Some(vec!["sh".to_string()]));
    }

    #[test]
    fn a_bad_repository_name_is_refused() {
        let q = Query::parse(Some("container=c&repo=Bad%20Name"));
        assert!(parse_commit(&q, Value::Null).is_err());
    }

    #[test]
    fn no_changes_is_null() {
        assert_eq!(changes_json(&[]), Value::Null);
    }
}
