//! What inspect and list show of containers' networks: endpoints, the
//! IDs of the networks they are configured for, the namespace file.

use std::collections::{BTreeMap, HashMap};

use super::{ContainerError, ContainerRecord, ContainerService};
use crate::network::Endpoint;

/// What inspect and list show of a container's networks.
#[derive(Debug, Clone, Default)]
pub struct NetworkView {
    /// Its endpoints while set up.
    pub endpoints: Vec<Endpoint>,
    /// The IDs of the networks it is configured for, by name.
    pub network_ids: BTreeMap<String, String>,
    /// Its namespace file while it has one (`SandboxKey`).
    pub sandbox_key: String,
}

impl NetworkView {
    /// The endpoint on the network called `name`.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        let id = self.network_ids.get(name)?;
        self.endpoints.iter().find(|e| &e.network_id == id)
    }
}

impl ContainerService {
    /// The network views of `records`, read with one query of each table.
    pub fn network_views(
        &self,
        records: &[ContainerRecord],
    ) -> Result<HashMap<String, NetworkView>, ContainerError> {
        let ids: BTreeMap<String, String> = self
            .networks
            .all()?
            .into_iter()
            .map(|n| (n.name, n.id))
            .collect();
        let mut endpoints: HashMap<String, Vec<Endpoint>> = Default::default();
        for e in self.store.list_endpoints()? {
            endpoints.entry(e.container_id.clone()).or_default().push(e);
        }
        Ok(records
            .iter()
            .map(|r| {
                let own = endpoints.remove(&r.id).unwrap_or_default();
                let netns = self.netns_path(&r.id);
                let view = NetworkView {
                    sandbox_key: if own.is_empty() {
                        String::new()
                    } else {
                        netns.display().to_string()
                    },
                    endpoints: own,
                    network_ids: r
                        .networks
                        .keys()
                        .filter_map(|n| Some((n.clone(), ids.get(n)?.clone())))
                        .collect(),
                };
                (r.id.clone(), view)
            })
            .collect())
    }
}
