//! Where one container's files live: `<root>/containers/<id>/` holds the
//! overlay upper and work folders, the merged root filesystem, the bundle,
//! the json-file log, the exit status the shim writes, and the files
//! bind-mounted over `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.

use std::path::{Path, PathBuf};

use super::options::ContainerOptions;
use super::ContainerError;
use crate::sys::mount;

/// Paths of one container.
#[derive(Debug, Clone)]
pub struct ContainerPaths {
    dir: PathBuf,
    id: String,
}

impl ContainerPaths {
    pub fn new(containers_dir: &Path, id: &str) -> Self {
        ContainerPaths {
            dir: containers_dir.join(id),
            id: id.to_string(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("{}-json.log", self.id))
    }
    /// Written by the shim when the container's process has exited.
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn hostname_file(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn hosts_file(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn resolv_file(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    /// A FIFO the container reads as stdin (`-i`).
    pub fn stdin_fifo(&self) -> PathBuf {
        self.dir.join("stdin")
    }

    /// Makes the FIFO at `path` unless it exists.
    pub fn ensure_fifo(path: &Path) -> std::io::Result<()> {
        match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The container's stdin FIFO, made if missing (an attach can come
    /// before the shim that reads it exists).
    pub fn ready_stdin_fifo(&self) -> std::io::Result<PathBuf> {
        let fifo = self.stdin_fifo();
        Self::ensure_fifo(&fifo)?;
        Ok(fifo)
    }

    /// Creates the folders (idempotent).
    pub fn create(&self) -> Result<(), ContainerError> {
        for dir in [
            self.dir.clone(),
            self.rootfs(),
            self.upper(),
            self.work(),
            self.bundle(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| ContainerError::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(())
    }

    /// Mounts the overlay root filesystem: image layers (bottom first) as
    /// lower folders, the container's own upper and work folders. Already
    /// mounted is fine (a daemon restart).
    pub fn mount_rootfs(&self, layers: &[PathBuf]) -> Result<(), ContainerError> {
        let target = self.rootfs();
        if mount::is_mounted(&target) {
            return Ok(());
        }
        let options = self.overlay_options(layers);
        mount::retry_busy(|| mount::mount("overlay", &target, "overlay", &options)).map_err(|e| {
            ContainerError::io(format!("mounting the root filesystem of {}", self.id), e)
        })
    }

    /// The overlay mount options of the root filesystem: the image's layers
    /// (top first) below the container's upper and work folders.
    pub fn overlay_options(&self, layers: &[PathBuf]) -> String {
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper().display(),
            self.work().display()
        )
    }

    /// Unmounts the root filesystem (not mounted is fine). Still busy after
    /// the retries, it is detached (lazily unmounted): nothing of berth
    /// uses it any more, and a copy pinned in a starting container's mount
    /// namespace goes when that container pivots into its own root.
    pub fn unmount_rootfs(&self) -> Result<(), ContainerError> {
        let target = self.rootfs();
        let unmounted = mount::unmount_when_free(&target).or_else(|e| {
            if e.raw_os_error() != Some(libc::EBUSY) {
                return Err(e);
            }
            tracing::warn!(container = %self.id, "root filesystem busy: detached");
            nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH)
                .map_err(std::io::Error::from)
        });
        unmounted.map_err(|e| ContainerError::io(format!("unmounting {}", target.display()), e))
    }

    /// Writes the files bind-mounted over the container's `/etc`:
    /// hostname, hosts (with `--add-host` entries and the container's own
    /// addresses) and resolv.conf (the host's, with `--dns`,
    /// `--dns-search`, `--dns-option` applied; on user networks the
    /// network's DNS server, aardvark-dns on the gateway, which forwards
    /// other names to `--dns` or the host's servers).
    pub fn write_etc_files(
        &self,
        hostname: &str,
        options: &ContainerOptions,
        facts: &super::NetworkFacts,
    ) -> Result<(), ContainerError> {
        let write = |path: PathBuf, text: String| {
            std::fs::write(&path, text)
                .map_err(|e| ContainerError::io(format!("writing {}", path.display()), e))
        };
        write(self.hostname_file(), format!("{hostname}\n"))?;
        let own: Vec<&str> = facts
            .endpoints
            .iter()
            .flat_map(|e| [e.ipv4.as_deref(), e.ipv6.as_deref()])
            .flatten()
            .collect();
        let extra: Vec<(String, String)> = options
            .extra_hosts
            .iter()
            .map(|(host, ip)| match ip.as_str() {
                super::options::HOST_GATEWAY => (host.clone(), facts.host_gateway.clone()),
                _ => (host.clone(), ip.clone()),
            })
            .collect();
        write(self.hosts_file(), hosts_file(hostname, &extra, &own))?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut dns = options.clone();
        if !facts.dns_servers.is_empty() {
            dns.dns = facts.dns_servers.clone();
        }
        let host_resolv = if facts.endpoints.is_empty() {
            host_resolv
        } else {
            without_local_nameservers(&host_resolv)
        };
        write(self.resolv_file(), resolv_conf(&host_resolv, &dns))
    }

    /// Removes everything of the container (root filesystem and sub-path
    /// mounts unmounted first; the removal refuses to cross any mount left,
    /// so it can never delete volume data). Idempotent.
    pub fn remove_all(&self) -> Result<(), ContainerError> {
        self.unmount_subpaths()?;
        self.unmount_rootfs()?;
        crate::sys::remove_tree::remove_tree_same_fs(&self.dir)
            .map(|_| ())
            .map_err(|e| ContainerError::io(format!("removing {}", self.dir.display()), e))
    }

    fn subpaths_dir(&self) -> PathBuf {
        self.dir.join("subpaths")
    }

    /// Resolves `sub` inside the volume mounted at `volume_root` without
    /// following any symlink, and bind-mounts what it resolved to (through
    /// the descriptor, so a path swapped meanwhile cannot redirect it) on
    /// a staging point in the container folder, which the spec then binds.
    pub fn mount_subpath(
        &self,
        index: usize,
        volume_root: &Path,
        sub: &str,
    ) -> Result<PathBuf, ContainerError> {
        let invalid = |e: std::io::Error| {
            ContainerError::InvalidConfig(format!("invalid volume subpath {sub:?}: {e}"))
        };
        let fd = crate::sys::inroot::open_beneath(volume_root, sub).map_err(invalid)?;
        let fd_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        let is_dir = std::fs::metadata(&fd_path).map_err(invalid)?.is_dir();
        let target = self.subpaths_dir().join(index.to_string());
        std::fs::create_dir_all(self.subpaths_dir())
            .map_err(|e| ContainerError::io("creating subpaths", e))?;
        if !target.exists() {
            let made = if is_dir {
                std::fs::create_dir(&target)
            } else {
                std::fs::write(&target, b"")
            };
            made.map_err(|e| ContainerError::io("creating a subpath mount point", e))?;
        }
        if !mount::is_mounted(&target) {
            nix::mount::mount(
                Some(fd_path.as_str()),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| ContainerError::io(format!("mounting volume subpath {sub}"), e.into()))?;
        }
        Ok(target)
    }

    /// Unmounts every sub-path staging mount (none is fine).
    pub fn unmount_subpaths(&self) -> Result<(), ContainerError> {
        let Ok(entries) = std::fs::read_dir(self.subpaths_dir()) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            mount::unmount(&entry.path())
                .map_err(|e| ContainerError::io("unmounting a volume subpath", e))?;
        }
        Ok(())
    }
}

/// Docker's /etc/hosts: localhost, IPv6 names, `--add-host` entries, then
/// the container's own name at each of its addresses (127.0.1.1 without
/// a network).
fn hosts_file(hostname: &str, extra: &[(String, String)], own: &[&str]) -> String {
    let mut text = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (host, ip) in extra {
        text.push_str(&format!("{ip}\t{host}\n"));
    }
    if own.is_empty() {
        text.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    for ip in own {
        text.push_str(&format!("{ip}\t{hostname}\n"));
    }
    text
}

/// The host's resolv.conf for a container with its own network: servers
/// on the host's loopback cannot be reached from it; with none left,
/// Docker's defaults (Google's public servers).
fn without_local_nameservers(host: &str) -> String {
    let is_local = |line: &str| {
        let mut words = line.split_whitespace();
        words.next() == Some("nameserver")
            && words
                .next()
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| ip.is_loopback())
    };
    let mut lines: Vec<String> = host
        .lines()
        .filter(|l| !is_local(l))
        .map(str::to_string)
        .collect();
    if !lines
        .iter()
        .any(|l| l.trim_start().starts_with("nameserver"))
    {
        lines.push("nameserver 8.8.8.8".into());
        lines.push("nameserver 8.8.4.4".into());
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The host's resolv.conf with each kind of line the options give
/// replaced (nameserver, search, options).
fn resolv_conf(host: &str, options: &ContainerOptions) -> String {
    let replaced = [
        ("nameserver", &options.dns),
        ("search", &options.dns_search),
        ("options", &options.dns_options),
    ];
    let mut lines: Vec<String> = host
        .lines()
        .filter(|line| {
            let key = line.split_whitespace().next().unwrap_or_default();
            !replaced
                .iter()
                .any(|(k, given)| *k == key && !given.is_empty())
        })
        .map(str::to_string)
        .collect();
    for server in &options.dns {
        lines.push(format!("nameserver {server}"));
    }
    for (key, given) in &replaced[1..] {
        if !given.is_empty() {
            lines.push(format!("{key} {}", given.join(" ")));
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Removes a runtime's state folder of a container whose processes are
/// gone; never through a mount (what cannot go stays, with a warning).
pub(super) fn remove_runtime_state(dir: &Path) {
    if let Err(e) = crate::sys::remove_tree::remove_tree_same_fs(dir) {
        tracing::warn!(folder = %dir.display(), error = %e, "runtime state left in place");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_takes_the_given_lines() {
        let host = "# generated\nnameserver 10.0.0.1\nsearch corp\noptions ndots:2\n";
        let opts = ContainerOptions {
            dns: vec!["1.1.1.1".into(), "9.9.9.9".into()],
            dns_search: vec!["a.example".into(), "b.example".into()],
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(host, &opts),
            "# generated\noptions ndots:2\nnameserver 1.1.1.1\nnameserver 9.9.9.9\nsearch a.example b.example\n"
        );
        assert_eq!(resolv_conf(host, &ContainerOptions::default()), host);
    }

    #[test]
    fn hosts_file_lists_extra_hosts_before_the_own_name() {
        let text = hosts_file("web", &[("db".into(), "10.1.2.3".into())], &[]);
        assert!(text.ends_with("10.1.2.3\tdb\n127.0.1.1\tweb\n"), "{text}");
        let text = hosts_file("web", &[], &["172.17.0.2"]);
        assert!(
            text.ends_with("ff02::2\tip6-allrouters\n172.17.0.2\tweb\n"),
            "{text}"
        );
    }

    #[test]
    fn loopback_nameservers_are_left_out_for_a_private_network() {
        let host = "nameserver 127.0.0.53\nsearch corp\n";
        assert_eq!(
            without_local_nameservers(host),
            "search corp\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let host = "nameserver 10.0.0.1\nnameserver ::1\n";
        assert_eq!(without_local_nameservers(host), "nameserver 10.0.0.1\n");
    }
}
