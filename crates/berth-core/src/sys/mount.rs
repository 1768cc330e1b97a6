//! mount(2)/umount(2) and the mount table, for drivers that mount
//! filesystems onto volume folders.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

pub use super::mountinfo::{mount_points_under, mounts_of_type, propagation_of, Propagation};

/// Mounts `device` of type `fstype` on `target` with the comma-separated
/// `options` string (flags such as `ro` are split out, the rest is handed to
/// the filesystem as data, like mount(8) does).
pub fn mount(device: &str, target: &Path, fstype: &str, options: &str) -> std::io::Result<()> {
    let (flags, data) = split_mount_options(options);
    let data = (!data.is_empty()).then_some(data.as_str());
    nix::mount::mount(Some(device), target, Some(fstype), flags, data).map_err(std::io::Error::from)
}

/// Unmounts `target`; a target that is not mounted is not an error.
pub fn unmount(target: &Path) -> std::io::Result<()> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// How long a mount or unmount that fails with EBUSY is retried.
const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs `op` until it does not fail with EBUSY, for at most [`BUSY_RETRY`].
/// Two things keep a mount berth is done with busy for milliseconds: a
/// process the daemon is spawning (a shim) holds a copy of the daemon's
/// descriptor table until it execs, so a file an operation has just closed
/// under the mount can still be open in that copy (the unmount fails with
/// EBUSY); and a container starting clones the mount table, whose copy
/// keeps an overlay's superblock, and so its upper folder, in use until
/// the container pivots (a new overlay on that folder fails with EBUSY).
pub fn retry_busy(mut op: impl FnMut() -> std::io::Result<()>) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_RETRY;
    loop {
        match op() {
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// [`unmount`], retried while it fails with EBUSY (see [`retry_busy`]):
/// for mounts berth made and nothing of berth uses any more, so a lasting
/// EBUSY means a process outside berth holds it.
pub fn unmount_when_free(target: &Path) -> std::io::Result<()> {
    retry_busy(|| unmount(target))
}

/// Whether `path` is a mount point. One `statx` answers it (the path is
/// the root of the mount it resolves to: `STATX_ATTR_MOUNT_ROOT`, Linux
/// 5.8), where reading the mount table costs time in proportion to every
/// mount of the host (each container adds several) and misses a mount
/// reached through a symlinked parent. A path `statx` cannot look at (a
/// FUSE mount whose server died answers ENOTCONN), or a kernel that does
/// not report the attribute, falls back to /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    match mount_root_attribute(path) {
        Some(answer) => answer,
        None => super::mountinfo::listed(path),
    }
}

/// Whether `path` is the root of the mount it resolves to, as `statx`
/// says (symlinks not followed); `None` when it cannot say.
pub fn mount_root_attribute(path: &Path) -> Option<bool> {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
    use rustix::io::Errno;
    let flags = AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW;
    match statx(CWD, path, flags, StatxFlags::empty()) {
        Ok(st) => (st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT))
            .then(|| st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)),
        // Nothing there: nothing can be mounted there.
        Err(Errno::NOENT | Errno::NOTDIR) => Some(false),
        Err(_) => None,
    }
}

/// Whether the kernel has mount_setattr(2) (Linux 5.12), which the
/// runtime uses to make a bind read-only recursively (`rro`).
pub fn supports_recursive_attributes() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        // SAFETY: a bad descriptor and no attribute struct: the call only
        // reports an error (EBADF/EINVAL when it exists, ENOSYS when not).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                -1,
                c"".as_ptr(),
                0,
                std::ptr::null::<u8>(),
                0,
            )
        };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
    })
}

/// Splits mount(8)-style options into kernel flags and filesystem data.
fn split_mount_options(options: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (flags, data) = split_mount_options("ro,size=10m,nosuid,uid=1000");
        assert!(flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert_eq!(data, "size=10m,uid=1000");
    }

    #[test]
    fn root_is_mounted() {
        assert!(is_mounted(Path::new("/")));
    }

    #[test]
    fn statx_and_the_mount_table_agree() {
        let dir = tempfile::tempdir().unwrap();
        let (target, link) = (dir.path().join("t"), dir.path().join("link"));
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let missing = dir.path().join("missing");
        for path in [&target, &link, &missing, &target.join("file-under")] {
            assert!(!is_mounted(path), "{}", path.display());
        }
        if !nix::unistd::geteuid().is_root() {
            return; // mounting takes root (CI runs the tests as root)
        }
        mount("tmpfs", &target, "tmpfs", "size=64k").unwrap();
        let found = (
            is_mounted(&target),
            super::super::mountinfo::listed(&target),
        );
        // The symlink itself is not a mount point, though it leads to one.
        let through_link = is_mounted(&link);
        unmount(&target).unwrap();
        assert_eq!(found, (true, true));
        assert!(!through_link);
        assert!(!is_mounted(&target));
    }
}
