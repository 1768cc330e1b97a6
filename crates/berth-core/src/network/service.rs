//! Network operations: the predefined networks, create (checks in moby's
//! order, then the subnet), list with Docker's filters, look-up by ID,
//! name or ID prefix, remove and prune. One SQLite row per network; the
//! allocation of a default subnet and the insert happen under one lock, so
//! two creates never take the same subnet.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cidr::Cidr;
use super::error::NetworkError;
use super::ipam::{self, IpamConfig, Subnet};
use super::model::{CreateNetwork, Ipam, NetworkDriver, NetworkRecord, PREDEFINED};
use super::{Endpoint, NetworkRuntime};
use crate::events::{Event, EventBus};
use crate::store::Store;
use crate::volume::filters::{self, Filters, NameFilter};

/// The bridge of the default `bridge` network (not `docker0`: a dockerd on
/// the same host keeps its own).
pub const DEFAULT_BRIDGE: &str = "berth0";

/// List filter keys (Docker's).
const LIST_KEYS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];

/// Network operations.
pub struct NetworkService {
    pub(super) store: Arc<Store>,
    events: Arc<EventBus>,
    /// Held from choosing a subnet to storing the network.
    pub(super) allocation: parking_lot::Mutex<()>,
    /// The host's IPv4 routes (a default subnet must not shadow them).
    host_routes: fn() -> Vec<Cidr>,
    /// netavark and the namespace files (the daemon's; none in unit tests).
    runtime: Option<NetworkRuntime>,
    /// Containers' network teardowns under way.
    teardowns: Arc<super::teardowns::Teardowns>,
}

/// How long a remove or a start waits for teardowns in flight.
pub const TEARDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

fn proc_routes() -> Vec<Cidr> {
    ipam::parse_routes(&std::fs::read_to_string("/proc/net/route").unwrap_or_default())
}

impl NetworkService {
    pub fn new(store: Arc<Store>) -> Self {
        NetworkService {
            store,
            events: Arc::new(EventBus::placeholder()),
            allocation: parking_lot::Mutex::new(()),
            host_routes: proc_routes,
            runtime: None,
            teardowns: Arc::default(),
        }
    }

    /// Containers' network teardowns under way.
    pub fn teardowns(&self) -> &Arc<super::teardowns::Teardowns> {
        &self.teardowns
    }

    /// Sets networks up with `runtime` (the daemon's netavark).
    pub fn with_runtime(mut self, runtime: NetworkRuntime) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// netavark and the namespace files.
    pub fn runtime(&self) -> Result<&NetworkRuntime, NetworkError> {
        self.runtime.as_ref().ok_or_else(|| {
            NetworkError::Setup("networks cannot be set up here (no netavark)".into())
        })
    }

    /// Publishes this service's events on `bus` (shared with the others).
    pub fn with_events(mut self, bus: Arc<EventBus>) -> Self {
        self.events = bus;
        self
    }

    /// Docker's `network` event: the network's ID, its name and driver.
    fn publish(&self, action: &str, n: &NetworkRecord) {
        let attributes = [("name", n.name.as_str()), ("type", n.driver.as_str())];
        self.events
            .publish(Event::now("network", action, &n.id, &attributes));
    }

    /// Creates `bridge`, `host` and `none` where missing (once per root;
    /// their IDs stay). Returns how many were made.
    pub fn ensure_predefined(&self) -> Result<usize, NetworkError> {
        let _held = self.allocation.lock();
        let existing: Vec<String> = self.all()?.into_iter().map(|n| n.name).collect();
        let mut made = 0;
        for (name, driver) in [
            ("none", NetworkDriver::Null),
            ("host", NetworkDriver::Host),
            ("bridge", NetworkDriver::Bridge),
        ] {
            if existing.iter().any(|n| n == name) {
                continue;
            }
            let record = self.predefined(name, driver)?;
            if self.store.insert_network(&record)? {
                made += 1;
            }
        }
        Ok(made)
    }

