//! Host facts for `/info` and `/version`, read once at start.

use anyhow::{Context, Result};
use berth_api::DaemonFacts;
use berth_core::root::RootLayout;

/// Reads the facts; the daemon ID is made once and kept in the root.
pub fn gather(layout: &RootLayout) -> Result<DaemonFacts> {
    let uname = nix::sys::utsname::uname().context("uname")?;
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    Ok(DaemonFacts {
        id: daemon_id(layout)?,
        hostname: uname.nodename().to_string_lossy().into_owned(),
        root_dir: layout.root().to_path_buf(),
        kernel_version: uname.release().to_string_lossy().into_owned(),
        operating_system: field("PRETTY_NAME"),
        os_version: field("VERSION_ID"),
        architecture: uname.machine().to_string_lossy().into_owned(),
        ncpu: std::thread::available_parallelism().map_or(1, |n| n.get()),
        mem_total: mem_total(),
        cgroup_version: cgroup_version(),
    })
}

fn daemon_id(layout: &RootLayout) -> Result<String> {
    let path = layout.root().join("engine-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let id = berth_core::volume::names::random_id();
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// "2" on a pure cgroup v2 host, "1" otherwise (hybrid hosts count as v1).
fn cgroup_version() -> String {
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 { "2" } else { "1" }.to_string()
}
