//! Published ports: `HostConfig.PortBindings`, `PublishAllPorts` with the
//! image's `ExposedPorts`, parsed and checked as Docker does (pure), then
//! given host ports at start — a free one from the host's ephemeral range
//! where none was asked for — and checked against the other containers'
//! and against the host's own listeners.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A port's protocol (`80/tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One binding asked for: a container port to a host port, a run of host
/// ports to choose one from, or any host port (`first == 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub container_port: u16,
    pub protocol: Protocol,
    /// Empty: every address of the host.
    pub host_ip: String,
    pub first: u16,
    pub last: u16,
}

/// A binding with its host port chosen (kept with the endpoint).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: String,
    pub host_port: u16,
}

impl PublishedPort {
    /// The address shown (`0.0.0.0` for every address, as Docker shows).
    pub fn shown_ip(&self) -> &str {
        if self.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &self.host_ip
        }
    }

    /// Whether two bindings would take the same host port.
    pub fn clashes_with(&self, other: &PublishedPort) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && (self.host_ip == other.host_ip
                || self.host_ip.is_empty()
                || other.host_ip.is_empty())
    }
}

/// `80`, `80/tcp`, `53/udp` → port and protocol (Docker's `nat.ParsePort`
/// words on failure).
pub fn parse_port_key(key: &str) -> Result<(u16, Protocol), String> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "tcp" | "" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return Err(format!("invalid proto: {proto}")),
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((p, protocol)),
        _ => Err(format!("invalid port: {port}")),
    }
}

/// A `HostPort`: empty (any), `8080`, or `8000-8010`.
fn parse_host_ports(text: &str) -> Result<(u16, u16), String> {
    if text.is_empty() {
        return Ok((0, 0));
    }
    let bad = || format!("invalid port specification: {text:?}");
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let first = a.parse::<u16>().map_err(|_| bad())?;
    let last = b.parse::<u16>().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    Ok((first, last))
}

/// The bindings of a create request: `PortBindings`, and with
/// `PublishAllPorts` every exposed port not bound otherwise (any port).
pub fn requests(
    port_bindings: Option<&Value>,
    publish_all: bool,
    exposed: Option<&BTreeMap<String, Value>>,
) -> Result<Vec<PortRequest>, String> {
    let mut out = Vec::new();
    let bindings = match port_bindings {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => return Err(bad_shape("PortBindings", other)),
    };
    for (key, list) in bindings.into_iter().flatten() {
        let (container_port, protocol) = parse_port_key(key)?;
        let entries = match list {
            Value::Null => &[][..],
            Value::Array(entries) => entries.as_slice(),
            other => return Err(bad_shape(&format!("PortBindings[{key:?}]"), other)),
        };
        for entry in entries {
            out.push(binding_request(container_port, protocol, entry)?);
        }
        if entries.is_empty() && publish_all {
            out.push(any_port(container_port, protocol));
        }
    }
    if publish_all {
        for key in exposed.into_iter().flat_map(BTreeMap::keys) {
            let (container_port, protocol) = parse_port_key(key)?;
            let bound = out
                .iter()
                .any(|r| r.container_port == container_port && r.protocol == protocol);
            if !bound {
                out.push(any_port(container_port, protocol));
            }
        }
    }
    out.sort_by_key(|r| (r.container_port, r.protocol));
    Ok(out)
}

/// Docker decodes `PortBindings` into typed structs: another JSON shape is
/// a 400, never a binding quietly dropped or made random.
fn bad_shape(what: &str, value: &Value) -> String {
    format!(
        "invalid {what}: {value} (want {{\"80/tcp\": [{{\"HostIp\": \"\", \"HostPort\": \"8080\"}}]}})"
    )
}

/// A string field of a binding (absent or null: empty).
fn text_field<'a>(entry: &'a Value, field: &str) -> Result<&'a str, String> {
    match &entry[field] {
        Value::Null => Ok(""),
        Value::String(s) => Ok(s),
        other => Err(bad_shape(&format!("PortBindings {field}"), other)),
    }
}

