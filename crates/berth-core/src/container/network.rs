//! A container's networks at start and exit (the configuration made at
//! create is `netconfig`'s). At start: endpoints —
//! addresses leased in the store (lowest free, or the static one asked
//! for), host ports chosen — then a network namespace file and netavark
//! told to set them all up. At exit, failed start, removal and start-up
//! repair: [`ContainerService::detach_networks`] undoes it in an order a
//! crash can resume from (netavark teardown, the namespace, then the rows
//! that hold the leases).

use std::net::IpAddr;
use std::path::PathBuf;

use super::netconfig::NetworkMode;
use super::{ContainerError, ContainerRecord, ContainerService, Status};
use crate::network::bridge::{netavark_network, usable_subnets};
use crate::network::netavark::PortMapping;
use crate::network::netavark::{NetavarkRequest, PerNetwork};
use crate::network::ports::{self, PublishedPort};
use crate::network::{ipam, Endpoint, EndpointConfig, NetworkDriver, NetworkError, NetworkRecord};
use crate::store::EndpointInsert;

/// How the runtime gives the container its network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecNetwork {
    /// The host's.
    Host,
    /// A new one with loopback only (`none`).
    New,
    /// This one (the container's namespace file, or another container's).
    Join(PathBuf),
}

/// netavark setting a start's endpoints up, on a thread of its own.
#[derive(Debug, Default)]
pub struct PendingSetup {
    running: Option<std::thread::JoinHandle<Result<(), ContainerError>>>,
}

impl PendingSetup {
    /// Waits for the setup; its failure is the start's.
    pub fn wait(self) -> Result<(), ContainerError> {
        match self.running {
            None => Ok(()),
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(ContainerError::Start("network setup panicked".into()))),
        }
    }
}

/// What a started container's /etc files need of its networks.
#[derive(Debug, Clone, Default)]
pub struct NetworkFacts {
    pub endpoints: Vec<Endpoint>,
    /// DNS servers of its user networks (aardvark-dns on the gateways).
    pub dns_servers: Vec<String>,
    /// The default bridge's gateway (`--add-host X:host-gateway`).
    pub host_gateway: String,
}

impl ContainerService {
    /// The namespace file of a container's networks.
    pub(super) fn netns_path(&self, id: &str) -> PathBuf {
        self.networks
            .runtime()
            .map(|r| r.netns_dir.join(id))
            .unwrap_or_default()
    }

    /// Sets up the container's networks for a start: the leases and the
    /// namespace at once, netavark's work on a thread the caller waits
    /// for ([`PendingSetup::wait`]). On failure the caller's failed-start
    /// handling undoes it ([`Self::detach_networks`]).
    pub(super) fn attach_networks(
        &self,
        record: &ContainerRecord,
    ) -> Result<(SpecNetwork, NetworkFacts, PendingSetup), ContainerError> {
        let (spec, mut facts, pending) = self.attach_by_mode(record)?;
        facts.host_gateway = self
            .networks
            .get("bridge")
            .ok()
            .and_then(|b| b.subnets.first().map(|s| s.gateway.clone()))
            .unwrap_or_default();
        Ok((spec, facts, pending))
    }

    fn attach_by_mode(
        &self,
        record: &ContainerRecord,
    ) -> Result<(SpecNetwork, NetworkFacts, PendingSetup), ContainerError> {
        let none = PendingSetup::default;
        match NetworkMode::parse(&record.host_config.network_mode) {
            NetworkMode::Host => Ok((SpecNetwork::Host, NetworkFacts::default(), none())),
            NetworkMode::None => Ok((SpecNetwork::New, NetworkFacts::default(), none())),
            NetworkMode::Container(other) => {
                let (spec, facts) = self.joined_network(&record.id, &other)?;
                Ok((spec, facts, none()))
            }
            NetworkMode::Bridge | NetworkMode::Network(_) => {
                let endpoints = self.lease_endpoints(record)?;
                match self.set_up(record, &endpoints) {
                    Ok((path, pending)) => Ok((SpecNetwork::Join(path), facts(endpoints), pending)),
                    Err(e) => {
                        self.detach_networks(&record.id);
                        Err(e)
                    }
                }
            }
        }
    }

