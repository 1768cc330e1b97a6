//! A bridge network as netavark is told of it: the Linux bridge's name,
//! the subnets addresses come from, NAT and DNS.

use std::collections::BTreeMap;

use super::ipam::Subnet;
use super::netavark::{NetavarkNetwork, NetavarkSubnet};
use super::NetworkRecord;

/// The Linux bridge of a network: the one its options name, else
/// Docker's `br-` and the first 12 characters of its ID.
pub fn bridge_name(network: &NetworkRecord) -> String {
    match network.options.get("com.docker.network.bridge.name") {
        Some(name) if !name.is_empty() => name.clone(),
        _ => format!("br-{}", &network.id[..12]),
    }
}

/// The subnets addresses are leased from (IPv6 ones only when enabled).
pub fn usable_subnets(network: &NetworkRecord) -> impl Iterator<Item = &Subnet> {
    network
        .subnets
        .iter()
        .filter(|s| network.enable_ipv6 || s.cidr().is_some_and(|b| b.is_ipv4()))
}

/// netavark's view of a network: its bridge, subnets, NAT and DNS.
pub fn netavark_network(network: &NetworkRecord) -> NetavarkNetwork {
    let mut options = BTreeMap::new();
    if let Some(mtu) = network.options.get("com.docker.network.driver.mtu") {
        options.insert("mtu".to_string(), mtu.clone());
    }
    NetavarkNetwork {
        name: network.id.clone(),
        id: network.id.clone(),
        driver: "bridge".into(),
        network_interface: bridge_name(network),
        subnets: usable_subnets(network)
            .map(|s| NetavarkSubnet {
                subnet: s.block.clone(),
                gateway: s.gateway.clone(),
            })
            .collect(),
        ipv6_enabled: network.enable_ipv6,
        internal: network.internal,
        // As Docker: names resolve on user networks, not on `bridge`.
        dns_enabled: !network.is_predefined(),
        options,
    }
}

/// The nat chain netavark makes for a network's port forwarding
/// (`NETAVARK-DN-` and 13 hex digits of the SHA-512 of the name it was
/// given, which is berth's network ID). netavark 1.4 leaves it behind when
/// the network's last container had no published ports.
pub fn port_forward_chain(network: &NetworkRecord) -> String {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha512::digest(network.id.as_bytes()));
    format!("NETAVARK-DN-{}", digest[..13].to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_forward_chain_is_named_as_netavark_names_it() {
        let mut n = crate::network::service::blank_for_tests("x");
        n.id = "tnet".into();
        // netavark named a network called "tnet" so (seen in `iptables -S`).
        assert_eq!(port_forward_chain(&n), "NETAVARK-DN-4DFA0667E7438");
    }
}
