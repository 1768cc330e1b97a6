//! Block-level copies of thin volumes (`volume migrate`):
//! `GET /berth/v1/volumes/{name}/snapshots/{snap}/blocks[?since=B]` sends
//! what snapshot `snap` changed since snapshot `B` (all of it without),
//! as a block stream (`berth_core::archive::block_stream`), with the
//! bytes of data it carries in [`DATA_HEADER`];
//! `POST /berth/v1/volumes/{name}/blocks?snapshot=S[&base=B[&discard_changes=1]][&create=1&driver=…&opts=…&labels=…]`
//! applies one (plain or zstd) all or nothing, keeping snapshot `S` as
//! the base of the next. Digests travel as for import (a trailer, echoed
//! in the 201 when verified).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use berth_core::volume::ReceiveRequest;

use crate::error::ApiError;
use crate::request::{blocking, Query};
use crate::volume_archive::{answer_verified, parse_import_query, upload_checking_digest};
use crate::ApiState;

/// Bytes of data records in the stream being sent (for a progress bar).
pub const DATA_HEADER: &str = "berth-blocks-data";
const CONTENT_TYPE: &str = "application/vnd.berth.blocks";

/// `GET /berth/v1/volumes/{name}/snapshots/{snap}/blocks[?since=B]`
pub async fn send(
    State(state): State<ApiState>,
    Path((name, snap)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let since = query
        .get("since")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let svc = state.volumes.clone();
    let what = format!("block stream of {name}/{snap}");
    let snap_name = snap.clone();
    let source = blocking(move || {
        svc.snapshot_blocks(&name, &snap, since.as_deref())
            .map_err(ApiError::from)
    })
    .await?;
    let data = berth_core::archive::block_stream::data_bytes(&source.changes);
    let mut response = crate::tar_stream::stream_body(what, CONTENT_TYPE, move |mut writer| {
        berth_core::archive::block_stream::write_stream(
            &source.image,
            source.size,
            &source.changes,
            &mut writer,
        )
        .map(|()| data)
        .map_err(|source| berth_core::archive::ArchiveError::Io {
            path: format!("snapshot {snap_name}"),
            source,
        })
    })
    .await?;
    response
        .headers_mut()
        .insert(DATA_HEADER, HeaderValue::from(data));
    Ok(response)
}

/// `POST /berth/v1/volumes/{name}/blocks?snapshot=S…` (body: the stream).
pub async fn receive(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let svc = state.volumes.clone();
    // Parsed inside the upload, so a refused query still drains the body.
    let ((), verified) = upload_checking_digest(body, &headers, move |reader, announced| {
        let request = parse_receive_query(&name, q.as_deref())?;
        svc.receive_blocks(request, reader, announced)
            .map(|_| ())
            .map_err(ApiError::from)
    })
    .await?;
    Ok(answer_verified(StatusCode::CREATED, &verified))
}

/// The receive request a query asks for.
fn parse_receive_query(name: &str, raw: Option<&str>) -> Result<ReceiveRequest, ApiError> {
    let query = Query::parse(raw);
    let snapshot = match query.get("snapshot") {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => return Err(ApiError::bad_request("snapshot is required")),
    };
    let base = query
        .get("base")
        .filter(|b| !b.is_empty())
        .map(str::to_string);
    Ok(ReceiveRequest {
        name: name.to_string(),
        snapshot,
        base,
        create: parse_import_query(name, &query)?,
        discard_changes: query.bool("discard_changes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_needs_a_snapshot_and_takes_create_or_base() {
        assert!(parse_receive_query("v", Some("")).is_err());
        let r = parse_receive_query("v", Some("snapshot=s1&base=s0")).unwrap();
        assert_eq!((r.snapshot.as_str(), r.base.as_deref()), ("s1", Some("s0")));
        assert!(r.create.is_none());
        let r = parse_receive_query("v", Some("snapshot=s1&create=1&driver=thin")).unwrap();
        assert_eq!(r.create.unwrap().driver, "thin");
        assert!(parse_receive_query("v", Some("snapshot=s1&driver=thin")).is_err());
    }
}
