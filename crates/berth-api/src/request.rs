//! Request parsing shared by all handlers: query booleans, the `filters`
//! parameter in both of Docker's encodings, JSON bodies with Docker's
//! Content-Type rules, and running blocking core calls.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::volume::Filters;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// Decoded query string; repeated keys keep their first value.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string (`None` = empty).
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
        Query(pairs)
    }

    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All values of `key`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Docker's `BoolValue`: anything but "", 0, no, false, none (any case,
    /// trimmed) is true; absent is false.
    pub fn bool(&self, key: &str) -> bool {
        let value = self
            .get(key)
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        !matches!(value.as_str(), "" | "0" | "no" | "false" | "none")
    }

    /// The `filters` parameter decoded (see [`decode_filters`]).
    pub fn filters(&self) -> Result<Filters, ApiError> {
        decode_filters(self.get("filters").unwrap_or_default())
    }
}

/// Decodes Docker's filters JSON: `{"k":{"v":true}}` (the docker CLI) or
/// the legacy `{"k":["v"]}` (docker-py). Only keys of the inner map count,
/// whatever their boolean. Malformed input is `invalid filter`.
pub fn decode_filters(raw: &str) -> Result<Filters, ApiError> {
    if raw.is_empty() {
        return Ok(Filters::new());
    }
    if let Ok(map) = serde_json::from_str::<BTreeMap<String, BTreeMap<String, bool>>>(raw) {
        return Ok(map
            .into_iter()
            .map(|(k, v)| (k, v.into_keys().collect()))
            .collect());
    }
    // Values are a set in Docker (`map[string]map[string]bool`): dedupe.
    let legacy = serde_json::from_str::<BTreeMap<String, Vec<String>>>(raw)
        .map_err(|_| ApiError::bad_request("invalid filter"))?;
    Ok(legacy
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.into_iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            )
        })
        .collect())
}

/// Reads a JSON body with moby's `ReadJSON` rules: no Content-Type is fine
/// only for an empty body; otherwise it must be `application/json`. An
/// empty body (or `null`) yields `T::default()`.
pub fn read_json<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    check_json_content_type(headers, body.is_empty())?;
    if body.is_empty() {
        return Ok(T::default());
    }
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    let value = match stream.next() {
        Some(Ok(value)) => value,
        Some(Err(e)) if e.is_eof() => {
            return Err(ApiError::bad_request("invalid JSON: unexpected EOF"))
        }
        Some(Err(e)) => return Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
        None => {
            return Err(ApiError::bad_request(
                "invalid JSON: got EOF while reading request body",
            ))
        }
    };
    if stream.next().is_some() {
        return Err(ApiError::bad_request("unexpected content after JSON"));
    }
    // Go decodes only an object (or null) into a struct; serde would also
    // take an array positionally, so refuse anything else here.
    match value {
        serde_json::Value::Null => Ok(T::default()),
        serde_json::Value::Object(_) => serde_json::from_value(without_nulls(value))
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}"))),
        other => Err(ApiError::bad_request(format!(
            "invalid JSON: cannot unmarshal {} into an object",
            json_kind(&other)
        ))),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Array(_) => "array",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::Bool(_) => "bool",
        _ => "value",
    }
}

fn check_json_content_type(headers: &HeaderMap, empty_body: bool) -> Result<(), ApiError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if ct.is_empty() && empty_body {
        return Ok(());
    }
    let media = ct.split(';').next().unwrap_or_default().trim();
    if media.is_empty() {
        return Err(ApiError::bad_request(format!(
            "malformed Content-Type header ({ct}): mime: no media type"
        )));
    }
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::bad_request(format!(
            "unsupported Content-Type header ({ct}): must be 'application/json'"
        )));
    }
    Ok(())
}

