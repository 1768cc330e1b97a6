//! Opening a file on XFS through its handle (`XFS_IOC_FD_TO_HANDLE`, then
//! `XFS_IOC_OPEN_BY_HANDLE`), which XFS marks as "invisible I/O": writes
//! through that descriptor never change the file's mtime or ctime
//! (`FMODE_NOCMTIME`).
//!
//! Why: a thin volume's loop device writes its image through one such
//! descriptor. Through an ordinary one, nearly every write moved the
//! image's mtime, so every flush the volume's filesystem sent (each fsync
//! in the container) became an fsync that had to log the image's inode in
//! the pool's XFS log, a second log write and flush under the volume's own
//! journal. Nothing reads an image's timestamps: berth measures images by
//! their blocks, and snapshots and clones are reflinks.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;

/// `struct xfs_fsop_handlereq` (`xfs_fs.h`).
#[repr(C)]
struct HandleRequest {
    fd: u32,
    path: *mut libc::c_void,
    oflags: u32,
    ihandle: *mut libc::c_void,
    ihandlen: u32,
    ohandle: *mut libc::c_void,
    ohandlen: *mut u32,
}

/// `_IOWR('X', nr, struct xfs_fsop_handlereq)`.
const fn handle_ioctl(nr: libc::c_ulong) -> libc::c_ulong {
    let size = std::mem::size_of::<HandleRequest>() as libc::c_ulong;
    (3 << 30) | (size << 16) | ((b'X' as libc::c_ulong) << 8) | nr
}
const XFS_IOC_FD_TO_HANDLE: libc::c_ulong = handle_ioctl(106);
const XFS_IOC_OPEN_BY_HANDLE: libc::c_ulong = handle_ioctl(107);
/// Room for any XFS handle (24 bytes today; `MAXHANSIZ` is 32).
const HANDLE_ROOM: usize = 64;

/// Opens `path` for reading and writing so that writes through the
/// returned file leave its timestamps alone. `path` must be a regular file
/// on XFS and the caller needs `CAP_SYS_ADMIN`; any other case is an
/// error (`ENOTTY` off XFS, `EPERM` without the capability) and the caller
/// falls back to an ordinary open.
///
/// The file is first opened by path and held open while the handle is
/// opened (through its folder, as the ioctl requires), so the new descriptor refers to the same, connected dentry:
/// the loop device's `backing_file` in sysfs then shows the real path.
pub fn open_without_cmtime(path: &Path) -> std::io::Result<File> {
    let by_path = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut handle = [0u8; HANDLE_ROOM];
    let mut handle_len = HANDLE_ROOM as u32;
    let mut to_handle = HandleRequest {
        fd: by_path.as_raw_fd() as u32,
        path: std::ptr::null_mut(),
        oflags: 0,
        ihandle: std::ptr::null_mut(),
        ihandlen: 0,
        ohandle: handle.as_mut_ptr().cast(),
        ohandlen: &mut handle_len,
    };
    ioctl(&by_path, XFS_IOC_FD_TO_HANDLE, &mut to_handle)?;
    let mut open = HandleRequest {
        fd: 0,
        path: std::ptr::null_mut(),
        oflags: (libc::O_RDWR | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
        ihandle: handle.as_mut_ptr().cast(),
        ihandlen: handle_len,
        ohandle: std::ptr::null_mut(),
        ohandlen: std::ptr::null_mut(),
    };
    // OPEN_BY_HANDLE is asked of a directory on the same filesystem.
    let folder = File::open(path.parent().unwrap_or(Path::new("/")))?;
    let fd = ioctl(&folder, XFS_IOC_OPEN_BY_HANDLE, &mut open)?;
    // SAFETY: OPEN_BY_HANDLE returned a new descriptor that we now own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn ioctl(file: &File, request: libc::c_ulong, arg: &mut HandleRequest) -> std::io::Result<i32> {
    // SAFETY: an XFS handle ioctl with a pointer to a live request whose
    // buffers outlive the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, arg as *mut HandleRequest) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<HandleRequest>(), 56);
        assert_eq!(XFS_IOC_FD_TO_HANDLE, 0xC038_586A);
    }

    #[test]
    fn off_xfs_it_fails_so_the_caller_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        // SAFETY: a zeroed plain-data struct that statfs fills in.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        let c_path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statfs with a valid C string and a live out-struct.
        assert_eq!(unsafe { libc::statfs(c_path.as_ptr(), &mut fs) }, 0);
        const XFS_MAGIC: libc::c_long = 0x5846_5342;
        if fs.f_type as libc::c_long != XFS_MAGIC {
            assert!(open_without_cmtime(&file).is_err());
        }
    }
}
