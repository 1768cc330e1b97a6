//! Errors of image operations, in Docker's words where Docker has them.

use std::path::Path;

use crate::error::ErrorKind;
use crate::store::StoreError;

/// An image operation failure.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("image with reference {reference} was found but does not match the specified platform: wanted {wanted}, actual: {actual}")]
    PlatformMismatch {
        reference: String,
        wanted: String,
        actual: String,
    },
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    #[error("{0}")]
    InvalidChange(String),
    #[error("refusing archive: {0}")]
    HostileArchive(String),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    /// A prune filter the daemon does not take, in Docker's words.
    #[error("{0}")]
    InvalidFilter(String),
    #[error("invalid image archive: {0}")]
    BadArchive(String),
    #[error("conflict: unable to delete {image} (must be forced) - {reason}")]
    Conflict { image: String, reason: String },
    #[error("conflict: unable to delete {image} (cannot be forced) - {reason}")]
    ConflictForced { image: String, reason: String },
    #[error("conflict: unable to remove repository reference \"{reference}\" (must force) - container {container} is using its referenced image {image}")]
    ReferenceInUse {
        reference: String,
        container: String,
        image: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImageError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NotFound(_) | ImageError::PlatformMismatch { .. } => ErrorKind::NotFound,
            ImageError::InvalidReference(_)
            | ImageError::InvalidChange(_)
            | ImageError::HostileArchive(_)
            | ImageError::BadArchive(_)
            | ImageError::InvalidFilter(_) => ErrorKind::InvalidArgument,
            ImageError::Conflict { .. }
            | ImageError::ConflictForced { .. }
            | ImageError::ReferenceInUse { .. } => ErrorKind::Conflict,
            ImageError::Io { .. } | ImageError::Store(_) => ErrorKind::Internal,
            ImageError::Archive(e) => e.kind(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ImageError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
