//! Volume drivers: the trait every backend implements and the registry the
//! volume service looks drivers up in.
//!
//! The trait mirrors the Docker volume plugin protocol (`VolumeDriver.Create`,
//! `.Remove`, `.Mount`, `.Unmount`, `.Path`, `.Get`, `.List`,
//! `.Capabilities`), so an in-tree driver and an external plugin look the
//! same to the service. Drivers own their storage; the service owns the
//! metadata (names, labels, options, holders) and calls drivers only after
//! it has recorded its intent, so a crash between the two is repairable.

mod error;
pub mod local;
mod local_opts;
mod local_spares;
pub mod mount_ids;
pub mod plugin;
pub mod thin;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::DriverError;
pub use local::TRASH_DIR;

/// Options given to a driver at create, as `-o key=value` pairs.
pub type DriverOptions = BTreeMap<String, String>;

/// Whether a volume of `driver` with `options` keeps its data on a device,
/// a share or tmpfs rather than in berth's folder: a local volume with
/// mount options (`type`, `device`, `o`). A copy of its folder would miss
/// the data, and filling it in place could not be undone.
pub fn data_outside_berth(driver: &str, options: &DriverOptions) -> bool {
    driver == "local"
        && ["type", "device", "o"]
            .iter()
            .any(|k| options.contains_key(*k))
}

/// Whether a driver's volumes are visible to this host only or cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Local,
    Global,
}

impl Scope {
    /// The wire spelling (`"local"`, `"global"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

/// What `Capabilities` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub scope: Scope,
}

/// A volume as its driver sees it (`VolumeDriver.Get` / `.List`).
#[derive(Debug, Clone, PartialEq)]
pub struct DriverVolume {
    pub name: String,
    pub mountpoint: PathBuf,
    /// Driver-specific status shown by single-volume inspect; `None` when
    /// the driver reports nothing (the local driver).
    pub status: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A volume backend.
///
/// Every method may be called concurrently for *different* names; the
/// service serialises calls for the same name with its per-name lock, so an
/// implementation needs no lock of its own around one volume's lifecycle.
pub trait VolumeDriver: Send + Sync {
    /// The name users pass as `--driver`.
    fn name(&self) -> &str;

