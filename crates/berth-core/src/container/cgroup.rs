//! A container's processes, found and ended through its cgroup.
//!
//! Every container runs in the cgroup `/berth/<id>` (the spec's
//! `linux.cgroupsPath`) of each mounted hierarchy. The cgroup, not a pid,
//! is the truth about what still runs: a shim killed with -9 leaves its
//! container's processes behind, reparented and untracked, still writing to
//! volumes; they must be ended before the daemon releases the container's
//! mounts (a volume is never removed while a process has it mounted).
//!
//! Ending them: freeze the cgroup (v1 `freezer.state`, v2 `cgroup.freeze`)
//! so nothing can fork meanwhile, SIGKILL every member, thaw, and repeat
//! until the cgroup is empty. The empty cgroup folders are then removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::shim_protocol::Pid;
use crate::sys::mount;

/// The parent of every container's cgroup in each hierarchy.
const PARENT: &str = "berth";

/// How long [`ContainerCgroup::kill_all`] tries before it gives up.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The cgroup folders of one container (looked up afresh at each use: a
/// dying runtime may still be creating them).
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    id: String,
}

/// Processes that outlived every SIGKILL for [`KILL_TIMEOUT`] (stuck in
/// the kernel, e.g. uninterruptible I/O).
#[derive(Debug, thiserror::Error)]
#[error("processes {pids:?} of container {id} did not end after SIGKILL")]
pub struct Unkillable {
    pub id: String,
    pub pids: Vec<i32>,
}

/// Roots of the mounted cgroup hierarchies (v1 and v2).
fn hierarchy_roots() -> Vec<PathBuf> {
    let mut roots = mount::mounts_of_type("cgroup");
    roots.extend(mount::mounts_of_type("cgroup2"));
    roots
}

impl ContainerCgroup {
    /// The cgroup of container `id`.
    pub fn of(id: &str) -> Self {
        ContainerCgroup { id: id.to_string() }
    }

    /// Its folder in every hierarchy where it exists, with every folder
    /// below it (a container that may write its cgroup file system can
    /// make sub-groups and move processes into them), deepest first.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for root in hierarchy_roots() {
            let top = root.join(PARENT).join(&self.id);
            if top.is_dir() {
                push_tree(&top, &mut out);
            }
        }
        out
    }

    /// Every process in the cgroup or below it (the union over hierarchies).
    pub fn pids(&self) -> Vec<Pid> {
        let mut pids: Vec<Pid> = self
            .dirs()
            .iter()
            .filter_map(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).ok())
            .flat_map(|text| parse_procs(&text))
            .collect();
        pids.sort_by_key(|p| p.raw());
        pids.dedup();
        pids
    }

    /// Whether any process is left.
    pub fn is_empty(&self) -> bool {
        self.pids().is_empty()
    }

    /// Kills every process of the container and waits until none is left;
    /// then removes the cgroup folders (sub-groups first). Idempotent; a
    /// container without a cgroup is done at once.
    pub fn kill_all(&self, id: &str) -> Result<(), Unkillable> {
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                self.remove_dirs();
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Unkillable {
                    id: id.to_string(),
                    pids: pids.iter().map(|p| p.raw()).collect(),
                });
            }
            let dirs = self.dirs();
            set_frozen(&dirs, true);
            for pid in self.pids() {
                let _ = nix::sys::signal::kill(pid.to_nix(), nix::sys::signal::Signal::SIGKILL);
            }
            set_frozen(&dirs, false);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The control file `name` of the container's cgroup, from the first
    /// hierarchy that has it (v1 controllers, or the v2 tree).
    pub fn read_file(&self, name: &str) -> Option<String> {
        hierarchy_roots()
            .iter()
            .map(|root| root.join(PARENT).join(&self.id).join(name))
            .find_map(|path| std::fs::read_to_string(path).ok())
    }

    /// Writes the control file `name` in the first hierarchy that has it.
    pub fn write_file(&self, name: &str, value: &str) -> std::io::Result<()> {
        let path = hierarchy_roots()
            .iter()
            .map(|root| root.join(PARENT).join(&self.id).join(name))
            .find(|path| path.exists())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no cgroup file {name}"),
                )
            })?;
        std::fs::write(&path, value)
    }

    /// Writes the v1 file `v1`, or the v2 file `v2` where there is no v1.
    pub fn write_either(&self, v1: &str, v2: &str, value: &str) -> std::io::Result<()> {
        match self.write_file(v1, value) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.write_file(v2, value),
            other => other,
        }
    }

    /// How many processes the kernel's OOM killer ended in the container
    /// (v1 `memory.oom_control`, v2 `memory.events`: `oom_kill N`).
    pub fn oom_kills(&self) -> u64 {
        let mut kills = 0;
        for root in hierarchy_roots() {
            let dir = root.join(PARENT).join(&self.id);
            for file in ["memory.oom_control", "memory.events"] {
                if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
                    kills = kills.max(parse_oom_kills(&text));
                }
            }
        }
        kills
    }

    /// Freezes (or thaws) the container's processes; an error if no
    /// hierarchy has a freezer for it.
    pub fn freeze(&self, frozen: bool) -> std::io::Result<()> {
        let dirs = self.dirs();
        let controls: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|d| freezer_file(d, frozen).0)
            .collect();
        if controls.is_empty() {
            return Err(std::io::Error::other("the cgroup has no freezer"));
        }
        // Parents first when freezing: children inherit it at once.
        let order: Vec<PathBuf> = if frozen {
            dirs.iter().rev().cloned().collect()
        } else {
            dirs
        };
        for dir in &order {
            let (file, value) = freezer_file(dir, frozen);
            if let Some(file) = file {
                std::fs::write(&file, value)?;
                if frozen {
                    wait_frozen(&file);
                }
            }
        }
        Ok(())
    }

    /// Removes the (empty) cgroup folders, deepest first; busy ones stay.
    fn remove_dirs(&self) {
        for dir in self.dirs() {
            if let Err(e) = std::fs::remove_dir(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!(cgroup = %dir.display(), error = %e, "cgroup not removed");
                }
            }
        }
    }
}

