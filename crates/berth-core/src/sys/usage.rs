//! Disk usage of a folder, as Docker's `system df` counts it.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Sum of the apparent sizes of all non-directory entries under `root`,
/// counting each hard-linked inode once (moby's `directory.Size` rule).
/// Does not follow symlinks or cross into other filesystems' special files.
pub fn dir_size(root: &Path) -> std::io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // What vanishes mid-walk (a container deleting temp files) is
        // skipped, as moby's directory.Size does; the walk goes on.
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
            other => other?,
        };
        for entry in entries {
            let entry = entry?;
            let meta = match entry.metadata() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                other => other?,
            };
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total += meta.size();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_count_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c"), vec![0u8; 24]).unwrap();
        assert_eq!(dir_size(dir.path()).unwrap(), 1024);
    }
}
