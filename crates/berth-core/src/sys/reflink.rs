//! Block sharing and filesystem freezing: `FICLONE` (a whole-file
//! copy-on-write clone, milliseconds whatever the size) and
//! `FIFREEZE`/`FITHAW` (a consistent instant of a mounted filesystem).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

const FICLONE: libc::c_ulong = 0x4004_9409;
const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;

/// Makes `dst` (new) a copy-on-write clone of `src`. On error `dst` is
/// removed.
pub fn clone_file(src: &Path, dst: &Path) -> std::io::Result<()> {
    let from = File::open(src)?;
    let to = OpenOptions::new().write(true).create_new(true).open(dst)?;
    // SAFETY: ioctl with two open descriptors.
    let rc = unsafe { libc::ioctl(to.as_raw_fd(), FICLONE, from.as_raw_fd()) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        drop(to);
        let _ = std::fs::remove_file(dst);
        return Err(err);
    }
    to.sync_all()
}

/// A frozen filesystem; thawed when dropped, whatever happened meanwhile.
pub struct Frozen {
    dir: File,
}

/// Freezes the filesystem mounted at `mountpoint` (writes block until thaw).
pub fn freeze(mountpoint: &Path) -> std::io::Result<Frozen> {
    let dir = File::open(mountpoint)?;
    // SAFETY: ioctl on an open descriptor; the argument is unused.
    if unsafe { libc::ioctl(dir.as_raw_fd(), FIFREEZE, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Frozen { dir })
}

/// Thaws the filesystem at `mountpoint` if it is frozen (EINVAL when it
/// is not, which is ignored).
pub fn thaw(mountpoint: &Path) {
    if let Ok(dir) = File::open(mountpoint) {
        // SAFETY: ioctl on an open descriptor; the argument is unused.
        let _ = unsafe { libc::ioctl(dir.as_raw_fd(), FITHAW, 0) };
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: ioctl on an open descriptor; the argument is unused.
        if unsafe { libc::ioctl(self.dir.as_raw_fd(), FITHAW, 0) } != 0 {
            tracing::error!(error = %std::io::Error::last_os_error(), "could not thaw a frozen filesystem");
        }
    }
}
