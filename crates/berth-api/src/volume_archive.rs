//! `GET /berth/v1/volumes/{name}/export`: a volume's contents as a tar
//! stream (`podman volume export`); `POST …/import`: a tar stream (plain,
//! gzip or zstd) merged into the volume (`podman volume import`).
//! The export streams through [`crate::tar_stream`].

use std::sync::Arc;

use axum::body::Body;
use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::volume::{AnnouncedDigest, CreateRequest, VolumeService};

use crate::error::ApiError;
use crate::request::Query;
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
/// `POST /berth/v1/volumes/{name}/import` (body: the tar stream).
/// `?create=1` makes the volume first when it does not exist, with
/// `driver`, `opts` and `labels` (JSON objects of strings, as the
/// create body's `DriverOpts` and `Labels`): 201 when it was made, 204
/// otherwise; with `exclusive=1` too, an existing volume is a conflict.
/// A request that announces the [`DIGEST_TRAILER`] trailer (`Trailer:
/// Berth-Content-Digest`) is imported only if the digest it sends after
/// the body matches the content received (`volume migrate` does this);
/// the answer then carries the verified digest in that header, so the
/// client knows this daemon checked it (an older one ignores the trailer).
pub async fn import(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let svc = state.volumes.clone();
    // The query is read inside the upload, so a refused one still drains
    // the body: a client still sending gets the 400, not a broken pipe.
    let (made, verified) = upload_checking_digest(body, &headers, move |reader, announced| {
        let query = Query::parse(q.as_deref());
        match parse_import_query(&name, &query)? {
            Some(request) => {
                svc.import_creating(request, reader, query.bool("exclusive"), announced)
            }
            None => svc.import_checked(&name, reader, announced).map(|()| false),
        }
        .map_err(ApiError::from)
    })
    .await?;
    let status = if made {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    };
    Ok(answer_verified(status, &verified))
}

/// Runs `read_upload` on the request body as [`crate::request::with_upload`]
/// does, giving it the digest the request announces as a trailer (if it
/// does); returns its result and where the digest is kept once read, for
/// [`answer_verified`].
pub(crate) async fn upload_checking_digest<T, F>(
    body: Body,
    headers: &HeaderMap,
    read_upload: F,
) -> Result<(T, VerifiedSlot), ApiError>
where
    F: FnOnce(&mut dyn std::io::Read, Option<AnnouncedDigest>) -> Result<T, ApiError>
        + Send
        + 'static,
    T: Send + 'static,
{
    let verify = announces_digest(headers);
    let verified = VerifiedSlot::default();
    let seen = verified.clone();
    let done = crate::request::with_upload_and_trailers(body, move |reader, trailers| {
        read_upload(reader, verify.then(|| announced_digest(trailers, seen)))
    })
    .await?;
    Ok((done, verified))
}

/// The answer to an upload, echoing the digest it verified (if any).
pub(crate) fn answer_verified(status: StatusCode, verified: &VerifiedSlot) -> Response {
    let mut response = status.into_response();
    if let Some(digest) = verified.lock().take().and_then(|d| d.parse().ok()) {
        response.headers_mut().insert(DIGEST_TRAILER, digest);
    }
    response
}

/// Where the digest an upload announced is kept once read.
pub(crate) type VerifiedSlot = std::sync::Arc<parking_lot::Mutex<Option<String>>>;

/// The trailer field that carries an upload's content digest
/// (`sha256:<hex>` of the uncompressed tar stream).
pub const DIGEST_TRAILER: &str = "berth-content-digest";

/// Whether the request's `Trailer` header names [`DIGEST_TRAILER`].
fn announces_digest(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::TRAILER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|field| field.trim().eq_ignore_ascii_case(DIGEST_TRAILER))
}

/// Reads the digest from the trailers once the body has ended, keeping a
/// copy in `seen` for the answer (only a success sends it back).
fn announced_digest(trailers: crate::request::TrailerSlot, seen: VerifiedSlot) -> AnnouncedDigest {
    Box::new(move || {
        let fields = trailers.lock().take()?;
        let value = fields.get(DIGEST_TRAILER)?.to_str().ok()?.to_string();
        *seen.lock() = Some(value.clone());
        Some(value)
    })
}

/// The volume to make when the import asks for it (`create=1`).
pub fn parse_import_query(name: &str, query: &Query) -> Result<Option<CreateRequest>, ApiError> {
    if !query.bool("create") {
        if ["driver", "opts", "labels", "exclusive"]
            .iter()
            .any(|k| query.get(k).is_some())
        {
            return Err(ApiError::bad_request(
                "driver, opts, labels and exclusive go with create=1",
            ));
        }
        return Ok(None);
    }
    let map = |key: &str| -> Result<BTreeMap<String, String>, ApiError> {
        match query.get(key) {
            None | Some("") => Ok(BTreeMap::new()),
            Some(raw) => serde_json::from_str(raw).map_err(|e| {
                ApiError::bad_request(format!("{key} must be a JSON object of strings: {e}"))
            }),
        }
    };
    Ok(Some(CreateRequest {
        name: Some(name.to_string()),
        driver: query.get("driver").unwrap_or_default().to_string(),
        options: map("opts")?,
        labels: map("labels")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_trailer_is_announced_in_any_case_and_list() {
        let mut h = HeaderMap::new();
        assert!(!announces_digest(&h));
        h.append("trailer", "X-Other, Berth-Content-Digest".parse().unwrap());
        assert!(announces_digest(&h));
        let mut other = HeaderMap::new();
        other.append("trailer", "berth-content-digests".parse().unwrap());
        assert!(!announces_digest(&other));
    }

    #[test]
    fn import_query_makes_a_create_request_only_when_asked() {
        let q = |raw: &str| parse_import_query("v", &Query::parse(Some(raw)));
        assert!(q("").unwrap().is_none());
        assert!(q("driver=thin").is_err(), "driver without create");
        assert!(q("exclusive=1").is_err(), "exclusive without create");
        let r = q(
            "create=1&driver=thin&opts=%7B%22size%22%3A%221G%22%7D&labels=%7B%22a%22%3A%22b%22%7D",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.name.as_deref(), Some("v"));
        assert_eq!(r.driver, "thin");
        assert_eq!(r.options.get("size").map(String::as_str), Some("1G"));
        assert_eq!(r.labels.get("a").map(String::as_str), Some("b"));
        assert!(
            q("create=1&opts=%5B1%5D").is_err(),
            "opts must be an object"
        );
        assert!(
            q("create=1&labels=%7B%22a%22%3A1%7D").is_err(),
            "values are strings"
        );
    }
}
