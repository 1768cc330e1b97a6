//! Volume import from a tar stream (what `podman volume import` does),
//! all or nothing.
//!
//! - **Exclusive.** An import holds the volume's name lock from start to
//!   end and is refused while any container has the volume mounted, so
//!   nothing but the import writes to it (a container racing symlinks into
//!   the staging folder could otherwise steer root's writes onto the host);
//!   a container starting meanwhile waits for the lock.
//! - **Staged.** The archive is extracted whole into a staging folder at
//!   the volume's root (same filesystem: moving into place is a rename),
//!   with the checks image layers get, and must end with its end-of-archive
//!   block; a hostile, cut-short or non-tar archive changes nothing.
//! - **Rolled forward.** Before the first rename the staging folder is
//!   marked `merging`; a crash after that is finished at the next start-up
//!   (the import's mount id, left in the store, says which volume), a crash
//!   before it only leaves a staging folder to delete.
//! - Staging folders are recognised by a `trusted.` extended attribute,
//!   which containers cannot set, not by their name alone.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{CreateRequest, VolumeError, VolumeService, OPERATION_MOUNT_PREFIX};
use crate::archive::digest::{check_digest, HashingReader};
use crate::archive::ArchiveError;
use crate::driver::VolumeDriver;
use crate::store::VolumeRecord;

/// Name prefix of staging folders (never exported).
const STAGING_PREFIX: &str = ".berth-import-";
/// The attribute that marks a folder as berth's staging, and its states.
const STAGING_XATTR: &str = "trusted.berth.import";
const STAGED: &[u8] = b"staged";
const MERGING: &[u8] = b"merging";
/// Merging, and the archive had a root entry: the staging folder's owner,
/// mode and attributes go to the volume root when the merge is done.
const MERGING_ROOT: &[u8] = b"merging+root";

impl VolumeService {
    /// Extracts a tar stream (plain, gzip or zstd) into volume `name`,
    /// merged with what it holds (an archive entry replaces the file of the
    /// same path; an archive root entry `./` gives the volume root its
    /// owner and mode). See the module documentation for the guarantees.
    pub fn import(&self, name: &str, input: impl Read) -> Result<(), VolumeError> {
        self.import_checked(name, input, None)
    }

    /// [`VolumeService::import`]; with `announced`, the stream's content
    /// digest must match the one `announced` gives once the stream has
    /// ended (else nothing is imported).
    pub fn import_checked(
        &self,
        name: &str,
        input: impl Read,
        announced: Option<AnnouncedDigest>,
    ) -> Result<(), VolumeError> {
        self.import_with(name, |staging| {
            unpack_archive(name, input, staging, announced)
        })
    }

    /// [`VolumeService::import_checked`] into `request`'s volume, made
    /// first when it does not exist (`volume import --create`; refused
    /// when it does and `exclusive`) with the request's driver, options
    /// and labels, all or nothing (see `import_new.rs`). Returns whether
    /// the volume was made.
    pub fn import_creating(
        &self,
        request: CreateRequest,
        input: impl Read,
        exclusive: bool,
        announced: Option<AnnouncedDigest>,
    ) -> Result<bool, VolumeError> {
        let name = super::import_new::import_name(&request)?;
        match self.get(&name) {
            Ok(_) if exclusive => Err(VolumeError::NameTaken { op: "import", name }),
            Ok(_) => self.import_checked(&name, input, announced).map(|()| false),
            Err(VolumeError::NotFound { .. }) => {
                let fill = |root: &Path| unpack_archive(&name, input, root, announced).map(|_| ());
                self.import_new(request, fill).map(|_| true)
            }
            Err(e) => Err(e),
        }
    }

