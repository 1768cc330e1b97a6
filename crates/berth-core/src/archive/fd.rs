//! The descriptor-level calls the tar writer (`write.rs`) walks a tree
//! with: opening entries `O_PATH|O_NOFOLLOW` relative to their folder,
//! `fstat`, reopening a regular file's very inode for reading, reading
//! symlink targets, listing folders and reading extended attributes, all
//! through descriptors.
//!
//! Why descriptors and never paths: a container may swap a file or folder
//! for a symlink (to a host path) or a FIFO while its volume is exported.
//! Through a descriptor the writer keeps to the entry it first opened and
//! looked at, so it never follows a link out of the tree nor blocks on
//! something that was not there when it looked.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The tree's root folder, opened `O_PATH` by its path. The root's own
/// path is the host's, trusted: opened (following links) once; everything
/// below it is reached through descriptors.
pub(super) fn open_root_folder(root: &Path) -> io::Result<OwnedFd> {
    let c_root = CString::new(root.as_os_str().as_bytes())?;
    // SAFETY: a NUL-terminated path.
    retry(|| unsafe {
        libc::open(
            c_root.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
    .map_err(|e| context(e, "opening", root))
}

/// `name` in `dir`, opened `O_PATH|O_NOFOLLOW`: the entry itself, whatever
/// it is, never what a symlink points to, and without the side effects of
/// a real open. `None` when it is gone (removed since the folder was
/// listed).
pub(super) fn open_node(dir: BorrowedFd, name: &OsStr, rel: &Path) -> io::Result<Option<OwnedFd>> {
    let c_name = CString::new(name.as_bytes())?;
    let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid descriptor and NUL-terminated name.
    match retry(|| unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr(), flags) }) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            tracing::debug!(path = %rel.display(), "removed before it was archived");
            Ok(None)
        }
        Err(e) => Err(context(e, "opening", rel)),
    }
}

/// `fstat` of a descriptor (an `O_PATH` one too).
pub(super) fn fd_metadata(fd: &OwnedFd) -> io::Result<Metadata> {
    // SAFETY: `fd` stays open for the call and the `File` never closes it.
    let file = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd.as_raw_fd()) });
    file.metadata()
}

/// `/proc/self/fd` of the host's procfs, opened before a `chroot` (the
/// copy helper's): inside a container's root, `/proc` is the container's
/// and does not know this process.
static PROC_FD_DIR: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();

/// Pins `/proc/self/fd` for [`reopen_file`]; call before a `chroot`.
pub fn pin_proc_fd_dir() -> io::Result<()> {
    let dir = File::open("/proc/self/fd")?;
    let _ = PROC_FD_DIR.set(OwnedFd::from(dir));
    Ok(())
}

/// The regular file behind `node` (`O_PATH`) opened for reading: the same
/// inode, reached through `/proc/self/fd`, never through its name again;
/// non-blocking, so a lease or lock cannot hold the export.
pub(super) fn reopen_file(node: &OwnedFd, meta: &Metadata) -> io::Result<File> {
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let file = match PROC_FD_DIR.get() {
        Some(dir) => {
            let name = CString::new(node.as_raw_fd().to_string())?;
            // SAFETY: a valid descriptor and a NUL-terminated name.
            File::from(retry(|| unsafe {
                libc::openat(dir.as_raw_fd(), name.as_ptr(), flags)
            })?)
        }
        None => {
            let path = CString::new(format!("/proc/self/fd/{}", node.as_raw_fd()))?;
            // SAFETY: a NUL-terminated path.
            File::from(retry(|| unsafe { libc::open(path.as_ptr(), flags) })?)
        }
    };
    let again = file.metadata()?;
    if !again.is_file() || (again.dev(), again.ino()) != (meta.dev(), meta.ino()) {
        return Err(io::Error::other("reopened a different file"));
    }
    Ok(file)
}

