//! mount(2)/umount(2) and the mount table, for drivers that mount
//! filesystems onto volume folders.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

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
        None => listed_in_mountinfo(path),
    }
}

/// `statx`'s answer, `None` when it has none to give.
fn mount_root_attribute(path: &Path) -> Option<bool> {
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

/// Whether `path` is listed as a mount point in /proc/self/mountinfo.
fn listed_in_mountinfo(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == wanted)
}

/// Every mount point at or under `dir`, from one read of
/// /proc/self/mountinfo (callers checking many folders read it once).
pub fn mount_points_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|mp| std::path::PathBuf::from(unescape_mountinfo(mp)))
        .filter(|mp| mp.starts_with(dir))
        .collect()
}

/// How mount events propagate to and from a mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// In a peer group (`shared:N`), maybe also a slave.
    Shared,
    /// Receives from a master (`master:N`) only.
    Slave,
    Private,
}

/// The mount point holding `path` (the deepest one; the last mounted of
/// equals) and its propagation, from /proc/self/mountinfo.
pub fn propagation_of(path: &Path) -> Option<(std::path::PathBuf, Propagation)> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(std::path::PathBuf, Propagation)> = None;
    for line in table.lines() {
        let Some((point, propagation)) = parse_propagation(line) else {
            continue;
        };
        let deeper = best
            .as_ref()
            .is_none_or(|(b, _)| point.components().count() >= b.components().count());
        if path.starts_with(&point) && deeper {
            best = Some((point, propagation));
        }
    }
    best
}

/// A mountinfo line's mount point and propagation (the optional fields
/// between the mount options and the ` - ` separator).
fn parse_propagation(line: &str) -> Option<(std::path::PathBuf, Propagation)> {
    let (before, _) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let point = unescape_mountinfo(fields.get(4)?);
    let optional = fields.get(6..).unwrap_or_default();
    let propagation = if optional.iter().any(|f| f.starts_with("shared:")) {
        Propagation::Shared
    } else if optional.iter().any(|f| f.starts_with("master:")) {
        Propagation::Slave
    } else {
        Propagation::Private
    };
    Some((point.into(), propagation))
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

/// Mount points of every filesystem of type `fstype` (`cgroup`,
/// `cgroup2`, …), from /proc/self/mountinfo.
pub fn mounts_of_type(fstype: &str) -> Vec<std::path::PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| mount_of_type(line, fstype))
        .collect()
}

/// The mount point of one mountinfo line if its type is `fstype` (the
/// type follows the ` - ` separator, after the optional fields).
fn mount_of_type(line: &str, fstype: &str) -> Option<std::path::PathBuf> {
    let (before, after) = line.split_once(" - ")?;
    if after.split(' ').next()? != fstype {
        return None;
    }
    let mount_point = before.split(' ').nth(4)?;
    Some(unescape_mountinfo(mount_point).into())
}

/// mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn propagation_is_read_from_the_optional_fields() {
        let shared = "25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw";
        let slave = "26 25 0:5 / /a\\040b rw master:3 - tmpfs t rw";
        let private = "27 25 0:6 / /p rw - tmpfs t rw";
        let both = "28 25 0:7 / /q rw shared:4 master:2 - tmpfs t rw";
        let read = |l| parse_propagation(l).unwrap();
        assert_eq!(read(shared), ("/".into(), Propagation::Shared));
        assert_eq!(read(slave), ("/a b".into(), Propagation::Slave));
        assert_eq!(read(private).1, Propagation::Private);
        assert_eq!(read(both).1, Propagation::Shared);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn mount_types_are_read_after_the_separator() {
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu";
        let v2 = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        assert_eq!(
            mount_of_type(v1, "cgroup"),
            Some("/sys/fs/cgroup/cpu".into())
        );
        assert_eq!(mount_of_type(v1, "cgroup2"), None);
        assert_eq!(
            mount_of_type(v2, "cgroup2"),
            Some("/sys/fs/cgroup/unified".into())
        );
    }

    #[test]
    fn root_is_mounted() {
        assert!(is_mounted(Path::new("/")));
        assert!(listed_in_mountinfo(Path::new("/")));
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
        let found = (is_mounted(&target), listed_in_mountinfo(&target));
        // The symlink itself is not a mount point, though it leads to one.
        let through_link = is_mounted(&link);
        unmount(&target).unwrap();
        assert_eq!(found, (true, true));
        assert!(!through_link);
        assert!(!is_mounted(&target));
    }
}
