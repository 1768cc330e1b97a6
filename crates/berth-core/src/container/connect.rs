//! `docker network connect` and `disconnect`: a stopped container's
//! configured networks change (they are set up at its next start); a
//! running one's endpoint is also leased and set up, or torn down, at
//! once — under the container's lock, so a start, stop or exit never
//! interleaves. For a running container the endpoint row is marked not
//! ready while the change is under way (connect: row → setup → the
//! container's networks → ready; disconnect: not ready → teardown → row
//! deleted → the container's networks), so start-up finds a change a
//! crash cut and settles it ([`ContainerService::settle_cut_changes`]).

use super::netconfig::{check_endpoint, NetworkMode};
use super::{ContainerError, ContainerRecord, ContainerService, Status};
use crate::events::Event;
use crate::network::{EndpointConfig, NetworkDriver, NetworkError, NetworkRecord};
use crate::store::EndpointInsert;

impl ContainerService {
    /// Connects a container to a network (Docker's checks and words).
    pub fn connect(
        &self,
        network: &str,
        container: &str,
        config: EndpointConfig,
    ) -> Result<(), ContainerError> {
        let network = self.networks.get(network)?;
        let id = self.resolve(container)?.id;
        let _guard = self.locks.lock(&id);
        let record = self.resolve(&id)?;
        check_joinable(&record, &network)?;
        check_endpoint(&network, &config)?;
        if record.state.status == Status::Running {
            if self.endpoint_on(&record, &network)?.is_some() {
                return Err(NetworkError::Forbidden(format!(
                    "endpoint with name {} already exists in network {}",
                    record.name, network.name
                ))
                .into());
            }
            let mut endpoint = self.attach_one(&record, &network, &config)?;
            self.record_networks(&record, |n| {
                n.insert(network.name.clone(), config);
            })?;
            endpoint.ready = true;
            self.store.update_endpoint(&endpoint)?;
        } else if record.networks.contains_key(&network.name) {
            // Docker: connecting a stopped container twice changes nothing.
            return Ok(());
        } else {
            self.record_networks(&record, |n| {
                n.insert(network.name.clone(), config);
            })?;
        }
        self.publish_network("connect", &network, &record.id);
        Ok(())
    }

