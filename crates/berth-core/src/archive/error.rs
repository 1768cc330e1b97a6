//! Errors of reading and writing tar streams.

use std::path::Path;

use crate::error::ErrorKind;

/// A tar stream that could not be read or extracted.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An entry that tries to write outside the destination (`..`, through
    /// a symlink, a hard link to outside).
    #[error("refusing archive: {0}")]
    Hostile(String),
    #[error("unsupported compression (bzip2 or xz): send an uncompressed, gzip or zstd tar")]
    UnsupportedCompression,
    /// The stream is not a tar archive, or is cut short.
    #[error("invalid tar archive: {0}")]
    Tar(#[source] std::io::Error),
    /// The stream's content digest was missing or did not match.
    #[error("unverified archive: {0}; nothing was imported")]
    Unverified(String),
    /// A block stream (`volume migrate` of a thin volume) that breaks
    /// its format's rules or is cut short.
    #[error("invalid block stream: {0}")]
    Blocks(String),
    /// Writing the extracted files failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    /// The class of this error: the sender's fault, or the host's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ArchiveError::Io { .. } => ErrorKind::Internal,
            _ => ErrorKind::InvalidArgument,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ArchiveError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn tar(source: std::io::Error) -> Self {
        ArchiveError::Tar(source)
    }
}
