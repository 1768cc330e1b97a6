//! `docker diff` and the layer of a `docker commit`: what a container
//! changed, by the rules of moby's full comparison (`ChangesDirs`, which
//! its overlay2 driver answers `docker diff` with): a path only the
//! container has is added, one only the image has deleted, one both have
//! modified when its type, mode, owner, device, capabilities or (not for
//! folders) size or time differ, and every folder above a change is
//! modified too. Only what the overlay upper folder holds can differ, so
//! it is walked against a read-only view of the image: a whiteout there
//! is a deletion, an opaque folder deletes what of the image's folder it
//! does not hold again. Paths the engine itself makes in every container
//! (Docker's init layer: `/etc/hosts`, `/dev`, …) are never a container's
//! change. The list is sorted by path (moby's order is a map's: random).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::view::ReadOnlyView;
use super::{ContainerError, ContainerRecord, ContainerService};
use crate::archive::DiffEntry;

/// Docker's change kinds (`0` modified, `1` added, `2` deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

/// One changed path (absolute, as Docker shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

/// Paths relative to the root that berth makes in every container (mount
/// points and the files bound over `/etc/hosts` and friends): Docker's
/// init layer holds them, so they are never a container's changes.
pub fn is_init_path(rel: &Path) -> bool {
    matches!(
        rel.to_str(),
        Some(
            "dev"
                | "proc"
                | "sys"
                | ".dockerenv"
                | "etc/resolv.conf"
                | "etc/hosts"
                | "etc/hostname"
                | "etc/mtab"
        )
    )
}

impl ContainerService {
    /// The changes of a container (running or not), sorted by path.
    pub fn changes(&self, name_or_id: &str) -> Result<Vec<Change>, ContainerError> {
        let record = self.resolve(name_or_id)?;
        let found = self.diff(&record)?;
        Ok(found
            .into_iter()
            .map(|(rel, kind)| Change {
                path: format!("/{}", rel.display()),
                kind,
            })
            .collect())
    }

    /// The changed paths (relative) of a container and their kinds.
    pub(super) fn diff(
        &self,
        record: &ContainerRecord,
    ) -> Result<BTreeMap<PathBuf, ChangeKind>, ContainerError> {
        let io = |e| ContainerError::io(format!("reading the changes of {}", record.id), e);
        let image = self.images.resolve(&record.image_id)?;
        let mut lowers = self.images.layer_paths(&image);
        lowers.reverse();
        let paths = self.paths(&record.id);
        let views = super::view::views_dir(&self.settings.containers_dir);
        let view = ReadOnlyView::mount(&views, "diff", &lowers).map_err(io)?;
        let mut walk = ChangeWalk {
            open: HashMap::from([(PathBuf::new(), open_folder(&paths.upper()).map_err(io)?)]),
            image: view.root().to_path_buf(),
            found: BTreeMap::new(),
        };
        walk.folder(Path::new("")).map_err(io)?;
        Ok(walk.found)
    }
}

/// The entries of a commit's layer tar for a change list: present paths
/// as they are (parents sort before children), deletions as whiteouts.
pub fn diff_entries(found: &BTreeMap<PathBuf, ChangeKind>) -> Vec<DiffEntry> {
    found
        .iter()
        .map(|(rel, kind)| match kind {
            ChangeKind::Deleted => DiffEntry::Deleted(rel.clone()),
            _ => DiffEntry::Present(rel.clone()),
        })
        .collect()
}

/// One walk of an upper folder against the image. A running container
/// may swap a folder of its upper folder for a symlink meanwhile, so the
/// upper folder is read through descriptors only: each folder opened
/// `O_NOFOLLOW` from the one above, entries named under
/// `/proc/self/fd/N/` (which never follows their own final link).
struct ChangeWalk {
    /// The upper folder's folders being walked (the root is ``).
    open: HashMap<PathBuf, std::fs::File>,
    /// The image's root (a read-only overlay of its layers).
    image: PathBuf,
    found: BTreeMap<PathBuf, ChangeKind>,
}

impl ChangeWalk {
    /// Records the changes under folder `rel` (which both the container
    /// and the image have); returns whether there were any.
    fn folder(&mut self, rel: &Path) -> std::io::Result<bool> {
        self.enter(rel)?;
        let names = sorted_names(&self.folder_path(rel))?;
        let mut any = false;
        for name in &names {
            let child = rel.join(name);
            if !is_init_path(&child) {
                any |= self.entry(&child)?;
            }
        }
        // `…/fd/N/.`: the folder itself (an l*xattr call on `…/fd/N`
        // would read the magic link's own attributes).
        if is_opaque(&self.folder_path(rel).join("."))? {
            any |= self.hidden_by_opaque(rel, &names)?;
        }
        self.leave(rel);
        Ok(any)
    }

    /// Opens folder `rel` of the upper folder from its parent, without
    /// following a symlink (the root is open from the start).
    fn enter(&mut self, rel: &Path) -> std::io::Result<()> {
        if !self.open.contains_key(rel) {
            let folder = open_folder(&self.upper_path(rel))?;
            self.open.insert(rel.to_path_buf(), folder);
        }
        Ok(())
    }

    fn leave(&mut self, rel: &Path) {
        if !rel.as_os_str().is_empty() {
            self.open.remove(rel);
        }
    }

    /// `/proc/self/fd/N` of an open folder of the walk.
    fn folder_path(&self, rel: &Path) -> PathBuf {
        let fd = self.open.get(rel).map_or(-1, |f| f.as_raw_fd());
        PathBuf::from(format!("/proc/self/fd/{fd}"))
    }