    /// Disconnects a container from a network.
    pub fn disconnect(&self, network: &str, container: &str) -> Result<(), ContainerError> {
        let network = self.networks.get(network)?;
        let id = self.resolve(container)?.id;
        let _guard = self.locks.lock(&id);
        let record = self.resolve(&id)?;
        if NetworkMode::parse(&record.host_config.network_mode) == NetworkMode::Host {
            return Err(ContainerError::InvalidConfig(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        if record.state.status == Status::Running {
            let Some(endpoint) = self.endpoint_on(&record, &network)? else {
                return Err(ContainerError::Start(format!(
                    "container {} is not connected to network {}",
                    record.id, network.name
                )));
            };
            self.store.update_endpoint(&crate::network::Endpoint {
                ready: false,
                ..endpoint.clone()
            })?;
            self.detach_one(&record, &endpoint);
        } else if !record.networks.contains_key(&network.name) {
            return Err(ContainerError::Start(format!(
                "container {} is not connected to the network {}",
                record.id, network.name
            )));
        }
        self.record_networks(&record, |n| {
            n.remove(&network.name);
        })?;
        self.publish_network("disconnect", &network, &record.id);
        Ok(())
    }

    /// Changes the networks a container is configured for.
    fn record_networks(
        &self,
        record: &ContainerRecord,
        change: impl FnOnce(&mut crate::network::EndpointsConfig),
    ) -> Result<(), ContainerError> {
        let mut networks = record.networks.clone();
        change(&mut networks);
        self.store.set_container_networks(&record.id, &networks)?;
        Ok(())
    }

    /// Start-up, for a container found running: endpoints a cut connect
    /// or disconnect left not ready are torn down and dropped from its
    /// networks, and bridge networks it lists without an endpoint (a
    /// disconnect cut after its row went) are dropped too. Returns how
    /// many changes were settled.
    pub(super) fn settle_cut_changes(&self, record: &ContainerRecord) -> usize {
        let Ok(endpoints) = self.store.endpoints_of_container(&record.id) else {
            return 0;
        };
        let mut dropped = Vec::new();
        for e in endpoints.iter().filter(|e| !e.ready) {
            tracing::warn!(container = %record.id, network = %e.network_name, "settling a cut connect or disconnect");
            self.detach_one(record, e);
            dropped.push(e.network_name.clone());
        }
        let set_up: Vec<&str> = endpoints
            .iter()
            .filter(|e| e.ready)
            .map(|e| e.network_name.as_str())
            .collect();
        for name in record.networks.keys() {
            let bridge = self
                .networks
                .get(name)
                .is_ok_and(|n| n.driver == NetworkDriver::Bridge);
            if bridge && !set_up.contains(&name.as_str()) && !dropped.contains(name) {
                dropped.push(name.clone());
            }
        }
        if !dropped.is_empty() {
            let _ = self.record_networks(record, |n| n.retain(|k, _| !dropped.contains(k)));
        }
        dropped.len()
    }

    fn endpoint_on(
        &self,
        record: &ContainerRecord,
        network: &NetworkRecord,
    ) -> Result<Option<crate::network::Endpoint>, ContainerError> {
        Ok(self
            .store
            .endpoints_of_container(&record.id)?
            .into_iter()
            .find(|e| e.network_id == network.id))
    }

    /// Leases and sets up one more endpoint in a running container's
    /// namespace, on its next free interface (`ethN`); returns it (not
    /// ready yet).
    fn attach_one(
        &self,
        record: &ContainerRecord,
        network: &NetworkRecord,
        config: &EndpointConfig,
    ) -> Result<crate::network::Endpoint, ContainerError> {
        let runtime = self.networks.runtime()?;
        self.networks
            .teardowns()
            .wait_idle(crate::network::TEARDOWN_WAIT);
        let endpoint = {
            let _held = self.attach_lock.lock();
            let network = &self.networks.ensure_anchor(network)?;
            let used: Vec<String> = self
                .store
                .endpoints_of_container(&record.id)?
                .into_iter()
                .map(|e| e.interface)
                .collect();
            let interface = (0..)
                .map(|n| format!("eth{n}"))
                .find(|name| !used.contains(name))
                .expect("an unused interface name");
            let mut endpoint = self.new_endpoint(record, network, config, interface)?;
            endpoint.ready = false;
            match self
                .store
                .insert_endpoints(std::slice::from_ref(&endpoint))?
            {
                EndpointInsert::Inserted => endpoint,
                _ => return Err(NetworkError::Forbidden("Address already in use".into()).into()),
            }
        };
        let netns = self.netns_path(&record.id);
        if let Err(e) = runtime.netavark.setup(&netns, &endpoint.netavark) {
            let _ = runtime.netavark.teardown(&netns, &endpoint.netavark);
            let _ = self.store.delete_endpoint(&endpoint.endpoint_id);
            return Err(ContainerError::Start(e.to_string()));
        }
        Ok(endpoint)
    }

    /// Tears one endpoint of a running container down and frees its lease.
    fn detach_one(&self, record: &ContainerRecord, endpoint: &crate::network::Endpoint) {
        let netns = self.netns_path(&record.id);
        let Ok(runtime) = self.networks.runtime() else {
            return;
        };
        if let Err(e) = runtime.netavark.teardown(&netns, &endpoint.netavark) {
            tracing::warn!(container = %record.id, error = %e, "network teardown reported problems");
        }
        if let Err(e) = self.store.delete_endpoint(&endpoint.endpoint_id) {
            tracing::error!(container = %record.id, error = %e, "endpoint row not removed");
        }
    }

    /// Docker's `network connect|disconnect` event.
    fn publish_network(&self, action: &str, network: &NetworkRecord, container: &str) {
        let attributes = [
            ("container", container),
            ("name", network.name.as_str()),
            ("type", network.driver.as_str()),
        ];
        self.events
            .publish(Event::now("network", action, &network.id, &attributes));
    }
}

/// Which containers may join which networks (Docker's 400s).
fn check_joinable(record: &ContainerRecord, network: &NetworkRecord) -> Result<(), ContainerError> {
    let mode = NetworkMode::parse(&record.host_config.network_mode);
    let refuse = |m: &str| Err(ContainerError::InvalidConfig(m.into()));
    match (&mode, network.driver) {
        (NetworkMode::Container(_) | NetworkMode::Host, _) => refuse(
            "container sharing network namespace with another container or host cannot be connected to any other network",
        ),
        (_, NetworkDriver::Host) => {
            refuse("container cannot be disconnected from host network or connected to host network")
        }
        (NetworkMode::None, _) | (_, NetworkDriver::Null) => refuse(
            "container cannot be connected to multiple networks with one of the networks in private (none) mode",
        ),
        _ => Ok(()),
    }
}