    /// Scope of the volumes (`VolumeDriver.Capabilities`). Local unless
    /// the driver says otherwise, as Docker assumes for a plugin that does
    /// not answer `Capabilities`.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            scope: Scope::Local,
        }
    }

    /// Checks create options without side effects. The service calls it
    /// before it records anything, so a bad option changes nothing.
    /// Errors: [`DriverError::InvalidOption`].
    fn validate(&self, options: &DriverOptions) -> Result<(), DriverError>;

    /// Creates storage for `name`. Idempotent: storage that already exists
    /// is kept and `Ok(false)` returned. On error, the driver removes
    /// whatever it made itself before returning.
    fn create(&self, name: &str, options: &DriverOptions) -> Result<bool, DriverError>;

    /// Destroys the storage of `name` and all its data. Idempotent: absent
    /// storage is `Ok(false)`. The service never calls it while mount ids
    /// are active; a driver must still refuse to delete through a mount.
    fn remove(&self, name: &str) -> Result<bool, DriverError>;

    /// Where the volume's data is reached (the `Mountpoint`), whether or not
    /// it is mounted. `None` if the driver has no such volume.
    fn path(&self, name: &str) -> Result<Option<PathBuf>, DriverError>;

    /// Makes the volume usable for the caller identified by `id` and returns
    /// the path to use. Reference-counted by id: the first id does the real
    /// work (a filesystem mount), later ids and repeated calls with a known
    /// id only return the path. The driver keeps its counts in memory; the
    /// service persists ids and replays them after a restart.
    fn mount(&self, name: &str, options: &DriverOptions, id: &str) -> Result<PathBuf, DriverError>;

    /// Releases `id`'s use. The last id undoes the real mount. Unknown ids
    /// are `Ok(false)`. On error the id stays counted.
    fn unmount(&self, name: &str, id: &str) -> Result<bool, DriverError>;

    /// Moves `old`'s storage to `new`. Resumable: a call after a crash part
    /// way finishes what is left (steps already done are skipped), so the
    /// service can call it again from its rename journal. The service calls
    /// it only while no mount id is active and `new` has no storage (it
    /// checks [`VolumeDriver::path`] first); still, a rename never replaces
    /// anything found under `new` (see `rename_durable`): it fails instead.
    /// Errors: [`DriverError::Unsupported`] if the driver cannot rename.
    fn rename(&self, _old: &str, _new: &str) -> Result<(), DriverError> {
        Err(DriverError::Unsupported(format!(
            "the {} driver cannot rename volumes",
            self.name()
        )))
    }

    /// One volume as the driver sees it, or `None`.
    fn get(&self, name: &str) -> Result<Option<DriverVolume>, DriverError>;

    /// All volumes whose storage exists, as the driver sees them.
    fn list(&self) -> Result<Vec<DriverVolume>, DriverError>;

    /// Bytes the volume occupies, if the driver knows it without walking
    /// the data (`None`: the service measures the folder).
    fn usage(&self, _name: &str) -> Option<i64> {
        None
    }

    /// Bytes the volume can hold, if the driver sets a limit (thin: its
    /// size); cheap.
    fn capacity(&self, _name: &str) -> Option<u64> {
        None
    }

    /// The driver's storage pool, if it has one: size, allocation and the
    /// sum of its volumes' virtual sizes. Cheap (no walk of the data).
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }

    /// Returns freed space to the host (fstrim). `Ok(0)` if nothing to do.
    fn trim(&self) -> Result<u64, DriverError> {
        Ok(0)
    }

    /// Called once after start-up reconciliation has replayed every
    /// persisted mount id: the driver may release what no id holds (mounts
    /// left by a crash) and clear leftovers of interrupted work.
    fn after_reconcile(&self) {}

    /// berth's own verbs, beyond the plugin protocol; `None` if the driver
    /// has none (snapshot, clone and resize then say so).
    fn extended(&self) -> Option<&dyn ExtendedDriver> {
        None
    }

    /// Whether [`VolumeDriver::get`] is only a look at memory and one
    /// `stat` (no call to another process, no mount table): a caller may
    /// run it on an async worker instead of handing it to a thread.
    fn get_is_quick(&self) -> bool {
        false
    }

    /// Where a volume the service knows to exist is reached, without
    /// touching storage if the driver can tell (list answers thousands).
    fn mountpoint(&self, name: &str) -> Option<PathBuf> {
        self.path(name).ok().flatten()
    }

    /// Whether this driver's storage can be made from the row alone: its
    /// `create` is cheap, leaves nothing a crash would have to undo, and
    /// start-up may make it again for a ready row that lacks it. The
    /// service then records the row ready before it makes the storage (one
    /// durable commit per create); otherwise it records `creating` first
    /// and `ready` after.
    fn storage_from_row(&self) -> bool {
        false
    }

    /// Moving storage aside, for removes that commit once; `None` if the
    /// driver cannot (its removes record `removing` first).
    fn trash(&self) -> Option<&dyn Trash> {
        None
    }
}

/// A volume a remove moves to the trash: its name and the uid its storage
/// will wait under (named fields: both are strings, easy to swap).
#[derive(Debug, Clone, Copy)]
pub struct Retiring<'a> {
    pub name: &'a str,
    pub uid: &'a str,
}

