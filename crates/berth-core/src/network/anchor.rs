//! A bridge network's anchor: one endpoint the network itself owns, in a
//! namespace file of its own, set up at the first container start and
//! torn down when the network is removed. netavark makes the bridge and
//! the network's NAT rules with a network's first endpoint and removes
//! them with its last; with the anchor they live as long as the network
//! (as Docker's bridges do), so a container's own setup and teardown only
//! make its veth and rules (measured: about 50 and 25 ms instead of 100
//! and 330 ms), and containers leaving at once never race on the bridge.
//! The anchor takes the highest free address of each subnet.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::bridge::{netavark_network, port_forward_chain, usable_subnets};
use super::netavark::{Netavark, NetavarkRequest, PerNetwork};
use super::{ipam, netns, NetworkDriver, NetworkError, NetworkRecord, NetworkService};

/// Where networks are set up: netavark and the namespace files.
#[derive(Debug, Clone)]
pub struct NetworkRuntime {
    pub netavark: Netavark,
    /// Containers' namespace files (`<root>/netns/<id>`) and anchors'
    /// (`<root>/netns/network-<id>`).
    pub netns_dir: PathBuf,
}

/// The anchor of a network, kept in its record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    pub addresses: Vec<String>,
    pub request: NetavarkRequest,
}

/// The prefix of anchors' namespace files.
pub const ANCHOR_PREFIX: &str = "network-";

impl NetworkRuntime {
    pub fn anchor_netns(&self, network_id: &str) -> PathBuf {
        self.netns_dir.join(format!("{ANCHOR_PREFIX}{network_id}"))
    }
}

impl NetworkService {
    /// Sets the network's anchor up unless it is (its namespace file
    /// there): idempotent; a record whose anchor lost its namespace (a
    /// reboot, a crash part way) is torn down and set up again. Returns the
    /// network as stored. Callers hold the container attach lock.
    pub fn ensure_anchor(&self, network: &NetworkRecord) -> Result<NetworkRecord, NetworkError> {
        if network.driver != NetworkDriver::Bridge {
            return Ok(network.clone());
        }
        let runtime = self.runtime()?;
        let path = runtime.anchor_netns(&network.id);
        let _held = self.allocation.lock();
        let mut record = self.get(&network.id)?;
        if record.anchor.is_some() && netns::is_netns(&path) {
            return Ok(record);
        }
        if let Some(stale) = record.anchor.take() {
            let _ = netns::create(&path);
            let _ = runtime.netavark.teardown(&path, &stale.request);
        }
        let Some(anchor) = self.new_anchor(&record)? else {
            // A subnet too small to spare an address: its containers make
            // and take down the bridge themselves (the slow path).
            return Ok(record);
        };
        // Recorded first: a crash from here on leaves a record start-up
        // (or the next start) sets up again, and its address reserved.
        record.anchor = Some(anchor.clone());
        self.store.replace_network(&record)?;
        let io = |e: std::io::Error| NetworkError::Setup(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(&runtime.netns_dir).map_err(io)?;
        std::fs::create_dir_all(&runtime.netavark.config_dir).map_err(io)?;
        netns::create(&path).map_err(io)?;
        if let Err(e) = runtime.netavark.setup(&path, &anchor.request) {
            let _ = netns::remove(&path);
            record.anchor = None;
            self.store.replace_network(&record)?;
            return Err(NetworkError::Setup(e.to_string()));
        }
        Ok(record)
    }

    /// The anchor's addresses (the highest free of each subnet) and what
    /// netavark is told for it; `None` when a subnet could then hold no
    /// container.
    fn new_anchor(&self, record: &NetworkRecord) -> Result<Option<Anchor>, NetworkError> {
        let leased: Vec<IpAddr> = self
            .store
            .endpoints_of_network(&record.id)?
            .iter()
            .flat_map(|e| [e.ipv4.as_deref(), e.ipv6.as_deref()])
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let mut addresses = Vec::new();
        for subnet in usable_subnets(record) {
            let Some(ip) = ipam::last_free(subnet, &leased) else {
                return Ok(None);
            };
            let with_anchor: Vec<IpAddr> = leased.iter().copied().chain([ip]).collect();
            if ipam::next_free(subnet, &with_anchor).is_none() {
                return Ok(None);
            }
            addresses.push(ip.to_string());
        }
        let mut request = NetavarkRequest {
            container_id: record.id.clone(),
            container_name: format!("berth-network-{}", &record.id[..12]),
            ..Default::default()
        };
        let mut info = netavark_network(record);
        // The anchor is no name on the network.
        info.dns_enabled = false;
        request.networks.insert(
            record.id.clone(),
            PerNetwork {
                interface_name: "eth0".into(),
                static_ips: addresses.clone(),
                ..Default::default()
            },
        );
        request.network_info.insert(record.id.clone(), info);
        Ok(Some(Anchor { addresses, request }))
    }

    /// Takes down the anchors of networks no container is set up on (at a
    /// clean daemon stop); they come back at the next container start.
    /// Returns how many were.
    pub fn release_idle_anchors(&self) -> usize {
        let _held = self.allocation.lock();
        let Ok(all) = self.all() else {
            return 0;
        };
        let mut released = 0;
        for mut record in all.into_iter().filter(|n| n.anchor.is_some()) {
            let idle = self
                .store
                .endpoints_of_network(&record.id)
                .is_ok_and(|e| e.is_empty());
            if !idle {
                continue;
            }
            self.remove_anchor(&record);
            record.anchor = None;
            if self.store.replace_network(&record).is_ok() {
                released += 1;
            }
        }
        released
    }

    /// Tears the anchor down with the network (its bridge and NAT rules
    /// go with it). Idempotent; problems are logged.
    pub(super) fn remove_anchor(&self, record: &NetworkRecord) {
        let (Some(anchor), Ok(runtime)) = (&record.anchor, self.runtime()) else {
            return;
        };
        let path = runtime.anchor_netns(&record.id);
        if !netns::is_netns(&path) {
            let _ = netns::create(&path);
        }
        if let Err(e) = runtime.netavark.teardown(&path, &anchor.request) {
            tracing::warn!(network = %record.name, error = %e, "network teardown reported problems");
        }
        if let Err(e) = netns::remove(&path) {
            tracing::warn!(network = %record.name, error = %e, "anchor namespace not removed");
        }
        drop_empty_chain(&port_forward_chain(record));
    }
}

/// Deletes an empty nat chain netavark left (`iptables -X` refuses a
/// chain that still has rules or is still referenced).
fn drop_empty_chain(chain: &str) {
    let binary = if std::path::Path::new("/usr/sbin/iptables").exists() {
        "/usr/sbin/iptables"
    } else {
        "iptables"
    };
    let _ = std::process::Command::new(binary)
        .args(["-t", "nat", "-X", chain])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