fn binding_request(port: u16, protocol: Protocol, entry: &Value) -> Result<PortRequest, String> {
    if !entry.is_object() {
        return Err(bad_shape("PortBindings entry", entry));
    }
    let host_ip = text_field(entry, "HostIp")?;
    match host_ip.parse::<IpAddr>() {
        _ if host_ip.is_empty() || host_ip == "::" => {}
        Ok(IpAddr::V6(_)) => {
            return Err(format!(
                "berth publishes ports on IPv4 addresses only, not on {host_ip}"
            ))
        }
        Ok(IpAddr::V4(_)) => {}
        Err(_) => return Err(format!("invalid IP address: {host_ip}")),
    }
    let (first, last) = parse_host_ports(text_field(entry, "HostPort")?)?;
    Ok(PortRequest {
        container_port: port,
        protocol,
        // Every address, IPv4 or IPv6, is the same to netavark.
        host_ip: match host_ip {
            "0.0.0.0" | "::" => String::new(),
            ip => ip.to_string(),
        },
        first,
        last,
    })
}

fn any_port(container_port: u16, protocol: Protocol) -> PortRequest {
    PortRequest {
        container_port,
        protocol,
        host_ip: String::new(),
        first: 0,
        last: 0,
    }
}

/// Why a host port cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Another container has it (Docker's words).
    #[error("Bind for {ip}:{port} failed: port is already allocated")]
    Allocated { ip: String, port: u16 },
    /// A process of the host listens on it.
    #[error("failed to bind port {ip}:{port}/{proto}: listen {net} {ip}:{port}: bind: address already in use")]
    InUse {
        ip: String,
        port: u16,
        proto: &'static str,
        net: &'static str,
    },
    #[error("failed to bind port {ip}:{port}/{proto}: {reason}")]
    Bind {
        ip: String,
        port: u16,
        proto: &'static str,
        reason: String,
    },
    #[error("no free host port for {0}")]
    Exhausted(String),
}

/// The host's ephemeral port range (where Docker takes ports from).
pub fn ephemeral_range() -> (u16, u16) {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut parts = text
        .split_whitespace()
        .filter_map(|p| p.parse::<u16>().ok());
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) if a <= b => (a, b),
        _ => (49153, 60999),
    }
}

