//! Copy of a folder tree that keeps everything a filesystem records: modes,
//! owners, extended attributes, timestamps, symlinks (as links), hard links
//! (as links), device nodes and FIFOs, and holes in sparse files. Used to
//! copy image content into a new volume (copy-up).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Copies the contents of folder `src` into existing folder `dst`.
/// Symlinks are never followed. Returns the bytes of file data copied.
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<u64> {
    let mut links = HashMap::new();
    let mut bytes = 0;
    copy_dir_contents(src, dst, &mut links, &mut bytes)?;
    copy_metadata(src, dst, &std::fs::symlink_metadata(src)?)?;
    Ok(bytes)
}

fn copy_dir_contents(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    bytes: &mut u64,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&to)?;
            copy_dir_contents(&from, &to, links, bytes)?;
        } else if meta.nlink() > 1
            && !kind.is_symlink()
            && links.contains_key(&(meta.dev(), meta.ino()))
        {
            std::fs::hard_link(&links[&(meta.dev(), meta.ino())], &to)?;
            continue;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if kind.is_file() {
            *bytes += copy_sparse(&from, &to)?;
        } else {
            nix::sys::stat::mknod(
                &to,
                nix::sys::stat::SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT),
                nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777),
                meta.rdev(),
            )?;
        }
        if meta.nlink() > 1 && !kind.is_dir() && !kind.is_symlink() {
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        copy_metadata(&from, &to, &meta)?;
    }
    Ok(())
}

/// Copies file data segment by segment (SEEK_DATA/SEEK_HOLE), so holes
/// stay holes.
fn copy_sparse(from: &Path, to: &Path) -> std::io::Result<u64> {
    let src = File::open(from)?;
    let dst = File::create(to)?;
    let len = src.metadata()?.len();
    let mut copied = 0;
    let mut pos: i64 = 0;
    while (pos as u64) < len {
        // SAFETY: lseek on valid descriptors.
        let data = unsafe { libc::lseek(src.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: only a hole remains
        }
        let hole = unsafe { libc::lseek(src.as_raw_fd(), data, libc::SEEK_HOLE) };
        let end = if hole < 0 { len as i64 } else { hole };
        copied += copy_range(&src, &dst, data as u64, end as u64)?;
        pos = end;
    }
    dst.set_len(len)?;
    Ok(copied)
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

fn c_path(path: &Path) -> std::io::Result<CString> {
    Ok(CString::new(path.as_os_str().as_bytes())?)
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
    let (src, dst) = (c_path(from)?, c_path(to)?);
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: valid path and buffer.
    let n = unsafe { libc::llistxattr(src.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Ok(());
    }
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let c_name = CString::new(name)?;
        let mut value = vec![0u8; 64 * 1024];
        // SAFETY: valid path, name and buffer.
        let len = unsafe {
            libc::lgetxattr(
                src.as_ptr(),
                c_name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            continue;
        }
        // SAFETY: valid path, name and value slice.
        let rc = unsafe {
            libc::lsetxattr(
                dst.as_ptr(),
                c_name.as_ptr(),
                value.as_ptr().cast(),
                len as usize,
                0,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
