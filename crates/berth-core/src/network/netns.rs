//! Network namespaces kept as files: a new namespace is bind-mounted on a
//! file (as `ip netns add` and Podman do), so it outlives every process in
//! it and a daemon restart, and netavark and the runtime can both name it
//! by path. The namespace ends when the file is unmounted and no process
//! is left in it.

use std::io;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Makes `path` a new, empty network namespace (loopback only, down).
/// Idempotent: a path that already is one is left as it is. Who cleans
/// up: the caller, with [`remove`], also when a later step fails.
pub fn create(path: &Path) -> io::Result<()> {
    if is_netns(path) {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let target = path.to_path_buf();
    // unshare(CLONE_NEWNET) moves only the calling thread: a short-lived
    // thread makes the namespace and pins it on the file before it ends.
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        })?
        .join()
        .map_err(|_| io::Error::other("the netns thread panicked"))?
}

/// Whether `path` is a mounted network namespace.
pub fn is_netns(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    // NS_GET_NSTYPE answers CLONE_NEWNET only for a network namespace.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    let kind = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&file), NS_GET_NSTYPE) };
    kind == libc::CLONE_NEWNET
}

/// Unmounts and deletes the namespace file. Idempotent: returns whether
/// there was anything to remove.
pub fn remove(path: &Path) -> io::Result<bool> {
    let mounted = is_netns(path);
    if mounted {
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(mounted),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_namespace_file_is_made_once_and_removed_once() {
        if !root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        assert!(!is_netns(&path));
        create(&path).unwrap();
        assert!(is_netns(&path));
        let first = std::fs::metadata("/proc/self/ns/net").unwrap();
        let made = std::fs::metadata(&path).unwrap();
        assert_ne!(
            std::os::unix::fs::MetadataExt::ino(&first),
            std::os::unix::fs::MetadataExt::ino(&made),
            "a new namespace, not the daemon's"
        );
        create(&path).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()),
            std::os::unix::fs::MetadataExt::ino(&made),
            "create is idempotent"
        );
        assert!(remove(&path).unwrap());
        assert!(!path.exists());
        assert!(!remove(&path).unwrap());
    }
}
