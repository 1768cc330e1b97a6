//! The OCI runtime spec (`config.json`) berth gives the runtime, with
//! Docker's defaults (capabilities, mounts, masked and read-only paths,
//! device rules, namespaces, and a seccomp deny list built from the
//! syscalls Docker's default profile refuses (EPERM) for a container with
//! default capabilities) as the container's options change them
//! (`--privileged`, `--cap-*`, `--device`, `--pid`/`--ipc`/`--uts`,
//! limits, `--read-only`, `--security-opt`). Written as JSON and checked by parsing it into
//! `oci_spec::runtime::Spec`, the type the runtime reads.

use std::path::Path;

use serde_json::{json, Value};

use super::model::Recursion;
use super::options::devices::SpecDevice;
use super::options::{ContainerOptions, IpcMode, NamespaceMode};
use super::ContainerError;

/// Syscalls refused with EPERM (Docker's default profile, default caps,
/// x86_64); names libseccomp does not know are skipped by the runtime.
const DENIED_SYSCALLS: &[&str] = &[
    "syslog",
    "uselib",
    "ustat",
    "sysfs",
    "vhangup",
    "pivot_root",
    "_sysctl",
    "acct",
    "settimeofday",
    "mount",
    "umount2",
    "swapon",
    "swapoff",
    "reboot",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "create_module",
    "init_module",
    "delete_module",
    "get_kernel_syms",
    "query_module",
    "quotactl",
    "nfsservctl",
    "getpmsg",
    "putpmsg",
    "afs_syscall",
    "tuxcall",
    "security",
    "lookup_dcookie",
    "clock_settime",
    "vserver",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "kexec_load",
    "add_key",
    "request_key",
    "keyctl",
    "migrate_pages",
    "unshare",
    "move_pages",
    "perf_event_open",
    "fanotify_init",
    "open_by_handle_at",
    "setns",
    "kcmp",
    "finit_module",
    "kexec_file_load",
    "bpf",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "pidfd_getfd",
    "process_madvise",
    "mount_setattr",
    "quotactl_fd",
    "set_mempolicy_home_node",
];

/// clone(2) flags that make namespaces: NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET. Docker allows clone only without them.
const CLONE_NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A mount into the container: a bind of `source`, or a tmpfs with the
/// given options.
#[derive(Debug, Clone, PartialEq)]
pub struct BindMount {
    pub source: String,
    pub destination: String,
    pub readonly: bool,
    pub tmpfs: Option<Vec<String>>,
    /// Propagation of a bind (`rprivate` when empty).
    pub propagation: String,
    pub recursion: Recursion,
}

impl BindMount {
    /// A private recursive bind of `source`.
    pub fn private(source: String, destination: &str, readonly: bool) -> Self {
        BindMount {
            source,
            destination: destination.into(),
            readonly,
            tmpfs: None,
            propagation: String::new(),
            recursion: Recursion::default(),
        }
    }

    fn propagation(&self) -> &str {
        if self.propagation.is_empty() {
            "rprivate"
        } else {
            &self.propagation
        }
    }
}

/// Everything the spec is made from.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub rootfs: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub network: super::SpecNetwork,
    pub binds: Vec<BindMount>,
    /// The checked `HostConfig`/`Config` options.
    pub options: &'a ContainerOptions,
    /// `/proc/PID/ns/pid` of the container named by `--pid container:…`.
    pub pid_namespace: Option<String>,
    /// Device nodes resolved from `--device` (and the host's, privileged).
    pub devices: Vec<SpecDevice>,
    /// `Tty`: the process gets a terminal (`HostConfig.ConsoleSize` sized).
    pub terminal: Option<crate::sys::terminal::WindowSize>,
}

/// Builds the spec JSON and checks it parses as an OCI spec.
pub fn build(input: &SpecInput<'_>) -> Result<Value, ContainerError> {
    let opts = input.options;
    let caps = json!(opts.capabilities());
    let mut process = json!({
        "terminal": input.terminal.is_some(),
        "user": {"uid": input.uid, "gid": input.gid, "additionalGids": input.additional_gids},
        "args": input.args,
        "env": input.env,
        "cwd": input.cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": opts.resources.rlimits(),
    });
    // Left out unless asked: with it set, libcontainer installs the filter
    // after dropping capabilities, and loading it then fails.
    if opts.security.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    if opts.resources.oom_score_adj != 0 {
        process["oomScoreAdj"] = json!(opts.resources.oom_score_adj);
    }
    if let Some(size) = input.terminal.filter(|s| s.height > 0 && s.width > 0) {
        process["consoleSize"] = json!({"height": size.height, "width": size.width});
    }
    let mut spec = json!({
        "ociVersion": "1.1.0",
        "root": {"path": input.rootfs, "readonly": opts.readonly_rootfs},
        "process": process,
        "mounts": mounts(&input.binds, opts),
        "linux": linux_section(input),
        "annotations": opts.annotations,
    });
    if !opts.uts_host {
        spec["hostname"] = json!(input.hostname);
        if !opts.domainname.is_empty() {
            spec["domainname"] = json!(opts.domainname);
        }
    }
    serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone()).map_err(|e| {
        ContainerError::Start(format!("internal error: generated spec is invalid: {e}"))
    })?;
    Ok(spec)
}

