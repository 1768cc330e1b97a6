//! Address management of a network, as Docker's default IPAM does it:
//! the user's `IPAM.Config` checked with moby's words (`ValidateIPAM`),
//! a subnet chosen from Docker's default pools when none is given (the
//! lowest free one, as moby 27), and the gateway (the first address of the
//! ip-range or of the subnet). Pure: the caller says which blocks are in
//! use (other networks, host routes).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::cidr::Cidr;

/// One `IPAM.Config` entry as the user gave it (shown back verbatim).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(rename = "IPRange", skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auxiliary_addresses: Option<BTreeMap<String, String>>,
}

/// A subnet of a network as berth uses it: the block, where containers'
/// addresses come from, and the gateway (the bridge's address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub block: String,
    pub range: String,
    pub gateway: String,
    /// Addresses never given to containers (auxiliary addresses).
    pub reserved: Vec<String>,
}

impl Subnet {
    pub fn cidr(&self) -> Option<Cidr> {
        Cidr::parse(&self.block)
    }
}

/// Docker's default local address pools, in the order they are tried:
/// 172.17–172.31 as /16s, then 192.168.0.0/16 as /20s.
pub fn default_pools() -> Vec<Cidr> {
    let mut pools: Vec<Cidr> = (17..=31)
        .map(|b| Cidr {
            addr: IpAddr::V4([172, b, 0, 0].into()),
            prefix: 16,
        })
        .collect();
    pools.extend((0..16).map(|i| Cidr {
        addr: IpAddr::V4([192, 168, i * 16, 0].into()),
        prefix: 20,
    }));
    pools
}

