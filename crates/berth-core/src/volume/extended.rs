//! berth's volume verbs beyond Docker's: snapshots, clone, resize. Each
//! runs under the volume's name lock; drivers that cannot do one say so.

use super::{names, Volume, VolumeError, VolumeService};
use crate::driver::{DriverError, ExtendedDriver, PoolStats, SnapshotInfo};
use crate::store::{VolumeRecord, VolumeState};
use crate::sys::units::parse_size;

/// The driver's extended verbs, or why it has none (`op` names them).
pub(super) fn extended_of<'a>(
    op: &'static str,
    driver: &'a dyn crate::driver::VolumeDriver,
    name: &str,
) -> Result<&'a dyn ExtendedDriver, VolumeError> {
    driver.extended().ok_or_else(|| {
        let why = format!(
            "the {} driver does not support {op}; use a thin volume (--driver thin)",
            driver.name()
        );
        VolumeError::driver(op, name, DriverError::Unsupported(why))
    })
}

impl VolumeService {
    /// The record of `name` if it is ready (not being created or removed)
    /// and not part of an unfinished rename (a 409 until start-up settles
    /// it: its row and its storage may have different names).
    pub(super) fn ready(&self, op: &'static str, name: &str) -> Result<VolumeRecord, VolumeError> {
        // Hidden rows (storage out of place) are not there for these verbs.
        let record = (self.store.visible_volume(name))
            .filter(|r| r.state == VolumeState::Ready)
            .ok_or_else(|| VolumeError::not_found("get", name))?;
        self.refuse_if_renaming(op, name)?;
        Ok(record)
    }

    /// Snapshots `name` (as `snap`, or a name from the time). Returns the
    /// snapshot's name.
    pub fn snapshot_create(&self, name: &str, snap: Option<&str>) -> Result<String, VolumeError> {
        if let Some(s) = snap {
            names::validate_name(s)?;
            // Reserved: start-up drops snapshots so named as left by a
            // backup a crash cut short.
            if s.starts_with(super::BACKUP_SNAPSHOT_PREFIX) {
                let why = format!(
                    "snapshot names starting with {} are berth's own (backups)",
                    super::BACKUP_SNAPSHOT_PREFIX
                );
                return Err(VolumeError::driver(
                    "snapshot",
                    name,
                    DriverError::InvalidOption(why),
                ));
            }
        }
        let _guard = self.locks.lock(name);
        let record = self.ready("snapshot", name)?;
        let driver = self.driver_of("snapshot", &record)?;
        let extended = extended_of("snapshots", driver.as_ref(), name)?;
        let snap = match snap {
            Some(s) => s.to_string(),
            // Chosen under the volume's lock, so two snapshots taken in
            // the same millisecond get different names.
            None => {
                let taken = extended
                    .snapshot_list(name)
                    .map_err(|e| VolumeError::driver("snapshot", name, e))?;
                time_name(&taken)
            }
        };
        extended
            .snapshot_create(name, &snap)
            .map_err(|e| VolumeError::driver("snapshot", name, e))?;
        self.publish("snapshot", name, &[("snapshot", &snap)]);
        Ok(snap)
    }

    /// Snapshots of `name`, oldest first.
    pub fn snapshot_list(&self, name: &str) -> Result<Vec<SnapshotInfo>, VolumeError> {
        let record = self.ready("snapshot", name)?;
        let driver = self.driver_of("snapshot", &record)?;
        extended_of("snapshots", driver.as_ref(), name)?
            .snapshot_list(name)
            .map_err(|e| VolumeError::driver("snapshot", name, e))
    }

    /// Deletes a snapshot; a missing one is not found.
    pub fn snapshot_remove(&self, name: &str, snap: &str) -> Result<(), VolumeError> {
        names::validate_snapshot_name(snap)?;
        let _guard = self.locks.lock(name);
        let record = self.ready("snapshot", name)?;
        self.refuse_if_backup_reads(name, snap)?;
        let driver = self.driver_of("snapshot", &record)?;
        let removed = extended_of("snapshots", driver.as_ref(), name)?
            .snapshot_remove(name, snap)
            .map_err(|e| VolumeError::driver("snapshot", name, e))?;
        if !removed {
            return Err(VolumeError::not_found(
                "snapshot",
                &format!("{name}/{snap}"),
            ));
        }
        Ok(())
    }

