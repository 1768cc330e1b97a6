//! Paths inside a root that an untrusted tree controls (a container's root
//! filesystem, a volume): walked component by component with
//! `O_NOFOLLOW`, so a symlink planted in the tree can never lead a host-side
//! operation outside it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

fn open_dir_at(parent: &OwnedFd, name: &std::ffi::OsStr) -> std::io::Result<OwnedFd> {
    let c_name = CString::new(name.as_bytes())?;
    let flags = libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_RDONLY;
    // SAFETY: valid descriptor and NUL-terminated name.
    let fd = unsafe { libc::openat(parent.as_raw_fd(), c_name.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn mkdir_at(parent: &OwnedFd, name: &std::ffi::OsStr, mode: u32) -> std::io::Result<()> {
    let c_name = CString::new(name.as_bytes())?;
    // SAFETY: valid descriptor and NUL-terminated name.
    if unsafe { libc::mkdirat(parent.as_raw_fd(), c_name.as_ptr(), mode) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(err);
        }
    }
    Ok(())
}

/// Creates folder `path` (absolute inside the root, e.g. a working
/// directory) under `root`, making missing parents with `mode`. A symlink or
/// a non-folder anywhere on the way is an error (ELOOP / ENOTDIR); nothing
/// outside `root` is touched.
pub fn mkdir_all(root: &Path, path: &str, mode: u32) -> std::io::Result<()> {
    let file = std::fs::File::open(root)?;
    let mut dir = OwnedFd::from(file);
    for component in Path::new(path).components() {
        let name = match component {
            Component::Normal(n) => n,
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "path climbs out with ..",
                ))
            }
        };
        dir = match open_dir_at(&dir, name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                mkdir_at(&dir, name, mode)?;
                open_dir_at(&dir, name)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(())
}

/// Opens `rel` (relative, existing, file or folder) beneath `root` as an
/// `O_PATH` descriptor, refusing `..`, absolute paths and any symlink on
/// the way, the last component included. The descriptor pins what was
/// resolved: mounting `/proc/self/fd/N` afterwards cannot be redirected by
/// a symlink swapped in meanwhile.
pub fn open_beneath(root: &Path, rel: &str) -> std::io::Result<OwnedFd> {
    let invalid =
        |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string());
    if rel.starts_with('/') {
        return Err(invalid("must be a relative path"));
    }
    let mut fd = OwnedFd::from(std::fs::File::open(root)?);
    let parts: Vec<&std::ffi::OsStr> = Path::new(rel)
        .components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(invalid("must not contain .. or be absolute")),
        })
        .collect::<Result<_, _>>()?;
    for (i, name) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let c_name = CString::new(name.as_bytes())?;
        let flags = libc::O_PATH
            | libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            | if last { 0 } else { libc::O_DIRECTORY };
        // SAFETY: valid descriptor and NUL-terminated name.
        let next = unsafe { libc::openat(fd.as_raw_fd(), c_name.as_ptr(), flags) };
        if next < 0 {
            let err = std::io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                    invalid("must not pass through a symlink")
                }
                _ => err,
            });
        }
        // SAFETY: openat returned a new descriptor we own.
        fd = unsafe { OwnedFd::from_raw_fd(next) };
    }
    // fstat works on O_PATH descriptors; a last component that is a
    // symlink was opened as the link itself.
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(invalid("must not be a symlink"));
    }
    Ok(fd)
}

/// The text of the regular file `rel` beneath `root`, read without
/// following any symlink (an image's `/etc/passwd` that links to a host
/// file is read as missing); `None` when it cannot be read so.
pub fn read_text_beneath(root: &Path, rel: &str) -> Option<String> {
    let fd = open_beneath(root, rel).ok()?;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    if !std::fs::metadata(&path).ok()?.is_file() {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_nested_folders_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        mkdir_all(&root, "/a/b/c", 0o755).unwrap();
        assert!(root.join("a/b/c").is_dir());
        mkdir_all(&root, "/a/b/c", 0o755).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        assert!(mkdir_all(&root, "/link/x", 0o755).is_err());
        assert!(!outside.join("x").exists());
        assert!(mkdir_all(&root, "/../x", 0o755).is_err());
    }

    #[test]
    fn open_beneath_refuses_every_escape() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/file"), b"x").unwrap();
        std::os::unix::fs::symlink("/", root.join("to-root")).unwrap();
        std::os::unix::fs::symlink("../../", root.join("a/up")).unwrap();
        assert!(open_beneath(&root, "a/b").is_ok());
        assert!(open_beneath(&root, "a/file").is_ok());
        for bad in [
            "../x",
            "/etc",
            "to-root",
            "to-root/etc",
            "a/up",
            "a/up/x",
            "a/../a",
            "missing",
        ] {
            assert!(open_beneath(&root, bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn text_is_read_only_without_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/group"), "g:x:5:\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("etc/passwd")).unwrap();
        assert_eq!(
            read_text_beneath(root, "etc/group").as_deref(),
            Some("g:x:5:\n")
        );
        assert_eq!(read_text_beneath(root, "etc/passwd"), None);
        assert_eq!(read_text_beneath(root, "etc"), None);
    }
}
