//! The volume rename journal. A rename is three steps: a journal row,
//! the driver moving the storage, then one transaction that moves the row
//! (labels, options and the copy-up mark with it) to the new name and ends
//! the journal. Start-up reads the journal to finish or undo a rename a
//! crash cut.

use rusqlite::params;

use super::{Store, StoreError};

impl Store {
    /// Records that `volume` is being renamed to `target`. Fails (constraint
    /// error) if either name is already part of a rename.
    pub fn begin_rename(&self, volume: &str, target: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO volume_renames (volume, target) VALUES (?1, ?2)",
            params![volume, target],
        )?;
        Ok(())
    }

    /// Ends a rename that did not happen. Returns whether one was recorded.
    pub fn abort_rename(&self, volume: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM volume_renames WHERE volume = ?1",
            params![volume],
        )?;
        Ok(n > 0)
    }

    /// Moves `volume`'s row and what hangs off it to `target` and ends the
    /// journal, in one transaction. Labels whose key is in `drop_labels` are
    /// not carried over. Refs and mounts must be gone.
    pub fn finish_rename(
        &self,
        volume: &str,
        target: &str,
        drop_labels: &[&str],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // The uid is unique: the new row takes it once the old one is gone.
        let uid: String = tx.query_row(
            "SELECT uid FROM volumes WHERE name = ?1",
            params![volume],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO volumes (name, driver, created_at, state)
             SELECT ?2, driver, created_at, state FROM volumes WHERE name = ?1",
            params![volume, target],
        )?;
        for table in ["volume_labels", "volume_options"] {
            tx.execute(
                &format!(
                    "INSERT INTO {table} (volume, key, value)
                     SELECT ?2, key, value FROM {table} WHERE volume = ?1"
                ),
                params![volume, target],
            )?;
        }
        for key in drop_labels {
            tx.execute(
                "DELETE FROM volume_labels WHERE volume = ?1 AND key = ?2",
                params![target, key],
            )?;
        }
        tx.execute(
            "INSERT INTO volume_populated (volume) SELECT ?2 FROM volume_populated WHERE volume = ?1",
            params![volume, target],
        )?;
        // The journal row and the old children go with the old row (cascade).
        tx.execute("DELETE FROM volumes WHERE name = ?1", params![volume])?;
        tx.execute(
            "UPDATE volumes SET uid = ?2 WHERE name = ?1",
            params![target, uid],
        )?;
        // Read before the commit: nothing may fail after it, or a rename
        // that happened would be reported (and undone) as failed.
        let moved = super::volumes::read_volume(&tx, target)?;
        tx.commit()?;
        self.volumes.remove(volume);
        if let Some(record) = moved {
            self.volumes.put(record, false);
        }
        Ok(())
    }

    /// Renames cut short by a crash: `(volume, target)`.
    pub fn pending_renames(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT volume, target FROM volume_renames ORDER BY volume")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether `name` is the target of a rename in progress.
    pub fn is_rename_target(&self, name: &str) -> Result<bool, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM volume_renames WHERE target = ?1",
            params![name],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// The unfinished rename `name` takes part in, as the renamed volume or
    /// as the target: `(volume, target)`, or `None`.
    pub fn rename_involving(&self, name: &str) -> Result<Option<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT volume, target FROM volume_renames WHERE volume = ?1 OR target = ?1 LIMIT 1",
        )?;
        let mut rows = stmt.query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.next().transpose()?)
    }

    /// Whether `name` takes part in an unfinished rename (as the renamed
    /// volume or as the target).
    pub fn is_renaming(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.rename_involving(name)?.is_some())
    }
}