    /// A backup's own snapshot is in use while a backup of the volume
    /// runs (it is mounted and read); one a crash left may go.
    fn refuse_if_backup_reads(&self, name: &str, snap: &str) -> Result<(), VolumeError> {
        if !snap.starts_with(super::BACKUP_SNAPSHOT_PREFIX) {
            return Ok(());
        }
        let prefix = format!("{}backup-", super::OPERATION_MOUNT_PREFIX);
        let mounts =
            (self.store.mounts(name)).map_err(|e| VolumeError::store("snapshot", name, e))?;
        let holders: Vec<String> = mounts
            .into_iter()
            .filter(|m| m.starts_with(&prefix))
            .collect();
        match holders.is_empty() {
            true => Ok(()),
            false => Err(VolumeError::InUse {
                op: "snapshot",
                name: format!("{name}/{snap}"),
                holders,
            }),
        }
    }

    /// Brings `name` back to `snap`. Refused while containers mount it.
    pub fn snapshot_restore(&self, name: &str, snap: &str) -> Result<(), VolumeError> {
        names::validate_snapshot_name(snap)?;
        let _guard = self.locks.lock(name);
        let record = self.ready("restore", name)?;
        let mounted = self
            .store
            .mounts(name)
            .map_err(|e| VolumeError::store("restore", name, e))?;
        if !mounted.is_empty() {
            let why = format!(
                "volume is mounted by [{}]; stop those containers first",
                mounted.join(", ")
            );
            return Err(VolumeError::driver(
                "restore",
                name,
                DriverError::Unsupported(why),
            ));
        }
        let driver = self.driver_of("restore", &record)?;
        extended_of("snapshots", driver.as_ref(), name)?
            .snapshot_restore(name, snap)
            .map_err(|e| VolumeError::driver("restore", name, e))?;
        self.publish("restore", name, &[("snapshot", snap)]);
        Ok(())
    }

    /// A new, independent volume `dst` holding a copy of `src` (shared
    /// blocks on thin volumes; a metadata-preserving copy on local ones).
    pub fn clone_volume(&self, src: &str, dst: &str) -> Result<Volume, VolumeError> {
        self.clone_volume_with_progress(src, dst, &mut |_| Ok(()))
    }

    /// [`VolumeService::clone_volume`], reporting progress: once with
    /// `current == 0` when the checks have passed and the copy begins, then
    /// as bytes are copied. An error from `progress` (the client went
    /// away) stops the copy and rolls the new volume back.
    pub fn clone_volume_with_progress(
        &self,
        src: &str,
        dst: &str,
        progress: &mut dyn FnMut(CloneProgress) -> std::io::Result<()>,
    ) -> Result<Volume, VolumeError> {
        names::validate_name(dst)?;
        if src == dst {
            // Checked before locking: the name lock is not re-entrant.
            return Err(VolumeError::NameTaken {
                op: "clone",
                name: dst.into(),
            });
        }
        let (first, second) = if src < dst { (src, dst) } else { (dst, src) };
        let _g1 = self.locks.lock(first);
        let _g2 = self.locks.lock(second);
        let record = self.clone_source(src, dst)?;
        let driver = self.driver_of("clone", &record)?;
        let mut copy = VolumeRecord {
            name: dst.to_string(),
            uid: VolumeRecord::new_uid(),
            state: VolumeState::Creating,
            created_at: chrono::Utc::now().timestamp(),
            ..record.clone()
        };
        // The clone has a name the user chose: it is not anonymous, and a
        // plain `volume prune` must not take it.
        copy.labels.remove(names::ANONYMOUS_LABEL);
        self.store
            .insert_volume(&copy)
            .map_err(|e| VolumeError::store("clone", dst, e))?;
        // A `creating` row until the data is whole: a crash meanwhile is
        // rolled back at start-up like any half-made create.
        match copy_data(driver.as_ref(), src, dst, progress) {
            Ok(()) => {}
            Err(CopyError::Taken) => {
                // Storage appeared under `dst` that the clone did not make:
                // it is left as it is, only the row goes.
                let _ = self.store.delete_volume(dst);
                return Err(VolumeError::StorageExists {
                    op: "clone",
                    name: dst.into(),
                });
            }
            Err(CopyError::Driver(e)) => {
                let _ = driver.remove(dst);
                let _ = self.store.delete_volume(dst);
                return Err(VolumeError::driver("clone", src, e));
            }
        }
        self.store
            .set_volume_state(dst, VolumeState::Ready)
            .map_err(|e| VolumeError::store("clone", dst, e))?;
        let attributes = [("driver", record.driver.as_str()), ("clonedFrom", src)];
        self.publish("create", dst, &attributes);
        drop((_g1, _g2));
        self.get(dst)
    }