/// Storage a remove moves aside before the row is deleted, destroyed once
/// the delete has committed. The service names it by the volume's uid, so
/// start-up can tell a remove that committed (no row has that uid: destroy)
/// from one that did not (the row is still there: put the storage back).
/// Each step is a rename, not made durable by itself: the commit that
/// follows it forces the filesystem's journal, which holds the rename.
pub trait Trash: Send + Sync {
    /// Moves each volume's storage aside under its uid,
    /// unmounting a filesystem mounted on the volume's data first; one
    /// answer per volume, `Ok(false)` for one with no storage. A volume
    /// whose storage cannot be moved (another mount inside it, an unusable
    /// trash) fails, nothing of it moved: the caller removes it in place.
    /// The moves need not be durable when this returns: the caller commits
    /// the rows' deletes with a tombstone each (`Store::delete_retired`)
    /// and drops the tombstones only after [`Trash::settle`].
    fn retire(&self, volumes: &[Retiring<'_>]) -> Vec<Result<bool, DriverError>>;

    /// Makes every move [`Trash::retire`] made so far durable (one sync
    /// where the filesystem needs it), and at its first call in a process
    /// also those of earlier runs. Idempotent; an error leaves the moves as
    /// they were (their tombstones must stay).
    fn settle(&self) -> Result<(), DriverError>;

    /// Before `name` gets a row again (a create, a rename to it): makes a
    /// move of storage of that name durable if one is not yet, so a power
    /// cut cannot give the new row the removed volume's storage.
    fn settle_name(&self, name: &str) -> Result<(), DriverError>;

    /// Puts the storage retired under `uid` back as `name` (its remove did
    /// not commit). Fails, changing nothing, if `name` has storage.
    fn restore(&self, uid: &str, name: &str) -> Result<(), DriverError>;

    /// The uids of storage retired and not yet destroyed.
    fn retired(&self) -> Result<Vec<String>, DriverError>;

    /// Destroys what was retired under `uid`, however far an earlier,
    /// interrupted destroy got. Idempotent: `Ok(false)` if nothing is left.
    fn destroy(&self, uid: &str) -> Result<bool, DriverError>;
}

/// A driver's storage pool as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStats {
    pub driver: String,
    /// The folder the pool's volumes live in.
    pub root: PathBuf,
    /// Bytes the pool can hold.
    pub size: u64,
    /// Bytes of the pool in use (volumes, snapshots, metadata).
    pub allocated: u64,
    /// The sum of the pool's volumes' sizes (what they may grow to).
    pub virtual_size: u64,
    /// `virtual_size / size`, two decimals.
    pub overcommit: f64,
    pub volumes: usize,
    /// Bytes the pool's backing file takes on the host, if it has one.
    pub backing_file_allocated: Option<u64>,
    /// Fraction of `size` allocated past which creates warn.
    pub high_water: f64,
}

impl PoolStats {
    /// Bytes still free in the pool.
    pub fn free(&self) -> u64 {
        self.size.saturating_sub(self.allocated)
    }
}

/// A snapshot as its driver reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// Bytes the snapshot holds that its volume does not share, at most.
    pub allocated: u64,
}

/// Snapshots, clones and resize. The service calls these with the volume's
/// name lock held and after checking holders where it matters.
pub trait ExtendedDriver {
    /// A consistent point-in-time copy of `name` (frozen for the instant of
    /// the copy if mounted; the freeze is always undone). Fails if `snap`
    /// exists. Nothing is left behind on error.
    fn snapshot_create(&self, name: &str, snap: &str) -> Result<(), DriverError>;

    /// Snapshots of `name`, oldest first.
    fn snapshot_list(&self, name: &str) -> Result<Vec<SnapshotInfo>, DriverError>;

    /// Deletes a snapshot, returning its space. Idempotent (`Ok(false)`).
    fn snapshot_remove(&self, name: &str, snap: &str) -> Result<bool, DriverError>;

    /// Makes `name`'s content that of `snap`. The caller guarantees the
    /// volume is not mounted. Atomic: the volume is whole before or after.
    fn snapshot_restore(&self, name: &str, snap: &str) -> Result<(), DriverError>;

    /// Storage for a new volume `dst` holding a copy of `src`. On error
    /// nothing of `dst` is left.
    fn clone_volume(&self, src: &str, dst: &str) -> Result<(), DriverError>;

    /// Grows `name` to `size` bytes (online if mounted). Shrinking is
    /// refused.
    fn resize(&self, name: &str, size: u64) -> Result<(), DriverError>;

    /// Mounts snapshot `snap` of `name` read-only at a folder of the
    /// driver's choosing and returns it (for a backup to read). Idempotent:
    /// an open snapshot's folder is returned again. `options` are the
    /// volume's. The caller closes it with [`Self::close_snapshot`].
    fn open_snapshot(
        &self,
        name: &str,
        snap: &str,
        options: &DriverOptions,
    ) -> Result<PathBuf, DriverError>;

