//! Tombstones of removes whose storage went to a trash: the row's delete
//! and its tombstone are one commit, so a remove costs one durable write.
//!
//! The move of a volume's folder into its driver's trash is not synced
//! before that commit. A power cut could undo the move after the commit
//! and bring the folder back under the volume's name, with no row; the
//! tombstone tells start-up that this folder is a committed remove to
//! finish, not a volume to adopt. Tombstones go once the moves they cover
//! are durable (`Trash::settle`), in the background or at start-up.

use rusqlite::params;

use super::{Store, StoreError};

/// A committed remove whose storage was moved aside under `uid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub uid: String,
    pub name: String,
    pub driver: String,
}

impl Store {
    /// Deletes the rows of removes whose storage is in the trash, leaving
    /// a tombstone for each, in one transaction through the group commit:
    /// all or none. Refs and mounts must be gone. Returns how many rows
    /// were deleted.
    pub fn delete_retired(&self, removed: &[Tombstone]) -> Result<usize, StoreError> {
        let owned = removed.to_vec();
        let n = self.writer.write(move |conn| {
            let mut delete = conn.prepare_cached("DELETE FROM volumes WHERE name = ?1")?;
            let mut bury = conn.prepare_cached(
                "INSERT OR REPLACE INTO volume_tombstones (uid, name, driver) VALUES (?1, ?2, ?3)",
            )?;
            let mut deleted = 0;
            for t in &owned {
                deleted += delete.execute(params![t.name])?;
                bury.execute(params![t.uid, t.name, t.driver])?;
            }
            Ok(deleted)
        })?;
        let names: Vec<String> = removed.iter().map(|t| t.name.clone()).collect();
        self.volumes.remove_all(&names);
        Ok(n)
    }

    /// Every tombstone, oldest first.
    pub fn tombstones(&self) -> Result<Vec<Tombstone>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT uid, name, driver FROM volume_tombstones ORDER BY rowid")?;
        let rows = stmt.query_map([], |r| {
            Ok(Tombstone {
                uid: r.get(0)?,
                name: r.get(1)?,
                driver: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Drops the tombstones of `uids` (their moves are durable). Returns
    /// how many there were.
    pub fn forget_tombstones(&self, uids: &[String]) -> Result<usize, StoreError> {
        if uids.is_empty() {
            return Ok(0);
        }
        let owned = uids.to_vec();
        self.writer.write(move |conn| {
            let mut stmt = conn.prepare_cached("DELETE FROM volume_tombstones WHERE uid = ?1")?;
            let mut n = 0;
            for uid in &owned {
                n += stmt.execute(params![uid])?;
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::volumes::tests::record;

    fn tombstone(name: &str) -> Tombstone {
        Tombstone {
            uid: format!("uid-{name}"),
            name: name.into(),
            driver: "local".into(),
        }
    }

    #[test]
    fn a_retired_delete_leaves_a_tombstone_until_forgotten() {
        let store = Store::open_in_memory().unwrap();
        store.insert_volume(&record("a")).unwrap();
        store.insert_volume(&record("b")).unwrap();
        let removed = [tombstone("a"), tombstone("b")];
        assert_eq!(store.delete_retired(&removed).unwrap(), 2);
        assert!(store.get_volume("a").unwrap().is_none());
        assert_eq!(store.tombstones().unwrap(), removed);
        assert_eq!(store.forget_tombstones(&["uid-a".into()]).unwrap(), 1);
        assert_eq!(store.tombstones().unwrap(), [tombstone("b")]);
        assert_eq!(store.forget_tombstones(&["uid-a".into()]).unwrap(), 0);
        assert_eq!(store.forget_tombstones(&[]).unwrap(), 0);
    }

    #[test]
    fn a_held_volume_is_neither_deleted_nor_buried() {
        let store = Store::open_in_memory().unwrap();
        store.insert_volume(&record("a")).unwrap();
        store.insert_volume(&record("b")).unwrap();
        store.add_ref("b", "c1").unwrap();
        assert!(store
            .delete_retired(&[tombstone("a"), tombstone("b")])
            .is_err());
        assert!(store.get_volume("a").unwrap().is_some());
        assert!(store.tombstones().unwrap().is_empty());
    }
}
