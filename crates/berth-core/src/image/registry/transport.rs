//! How berth reaches one registry: https with the system's roots plus the
//! CAs in `<certs dir>/<host>/*.crt` (Docker's `certs.d` layout), or, for
//! a registry named insecure, https without verification when it answers
//! https and plain http when it does not — dockerd's fallback.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};

use super::{RegistryConfig, RegistryError};

/// Waiting for a registry to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Silence on a connection before it counts as broken.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the insecure https probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to speak to one registry host.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host[:port]` as references name it.
    pub host: String,
    pub scheme: &'static str,
    /// Skip certificate checks (insecure registries on https).
    pub skip_verify: bool,
    pub roots: Vec<Vec<u8>>,
}

/// rustls needs one process-wide crypto provider; berth uses ring.
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Endpoint {
    /// Works out how to reach `host`.
    pub async fn resolve(config: &RegistryConfig, host: &str) -> Result<Endpoint, RegistryError> {
        install_crypto();
        let roots = read_roots(&config.certs_dir.join(host))?;
        // Docker Hub's registry is not at docker.io (which redirects to
        // the web site), as in dockerd.
        let connect = if host == super::name::DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            host
        };
        let mut endpoint = Endpoint {
            host: connect.to_string(),
            scheme: "https",
            skip_verify: false,
            roots,
        };
        // The CIDR check may resolve the name: off the async workers.
        let (entries, name) = (config.insecure.clone(), host.to_string());
        let insecure = tokio::task::spawn_blocking(move || host_is_insecure(&entries, &name))
            .await
            .unwrap_or(false);
        if insecure {
            endpoint.skip_verify = true;
            if !endpoint.answers_https().await {
                endpoint.scheme = "http";
            }
        }
        Ok(endpoint)
    }

    async fn answers_https(&self) -> bool {
        let Ok(client) = self.http_client(PROBE_TIMEOUT) else {
            return false;
        };
        let url = format!("https://{}/v2/", self.host);
        client.get(url).send().await.is_ok()
    }

    /// `scheme://host/v2/`.
    pub fn base_url(&self) -> String {
        format!("{}://{}/v2/", self.scheme, self.host)
    }

    /// The distribution client for this host.
    pub fn oci_client(&self, extra_http_hosts: &[String]) -> oci_client::Client {
        let mut http_hosts = extra_http_hosts.to_vec();
        if self.scheme == "http" {
            http_hosts.push(self.host.clone());
        }
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(http_hosts),
            accept_invalid_certificates: self.skip_verify,
            extra_root_certificates: (self.roots.iter())
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            platform_resolver: None,
            read_timeout: Some(READ_TIMEOUT),
            connect_timeout: Some(CONNECT_TIMEOUT),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
            // One PUT per blob, streamed from its file (dockerd also sends
            // a blob in one request): no chunk round trips.
            use_monolithic_push: true,
            ..Default::default()
        };
        oci_client::Client::new(config)
    }

    /// A plain HTTP client with the same TLS settings (login).
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::Client, RegistryError> {
        install_crypto();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            .timeout(timeout)
            .tls_danger_accept_invalid_certs(self.skip_verify)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")));
        for pem in &self.roots {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| RegistryError::Config(format!("CA certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build()
            .map_err(|e| RegistryError::Config(format!("registry client: {e}")))
    }
}

/// The PEM files `*.crt` in a host's certs folder (none when it is
/// missing), as dockerd reads them as extra roots.
fn read_roots(dir: &Path) -> Result<Vec<Vec<u8>>, RegistryError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut roots = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "crt") {
            let pem = std::fs::read(&path)
                .map_err(|e| RegistryError::Config(format!("{}: {e}", path.display())))?;
            roots.push(pem);
        }
    }
    Ok(roots)
}

/// Whether `host[:port]` is covered by an insecure entry: the name itself
/// exactly as written (`host:port`, or `host` for one without a port, as
/// dockerd's index names match), or a CIDR holding one of its addresses.
pub fn host_is_insecure(entries: &[String], host: &str) -> bool {
    let bare = strip_port(host);
    if entries.iter().any(|e| e == host) {
        return true;
    }
    let cidrs: Vec<(IpAddr, u8)> = entries.iter().filter_map(|e| parse_cidr(e)).collect();
    if cidrs.is_empty() {
        return false;
    }
    let addrs: Vec<IpAddr> = match bare.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (bare, 0)
            .to_socket_addrs()
            .map(|a| a.map(|s| s.ip()).collect())
            .unwrap_or_default(),
    };
    addrs
        .iter()
        .any(|ip| cidrs.iter().any(|(net, bits)| in_cidr(*ip, *net, *bits)))
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = text.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_insecure_by_cidr() {
        let entries = vec!["127.0.0.0/8".to_string(), "reg.lan:5000".to_string()];
        assert!(host_is_insecure(&entries, "127.0.0.1:5000"));
        assert!(host_is_insecure(&entries, "127.9.9.9"));
        assert!(host_is_insecure(&entries, "reg.lan:5000"));
        assert!(!host_is_insecure(&entries, "reg.lan:5001"));
        assert!(!host_is_insecure(&entries, "10.0.0.1:5000"));
        assert!(!host_is_insecure(&[], "127.0.0.1:5000"));
    }

    #[test]
    fn cidr_edges() {
        assert!(in_cidr(
            "10.1.2.3".parse().unwrap(),
            "10.0.0.0".parse().unwrap(),
            8
        ));
        assert!(!in_cidr(
            "11.1.2.3".parse().unwrap(),
            "10.0.0.0".parse().unwrap(),
            8
        ));
        assert!(in_cidr(
            "1.2.3.4".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
    }
}