    /// `--network container:X`: X's namespace, X running (Docker's words).
    fn joined_network(
        &self,
        own: &str,
        other: &str,
    ) -> Result<(SpecNetwork, NetworkFacts), ContainerError> {
        let donor = self.resolve(other)?;
        if donor.id == own {
            return Err(ContainerError::InvalidConfig(
                "cannot join own network".into(),
            ));
        }
        match (donor.state.status, donor.state.pid) {
            (Status::Running, Some(pid)) => {
                let endpoints = self.store.endpoints_of_container(&donor.id)?;
                Ok((
                    SpecNetwork::Join(format!("/proc/{pid}/ns/net").into()),
                    facts(endpoints),
                ))
            }
            _ => Err(ContainerError::Start(format!(
                "cannot join network namespace of a non running container: {}",
                donor.id
            ))),
        }
    }

    /// Leases addresses and host ports and records the endpoints, all
    /// under one lock (the database also refuses a lease taken twice).
    fn lease_endpoints(&self, record: &ContainerRecord) -> Result<Vec<Endpoint>, ContainerError> {
        // Addresses and ports a container that just exited still holds.
        self.networks
            .teardowns()
            .wait_idle(crate::network::TEARDOWN_WAIT);
        let _held = self.attach_lock.lock();
        let mut endpoints = Vec::new();
        for (index, (name, config)) in self.ordered_networks(record).into_iter().enumerate() {
            let network = self.networks.get(&name)?;
            if network.driver != NetworkDriver::Bridge {
                continue;
            }
            let network = self.networks.ensure_anchor(&network)?;
            let interface = format!("eth{}", index);
            endpoints.push(self.new_endpoint(record, &network, &config, interface)?);
        }
        if let Some(first) = endpoints.first_mut() {
            first.ports = self.choose_ports(record, &first.endpoint_id)?;
            first.netavark.port_mappings = first.ports.iter().map(port_mapping).collect();
        }
        match self.store.insert_endpoints(&endpoints)? {
            EndpointInsert::Inserted => Ok(endpoints),
            EndpointInsert::AddressTaken => {
                Err(NetworkError::Forbidden("Address already in use".into()).into())
            }
            EndpointInsert::AlreadyAttached => Err(ContainerError::Start(format!(
                "container {} already has endpoints (a start or stop is in progress)",
                record.id
            ))),
        }
    }

    /// The configured networks, the mode's own first.
    fn ordered_networks(&self, record: &ContainerRecord) -> Vec<(String, EndpointConfig)> {
        let primary = match NetworkMode::parse(&record.host_config.network_mode) {
            NetworkMode::Network(name) => self.networks.get(&name).map(|n| n.name).ok(),
            _ => Some("bridge".to_string()),
        };
        let mut out: Vec<(String, EndpointConfig)> = record
            .networks
            .iter()
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        out.sort_by_key(|(n, _)| Some(n) != primary.as_ref());
        out
    }

    /// One endpoint on `network`: its address, MAC, DNS names and what
    /// netavark is to be told.
    pub(super) fn new_endpoint(
        &self,
        record: &ContainerRecord,
        network: &NetworkRecord,
        config: &EndpointConfig,
        interface: String,
    ) -> Result<Endpoint, ContainerError> {
        let anchor = network.anchor.iter().flat_map(|a| &a.addresses);
        let leased: Vec<IpAddr> = self
            .store
            .endpoints_of_network(&network.id)?
            .iter()
            .flat_map(|e| [e.ipv4.as_deref(), e.ipv6.as_deref()])
            .flatten()
            .chain(anchor.map(String::as_str))
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let mut endpoint = Endpoint {
            container_id: record.id.clone(),
            network_id: network.id.clone(),
            network_name: network.name.clone(),
            endpoint_id: crate::volume::names::new_object_id(),
            interface,
            ready: true,
            ..Default::default()
        };
        for subnet in usable_subnets(network) {
            let Some(block) = subnet.cidr() else { continue };
            let wanted = if block.is_ipv4() {
                config.static_ipv4()
            } else {
                config.static_ipv6()
            };
            let ip = lease(network, subnet, wanted, &leased)?;
            if block.is_ipv4() {
                endpoint.ipv4 = Some(ip.to_string());
                endpoint.ipv4_prefix = block.prefix;
                endpoint.gateway = subnet.gateway.clone();
            } else {
                endpoint.ipv6 = Some(ip.to_string());
                endpoint.ipv6_prefix = block.prefix;
                endpoint.ipv6_gateway = subnet.gateway.clone();
            }
        }
        endpoint.mac = match (config.mac_address.as_str(), &endpoint.ipv4) {
            ("", Some(ip)) => ipam::mac_for(ip.parse().map_err(|_| bad_lease(ip))?),
            (given, _) => given.to_string(),
        };
        if !network.is_predefined() {
            endpoint.dns_names = dns_names(record, config);
        }
        endpoint.netavark = self.netavark_request(record, network, &endpoint);
        Ok(endpoint)
    }

