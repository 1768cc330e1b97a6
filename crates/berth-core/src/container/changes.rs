//! `docker diff`: what a container changed, read from its overlay upper
//! folder against the image's layers, by moby's rules
//! (`pkg/archive/changes.go` with the overlay whiteout check): a whiteout
//! is a deletion, an opaque folder that hid an image folder a deletion
//! too, an entry the image has a modification (a folder only when its
//! mode, size or time differ), anything else an addition; the parent of
//! an addition or deletion is listed as modified. Paths the engine itself
//! makes in every container (Docker's init layer: `/etc/hosts`, `/dev`,
//! …) are not the container's changes and are left out, as they are of
//! a commit.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{ContainerError, ContainerService};

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
    /// The changes of a container (running or not), in walk order.
    pub fn changes(&self, name_or_id: &str) -> Result<Vec<Change>, ContainerError> {
        let record = self.resolve(name_or_id)?;
        let image = self.images.resolve(&record.image_id)?;
        let mut lowers = self.images.layer_paths(&image);
        lowers.reverse();
        let upper = self.paths(&record.id).upper();
        let mut walk = ChangeWalk {
            upper: &upper,
            lowers: &lowers,
            changes: Vec::new(),
            changed_dirs: std::collections::HashSet::new(),
        };
        walk.folder(Path::new(""))
            .map_err(|e| ContainerError::io(format!("reading the changes of {}", record.id), e))?;
        Ok(walk.changes)
    }
}

/// One walk of an upper folder.
struct ChangeWalk<'a> {
    upper: &'a Path,
    /// The image's layer folders, top first.
    lowers: &'a [PathBuf],
    changes: Vec<Change>,
    /// Folders listed already, or seen in the upper folder (moby's
    /// `changedDirs`: their children never add them again).
    changed_dirs: std::collections::HashSet<PathBuf>,
}

impl ChangeWalk<'_> {
    /// Visits the entries of folder `rel` of the upper folder, sorted.
    fn folder(&mut self, rel: &Path) -> std::io::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(self.upper.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let child = rel.join(&name);
            if is_init_path(&child) {
                continue;
            }
            let meta = std::fs::symlink_metadata(self.upper.join(&child))?;
            self.entry(&child, &meta)?;
            if meta.is_dir() {
                self.folder(&child)?;
            }
        }
        Ok(())
    }

    /// Classifies one entry and records it (with its parent if needed).
    fn entry(&mut self, rel: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
        let kind = if is_whiteout(meta) || self.hides_image_folder(rel, meta)? {
            Some(ChangeKind::Deleted)
        } else {
            match self.in_image(rel) {
                None => Some(ChangeKind::Added),
                Some(lower)
                    if meta.is_dir() && lower.is_dir() && self.same_folder(rel, meta, &lower) =>
                {
                    None
                }
                Some(_) => Some(ChangeKind::Modified),
            }
        };
        if meta.is_dir() {
            self.changed_dirs.insert(rel.to_path_buf());
        }
        let Some(kind) = kind else {
            return Ok(());
        };
        if kind != ChangeKind::Modified {
            if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                if self.changed_dirs.insert(parent.to_path_buf()) {
                    self.push(parent, ChangeKind::Modified);
                }
            }
        }
        self.push(rel, kind);
        Ok(())
    }

    fn push(&mut self, rel: &Path, kind: ChangeKind) {
        self.changes.push(Change {
            path: format!("/{}", rel.display()),
            kind,
        });
    }

    /// The metadata of `rel` in the topmost image layer that has it.
    fn in_image(&self, rel: &Path) -> Option<std::fs::Metadata> {
        self.lowers
            .iter()
            .find_map(|layer| std::fs::symlink_metadata(layer.join(rel)).ok())
    }

    /// An opaque folder over a folder of the image: moby lists it as
    /// deleted (what it holds follows as additions).
    fn hides_image_folder(&self, rel: &Path, meta: &std::fs::Metadata) -> std::io::Result<bool> {
        if !meta.is_dir() {
            return Ok(false);
        }
        let opaque = crate::sys::xattr::get(&self.upper.join(rel), b"trusted.overlay.opaque")?;
        Ok(opaque.as_deref() == Some(b"y".as_slice()) && self.in_image(rel).is_some())
    }

    /// Whether a folder is unchanged: same mode, size and time as the
    /// image's. A folder holding only the engine's own entries (`/etc`
    /// with its mount points) counts as unchanged when its mode is.
    fn same_folder(
        &self,
        rel: &Path,
        upper: &std::fs::Metadata,
        lower: &std::fs::Metadata,
    ) -> bool {
        let same_mode = upper.mode() == lower.mode();
        if self.holds_init_paths(rel) {
            return same_mode;
        }
        same_mode
            && upper.size() == lower.size()
            && upper.mtime() == lower.mtime()
            && upper.mtime_nsec() == lower.mtime_nsec()
    }

    fn holds_init_paths(&self, rel: &Path) -> bool {
        std::fs::read_dir(self.upper.join(rel))
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| is_init_path(&rel.join(e.file_name())))
            })
            .unwrap_or(false)
    }
}

/// An overlay whiteout: a 0/0 character device.
fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

#[cfg(test)]
mod tests {
    use super::is_init_path;
    use std::path::Path;

    #[test]
    fn init_paths_are_the_engines_own() {
        assert!(is_init_path(Path::new("etc/hosts")));
        assert!(is_init_path(Path::new("dev")));
        assert!(!is_init_path(Path::new("etc")));
        assert!(!is_init_path(Path::new("etc/hosts.allow")));
        assert!(!is_init_path(Path::new("tmp/etc/hosts")));
    }
}