    /// Unmounts what [`Self::open_snapshot`] mounted and removes its folder.
    /// Idempotent (`Ok(false)` when it was not open).
    fn close_snapshot(&self, name: &str, snap: &str) -> Result<bool, DriverError>;

    /// The ranges where snapshot `snap` of `name` may differ from its
    /// snapshot `since` (from zeros without one), with `snap`'s data open
    /// for reading. Read-only; errors when either snapshot is missing.
    fn block_source(
        &self,
        name: &str,
        snap: &str,
        since: Option<&str>,
    ) -> Result<BlockSource, DriverError>;

    /// Whether `name`'s current content may differ from its snapshot
    /// `snap` (it was written, or mounted read-write, since). Read-only.
    fn changed_since(&self, name: &str, snap: &str) -> Result<bool, DriverError>;

    /// A staged copy of `name`'s storage to receive a block stream into: a
    /// clone of snapshot `base`, or empty (all zeros). The caller holds
    /// the name lock; dropping the staged copy deletes it.
    fn stage_blocks(&self, name: &str, base: Option<&str>) -> Result<StagedImage, DriverError>;

    /// Makes `staged` the content of `name` (atomic: old or new, never a
    /// mix) and keeps it as snapshot `snap`. Refused while `name` is
    /// mounted. On error the staged copy is deleted.
    fn install_blocks(
        &self,
        name: &str,
        staged: StagedImage,
        snap: &str,
    ) -> Result<(), DriverError>;
}

/// What [`ExtendedDriver::block_source`] gives: the changed ranges of a
/// snapshot's data of `size` bytes, and that data opened.
pub struct BlockSource {
    pub image: std::fs::File,
    pub size: u64,
    pub changes: Vec<crate::sys::extents::Change>,
}

/// A staged copy of a volume's storage being filled (see
/// [`ExtendedDriver::stage_blocks`]); deleted when dropped unless
/// installed.
pub struct StagedImage {
    file: std::fs::File,
    path: Option<PathBuf>,
    size: u64,
}

impl StagedImage {
    pub(crate) fn new(file: std::fs::File, path: PathBuf, size: u64) -> Self {
        StagedImage {
            file,
            path: Some(path),
            size,
        }
    }

    /// The staged data, open for reading and writing.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// Its size in bytes (the volume's).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &std::path::Path {
        self.path
            .as_deref()
            .expect("a staged image has its path until installed")
    }

    /// The path, no longer deleted on drop (the installer owns it now).
    pub(crate) fn into_path(mut self) -> PathBuf {
        self.path
            .take()
            .expect("a staged image has its path until installed")
    }
}

impl Drop for StagedImage {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The name used when a request names no driver.
pub const DEFAULT_DRIVER: &str = "local";

/// Drivers by name: berth's own, fixed after start-up (their lookups take
/// no lock), then volume plugins, found and activated at first use.
#[derive(Clone, Default)]
pub struct DriverRegistry {
    drivers: HashMap<String, Arc<dyn VolumeDriver>>,
    plugins: Option<Arc<plugin::Plugins>>,
}

impl DriverRegistry {
    /// Adds a driver under its own name, replacing one of the same name.
    pub fn register(&mut self, driver: Arc<dyn VolumeDriver>) {
        self.drivers.insert(driver.name().to_string(), driver);
    }

    /// Looks up volume plugins as [`plugin::Plugins`] says, after the
    /// registered drivers.
    pub fn with_plugins(&mut self, plugins: Arc<plugin::Plugins>) {
        self.plugins = Some(plugins);
    }

    /// The driver called `name` (`""` means [`DEFAULT_DRIVER`]): a
    /// registered one, else a volume plugin of that name (activated at
    /// first use). Docker's "plugin not found" wording otherwise.
    pub fn get(&self, name: &str) -> Result<Arc<dyn VolumeDriver>, DriverError> {
        let name = or_default(name);
        if let Some(driver) = self.builtin(name) {
            return Ok(driver);
        }
        match &self.plugins {
            Some(plugins) => Ok(plugins.get(name)?),
            None => Err(DriverError::UnknownDriver(name.to_string())),
        }
    }