    /// Entry `rel` of the upper folder, named through its open parent.
    fn upper_path(&self, rel: &Path) -> PathBuf {
        let parent = rel.parent().unwrap_or(Path::new(""));
        match rel.file_name() {
            Some(name) => self.folder_path(parent).join(name),
            None => self.folder_path(rel),
        }
    }

    /// Records one entry of the upper folder; returns whether it or
    /// anything under it changed.
    fn entry(&mut self, rel: &Path) -> std::io::Result<bool> {
        let new = std::fs::symlink_metadata(self.upper_path(rel))?;
        let old = std::fs::symlink_metadata(self.image.join(rel)).ok();
        if is_whiteout(&new) {
            if old.is_some() {
                self.found.insert(rel.to_path_buf(), ChangeKind::Deleted);
            }
            return Ok(old.is_some());
        }
        let Some(old) = old else {
            self.added(rel, &new)?;
            return Ok(true);
        };
        let modified = self.differs(rel, &old, &new)?;
        if modified {
            self.found.insert(rel.to_path_buf(), ChangeKind::Modified);
        }
        // moby looks inside only when the container's entry is a folder.
        let inside = new.is_dir() && old.is_dir() && self.folder(rel)?;
        let inside = inside || (new.is_dir() && !old.is_dir() && self.all_added(rel)?);
        if inside && !modified {
            // A folder holding a change is listed as modified.
            self.found.insert(rel.to_path_buf(), ChangeKind::Modified);
        }
        Ok(modified || inside)
    }

    /// An entry the image does not have, and all under it.
    fn added(&mut self, rel: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
        self.found.insert(rel.to_path_buf(), ChangeKind::Added);
        if meta.is_dir() {
            self.all_added(rel)?;
        }
        Ok(())
    }

    /// Everything under folder `rel` of the upper folder as added
    /// (whiteouts aside); returns whether there was anything.
    fn all_added(&mut self, rel: &Path) -> std::io::Result<bool> {
        self.enter(rel)?;
        let mut any = false;
        for name in sorted_names(&self.folder_path(rel))? {
            let child = rel.join(&name);
            let meta = std::fs::symlink_metadata(self.upper_path(&child))?;
            if !is_whiteout(&meta) && !is_init_path(&child) {
                self.added(&child, &meta)?;
                any = true;
            }
        }
        self.leave(rel);
        Ok(any)
    }

    /// The entries of the image's folder `rel` that an opaque upper
    /// folder does not hold again: deleted.
    fn hidden_by_opaque(
        &mut self,
        rel: &Path,
        kept: &[std::ffi::OsString],
    ) -> std::io::Result<bool> {
        let Ok(image_names) = sorted_names(&self.image.join(rel)) else {
            return Ok(false);
        };
        let kept: BTreeSet<&std::ffi::OsString> = kept.iter().collect();
        let mut any = false;
        for name in image_names.iter().filter(|n| !kept.contains(n)) {
            let child = rel.join(name);
            if !is_init_path(&child) {
                self.found.insert(child, ChangeKind::Deleted);
                any = true;
            }
        }
        Ok(any)
    }

    /// moby's `statDifferent` plus its capability check.
    fn differs(
        &self,
        rel: &Path,
        old: &std::fs::Metadata,
        new: &std::fs::Metadata,
    ) -> std::io::Result<bool> {
        let stat = old.mode() != new.mode()
            || old.uid() != new.uid()
            || old.gid() != new.gid()
            || old.rdev() != new.rdev()
            || (!old.is_dir() && (old.size() != new.size() || !same_time(old, new)));
        if stat {
            return Ok(true);
        }
        let capability = |path: &Path| crate::sys::xattr::get(path, b"security.capability");
        Ok(capability(&self.image.join(rel))? != capability(&self.upper_path(rel))?)
    }
}

/// moby's `sameFsTime`: equal, or equal seconds when either has no
/// nanoseconds (a filesystem or archive that keeps none).
fn same_time(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    (a.mtime(), a.mtime_nsec()) == (b.mtime(), b.mtime_nsec())
        || ((a.mtime_nsec() == 0 || b.mtime_nsec() == 0) && a.mtime() == b.mtime())
}

/// A folder opened for reading, refusing a symlink in its place.
fn open_folder(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn sorted_names(dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}

/// An opaque overlay folder: it hides the lower folders' contents.
fn is_opaque(dir: &Path) -> std::io::Result<bool> {
    let value = crate::sys::xattr::get(dir, b"trusted.overlay.opaque")?;
    Ok(value.as_deref() == Some(b"y".as_slice()))
}

/// An overlay whiteout: a 0/0 character device.
fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_paths_are_the_engines_own() {
        assert!(is_init_path(Path::new("etc/hosts")));
        assert!(is_init_path(Path::new("dev")));
        assert!(!is_init_path(Path::new("etc")));
        assert!(!is_init_path(Path::new("etc/hosts.allow")));
        assert!(!is_init_path(Path::new("tmp/etc/hosts")));
    }

    #[test]
    fn deletions_become_whiteouts_in_path_order() {
        let mut found = BTreeMap::new();
        found.insert(PathBuf::from("etc/gone"), ChangeKind::Deleted);
        found.insert(PathBuf::from("etc"), ChangeKind::Modified);
        found.insert(PathBuf::from("new"), ChangeKind::Added);
        assert_eq!(
            diff_entries(&found),
            vec![
                DiffEntry::Present("etc".into()),
                DiffEntry::Deleted("etc/gone".into()),
                DiffEntry::Present("new".into()),
            ]
        );
    }
}