/// A symlink's target, from its `O_PATH` descriptor.
pub(super) fn read_link(node: &OwnedFd) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    loop {
        // SAFETY: a valid descriptor, an empty path (the descriptor's own
        // symlink) and a buffer of the length given.
        let n = unsafe {
            libc::readlinkat(
                node.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if (n as usize) < buf.len() {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        if buf.len() >= 1 << 20 {
            return Err(io::Error::other("symlink target too long"));
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// The extended attributes and the sorted names (a stable order makes
/// equal trees give equal streams) of the folder `node` (`O_PATH`), read
/// through a descriptor opened from it.
#[allow(clippy::type_complexity)]
pub(super) fn list_folder(node: &OwnedFd) -> io::Result<(Vec<(Vec<u8>, Vec<u8>)>, Vec<OsString>)> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: a valid descriptor and NUL-terminated name.
    let fd = retry(|| unsafe { libc::openat(node.as_raw_fd(), c".".as_ptr(), flags) })?;
    let attrs = read_xattrs(fd.as_fd())?;
    let dir = DirStream::new(fd)?;
    let mut names = Vec::new();
    while let Some(name) = dir.next_name()? {
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name));
        }
    }
    names.sort();
    Ok((attrs, names))
}

/// A folder's `readdir` stream (owns the descriptor it was made from).
struct DirStream(std::ptr::NonNull<libc::DIR>);

impl DirStream {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is an open folder descriptor; on success the stream
        // owns it.
        match std::ptr::NonNull::new(unsafe { libc::fdopendir(raw) }) {
            Some(dir) => Ok(DirStream(dir)),
            None => {
                let e = io::Error::last_os_error();
                // SAFETY: still ours after a failed fdopendir.
                unsafe { libc::close(raw) };
                Err(e)
            }
        }
    }

    /// The next name, `None` at the end.
    fn next_name(&self) -> io::Result<Option<Vec<u8>>> {
        nix::errno::Errno::clear();
        // SAFETY: a live stream; the entry is copied before the next call.
        let entry = unsafe { libc::readdir(self.0.as_ptr()) };
        if entry.is_null() {
            return match nix::errno::Errno::last_raw() {
                0 => Ok(None),
                errno => Err(io::Error::from_raw_os_error(errno)),
            };
        }
        // SAFETY: readdir gives a NUL-terminated name.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        Ok(Some(name.to_bytes().to_vec()))
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: a live stream, closed once.
        unsafe { libc::closedir(self.0.as_ptr()) };
    }
}

/// `(name, value)` of every extended attribute of the file or folder open
/// as `fd`.
pub(super) fn read_xattrs(fd: BorrowedFd) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let raw = fd.as_raw_fd();
    // SAFETY: a valid descriptor; the buffer is the length given.
    let names = sized_read(|buf, len| unsafe { libc::flistxattr(raw, buf.cast(), len) })?;
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let c_name = CString::new(name)?;
        // SAFETY: a valid descriptor and name; the buffer is the length given.
        let value = sized_read(|buf, len| unsafe {
            libc::fgetxattr(raw, c_name.as_ptr(), buf.cast(), len)
        });
        match value {
            Ok(value) => out.push((name.to_vec(), value)),
            // Removed since the list was read.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Calls `call(buffer, len)`, a `*xattr` call that tells its result's
/// size when given no buffer, with a buffer of the size it asks for
/// (asking again if the value grew between the calls). A filesystem
/// without attributes gives none.
fn sized_read(call: impl Fn(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    for _ in 0..16 {
        let len = call(std::ptr::null_mut(), 0);
        if len < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(e),
            };
        }
        let mut buf = vec![0u8; len as usize];
        let n = call(buf.as_mut_ptr(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
    Err(io::Error::other("extended attributes keep changing"))
}

/// Runs an `open`-like call until it is not interrupted; its descriptor.
pub(super) fn retry(call: impl Fn() -> libc::c_int) -> io::Result<OwnedFd> {
    loop {
        let fd = call();
        if fd >= 0 {
            // SAFETY: a new descriptor nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `e`, saying what was being done to which entry.
pub(super) fn context(e: io::Error, doing: &str, rel: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", rel.display()))
}
