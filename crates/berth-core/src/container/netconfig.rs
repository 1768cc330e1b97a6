//! A container's network configuration at create: its network mode and
//! the networks it is configured for (`EndpointsConfig`), each endpoint's
//! settings checked against its network in Docker's words.

use std::net::IpAddr;

use super::{ContainerError, ContainerService};
use crate::network::{ipam, EndpointConfig, EndpointsConfig, NetworkError, NetworkRecord};

/// `HostConfig.NetworkMode`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// The default `bridge` network (`""`, `default`, `bridge`).
    Bridge,
    Host,
    None,
    /// `container:NAME`: another container's namespace.
    Container(String),
    /// A user network by name or ID.
    Network(String),
}

impl NetworkMode {
    pub fn parse(mode: &str) -> NetworkMode {
        match mode {
            "" | "default" | "bridge" => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            other => match other.strip_prefix("container:") {
                Some(name) => NetworkMode::Container(name.to_string()),
                None => NetworkMode::Network(other.to_string()),
            },
        }
    }
}

impl ContainerService {
    /// The networks a new container is configured for: its mode's network
    /// first, then the other `EndpointsConfig` entries, each checked.
    /// `legacy_mac` is `Config.MacAddress` (before API 1.44 the only
    /// place for `--mac-address`): the mode's network takes it.
    pub(super) fn configure_networks(
        &self,
        mode: &NetworkMode,
        mut given: EndpointsConfig,
        legacy_mac: Option<&str>,
    ) -> Result<EndpointsConfig, ContainerError> {
        let primary = match mode {
            NetworkMode::Container(_) => return Ok(EndpointsConfig::new()),
            NetworkMode::Host => "host".to_string(),
            NetworkMode::None => "none".to_string(),
            NetworkMode::Bridge => "bridge".to_string(),
            NetworkMode::Network(name) => name.clone(),
        };
        let mut primary_config = given
            .remove(&primary)
            .or_else(|| given.remove("default"))
            .unwrap_or_default();
        if primary_config.mac_address.is_empty() {
            primary_config.mac_address = legacy_mac.unwrap_or_default().to_string();
        }
        let mut out = EndpointsConfig::new();
        for (name, config) in std::iter::once((primary, primary_config)).chain(given) {
            match self.networks.get(&name) {
                Ok(network) => {
                    check_endpoint(&network, &config)?;
                    out.insert(network.name.clone(), config);
                }
                // As dockerd: the container is made; its start fails with
                // "network X not found" (a 404 at create would make the
                // docker CLI try to pull the image).
                Err(NetworkError::NotFound(_)) => {
                    out.insert(name, config);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }
}

/// Docker's checks of one endpoint's settings against its network.
pub(super) fn check_endpoint(
    network: &NetworkRecord,
    config: &EndpointConfig,
) -> Result<(), ContainerError> {
    if !config.mac_address.is_empty() && !is_mac(&config.mac_address) {
        return Err(ContainerError::InvalidConfig(format!(
            "invalid MAC address {}",
            config.mac_address
        )));
    }
    let problems = endpoint_problems(network, config);
    match problems.as_slice() {
        [] => Ok(()),
        [one] => Err(ContainerError::InvalidConfig(format!(
            "invalid endpoint settings:\n{one}"
        ))),
        many => Err(ContainerError::InvalidConfig(format!(
            "invalid endpoint settings:\n{}",
            many.iter()
                .map(|p| format!("* {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))),
    }
}

fn endpoint_problems(network: &NetworkRecord, config: &EndpointConfig) -> Vec<String> {
    let statics: Vec<(&str, &str)> = [
        ("IPv4", config.static_ipv4()),
        ("IPv6", config.static_ipv6()),
    ]
    .into_iter()
    .filter_map(|(family, ip)| ip.map(|ip| (family, ip)))
    .collect();
    let mut problems = malformed(&statics, config);
    if network.is_predefined() {
        if !statics.is_empty() {
            problems.push(
                "user specified IP address is supported on user defined networks only".into(),
            );
        }
        if config.aliases.as_ref().is_some_and(|a| !a.is_empty()) {
            problems.push(
                "network-scoped alias is supported only for containers in user defined networks"
                    .into(),
            );
        }
        return problems;
    }
    problems.extend(
        statics
            .iter()
            .filter_map(|(family, ip)| static_problem(network, family, ip)),
    );
    problems
}

/// Addresses of the wrong family or form, and aliases that are no DNS
/// names.
fn malformed(statics: &[(&str, &str)], config: &EndpointConfig) -> Vec<String> {
    let mut problems: Vec<String> = statics
        .iter()
        .filter(|(family, ip)| {
            ip.parse::<IpAddr>()
                .map_or(true, |p| p.is_ipv4() != (*family == "IPv4"))
        })
        .map(|(family, ip)| format!("invalid {family} address: {ip}"))
        .collect();
    problems.extend(config.aliases.iter().flatten().filter(|a| !is_dns_safe(a)).map(|alias| {
        format!("invalid network alias {alias:?}: a DNS name has no spaces, commas or control characters and at most 255 bytes")
    }));
    problems
}

/// Why a static address cannot be asked for on a user network.
fn static_problem(network: &NetworkRecord, family: &str, ip: &str) -> Option<String> {
    if !user_configured(network, family) {
        return Some("user specified IP address is supported only when connecting to networks with user configured subnets".into());
    }
    let ip = ip.parse::<IpAddr>().ok()?;
    ipam::static_address_problem(&network.subnets, ip)
        .filter(|p| p.starts_with("no configured subnet"))
}

/// Whether the user gave the network a subnet of `family` (`IPv4`,
/// `IPv6`): IPv4 ones are flagged at create (a default pool is not the
/// user's); every IPv6 subnet is the user's (berth has no default IPv6
/// pools).
fn user_configured(network: &NetworkRecord, family: &str) -> bool {
    match family {
        "IPv4" => network.user_subnets,
        _ => network
            .subnets
            .iter()
            .any(|s| s.cidr().is_some_and(|b| !b.is_ipv4())),
    }
}

/// Whether `name` can be a name aardvark-dns answers: its files hold one
/// container a line, fields split by spaces and names by commas, so
/// those (and control characters) would break or forge entries.
pub(super) fn is_dns_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
}

fn is_mac(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes_parse() {
        assert_eq!(NetworkMode::parse(""), NetworkMode::Bridge);
        assert_eq!(NetworkMode::parse("default"), NetworkMode::Bridge);
        assert_eq!(NetworkMode::parse("host"), NetworkMode::Host);
        assert_eq!(
            NetworkMode::parse("container:db"),
            NetworkMode::Container("db".into())
        );
        assert_eq!(
            NetworkMode::parse("app_net"),
            NetworkMode::Network("app_net".into())
        );
    }

    #[test]
    fn dns_names_never_carry_separators() {
        assert!(is_dns_safe("db") && is_dns_safe("web-1.app_x") && is_dns_safe("ünï"));
        for bad in [
            "",
            "a b",
            "a\nb 10.0.0.1 x",
            "a,b",
            "a\tb",
            &"x".repeat(256),
        ] {
            assert!(!is_dns_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn macs_are_six_hex_pairs() {
        assert!(is_mac("02:42:ac:11:00:02"));
        assert!(!is_mac("02:42:ac:11:00"));
        assert!(!is_mac("zz:42:ac:11:00:02"));
    }
}