    /// The record of a volume that can be cloned to `dst`: `src` is ready,
    /// `dst` is free (no volume, no storage the driver has under that name,
    /// not the target of an unfinished rename), a local `src` keeps its
    /// data in berth's folder (with mount options its data lives on a
    /// device or tmpfs that a folder copy would miss, and a copy of the
    /// options would share it), and a `src` copied file by file is mounted
    /// by no one.
    fn clone_source(&self, src: &str, dst: &str) -> Result<VolumeRecord, VolumeError> {
        let record = self.ready("clone", src)?;
        if self.record("clone", dst)?.is_some() {
            return Err(VolumeError::NameTaken {
                op: "clone",
                name: dst.into(),
            });
        }
        self.refuse_if_renaming("clone", dst)?;
        self.settle_name("clone", dst)?;
        if crate::driver::data_outside_berth(&record.driver, &record.options) {
            let why = "cannot clone a local volume with mount options (type, device, o): \
                       its data is not in berth's folder";
            return Err(VolumeError::driver(
                "clone",
                src,
                DriverError::Unsupported(why.into()),
            ));
        }
        let driver = self.driver_of("clone", &record)?;
        if driver.extended().is_none() {
            // A file-by-file copy walks the source by path: a container with
            // it mounted could swap a file for a symlink to host data (which
            // would land in the clone) or a FIFO (which would hang the copy
            // with both name locks held). Block-sharing clones copy the image
            // as one frozen instant and stay allowed. The caller holds
            // `src`'s name lock, so nothing mounts it while the copy runs.
            self.refuse_if_mounted("clone", src)?;
        }
        self.refuse_if_storage_exists("clone", driver.as_ref(), dst)?;
        Ok(record)
    }

    /// Refuses `op` on `name` while any mount id is active on it (a
    /// running container, or another of berth's operations): for work
    /// that walks the volume's files by path or writes into it.
    pub(super) fn refuse_if_mounted(
        &self,
        op: &'static str,
        name: &str,
    ) -> Result<(), VolumeError> {
        let holders = self
            .store
            .mounts(name)
            .map_err(|e| VolumeError::store(op, name, e))?;
        if holders.is_empty() {
            return Ok(());
        }
        Err(VolumeError::InUse {
            op,
            name: name.to_string(),
            holders,
        })
    }

    /// Every driver's pool report (drivers without a pool are left out).
    pub fn pools(&self) -> Vec<PoolStats> {
        self.drivers.all().filter_map(|d| d.pool_stats()).collect()
    }

    /// Trims every driver's storage (mounted volumes, then pools); returns
    /// the bytes trimmed.
    pub fn trim(&self) -> Result<u64, VolumeError> {
        let mut total = 0;
        for driver in self.drivers.all() {
            total += driver
                .trim()
                .map_err(|e| VolumeError::driver("trim", driver.name(), e))?;
        }
        Ok(total)
    }

