//! The `local` driver: Docker's default. Each volume is a folder
//! `<root>/volumes/<name>/_data`; with `type`/`device`/`o` options a
//! filesystem is mounted there at the first mount id and unmounted at the
//! last, so a tmpfs volume is empty at each first use (Docker's behaviour).
//!
//! Durability: the volume's row is the durable record (see the service).
//! A create makes its two folders without syncing them; the folders are
//! synced at the volume's first mount, before anything can write into it,
//! and start-up syncs the whole filesystem once, so a volume that ever held
//! data has durable folders, and one that never did is made again from its
//! row if a power cut took its folders. A remove renames the volume's
//! folder into `.trash/<uid>` and the service destroys it after the delete
//! has committed. The move is not synced before that commit, which leaves a
//! tombstone (`store/tombstones.rs`); `volumes/` is synced later
//! (`Trash::settle`), and at once before the name is used again (create, or
//! rename to it), so a folder under a name is never a removed volume's
//! brought back by a power cut.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::local_opts::{self, LocalMount};
use super::local_spares::{Spares, SPARE_DIR};
use super::mount_ids::MountIds;
use super::{sync_dir, DriverError, DriverOptions, DriverVolume, Retiring, Trash, VolumeDriver};
use crate::sys::mount;
use crate::sys::remove_tree::remove_tree_same_fs;

/// The local driver over one root's `volumes/` folder.
#[derive(Debug)]
pub struct LocalDriver {
    volumes_dir: PathBuf,
    /// Active mount ids per volume; the service's per-name lock orders
    /// calls for one volume.
    active: MountIds,
    /// Volumes created by this process whose folders are not synced yet.
    unsynced: parking_lot::Mutex<HashSet<String>>,
    /// Names whose folder was moved to the trash since `volumes/` was last
    /// synced. The lock is held across that sync, so a create that finds
    /// its name here cannot make its folder before the move is durable.
    moved_away: parking_lot::Mutex<HashSet<String>>,
    /// Whether this process has synced `volumes/` for moves yet (set and
    /// read under `moved_away`'s lock).
    synced_once: std::sync::atomic::AtomicBool,
    /// Folders made ahead for creates (`with_spares`).
    spares: Option<std::sync::Arc<Spares>>,
}

/// The folder under `volumes/` that removed volumes wait in, by uid, until
/// they are destroyed. Its name is no valid volume name.
pub const TRASH_DIR: &str = ".trash";

impl LocalDriver {
    /// A driver keeping its volumes under `volumes_dir` (which must exist).
    pub fn new(volumes_dir: &Path) -> Self {
        LocalDriver {
            volumes_dir: volumes_dir.to_path_buf(),
            active: MountIds::default(),
            unsynced: Default::default(),
            moved_away: Default::default(),
            synced_once: Default::default(),
            spares: None,
        }
    }

    /// Keeps `count` empty volume folders made ahead in `volumes/.spare`,
    /// so a create is one rename (see `local_spares`).
    pub fn with_spares(mut self, count: usize) -> Self {
        self.spares = Spares::start(&self.volumes_dir, count);
        self
    }

    fn trash_dir(&self) -> PathBuf {
        self.volumes_dir.join(TRASH_DIR)
    }

    /// The trash folder, made if missing; refused if it is anything but a
    /// folder of its own (a symlink planted there is never followed).
    fn usable_trash(&self) -> Result<PathBuf, DriverError> {
        let trash = self.trash_dir();
        create_dir_if_missing(&trash)?;
        let meta = std::fs::symlink_metadata(&trash)
            .map_err(|e| DriverError::io(format!("checking {}", trash.display()), e))?;
        match meta.is_dir() {
            true => Ok(trash),
            false => Err(not_a_folder(&trash)),
        }
    }

