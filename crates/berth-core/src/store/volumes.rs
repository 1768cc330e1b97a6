//! Volume rows and everything attached to them: labels, driver options,
//! holders (container references) and active mount ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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
    /// Unique for the life of this one volume, never reused (names are):
    /// storage a remove moved aside is named by it.
    pub uid: String,
    pub driver: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    pub state: VolumeState,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl VolumeRecord {
    /// A fresh uid: 128 random bits in hex.
    pub fn new_uid() -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }
}

impl Store {
    /// Inserts a new volume row with its labels and options in one
    /// transaction, through the group commit. Fails (constraint error) if
    /// the name exists.
    pub fn insert_volume(&self, record: &VolumeRecord) -> Result<(), StoreError> {
        self.insert_volume_as(record, false)
    }

    /// [`Store::insert_volume`], the row hidden from readers until
    /// [`Store::show_volume`] (its storage is not made yet).
    pub fn insert_volume_hidden(&self, record: &VolumeRecord) -> Result<(), StoreError> {
        self.insert_volume_as(record, true)
    }

    fn insert_volume_as(&self, record: &VolumeRecord, hidden: bool) -> Result<(), StoreError> {
        let row = record.clone();
        self.writer.write(move |conn| insert_row(conn, &row))?;
        self.volumes.put(record.clone(), hidden);
        Ok(())
    }

    /// Hides `name` from readers while its storage is out of place (the
    /// caller holds the name's lock); the database is not touched.
    pub fn hide_volume(&self, name: &str) {
        self.volumes.set_hidden(name, true);
    }

    /// Shows a hidden row to readers again.
    pub fn show_volume(&self, name: &str) {
        self.volumes.set_hidden(name, false);
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
        insert_pairs(&tx, "volume_labels", volume, labels)?;
        tx.commit()?;
        self.volumes.update(volume, |r| r.labels = labels.clone());
        Ok(())
    }

    /// Moves a volume to `state`. Returns whether a row changed.
    pub fn set_volume_state(&self, name: &str, state: VolumeState) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE volumes SET state = ?2 WHERE name = ?1 AND state != ?2",
            params![name, state.as_str()],
        )?;
        self.volumes.update(name, |r| r.state = state);
        Ok(n > 0)
    }

    /// Deletes a volume row with its labels and options, through the group
    /// commit. Refs and mounts must already be gone (the foreign keys
    /// refuse otherwise). Returns whether a row was deleted.
    pub fn delete_volume(&self, name: &str) -> Result<bool, StoreError> {
        let owned = name.to_string();
        let n = self.writer.write(move |conn| {
            Ok(conn.execute("DELETE FROM volumes WHERE name = ?1", params![owned])?)
        })?;
        self.volumes.remove(name);
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
        self.volumes.remove(name);
        Ok(n > 0)
    }

    /// One volume, in whatever state it is, hidden or not (from memory: no
    /// query).
    pub fn get_volume(&self, name: &str) -> Result<Option<VolumeRecord>, StoreError> {
        Ok(self.volumes.get(name).map(|r| r.as_ref().clone()))
    }

    /// One volume as readers see it: `None` while it is hidden.
    pub fn visible_volume(&self, name: &str) -> Option<VolumeRecord> {
        self.volumes.get_visible(name).map(|r| r.as_ref().clone())
    }

    /// The driver of volume `name` as readers see it (no copy of the row).
    pub fn visible_driver(&self, name: &str) -> Option<String> {
        self.volumes.get_visible(name).map(|r| r.driver.clone())
    }

    /// Every volume row, in all states, ordered by name (copies).
    pub fn list_volumes(&self) -> Result<Vec<VolumeRecord>, StoreError> {
        Ok(self
            .volumes
            .all()
            .into_iter()
            .map(|r| r.as_ref().clone())
            .collect())
    }

    /// Every volume row readers may see (not hidden), ordered by name,
    /// shared with the index (no copy of names, labels or options).
    pub fn volumes(&self) -> Vec<Arc<VolumeRecord>> {
        self.volumes.visible()
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
        let (key, value) = (key.to_string(), value.to_string());
        self.volumes.update(name, |r| {
            r.options.insert(key, value);
        });
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
        Ok(self
            .conn()
            .prepare_cached(&sql)?
            .execute(params![name, value])?
            > 0)
    }

    fn delete_link(
        &self,
        table: &str,
        col: &str,
        name: &str,
        value: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {table} WHERE volume = ?1 AND {col} = ?2");
        Ok(self
            .conn()
            .prepare_cached(&sql)?
            .execute(params![name, value])?
            > 0)
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
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![name], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Inserts one row with its labels and options (inside a transaction).
fn insert_row(conn: &Connection, record: &VolumeRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO volumes (name, uid, driver, created_at, state) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        record.name,
        record.uid,
        record.driver,
        record.created_at,
        record.state.as_str()
    ])?;
    insert_pairs(conn, "volume_labels", &record.name, &record.labels)?;
    insert_pairs(conn, "volume_options", &record.name, &record.options)?;
    Ok(())
}

const ROW_COLUMNS: &str = "SELECT name, uid, driver, created_at, state FROM volumes";

type RawRow = (String, Option<String>, String, i64, String);

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

/// One volume row with its labels and options, read from the database.
pub(super) fn read_volume(
    conn: &Connection,
    name: &str,
) -> Result<Option<VolumeRecord>, StoreError> {
    let sql = format!("{ROW_COLUMNS} WHERE name = ?1");
    let Some(row) = conn.query_row(&sql, params![name], raw_row).optional()? else {
        return Ok(None);
    };
    let mut record = make_record(row)?;
    record.labels = read_pairs(conn, "volume_labels", Some(name))?
        .remove(name)
        .unwrap_or_default();
    record.options = read_pairs(conn, "volume_options", Some(name))?
        .remove(name)
        .unwrap_or_default();
    Ok(Some(record))
}

/// Every volume row, in all states, ordered by name: three queries in all,
/// whatever the count (the index is loaded from it at open).
pub(super) fn load_volumes(conn: &Connection) -> Result<Vec<VolumeRecord>, StoreError> {
    let mut labels = read_pairs(conn, "volume_labels", None)?;
    let mut options = read_pairs(conn, "volume_options", None)?;
    let mut stmt = conn.prepare(&format!("{ROW_COLUMNS} ORDER BY name"))?;
    let mut out = Vec::new();
    for row in stmt.query_map([], raw_row)? {
        let mut record = make_record(row?)?;
        record.labels = labels.remove(&record.name).unwrap_or_default();
        record.options = options.remove(&record.name).unwrap_or_default();
        out.push(record);
    }
    Ok(out)
}

fn make_record((name, uid, driver, created_at, state): RawRow) -> Result<VolumeRecord, StoreError> {
    let Some(uid) = uid else {
        return Err(StoreError::CorruptRow {
            name,
            detail: "no uid".into(),
        });
    };
    let state = VolumeState::parse(&state).ok_or_else(|| StoreError::CorruptRow {
        name: name.clone(),
        detail: format!("unknown state {state:?}"),
    })?;
    Ok(VolumeRecord {
        name,
        uid,
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
    let mut stmt = conn.prepare_cached(&sql)?;
    for (k, v) in pairs {
        stmt.execute(params![name, k, v])?;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A ready local volume's row with one label (store tests share it).
    pub(in crate::store) fn record(name: &str) -> VolumeRecord {
        VolumeRecord {
            name: name.into(),
            uid: format!("uid-{name}"),
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