/// Go's reading of `null`: a struct field sent as `null` is left unset,
/// so such members are dropped, at every depth; in a map Go keeps the key
/// with the zero value, so a `null` value in a string map (`Labels`,
/// `DriverOpts`…) becomes `""` and in a set (`Volumes`, `ExposedPorts`)
/// `{}`. Clients (docker-py, compose) send `"Memory": null` and the like.
fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    const STRING_MAPS: [&str; 8] = [
        "Labels",
        "DriverOpts",
        "Options",
        "Sysctls",
        "StorageOpt",
        "Annotations",
        "Tmpfs",
        "Config",
    ];
    const SETS: [&str; 2] = ["Volumes", "ExposedPorts"];
    let zero_for = |key: &str| {
        if STRING_MAPS.contains(&key) {
            Some(Value::String(String::new()))
        } else if SETS.contains(&key) {
            Some(Value::Object(serde_json::Map::new()))
        } else {
            None
        }
    };
    match value {
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| match (zero_for(&k), v) {
                    (Some(zero), Value::Object(map)) => (k, map_with_zeros(map, &zero)),
                    (_, v) => (k, without_nulls(v)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// A map's `null` values replaced by `zero`.
fn map_with_zeros(
    map: serde_json::Map<String, serde_json::Value>,
    zero: &serde_json::Value,
) -> serde_json::Value {
    let entries = map.into_iter().map(|(k, v)| {
        let v = if v.is_null() {
            zero.clone()
        } else {
            without_nulls(v)
        };
        (k, v)
    });
    serde_json::Value::Object(entries.collect())
}

/// Runs a blocking core call on the blocking pool.
pub async fn blocking<T, E, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(Into::into),
        Err(e) => Err(ApiError::internal(format!("internal task failed: {e}"))),
    }
}

/// A JSON response as Docker writes it: `application/json`, a trailing
/// newline, HTML not escaped.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            json_bytes(status, body)
        }
        Err(e) => ApiError::internal(format!("encoding response: {e}")).into_response(),
    }
}

/// A response of JSON already encoded (ending in a newline, as Go's encoder
/// writes).
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// How long an upload may send nothing before it is abandoned: the core
/// call reading it may hold a lock (a volume import holds the volume's).
const UPLOAD_STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// The trailer fields of a request body, there once the body has ended
/// (`None` when it had none).
pub type TrailerSlot = std::sync::Arc<parking_lot::Mutex<Option<axum::http::HeaderMap>>>;

/// The request body as a blocking reader, for core calls on the blocking
/// pool (uploads: image import and load, volume import). A client that
/// sends nothing for [`UPLOAD_STALL_LIMIT`] gets the read failed.
pub fn body_reader(
    body: axum::body::Body,
) -> tokio_util::io::SyncIoBridge<impl tokio::io::AsyncRead + Unpin> {
    body_reader_keeping_trailers(body).0
}

/// [`body_reader`], and where the body's trailer fields land when it ends.
pub fn body_reader_keeping_trailers(
    body: axum::body::Body,
) -> (
    tokio_util::io::SyncIoBridge<impl tokio::io::AsyncRead + Unpin>,
    TrailerSlot,
) {
    let slot = TrailerSlot::default();
    let kept = slot.clone();
    let stream = futures_util::stream::unfold(Some(body), move |state| {
        let kept = kept.clone();
        async move { next_data(state?, &kept).await }
    });
    let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
    (tokio_util::io::SyncIoBridge::new(reader), slot)
}

/// The body's next data frame (trailers are put in `kept` on the way), or
/// its end, or a stall.
async fn next_data(
    mut body: axum::body::Body,
    kept: &TrailerSlot,
) -> Option<(std::io::Result<bytes::Bytes>, Option<axum::body::Body>)> {
    use http_body_util::BodyExt;
    loop {
        let frame = match tokio::time::timeout(UPLOAD_STALL_LIMIT, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => return Some((Err(std::io::Error::other(e)), None)),
            Ok(None) => return None,
            Err(_) => {
                let why = "the client stopped sending";
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, why);
                return Some((Err(e), None));
            }
        };
        match frame.into_data() {
            Ok(data) => return Some((Ok(data), Some(body))),
            Err(other) => {
                if let Ok(trailers) = other.into_trailers() {
                    *kept.lock() = Some(trailers);
                }
            }
        }
    }
}

/// Bytes of an upload read and dropped after an early failure.
pub(crate) const DRAIN_LIMIT: usize = 4 << 20;