/// Checks the user's IPAM entries (IPv6 ones only with `ipv6`); the error
/// is moby's "invalid network config" text.
pub fn validate(configs: &[IpamConfig], ipv6: bool) -> Result<(), String> {
    let problems: Vec<String> = configs
        .iter()
        .filter(|c| ipv6 || Cidr::parse(&c.subnet).is_none_or(|s| s.is_ipv4()))
        .flat_map(check_config)
        .collect();
    match problems.as_slice() {
        [] => Ok(()),
        [one] => Err(format!("invalid network config:\n{one}")),
        many => Err(format!(
            "invalid network config:\n{}",
            many.iter()
                .map(|p| format!("* {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        )),
    }
}

fn check_config(config: &IpamConfig) -> Vec<String> {
    let subnet = match Cidr::parse(&config.subnet) {
        None => {
            return vec![format!(
                "invalid subnet {}: invalid CIDR block notation",
                config.subnet
            )]
        }
        Some(s) if !s.is_network() => {
            return vec![format!(
                "invalid subnet {}: it should be {}",
                config.subnet,
                s.network()
            )]
        }
        Some(s) => s,
    };
    let mut problems = Vec::new();
    if !config.ip_range.is_empty() {
        if let Err(e) = check_range(&config.ip_range, &subnet) {
            problems.push(format!("invalid ip-range {}: {e}", config.ip_range));
        }
    }
    if !config.gateway.is_empty() {
        if let Err(e) = check_address(&config.gateway, &subnet) {
            problems.push(format!("invalid gateway {}: {e}", config.gateway));
        }
    }
    for (name, address) in config.auxiliary_addresses.iter().flatten() {
        if let Err(e) = check_address(address, &subnet) {
            problems.push(format!("invalid auxiliary address {name}: {e}"));
        }
    }
    problems
}

fn family(subnet: &Cidr) -> &'static str {
    if subnet.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn check_range(text: &str, subnet: &Cidr) -> Result<(), String> {
    let range = Cidr::parse(text).ok_or("invalid CIDR block notation")?;
    if range.is_ipv4() != subnet.is_ipv4() {
        return Err(format!("parent subnet is an {} block", family(subnet)));
    }
    if range.prefix < subnet.prefix {
        return Err(format!(
            "CIDR block is bigger than its parent subnet {subnet}"
        ));
    }
    if !range.is_network() {
        return Err(format!("it should be {}", range.network()));
    }
    if !subnet.contains_block(&range) {
        return Err(format!("parent subnet {subnet} doesn't contain ip-range"));
    }
    Ok(())
}

fn check_address(text: &str, subnet: &Cidr) -> Result<(), String> {
    let ip: IpAddr = text.parse().map_err(|_| "invalid address".to_string())?;
    if ip.is_ipv4() != subnet.is_ipv4() {
        return Err(format!("parent subnet is an {} block", family(subnet)));
    }
    if !subnet.contains(ip) {
        return Err(format!(
            "parent subnet {subnet} doesn't contain this address"
        ));
    }
    Ok(())
}

/// The subnets of a network from the user's (checked) entries.
pub fn subnets_from(configs: &[IpamConfig]) -> Vec<Subnet> {
    configs
        .iter()
        .filter_map(|c| {
            let block = Cidr::parse(&c.subnet)?;
            let range = Cidr::parse(&c.ip_range).unwrap_or(block);
            let gateway = match c.gateway.as_str() {
                "" => first_usable(&block, &range)?.to_string(),
                given => given.to_string(),
            };
            let reserved = c
                .auxiliary_addresses
                .iter()
                .flatten()
                .map(|(_, a)| a.clone())
                .collect();
            Some(Subnet {
                block: block.to_string(),
                range: range.to_string(),
                gateway,
                reserved,
            })
        })
        .collect()
}

/// The first address of `range` that is not `block`'s network address.
fn first_usable(block: &Cidr, range: &Cidr) -> Option<IpAddr> {
    let first = range.nth(0)?;
    if first == block.nth(0)? {
        range.nth(1)
    } else {
        Some(first)
    }
}

/// The lowest default pool overlapping none of `taken`, as a subnet with
/// its gateway; `None` when all are used.
pub fn pick_default(taken: &[Cidr]) -> Option<Subnet> {
    let pool = default_pools()
        .into_iter()
        .find(|pool| !taken.iter().any(|t| t.overlaps(pool)))?;
    Some(Subnet {
        block: pool.to_string(),
        range: pool.to_string(),
        gateway: pool.nth(1)?.to_string(),
        reserved: Vec::new(),
    })
}

/// Addresses of `subnet` no container may have: its network address, the
/// IPv4 broadcast address, the gateway and the reserved (auxiliary) ones.
fn never_leased(subnet: &Subnet, block: &Cidr, ip: IpAddr) -> bool {
    let broadcast = block.is_ipv4() && block.nth(block.size() - 1) == Some(ip);
    block.nth(0) == Some(ip)
        || broadcast
        || subnet.gateway.parse::<IpAddr>().ok() == Some(ip)
        || subnet
            .reserved
            .iter()
            .any(|r| r.parse::<IpAddr>().ok() == Some(ip))
}

/// The lowest address of the subnet's range that is neither special nor
/// in `taken` (Docker's default IPAM hands out the lowest free one).
pub fn next_free(subnet: &Subnet, taken: &[IpAddr]) -> Option<IpAddr> {
    let block = subnet.cidr()?;
    let range = Cidr::parse(&subnet.range).unwrap_or(block);
    // Large IPv6 ranges: the first million addresses are plenty to search.
    let size = range.size().min(1 << 20);
    (0..size)
        .filter_map(|n| range.nth(n))
        .find(|ip| !never_leased(subnet, &block, *ip) && !taken.contains(ip))
}

/// The highest address of the subnet's range that is neither special nor
/// in `taken` (a network's anchor takes it, out of the containers' way).
pub fn last_free(subnet: &Subnet, taken: &[IpAddr]) -> Option<IpAddr> {
    let block = subnet.cidr()?;
    let range = Cidr::parse(&subnet.range).unwrap_or(block);
    let size = range.size();
    (0..size.min(1 << 20))
        .filter_map(|n| range.nth(size - 1 - n))
        .find(|ip| !never_leased(subnet, &block, *ip) && !taken.contains(ip))
}

/// Why a static address cannot be given on `subnets` (Docker's words), or
/// `None` when it can (taken addresses are the caller's check).
pub fn static_address_problem(subnets: &[Subnet], ip: IpAddr) -> Option<String> {
    let Some(subnet) = subnets
        .iter()
        .find(|s| s.cidr().is_some_and(|b| b.contains(ip)))
    else {
        return Some(format!(
            "no configured subnet or ip-range contain the IP address {ip}"
        ));
    };
    let block = subnet.cidr()?;
    never_leased(subnet, &block, ip).then(|| "Address already in use".to_string())
}

/// Docker's MAC address for an IPv4 address: `02:42` and its four bytes.
pub fn mac_for(ip: std::net::Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The IPv4 routes of `/proc/net/route` text, the default route left out
/// (a pool must not shadow a network the host already reaches).
pub fn parse_routes(text: &str) -> Vec<Cidr> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            // The file holds them in the kernel's (little-endian) order.
            let prefix = u32::from_be(mask).leading_ones() as u8;
            (prefix > 0).then(|| Cidr {
                addr: IpAddr::V4(u32::from_be(destination).into()),
                prefix,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(subnet: &str, range: &str, gateway: &str) -> IpamConfig {
        IpamConfig {
            subnet: subnet.into(),
            ip_range: range.into(),
            gateway: gateway.into(),
            auxiliary_addresses: None,
        }
    }

    #[test]
    fn bad_configs_get_mobys_words() {
        let err = |c: IpamConfig| validate(&[c], false).unwrap_err();
        assert_eq!(
            err(config("foo", "", "")),
            "invalid network config:\ninvalid subnet foo: invalid CIDR block notation"
        );
        assert_eq!(
            err(config("10.0.0.1/24", "", "")),
            "invalid network config:\ninvalid subnet 10.0.0.1/24: it should be 10.0.0.0/24"
        );
        assert_eq!(
            err(config("10.0.0.0/24", "", "10.0.1.1")),
            "invalid network config:\ninvalid gateway 10.0.1.1: parent subnet 10.0.0.0/24 doesn't contain this address"
        );
        assert_eq!(
            err(config("10.0.0.0/24", "10.0.0.0/16", "x")),
            "invalid network config:\n* invalid ip-range 10.0.0.0/16: CIDR block is bigger than its parent subnet 10.0.0.0/24\n* invalid gateway x: invalid address"
        );
        assert!(err(config("10.0.0.0/16", "10.1.0.0/24", ""))
            .ends_with("parent subnet 10.0.0.0/16 doesn't contain ip-range"));
        assert!(validate(
            &[config("172.28.0.0/16", "172.28.5.0/24", "172.28.5.254")],
            false
        )
        .is_ok());
        // IPv6 entries are looked at only for IPv6 networks.
        assert!(validate(&[config("2001:db8::1/64", "", "")], false).is_ok());
        assert!(validate(&[config("2001:db8::1/64", "", "")], true).is_err());
    }

    #[test]
    fn gateways_come_from_the_range_or_the_subnet() {
        let s = subnets_from(&[config("172.28.0.0/16", "172.28.5.0/24", "")]);
        assert_eq!(s[0].gateway, "172.28.5.0");
        let s = subnets_from(&[config("10.10.0.0/24", "", "")]);
        assert_eq!(s[0].gateway, "10.10.0.1");
        assert_eq!(s[0].range, "10.10.0.0/24");
    }

    #[test]
    fn the_lowest_free_default_pool_is_picked() {
        let taken = [
            Cidr::parse("172.17.0.0/16").unwrap(),
            Cidr::parse("172.19.5.0/24").unwrap(),
        ];
        let s = pick_default(&taken).unwrap();
        assert_eq!(
            (s.block.as_str(), s.gateway.as_str()),
            ("172.18.0.0/16", "172.18.0.1")
        );
        let all: Vec<Cidr> = vec![
            Cidr::parse("172.16.0.0/12").unwrap(),
            Cidr::parse("192.168.0.0/16").unwrap(),
        ];
        assert_eq!(pick_default(&all), None);
        assert_eq!(default_pools().len(), 31);
    }

    #[test]
    fn leases_take_the_lowest_free_address() {
        let subnet =
            subnets_from(&[config("172.28.0.0/16", "172.28.5.0/24", "172.28.5.254")]).remove(0);
        let first = next_free(&subnet, &[]).unwrap();
        assert_eq!(
            first.to_string(),
            "172.28.5.0",
            "a range's first address is usable"
        );
        let second = next_free(&subnet, &[first]).unwrap();
        assert_eq!(second.to_string(), "172.28.5.1");
        let small = subnets_from(&[config("10.9.0.0/30", "", "")]).remove(0);
        assert_eq!(small.gateway, "10.9.0.1");
        let only = next_free(&small, &[]).unwrap();
        assert_eq!(only.to_string(), "10.9.0.2");
        assert_eq!(
            next_free(&small, &[only]),
            None,
            "network, gateway, broadcast never"
        );
        assert_eq!(last_free(&small, &[]), Some(only));
        assert_eq!(last_free(&subnet, &[]).unwrap().to_string(), "172.28.5.255");
        assert_eq!(mac_for("172.17.0.2".parse().unwrap()), "02:42:ac:11:00:02");
        let subnets = [small];
        assert!(static_address_problem(&subnets, "10.9.0.2".parse().unwrap()).is_none());
        assert_eq!(
            static_address_problem(&subnets, "10.9.0.1".parse().unwrap()).unwrap(),
            "Address already in use"
        );
        assert!(
            static_address_problem(&subnets, "10.8.0.1".parse().unwrap())
                .unwrap()
                .starts_with("no configured subnet")
        );
    }

    #[test]
    fn routes_are_read_from_proc() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(
            parse_routes(text),
            vec![Cidr::parse("172.17.0.0/16").unwrap()]
        );
    }
}