    /// Import's guarantees for content from any source: `fill` writes the
    /// new content into the (empty) staging folder it is given and says
    /// whether that folder's own owner, mode and attributes are the
    /// content's root (then they go to the volume's root). Used by tar
    /// import and by restore from a backup.
    pub fn import_with(
        &self,
        name: &str,
        fill: impl FnOnce(&Path) -> Result<bool, VolumeError>,
    ) -> Result<(), VolumeError> {
        let _guard = self.locks.lock(name);
        let record = self.ready("import", name)?;
        // Only mounts matter: a stopped container that refers to the volume
        // cannot write, and one starting now waits for the name lock.
        self.refuse_if_mounted("import", name)?;
        refuse_tmpfs(&record)?;
        let driver = self.driver_of("import", &record)?;
        let id = super::archive::operation_mount_id("import");
        let root = self.mount_locked(&record, driver.as_ref(), &id)?;
        let result = import_into(name, fill, &root, &id);
        match result {
            Err(Failed {
                merge_begun: true,
                error,
            }) => {
                // Keep the mount id stored: start-up finishes the merge.
                let _ = driver.unmount(name, &id);
                Err(*error)
            }
            other => {
                self.unmount_locked(&record, driver.as_ref(), &id);
                other.map_err(|f| *f.error)?;
                self.publish("import", name, &[]);
                Ok(())
            }
        }
    }

    /// Mounts for an operation while the caller holds the name lock; the id
    /// is stored first, so a crash leaves a trace start-up settles.
    pub(super) fn mount_locked(
        &self,
        record: &VolumeRecord,
        driver: &dyn VolumeDriver,
        id: &str,
    ) -> Result<PathBuf, VolumeError> {
        let name = record.name.as_str();
        self.store
            .add_mount(name, id)
            .map_err(|e| VolumeError::store("import", name, e))?;
        driver.mount(name, &record.options, id).map_err(|e| {
            let _ = self.store.remove_mount(name, id);
            VolumeError::driver("import", name, e)
        })
    }

    /// Undoes [`VolumeService::mount_locked`]; failures are logged (the id
    /// stays stored and start-up releases it).
    pub(super) fn unmount_locked(
        &self,
        record: &VolumeRecord,
        driver: &dyn VolumeDriver,
        id: &str,
    ) {
        let name = record.name.as_str();
        let released = driver
            .unmount(name, id)
            .map_err(|e| e.to_string())
            .and_then(|_| self.store.remove_mount(name, id).map_err(|e| e.to_string()));
        if let Err(e) = released {
            tracing::error!(volume = %name, mount_id = %id, error = %e, "releasing an import's mount failed");
        }
    }

    /// Start-up, for a mount id an operation left: an import's volume gets
    /// its staging settled (a merge under way is finished); then the id is
    /// dropped. Caller holds the name lock.
    pub(super) fn settle_operation_mount(
        &self,
        record: &VolumeRecord,
        driver: &dyn VolumeDriver,
        id: &str,
    ) -> Result<(), VolumeError> {
        let name = record.name.as_str();
        if id.starts_with(&format!("{OPERATION_MOUNT_PREFIX}import-")) {
            let root = driver
                .mount(name, &record.options, id)
                .map_err(|e| VolumeError::driver("reconcile", name, e))?;
            let settled = settle_staging(&root, Some(id));
            let _ = driver.unmount(name, id);
            settled.map_err(|e| archive_error(name, ArchiveError::io(&root, e)))?;
        }
        self.store
            .remove_mount(name, id)
            .map_err(|e| VolumeError::store("reconcile", name, e))?;
        Ok(())
    }
}

/// Gives the content digest the sender announced, once the stream has
/// ended (an HTTP trailer is known only then); `None` when none came.
pub type AnnouncedDigest = Box<dyn FnOnce() -> Option<String> + Send>;

/// Unpacks tar stream `input` (plain, gzip or zstd) into `dest`, checking
/// its digest against `announced` when given. Returns whether the archive
/// had a root entry (then `dest` has the root's owner and mode).
fn unpack_archive(
    name: &str,
    input: impl Read,
    dest: &Path,
    announced: Option<AnnouncedDigest>,
) -> Result<bool, VolumeError> {
    let failed = |e| archive_error(name, e);
    let reader = crate::archive::decompress(input).map_err(failed)?;
    let Some(announced) = announced else {
        return Ok(
            crate::archive::extract::unpack_complete(reader, dest, false)
                .map_err(failed)?
                .had_root,
        );
    };
    let mut hashing = HashingReader::new(reader);
    let unpacked =
        crate::archive::extract::unpack_complete(&mut hashing, dest, false).map_err(failed)?;
    let received = hashing.finish().map_err(failed)?;
    check_digest(announced().as_deref(), &received).map_err(failed)?;
    Ok(unpacked.had_root)
}

