//! API versions: the `/vX.Y` path prefix, the supported range, and the
//! middleware that enforces it (moby's `VersionMiddleware`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use tower::Service;

use crate::error::ApiError;

/// An API version `major.minor`, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        ApiVersion { major, minor }
    }

    /// Parses `"1.41"` (a missing minor is 0, as moby's comparison
    /// treats it); `None` if not numbers.
    pub fn parse(s: &str) -> Option<Self> {
        let (major, minor) = s.split_once('.').unwrap_or((s, "0"));
        Some(ApiVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Oldest version served.
pub const MIN_API_VERSION: ApiVersion = ApiVersion::new(1, 24);
/// Newest version served, and the one used when the path has none.
pub const MAX_API_VERSION: ApiVersion = ApiVersion::new(1, 45);

/// Splits `/v1.41/volumes` into `(Some("1.41"), "/volumes")`. The version
/// segment is `v` followed by digits and dots (moby: `[0-9.]+`).
fn split_version(path: &str) -> (Option<&str>, &str) {
    let Some(rest) = path.strip_prefix("/v") else {
        return (None, path);
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let candidate = &rest[..end];
    if !candidate.is_empty() && candidate.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        (Some(candidate), &rest[end..])
    } else {
        (None, path)
    }
}

/// Checks a requested version against the range, with Docker's messages.
fn check_version(raw: &str) -> Result<ApiVersion, ApiError> {
    let version = ApiVersion::parse(raw)
        .ok_or_else(|| ApiError::bad_request(format!("invalid API version: {raw:?}")))?;
    if version < MIN_API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {raw} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if version > MAX_API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {raw} is too new. Maximum supported API version is {MAX_API_VERSION}"
        )));
    }
    Ok(version)
}

/// Strips the version prefix, stores the [`ApiVersion`] as a request
/// extension, and adds Docker's `Api-Version`/`Server`/`Ostype` headers.
fn route_request(req: &mut Request) -> Result<(), ApiError> {
    let (raw, rest) = split_version(req.uri().path());
    let version = match raw {
        // Podman's API carries its own versions (`/v4.0.0/libpod/…`).
        Some(_) if rest.starts_with("/libpod/") => MAX_API_VERSION,
        Some(raw) => check_version(raw)?,
        None => MAX_API_VERSION,
    };
    if raw.is_some() {
        let rest = if rest.is_empty() { "/" } else { rest };
        let new = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        };
        *req.uri_mut() = new
            .parse::<Uri>()
            .map_err(|e| ApiError::bad_request(format!("bad request path: {e}")))?;
    }
    req.extensions_mut().insert(version);
    Ok(())
}

fn add_headers(resp: &mut Response) {
    let headers = resp.headers_mut();
    headers.insert(
        "Api-Version",
        HeaderValue::from_str(&MAX_API_VERSION.to_string()).expect("ascii"),
    );
    let server = format!("berth/{} (linux)", env!("CARGO_PKG_VERSION"));
    headers.insert("Server", HeaderValue::from_str(&server).expect("ascii"));
    headers.insert("Ostype", HeaderValue::from_static("linux"));
}

/// A service wrapped in the version middleware.
#[derive(Clone)]
pub struct Versioned<S> {
    inner: S,
}

impl<S> Versioned<S> {
    pub fn new(inner: S) -> Self {
        Versioned { inner }
    }
}

impl<S> Service<Request> for Versioned<S>
where
    S: Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let routed = match route_request(&mut req) {
            Ok(()) => Ok(req),
            Err(e) => Err((e, req.into_body())),
        };
        // Take the service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut resp = match routed {
                // moby answers OPTIONS on any route with an empty 200.
                Ok(req) if req.method() == axum::http::Method::OPTIONS => {
                    axum::http::StatusCode::OK.into_response()
                }
                Ok(req) => inner.call(req).await?,
                Err((e, body)) => {
                    // Read what the client still sends (bounded) so it gets
                    // this answer, not a broken pipe (Go's server drains too).
                    let _ = axum::body::to_bytes(body, crate::request::DRAIN_LIMIT).await;
                    e.into_response()
                }
            };
            add_headers(&mut resp);
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix_is_split() {
        assert_eq!(split_version("/v1.41/volumes"), (Some("1.41"), "/volumes"));
        assert_eq!(split_version("/volumes"), (None, "/volumes"));
        assert_eq!(split_version("/version"), (None, "/version"));
        assert_eq!(split_version("/v1.45/_ping"), (Some("1.45"), "/_ping"));
        assert_eq!(
            split_version("/v4.0.0/libpod/volumes/x/export"),
            (Some("4.0.0"), "/libpod/volumes/x/export")
        );
    }

    #[test]
    fn range_is_enforced_with_dockers_words() {
        assert_eq!(check_version("1.41").unwrap(), ApiVersion::new(1, 41));
        let old = check_version("1.12").unwrap_err();
        assert_eq!(old.message, "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version");
        let new = check_version("1.99").unwrap_err();
        assert_eq!(
            new.message,
            "client version 1.99 is too new. Maximum supported API version is 1.45"
        );
        assert!(check_version("1.4.1").is_err());
        assert!(check_version("1").unwrap_err().message.contains("too old"));
        assert!(ApiVersion::new(1, 9) < ApiVersion::new(1, 10));
    }
}
