//! A minimal Docker Engine API client for the CLI, over a unix socket or
//! TCP (with mutual TLS: `connect.rs`). One HTTP/1.1 connection per
//! request (the CLI makes few).

pub mod connect;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// The default daemon socket.
pub const DEFAULT_HOST: &str = "unix:///run/berth.sock";

/// `-H`, then `$BERTH_HOST`, then `$DOCKER_HOST`, then the default.
pub fn resolve_host(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("BERTH_HOST").ok())
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// The socket path of a `unix://` host (a bare absolute path is accepted).
pub fn socket_path(host: &str) -> Result<String> {
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(path.to_string());
    }
    if host.starts_with('/') {
        return Ok(host.to_string());
    }
    bail!("unsupported host {host:?}: unix:///path or tcp://HOST:PORT")
}

/// A response: status and body.
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

impl ApiResponse {
    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).context("decoding daemon response")
    }
}

/// Client for one daemon.
pub struct ApiClient {
    host: String,
    endpoint: connect::Endpoint,
}

impl ApiClient {
    /// A client of the daemon at `host`, reached with `tls` for tcp://.
    pub fn new(host: &str, tls: &connect::TlsOptions) -> Result<Self> {
        Ok(ApiClient {
            host: host.to_string(),
            endpoint: connect::Endpoint::parse(host, tls)?,
        })
    }

    /// Sends a request; a status ≥ 400 becomes an error worded as the
    /// docker CLI words it ("Error response from daemon: …").
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<ApiResponse> {
        let resp = self.send(method, path, body).await?;
        if resp.status.as_u16() >= 400 {
            return Err(daemon_error(&resp));
        }
        Ok(resp)
    }

    /// Sends a request and gives the answer whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<ApiResponse> {
        let payload = match body {
            Some(v) => Some((Bytes::from(serde_json::to_vec(&v)?), "application/json")),
            None => None,
        };
        let resp = self.request(method, path, payload, false).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(ApiResponse { status, body })
    }

    /// Sends a request with a raw body (`None`: empty) and returns the
    /// response with its body unread (for streams); errors as [`ApiClient::call`].
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let resp = self.request(method, path, body, false).await?;
        error_for_status(resp).await
    }

    /// `POST path` with `Upgrade: tcp`; returns the raw connection after
    /// `101` (attach).
    pub async fn upgrade(&self, path: &str) -> Result<hyper::upgrade::Upgraded> {
        let resp = self.request(Method::POST, path, None, true).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            return Err(daemon_error(&ApiResponse {
                status,
                body: bytes,
            }));
        }
        Ok(hyper::upgrade::on(resp).await?)
    }

    /// Sends `reader`'s bytes as the request body, streamed (an upload of
    /// any size in constant memory); errors as [`ApiClient::call`].
    pub async fn upload(
        &self,
        method: Method,
        path: &str,
        reader: impl tokio::io::AsyncRead + Send + Sync + 'static,
        content_type: &'static str,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        use futures_util::TryStreamExt;
        // Large frames: the default 4 KiB makes a 1 GiB upload 262,144 of them.
        let frames = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)
            .map_ok(hyper::body::Frame::data);
        let body = http_body_util::StreamBody::new(frames).boxed();
        let resp = self
            .send_body(method, path, body, &[("Content-Type", content_type)], false)
            .await?;
        error_for_status(resp).await
    }

    /// Sends a request with a streamed body (which may end with trailer
    /// fields, announced in `headers`); a status ≥ 400 is an error.
    pub async fn send_stream(
        &self,
        method: Method,
        path: &str,
        body: BoxBody<Bytes, std::io::Error>,
        headers: &[(&'static str, &'static str)],
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let resp = self.send_body(method, path, body, headers, false).await?;
        error_for_status(resp).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
        upgrade: bool,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let (payload, headers) = match body {
            Some((bytes, content_type)) => (bytes, vec![("Content-Type", content_type)]),
            None => (Bytes::new(), vec![]),
        };
        let body = Full::new(payload).map_err(|never| match never {}).boxed();
        self.send_body(method, path, body, &headers, upgrade).await
    }

    async fn send_body(
        &self,
        method: Method,
        path: &str,
        body: BoxBody<Bytes, std::io::Error>,
        headers: &[(&'static str, &'static str)],
        upgrade: bool,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let stream = self.endpoint.connect(&self.host).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn.with_upgrades());
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", "berth");
        if upgrade {
            builder = builder
                .header("Connection", "Upgrade")
                .header("Upgrade", "tcp");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        Ok(sender.send_request(builder.body(body)?).await?)
    }
}

/// A response of status ≥ 400 as the docker CLI words it.
async fn error_for_status(
    resp: hyper::Response<hyper::body::Incoming>,
) -> Result<hyper::Response<hyper::body::Incoming>> {
    if resp.status().as_u16() < 400 {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Err(daemon_error(&ApiResponse { status, body }))
}

/// The docker CLI's wording of a daemon error.
fn daemon_error(resp: &ApiResponse) -> anyhow::Error {
    let message = serde_json::from_slice::<serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).trim().to_string());
    anyhow!("Error response from daemon: {message}")
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_resolve_to_socket_paths() {
        assert_eq!(socket_path("unix:///run/x.sock").unwrap(), "/run/x.sock");
        assert_eq!(socket_path("/run/y.sock").unwrap(), "/run/y.sock");
        assert!(socket_path("tcp://1.2.3.4:2375").is_err());
    }
}