pub(super) fn archive_error(name: &str, source: ArchiveError) -> VolumeError {
    VolumeError::Archive {
        name: name.to_string(),
        source,
    }
}

/// A tmpfs volume holds data only while a container has it mounted, and
/// import refuses mounted volumes: an import could only vanish.
pub(super) fn refuse_tmpfs(record: &VolumeRecord) -> Result<(), VolumeError> {
    if record.options.get("type").map(String::as_str) != Some("tmpfs") {
        return Ok(());
    }
    let why = "a tmpfs volume holds data only while a container has it mounted; \
               there is nothing to import into";
    Err(VolumeError::driver(
        "import",
        &record.name,
        crate::driver::DriverError::Unsupported(why.into()),
    ))
}

/// An import that failed, and whether its merge had begun (then the
/// staging folder must stay for start-up to finish).
struct Failed {
    error: Box<VolumeError>,
    merge_begun: bool,
}

impl From<VolumeError> for Failed {
    fn from(error: VolumeError) -> Self {
        Failed {
            error: Box::new(error),
            merge_begun: false,
        }
    }
}

/// The staging folder of the import with mount id `id` (named after it,
/// so start-up finds it even before it is marked).
fn staging_of(root: &Path, id: &str) -> PathBuf {
    let suffix = id.rsplit('-').next().unwrap_or(id);
    root.join(format!("{STAGING_PREFIX}{suffix}"))
}

/// Settles what an earlier run left, stages, checks, then merges.
fn import_into(
    name: &str,
    fill: impl FnOnce(&Path) -> Result<bool, VolumeError>,
    root: &Path,
    id: &str,
) -> Result<(), Failed> {
    settle_staging(root, None).map_err(|e| archive_error(name, ArchiveError::io(root, e)))?;
    let staging = staging_of(root, id);
    let result = stage_and_merge(name, fill, &staging, root);
    if matches!(&result, Err(f) if f.merge_begun) {
        return result;
    }
    if let Err(e) = remove_staging(&staging) {
        tracing::warn!(volume = %name, error = %e, "removing the import staging folder");
    }
    result
}

fn stage_and_merge(
    name: &str,
    fill: impl FnOnce(&Path) -> Result<bool, VolumeError>,
    staging: &Path,
    root: &Path,
) -> Result<(), Failed> {
    let io_err = |path: &Path, e| archive_error(name, ArchiveError::io(path, e));
    std::fs::create_dir(staging).map_err(|e| io_err(staging, e))?;
    set_mark(staging, STAGED).map_err(|e| io_err(staging, e))?;
    let had_root = fill(staging)?;
    if let Some(path) =
        first_kind_conflict(staging, root, Path::new("")).map_err(|e| io_err(root, e))?
    {
        return Err(VolumeError::ImportConflict {
            name: name.to_string(),
            path: path.display().to_string(),
        }
        .into());
    }
    // The staged data is on disk before the mark that says "finish me":
    // a roll-forward must never move empty files over good ones.
    crate::sys::sync_filesystem(root).map_err(|e| io_err(root, e))?;
    let mark = if had_root { MERGING_ROOT } else { MERGING };
    set_mark(staging, mark).map_err(|e| io_err(staging, e))?;
    crate::sys::sync_filesystem(root).map_err(|e| io_err(root, e))?;
    merge(staging, root).map_err(|e| Failed {
        error: Box::new(merge_error(name, root, e)),
        merge_begun: true,
    })
}

/// Moves the staged entries into place and, when the archive had a root
/// entry, gives the root the staging folder's metadata; then syncs
/// (acknowledged means on disk).
fn merge(staging: &Path, root: &Path) -> std::io::Result<()> {
    let had_root = read_mark(staging).as_deref() == Some(MERGING_ROOT);
    // Taken before the entries move out, which changes the folder's times.
    let meta = std::fs::symlink_metadata(staging)?;
    move_into_place(staging, root)?;
    if had_root {
        apply_folder_metadata(&meta, staging, root)?;
    }
    crate::sys::sync_filesystem(root)
}

