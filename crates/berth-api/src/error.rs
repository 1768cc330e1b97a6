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
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
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
    berth_core::volume::VolumeError,
    berth_core::container::ContainerError,
    berth_core::image::ImageError
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_docker_statuses() {
        assert_eq!(status_for(ErrorKind::NotFound), 404);
        assert_eq!(status_for(ErrorKind::Conflict), 409);
        assert_eq!(status_for(ErrorKind::InvalidArgument), 400);
        assert_eq!(status_for(ErrorKind::Internal), 500);
    }
}
