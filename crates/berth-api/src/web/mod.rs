//! The web view (`berth daemon --web-addr HOST:PORT`): a page of the
//! volumes (driver, size, use, holders, snapshots, labels, pool usage over
//! time) and a page per volume, served from files embedded in the binary.
//! Nothing is fetched from elsewhere, and the Content-Security-Policy lets
//! the pages load nothing but this server's own files.
//!
//! Read-only unless the daemon runs with `--web-admin`; then a page can
//! snapshot and clone volumes through the API's own handlers (and so its
//! rules). An action needs the admin token, which the daemon writes at each
//! start to a file only root can read (`ROOT/web-admin.token`) and the
//! operator types into the page once: anyone who can reach the address may
//! look (as with metrics), only who can read the file may act — the same
//! people who may use the API socket. The token travels in `X-Berth-Token`,
//! a header no cross-site form can send. Every request must also name this
//! server in `Host` (an IP literal or `localhost`: no DNS rebinding).

mod data;
pub mod samples;

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;

use crate::error::ApiError;
use crate::request::{blocking, json};
use crate::ApiState;
use samples::Samples;

/// What the web listener's handlers share.
#[derive(Clone)]
pub struct WebState {
    api: ApiState,
    samples: Arc<Samples>,
    /// With `--web-admin`: the token actions must carry.
    admin_token: Option<Arc<str>>,
    /// Where the operator finds the token (shown on the page).
    token_file: Option<String>,
    /// The port this listener serves (the `Host` header must name it).
    port: u16,
}

/// The header an action carries its token in.
const TOKEN_HEADER: &str = "x-berth-token";

/// The pages may load only this server's own files.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

impl WebState {
    /// `admin`: the token actions need and the file it was written to;
    /// `None` for a read-only view.
    pub fn new(
        api: ApiState,
        samples: Arc<Samples>,
        admin: Option<(String, String)>,
        port: u16,
    ) -> Self {
        let (admin_token, token_file) = match admin {
            Some((token, file)) => (Some(token.into()), Some(file)),
            None => (None, None),
        };
        WebState {
            api,
            samples,
            admin_token,
            token_file,
            port,
        }
    }

    fn admin(&self) -> bool {
        self.admin_token.is_some()
    }
}

/// A new admin token: 32 random bytes as hex.
pub fn new_admin_token() -> String {
    berth_core::volume::names::random_id()
}

/// The web listener's routes.
pub fn web_app(state: WebState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/volumes/{name}", get(index))
        .route("/app.js", get(script))
        .route("/style.css", get(style))
        .route("/web/v1/session", get(session))
        .route("/web/v1/overview", get(overview))
        .route("/web/v1/volumes/{name}", get(volume_page))
        .route("/web/v1/volumes/{name}/snapshots", post(snapshot))
        .route("/web/v1/volumes/{name}/clone", post(clone))
        .fallback(crate::error::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Refuses requests whose `Host` is not this server; adds the security
/// headers to every answer.
async fn guard(State(state): State<WebState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let mut response = if host_is_this_server(host, state.port) {
        next.run(request).await
    } else {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers to its own address only\n",
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether `host` (a `Host` header) names this server: an IP literal or
/// `localhost`, with this port. A DNS name could be re-pointed at this
/// address by another site (DNS rebinding), so none is accepted.
pub fn host_is_this_server(host: &str, port: u16) -> bool {
    // `Host: 127.0.0.1` names port 80; a bracketed IPv6 host has colons.
    let (name, given_port) = match host.rsplit_once(':') {
        Some((name, p)) if !p.ends_with(']') => (name, p),
        _ => (host, "80"),
    };
    if !given_port.bytes().all(|b| b.is_ascii_digit())
        || given_port.parse::<u16>().ok() != Some(port)
    {
        return false;
    }
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn index() -> Response {
    asset(
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/style.css"))
}

/// `GET /web/v1/session`: whether actions exist, and where their token is.
async fn session(State(state): State<WebState>) -> Response {
    json(
        StatusCode::OK,
        &serde_json::json!({"Admin": state.admin(), "TokenFile": state.token_file}),
    )
}

async fn overview(State(state): State<WebState>) -> Result<Response, ApiError> {
    let page = blocking(move || data::overview(&state.api, &state.samples, state.admin())).await?;
    Ok(json(StatusCode::OK, &page))
}

async fn volume_page(
    State(state): State<WebState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let page =
        blocking(move || data::volume_page(&state.api, &state.samples, state.admin(), &name))
            .await?;
    Ok(json(StatusCode::OK, &page))
}

/// An action is allowed: the daemon runs with `--web-admin` and the
/// request carries the token.
fn check_action(state: &WebState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.admin_token else {
        return Err(ApiError::forbidden(
            "the web view is read-only: start the daemon with --web-admin to act from it",
        ));
    };
    let given = headers.get(TOKEN_HEADER).map(|v| v.as_bytes());
    if !given.is_some_and(|given| same_bytes(given, token.as_bytes())) {
        return Err(ApiError::forbidden(format!(
            "missing or wrong X-Berth-Token: the admin token is in {}",
            state.token_file.as_deref().unwrap_or_default()
        )));
    }
    Ok(())
}

/// Compares in time that does not depend on where they differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /web/v1/volumes/{name}/snapshots`: the API's snapshot, when
/// allowed.
async fn snapshot(
    State(state): State<WebState>,
    name: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_action(&state, &headers)?;
    crate::extensions::snapshot_create(State(state.api), name, headers, body).await
}

/// `POST /web/v1/volumes/{name}/clone`: the API's clone, when allowed.
async fn clone(
    State(state): State<WebState>,
    name: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_action(&state, &headers)?;
    let no_query = axum::extract::RawQuery(None);
    crate::extensions::clone(State(state.api), name, no_query, headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_servers_address_is_a_host() {
        assert!(host_is_this_server("127.0.0.1:8080", 8080));
        assert!(host_is_this_server("localhost:8080", 8080));
        assert!(host_is_this_server("LOCALHOST:8080", 8080));
        assert!(host_is_this_server("[::1]:8080", 8080));
        assert!(host_is_this_server("10.1.2.3:8080", 8080));
        assert!(!host_is_this_server("127.0.0.1:8081", 8080));
        assert!(!host_is_this_server("127.0.0.1", 8080));
        assert!(!host_is_this_server("evil.example:8080", 8080));
        assert!(!host_is_this_server("localhost.evil.example:8080", 8080));
        assert!(!host_is_this_server("", 8080));
        assert!(!host_is_this_server("[::1:8080", 8080));
        assert!(!host_is_this_server("localhost:+8080", 8080));
        assert!(host_is_this_server("127.0.0.1", 80));
        assert!(host_is_this_server("[::1]", 80));
        assert!(!host_is_this_server("127.0.0.1", 8080));
    }
}