/// `dir` and every folder below it, children before their parent.
fn push_tree(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                push_tree(&entry.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

/// Freezes or thaws cgroup folders where a freezer is available (best
/// effort: without one, the kill loop still converges unless the
/// container forks faster than it is killed).
fn set_frozen(dirs: &[PathBuf], frozen: bool) {
    for dir in dirs {
        let (file, value) = freezer_file(dir, frozen);
        if let Some(file) = file {
            let _ = std::fs::write(&file, value);
            if frozen {
                wait_frozen(&file);
            }
        }
    }
}

/// The freeze control of one cgroup folder: v1's `freezer.state`
/// (`FROZEN`/`THAWED`) or v2's `cgroup.freeze` (`1`/`0`).
fn freezer_file(dir: &Path, frozen: bool) -> (Option<PathBuf>, &'static str) {
    let v1 = dir.join("freezer.state");
    if v1.exists() {
        return (Some(v1), if frozen { "FROZEN" } else { "THAWED" });
    }
    let v2 = dir.join("cgroup.freeze");
    if v2.exists() {
        return (Some(v2), if frozen { "1" } else { "0" });
    }
    (None, "")
}

/// Waits briefly until a v1 freezer reports `FROZEN` (freezing is
/// asynchronous); v2 files read back what was written.
fn wait_frozen(file: &Path) {
    for _ in 0..50 {
        match std::fs::read_to_string(file) {
            Ok(state) if state.trim() != "FREEZING" => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => return,
        }
    }
}

/// The `oom_kill N` line of a memory controller file.
fn parse_oom_kills(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The pids of a `cgroup.procs` file.
fn parse_procs(text: &str) -> Vec<Pid> {
    text.lines()
        .filter_map(|l| l.trim().parse::<i64>().ok())
        .filter_map(Pid::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_parse_from_both_versions() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(v1), 2);
        assert_eq!(parse_oom_kills(v2), 1);
        assert_eq!(parse_oom_kills("oom_kill_disable 0\n"), 0);
    }

    #[test]
    fn procs_parse_and_skip_junk() {
        let pids = parse_procs("12\n\n0\nx\n7\n");
        assert_eq!(pids.iter().map(|p| p.raw()).collect::<Vec<_>>(), [12, 7]);
    }

    #[test]
    fn trees_list_children_before_parents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let mut out = Vec::new();
        push_tree(dir.path(), &mut out);
        assert_eq!(
            out,
            vec![
                dir.path().join("a/b"),
                dir.path().join("a"),
                dir.path().to_path_buf()
            ]
        );
    }

    #[test]
    fn a_container_without_a_cgroup_is_empty() {
        let cg = ContainerCgroup::of("no-such-container-berth-test");
        assert!(cg.is_empty());
        cg.kill_all("no-such-container-berth-test").unwrap();
    }
}