    /// netavark's request for one endpoint (ports are added later).
    fn netavark_request(
        &self,
        record: &ContainerRecord,
        network: &NetworkRecord,
        endpoint: &Endpoint,
    ) -> NetavarkRequest {
        let key = network.id.clone();
        let static_ips = [&endpoint.ipv4, &endpoint.ipv6];
        let per_network = PerNetwork {
            interface_name: endpoint.interface.clone(),
            static_ips: usable_subnets(network)
                .filter_map(|s| s.cidr())
                .filter_map(|b| static_ips[usize::from(!b.is_ipv4())].clone())
                .collect(),
            aliases: endpoint
                .dns_names
                .iter()
                .filter(|n| **n != record.name)
                .cloned()
                .collect(),
            static_mac: (!endpoint.mac.is_empty()).then(|| endpoint.mac.clone()),
        };
        let mut request = NetavarkRequest {
            container_id: record.id.clone(),
            container_name: record.name.clone(),
            ..Default::default()
        };
        if !network.is_predefined() {
            let options =
                super::options::ContainerOptions::parse(&record.config, &record.host_config);
            // Only addresses reach aardvark's files (checked at create too).
            request.dns_servers = options
                .map(|o| o.dns)
                .unwrap_or_default()
                .into_iter()
                .filter(|s| s.parse::<IpAddr>().is_ok())
                .collect();
        }
        request.networks.insert(key.clone(), per_network);
        request.network_info.insert(key, netavark_network(network));
        request
    }

    /// Host ports for the container's published ports; a port another
    /// container or a host process holds is Docker's error.
    fn choose_ports(
        &self,
        record: &ContainerRecord,
        endpoint_id: &str,
    ) -> Result<Vec<PublishedPort>, ContainerError> {
        let publish_all =
            record.host_config.extra.get("PublishAllPorts") == Some(&serde_json::Value::Bool(true));
        let requests = ports::requests(
            record.host_config.extra.get("PortBindings"),
            publish_all,
            record.config.exposed_ports.as_ref(),
        )
        .map_err(ContainerError::InvalidConfig)?;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let taken: Vec<PublishedPort> = self
            .store
            .list_endpoints()?
            .into_iter()
            .flat_map(|e| e.ports)
            .collect();
        ports::allocate(&requests, &taken, ports::ephemeral_range(), &ports::probe_host).map_err(
            |e| {
                ContainerError::Start(format!(
                    "driver failed programming external connectivity on endpoint {} ({endpoint_id}): {e}",
                    record.name
                ))
            },
        )
    }

    /// Makes the namespace file and has netavark set every endpoint up
    /// (on a thread).
    fn set_up(
        &self,
        record: &ContainerRecord,
        endpoints: &[Endpoint],
    ) -> Result<(PathBuf, PendingSetup), ContainerError> {
        let netns = self.netns_path(&record.id);
        let io = |what: &str, e| ContainerError::io(format!("{what} {}", netns.display()), e);
        let runtime = self.networks.runtime()?;
        for dir in [&runtime.netns_dir, &runtime.netavark.config_dir] {
            std::fs::create_dir_all(dir).map_err(|e| io("creating", e))?;
        }
        crate::network::netns::create(&netns).map_err(|e| io("creating the namespace", e))?;
        if endpoints.is_empty() {
            return Ok((netns, PendingSetup::default()));
        }
        let request = combined(record, endpoints);
        let netavark = runtime.netavark.clone();
        let path = netns.clone();
        let running = std::thread::Builder::new()
            .name("netavark".into())
            .spawn(move || {
                netavark
                    .setup(&path, &request)
                    .map(drop)
                    .map_err(|e| ContainerError::Start(e.to_string()))
            })
            .map_err(|e| ContainerError::io("starting the network setup", e))?;
        Ok((
            netns,
            PendingSetup {
                running: Some(running),
            },
        ))
    }

