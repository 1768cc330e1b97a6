//! Bind propagation and read-only cgroup hierarchies, applied by the shim.
//! libcontainer 0.7 makes binds with `open_tree` + `move_mount` and never
//! applies the propagation options of the spec (`rprivate`, `rslave`,
//! `rshared`…), so a bind would take whatever its source has; and it
//! mounts each cgroup v1 hierarchy under `/sys/fs/cgroup` read-write even
//! when the spec's cgroup mount is `ro`, so a container could raise its
//! own memory and pids limits. After create (the container's mounts are
//! made and its root pivoted) and before start, a forked child of the shim
//! enters the container's mount namespace, sets each bind's propagation
//! and remounts every mount under a read-only `/sys/fs/cgroup` read-only,
//! as runc does.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::mount::MsFlags;
use serde_json::Value;

/// One bind's destination inside the container and its propagation.
#[derive(Debug, PartialEq)]
pub struct Propagation {
    pub destination: String,
    pub flags: MsFlags,
}

/// The propagation flags of a mount option, if it is one.
fn flags_of(option: &str) -> Option<MsFlags> {
    let flags = match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        _ => return None,
    };
    Some(flags)
}

/// The binds of a spec with a propagation option (the last one wins).
pub fn parse_propagations(spec: &Value) -> Vec<Propagation> {
    let mounts = spec["mounts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    mounts
        .iter()
        .filter(|m| m["type"] == "bind")
        .filter_map(|m| {
            let options = m["options"].as_array()?;
            let flags = options.iter().rev().find_map(|o| flags_of(o.as_str()?))?;
            Some(Propagation {
                destination: m["destination"].as_str()?.to_string(),
                flags,
            })
        })
        .collect()
}

/// Whether the spec mounts `/sys/fs/cgroup` read-only.
pub fn cgroups_readonly(spec: &Value) -> bool {
    spec["mounts"].as_array().is_some_and(|mounts| {
        mounts.iter().any(|m| {
            m["destination"] == "/sys/fs/cgroup"
                && m["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|v| v == "ro"))
        })
    })
}

/// Mount points under `/sys/fs/cgroup` (it included) in a mountinfo table
/// read for the container's first process (paths as it sees them).
pub fn cgroup_mounts(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| *p == "/sys/fs/cgroup" || p.starts_with("/sys/fs/cgroup/"))
        .map(str::to_string)
        .collect()
}

/// Applies the binds' propagation from the bundle's spec, and read-only
/// cgroup hierarchies, inside the mount namespace of `init_pid` (the
/// created, not yet started, container).
pub fn apply(bundle: &Path, init_pid: i32) -> Result<(), String> {
    let text = std::fs::read_to_string(bundle.join("config.json"))
        .map_err(|e| format!("reading the spec: {e}"))?;
    let spec: Value = serde_json::from_str(&text).map_err(|e| format!("reading the spec: {e}"))?;
    let mut wanted = parse_propagations(&spec);
    if cgroups_readonly(&spec) {
        let table = std::fs::read_to_string(format!("/proc/{init_pid}/mountinfo"))
            .map_err(|e| format!("reading the container's mounts: {e}"))?;
        let ro = MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        // Children first would not matter: each mount is its own.
        wanted.extend(
            cgroup_mounts(&table)
                .into_iter()
                .map(|destination| Propagation {
                    destination,
                    flags: ro,
                }),
        );
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let open = |what: &str| {
        std::fs::File::open(format!("/proc/{init_pid}/{what}"))
            .map(OwnedFd::from)
            .map_err(|e| format!("opening the container's {what}: {e}"))
    };
    let (ns, root) = (open("ns/mnt")?, open("root")?);
    let targets: Vec<(CString, MsFlags)> = wanted
        .iter()
        .map(|p| Ok((CString::new(p.destination.as_str())?, p.flags)))
        .collect::<Result<_, std::ffi::NulError>>()
        .map_err(|e| format!("bad mount destination: {e}"))?;
    in_namespace(&ns, &root, &targets)
}

/// Forks a child that joins the namespace, takes the container's root as
/// its own (the namespace's root is not the pivoted one) and sets each
/// propagation; its exit code is the index of the first failure plus one.
fn in_namespace(
    ns: &OwnedFd,
    root: &OwnedFd,
    targets: &[(CString, MsFlags)],
) -> Result<(), String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    // SAFETY: the shim is single-threaded; the child only makes raw
    // syscalls on memory prepared before the fork, then _exits.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => unsafe {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) != 0
                || libc::fchdir(root.as_raw_fd()) != 0
                || libc::chroot(c".".as_ptr()) != 0
            {
                libc::_exit(255);
            }
            for (index, (target, flags)) in targets.iter().enumerate() {
                let rc = libc::mount(
                    std::ptr::null(),
                    target.as_ptr(),
                    std::ptr::null(),
                    flags.bits(),
                    std::ptr::null(),
                );
                if rc != 0 {
                    libc::_exit(index as i32 + 1);
                }
            }
            libc::_exit(0)
        },
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, 255)) => {
                Err("cannot enter the container's mount namespace".into())
            }
            Ok(WaitStatus::Exited(_, n)) => {
                let (target, _) = &targets[(n - 1) as usize];
                Err(format!(
                    "setting the propagation of {}",
                    target.to_string_lossy()
                ))
            }
            other => Err(format!("propagation helper ended: {other:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn read_only_cgroup_hierarchies_are_found() {
        let spec = json!({"mounts": [
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "options": ["nosuid", "ro"]}]});
        assert!(cgroups_readonly(&spec));
        let rw = json!({"mounts": [{"destination": "/sys/fs/cgroup", "type": "cgroup", "options": ["rw"]}]});
        assert!(!cgroups_readonly(&rw));
        let table = "1 0 0:1 / / rw - overlay overlay rw\n\
2 1 0:2 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n\
3 2 0:3 /berth/x /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
4 1 0:4 / /sys/fs/cgroupx rw - tmpfs t rw\n";
        assert_eq!(
            cgroup_mounts(table),
            vec!["/sys/fs/cgroup", "/sys/fs/cgroup/memory"]
        );
    }

    #[test]
    fn binds_with_a_propagation_option_are_found() {
        let spec = json!({"mounts": [
            {"destination": "/proc", "type": "proc", "options": ["nosuid"]},
            {"destination": "/a", "type": "bind", "options": ["rbind", "rslave", "ro"]},
            {"destination": "/b", "type": "bind", "options": ["bind", "private", "shared"]},
            {"destination": "/c", "type": "bind", "options": ["rbind"]},
        ]});
        assert_eq!(
            parse_propagations(&spec),
            vec![
                Propagation {
                    destination: "/a".into(),
                    flags: MsFlags::MS_SLAVE | MsFlags::MS_REC
                },
                Propagation {
                    destination: "/b".into(),
                    flags: MsFlags::MS_SHARED
                },
            ]
        );
        assert!(parse_propagations(&json!({})).is_empty());
    }
}
