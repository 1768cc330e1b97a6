//! netavark, Podman's network stack, driven as a binary: `netavark
//! --config DIR setup|teardown NETNS` with the container's networks as
//! JSON on stdin (netavark 1.4's `NetworkOptions`). It makes the bridge,
//! the veth pair, the addresses berth chose, the iptables NAT and port
//! forwarding rules, and keeps aardvark-dns (names on a network) told.
//! berth allocates every address itself (`static_ips`); netavark keeps no
//! state but the aardvark files under its config folder.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// Debian's place for netavark and aardvark-dns (package `netavark`).
pub const DEFAULT_NETAVARK: &str = "/usr/lib/podman/netavark";
pub const DEFAULT_AARDVARK: &str = "/usr/lib/podman/aardvark-dns";

/// Held around every netavark run, by every berth daemon of the host:
/// netavark makes shared iptables chains without a lock of its own, so two
/// runs at once fail with "Chain already exists".
pub const HOST_LOCK: &str = "/run/lock/berth-netavark.lock";

/// What netavark is told for one container (setup and teardown alike).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetavarkRequest {
    pub container_id: String,
    /// The name aardvark-dns answers for (aliases come per network).
    pub container_name: String,
    /// Per network key: the container's interface, addresses and aliases.
    pub networks: BTreeMap<String, PerNetwork>,
    /// Per network key (the same keys): the network itself.
    pub network_info: BTreeMap<String, NetavarkNetwork>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    /// Upstream resolvers aardvark-dns asks for this container (`--dns`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<String>,
}

/// netavark's `PerNetworkOptions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerNetwork {
    pub interface_name: String,
    /// One per subnet of the network, in the same order.
    pub static_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_mac: Option<String>,
}

/// netavark's `Network`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetavarkNetwork {
    pub name: String,
    pub id: String,
    pub driver: String,
    /// The bridge's name.
    pub network_interface: String,
    pub subnets: Vec<NetavarkSubnet>,
    pub ipv6_enabled: bool,
    pub internal: bool,
    pub dns_enabled: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetavarkSubnet {
    pub subnet: String,
    pub gateway: String,
}

/// One published port (or a run of `range` ports).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    pub container_port: u16,
    /// Empty: every address of the host.
    pub host_ip: String,
    pub host_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub range: u16,
}

/// What setup made, per network key.
pub type SetupAnswer = BTreeMap<String, StatusBlock>;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StatusBlock {
    #[serde(default)]
    pub dns_server_ips: Vec<String>,
    #[serde(default)]
    pub dns_search_domains: Vec<String>,
    #[serde(default)]
    pub interfaces: BTreeMap<String, InterfaceStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct InterfaceStatus {
    pub mac_address: String,
    #[serde(default)]
    pub subnets: Vec<InterfaceSubnet>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct InterfaceSubnet {
    /// The address with its prefix, `10.88.0.2/16`.
    pub ipnet: String,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// A netavark run that failed: its own message when it gave one.
#[derive(Debug, thiserror::Error)]
pub enum NetavarkError {
    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("netavark {verb} failed: {message}")]
    Failed { verb: &'static str, message: String },
}

/// The netavark binary and its state folder (aardvark files, lock).
#[derive(Debug, Clone)]
pub struct Netavark {
    pub binary: PathBuf,
    pub aardvark: PathBuf,
    pub config_dir: PathBuf,
}

impl Netavark {
    /// Sets the container's networks up in `netns`. On failure netavark
    /// has undone what it did; the caller still owns the namespace.
    pub fn setup(&self, netns: &Path, req: &NetavarkRequest) -> Result<SetupAnswer, NetavarkError> {
        let out = self.run("setup", netns, req)?;
        serde_json::from_slice(&out).map_err(|e| NetavarkError::Failed {
            verb: "setup",
            message: format!("unreadable answer ({e}): {}", String::from_utf8_lossy(&out)),
        })
    }

    /// Removes what setup made for `req` (veths, rules, DNS entries).
    /// netavark goes on past errors and reports them together; removing
    /// something already gone is one of them, so callers log and go on.
    pub fn teardown(&self, netns: &Path, req: &NetavarkRequest) -> Result<(), NetavarkError> {
        self.run("teardown", netns, req).map(|_| ())
    }

    fn run(
        &self,
        verb: &'static str,
        netns: &Path,
        req: &NetavarkRequest,
    ) -> Result<Vec<u8>, NetavarkError> {
        let spawn_error = |source| NetavarkError::Spawn {
            binary: self.binary.display().to_string(),
            source,
        };
        let input = serde_json::to_vec(req).expect("the request serialises");
        let _held = host_lock().map_err(spawn_error)?;
        let mut child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config_dir)
            .arg("--aardvark-binary")
            .arg(&self.aardvark)
            .arg(verb)
            .arg(netns)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&input).map_err(spawn_error)?;
        }
        let out = child.wait_with_output().map_err(spawn_error)?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(NetavarkError::Failed {
            verb,
            message: failure_message(&out.stdout, &out.stderr),
        })
    }
}

/// The host-wide netavark lock ([`HOST_LOCK`]; `/tmp` where there is no
/// `/run/lock`), released when the file is dropped.
fn host_lock() -> std::io::Result<std::fs::File> {
    let path = if Path::new("/run/lock").is_dir() {
        PathBuf::from(HOST_LOCK)
    } else {
        PathBuf::from("/tmp/berth-netavark.lock")
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    loop {
        let held = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        if held == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// netavark prints `{"error": "..."}` on stdout when it fails.
pub fn failure_message(stdout: &[u8], stderr: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Failure {
        error: String,
    }
    if let Ok(f) = serde_json::from_slice::<Failure>(stdout) {
        return f.error;
    }
    let text = String::from_utf8_lossy(stderr);
    let text = text
        .lines()
        .filter(|l| !l.contains("failed to connect to syslog"))
        .collect::<Vec<_>>()
        .join("; ");
    if text.trim().is_empty() {
        String::from_utf8_lossy(stdout).trim().to_string()
    } else {
        text.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_netavarks_shape() {
        let mut req = NetavarkRequest {
            container_id: "c".into(),
            container_name: "web".into(),
            ..Default::default()
        };
        req.networks.insert(
            "n".into(),
            PerNetwork {
                interface_name: "eth0".into(),
                static_ips: vec!["10.1.0.2".into()],
                ..Default::default()
            },
        );
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["networks"]["n"]["static_ips"][0], "10.1.0.2");
        assert!(v.get("port_mappings").is_none());
        assert!(v["networks"]["n"].get("static_mac").is_none());
    }

    #[test]
    fn answers_and_failures_are_read() {
        let answer: SetupAnswer = serde_json::from_str(
            r#"{"n":{"dns_search_domains":[],"dns_server_ips":[],"interfaces":{"eth0":{"mac_address":"02:42:0a:01:00:02","subnets":[{"gateway":"10.1.0.1","ipnet":"10.1.0.2/24"}]}}}}"#,
        )
        .unwrap();
        assert_eq!(
            answer["n"].interfaces["eth0"].subnets[0].ipnet,
            "10.1.0.2/24"
        );
        assert_eq!(
            failure_message(br#"{"error":"no static ips provided"}"#, b""),
            "no static ips provided"
        );
        assert_eq!(
            failure_message(b"", b"failed to connect to syslog: x\nboom\n"),
            "boom"
        );
    }
}