/// Runs `read_upload` on the blocking pool with the request body as a
/// reader. When it fails, what is left of the body (up to
/// [`DRAIN_LIMIT`]) is read and dropped before the answer goes out, so a
/// client still sending gets the error response, not a broken connection
/// (Go's server, and so dockerd, drains likewise).
pub async fn with_upload<T, F>(body: axum::body::Body, read_upload: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut dyn std::io::Read) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    with_upload_and_trailers(body, |reader, _| read_upload(reader)).await
}

/// [`with_upload`], with where the body's trailer fields land.
pub async fn with_upload_and_trailers<T, F>(
    body: axum::body::Body,
    read_upload: F,
) -> Result<T, ApiError>
where
    F: FnOnce(&mut dyn std::io::Read, TrailerSlot) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let (mut reader, trailers) = body_reader_keeping_trailers(body);
    blocking(move || {
        let result = read_upload(&mut reader, trailers);
        if result.is_err() {
            let _ = std::io::copy(
                &mut std::io::Read::take(&mut reader, DRAIN_LIMIT as u64),
                &mut std::io::sink(),
            );
        }
        result
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filter_encodings_decode_alike() {
        let new =
            decode_filters(r#"{"label":{"a=b":true,"c":true},"dangling":{"true":true}}"#).unwrap();
        let legacy = decode_filters(r#"{"label":["a=b","c"],"dangling":["true"]}"#).unwrap();
        assert_eq!(new, legacy);
        let dup = decode_filters(r#"{"all":["true","true"]}"#).unwrap();
        assert_eq!(dup["all"], ["true"]);
        assert_eq!(decode_filters("").unwrap(), Filters::new());
        assert_eq!(
            decode_filters("nope").unwrap_err().message,
            "invalid filter"
        );
        assert_eq!(decode_filters(r#"{"a":1}"#).unwrap_err().status, 400);
    }

    #[test]
    fn nulls_read_as_go_reads_them() {
        let v = without_nulls(serde_json::json!({
            "Memory": null, "Image": "x",
            "Labels": {"a": null, "b": "c"},
            "Volumes": {"/d": null},
            "HostConfig": {"PidMode": null, "LogConfig": {"Type": "json-file", "Config": {"k": null}}},
        }));
        assert_eq!(
            v,
            serde_json::json!({
                "Image": "x",
                "Labels": {"a": "", "b": "c"},
                "Volumes": {"/d": {}},
                "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"k": ""}}},
            })
        );
    }

    #[test]
    fn query_bools_follow_docker() {
        let q = Query::parse(Some("a=1&b=False&c=none&d=yes&e=&f=True"));
        assert!(q.bool("a") && q.bool("d") && q.bool("f"));
        assert!(!q.bool("b") && !q.bool("c") && !q.bool("e") && !q.bool("missing"));
    }

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    struct Body {
        #[serde(rename = "Name", default)]
        name: Option<String>,
    }

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if !ct.is_empty() {
            h.insert("content-type", ct.parse().unwrap());
        }
        h
    }

    #[test]
    fn json_bodies_follow_read_json() {
        let ok =
            |ct: &str, body: &str| read_json::<Body>(&headers(ct), &Bytes::from(body.to_string()));
        assert_eq!(ok("", "").unwrap(), Body::default());
        assert_eq!(ok("application/json", "null").unwrap(), Body::default());
        assert_eq!(
            ok(
                "application/json; charset=utf-8",
                r#"{"Name":"x","Other":1}"#
            )
            .unwrap()
            .name
            .as_deref(),
            Some("x")
        );
        assert!(ok("application/json", "{")
            .unwrap_err()
            .message
            .starts_with("invalid JSON"));
        assert_eq!(
            ok("application/json", r#"{"Name":null}"#).unwrap(),
            Body::default()
        );
        assert!(ok("application/json", r#"{"Name":5}"#)
            .unwrap_err()
            .message
            .starts_with("invalid JSON"));
        assert_eq!(
            ok("application/json", "{} {}").unwrap_err().message,
            "unexpected content after JSON"
        );
        assert_eq!(
            ok("text/plain", "{}").unwrap_err().message,
            "unsupported Content-Type header (text/plain): must be 'application/json'"
        );
        assert_eq!(
            ok("", "{}").unwrap_err().message,
            "malformed Content-Type header (): mime: no media type"
        );
    }
}