    /// Applies the daemon's `--bridge` (the Linux bridge's name) and
    /// `--bip` (its address and prefix, as dockerd's) to the `bridge`
    /// network. Returns whether it changed. Kept as it is (with a warning)
    /// while containers are on it; refused when the subnet overlaps another
    /// network.
    pub fn configure_default_bridge(
        &self,
        bridge: Option<&str>,
        bip: Option<&str>,
    ) -> Result<bool, NetworkError> {
        let _held = self.allocation.lock();
        let mut record = self.get("bridge")?;
        let before = record.clone();
        if let Some(name) = bridge {
            check_bridge_name(name)?;
            record
                .options
                .insert("com.docker.network.bridge.name".into(), name.into());
        }
        if let Some(bip) = bip {
            let subnet = parse_bip(bip)?;
            let others = self.all()?.into_iter().filter(|n| n.id != record.id);
            let block = subnet.cidr().expect("a parsed block");
            if others
                .flat_map(|n| n.subnets)
                .filter_map(|s| s.cidr())
                .any(|b| b.overlaps(&block))
            {
                return Err(NetworkError::Invalid(format!(
                    "bip {bip} overlaps another network's subnet"
                )));
            }
            record.ipam.config = Some(vec![IpamConfig {
                subnet: subnet.block.clone(),
                gateway: subnet.gateway.clone(),
                ..Default::default()
            }]);
            record.subnets = vec![subnet];
        }
        if record == before {
            return Ok(false);
        }
        if !self.store.endpoints_of_network(&record.id)?.is_empty() {
            // Containers kept running across the restart use the old
            // bridge: it stays until they are stopped.
            tracing::warn!("the default bridge network has running containers: its bridge and bip change once they are stopped and the daemon restarted");
            return Ok(false);
        }
        self.store.replace_network(&record)?;
        Ok(true)
    }

    fn predefined(&self, name: &str, driver: NetworkDriver) -> Result<NetworkRecord, NetworkError> {
        let mut record = blank(name, driver);
        if driver == NetworkDriver::Bridge {
            let subnet = self.default_subnet()?;
            record.ipam.config = Some(vec![IpamConfig {
                subnet: subnet.block.clone(),
                gateway: subnet.gateway.clone(),
                ..Default::default()
            }]);
            record.subnets = vec![subnet];
            record.options = default_bridge_options();
        }
        Ok(record)
    }

    /// Every network, oldest first.
    pub fn all(&self) -> Result<Vec<NetworkRecord>, NetworkError> {
        Ok(self.store.list_networks()?)
    }

    /// `POST /networks/create`.
    pub fn create(&self, req: CreateNetwork) -> Result<NetworkRecord, NetworkError> {
        let driver = check_request(&req)?;
        let _held = self.allocation.lock();
        if self.all()?.iter().any(|n| n.name == req.name) {
            return Err(NetworkError::NameTaken(req.name));
        }
        let mut record = blank(&req.name, driver);
        record.enable_ipv6 = req.enable_ipv6;
        record.internal = req.internal;
        record.attachable = req.attachable;
        record.options = req.options.clone();
        record.labels = req.labels.clone();
        record.ipam.options = req.ipam_options.clone();
        self.place(&mut record, &req.ipam_config)?;
        if !self.store.insert_network(&record)? {
            return Err(NetworkError::NameTaken(req.name));
        }
        tracing::info!(network = %record.name, id = %record.id, "network created");
        self.publish("create", &record);
        Ok(record)
    }

