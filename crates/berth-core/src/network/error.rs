//! Errors of network operations, in Docker's words and status classes.

use crate::error::ErrorKind;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network {name} is ambiguous ({count} matches found based on ID prefix)")]
    Ambiguous { name: String, count: usize },
    #[error("network with name {0} already exists")]
    NameTaken(String),
    /// Refused by a rule of Docker's that it answers with 403.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("plugin \"{0}\" not found")]
    UnknownDriver(String),
    #[error("{0}")]
    InvalidFilter(String),
    /// netavark or the namespace of a network failed.
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NetworkError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::NotFound(_) | NetworkError::UnknownDriver(_) => ErrorKind::NotFound,
            NetworkError::NameTaken(_) => ErrorKind::Conflict,
            NetworkError::Forbidden(_) => ErrorKind::Forbidden,
            NetworkError::Ambiguous { .. }
            | NetworkError::Invalid(_)
            | NetworkError::InvalidFilter(_) => ErrorKind::InvalidArgument,
            NetworkError::Store(_) | NetworkError::Setup(_) => ErrorKind::Internal,
        }
    }
}