    /// Unmounts the volume's own filesystem (options: one on `_data`) if
    /// it is mounted; refuses if any other mount of `mounts` lies inside
    /// the volume's folder, or if two are stacked on `_data` (unmounting
    /// one would leave the other's files to be deleted with the volume).
    fn unmount_own(&self, name: &str, mounts: &[PathBuf]) -> Result<(), DriverError> {
        let (dir, data) = (self.volume_dir(name), self.data_dir(name));
        let inside: Vec<_> = mounts.iter().filter(|m| m.starts_with(&dir)).collect();
        let busy = |context: String| {
            DriverError::io(
                context,
                std::io::Error::from(std::io::ErrorKind::ResourceBusy),
            )
        };
        if inside.iter().any(|m| **m != data) {
            return Err(busy(format!(
                "a filesystem is mounted inside {}",
                dir.display()
            )));
        }
        if inside.len() > 1 {
            let context = format!(
                "{} filesystems are mounted on {}",
                inside.len(),
                data.display()
            );
            return Err(busy(context));
        }
        if inside.is_empty() {
            return Ok(());
        }
        mount::unmount_when_free(&data)
            .map_err(|e| DriverError::io(format!("unmounting {}", data.display()), e))
    }

    /// One volume into the trash: a filesystem mounted on `_data` (options)
    /// is unmounted first; any other mount inside refuses the move.
    fn retire_one(&self, name: &str, uid: &str, mounts: &[PathBuf]) -> Result<bool, DriverError> {
        let dir = self.volume_dir(name);
        if !dir.is_dir() {
            return Ok(false);
        }
        self.unmount_own(name, mounts)?;
        let to = self.trash_dir().join(uid);
        super::rename_noreplace(&dir, &to).map_err(|e| {
            DriverError::io(format!("moving {} to {}", dir.display(), to.display()), e)
        })?;
        // Not synced: the commit that follows leaves a tombstone (see the
        // module docs), and `settle` syncs the move later.
        self.moved_away.lock().insert(name.to_string());
        self.active.forget(name);
        self.forget_unsynced(name);
        Ok(true)
    }

    /// Before `name` gets a folder again: if a move of a folder of that
    /// name to the trash is not durable yet, make it so (a power cut could
    /// otherwise bring the removed folder back in place of the new one).
    fn settle_before_reuse(&self, name: &str) -> Result<(), DriverError> {
        self.sync_moves_if(|moved| moved.contains(name))
    }

    /// Syncs `volumes/`, making every move to the trash so far durable, if
    /// `needed` says so of the names moved since the last sync, or if this
    /// process has not synced yet (an earlier run's moves are not in
    /// `moved_away`: a kill leaves them in the page cache only).
    fn sync_moves_if(
        &self,
        needed: impl FnOnce(&HashSet<String>) -> bool,
    ) -> Result<(), DriverError> {
        use std::sync::atomic::Ordering;
        let mut moved = self.moved_away.lock();
        if !self.synced_once.load(Ordering::SeqCst) || needed(&moved) {
            sync_dir(&self.volumes_dir)?;
            self.synced_once.store(true, Ordering::SeqCst);
            moved.clear();
            crate::sys::ShrinkWhenSparse::shrink_when_sparse(&mut *moved);
        }
        Ok(())
    }

    fn forget_unsynced(&self, name: &str) {
        let mut unsynced = self.unsynced.lock();
        unsynced.remove(name);
        crate::sys::ShrinkWhenSparse::shrink_when_sparse(&mut *unsynced);
    }

