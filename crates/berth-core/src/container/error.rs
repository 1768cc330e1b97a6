//! Errors of container operations, in Docker's words.

use crate::error::ErrorKind;
use crate::image::ImageError;
use crate::store::StoreError;
use crate::volume::VolumeError;

use super::options::OptionsError;
use super::shim_protocol::{FailureCause, ShimError};

/// A container operation failure.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("multiple IDs found with provided prefix: {0}")]
    Ambiguous(String),
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("{0}")]
    InvalidConfig(String),
    #[error("cannot remove container \"{0}\": container is running: stop the container before removing or force remove")]
    RemoveRunning(String),
    #[error("cannot remove container \"{0}\": container is restarting: stop the container before removing or force remove")]
    RemoveRestarting(String),
    #[error("cannot remove container \"{0}\": container is paused and must be unpaused first")]
    RemovePaused(String),
    #[error("removal of container {0} is already in progress")]
    RemovalInProgress(String),
    #[error("container is already running")]
    AlreadyRunning,
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is not running")]
    NotRunningConflict(String),
    #[error("container {0} is already paused")]
    AlreadyPaused(String),
    #[error("Container {0} is not paused")]
    NotPaused(String),
    #[error("cannot kill container: {name}: container {id} is not running")]
    KillNotRunning { name: String, id: String },
    #[error("container is marked for removal and cannot be started")]
    MarkedForRemoval,
    #[error("invalid condition: {0:?}")]
    InvalidCondition(String),
    #[error("{0}")]
    Start(String),
    #[error("{0}")]
    StartNotFound(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
}

impl ContainerError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        use ContainerError::*;
        match self {
            NotFound(_) => ErrorKind::NotFound,
            Ambiguous(_) | InvalidName(_) | InvalidConfig(_) | InvalidCondition(_)
            | StartNotFound(_) => ErrorKind::InvalidArgument,
            NameInUse { .. }
            | RemoveRunning(_)
            | RemoveRestarting(_)
            | RemovePaused(_)
            | RemovalInProgress(_)
            | KillNotRunning { .. }
            | NotRunningConflict(_)
            | AlreadyPaused(_)
            | MarkedForRemoval => ErrorKind::Conflict,
            AlreadyRunning | NotRunning(_) => ErrorKind::NotModified,
            Start(_) | Io { .. } | Store(_) | NotPaused(_) => ErrorKind::Internal,
            Image(e) => e.kind(),
            Volume(e) => e.kind(),
            Network(e) => e.kind(),
        }
    }

    /// Whether this is the error of a container that has no process.
    pub fn is_not_running(&self) -> bool {
        matches!(
            self,
            ContainerError::NotRunning(_) | ContainerError::KillNotRunning { .. }
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ContainerError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A failed handshake becomes Docker's start errors: a missing program is
/// a 400 the CLI maps to exit code 127 ("executable file not found").
impl From<ShimError> for ContainerError {
    fn from(e: ShimError) -> Self {
        match e {
            ShimError::Failed {
                message,
                cause: FailureCause::ProgramNotFound | FailureCause::NotExecutable,
            } => ContainerError::StartNotFound(message),
            other => ContainerError::Start(other.to_string()),
        }
    }
}

/// Options refused at create are a 400; those found bad only at start
/// (a missing device) a 500, as Docker's.
impl From<OptionsError> for ContainerError {
    fn from(e: OptionsError) -> Self {
        match e {
            OptionsError::Invalid(m) => ContainerError::InvalidConfig(m),
            OptionsError::Start(m) => ContainerError::Start(m),
        }
    }
}
