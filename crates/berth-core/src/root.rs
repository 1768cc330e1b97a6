//! The daemon's root folder: where each kind of state lives, and the lock
//! that keeps two daemons off the same root.
//!
//! Layout (DESIGN.md section 3):
//! `<root>/berth.db`, `<root>/volumes/<name>/_data`, `<root>/berth.lock`.
//!
//! Permissions (the class of Docker's CVE-2021-41091): nothing under the
//! root may be reachable by another host user. A set-uid file a container
//! leaves in a volume, a container's `config.json` with its `-e` secrets,
//! the database: all sit below folders only the daemon's user can enter.
//! The root is 0710 (Docker's mode), every fixed folder below it 0700, the
//! database files 0600; [`RootLayout::create`] enforces this at every
//! start, also on a root the user made and on an older installation.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Paths inside one daemon root.
#[derive(Debug, Clone)]
pub struct RootLayout {
    root: PathBuf,
}

impl RootLayout {
    /// Creates the root and its fixed sub-folders if missing and makes them
    /// private (owner: the daemon's user; root 0710, the rest 0700), also
    /// when they existed with looser modes. The database files get 0600.
    pub fn create(root: &Path) -> Result<Self> {
        create_dir_mode(root, ROOT_MODE)?;
        // One spelling of the root: paths stored and compared later (a
        // shim's `--state-dir`, spec paths) must not depend on how the
        // daemon was started (`a/../root`, a relative path).
        let root = std::fs::canonicalize(root)
            .map_err(|e| Error::io(format!("resolving {}", root.display()), e))?;
        let layout = RootLayout { root };
        make_private(&layout.root, ROOT_MODE)?;
        for dir in layout.private_dirs() {
            create_dir_mode(&dir, PRIVATE_DIR_MODE)?;
            make_private(&dir, PRIVATE_DIR_MODE)?;
        }
        for file in layout.secret_files() {
            if file.exists() {
                make_private(&file, SECRET_FILE_MODE)?;
            }
        }
        Ok(layout)
    }

    /// The layout of `root` as it is, creating and changing nothing (for
    /// checks such as `berth daemon --validate`).
    pub fn unchecked(root: &Path) -> Self {
        RootLayout {
            root: root.to_path_buf(),
        }
    }

    /// The fixed folders directly under the root.
    fn private_dirs(&self) -> Vec<PathBuf> {
        vec![
            self.volumes_dir(),
            self.images_dir(),
            self.containers_dir(),
            self.runtime_dir(),
            self.thin_dir(),
        ]
    }

    /// Files directly under the root that hold secrets (the database and
    /// its journal hold `-e` values).
    fn secret_files(&self) -> Vec<PathBuf> {
        let db = self.db_path();
        let with = |suffix: &str| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        vec![db.clone(), with("-wal"), with("-shm"), self.lock_path()]
    }

    /// Every container's folder (`<root>/containers/<id>`).
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// The embedded runtime's state (`<root>/runtime`).
    pub fn runtime_dir(&self) -> PathBuf {
        self.root.join("runtime")
    }

    /// Containers' network namespaces, one bind-mounted file each.
    pub fn netns_dir(&self) -> PathBuf {
        self.root.join("netns")
    }

    /// netavark's state: aardvark-dns files, its lock.
    pub fn netavark_dir(&self) -> PathBuf {
        self.root.join("netavark")
    }

    /// The thin driver's folder (pool file, pool mount, volume mounts).
    pub fn thin_dir(&self) -> PathBuf {
        self.root.join("thin")
    }

    /// Backups: the key that seals repository secrets, rustic's cache.
    pub fn backup_dir(&self) -> PathBuf {
        self.root.join("backup")
    }

    /// The root folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite metadata database.
    pub fn db_path(&self) -> PathBuf {
        self.root.join("berth.db")
    }

