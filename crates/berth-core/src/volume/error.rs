//! Errors of volume operations, worded as Docker words them: an operation
//! and a volume name prefix the cause (moby's `OpErr`: "get foo: no such
//! volume").

use crate::driver::DriverError;
use crate::error::ErrorKind;
use crate::store::StoreError;

/// A volume operation failure.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A one-character name (Docker words this case on its own).
    #[error("create {0}: volume name is too short, names should be at least two alphanumeric characters")]
    NameTooShort(String),
    /// The name breaks the naming rule.
    #[error("create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName(String),
    /// The name is longer than a host file name may be.
    #[error("create {0}: volume name is {len} characters long; the limit is 255 (one file name on the host)", len = .0.len())]
    NameTooLong(String),
    /// No volume of that name.
    #[error("{op} {name}: no such volume")]
    NotFound { op: &'static str, name: String },
    /// The volume is held by containers (or has active mounts).
    #[error("{op} {name}: volume is in use - [{}]", holders.join(", "))]
    InUse {
        op: &'static str,
        name: String,
        holders: Vec<String>,
    },
    /// Re-create with another driver.
    #[error("create {name}: driver '{existing}' already has volume '{name}': volume name must be unique")]
    DriverConflict { name: String, existing: String },
    /// A tar stream that could not be imported (nothing was changed).
    #[error("import {name}: {source}")]
    Archive {
        name: String,
        #[source]
        source: crate::archive::ArchiveError,
    },
    /// An import whose entry is a folder where the volume has something
    /// else, or the other way round (nothing was changed).
    #[error("import {name}: {path} is a folder on one side and not on the other (archive and volume); nothing was changed")]
    ImportConflict { name: String, path: String },
    /// A new volume (clone target) whose name is taken.
    #[error("{op} {name}: a volume named '{name}' already exists")]
    NameTaken { op: &'static str, name: String },
    /// A name whose driver already has storage although berth has no
    /// volume of that name (left behind, or made by hand): it is not
    /// replaced.
    #[error("{op} {name}: the driver already has storage named '{name}' that is not a volume berth lists; move it away, or restart the daemon to adopt it")]
    StorageExists { op: &'static str, name: String },
    /// A name that takes part in a rename that could not finish nor be
    /// undone (the journal row stays until start-up settles it).
    #[error("{op} {name}: a rename of {renamed} to {target} is unfinished; restart the daemon to settle it")]
    RenameUnfinished {
        op: &'static str,
        name: String,
        renamed: String,
        target: String,
    },
    /// A name whose removed volume's storage start-up found back in place
    /// and could neither move nor delete (a power cut undid its remove).
    #[error("{op} {name}: the storage of the removed volume {name} is still in place (see the start-up warnings); remove it, then restart the daemon")]
    RemovedStorageLeft { op: &'static str, name: String },
    /// Re-create with other driver options (berth refuses; Docker ignores).
    #[error("create {name}: volume already exists with different driver options (has {existing}, asked for {requested}); remove it first, or create it without options to reuse it")]
    OptionsConflict {
        name: String,
        existing: String,
        requested: String,
    },
    /// A block copy onto a volume that changed since the base snapshot
    /// the copy is a difference from: applying it would lose those writes.
    #[error("import {name}: the volume changed since snapshot {snapshot} (it was mounted or written here); nothing was changed (migrate --discard-target-changes replaces it anyway)")]
    ChangedSince { name: String, snapshot: String },
    /// A snapshot name that breaks the naming rule.
    #[error("invalid snapshot name \"{0}\": only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed, 2 to 255 characters")]
    InvalidSnapshotName(String),
    /// A filter key or value the operation does not accept.
    #[error("{0}")]
    InvalidFilter(String),
    /// A label that cannot be set (an empty key).
    #[error("{0}")]
    InvalidLabel(String),
    /// Another prune is running.
    #[error("a prune operation is already running")]
    PruneRunning,
    /// A driver failed during `op` on `name`.
    #[error("{op} {name}: {source}")]
    Driver {
        op: &'static str,
        name: String,
        #[source]
        source: DriverError,
    },
    /// The metadata store failed during `op` on `name`.
    #[error("{op} {name}: {source}")]
    Store {
        op: &'static str,
        name: String,
        #[source]
        source: StoreError,
    },
}

impl VolumeError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            VolumeError::InvalidName(_)
            | VolumeError::NameTooShort(_)
            | VolumeError::NameTooLong(_)
            | VolumeError::InvalidSnapshotName(_)
            | VolumeError::InvalidFilter(_)
            | VolumeError::InvalidLabel(_) => ErrorKind::InvalidArgument,
            VolumeError::NotFound { .. } => ErrorKind::NotFound,
            VolumeError::InUse { .. }
            | VolumeError::DriverConflict { .. }
            | VolumeError::NameTaken { .. }
            | VolumeError::StorageExists { .. }
            | VolumeError::RenameUnfinished { .. }
            | VolumeError::RemovedStorageLeft { .. }
            | VolumeError::ImportConflict { .. }
            | VolumeError::OptionsConflict { .. }
            | VolumeError::ChangedSince { .. }
            | VolumeError::PruneRunning => ErrorKind::Conflict,
            VolumeError::Driver { source, .. } => source.kind(),
            VolumeError::Archive { source, .. } => source.kind(),
            VolumeError::Store { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn driver(op: &'static str, name: &str, source: DriverError) -> Self {
        VolumeError::Driver {
            op,
            name: name.to_string(),
            source,
        }
    }

    pub(crate) fn store(op: &'static str, name: &str, source: StoreError) -> Self {
        VolumeError::Store {
            op,
            name: name.to_string(),
            source,
        }
    }

    pub(crate) fn not_found(op: &'static str, name: &str) -> Self {
        VolumeError::NotFound {
            op,
            name: name.to_string(),
        }
    }
}
