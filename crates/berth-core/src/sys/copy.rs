//! Copy of a folder tree that keeps everything a filesystem records: modes,
//! owners, extended attributes, timestamps, symlinks (as links), hard links
//! (as links), device nodes and FIFOs, and holes in sparse files. Used to
//! copy image content into a new volume (copy-up) and to clone a `local`
//! volume (with progress).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Copies the contents of folder `src` into existing folder `dst`.
/// Symlinks are never followed. Returns the bytes of file data copied.
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<u64> {
    copy_tree_with_progress(src, dst, &mut |_| Ok(()))
}

/// [`copy_tree`], telling `progress` how many more bytes of file length
/// (data and holes alike) are done, at most every [`CHUNK`] bytes. An
/// error from `progress` stops the copy and is returned (the caller, who
/// made `dst`, removes it).
pub fn copy_tree_with_progress(
    src: &Path,
    dst: &Path,
    progress: &mut dyn FnMut(u64) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut copier = Copier {
        links: HashMap::new(),
        bytes: 0,
        progress,
    };
    copier.dir_contents(src, dst)?;
    // The root is followed: callers name it by an open descriptor's
    // `/proc/self/fd/N`, a link whose own owner is root (Docker gives the
    // volume the image folder's owner and mode: a database image's data
    // folder belongs to its database user).
    copy_metadata(src, dst, &std::fs::metadata(src)?)?;
    Ok(copier.bytes)
}

/// The most bytes copied between two progress reports (and per
/// copy_file_range call, which is what bounds it).
pub const CHUNK: u64 = 64 << 20;

/// One tree copy's state: hard links seen (by source inode), bytes of data
/// copied, and where progress goes.
struct Copier<'a> {
    links: HashMap<(u64, u64), PathBuf>,
    bytes: u64,
    progress: &'a mut dyn FnMut(u64) -> std::io::Result<()>,
}

impl Copier<'_> {
    fn dir_contents(&mut self, src: &Path, dst: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            self.entry(&entry.path(), &dst.join(entry.file_name()))?;
        }
        Ok(())
    }

    fn entry(&mut self, from: &Path, to: &Path) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(from)?;
        let kind = meta.file_type();
        let key = (meta.dev(), meta.ino());
        if kind.is_dir() {
            std::fs::create_dir(to)?;
            self.dir_contents(from, to)?;
        } else if meta.nlink() > 1 && !kind.is_symlink() && self.links.contains_key(&key) {
            return std::fs::hard_link(&self.links[&key], to);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
        } else if kind.is_file() {
            self.file(from, to)?;
        } else {
            nix::sys::stat::mknod(
                to,
                nix::sys::stat::SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT),
                nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777),
                meta.rdev(),
            )?;
        }
        if meta.nlink() > 1 && !kind.is_dir() && !kind.is_symlink() {
            self.links.insert(key, to.to_path_buf());
        }
        copy_metadata(from, to, &meta)
    }

    /// Copies file data segment by segment (SEEK_DATA/SEEK_HOLE), so holes
    /// stay holes; reports progress per chunk.
    fn file(&mut self, from: &Path, to: &Path) -> std::io::Result<()> {
        let src = File::open(from)?;
        let dst = File::create(to)?;
        let len = src.metadata()?.len();
        let mut pos = 0u64;
        while pos < len {
            let Some((data, end)) = next_data_segment(&src, pos, len) else {
                break; // only a hole remains
            };
            let chunk_end = end.min(data + CHUNK);
            self.bytes += copy_range(&src, &dst, data, chunk_end)?;
            (self.progress)(chunk_end - pos)?;
            pos = chunk_end;
        }
        dst.set_len(len)?;
        (self.progress)(len.saturating_sub(pos))
    }
}

/// The data segment at or after `pos`: `(start, end)`, or `None` when only
/// a hole remains (ENXIO).
fn next_data_segment(src: &File, pos: u64, len: u64) -> Option<(u64, u64)> {
    // SAFETY: lseek on a valid descriptor.
    let data = unsafe { libc::lseek(src.as_raw_fd(), pos as i64, libc::SEEK_DATA) };
    if data < 0 {
        return None;
    }
    // SAFETY: as above.
    let hole = unsafe { libc::lseek(src.as_raw_fd(), data, libc::SEEK_HOLE) };
    let end = if hole < 0 {
        len
    } else {
        (hole as u64).min(len)
    };
    Some((data as u64, end))
}

