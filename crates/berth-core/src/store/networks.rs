//! Network rows: the record as JSON, with ID and name as columns (the
//! name's uniqueness is the database's).

use rusqlite::params;

use super::containers::{corrupt, is_unique_violation};
use super::{Store, StoreError};
use crate::network::NetworkRecord;

impl Store {
    /// Inserts a network. Returns false, changing nothing, when its name
    /// is taken.
    pub fn insert_network(&self, n: &NetworkRecord) -> Result<bool, StoreError> {
        let record = serde_json::to_string(n).map_err(|e| corrupt(&n.name, e))?;
        let inserted = self.conn().execute(
            "INSERT INTO networks (id, name, record) VALUES (?1, ?2, ?3)",
            params![n.id, n.name, record],
        );
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e, "networks.name") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a network's record (the daemon's default bridge settings).
    /// Returns whether the row exists.
    pub fn replace_network(&self, n: &NetworkRecord) -> Result<bool, StoreError> {
        let record = serde_json::to_string(n).map_err(|e| corrupt(&n.name, e))?;
        Ok(self.conn().execute(
            "UPDATE networks SET record = ?2 WHERE id = ?1",
            params![n.id, record],
        )? > 0)
    }

    /// Every network, in creation order.
    pub fn list_networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, record FROM networks ORDER BY rowid")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|row| {
            let (name, record) = row?;
            serde_json::from_str(&record).map_err(|e| corrupt(&name, e))
        })
        .collect()
    }

    /// Deletes a network row. Returns whether it existed.
    pub fn delete_network(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM networks WHERE id = ?1", params![id])?
            > 0)
    }
}

#[cfg(test)]
mod tests {
    use crate::network::{CreateNetwork, NetworkService};
    use crate::store::Store;
    use std::sync::Arc;

    #[test]
    fn networks_survive_a_reopen_and_names_stay_unique() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        let id = {
            let svc = NetworkService::new(Arc::new(Store::open(&path).unwrap()));
            assert_eq!(svc.ensure_predefined().unwrap(), 3);
            let req = CreateNetwork {
                name: "app".into(),
                ..Default::default()
            };
            let made = svc.create(req.clone()).unwrap();
            assert!(svc.create(req).is_err());
            made.id
        };
        let svc = NetworkService::new(Arc::new(Store::open(&path).unwrap()));
        assert_eq!(svc.ensure_predefined().unwrap(), 0);
        assert!(svc
            .configure_default_bridge(Some("bt0"), Some("10.214.3.1/24"))
            .unwrap());
        assert!(!svc
            .configure_default_bridge(Some("bt0"), Some("10.214.3.1/24"))
            .unwrap());
        let bridge = svc.get("bridge").unwrap();
        assert_eq!(bridge.subnets[0].block, "10.214.3.0/24");
        assert_eq!(bridge.subnets[0].gateway, "10.214.3.1");
        assert_eq!(bridge.options["com.docker.network.bridge.name"], "bt0");
        assert!(svc.configure_default_bridge(Some("a/b"), None).is_err());
        assert!(svc
            .configure_default_bridge(None, Some("10.214.3.0/24"))
            .is_err());
        assert!(svc
            .configure_default_bridge(None, Some("10.214.3.1"))
            .is_err());
        assert_eq!(svc.get("app").unwrap().id, id);
        assert_eq!(svc.all().unwrap().len(), 4);
    }
}