/// The spec's `linux` section: cgroup, namespaces, resources and
/// devices, masked paths, sysctls and seccomp.
fn linux_section(input: &SpecInput<'_>) -> Value {
    let opts = input.options;
    let mut resources = opts.resources.spec_resources();
    resources.insert("devices".into(), device_rules(input));
    let mut linux = json!({
        "cgroupsPath": format!("/berth/{}", input.id),
        "namespaces": namespaces(input),
        "resources": resources,
        "devices": input.devices.iter().map(|d| d.node.clone()).collect::<Vec<_>>(),
        "sysctl": opts.resources.sysctls.clone().unwrap_or_default(),
    });
    let (masked, readonly) = if opts.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
            READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
        )
    };
    linux["maskedPaths"] = json!(opts.masked_paths.clone().unwrap_or(masked));
    linux["readonlyPaths"] = json!(opts.readonly_paths.clone().unwrap_or(readonly));
    if !opts.privileged && !opts.security.seccomp_unconfined {
        linux["seccomp"] = seccomp();
    }
    if let Some(mode) = rootfs_propagation(&input.binds) {
        linux["rootfsPropagation"] = json!(mode);
    }
    linux
}

/// Namespaces: each private unless the options share the host's (or, for
/// pid, another container's).
fn namespaces(input: &SpecInput<'_>) -> Vec<Value> {
    let opts = input.options;
    let mut out = vec![json!({"type": "mount"})];
    match (&opts.pid, &input.pid_namespace) {
        (NamespaceMode::Host, _) => {}
        (_, Some(path)) => out.push(json!({"type": "pid", "path": path})),
        _ => out.push(json!({"type": "pid"})),
    }
    if opts.ipc != IpcMode::Host {
        out.push(json!({"type": "ipc"}));
    }
    if !opts.uts_host {
        out.push(json!({"type": "uts"}));
    }
    match &input.network {
        super::SpecNetwork::Host => {}
        super::SpecNetwork::New => out.push(json!({"type": "network"})),
        super::SpecNetwork::Join(path) => out.push(json!({"type": "network", "path": path})),
    }
    if opts.cgroupns_private {
        out.push(json!({"type": "cgroup"}));
    }
    out
}

/// Docker's default mounts: destination, source, type, options.
const DEFAULT_MOUNTS: [(&str, &str, &str, &[&str]); 7] = [
    ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
    (
        "/dev",
        "tmpfs",
        "tmpfs",
        &["nosuid", "strictatime", "mode=755", "size=65536k"],
    ),
    (
        "/dev/pts",
        "devpts",
        "devpts",
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ],
    ),
    (
        "/sys",
        "sysfs",
        "sysfs",
        &["nosuid", "noexec", "nodev", "ro"],
    ),
    (
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["ro", "nosuid", "noexec", "nodev"],
    ),
    (
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    ),
    (
        "/dev/shm",
        "shm",
        "tmpfs",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
    ),
];

/// The spec's mounts: Docker's defaults the container does not mount over
/// itself (adjusted by the options), then the container's own mounts.
fn mounts(binds: &[BindMount], opts: &ContainerOptions) -> Vec<Value> {
    let mut out: Vec<Value> = DEFAULT_MOUNTS
        .into_iter()
        .filter(|(dst, ..)| !binds.iter().any(|b| b.destination == *dst))
        .filter_map(|(dst, src, kind, options)| default_mount(dst, src, kind, options, opts))
        .collect();
    // Parents before what is mounted inside them, as Docker sorts them
    // (by the number of path components; stable for equal depths).
    let mut ordered: Vec<&BindMount> = binds.iter().collect();
    ordered.sort_by_key(|b| std::path::Path::new(&b.destination).components().count());
    out.extend(ordered.into_iter().map(bind_mount));
    out
}

/// One of Docker's default mounts as the options want it: /sys and the
/// cgroup mount writable when privileged, /dev/shm sized, from the host
/// (`--ipc host`) or absent (`--ipc none`).
fn default_mount(
    dst: &str,
    src: &str,
    kind: &str,
    options: &[&str],
    opts: &ContainerOptions,
) -> Option<Value> {
    let mut options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
    let writable = match dst {
        "/sys" => opts.privileged,
        "/sys/fs/cgroup" => opts.privileged || opts.security.writable_cgroups,
        _ => false,
    };
    if writable {
        options.retain(|o| o != "ro");
    }
    if dst == "/dev/shm" {
        match opts.ipc {
            IpcMode::None => return None,
            IpcMode::Host => {
                return Some(
                    json!({"destination": dst, "type": "bind", "source": "/dev/shm", "options": ["rbind", "rprivate"]}),
                )
            }
            IpcMode::Private => {
                options.retain(|o| !o.starts_with("size="));
                options.push(format!("size={}", opts.resources.shm_bytes()));
            }
        }
    }
    Some(json!({"destination": dst, "type": kind, "source": src, "options": options}))
}

