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
/// A container starting elsewhere clones the host's mount table, and until
/// it has made its copies private and pivoted into its root they are peers
/// of berth's own mounts: an unmount that propagates to a busy copy fails
/// with EBUSY, and a new overlay on an upper folder a copy still holds
/// fails likewise. The window is milliseconds.
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

/// Whether `path` is a mount point, read from /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == wanted)
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
    }
}
