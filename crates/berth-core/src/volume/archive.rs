//! Volume export and import as tar streams (what `podman volume export`
//! and `import` do), the portable form of a volume's data.
//!
//! Both mount the volume under a mount id of their own for as long as they
//! run, so the volume counts as in use (remove and restore refuse) and a
//! thin or loop-backed volume is attached; the id is released at the end,
//! whatever happened. Such ids start with [`OPERATION_MOUNT_PREFIX`]: after
//! a crash nothing is left behind them, so start-up drops them instead of
//! replaying them as it does containers' ids.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{names, VolumeError, VolumeService};
use crate::archive::ArchiveError;
use crate::driver::DriverError;

/// Mount ids of berth's own short operations (export, import) start so.
pub const OPERATION_MOUNT_PREFIX: &str = "berth-op-";

/// Folders an import stages its extraction in, at the volume's root (same
/// filesystem, so moving into place is a rename). Never exported.
pub(crate) const IMPORT_STAGING_PREFIX: &str = ".berth-import-";

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
        let id = format!("{OPERATION_MOUNT_PREFIX}{op}-{}", &names::random_id()[..16]);
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
        let skip = |top: &std::ffi::OsStr| top.to_string_lossy().starts_with(IMPORT_STAGING_PREFIX);
        let bytes = crate::archive::write_tree(&mounted.path, out, &skip).map_err(|e| {
            VolumeError::driver("export", name, DriverError::io("writing the archive", e))
        })?;
        drop(mounted);
        self.publish("export", name, &[]);
        Ok(bytes)
    }

    /// Extracts a tar stream (plain, gzip or zstd) into volume `name`,
    /// merged with what the volume holds (an archive entry replaces the
    /// file of the same path). All or nothing: the archive is extracted
    /// whole into a staging folder at the volume's root first, with the
    /// checks image layers get (no `..`, nothing through a symlink, hard
    /// links inside), so a hostile or cut-short archive changes nothing;
    /// an entry that is a folder on one side only is refused before
    /// anything moves; then entries are renamed into place.
    pub fn import(&self, name: &str, input: impl Read) -> Result<(), VolumeError> {
        // One import at a time per volume: each clears staging folders a
        // crash left, which must not be a running import's. (A key of its
        // own: the volume's name lock is taken inside `mount`.)
        let _one_import = self.locks.lock(&format!("import\0{name}"));
        let mounted = self.mount_for("import", name)?;
        remove_stale_staging(&mounted.path);
        let staging = mounted.path.join(format!(
            "{IMPORT_STAGING_PREFIX}{}",
            &names::random_id()[..12]
        ));
        let result = stage_and_merge(name, input, &staging, &mounted.path);
        if let Err(e) = crate::sys::remove_tree::remove_tree_same_fs(&staging) {
            tracing::warn!(volume = %name, error = %e, "removing the import staging folder");
        }
        result?;
        drop(mounted);
        self.publish("import", name, &[]);
        Ok(())
    }
}

/// Extracts into `staging`, checks, then moves into `root`.
fn stage_and_merge(
    name: &str,
    input: impl Read,
    staging: &Path,
    root: &Path,
) -> Result<(), VolumeError> {
    let archive_err = |source| VolumeError::Archive {
        name: name.to_string(),
        source,
    };
    std::fs::create_dir(staging).map_err(|e| archive_err(ArchiveError::io(staging, e)))?;
    let reader = crate::archive::decompress(input).map_err(archive_err)?;
    crate::archive::extract::unpack(&mut tar::Archive::new(reader), staging, false)
        .map_err(archive_err)?;
    if let Some(path) = first_kind_conflict(staging, root, Path::new(""))
        .map_err(|e| archive_err(ArchiveError::io(root, e)))?
    {
        return Err(VolumeError::ImportConflict {
            name: name.to_string(),
            path: path.display().to_string(),
        });
    }
    move_into_place(staging, root).map_err(|e| archive_err(ArchiveError::io(root, e)))
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
/// else in `target` or the other way round.
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
/// merged (the staged folder's owner, mode and times win).
fn move_into_place(staged: &Path, target: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(staged)? {
        let entry = entry?;
        let to = target.join(entry.file_name());
        if entry.file_type()?.is_dir() && is_real_dir(&to)? == Some(true) {
            move_into_place(&entry.path(), &to)?;
            copy_folder_metadata(&entry.path(), &to)?;
            std::fs::remove_dir(entry.path())?;
        } else {
            std::fs::rename(entry.path(), &to)?;
        }
    }
    Ok(())
}

/// Owner, mode and times of folder `from` onto folder `to`.
fn copy_folder_metadata(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(
        to,
        std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
    )?;
    let times = std::fs::FileTimes::new()
        .set_accessed(meta.accessed()?)
        .set_modified(meta.modified()?);
    std::fs::File::open(to)?.set_times(times)
}

/// Staging folders an import left when the daemon died mid-way.
fn remove_stale_staging(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(IMPORT_STAGING_PREFIX)
        {
            let _ = crate::sys::remove_tree::remove_tree_same_fs(&entry.path());
        }
    }
}