    /// The subnets of a new network: the user's (refused when they overlap
    /// another network's) or a free default pool.
    fn place(&self, record: &mut NetworkRecord, asked: &[IpamConfig]) -> Result<(), NetworkError> {
        let wanted: Vec<&IpamConfig> = asked
            .iter()
            .filter(|c| record.enable_ipv6 || Cidr::parse(&c.subnet).is_some_and(|s| s.is_ipv4()))
            .collect();
        if wanted
            .iter()
            .any(|c| Cidr::parse(&c.subnet).is_some_and(|s| s.is_ipv4()))
        {
            let taken = self.taken_blocks()?;
            let subnets =
                ipam::subnets_from(&wanted.iter().map(|c| (*c).clone()).collect::<Vec<_>>());
            if subnets
                .iter()
                .filter_map(Subnet::cidr)
                .any(|s| taken.iter().any(|t| t.overlaps(&s)))
            {
                return Err(NetworkError::Forbidden(
                    "Pool overlaps with other one on this address space".into(),
                ));
            }
            record.ipam.config = Some(asked.to_vec());
            record.subnets = subnets;
            record.user_subnets = true;
        } else {
            let subnet = self.default_subnet()?;
            let mut shown = vec![IpamConfig {
                subnet: subnet.block.clone(),
                gateway: subnet.gateway.clone(),
                ..Default::default()
            }];
            shown.extend(asked.iter().cloned());
            record.ipam.config = Some(shown);
            record.subnets = vec![subnet];
            record.subnets.extend(ipam::subnets_from(asked));
        }
        Ok(())
    }

    /// The blocks other networks use.
    fn taken_blocks(&self) -> Result<Vec<Cidr>, NetworkError> {
        Ok(self
            .all()?
            .iter()
            .flat_map(|n| n.subnets.iter().filter_map(Subnet::cidr))
            .collect())
    }

    fn default_subnet(&self) -> Result<Subnet, NetworkError> {
        let mut taken = self.taken_blocks()?;
        taken.extend((self.host_routes)());
        ipam::pick_default(&taken).ok_or_else(|| {
            NetworkError::Invalid("all predefined address pools have been fully subnetted".into())
        })
    }

    /// The network named by full ID, name, or unique ID prefix.
    pub fn get(&self, name_or_id: &str) -> Result<NetworkRecord, NetworkError> {
        let all = self.all()?;
        if let Some(n) = all
            .iter()
            .find(|n| n.id == name_or_id || n.name == name_or_id)
        {
            return Ok(n.clone());
        }
        let matching: Vec<&NetworkRecord> = all
            .iter()
            .filter(|n| !name_or_id.is_empty() && n.id.starts_with(name_or_id))
            .collect();
        match matching.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(NetworkError::NotFound(name_or_id.into())),
            many => Err(NetworkError::Ambiguous {
                name: name_or_id.into(),
                count: many.len(),
            }),
        }
    }

    /// `GET /networks?filters=`.
    pub fn list(&self, filters: &Filters) -> Result<Vec<NetworkRecord>, NetworkError> {
        let f = ListFilter::new(filters, self.in_use()?)?;
        Ok(self.all()?.into_iter().filter(|n| f.matches(n)).collect())
    }

    /// IDs of the networks some container is set up on.
    fn in_use(&self) -> Result<std::collections::HashSet<String>, NetworkError> {
        Ok(self
            .store
            .list_endpoints()?
            .into_iter()
            .map(|e| e.network_id)
            .collect())
    }

    /// The containers set up on a network: each endpoint with the
    /// container's current name.
    pub fn attached(&self, network_id: &str) -> Result<Vec<(Endpoint, String)>, NetworkError> {
        let mut out = Vec::new();
        for e in self.store.endpoints_of_network(network_id)? {
            let name = match self.store.get_container(&e.container_id)? {
                Some(c) => c.name,
                None => e.netavark.container_name.clone(),
            };
            out.push((e, name));
        }
        Ok(out)
    }

    /// Docker's refusal to remove a network containers are on, naming
    /// them (as moby 28 does).
    fn refuse_in_use(&self, record: &NetworkRecord) -> Result<(), NetworkError> {
        let attached = self.attached(&record.id)?;
        if attached.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = attached
            .iter()
            .map(|(e, name)| format!("name:{name:?} id:{:?}", &e.container_id[..12]))
            .collect();
        Err(NetworkError::Forbidden(format!(
            "error while removing network: network {} id {} has active endpoints ({})",
            record.name,
            record.id,
            names.join(", ")
        )))
    }

    /// Deletes a user network; predefined ones are refused.
    pub fn remove(&self, name_or_id: &str) -> Result<NetworkRecord, NetworkError> {
        let record = self.get(name_or_id)?;
        if record.is_predefined() {
            return Err(NetworkError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                record.name
            )));
        }
        // A container that just exited may still be leaving it.
        self.teardowns.wait_idle(TEARDOWN_WAIT);
        let _held = self.allocation.lock();
        self.refuse_in_use(&record)?;
        self.remove_anchor(&record);
        if let Err(e) = self.store.delete_network(&record.id) {
            // An endpoint made since the check: the database refused.
            self.refuse_in_use(&record)?;
            return Err(e.into());
        }
        tracing::info!(network = %record.name, id = %record.id, "network removed");
        self.publish("destroy", &record);
        Ok(record)
    }

    /// Removes the unused user networks that pass `label`, `label!` and
    /// `until`; returns their names.
    pub fn prune(&self, filters: &Filters) -> Result<Vec<String>, NetworkError> {
        if let Some(bad) = filters
            .keys()
            .find(|k| !["label", "label!", "until"].contains(&k.as_str()))
        {
            return Err(NetworkError::InvalidFilter(format!(
                "invalid filter '{bad}'"
            )));
        }
        let now = chrono::Utc::now().timestamp();
        let until = filters::until_cutoff(filters, now)
            .map_err(|e| NetworkError::InvalidFilter(e.to_string()))?;
        let mut removed = Vec::new();
        self.teardowns.wait_idle(TEARDOWN_WAIT);
        let _held = self.allocation.lock();
        let in_use = self.in_use()?;
        for n in self.all()? {
            let created =
                chrono::DateTime::parse_from_rfc3339(&n.created).map_or(0, |t| t.timestamp());
            let keep = n.is_predefined()
                || in_use.contains(&n.id)
                || until.is_some_and(|cutoff| created > cutoff)
                || !filters::labels_match(filters, "label", &n.labels)
                || filters::labels_excluded(filters, &n.labels);
            if !keep {
                self.remove_anchor(&n);
            }
            // An endpoint made meanwhile makes the database refuse.
            if !keep && self.store.delete_network(&n.id).unwrap_or(false) {
                self.publish("destroy", &n);
                removed.push(n.name);
            }
        }
        Ok(removed)
    }
}

