//! Backup repository rows (the record, what is not secret, as JSON; the
//! sealed secrets as an opaque blob the store never reads) and backup
//! schedule rows (one per volume, as JSON).

use rusqlite::{params, OptionalExtension};

use super::containers::{corrupt, is_unique_violation};
use super::{Store, StoreError};
use crate::backup::{RepoRecord, Schedule};

impl Store {
    /// Inserts a repository. Returns false, changing nothing, when its
    /// name is taken.
    pub fn insert_backup_repo(&self, repo: &RepoRecord, sealed: &[u8]) -> Result<bool, StoreError> {
        let record = serde_json::to_string(repo).map_err(|e| corrupt(&repo.name, e))?;
        let inserted = self.conn().execute(
            "INSERT INTO backup_repos (name, record, sealed) VALUES (?1, ?2, ?3)",
            params![repo.name, record, sealed],
        );
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e, "backup_repos.name") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// One repository's record and sealed secrets.
    pub fn backup_repo(&self, name: &str) -> Result<Option<(RepoRecord, Vec<u8>)>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT record, sealed FROM backup_repos WHERE name = ?1",
                params![name],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()?;
        row.map(|(record, sealed)| {
            let repo = serde_json::from_str(&record).map_err(|e| corrupt(name, e))?;
            Ok((repo, sealed))
        })
        .transpose()
    }

    /// Every repository's record, by name.
    pub fn list_backup_repos(&self) -> Result<Vec<RepoRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, record FROM backup_repos ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|row| {
            let (name, record) = row?;
            serde_json::from_str(&record).map_err(|e| corrupt(&name, e))
        })
        .collect()
    }

    /// Deletes a repository's row. Returns whether it existed.
    pub fn delete_backup_repo(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM backup_repos WHERE name = ?1", params![name])?
            > 0)
    }

    /// Sets volume `schedule.volume`'s backup schedule (replacing one).
    pub fn put_backup_schedule(&self, schedule: &Schedule) -> Result<(), StoreError> {
        let record = serde_json::to_string(schedule).map_err(|e| corrupt(&schedule.volume, e))?;
        self.conn().execute(
            "INSERT INTO backup_schedules (volume, record) VALUES (?1, ?2) \
             ON CONFLICT(volume) DO UPDATE SET record = excluded.record",
            params![schedule.volume, record],
        )?;
        Ok(())
    }

    /// Every backup schedule, by volume.
    pub fn backup_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT volume, record FROM backup_schedules ORDER BY volume")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|row| {
            let (volume, record) = row?;
            serde_json::from_str(&record).map_err(|e| corrupt(&volume, e))
        })
        .collect()
    }

    /// Deletes a volume's backup schedule. Returns whether it had one.
    pub fn delete_backup_schedule(&self, volume: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM backup_schedules WHERE volume = ?1",
            params![volume],
        )? > 0)
    }
}
