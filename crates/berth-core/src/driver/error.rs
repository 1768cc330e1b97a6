//! Errors a volume driver reports.

use crate::error::ErrorKind;

/// A driver failure.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// No driver of that name is registered.
    #[error("error looking up volume plugin {0}: plugin \"{0}\" not found")]
    UnknownDriver(String),
    /// A create option the driver refuses.
    #[error("{0}")]
    InvalidOption(String),
    /// The driver has no volume of that name.
    #[error("no such volume")]
    NoSuchVolume,
    /// Mounting the volume's filesystem failed.
    #[error("failed to mount local volume: mount {device}:{target}, data: {data}: {source}")]
    Mount {
        device: String,
        target: String,
        data: String,
        #[source]
        source: std::io::Error,
    },
    /// The driver cannot do this (snapshots on `local`, shrinking…).
    #[error("{0}")]
    Unsupported(String),
    /// A volume plugin failed a call, or refused it (its `Err`).
    #[error("VolumeDriver plugin {plugin}: {call}: {message}")]
    Plugin {
        plugin: String,
        call: String,
        message: String,
    },
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DriverError::UnknownDriver(_) | DriverError::NoSuchVolume => ErrorKind::NotFound,
            DriverError::InvalidOption(_) | DriverError::Unsupported(_) => {
                ErrorKind::InvalidArgument
            }
            DriverError::Mount { .. } | DriverError::Io { .. } | DriverError::Plugin { .. } => {
                ErrorKind::Internal
            }
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DriverError::Io {
            context: context.into(),
            source,
        }
    }
}
