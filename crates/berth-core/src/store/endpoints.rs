//! Endpoint rows: a container's set-up networks with their address
//! leases. An address is unique per network by the database's own
//! constraint, so two starts can never be handed the same one.

use rusqlite::params;

use super::containers::{corrupt, is_unique_violation};
use super::{Store, StoreError};
use crate::network::Endpoint;

/// What inserting endpoints can run into besides the store failing.
#[derive(Debug, PartialEq, Eq)]
pub enum EndpointInsert {
    Inserted,
    /// An address of one of them is leased already.
    AddressTaken,
    /// The container already has an endpoint on one of the networks.
    AlreadyAttached,
}

impl Store {
    /// Inserts the endpoints in one transaction: all or none.
    pub fn insert_endpoints(&self, endpoints: &[Endpoint]) -> Result<EndpointInsert, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for e in endpoints {
            let record = serde_json::to_string(e).map_err(|err| corrupt(&e.endpoint_id, err))?;
            let inserted = tx.execute(
                "INSERT INTO endpoints (container_id, network_id, endpoint_id, ipv4, ipv6, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    e.container_id,
                    e.network_id,
                    e.endpoint_id,
                    e.ipv4,
                    e.ipv6,
                    record
                ],
            );
            match inserted {
                Ok(_) => {}
                Err(err)
                    if is_unique_violation(&err, "endpoints.ipv4")
                        || is_unique_violation(&err, "endpoints.ipv6") =>
                {
                    return Ok(EndpointInsert::AddressTaken)
                }
                Err(err) if is_unique_violation(&err, "endpoints.network_id") => {
                    return Ok(EndpointInsert::AlreadyAttached)
                }
                Err(err) => return Err(err.into()),
            }
        }
        tx.commit()?;
        Ok(EndpointInsert::Inserted)
    }

    /// Replaces an endpoint's record (its ports or MAC once known).
    pub fn update_endpoint(&self, e: &Endpoint) -> Result<bool, StoreError> {
        let record = serde_json::to_string(e).map_err(|err| corrupt(&e.endpoint_id, err))?;
        Ok(self.conn().execute(
            "UPDATE endpoints SET record = ?2 WHERE endpoint_id = ?1",
            params![e.endpoint_id, record],
        )? > 0)
    }

    /// Every endpoint, in the order they were made.
    pub fn list_endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        self.endpoints_where("1 = 1", "")
    }

    /// A container's endpoints, in the order they were made.
    pub fn endpoints_of_container(&self, container_id: &str) -> Result<Vec<Endpoint>, StoreError> {
        self.endpoints_where("container_id = ?1", container_id)
    }

    /// A network's endpoints.
    pub fn endpoints_of_network(&self, network_id: &str) -> Result<Vec<Endpoint>, StoreError> {
        self.endpoints_where("network_id = ?1", network_id)
    }

    fn endpoints_where(&self, condition: &str, key: &str) -> Result<Vec<Endpoint>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT endpoint_id, record FROM endpoints WHERE {condition} ORDER BY rowid"
        ))?;
        let read = |r: &rusqlite::Row<'_>| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?));
        let rows = if condition.contains("?1") {
            stmt.query_map(params![key], read)?
                .collect::<Result<Vec<_>, _>>()?
        } else {
            stmt.query_map([], read)?.collect::<Result<Vec<_>, _>>()?
        };
        rows.into_iter()
            .map(|(id, record)| serde_json::from_str(&record).map_err(|e| corrupt(&id, e)))
            .collect()
    }

    /// Deletes one endpoint (its leases go with it). Returns whether it
    /// existed.
    pub fn delete_endpoint(&self, endpoint_id: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM endpoints WHERE endpoint_id = ?1",
            params![endpoint_id],
        )? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{CreateNetwork, NetworkService};
    use std::sync::Arc;

    fn endpoint(container: &str, network: &str, ip: &str, id: &str) -> Endpoint {
        Endpoint {
            container_id: container.into(),
            network_id: network.into(),
            endpoint_id: id.into(),
            ipv4: Some(ip.into()),
            ..Default::default()
        }
    }

    #[test]
    fn leases_are_unique_per_network_and_rows_refuse_orphans() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let networks = NetworkService::new(store.clone());
        let net = networks
            .create(CreateNetwork {
                name: "n".into(),
                ..Default::default()
            })
            .unwrap();
        store.conn().execute_batch(
            "INSERT INTO images VALUES ('i', x'', 0, 0);
             INSERT INTO containers (id, name, image_id, created, config, host_config, path, args, mounts, state, status)
             VALUES ('c1', 'c1', 'i', '', '{}', '{}', '', '[]', '[]', '{}', 'created'),
                    ('c2', 'c2', 'i', '', '{}', '{}', '', '[]', '[]', '{}', 'created');",
        ).unwrap();
        let a = endpoint("c1", &net.id, "10.0.0.2", "e1");
        assert_eq!(
            store.insert_endpoints(std::slice::from_ref(&a)).unwrap(),
            EndpointInsert::Inserted
        );
        let same_ip = endpoint("c2", &net.id, "10.0.0.2", "e2");
        assert_eq!(
            store.insert_endpoints(&[same_ip]).unwrap(),
            EndpointInsert::AddressTaken
        );
        let again = endpoint("c1", &net.id, "10.0.0.3", "e3");
        assert_eq!(
            store.insert_endpoints(&[again]).unwrap(),
            EndpointInsert::AlreadyAttached
        );
        assert!(
            store.delete_network(&net.id).is_err(),
            "an endpoint holds the network"
        );
        assert!(
            store.delete_container("c1").is_err(),
            "an endpoint holds the container"
        );
        assert_eq!(store.endpoints_of_network(&net.id).unwrap(), vec![a]);
        assert!(store.delete_endpoint("e1").unwrap());
        assert!(store.endpoints_of_container("c1").unwrap().is_empty());
        assert!(store.delete_network(&net.id).unwrap());
    }
}