/// One container mount as a spec entry: a tmpfs with its options, or a
/// bind (recursive unless asked otherwise) with its propagation; `ro` for
/// a read-only one, with `rro` (recursively, through mount_setattr) unless
/// it is read-only at its top only.
fn bind_mount(bind: &BindMount) -> Value {
    let (kind, source, mut options) = match &bind.tmpfs {
        Some(opts) => ("tmpfs", "tmpfs", opts.clone()),
        None => {
            let mode = if bind.recursion.non_recursive {
                "bind"
            } else {
                "rbind"
            };
            let options = vec![mode.to_string(), bind.propagation().to_string()];
            ("bind", bind.source.as_str(), options)
        }
    };
    if bind.readonly {
        options.push("ro".into());
        if bind.tmpfs.is_none() && !bind.recursion.readonly_non_recursive {
            options.push("rro".into());
        }
    }
    json!({"destination": bind.destination, "type": kind, "source": source, "options": options})
}

/// The root's propagation when a bind asks for shared (the runtime's
/// default, slave, would cut it off), as Docker sets it; libcontainer takes
/// the names without `r` and always applies them recursively.
fn rootfs_propagation(binds: &[BindMount]) -> Option<&'static str> {
    let bound = binds.iter().filter(|b| b.tmpfs.is_none());
    let modes: Vec<&str> = bound.map(BindMount::propagation).collect();
    if modes.iter().any(|p| p.ends_with("shared")) {
        Some("shared")
    } else if modes.iter().any(|p| p.ends_with("slave")) {
        Some("slave")
    } else {
        None
    }
}

/// Docker's default device rules, then one per `--device`, then the
/// `--device-cgroup-rule`s; a privileged container may use every device.
fn device_rules(input: &SpecInput<'_>) -> Value {
    let allow = |major: i64, minor: i64| json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"});
    let mut rules = vec![
        json!({"allow": false, "access": "rwm"}),
        allow(1, 5),
        allow(1, 3),
        allow(1, 9),
        allow(1, 8),
        allow(5, 0),
        allow(5, 1),
        json!({"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"}),
    ];
    rules.extend(input.devices.iter().map(|d| d.rule.clone()));
    if input.options.privileged {
        rules.push(json!({"allow": true, "access": "rwm"}));
    } else {
        rules.extend(input.options.device_rules.iter().cloned());
    }
    json!(rules)
}

/// Default allow, with Docker's refusals as explicit rules. clone with any
/// namespace flag is refused (one rule per flag: rules on one syscall are
/// ORed); clone3 answers ENOSYS so libc falls back to clone, whose flags a
/// filter can see (Docker does the same).
fn seccomp() -> Value {
    let mut syscalls = vec![
        json!({"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}),
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
    ];
    for flag in CLONE_NAMESPACE_FLAGS {
        syscalls.push(json!({
            "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_and_has_dockers_defaults() {
        let input = SpecInput {
            id: "abc",
            rootfs: Path::new("/r/rootfs"),
            args: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            hostname: "abc".into(),
            network: crate::container::SpecNetwork::New,
            binds: vec![BindMount::private("/h".into(), "/c", true)],
            options: &ContainerOptions::default(),
            pid_namespace: None,
            devices: vec![],
            terminal: None,
        };
        let spec = build(&input).unwrap();
        assert_eq!(spec["linux"]["cgroupsPath"], "/berth/abc");
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        let last = spec["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["options"], json!(["rbind", "rprivate", "ro", "rro"]));
        assert!(spec["linux"].get("rootfsPropagation").is_none());
        assert!(spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
    }

    #[test]
    fn binds_follow_their_recursion_and_propagation() {
        let mut bind = BindMount::private("/h".into(), "/c", true);
        bind.recursion.readonly_non_recursive = true;
        assert_eq!(
            bind_mount(&bind)["options"],
            json!(["rbind", "rprivate", "ro"])
        );
        bind.recursion = Recursion {
            non_recursive: true,
            ..Recursion::default()
        };
        bind.readonly = false;
        bind.propagation = "rslave".into();
        assert_eq!(bind_mount(&bind)["options"], json!(["bind", "rslave"]));
        assert_eq!(rootfs_propagation(&[bind.clone()]), Some("slave"));
        let mut shared = bind.clone();
        shared.propagation = "shared".into();
        assert_eq!(rootfs_propagation(&[bind, shared]), Some("shared"));
    }
}
