//! Container rows: configuration and state as JSON columns (their shape is
//! Docker's and grows with the API), with status and name as columns for
//! lookups.

use rusqlite::{params, OptionalExtension, Row};

use super::{Store, StoreError};
use crate::container::{ContainerRecord, ContainerState};

const COLUMNS: &str =
    "id, name, image_id, created, config, host_config, path, args, mounts, state, networks";

impl Store {
    /// Inserts a new container. Returns false, changing nothing, when the
    /// name is taken (the name's uniqueness is the database's: checking
    /// first and inserting later would race); fails if the ID is taken.
    pub fn insert_container(&self, c: &ContainerRecord) -> Result<bool, StoreError> {
        let json = |v: serde_json::Result<String>| v.map_err(|e| corrupt(&c.id, e));
        let inserted = self.conn().execute(
            &format!("INSERT INTO containers ({COLUMNS}, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
            params![
                c.id,
                c.name,
                c.image_id,
                c.created,
                json(serde_json::to_string(&c.config))?,
                json(serde_json::to_string(&c.host_config))?,
                c.path,
                json(serde_json::to_string(&c.args))?,
                json(serde_json::to_string(&c.mounts))?,
                json(serde_json::to_string(&c.state))?,
                json(serde_json::to_string(&c.networks))?,
                c.state.status.as_str(),
            ],
        );
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e, "containers.name") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a container's state. Returns whether the row exists.
    pub fn set_container_state(
        &self,
        id: &str,
        state: &ContainerState,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(state).map_err(|e| corrupt(id, e))?;
        Ok(self.conn().execute(
            "UPDATE containers SET state = ?2, status = ?3 WHERE id = ?1",
            params![id, json, state.status.as_str()],
        )? > 0)
    }

    /// Replaces a container's `HostConfig` (`docker update`). Returns
    /// whether the row exists.
    pub fn set_container_host_config(
        &self,
        id: &str,
        host: &crate::container::HostConfig,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(host).map_err(|e| corrupt(id, e))?;
        Ok(self.conn().execute(
            "UPDATE containers SET host_config = ?2 WHERE id = ?1",
            params![id, json],
        )? > 0)
    }

    /// Replaces the networks a container is configured for. Returns
    /// whether the row exists.
    pub fn set_container_networks(
        &self,
        id: &str,
        networks: &crate::network::EndpointsConfig,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(networks).map_err(|e| corrupt(id, e))?;
        Ok(self.conn().execute(
            "UPDATE containers SET networks = ?2 WHERE id = ?1",
            params![id, json],
        )? > 0)
    }

    /// Deletes a container row. Returns whether it existed.
    pub fn delete_container(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM containers WHERE id = ?1", params![id])?
            > 0)
    }

    /// Renames a container. Fails if the name is taken.
    pub fn rename_container(&self, id: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE containers SET name = ?2 WHERE id = ?1",
            params![id, name],
        )? > 0)
    }

    /// The container with exactly this ID.
    pub fn get_container(&self, id: &str) -> Result<Option<ContainerRecord>, StoreError> {
        self.query_one(
            &format!("SELECT {COLUMNS} FROM containers WHERE id = ?1"),
            id,
        )
    }

    /// The container with this name.
    pub fn container_by_name(&self, name: &str) -> Result<Option<ContainerRecord>, StoreError> {
        self.query_one(
            &format!("SELECT {COLUMNS} FROM containers WHERE name = ?1"),
            name,
        )
    }

    /// IDs starting with `prefix`.
    pub fn container_ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id FROM containers WHERE substr(id, 1, length(?1)) = ?1")?;
        let rows = stmt.query_map(params![prefix], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every container, newest first.
    pub fn list_containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM containers ORDER BY created DESC"
        ))?;
        let rows = stmt.query_map([], raw_row)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(decode))
            .collect()
    }

    /// IDs of containers created from `image_id`.
    pub fn containers_using_image(&self, image_id: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM containers WHERE image_id = ?1")?;
        let rows = stmt.query_map(params![image_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn query_one(&self, sql: &str, key: &str) -> Result<Option<ContainerRecord>, StoreError> {
        let raw = self
            .conn()
            .query_row(sql, params![key], raw_row)
            .optional()?;
        raw.map(decode).transpose()
    }
}

type RawRow = [String; 11];

fn raw_row(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok([
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ])
}

fn decode(raw: RawRow) -> Result<ContainerRecord, StoreError> {
    let [id, name, image_id, created, config, host_config, path, args, mounts, state, networks] =
        raw;
    let bad = |e: serde_json::Error| corrupt(&id, e);
    Ok(ContainerRecord {
        config: serde_json::from_str(&config).map_err(bad)?,
        host_config: serde_json::from_str(&host_config).map_err(bad)?,
        args: serde_json::from_str(&args).map_err(bad)?,
        mounts: serde_json::from_str(&mounts).map_err(bad)?,
        state: serde_json::from_str(&state).map_err(bad)?,
        networks: serde_json::from_str(&networks).map_err(bad)?,
        id,
        name,
        image_id,
        created,
        path,
    })
}

/// Whether `e` is a UNIQUE constraint failure on `column` (`table.col`).
pub(super) fn is_unique_violation(e: &rusqlite::Error, column: &str) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, Some(message)) => {
            let unique = [
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE,
                rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY,
            ];
            unique.contains(&f.extended_code) && message.ends_with(column)
        }
        _ => false,
    }
}

pub(super) fn corrupt(id: &str, e: serde_json::Error) -> StoreError {
    StoreError::CorruptRow {
        name: id.to_string(),
        detail: e.to_string(),
    }
}