fn merge_error(name: &str, root: &Path, e: std::io::Error) -> VolumeError {
    let why = format!(
        "the merge failed part way ({e}); the volume stays in use until the daemon's next \
         start, which finishes it"
    );
    archive_error(name, ArchiveError::io(root, std::io::Error::other(why)))
}

/// Whether `path` is a staging folder berth made (name and mark).
pub(super) fn is_staging(path: &Path) -> bool {
    let named = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(STAGING_PREFIX));
    named && read_mark(path).is_some()
}

/// Staging folders left at `root`: a marked `merging` one is finished,
/// any other is deleted; so is the (maybe not yet marked) staging folder
/// of the import with mount id `crashed`.
fn settle_staging(root: &Path, crashed: Option<&str>) -> std::io::Result<()> {
    if let Some(id) = crashed {
        let own = staging_of(root, id);
        if own.exists() && read_mark(&own).is_none() {
            remove_staging(&own)?;
        }
    }
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if !is_staging(&path) {
            continue;
        }
        if read_mark(&path).is_some_and(|m| m.starts_with(MERGING)) {
            tracing::warn!(folder = %path.display(), "finishing an import a crash cut short");
            merge(&path, root)?;
        }
        remove_staging(&path)?;
    }
    Ok(())
}

fn remove_staging(staging: &Path) -> std::io::Result<()> {
    match crate::sys::remove_tree::remove_tree_same_fs(staging) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map(|_| ()),
    }
}

fn set_mark(path: &Path, value: &[u8]) -> std::io::Result<()> {
    crate::sys::xattr::set(path, STAGING_XATTR.as_bytes(), value)
}

fn read_mark(path: &Path) -> Option<Vec<u8>> {
    crate::sys::xattr::get(path, STAGING_XATTR.as_bytes())
        .ok()
        .flatten()
}

/// Whether `path` is a real folder (a symlink to one is not).
fn is_real_dir(path: &Path) -> std::io::Result<Option<bool>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta.is_dir())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The first relative path that is a folder in `staged` and something
/// else in `target`, or the other way round.
fn first_kind_conflict(
    staged: &Path,
    target: &Path,
    rel: &Path,
) -> std::io::Result<Option<PathBuf>> {
    for entry in std::fs::read_dir(staged)? {
        let entry = entry?;
        let here = rel.join(entry.file_name());
        let incoming_dir = entry.file_type()?.is_dir();
        let to = target.join(entry.file_name());
        match is_real_dir(&to)? {
            None => {}
            Some(existing_dir) if existing_dir != incoming_dir => return Ok(Some(here)),
            Some(true) => {
                if let Some(found) = first_kind_conflict(&entry.path(), &to, &here)? {
                    return Ok(Some(found));
                }
            }
            Some(false) => {}
        }
    }
    Ok(None)
}

/// Renames each staged entry over its target; folders both sides have are
/// merged (the staged folder's owner, mode and times win). Resumable: what
/// already moved is no longer in `staged`.
fn move_into_place(staged: &Path, target: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(staged)? {
        let entry = entry?;
        let to = target.join(entry.file_name());
        if entry.file_type()?.is_dir() && is_real_dir(&to)? == Some(true) {
            let meta = std::fs::symlink_metadata(entry.path())?;
            move_into_place(&entry.path(), &to)?;
            apply_folder_metadata(&meta, &entry.path(), &to)?;
            std::fs::remove_dir(entry.path())?;
        } else {
            std::fs::rename(entry.path(), &to)?;
        }
    }
    Ok(())
}

/// Owner, mode, times (`meta`, taken before the folder's entries moved)
/// and extended attributes of folder `from` onto folder `to`.
fn apply_folder_metadata(meta: &std::fs::Metadata, from: &Path, to: &Path) -> std::io::Result<()> {
    for name in crate::sys::xattr::names(from)? {
        if name.starts_with(STAGING_XATTR.as_bytes()) {
            continue;
        }
        if let Some(value) = crate::sys::xattr::get(from, &name)? {
            crate::sys::xattr::set(to, &name, &value)?;
        }
    }
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    let mode = std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777);
    std::fs::set_permissions(to, mode)?;
    let times = std::fs::FileTimes::new()
        .set_accessed(meta.accessed()?)
        .set_modified(meta.modified()?);
    std::fs::File::open(to)?.set_times(times)
}