/// Copies bytes `start..end` at the same offsets: copy_file_range where the
/// kernel can (same filesystem), plain reads and writes otherwise (EXDEV
/// between overlayfs and the volume's filesystem).
fn copy_range(src: &File, dst: &File, start: u64, end: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let (mut off_in, mut off_out) = (start as i64, start as i64);
    while (off_in as u64) < end {
        let want = (end - off_in as u64) as usize;
        // SAFETY: valid descriptors and offsets owned by this loop.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        if n > 0 {
            continue;
        }
        if n == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if !matches!(
            err.raw_os_error(),
            Some(libc::EXDEV) | Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
        ) {
            return Err(err);
        }
        let mut buf = vec![0u8; 1 << 20];
        let mut at = off_in as u64;
        while at < end {
            let chunk = ((end - at) as usize).min(buf.len());
            let read = src.read_at(&mut buf[..chunk], at)?;
            if read == 0 {
                break;
            }
            dst.write_all_at(&buf[..read], at)?;
            at += read as u64;
        }
        return Ok(at - start);
    }
    Ok(off_in as u64 - start)
}

/// Owner, mode, extended attributes and times of `from` onto `to`, without
/// following a symlink.
fn copy_metadata(from: &Path, to: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    nix::unistd::fchownat(
        None,
        to,
        Some(meta.uid().into()),
        Some(meta.gid().into()),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if !meta.file_type().is_symlink() {
        std::fs::set_permissions(
            to,
            std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
        )?;
    }
    copy_xattrs(from, to)?;
    let atime = nix::sys::time::TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    nix::sys::stat::utimensat(
        None,
        to,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// User and security attributes; overlayfs' own `trusted.overlay.*` stay
/// behind (they describe the image's layers, not the data).
fn copy_xattrs(from: &Path, to: &Path) -> std::io::Result<()> {
    for name in super::xattr::names(from)? {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        if let Some(value) = super::xattr::get(from, &name)? {
            super::xattr::set(to, &name, &value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_named_by_a_descriptor_gives_its_owner_and_mode() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir(&src).unwrap();
        std::fs::create_dir(&dst).unwrap();
        nix::unistd::chown(&src, Some(70.into()), Some(71.into())).unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o700)).unwrap();
        let fd = std::fs::File::open(&src).unwrap();
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        copy_tree(&by_fd, &dst).unwrap();
        let meta = std::fs::metadata(&dst).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (70, 71, 0o700)
        );
    }

    #[test]
    fn copies_everything_a_filesystem_records() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(src.join("sub/file"), b"data").unwrap();
        std::fs::hard_link(src.join("sub/file"), src.join("hard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        nix::unistd::chown(&src.join("sub/file"), Some(1234.into()), Some(4321.into())).unwrap();
        std::fs::set_permissions(
            src.join("sub"),
            std::os::unix::fs::PermissionsExt::from_mode(0o750),
        )
        .unwrap();
        let sparse = File::create(src.join("sparse")).unwrap();
        sparse.set_len(64 * 1024 * 1024).unwrap();
        let bytes = copy_tree(&src, &dst).unwrap();
        assert_eq!(
            bytes, 4,
            "one copy of the hard-linked data, no bytes for the hole"
        );
        let meta = std::fs::metadata(dst.join("sub/file")).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.nlink()), (1234, 4321, 2));
        assert_eq!(
            std::fs::metadata(dst.join("sub")).unwrap().mode() & 0o777,
            0o750
        );
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        let sparse = std::fs::metadata(dst.join("sparse")).unwrap();
        assert_eq!(sparse.len(), 64 * 1024 * 1024);
        assert!(
            sparse.blocks() < 16,
            "holes stay holes: {} blocks",
            sparse.blocks()
        );
    }

    #[test]
    fn progress_adds_up_to_the_file_lengths_and_an_error_stops_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("small"), vec![7u8; 5000]).unwrap();
        let big = File::create(src.join("big")).unwrap();
        big.set_len(3 * CHUNK + 10).unwrap(); // one hole, reported in full
        use std::os::unix::fs::FileExt;
        big.write_all_at(b"tail", 3 * CHUNK).unwrap();
        std::fs::create_dir(&dst).unwrap();
        let mut reports = Vec::new();
        copy_tree_with_progress(&src, &dst, &mut |n| {
            reports.push(n);
            Ok(())
        })
        .unwrap();
        assert_eq!(reports.iter().sum::<u64>(), 5000 + 3 * CHUNK + 10);
        assert!(reports.iter().all(|n| *n <= 3 * CHUNK + 10));

        let again = dir.path().join("again");
        std::fs::create_dir(&again).unwrap();
        let err = copy_tree_with_progress(&src, &again, &mut |_| {
            Err(std::io::Error::other("client went away"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "client went away");
    }
}
