//! Recursive removal that never crosses into another filesystem.
//!
//! A local volume may have a device or a bind mount on `_data`, a container
//! folder may hold a volume sub-path mount. Deleting through such a mount
//! would destroy data that is not the tree's own, so removal stops with an
//! error at any entry whose device differs from the tree's root instead of
//! descending into it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Removes `root` and everything under it, refusing to cross mount points.
/// A missing `root` is `Ok(false)`.
pub fn remove_tree_same_fs(root: &Path) -> std::io::Result<bool> {
    let meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        std::fs::remove_file(root)?;
        return Ok(true);
    }
    remove_dir_contents(root, meta.dev())?;
    std::fs::remove_dir(root)?;
    Ok(true)
}

fn remove_dir_contents(dir: &Path, dev: u64) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.dev() != dev {
            return Err(std::io::Error::other(format!(
                "refusing to delete across a mount point at {}",
                path.display()
            )));
        }
        if meta.is_dir() {
            remove_dir_contents(&path, dev)?;
            std::fs::remove_dir(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_nested_tree_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("v");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        assert!(remove_tree_same_fs(&root).unwrap());
        assert!(!root.exists());
        assert!(
            std::path::Path::new("/etc").is_dir(),
            "symlink target must survive"
        );
        assert!(!remove_tree_same_fs(&root).unwrap());
    }
}