    /// A driver usable without calling anything: a registered one, or a
    /// plugin already activated.
    pub fn ready(&self, name: &str) -> Option<Arc<dyn VolumeDriver>> {
        let name = or_default(name);
        self.builtin(name).or_else(|| {
            let plugin = self.plugins.as_ref()?.active_one(name)?;
            Some(plugin as Arc<dyn VolumeDriver>)
        })
    }

    /// A registered (berth's own) driver, never a plugin.
    pub fn builtin(&self, name: &str) -> Option<Arc<dyn VolumeDriver>> {
        self.drivers.get(name).cloned()
    }

    /// The volume plugins, if plugins are looked up.
    pub fn plugins(&self) -> Option<&Arc<plugin::Plugins>> {
        self.plugins.as_ref()
    }

    /// Every registered driver.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn VolumeDriver>> {
        self.drivers.values()
    }
}

/// `name`, or [`DEFAULT_DRIVER`] for a request that names none.
fn or_default(name: &str) -> &str {
    if name.is_empty() {
        DEFAULT_DRIVER
    } else {
        name
    }
}

impl std::fmt::Debug for DriverRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.drivers.keys()).finish()
    }
}

/// Driver options from pairs, for tests of option parsers.
#[cfg(test)]
pub(crate) fn test_options(pairs: &[(&str, &str)]) -> DriverOptions {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Renames `from` to `to` if `from` still exists (a resumed rename may have
/// moved it already: `from` gone is a step done, or one with nothing to
/// move), then syncs `to`'s parent so the move is durable. Never replaces
/// anything at `to` (`renameat2(RENAME_NOREPLACE)`): storage already there
/// is an error, except an empty folder (a mount point left behind), which
/// holds nothing and is replaced.
pub(crate) fn rename_durable(from: &Path, to: &Path) -> Result<(), DriverError> {
    let renaming = |e| {
        DriverError::io(
            format!("renaming {} to {}", from.display(), to.display()),
            e,
        )
    };
    if std::fs::symlink_metadata(from).is_ok() {
        match rename_noreplace(from, to) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists
                    && is_empty_dir(to)
                    && from.is_dir() =>
            {
                // remove_dir refuses a folder that is not empty or is a
                // mount point in use, so nothing is lost here.
                std::fs::remove_dir(to).map_err(renaming)?;
                rename_noreplace(from, to).map_err(renaming)?;
            }
            other => other.map_err(renaming)?,
        }
    }
    sync_dir(to.parent().unwrap_or(Path::new("/")))
}

/// fsyncs a folder: the entries made in it, renamed into or out of it are
/// on disk when this returns.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), DriverError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| DriverError::io(format!("syncing {}", dir.display()), e))
}

/// `rename(2)` that fails with `AlreadyExists` instead of replacing `to`.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (cfrom, cto) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cfrom.as_ptr(),
            libc::AT_FDCWD,
            cto.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        // A filesystem without RENAME_NOREPLACE: check, then rename (the
        // caller holds the volume's name lock, so nothing races us here).
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(std::io::Error::from_raw_os_error(libc::EEXIST));
            }
            std::fs::rename(from, to)
        }
        _ => Err(err),
    }
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
        && std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

#[cfg(test)]
mod rename_tests {
    use super::rename_durable;

    #[test]
    fn rename_durable_never_replaces_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join("f"), b"a").unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("f"), b"b").unwrap();
        assert!(
            rename_durable(&a, &b).is_err(),
            "a folder with content is kept"
        );
        assert_eq!(std::fs::read(b.join("f")).unwrap(), b"b");
        assert_eq!(std::fs::read(a.join("f")).unwrap(), b"a");
        std::fs::remove_file(b.join("f")).unwrap();
        rename_durable(&a, &b).unwrap(); // an empty folder is replaced
        assert_eq!(std::fs::read(b.join("f")).unwrap(), b"a");
        rename_durable(&a, &b).unwrap(); // resumed: the step is done
        assert!(!a.exists());
        let (x, y) = (dir.path().join("x.img"), dir.path().join("y.img"));
        std::fs::write(&x, b"x").unwrap();
        std::fs::write(&y, b"y").unwrap();
        assert!(rename_durable(&x, &y).is_err(), "a file is never replaced");
        assert_eq!(std::fs::read(&y).unwrap(), b"y");
    }
}
