//! A container's place on a network: what it is configured with (Docker's
//! `EndpointSettings` as the user gives them, kept with the container)
//! and, while set up, the endpoint itself (addresses, MAC, published
//! ports, and the exact netavark request, so teardown undoes just that).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::netavark::NetavarkRequest;
use super::ports::PublishedPort;

/// `EndpointSettings.IPAMConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointIpamConfig {
    #[serde(rename = "IPv4Address", skip_serializing_if = "String::is_empty")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address", skip_serializing_if = "String::is_empty")]
    pub ipv6_address: String,
    #[serde(rename = "LinkLocalIPs", skip_serializing_if = "Option::is_none")]
    pub link_local_ips: Option<Vec<String>>,
}

/// The configured part of Docker's `EndpointSettings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointConfig {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    pub links: Option<Vec<String>>,
    pub aliases: Option<Vec<String>>,
    pub mac_address: String,
    pub driver_opts: Option<BTreeMap<String, String>>,
}

impl EndpointConfig {
    pub fn static_ipv4(&self) -> Option<&str> {
        self.ipam_config
            .as_ref()
            .map(|c| c.ipv4_address.as_str())
            .filter(|s| !s.is_empty())
    }
    pub fn static_ipv6(&self) -> Option<&str> {
        self.ipam_config
            .as_ref()
            .map(|c| c.ipv6_address.as_str())
            .filter(|s| !s.is_empty())
    }
}

/// The networks a container is configured for, by network name (Docker
/// keys `NetworkSettings.Networks` by name).
pub type EndpointsConfig = BTreeMap<String, EndpointConfig>;

/// An endpoint while it is set up (a row of `endpoints`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub container_id: String,
    pub network_id: String,
    pub network_name: String,
    /// 64 hex characters.
    pub endpoint_id: String,
    /// The interface in the container (`eth0`).
    pub interface: String,
    pub ipv4: Option<String>,
    pub ipv4_prefix: u8,
    pub gateway: String,
    pub ipv6: Option<String>,
    pub ipv6_prefix: u8,
    pub ipv6_gateway: String,
    pub mac: String,
    /// What containers on the network find it by (user networks only).
    pub dns_names: Vec<String>,
    /// The ports published through this endpoint (the first network's).
    pub ports: Vec<PublishedPort>,
    /// What netavark was told for this network alone.
    pub netavark: NetavarkRequest,
    /// False while a connect or disconnect of a running container works on
    /// it: found so at start-up, the change was cut and is rolled back
    /// (connect) or finished (disconnect).
    #[serde(default = "ready_by_default")]
    pub ready: bool,
}

fn ready_by_default() -> bool {
    true
}

impl Endpoint {
    /// `172.18.0.2/16`, or empty.
    pub fn ipv4_cidr(&self) -> String {
        self.ipv4
            .as_ref()
            .map(|ip| format!("{ip}/{}", self.ipv4_prefix))
            .unwrap_or_default()
    }
    pub fn ipv6_cidr(&self) -> String {
        self.ipv6
            .as_ref()
            .map(|ip| format!("{ip}/{}", self.ipv6_prefix))
            .unwrap_or_default()
    }
}