/// Chooses host ports for `requests`, avoiding `taken` (other containers')
/// and ports a host process holds. `probe` answers whether the host lets
/// a port be bound (injected so the choice is testable).
pub fn allocate(
    requests: &[PortRequest],
    taken: &[PublishedPort],
    range: (u16, u16),
    probe: &dyn Fn(&PublishedPort) -> Result<(), PortError>,
) -> Result<Vec<PublishedPort>, PortError> {
    let mut chosen: Vec<PublishedPort> = Vec::new();
    for req in requests {
        let (first, last) = if req.first == 0 {
            range
        } else {
            (req.first, req.last)
        };
        let mut last_error = None;
        let mut found = None;
        for port in first..=last {
            let candidate = PublishedPort {
                container_port: req.container_port,
                protocol: req.protocol,
                host_ip: req.host_ip.clone(),
                host_port: port,
            };
            let clash = taken
                .iter()
                .chain(&chosen)
                .any(|t| t.clashes_with(&candidate));
            let outcome = if clash {
                Err(PortError::Allocated {
                    ip: candidate.shown_ip().to_string(),
                    port,
                })
            } else {
                probe(&candidate)
            };
            match outcome {
                Ok(()) => {
                    found = Some(candidate);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        match (found, last_error) {
            (Some(p), _) => chosen.push(p),
            // One port asked for: why it cannot be had.
            (None, Some(e)) if first == last => return Err(e),
            _ => {
                return Err(PortError::Exhausted(format!(
                    "{}/{}",
                    req.container_port,
                    req.protocol.as_str()
                )))
            }
        }
    }
    Ok(chosen)
}

/// Binds the port once and lets it go: a host process listening on it
/// makes this fail. (netavark forwards with iptables and holds no socket.)
pub fn probe_host(p: &PublishedPort) -> Result<(), PortError> {
    let ip: IpAddr = if p.host_ip.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        p.host_ip
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    };
    let addr = SocketAddr::new(ip, p.host_port);
    let bound = match p.protocol {
        Protocol::Tcp => TcpListener::bind(addr).map(drop),
        Protocol::Udp => UdpSocket::bind(addr).map(drop),
        Protocol::Sctp => Ok(()),
    };
    let net = match (p.protocol, ip.is_ipv4()) {
        (Protocol::Udp, true) => "udp4",
        (Protocol::Udp, false) => "udp6",
        (_, true) => "tcp4",
        (_, false) => "tcp6",
    };
    match bound {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(PortError::InUse {
            ip: p.shown_ip().to_string(),
            port: p.host_port,
            proto: p.protocol.as_str(),
            net,
        }),
        Err(e) => Err(PortError::Bind {
            ip: p.shown_ip().to_string(),
            port: p.host_port,
            proto: p.protocol.as_str(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn port_keys_parse_like_docker() {
        assert_eq!(parse_port_key("80").unwrap(), (80, Protocol::Tcp));
        assert_eq!(parse_port_key("53/udp").unwrap(), (53, Protocol::Udp));
        assert_eq!(parse_port_key("80/xyz").unwrap_err(), "invalid proto: xyz");
        assert_eq!(parse_port_key("0/tcp").unwrap_err(), "invalid port: 0");
        assert_eq!(parse_port_key("x/tcp").unwrap_err(), "invalid port: x");
    }

    #[test]
    fn bindings_and_publish_all_become_requests() {
        let bindings = json!({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                              "53/udp": [{"HostIp": "", "HostPort": "9000-9005"}]});
        let exposed: BTreeMap<String, Value> = [
            ("80/tcp".to_string(), json!({})),
            ("443/tcp".to_string(), json!({})),
        ]
        .into();
        let reqs = requests(Some(&bindings), true, Some(&exposed)).unwrap();
        assert_eq!(reqs.len(), 3);
        assert_eq!(
            (reqs[0].container_port, reqs[0].first, reqs[0].last),
            (53, 9000, 9005)
        );
        assert_eq!(
            (reqs[1].host_ip.as_str(), reqs[1].first),
            ("127.0.0.1", 8080)
        );
        assert_eq!((reqs[2].container_port, reqs[2].first), (443, 0));
        assert!(requests(Some(&json!({"80": [{"HostPort": "x"}]})), false, None).is_err());
        assert!(requests(Some(&json!({"80": [{"HostIp": "nope"}]})), false, None).is_err());
        assert!(requests(Some(&json!({"80": [{"HostPort": "9-8"}]})), false, None).is_err());
        for bad in [
            json!({"80/tcp": "19507"}),
            json!({"80/tcp": ["19507"]}),
            json!({"80/tcp": [{"HostPort": 19508}]}),
            json!([1]),
            json!({"80/tcp": [{"HostIp": "::1", "HostPort": "1"}]}),
        ] {
            assert!(requests(Some(&bad), false, None).is_err(), "{bad}");
        }
        let all = requests(
            Some(&json!({"80": [{"HostIp": "::", "HostPort": "1"}], "81": null})),
            false,
            None,
        )
        .unwrap();
        assert_eq!((all.len(), all[0].host_ip.as_str()), (1, ""));
    }

    fn published(ip: &str, port: u16) -> PublishedPort {
        PublishedPort {
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: ip.into(),
            host_port: port,
        }
    }

    #[test]
    fn clashes_count_every_address_binding() {
        assert!(published("", 80).clashes_with(&published("127.0.0.1", 80)));
        assert!(!published("127.0.0.2", 80).clashes_with(&published("127.0.0.1", 80)));
        let mut udp = published("", 80);
        udp.protocol = Protocol::Udp;
        assert!(!udp.clashes_with(&published("", 80)));
    }

    #[test]
    fn allocation_skips_taken_and_busy_ports() {
        let any = any_port(80, Protocol::Tcp);
        let busy = |p: &PublishedPort| {
            if p.host_port == 50001 {
                Err(PortError::Exhausted("busy".into()))
            } else {
                Ok(())
            }
        };
        let got = allocate(
            std::slice::from_ref(&any),
            &[published("", 50000)],
            (50000, 50010),
            &busy,
        )
        .unwrap();
        assert_eq!(got[0].host_port, 50002);
        let fixed = PortRequest {
            first: 8080,
            last: 8080,
            ..any
        };
        let err = allocate(&[fixed], &[published("", 8080)], (1, 2), &busy).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Bind for 0.0.0.0:8080 failed: port is already allocated"
        );
    }

    #[test]
    fn a_listening_host_port_is_found() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = probe_host(&published("127.0.0.1", port)).unwrap_err();
        assert!(matches!(err, PortError::InUse { .. }), "{err}");
        drop(listener);
        assert!(probe_host(&published("127.0.0.1", port)).is_ok());
    }
}
