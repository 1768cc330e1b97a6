//! Registry failures, in the words dockerd uses for them.

use crate::error::ErrorKind;
use crate::image::ImageError;

/// A pull, push or login failure.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The daemon's registry settings or certificates are unusable.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    BadRequest(String),
    /// Credentials missing or refused by the registry (dockerd answers
    /// these with a 500, as berth does).
    #[error("{0}")]
    Unauthorized(String),
    /// A token service refused `docker login` (dockerd's 401).
    #[error("{0}")]
    LoginRefused(String),
    /// A manifest, repository or platform the registry does not have.
    #[error("{0}")]
    NotFound(String),
    /// The registry cannot be reached or broke off.
    #[error("{0}")]
    Unreachable(String),
    /// Content that does not match its digest, size or config.
    #[error("{0}")]
    Verification(String),
    /// The registry answered something berth cannot use.
    #[error("{0}")]
    Protocol(String),
    /// The registry failed on its side (a 5xx): worth another try.
    #[error("{0}")]
    Server(String),
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl From<crate::store::StoreError> for RegistryError {
    fn from(e: crate::store::StoreError) -> Self {
        RegistryError::Image(ImageError::Store(e))
    }
}

impl RegistryError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::BadRequest(_) => ErrorKind::InvalidArgument,
            RegistryError::NotFound(_) => ErrorKind::NotFound,
            RegistryError::LoginRefused(_) => ErrorKind::Unauthorized,
            RegistryError::Image(e) => e.kind(),
            _ => ErrorKind::Internal,
        }
    }

    /// A connection failure, as Go's HTTP client words it:
    /// `Get "URL": <cause>`.
    pub fn unreachable(url: &str, error: &reqwest::Error) -> Self {
        Self::unreachable_with("Get", url, error)
    }

    /// [`RegistryError::unreachable`] for a request of another method
    /// (`Head "URL": dial tcp HOST: connect: connection refused`).
    pub fn unreachable_with(method: &str, url: &str, error: &reqwest::Error) -> Self {
        RegistryError::Unreachable(format!("{method} \"{url}\": {}", root_cause(error, url)))
    }

    /// A registry's error answer: `code: message` of its first error
    /// (the distribution error envelope), else the status.
    pub fn from_status(status: u16, body: &str) -> Self {
        let detail = envelope_text(body).unwrap_or_else(|| format!("HTTP status {status}"));
        match status {
            401 => RegistryError::Unauthorized(detail),
            403 => RegistryError::Unauthorized(detail),
            404 => RegistryError::NotFound(detail),
            500..=599 => RegistryError::Server(detail),
            _ => RegistryError::Protocol(detail),
        }
    }

    /// Maps the distribution client's errors for a `method` request of
    /// `url`.
    pub fn from_oci(
        error: oci_client::errors::OciDistributionError,
        method: &str,
        url: &str,
    ) -> Self {
        use oci_client::errors::OciDistributionError as E;
        match error {
            E::RequestError(e) if e.is_connect() || e.is_timeout() || e.status().is_none() => {
                RegistryError::unreachable_with(method, url, &e)
            }
            E::RequestError(e) => match e.status().map(|s| s.as_u16()) {
                Some(401) => {
                    RegistryError::Unauthorized("unauthorized: authentication required".into())
                }
                Some(403) => RegistryError::Unauthorized(
                    "denied: requested access to the resource is denied".into(),
                ),
                Some(404) => RegistryError::NotFound(format!("{method} \"{url}\": not found")),
                Some(500..=599) => {
                    RegistryError::Server(format!("{method} \"{url}\": {}", root_cause(&e, url)))
                }
                _ => {
                    RegistryError::Protocol(format!("{method} \"{url}\": {}", root_cause(&e, url)))
                }
            },
            E::AuthenticationFailure(text) => RegistryError::Unauthorized(
                envelope_text(&text).unwrap_or_else(|| format!("unauthorized: {}", text.trim())),
            ),
            E::UnauthorizedError { .. } => {
                RegistryError::Unauthorized("unauthorized: authentication required".into())
            }
            E::RegistryError { envelope, .. } => match envelope.errors.first() {
                Some(first) => {
                    let text = format!("{}: {}", code_text(&first.code), first.message);
                    match first.code {
                        oci_client::errors::OciErrorCode::Unauthorized
                        | oci_client::errors::OciErrorCode::Denied => {
                            RegistryError::Unauthorized(text)
                        }
                        _ => RegistryError::Protocol(text),
                    }
                }
                None => RegistryError::Protocol("registry error".into()),
            },
            E::ServerError { code, message, .. } => RegistryError::from_status(code, &message),
            E::DigestError(e) => RegistryError::Verification(format!("digest mismatch: {e}")),
            other => RegistryError::Protocol(other.to_string()),
        }
    }
}

/// The innermost cause of an HTTP client error, a refused connection in
/// Go's words (`dial tcp HOST:PORT: connect: connection refused`).
fn root_cause(error: &(dyn std::error::Error + 'static), url: &str) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if !text.contains("Connection refused") {
        return text;
    }
    match host_port(url) {
        Some(host) => format!("dial tcp {host}: connect: connection refused"),
        None => "connect: connection refused".into(),
    }
}

/// `host:port` of a URL (the scheme's port when it names none).
fn host_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(host.to_string());
    }
    let port = if scheme == "http" { 80 } else { 443 };
    Some(format!("{host}:{port}"))
}

/// `code: message` of the first error of a distribution error body.
fn envelope_text(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let first = value.get("errors")?.get(0)?;
    let code = first.get("code")?.as_str()?;
    let message = first.get("message").and_then(|m| m.as_str()).unwrap_or("");
    Some(format!(
        "{}: {message}",
        code.to_ascii_lowercase().replace('_', " ")
    ))
}

fn code_text(code: &oci_client::errors::OciErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.to_ascii_lowercase().replace('_', " ")))
        .unwrap_or_else(|| format!("{code:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_read_as_docker_words() {
        let body =
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        let err = RegistryError::from_status(404, body);
        assert!(matches!(err, RegistryError::NotFound(_)));
        assert_eq!(err.to_string(), "manifest unknown: manifest unknown");
        let err = RegistryError::from_status(401, "not json");
        assert!(matches!(err, RegistryError::Unauthorized(_)));
    }

    #[test]
    fn hosts_get_their_ports() {
        assert_eq!(
            host_port("http://127.0.0.1:5000/v2/").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            host_port("https://example.com/v2/").as_deref(),
            Some("example.com:443")
        );
        assert_eq!(host_port("http://h/v2/").as_deref(), Some("h:80"));
        assert_eq!(host_port("blob sha256:x"), None);
    }
}
