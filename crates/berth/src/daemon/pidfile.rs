//! The daemon's PID file: refused if it names another live process, removed
//! on clean exit.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A written PID file, removed on drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes our PID to `path`, unless it holds the PID of a live process
    /// (another daemon using the same PID file).
    pub fn create(path: &Path) -> Result<Self> {
        if let Ok(old) = std::fs::read_to_string(path) {
            if let Ok(pid) = old.trim().parse::<i32>() {
                let alive = pid > 0 && Path::new(&format!("/proc/{pid}")).exists();
                if alive && pid as u32 != std::process::id() {
                    bail!(
                        "pid file found, ensure berth is not running or delete {}",
                        path.display()
                    );
                }
            }
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pid file {}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
