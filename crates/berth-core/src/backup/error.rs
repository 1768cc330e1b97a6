//! What a backup operation can fail with; the API maps each kind to a
//! status code in one place.

use crate::error::ErrorKind;
use crate::store::StoreError;
use crate::volume::VolumeError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no such backup repository: {0}")]
    NoSuchRepo(String),
    #[error("a backup repository named {0} is already known")]
    RepoExists(String),
    #[error("invalid backup repository name {0:?}: use letters, digits, '_', '.' or '-', starting with a letter or digit")]
    InvalidName(String),
    #[error("invalid repository URL {url:?}: {why}")]
    InvalidUrl { url: String, why: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("wrong password for backup repository {0}")]
    WrongPassword(String),
    #[error("there is no restic repository at {0} (create one with `berth backup repo init`)")]
    NotARepository(String),
    #[error("{url} already holds a restic repository (add it with `berth backup repo add`)")]
    AlreadyARepository { url: String },
    #[error("no backup {snapshot} in repository {repo}")]
    NoSuchSnapshot { repo: String, snapshot: String },
    #[error("backup {snapshot} in repository {repo} was not made by berth (it records no volume); restore it with restic")]
    NotAVolumeBackup { repo: String, snapshot: String },
    #[error("restore into volume {0}: the volume is not empty; restore into a new volume or an empty one")]
    TargetNotEmpty(String),
    #[error("stopping container {container} for the backup: {why}")]
    StopFailed { container: String, why: String },
    #[error("backup in repository {repo} holds an entry that would be written outside the volume ({path:?}): refused, nothing was restored")]
    HostileSnapshot { repo: String, path: String },
    #[error("the backup was cancelled")]
    Cancelled,
    #[error("repository {repo}: {detail}")]
    Repository { repo: String, detail: String },
    #[error("the daemon's backup secrets: {0}")]
    Secret(String),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("backup store: {0}")]
    Store(#[from] StoreError),
}

impl BackupError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackupError::NoSuchRepo(_) | BackupError::NoSuchSnapshot { .. } => ErrorKind::NotFound,
            BackupError::RepoExists(_)
            | BackupError::AlreadyARepository { .. }
            | BackupError::TargetNotEmpty(_)
            | BackupError::StopFailed { .. }
            | BackupError::Cancelled => ErrorKind::Conflict,
            BackupError::InvalidName(_)
            | BackupError::InvalidUrl { .. }
            | BackupError::InvalidRequest(_)
            | BackupError::NotAVolumeBackup { .. }
            | BackupError::HostileSnapshot { .. }
            | BackupError::NotARepository(_) => ErrorKind::InvalidArgument,
            BackupError::WrongPassword(_) => ErrorKind::Unauthorized,
            BackupError::Volume(e) => e.kind(),
            BackupError::Repository { .. } | BackupError::Secret(_) | BackupError::Store(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// A repository library error, on one line, with the repository named.
    pub(super) fn repository(repo: &str, e: &rustic_core::RusticError) -> Self {
        BackupError::Repository {
            repo: repo.to_string(),
            detail: e.display_log(),
        }
    }
}