/// The checks of a create request before anything is looked up, in moby's
/// order; the driver it asks for.
fn check_request(req: &CreateNetwork) -> Result<NetworkDriver, NetworkError> {
    if PREDEFINED.contains(&req.name.as_str()) {
        return Err(NetworkError::Forbidden(format!(
            "operation is not permitted on predefined {} network ",
            req.name
        )));
    }
    let driver = match req.driver.as_str() {
        "" | "bridge" => NetworkDriver::Bridge,
        "host" | "null" => {
            return Err(NetworkError::Forbidden(format!(
                "only one instance of \"{}\" network is allowed",
                req.driver
            )))
        }
        "overlay" => return Err(NetworkError::Forbidden(SWARM.into())),
        other => return Err(NetworkError::UnknownDriver(other.into())),
    };
    if req.scope == "swarm" || req.scope == "global" || req.ingress {
        return Err(NetworkError::Forbidden(
            "cannot create a swarm scoped network when swarm is not active".into(),
        ));
    }
    if req.config_only {
        return Err(NetworkError::Invalid(
            "config-only networks are not supported by berth".into(),
        ));
    }
    if !req.ipam_driver.is_empty() && req.ipam_driver != "default" {
        return Err(NetworkError::UnknownDriver(req.ipam_driver.clone()));
    }
    ipam::validate(&req.ipam_config, req.enable_ipv6).map_err(NetworkError::Invalid)?;
    if req.name.trim().is_empty() {
        return Err(NetworkError::Invalid(format!("invalid name: {}", req.name)));
    }
    Ok(driver)
}

const SWARM: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

