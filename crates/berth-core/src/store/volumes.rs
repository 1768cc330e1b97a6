//! Volume rows and everything attached to them: labels, driver options,
//! holders (container references) and active mount ids.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};

/// Where a volume is in its life. Rows in `Creating` or `Removing` were left
/// by an operation that did not finish; start-up reconciliation settles them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeState {
    Creating,
    Ready,
    Removing,
}

impl VolumeState {
    fn as_str(self) -> &'static str {
        match self {
            VolumeState::Creating => "creating",
            VolumeState::Ready => "ready",
            VolumeState::Removing => "removing",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "creating" => Some(VolumeState::Creating),
            "ready" => Some(VolumeState::Ready),
            "removing" => Some(VolumeState::Removing),
            _ => None,
        }
    }
}

/// One persisted volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    pub state: VolumeState,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl Store {
    /// Inserts a new volume row with its labels and options in one
    /// transaction. Fails (constraint error) if the name exists.
    pub fn insert_volume(&self, record: &VolumeRecord) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO volumes (name, driver, created_at, state) VALUES (?1, ?2, ?3, ?4)",
            params![
                record.name,
                record.driver,
                record.created_at,
                record.state.as_str()
            ],
        )?;
        insert_pairs(&tx, "volume_labels", &record.name, &record.labels)?;
        insert_pairs(&tx, "volume_options", &record.name, &record.options)?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces `volume`'s labels.
    pub fn set_volume_labels(
        &self,
        volume: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM volume_labels WHERE volume = ?1",
            params![volume],
        )?;
        for (key, value) in labels {
            tx.execute(
                "INSERT INTO volume_labels (volume, key, value) VALUES (?1, ?2, ?3)",
                params![volume, key, value],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Moves a volume to `state`. Returns whether a row changed.
    pub fn set_volume_state(&self, name: &str, state: VolumeState) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE volumes SET state = ?2 WHERE name = ?1 AND state != ?2",
            params![name, state.as_str()],
        )?;
        Ok(n > 0)
    }

    /// Deletes a volume row with its labels and options. Refs and mounts
    /// must already be gone (the foreign keys refuse otherwise). Returns
    /// whether a row was deleted.
    pub fn delete_volume(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM volumes WHERE name = ?1", params![name])?;
        Ok(n > 0)
    }

    /// Like [`Store::delete_volume`], but first drops the volume's mount ids
    /// (a forced purge after a driver failure); refs still block it.
    pub fn purge_volume(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM volume_mounts WHERE volume = ?1", params![name])?;
        let n = tx.execute("DELETE FROM volumes WHERE name = ?1", params![name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// One volume, in whatever state it is.
    pub fn get_volume(&self, name: &str) -> Result<Option<VolumeRecord>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT name, driver, created_at, state FROM volumes WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?)),
            )
            .optional()?;
        let Some((name, driver, created_at, state)) = row else {
            return Ok(None);
        };
        let mut record = make_record(name, driver, created_at, &state)?;
        record.labels = read_pairs(&conn, "volume_labels", Some(&record.name))?
            .remove(&record.name)
            .unwrap_or_default();
        record.options = read_pairs(&conn, "volume_options", Some(&record.name))?
            .remove(&record.name)
            .unwrap_or_default();
        Ok(Some(record))
    }

    /// Every volume row, in all states, ordered by name. Three queries in
    /// all, whatever the count.
    pub fn list_volumes(&self) -> Result<Vec<VolumeRecord>, StoreError> {
        let conn = self.conn();
        let mut labels = read_pairs(&conn, "volume_labels", None)?;
        let mut options = read_pairs(&conn, "volume_options", None)?;
        let mut stmt =
            conn.prepare("SELECT name, driver, created_at, state FROM volumes ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, driver, created_at, state) = row?;
            let mut record = make_record(name, driver, created_at, &state)?;
            record.labels = labels.remove(&record.name).unwrap_or_default();
            record.options = options.remove(&record.name).unwrap_or_default();
            out.push(record);
        }
        Ok(out)
    }

    /// Records that `holder` uses volume `name`. Returns whether it was new.
    pub fn add_ref(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        self.insert_link("volume_refs", "holder", name, holder)
    }

    /// Drops `holder`'s reference. Returns whether one existed.
    pub fn remove_ref(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        self.delete_link("volume_refs", "holder", name, holder)
    }

    /// Holders of volume `name`, sorted.
    pub fn refs(&self, name: &str) -> Result<Vec<String>, StoreError> {
        self.links("volume_refs", "holder", name)
    }

    /// Records an active driver mount. Returns whether it was new.
    pub fn add_mount(&self, name: &str, mount_id: &str) -> Result<bool, StoreError> {
        self.insert_link("volume_mounts", "mount_id", name, mount_id)
    }

    /// Drops an active driver mount. Returns whether it existed.
    pub fn remove_mount(&self, name: &str, mount_id: &str) -> Result<bool, StoreError> {
        self.delete_link("volume_mounts", "mount_id", name, mount_id)
    }

    /// Active mount ids of volume `name`, sorted.
    pub fn mounts(&self, name: &str) -> Result<Vec<String>, StoreError> {
        self.links("volume_mounts", "mount_id", name)
    }

    /// Every (volume, holder) reference.
    pub fn all_refs(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.all_links("volume_refs", "holder")
    }

    /// Every (volume, mount id) active mount.
    pub fn all_mounts(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.all_links("volume_mounts", "mount_id")
    }

    /// Sets (or replaces) one driver option of a volume (a resize's new size).
    pub fn set_volume_option(&self, name: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO volume_options (volume, key, value) VALUES (?1, ?2, ?3)",
            params![name, key, value],
        )?;
        Ok(())
    }

    /// Whether the volume has had its one copy-up decided.
    pub fn is_populated(&self, name: &str) -> Result<bool, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM volume_populated WHERE volume = ?1",
            params![name],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Records that the volume's copy-up is done. Returns whether it is new.
    pub fn mark_populated(&self, name: &str) -> Result<bool, StoreError> {
        let sql = "INSERT OR IGNORE INTO volume_populated (volume) VALUES (?1)";
        Ok(self.conn().execute(sql, params![name])? > 0)
    }

    /// Number of holders plus active mounts per volume (absent = 0).
    pub fn use_counts(&self) -> Result<HashMap<String, i64>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            // A running container both holds and mounts its volumes under
            // its id: counted once (Docker counts containers).
            "SELECT volume, COUNT(*) FROM (SELECT volume, holder FROM volume_refs
             UNION SELECT volume, mount_id FROM volume_mounts) GROUP BY volume",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_link(
        &self,
        table: &str,
        col: &str,
        name: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!("INSERT OR IGNORE INTO {table} (volume, {col}) VALUES (?1, ?2)");
        Ok(self.conn().execute(&sql, params![name, value])? > 0)
    }

    fn delete_link(
        &self,
        table: &str,
        col: &str,
        name: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {table} WHERE volume = ?1 AND {col} = ?2");
        Ok(self.conn().execute(&sql, params![name, value])? > 0)
    }

    fn all_links(&self, table: &str, col: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let sql = format!("SELECT volume, {col} FROM {table} ORDER BY volume, {col}");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn links(&self, table: &str, col: &str, name: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let sql = format!("SELECT {col} FROM {table} WHERE volume = ?1 ORDER BY {col}");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params![name], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn make_record(
    name: String,
    driver: String,
    created_at: i64,
    state: &str,
) -> Result<VolumeRecord, StoreError> {
    let state = VolumeState::parse(state).ok_or_else(|| StoreError::CorruptRow {
        name: name.clone(),
        detail: format!("unknown state {state:?}"),
    })?;
    Ok(VolumeRecord {
        name,
        driver,
        created_at,
        state,
        labels: BTreeMap::new(),
        options: BTreeMap::new(),
    })
}

type PairsByVolume = HashMap<String, BTreeMap<String, String>>;

fn read_pairs(
    conn: &Connection,
    table: &str,
    only: Option<&str>,
) -> Result<PairsByVolume, StoreError> {
    let sql = match only {
        Some(_) => format!("SELECT volume, key, value FROM {table} WHERE volume = ?1"),
        None => format!("SELECT volume, key, value FROM {table}"),
    };
    let mut stmt = conn.prepare(&sql)?;
    let map_row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
    let rows: Vec<(String, String, String)> = match only {
        Some(name) => stmt
            .query_map(params![name], map_row)?
            .collect::<Result<_, _>>()?,
        None => stmt.query_map([], map_row)?.collect::<Result<_, _>>()?,
    };
    let mut out = PairsByVolume::new();
    for (volume, key, value) in rows {
        out.entry(volume).or_default().insert(key, value);
    }
    Ok(out)
}

fn insert_pairs(
    conn: &Connection,
    table: &str,
    name: &str,
    pairs: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    let sql = format!("INSERT INTO {table} (volume, key, value) VALUES (?1, ?2, ?3)");
    let mut stmt = conn.prepare(&sql)?;
    for (k, v) in pairs {
        stmt.execute(params![name, k, v])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> VolumeRecord {
        VolumeRecord {
            name: name.into(),
            driver: "local".into(),
            created_at: 1_700_000_000,
            state: VolumeState::Ready,
            labels: [("a".to_string(), "1".to_string())].into(),
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn round_trip_and_list() {
        let store = Store::open_in_memory().unwrap();
        store.insert_volume(&record("v1")).unwrap();
        store.insert_volume(&record("v2")).unwrap();
        assert_eq!(store.get_volume("v1").unwrap().unwrap(), record("v1"));
        let names: Vec<_> = store
            .list_volumes()
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["v1", "v2"]);
        assert!(store.insert_volume(&record("v1")).is_err());
    }

    #[test]
    fn held_volume_cannot_be_deleted() {
        let store = Store::open_in_memory().unwrap();
        store.insert_volume(&record("v")).unwrap();
        assert!(store.add_ref("v", "c1").unwrap());
        assert!(!store.add_ref("v", "c1").unwrap());
        assert!(store.delete_volume("v").is_err());
        assert_eq!(store.use_counts().unwrap()["v"], 1);
        assert!(store.remove_ref("v", "c1").unwrap());
        assert!(store.delete_volume("v").unwrap());
        assert!(!store.delete_volume("v").unwrap());
    }
}