    /// Parent of every local volume's folder.
    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// Image configs' layers and scratch space.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The lock file held for the daemon's lifetime.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("berth.lock")
    }
}

/// The root: Docker's 0710 (owner only; its group, the daemon's, may
/// traverse, which matters only for a remapped root).
const ROOT_MODE: u32 = 0o710;
/// Folders below the root.
const PRIVATE_DIR_MODE: u32 = 0o700;
/// Files holding secrets.
pub const SECRET_FILE_MODE: u32 = 0o600;

/// Writes `bytes` to `path` through a temporary file (`PATH.tmp`, mode
/// 0600, never through a symlink) renamed over it: readers see the old
/// file or the whole new one, and only the daemon's user can read it.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(SECRET_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    file.write_all(bytes)?;
    std::fs::rename(&tmp, path)
}

/// Gives `path` to the daemon's user and group with `mode` (without
/// following a symlink: a link planted in the root is refused).
pub fn make_private(path: &Path, mode: u32) -> Result<()> {
    let fail = |e: std::io::Error| Error::io(format!("securing {}", path.display()), e);
    let meta = std::fs::symlink_metadata(path).map_err(fail)?;
    if meta.file_type().is_symlink() {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a symbolic link");
        return Err(fail(e));
    }
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != uid.as_raw() || meta.gid() != gid.as_raw() {
        nix::unistd::fchownat(
            None,
            path,
            Some(uid),
            Some(gid),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| fail(e.into()))?;
    }
    if meta.mode() & 0o7777 != mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    }
    Ok(())
}

fn create_dir_mode(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io(format!("creating {}", dir.display()), e)),
    }
}

/// An exclusive advisory lock on `<root>/berth.lock`, released on drop (and
/// by the kernel when the process dies, so a crash never leaves it stale).
#[derive(Debug)]
pub struct RootLock {
    _file: File,
}

impl RootLock {
    /// Takes the lock without waiting. Fails with a message naming the PID
    /// recorded by the holder when another daemon has this root.
    pub fn acquire(layout: &RootLayout) -> Result<Self> {
        let path = layout.lock_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        // SAFETY: flock on a valid, owned descriptor has no memory effects.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let msg = format!(
                "another berth daemon (pid {}) is using root {}",
                holder.trim(),
                layout.root().display()
            );
            return Err(Error::io(msg, std::io::Error::last_os_error()));
        }
        file.set_len(0)
            .and_then(|_| {
                use std::io::Write;
                (&file).write_all(std::process::id().to_string().as_bytes())
            })
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(RootLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_same_root_fails() {
        let dir = tempfile::tempdir().unwrap();
        let layout = RootLayout::create(dir.path()).unwrap();
        let first = RootLock::acquire(&layout).unwrap();
        let err = RootLock::acquire(&layout).unwrap_err();
        assert!(err.to_string().contains("another berth daemon"), "{err}");
        drop(first);
        RootLock::acquire(&layout).unwrap();
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn loose_modes_of_an_existing_root_are_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("containers")).unwrap();
        std::fs::write(root.join("berth.db"), b"").unwrap();
        for p in [root.clone(), root.join("containers")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(
            root.join("berth.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let layout = RootLayout::create(&root).unwrap();
        assert_eq!(mode(&root), 0o710);
        for sub in layout.private_dirs() {
            assert_eq!(mode(&sub), 0o700, "{}", sub.display());
        }
        assert_eq!(mode(&root.join("berth.db")), 0o600);
    }

    #[test]
    fn the_root_is_resolved_to_one_spelling() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("other")).unwrap();
        let layout = RootLayout::create(&dir.path().join("other/../root")).unwrap();
        assert_eq!(
            layout.root(),
            std::fs::canonicalize(dir.path()).unwrap().join("root")
        );
    }

    #[test]
    fn a_symlink_in_place_of_a_fixed_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("volumes")).unwrap();
        let err = RootLayout::create(&root).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
}
