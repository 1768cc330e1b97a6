//! The daemon's root folder: where each kind of state lives, and the lock
//! that keeps two daemons off the same root.
//!
//! Layout (DESIGN.md section 3):
//! `<root>/berth.db`, `<root>/volumes/<name>/_data`, `<root>/berth.lock`.

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
    /// Creates the root and its fixed sub-folders if missing (mode 0711, as
    /// Docker's root: others may traverse to a mountpoint but not list).
    pub fn create(root: &Path) -> Result<Self> {
        let layout = RootLayout {
            root: root.to_path_buf(),
        };
        for dir in [layout.root.clone(), layout.volumes_dir()] {
            create_dir_mode(&dir, 0o711)?;
        }
        Ok(layout)
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
}