    /// Syncs the folders of a volume this process created, once: `_data`'s
    /// entry lives in the volume folder, the volume folder's in `volumes/`.
    fn make_durable(&self, name: &str) -> Result<(), DriverError> {
        if !self.unsynced.lock().contains(name) {
            return Ok(());
        }
        sync_dir(&self.volume_dir(name))?;
        sync_dir(&self.volumes_dir)?;
        self.forget_unsynced(name);
        Ok(())
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.volumes_dir.join(name)
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    /// Mounts the volume's filesystem on `_data`. With `o=loop` and a file
    /// as `device`, the file is attached to a loop device first (autoclear:
    /// it detaches by itself at the last unmount), as mount(8) would.
    fn mount_fs(&self, spec: &LocalMount, target: &Path) -> Result<(), DriverError> {
        if mount::is_mounted(target) {
            // Left mounted by a previous daemon (live restore): adopt it.
            return Ok(());
        }
        let mount_error = |source| DriverError::Mount {
            device: spec.device.clone(),
            target: target.display().to_string(),
            data: spec.options.clone(),
            source,
        };
        let (wants_loop, options) = spec.without_loop_option();
        if !wants_loop {
            return mount::mount(&spec.device, target, &spec.fstype, &spec.options)
                .map_err(mount_error);
        }
        let read_only = options.split(',').any(|o| o == "ro");
        let device =
            crate::sys::loopdev::attach(Path::new(&spec.device), read_only).map_err(mount_error)?;
        mount::mount(
            &device.path.display().to_string(),
            target,
            &spec.fstype,
            &options,
        )
        .map_err(mount_error)
    }
}

impl VolumeDriver for LocalDriver {
    fn name(&self) -> &str {
        "local"
    }

    fn validate(&self, options: &DriverOptions) -> Result<(), DriverError> {
        local_opts::parse(options).map(|_| ())
    }

    fn create(&self, name: &str, options: &DriverOptions) -> Result<bool, DriverError> {
        local_opts::parse(options)?;
        self.settle_before_reuse(name)?;
        if (self.spares.as_ref()).is_some_and(|s| s.take_into(&self.volume_dir(name))) {
            self.unsynced.lock().insert(name.to_string());
            return Ok(true);
        }
        let made_dir = create_dir_if_missing(&self.volume_dir(name))?;
        let made = match create_dir_if_missing(&self.data_dir(name)) {
            Ok(made) => made,
            Err(e) => {
                // The trait's contract: what this call made goes again.
                if made_dir {
                    let _ = std::fs::remove_dir(self.volume_dir(name));
                }
                return Err(e);
            }
        };
        if made {
            self.unsynced.lock().insert(name.to_string());
        }
        Ok(made)
    }

    fn remove(&self, name: &str) -> Result<bool, DriverError> {
        // Refused before anything is deleted when another filesystem is
        // mounted inside (the removal would stop at it half done).
        self.unmount_own(name, &mounts_under(&self.volume_dir(name))?)?;
        self.active.forget(name);
        self.forget_unsynced(name);
        let dir = self.volume_dir(name);
        remove_tree_same_fs(&dir)
            .map_err(|e| DriverError::io(format!("removing {}", dir.display()), e))
    }

    fn rename(&self, old: &str, new: &str) -> Result<(), DriverError> {
        self.make_durable(old)?;
        self.settle_before_reuse(new)?;
        super::rename_durable(&self.volume_dir(old), &self.volume_dir(new))
    }

    fn path(&self, name: &str) -> Result<Option<PathBuf>, DriverError> {
        // A folder without `_data` is a create a crash cut between its two
        // folders: no storage yet (start-up makes the rest).
        let data = self.data_dir(name);
        Ok(data.is_dir().then_some(data))
    }

    fn mount(&self, name: &str, options: &DriverOptions, id: &str) -> Result<PathBuf, DriverError> {
        let data = self.data_dir(name);
        if !data.is_dir() {
            return Err(DriverError::NoSuchVolume);
        }
        self.make_durable(name)?;
        if self.active.is_unheld(name) {
            if let Some(spec) = local_opts::parse(options)? {
                self.mount_fs(&spec, &data)?;
            }
        }
        self.active.add(name, id);
        Ok(data)
    }

    fn unmount(&self, name: &str, id: &str) -> Result<bool, DriverError> {
        let data = self.data_dir(name);
        self.active.release(name, id, || {
            if !mount::is_mounted(&data) {
                return Ok(());
            }
            mount::unmount_when_free(&data)
                .map_err(|e| DriverError::io(format!("unmounting {}", data.display()), e))
        })
    }