fn blank(name: &str, driver: NetworkDriver) -> NetworkRecord {
    NetworkRecord {
        id: crate::volume::names::new_object_id(),
        name: name.to_string(),
        created: crate::container::jsonlog::now_rfc3339_nano(),
        driver,
        enable_ipv6: false,
        internal: false,
        attachable: false,
        ipam: Ipam {
            driver: "default".into(),
            options: None,
            config: None,
        },
        subnets: Vec::new(),
        user_subnets: false,
        anchor: None,
        options: BTreeMap::new(),
        labels: BTreeMap::new(),
    }
}

#[cfg(test)]
pub(crate) fn blank_for_tests(name: &str) -> NetworkRecord {
    blank(name, NetworkDriver::Bridge)
}

/// A Linux interface name: 1–15 characters, no `/`, space or `:`.
fn check_bridge_name(name: &str) -> Result<(), NetworkError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::Invalid(format!(
            "invalid bridge name {name:?}: 1 to 15 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// dockerd's `--bip`: the bridge's own address with the prefix, e.g.
/// `10.214.0.1/24` (subnet 10.214.0.0/24, gateway 10.214.0.1).
pub fn parse_bip(text: &str) -> Result<Subnet, NetworkError> {
    let bad = || {
        NetworkError::Invalid(format!(
            "invalid bip {text:?}: want an IPv4 address with a prefix, e.g. 10.214.0.1/24"
        ))
    };
    let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
    let ip: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let block = Cidr::parse(&format!("{ip}/{prefix}"))
        .ok_or_else(bad)?
        .network();
    if prefix > 30 || block.nth(0) == Some(ip.into()) {
        return Err(bad());
    }
    Ok(Subnet {
        block: block.to_string(),
        range: block.to_string(),
        gateway: ip.to_string(),
        reserved: Vec::new(),
    })
}

/// The default bridge's options, as Docker shows `docker0`'s.
fn default_bridge_options() -> BTreeMap<String, String> {
    [
        ("com.docker.network.bridge.default_bridge", "true"),
        ("com.docker.network.bridge.enable_icc", "true"),
        ("com.docker.network.bridge.enable_ip_masquerade", "true"),
        ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
        ("com.docker.network.bridge.name", DEFAULT_BRIDGE),
        ("com.docker.network.driver.mtu", "1500"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Docker's network list filters, compiled once.
struct ListFilter<'a> {
    filters: &'a Filters,
    names: NameFilter,
    ids: NameFilter,
    dangling: Option<bool>,
    /// Networks with endpoints (not dangling).
    in_use: std::collections::HashSet<String>,
}

impl<'a> ListFilter<'a> {
    fn new(
        filters: &'a Filters,
        in_use: std::collections::HashSet<String>,
    ) -> Result<Self, NetworkError> {
        let invalid = |e: crate::volume::VolumeError| NetworkError::InvalidFilter(e.to_string());
        filters::check_keys(filters, LIST_KEYS).map_err(invalid)?;
        for t in filters.get("type").into_iter().flatten() {
            if t != "custom" && t != "builtin" {
                return Err(NetworkError::InvalidFilter(format!(
                    "invalid filter: 'type'='{t}'"
                )));
            }
        }
        Ok(ListFilter {
            filters,
            names: NameFilter::for_key(filters, "name"),
            ids: NameFilter::for_key(filters, "id"),
            dangling: filters::dangling_value(filters).map_err(invalid)?,
            in_use,
        })
    }

    fn matches(&self, n: &NetworkRecord) -> bool {
        let kind = if n.is_predefined() {
            "builtin"
        } else {
            "custom"
        };
        self.names.matches(&n.name)
            && self.ids.matches(&n.id)
            && filters::labels_match(self.filters, "label", &n.labels)
            && filters::exact_match(self.filters, "driver", n.driver.as_str())
            && filters::exact_match(self.filters, "scope", "local")
            && filters::exact_match(self.filters, "type", kind)
            // Dangling: a user network no container is on (moby master's
            // fixed semantics; v25–v27 never saw the containers).
            && self.dangling.is_none_or(|d| {
                d == (!n.is_predefined() && !self.in_use.contains(&n.id))
            })
    }
}
