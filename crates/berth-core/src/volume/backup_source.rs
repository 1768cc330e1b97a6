//! What a backup reads: a folder holding one volume's content at one
//! instant, held until the backup is over.
//!
//! - A volume whose driver takes snapshots (thin) is snapshotted (frozen
//!   for the instant of the copy) and the snapshot mounted read-only; the
//!   volume stays in use by its containers throughout, and the snapshot
//!   is dropped at the end.
//! - Any other volume is read in place, and only while nothing else can
//!   write to it: refused while a container has it mounted, and its name
//!   lock is held for the whole backup, so a container starting meanwhile
//!   waits for the backup to end.

use std::path::PathBuf;
use std::sync::Arc;

use super::{operation_mount_id, Volume, VolumeError, VolumeService};
use crate::driver::VolumeDriver;
use crate::locks::NameGuard;
use crate::store::VolumeRecord;

/// How a backup's content was made consistent (recorded with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// A frozen, point-in-time snapshot of the volume.
    Snapshot,
    /// The volume read while no container had it mounted.
    Unmounted,
    /// The volume read while the containers that use it were stopped.
    Stopped,
}

/// Snapshots berth makes for a backup are named so.
pub const BACKUP_SNAPSHOT_PREFIX: &str = "berth-backup-";

/// The folder a backup reads, released (snapshot dropped, or mount
/// released and lock let go) when dropped.
pub struct BackupSource<'a> {
    pub path: PathBuf,
    pub volume: Volume,
    pub consistency: Consistency,
    hold: Hold<'a>,
    service: &'a VolumeService,
}

enum Hold<'a> {
    Snapshot {
        driver: Arc<dyn VolumeDriver>,
        snap: String,
        /// The operation mount id that marks the volume in use.
        id: String,
    },
    Mount {
        record: VolumeRecord,
        driver: Arc<dyn VolumeDriver>,
        id: String,
        _guard: NameGuard<'a>,
    },
}

impl VolumeService {
    /// Whether a backup of `name` reads a snapshot (its driver takes them)
    /// rather than the volume in place.
    /// Refuses a volume a backup cannot read (tmpfs) before anything is
    /// done for it (its containers stopped).
    pub fn backs_up_from_snapshot(&self, name: &str) -> Result<bool, VolumeError> {
        let record = self.ready("backup", name)?;
        let snapshots = self.driver_of("backup", &record)?.extended().is_some();
        if !snapshots {
            refuse_tmpfs_backup(&record)?;
        }
        Ok(snapshots)
    }

    /// The content of volume `name` for a backup; see the module docs.
    pub fn backup_source(&self, name: &str) -> Result<BackupSource<'_>, VolumeError> {
        let guard = self.locks.lock(name);
        let record = self.ready("backup", name)?;
        let driver = self.driver_of("backup", &record)?;
        let volume = self.to_volume(driver.as_ref(), record.clone(), false)?;
        if let Some(extended) = driver.extended() {
            let snap = format!("{BACKUP_SNAPSHOT_PREFIX}{}", &VolumeRecord::new_uid()[..12]);
            // An operation mount id for as long as the backup reads the
            // snapshot: the volume counts as in use, so it is not removed
            // or renamed under the backup (start-up drops the id).
            let id = operation_mount_id("backup");
            let store_err = |e| VolumeError::store("backup", name, e);
            self.store.add_mount(name, &id).map_err(store_err)?;
            if let Err(e) = extended.snapshot_create(name, &snap) {
                let _ = self.store.remove_mount(name, &id);
                return Err(VolumeError::driver("backup", name, e));
            }
            drop(guard);
            let opened = extended.open_snapshot(name, &snap, &record.options);
            let source = |path| BackupSource {
                path,
                volume,
                consistency: Consistency::Snapshot,
                hold: Hold::Snapshot {
                    driver: driver.clone(),
                    snap: snap.clone(),
                    id: id.clone(),
                },
                service: self,
            };
            return match opened {
                Ok(path) => Ok(source(path)),
                Err(e) => {
                    drop(source(PathBuf::new()));
                    Err(VolumeError::driver("backup", name, e))
                }
            };
        }
        self.refuse_if_mounted("backup", name)?;
        refuse_tmpfs_backup(&record)?;
        let id = operation_mount_id("backup");
        let path = self.mount_locked(&record, driver.as_ref(), &id)?;
        Ok(BackupSource {
            path,
            volume,
            consistency: Consistency::Unmounted,
            hold: Hold::Mount {
                record,
                driver,
                id,
                _guard: guard,
            },
            service: self,
        })
    }
}

impl VolumeService {
    /// Start-up: drops the snapshots of backups a crash cut short (named
    /// [`BACKUP_SNAPSHOT_PREFIX`]…, unmounted first). Returns how many.
    pub fn drop_stale_backup_snapshots(&self) -> usize {
        let mut dropped = 0;
        for record in self.store.volumes() {
            // Berth's own drivers: start-up never calls a plugin.
            let Some(driver) = self.drivers.builtin(&record.driver) else {
                continue;
            };
            let Some(extended) = driver.extended() else {
                continue;
            };
            let _guard = self.locks.lock(&record.name);
            for snap in extended.snapshot_list(&record.name).unwrap_or_default() {
                if !snap.name.starts_with(BACKUP_SNAPSHOT_PREFIX) {
                    continue;
                }
                let gone = extended
                    .close_snapshot(&record.name, &snap.name)
                    .and_then(|_| extended.snapshot_remove(&record.name, &snap.name));
                match gone {
                    Ok(_) => dropped += 1,
                    Err(e) => tracing::error!(volume = %record.name, snapshot = %snap.name,
                        error = %e, "dropping a cut-short backup's snapshot failed"),
                }
            }
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "dropped the snapshots of backups a crash cut short"
            );
        }
        dropped
    }
}

/// A tmpfs volume holds data only while a container has it mounted.
fn refuse_tmpfs_backup(record: &VolumeRecord) -> Result<(), VolumeError> {
    super::import::refuse_tmpfs(record).map_err(|_| {
        let why = "a tmpfs volume holds data only while a container has it mounted; \
                   there is nothing to back up";
        VolumeError::driver(
            "backup",
            &record.name,
            crate::driver::DriverError::Unsupported(why.into()),
        )
    })
}

impl Drop for BackupSource<'_> {
    fn drop(&mut self) {
        let name = self.volume.name.clone();
        match &self.hold {
            Hold::Snapshot { driver, snap, id } => {
                let _guard = self.service.locks.lock(&name);
                if let Some(extended) = driver.extended() {
                    let dropped = extended
                        .close_snapshot(&name, snap)
                        .and_then(|_| extended.snapshot_remove(&name, snap));
                    if let Err(e) = dropped {
                        tracing::error!(volume = %name, snapshot = %snap, error = %e,
                            "dropping a backup's snapshot failed (the next start drops it)");
                    }
                }
                if let Err(e) = self.service.store.remove_mount(&name, id) {
                    tracing::error!(volume = %name, mount_id = %id, error = %e,
                        "releasing a backup's mount id failed (the next start drops it)");
                }
            }
            Hold::Mount {
                record, driver, id, ..
            } => self.service.unmount_locked(record, driver.as_ref(), id),
        }
    }
}
