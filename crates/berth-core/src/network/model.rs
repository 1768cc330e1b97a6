//! A network as berth keeps it (stored as JSON in its row; the shape of
//! Docker's `network.Inspect` is the API crate's).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ipam::{IpamConfig, Subnet};

/// The network drivers berth has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkDriver {
    /// A Linux bridge with NAT to the outside (netavark).
    Bridge,
    /// The host's own network namespace (`--network host`).
    Host,
    /// Loopback only (`--network none`; Docker's driver `null`).
    Null,
}

impl NetworkDriver {
    /// Docker's name of the driver.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkDriver::Bridge => "bridge",
            NetworkDriver::Host => "host",
            NetworkDriver::Null => "null",
        }
    }
}

/// `IPAM` as shown: the user's entries verbatim, or the allocated subnet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    pub driver: String,
    /// `None` when the request had none (shown as `null`, as Docker does).
    pub options: Option<BTreeMap<String, String>>,
    /// `None` for networks without addresses (`host`, `none`).
    pub config: Option<Vec<IpamConfig>>,
}

/// One network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// 64 hex characters.
    pub id: String,
    pub name: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    pub driver: NetworkDriver,
    pub enable_ipv6: bool,
    pub internal: bool,
    pub attachable: bool,
    pub ipam: Ipam,
    /// The subnets addresses come from (empty for `host` and `none`).
    pub subnets: Vec<Subnet>,
    /// The subnets are the user's (static addresses are allowed only then).
    #[serde(default)]
    pub user_subnets: bool,
    /// Set up while the network's bridge is (bridge networks in use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<super::anchor::Anchor>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// The names Docker keeps for its own networks.
pub const PREDEFINED: [&str; 4] = ["bridge", "host", "none", "default"];

impl NetworkRecord {
    /// Whether this is one of the networks every daemon has.
    pub fn is_predefined(&self) -> bool {
        PREDEFINED.contains(&self.name.as_str())
    }
}

/// `POST /networks/create`, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateNetwork {
    pub name: String,
    /// Empty: `bridge`.
    pub driver: String,
    pub scope: String,
    pub enable_ipv6: bool,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_only: bool,
    pub ipam_driver: String,
    pub ipam_options: Option<BTreeMap<String, String>>,
    pub ipam_config: Vec<IpamConfig>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}
