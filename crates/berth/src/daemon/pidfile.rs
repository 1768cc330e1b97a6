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
                let alive = pid > 0 && process_running(pid);
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

/// Whether process `pid` exists and has not ended: a daemon killed with
/// SIGKILL stays a zombie until its parent reaps it, and must not keep the
/// next one from starting.
fn process_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(parse_state(&stat), Some('Z' | 'X' | 'x')),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/PID/stat` line (after the command name,
/// which may hold spaces and parentheses).
fn parse_state(stat: &str) -> Option<char> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_read_after_the_command_name() {
        assert_eq!(parse_state("42 (berth) S 1 42"), Some('S'));
        assert_eq!(parse_state("42 (a) (b)) Z 1 42"), Some('Z'));
        assert_eq!(parse_state("garbage"), None);
        assert!(process_running(std::process::id() as i32));
        assert!(!process_running(i32::MAX));
    }
}
