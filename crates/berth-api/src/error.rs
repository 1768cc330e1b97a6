//! Errors as Docker sends them: `{"message": "..."}` with a status chosen
//! from the error's kind, in one function ([`status_for`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_core::ErrorKind;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// A 403 with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    /// A 500 with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

/// The one mapping from error kind to HTTP status.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<berth_core::Error> for ApiError {
    fn from(e: berth_core::Error) -> Self {
        ApiError {
            status: status_for(e.kind()),
            message: e.to_string(),
        }
    }
}

/// Each error type of the core maps through its kind; none goes through
/// the (large) crate error, so results stay small.
macro_rules! from_core_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for ApiError {
            fn from(e: $ty) -> Self {
                ApiError { status: status_for(e.kind()), message: e.to_string() }
            }
        }
    )*};
}

from_core_error!(
    berth_core::archive::ArchiveError,
    berth_core::backup::BackupError,
    berth_core::network::NetworkError,
    berth_core::volume::VolumeError,
    berth_core::container::ContainerError,
    berth_core::container::exec::ExecError,
    berth_core::image::ImageError,
    berth_core::image::registry::RegistryError
);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.message, "request refused");
        }
        let body = serde_json::json!({ "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

impl ApiError {
    /// Docker's 404 for unknown routes.
    pub fn page_not_found() -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: "page not found".into(),
        }
    }
}

/// Unknown routes: Docker's 404 text.
pub async fn not_found() -> ApiError {
    ApiError::page_not_found()
}

/// Largest plain-text rejection body rewritten as JSON.
const REJECTION_LIMIT: usize = 64 * 1024;

/// Rejections made by axum itself (a body over the size limit: 413, a
/// missing content type, a bad query) are plain text; Docker clients read
/// `{"message": …}` from every error, so they are rewritten as that.
pub async fn json_rejections(response: Response) -> Response {
    let plain_text = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/plain"));
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || !plain_text {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), REJECTION_LIMIT)
        .await
        .unwrap_or_default();
    ApiError {
        status,
        message: String::from_utf8_lossy(&body).trim().to_string(),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_text_rejections_become_json() {
        let plain = (StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded").into_response();
        let json = json_rejections(plain).await;
        assert_eq!(json.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = axum::body::to_bytes(json.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"message":"length limit exceeded"}"#);
        let ok = json_rejections((StatusCode::OK, "fine").into_response()).await;
        assert_eq!(ok.status(), StatusCode::OK);
    }

    #[test]
    fn kinds_map_to_docker_statuses() {
        assert_eq!(status_for(ErrorKind::NotFound), 404);
        assert_eq!(status_for(ErrorKind::Conflict), 409);
        assert_eq!(status_for(ErrorKind::InvalidArgument), 400);
        assert_eq!(status_for(ErrorKind::Internal), 500);
    }
}
