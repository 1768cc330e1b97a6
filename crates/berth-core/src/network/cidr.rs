//! IPv4 and IPv6 blocks in CIDR notation, as plain numbers: parsing,
//! containment, overlap and the n-th address (pure; no I/O).

use std::fmt;
use std::net::IpAddr;

/// An address with a prefix length, e.g. `172.18.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `a.b.c.d/n` or `x::y/n`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        (prefix <= bits(addr)).then_some(Cidr { addr, prefix })
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The block with its host bits cleared.
    pub fn network(&self) -> Cidr {
        Cidr {
            addr: from_number(number(self.addr) & self.mask(), self.addr.is_ipv4()),
            prefix: self.prefix,
        }
    }

    /// Whether the host bits are clear (`10.0.0.0/24`, not `10.0.0.1/24`).
    pub fn is_network(&self) -> bool {
        self.network().addr == self.addr
    }

    fn mask(&self) -> u128 {
        let width = u32::from(bits(self.addr));
        let host = width - u32::from(self.prefix);
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        if host >= 128 {
            0
        } else {
            all & !((1u128 << host) - 1)
        }
    }

    /// Whether `ip` lies in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4()
            && number(ip) & self.mask() == number(self.addr) & self.mask()
    }

    /// Whether `other` lies wholly in this block.
    pub fn contains_block(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// Whether the two blocks share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains_block(other) || other.contains_block(self)
    }

    /// The `n`-th address of the block (0: the network address), if the
    /// block has that many.
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        let width = u32::from(bits(self.addr)) - u32::from(self.prefix);
        if width < 128 && n >> width != 0 {
            return None;
        }
        let base = number(self.network().addr);
        Some(from_number(base + n, self.is_ipv4()))
    }

    /// Addresses in the block (saturating at `u128::MAX`).
    pub fn size(&self) -> u128 {
        let width = u32::from(bits(self.addr)) - u32::from(self.prefix);
        if width >= 128 {
            u128::MAX
        } else {
            1u128 << width
        }
    }

    /// The index of `ip` in the block (`None` if outside).
    pub fn index_of(&self, ip: IpAddr) -> Option<u128> {
        self.contains(ip)
            .then(|| number(ip) - number(self.network().addr))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn bits(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn number(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_number(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((n as u32).into())
    } else {
        IpAddr::V6(n.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str) -> Cidr {
        Cidr::parse(text).unwrap()
    }

    #[test]
    fn parses_only_cidr_notation() {
        assert_eq!(c("172.18.0.0/16").to_string(), "172.18.0.0/16");
        assert_eq!(c("2001:db8::/64").to_string(), "2001:db8::/64");
        for bad in [
            "172.18.0.0",
            "172.18.0.0/33",
            "foo/8",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "::/129",
        ] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn networks_containment_and_overlap() {
        assert!(!c("10.0.0.1/24").is_network());
        assert_eq!(c("10.0.0.1/24").network(), c("10.0.0.0/24"));
        assert!(c("172.28.0.0/16").contains_block(&c("172.28.5.0/24")));
        assert!(!c("172.28.5.0/24").contains_block(&c("172.28.0.0/16")));
        assert!(c("172.28.5.0/24").overlaps(&c("172.28.0.0/16")));
        assert!(!c("172.28.0.0/16").overlaps(&c("172.29.0.0/16")));
        assert!(!c("10.0.0.0/8").contains("::1".parse().unwrap()));
        assert!(c("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(c("2001:db8::/64").contains("2001:db8::f00d".parse().unwrap()));
    }

    #[test]
    fn addresses_by_index() {
        assert_eq!(c("172.18.0.0/16").nth(1).unwrap().to_string(), "172.18.0.1");
        assert_eq!(c("10.0.0.0/30").nth(4), None);
        assert_eq!(c("10.0.0.0/30").size(), 4);
        assert_eq!(
            c("10.0.0.0/24").index_of("10.0.0.9".parse().unwrap()),
            Some(9)
        );
        assert_eq!(
            c("2001:db8::/64").nth(0xf00d).unwrap().to_string(),
            "2001:db8::f00d"
        );
    }
}