    /// Grows `name` to `size` (online when mounted); shrinking is refused.
    pub fn resize(&self, name: &str, size: &str) -> Result<Volume, VolumeError> {
        let bytes = parse_size(size).ok_or_else(|| {
            VolumeError::driver(
                "resize",
                name,
                DriverError::InvalidOption(format!("invalid size: {size:?}")),
            )
        })?;
        {
            let _guard = self.locks.lock(name);
            let record = self.ready("resize", name)?;
            let driver = self.driver_of("resize", &record)?;
            extended_of("resize", driver.as_ref(), name)?
                .resize(name, bytes)
                .map_err(|e| VolumeError::driver("resize", name, e))?;
            self.store
                .set_volume_option(name, "size", size)
                .map_err(|e| VolumeError::store("resize", name, e))?;
        }
        self.publish("resize", name, &[("size", size)]);
        self.get(name)
    }
}

/// How far a clone is: bytes of file length done of `total` (both 0 for
/// block-sharing clones, which take an instant).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneProgress {
    pub current: u64,
    pub total: u64,
}

/// Why a clone's copy failed.
enum CopyError {
    /// The driver already had storage for the target (it kept it): not the
    /// clone's, so not rolled back.
    Taken,
    /// The copy failed; what the clone made of the target is rolled back.
    Driver(DriverError),
}

impl From<DriverError> for CopyError {
    fn from(e: DriverError) -> Self {
        CopyError::Driver(e)
    }
}

/// The new volume's data: one block-sharing clone where the driver can,
/// a copy of the files otherwise.
fn copy_data(
    driver: &dyn crate::driver::VolumeDriver,
    src: &str,
    dst: &str,
    progress: &mut dyn FnMut(CloneProgress) -> std::io::Result<()>,
) -> Result<(), CopyError> {
    match driver.extended() {
        Some(ext) => {
            progress(CloneProgress::default())
                .map_err(|e| DriverError::io("cloning the volume", e))?;
            // Not synced here: the new image lives in the driver's pool,
            // which no driver method names (its `path` is the mount point,
            // on another filesystem while unmounted). Making the clone
            // durable before it is acknowledged is the driver's to do.
            Ok(ext.clone_volume(src, dst)?)
        }
        None => copy_local(driver, src, dst, progress),
    }
}

/// Clone for drivers without block sharing: measure, create, copy the files
/// (copy_file_range: reflinks where the filesystem can), then sync the
/// target's filesystem. Storage that
/// `create` finds already there (it adopts it, `Ok(false)`) is not copied
/// into: [`CopyError::Taken`].
fn copy_local(
    driver: &dyn crate::driver::VolumeDriver,
    src: &str,
    dst: &str,
    progress: &mut dyn FnMut(CloneProgress) -> std::io::Result<()>,
) -> Result<(), CopyError> {
    let copying = |e| DriverError::io("copying the volume", e);
    let source = driver.path(src)?.ok_or(DriverError::NoSuchVolume)?;
    let total = crate::sys::usage::dir_size(&source).map_err(copying)?;
    let mut done = CloneProgress { current: 0, total };
    progress(done).map_err(copying)?;
    if !driver.create(dst, &Default::default())? {
        return Err(CopyError::Taken);
    }
    let target = driver.path(dst)?.ok_or(DriverError::NoSuchVolume)?;
    crate::sys::copy::copy_tree_with_progress(&source, &target, &mut |n| {
        done.current += n;
        done.total = done.total.max(done.current); // files may grow meanwhile
        progress(done)
    })
    .map_err(copying)?;
    // The clone is acknowledged as a volume once its row is ready: its data
    // (and the folders made for it) must be on disk by then.
    crate::sys::sync_filesystem(&target)
        .map_err(|e| DriverError::io("syncing the cloned volume", e))?;
    Ok(())
}

/// `snap-<time to the millisecond>`, with `-2`, `-3`, … when taken.
fn time_name(taken: &[SnapshotInfo]) -> String {
    let base = chrono::Utc::now()
        .format("snap-%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    let free = |candidate: &String| !taken.iter().any(|s| &s.name == candidate);
    std::iter::once(base.clone())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(free)
        .unwrap_or(base)
}