    fn get_is_quick(&self) -> bool {
        true
    }

    fn get(&self, name: &str) -> Result<Option<DriverVolume>, DriverError> {
        Ok(self.path(name)?.map(|mountpoint| DriverVolume {
            name: name.to_string(),
            mountpoint,
            status: None,
        }))
    }

    fn list(&self) -> Result<Vec<DriverVolume>, DriverError> {
        let entries = std::fs::read_dir(&self.volumes_dir)
            .map_err(|e| DriverError::io(format!("listing {}", self.volumes_dir.display()), e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == TRASH_DIR || name == SPARE_DIR {
                continue;
            }
            if entry.path().is_dir() {
                out.push(DriverVolume {
                    mountpoint: self.data_dir(&name),
                    name,
                    status: None,
                });
            }
        }
        Ok(out)
    }

    fn mountpoint(&self, name: &str) -> Option<PathBuf> {
        Some(self.data_dir(name))
    }

    fn storage_from_row(&self) -> bool {
        true
    }

    fn trash(&self) -> Option<&dyn Trash> {
        Some(self)
    }

    fn after_reconcile(&self) {
        // Folders made before a crash but never synced (the daemon died
        // before their first mount) become durable before anything uses
        // them: one syncfs, not one fsync per volume.
        if let Err(e) = crate::sys::sync_filesystem(&self.volumes_dir) {
            tracing::warn!(error = %e, "could not sync the volumes' filesystem");
        }
    }
}

impl Trash for LocalDriver {
    fn retire(&self, volumes: &[Retiring<'_>]) -> Vec<Result<bool, DriverError>> {
        if let Err(e) = self.usable_trash() {
            let why = e.to_string();
            let unusable =
                || DriverError::io("moving to the trash", std::io::Error::other(why.clone()));
            return volumes.iter().map(|_| Err(unusable())).collect();
        }
        if let Some(spares) = &self.spares {
            spares.busy();
        }
        let mounts = match mounts_under(&self.volumes_dir) {
            Ok(mounts) => mounts,
            Err(e) => {
                let why = e.to_string();
                let unreadable =
                    || DriverError::io("moving to the trash", std::io::Error::other(why.clone()));
                return volumes.iter().map(|_| Err(unreadable())).collect();
            }
        };
        (volumes.iter())
            .map(|v| self.retire_one(v.name, v.uid, &mounts))
            .collect()
    }

    fn settle(&self) -> Result<(), DriverError> {
        self.sync_moves_if(|moved| !moved.is_empty())
    }

    fn settle_name(&self, name: &str) -> Result<(), DriverError> {
        self.settle_before_reuse(name)
    }

    fn restore(&self, uid: &str, name: &str) -> Result<(), DriverError> {
        let (from, to) = (self.trash_dir().join(uid), self.volume_dir(name));
        super::rename_noreplace(&from, &to).map_err(|e| {
            DriverError::io(
                format!("moving {} back to {}", from.display(), to.display()),
                e,
            )
        })
    }

    fn retired(&self) -> Result<Vec<String>, DriverError> {
        let trash = self.trash_dir();
        if std::fs::symlink_metadata(&trash).is_ok_and(|m| !m.is_dir()) {
            return Err(not_a_folder(&trash));
        }
        match std::fs::read_dir(&trash) {
            Ok(entries) => Ok(entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(DriverError::io(format!("listing {}", trash.display()), e)),
        }
    }

    fn destroy(&self, uid: &str) -> Result<bool, DriverError> {
        let trash = self.usable_trash()?;
        let dir = trash.join(uid);
        remove_tree_same_fs(&dir)
            .map_err(|e| DriverError::io(format!("removing {}", dir.display()), e))
    }
}

/// Creates `dir` (0755) unless it exists; returns whether it made it. Not
/// synced: see the module doc.
fn create_dir_if_missing(dir: &Path) -> Result<bool, DriverError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(DriverError::io(format!("creating {}", dir.display()), e)),
    }
}

/// The mount points at or under `dir`; an unreadable mount table refuses
/// what was to be deleted (it cannot be told to hold no mount).
fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, DriverError> {
    mount::mount_points_under(dir)
        .map_err(|e| DriverError::io("reading the mount table (/proc/self/mountinfo)", e))
}

/// The trash is something else than a folder of its own: never used.
fn not_a_folder(trash: &Path) -> DriverError {
    let kind = std::io::Error::other("not a folder (a symlink or a file is never used)");
    DriverError::io(format!("the trash {}", trash.display()), kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_idempotent_and_remove_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let driver = LocalDriver::new(dir.path());
        let none = DriverOptions::new();
        assert!(driver.create("v1", &none).unwrap());
        assert!(!driver.create("v1", &none).unwrap());
        std::fs::write(dir.path().join("v1/_data/f"), b"x").unwrap();
        assert_eq!(
            driver.path("v1").unwrap().unwrap(),
            dir.path().join("v1/_data")
        );
        assert_eq!(driver.list().unwrap().len(), 1);
        assert!(driver.remove("v1").unwrap());
        assert!(!driver.remove("v1").unwrap());
        assert!(driver.path("v1").unwrap().is_none());
    }

    #[test]
    fn a_name_moved_to_the_trash_is_synced_before_it_is_used_again() {
        let dir = tempfile::tempdir().unwrap();
        let driver = LocalDriver::new(dir.path());
        let none = DriverOptions::new();
        for name in ["a", "b", "c"] {
            driver.create(name, &none).unwrap();
        }
        let retiring = |name, uid| Retiring { name, uid };
        let answers = driver.retire(&[retiring("a", "u1"), retiring("b", "u2")]);
        assert!(answers.iter().all(|a| matches!(a, Ok(true))));
        assert!(dir.path().join(".trash/u1/_data").is_dir());
        let moved = |d: &LocalDriver| d.moved_away.lock().len();
        assert_eq!(moved(&driver), 2);
        // Another name: nothing to wait for.
        driver.create("d", &none).unwrap();
        assert_eq!(moved(&driver), 2);
        // The same name: every move so far is synced first.
        driver.create("a", &none).unwrap();
        assert_eq!(moved(&driver), 0);
        driver.retire(&[retiring("c", "u3")]);
        driver.rename("d", "c").unwrap();
        assert_eq!(moved(&driver), 0);
        driver.retire(&[retiring("c", "u4")]);
        driver.settle().unwrap();
        assert!(driver.synced_once.load(std::sync::atomic::Ordering::SeqCst));
        driver.settle().unwrap();
        assert_eq!(moved(&driver), 0);
        let mut retired = driver.retired().unwrap();
        retired.sort();
        assert_eq!(retired, ["u1", "u2", "u3", "u4"]);
    }

    #[test]
    fn the_first_settle_of_a_process_syncs_an_earlier_runs_moves() {
        let dir = tempfile::tempdir().unwrap();
        let driver = LocalDriver::new(dir.path());
        // Nothing moved by this process, but an earlier run's moves may sit
        // in the page cache only: the first settle syncs all the same.
        assert!(driver.moved_away.lock().is_empty());
        assert!(!driver.synced_once.load(std::sync::atomic::Ordering::SeqCst));
        driver.settle().unwrap();
        assert!(driver.synced_once.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn plain_volume_mount_ids_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let driver = LocalDriver::new(dir.path());
        let none = DriverOptions::new();
        driver.create("v", &none).unwrap();
        driver.mount("v", &none, "a").unwrap();
        driver.mount("v", &none, "b").unwrap();
        assert!(driver.unmount("v", "a").unwrap());
        assert!(!driver.unmount("v", "a").unwrap());
        assert!(driver.unmount("v", "b").unwrap());
        assert!(matches!(
            driver.mount("nope", &none, "a"),
            Err(DriverError::NoSuchVolume)
        ));
    }
}
