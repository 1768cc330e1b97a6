//! Volume export as a tar stream (what `podman volume export` does), the
//! portable form of a volume's data; import is in `import.rs`.
//!
//! Export and import mount the volume under a mount id of their own for as
//! long as they run, so the volume counts as in use (remove and restore
//! refuse) and a thin or loop-backed volume is attached; the id is released
//! at the end, whatever happened. Such ids start with
//! [`OPERATION_MOUNT_PREFIX`]: start-up does not replay them as it does
//! containers' ids (an export's is dropped; an import's volume is settled,
//! see `import.rs`).

use std::io::Write;
use std::path::PathBuf;

use super::{names, VolumeError, VolumeService};
use crate::driver::DriverError;

/// Mount ids of berth's own short operations (export, import) start so.
pub const OPERATION_MOUNT_PREFIX: &str = "berth-op-";

/// A volume mounted for one operation; released when dropped.
struct OperationMount<'a> {
    service: &'a VolumeService,
    name: String,
    id: String,
    path: PathBuf,
}

impl Drop for OperationMount<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.service.unmount(&self.name, &self.id) {
            tracing::error!(volume = %self.name, mount_id = %self.id, error = %e, "releasing an operation's mount failed");
        }
    }
}

impl VolumeService {
    /// Mounts `name` for operation `op` until the guard is dropped.
    fn mount_for(&self, op: &str, name: &str) -> Result<OperationMount<'_>, VolumeError> {
        let id = operation_mount_id(op);
        let path = self.mount(name, &id)?;
        Ok(OperationMount {
            service: self,
            name: name.to_string(),
            id,
            path,
        })
    }

    /// Writes volume `name`'s contents to `out` as a tar stream; returns the
    /// bytes of file data written. The copy is live: files that containers
    /// change meanwhile are taken as they are read (for a point-in-time
    /// export of a thin volume, clone it first: the clone is frozen in one
    /// instant). An error writing to `out` ends the export.
    pub fn export(&self, name: &str, out: impl Write) -> Result<u64, VolumeError> {
        let mounted = self.mount_for("export", name)?;
        let skip = |top: &std::ffi::OsStr| super::import::is_staging(&mounted.path.join(top));
        let bytes = crate::archive::write_tree(&mounted.path, out, &skip).map_err(|e| {
            VolumeError::driver("export", name, DriverError::io("writing the archive", e))
        })?;
        drop(mounted);
        self.publish("export", name, &[]);
        Ok(bytes)
    }
}

/// A fresh mount id for one run of operation `op`.
pub fn operation_mount_id(op: &str) -> String {
    format!("{OPERATION_MOUNT_PREFIX}{op}-{}", &names::random_id()[..16])
}
