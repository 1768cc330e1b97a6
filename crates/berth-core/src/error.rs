//! The crate error: small per-module errors rolled into one type.
//!
//! Every error carries an [`ErrorKind`], the only thing the API layer looks
//! at to choose a status code. The message is what a user reads, so each
//! variant's text follows Docker's wording where Docker has one.

use crate::container::ContainerError;
use crate::driver::DriverError;
use crate::image::ImageError;
use crate::network::NetworkError;
use crate::store::StoreError;
use crate::volume::VolumeError;

/// Up to `shown` of `names`, joined by commas, then "and N more": the
/// list in a message about many things.
pub fn some_of(names: &[String], shown: usize) -> String {
    let listed = names[..names.len().min(shown)].join(", ");
    match names.len().saturating_sub(shown) {
        0 => listed,
        more => format!("{listed} and {more} more"),
    }
}

/// What class of failure happened, independent of where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named object does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with current state (HTTP 409).
    Conflict,
    /// Not allowed on this object, whatever its state (HTTP 403).
    Forbidden,
    /// The caller sent something invalid (HTTP 400).
    InvalidArgument,
    /// Nothing to do: already in the asked state (HTTP 304).
    NotModified,
    /// Credentials missing or refused by a registry (HTTP 401).
    Unauthorized,
    /// Anything else: I/O, database, driver failure (HTTP 500).
    Internal,
}

/// The crate-wide error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The class of this error, for status-code mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Volume(e) => e.kind(),
            Error::Driver(e) => e.kind(),
            Error::Image(e) => e.kind(),
            Error::Container(e) => e.kind(),
            Error::Network(e) => e.kind(),
            Error::Store(_) | Error::Io { .. } => ErrorKind::Internal,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result with the crate error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
