//! Recursive removal that never crosses into another filesystem.
//!
//! A local volume may have a device or a bind mount on `_data`, a container
//! folder may hold a volume sub-path mount. Deleting through such a mount
//! would destroy data that is not the tree's own, so removal stops with an
//! error at any entry whose device differs from the tree's root, or that is
//! the root of a mount (a bind mount of the same filesystem keeps the
//! device number), instead of descending into it.

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
    refuse_mount_root(root)?;
    remove_dir_contents(root, meta.dev())?;
    std::fs::remove_dir(root)?;
    Ok(true)
}

fn remove_dir_contents(dir: &Path, dev: u64) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.dev() != dev {
            return Err(across_a_mount(&path));
        }
        if meta.is_dir() {
            refuse_mount_root(&path)?;
            remove_dir_contents(&path, dev)?;
            std::fs::remove_dir(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// A folder that is the root of a mount is never entered. When `statx`
/// cannot tell (an old kernel), the device check above is what is left.
fn refuse_mount_root(dir: &Path) -> std::io::Result<()> {
    match super::mount::mount_root_attribute(dir) {
        Some(true) => Err(across_a_mount(dir)),
        _ => Ok(()),
    }
}

fn across_a_mount(path: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ResourceBusy,
        format!(
            "refusing to delete across a mount point at {}",
            path.display()
        ),
    )
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

    #[test]
    fn stops_at_a_bind_mount_of_the_same_filesystem() {
        if !nix::unistd::geteuid().is_root() {
            return; // mounting takes root (CI runs the tests as root)
        }
        let dir = tempfile::tempdir().unwrap();
        let (root, kept) = (dir.path().join("v"), dir.path().join("kept"));
        std::fs::create_dir_all(root.join("a/inner")).unwrap();
        std::fs::create_dir(&kept).unwrap();
        std::fs::write(kept.join("precious"), b"x").unwrap();
        let target = root.join("a/inner");
        crate::sys::mount::mount(kept.to_str().unwrap(), &target, "none", "bind").unwrap();
        let inside = remove_tree_same_fs(&root);
        let whole = remove_tree_same_fs(&target);
        crate::sys::mount::unmount(&target).unwrap();
        let err = inside.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ResourceBusy, "{err}");
        assert!(whole.is_err(), "the mount point itself is refused too");
        assert!(kept.join("precious").exists());
    }
}