    /// Undoes a container's networks: netavark teardown (with a fresh
    /// namespace if its own is gone, so the rules still go), the
    /// namespace file, then the endpoint rows and their leases.
    /// Idempotent; problems are logged, never returned.
    pub(super) fn detach_networks(&self, id: &str) {
        let endpoints = match self.store.endpoints_of_container(id) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(container = %id, error = %e, "cannot read endpoints");
                return;
            }
        };
        let netns = self.netns_path(id);
        let Ok(runtime) = self.networks.runtime() else {
            return;
        };
        if !endpoints.is_empty() {
            if !crate::network::netns::is_netns(&netns) {
                let _ = crate::network::netns::create(&netns);
            }
            let name = endpoints[0].netavark.container_name.clone();
            let request = combined_named(id, &name, &endpoints);
            if let Err(e) = runtime.netavark.teardown(&netns, &request) {
                tracing::warn!(container = %id, error = %e, "network teardown reported problems");
            }
        }
        if let Err(e) = crate::network::netns::remove(&netns) {
            tracing::warn!(container = %id, error = %e, "network namespace not removed");
        }
        for endpoint in endpoints {
            if let Err(e) = self.store.delete_endpoint(&endpoint.endpoint_id) {
                tracing::error!(container = %id, error = %e, "endpoint row not removed");
            }
        }
    }
}

/// The endpoints of a start as the /etc files need them.
fn facts(endpoints: Vec<Endpoint>) -> NetworkFacts {
    let dns_servers = endpoints
        .iter()
        .filter(|e| !e.dns_names.is_empty())
        .map(|e| e.gateway.clone())
        .filter(|g| !g.is_empty())
        .collect();
    NetworkFacts {
        endpoints,
        dns_servers,
        host_gateway: String::new(),
    }
}

/// The static address asked for, or the lowest free one.
fn lease(
    network: &NetworkRecord,
    subnet: &ipam::Subnet,
    wanted: Option<&str>,
    leased: &[IpAddr],
) -> Result<IpAddr, ContainerError> {
    match wanted {
        Some(text) => {
            let ip: IpAddr = text.parse().map_err(|_| bad_lease(text))?;
            let problem = ipam::static_address_problem(std::slice::from_ref(subnet), ip);
            if problem.is_some() || leased.contains(&ip) {
                return Err(NetworkError::Forbidden("Address already in use".into()).into());
            }
            Ok(ip)
        }
        None => ipam::next_free(subnet, leased).ok_or_else(|| {
            NetworkError::Forbidden(format!(
                "no available IPv4 addresses on this network's address pools: {} ({})",
                network.name, network.id
            ))
            .into()
        }),
    }
}

fn bad_lease(ip: &str) -> ContainerError {
    ContainerError::InvalidConfig(format!("invalid IP address: {ip}"))
}

/// Docker's DNS names of a container on a user network: its name, its
/// aliases, its short ID and its hostname, each once.
fn dns_names(record: &ContainerRecord, config: &EndpointConfig) -> Vec<String> {
    let mut names = vec![record.name.clone()];
    names.extend(config.aliases.iter().flatten().cloned());
    names.push(record.short_id().to_string());
    names.push(record.config.hostname.clone());
    let mut seen = std::collections::HashSet::new();
    // A hostname that is no DNS name (spaces, commas) is just not one.
    names.retain(|n| super::netconfig::is_dns_safe(n) && seen.insert(n.clone()));
    names
}

fn port_mapping(p: &PublishedPort) -> PortMapping {
    PortMapping {
        container_port: p.container_port,
        host_ip: p.host_ip.clone(),
        host_port: p.host_port,
        protocol: p.protocol.as_str().to_string(),
        range: 1,
    }
}

/// One netavark request for all of a container's endpoints.
fn combined(record: &ContainerRecord, endpoints: &[Endpoint]) -> NetavarkRequest {
    combined_named(&record.id, &record.name, endpoints)
}

fn combined_named(id: &str, name: &str, endpoints: &[Endpoint]) -> NetavarkRequest {
    let mut request = NetavarkRequest {
        container_id: id.to_string(),
        container_name: name.to_string(),
        ..Default::default()
    };
    for e in endpoints {
        request.networks.extend(e.netavark.networks.clone());
        request.network_info.extend(e.netavark.network_info.clone());
        request
            .port_mappings
            .extend(e.netavark.port_mappings.clone());
        for server in &e.netavark.dns_servers {
            if !request.dns_servers.contains(server) {
                request.dns_servers.push(server.clone());
            }
        }
    }
    request
}
