//! Image rows: configs, their layers (bottom first), and tags.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};

/// One stored image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// `sha256:<hex>` of `config`.
    pub id: String,
    pub config: Vec<u8>,
    pub created_at: i64,
    /// Sum of its layers' sizes.
    pub size: i64,
    /// `(diff_id, size)` bottom first.
    pub layers: Vec<(String, i64)>,
    /// `repo:tag` references pointing at it, sorted.
    pub tags: Vec<String>,
    /// `repo@sha256:…` references (Docker's `RepoDigests`), sorted.
    pub digests: Vec<String>,
}

impl Store {
    /// Inserts an image (if new) with its layers, and points `tags` at it
    /// (moving them from any other image), in one transaction.
    pub fn insert_image(&self, image: &ImageRecord, tags: &[String]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let new = tx.execute(
            "INSERT OR IGNORE INTO images (id, config, created_at, size) VALUES (?1, ?2, ?3, ?4)",
            params![image.id, image.config, image.created_at, image.size],
        )? > 0;
        if new {
            for (pos, (diff_id, size)) in image.layers.iter().enumerate() {
                tx.execute(
                    "INSERT OR IGNORE INTO layers (diff_id, size) VALUES (?1, ?2)",
                    params![diff_id, size],
                )?;
                tx.execute(
                    "INSERT INTO image_layers (image_id, position, diff_id) VALUES (?1, ?2, ?3)",
                    params![image.id, pos as i64, diff_id],
                )?;
            }
        }
        for tag in tags {
            tx.execute(
                "INSERT OR REPLACE INTO image_tags (reference, image_id) VALUES (?1, ?2)",
                params![tag, image.id],
            )?;
        }
        for reference in &image.digests {
            tx.execute(
                "INSERT OR REPLACE INTO image_digests (reference, image_id) VALUES (?1, ?2)",
                params![reference, image.id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The image a `repo@sha256:…` reference points at.
    pub fn image_by_digest(&self, reference: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT image_id FROM image_digests WHERE reference = ?1",
                params![reference],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Points `repo@sha256:…` at an image (a push's manifest digest).
    /// Returns whether anything changed.
    pub fn add_image_digest(&self, reference: &str, image_id: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "INSERT OR REPLACE INTO image_digests (reference, image_id) VALUES (?1, ?2)",
            params![reference, image_id],
        )? > 0)
    }

    /// Removes a digest reference. Returns whether it existed.
    pub fn remove_image_digest(&self, reference: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM image_digests WHERE reference = ?1",
            params![reference],
        )? > 0)
    }

    /// The image with exactly this ID.
    pub fn get_image(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, config, created_at, size FROM images WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        match row {
            Some((id, config, created_at, size)) => {
                Ok(Some(self.complete_image(id, config, created_at, size)?))
            }
            None => Ok(None),
        }
    }

    fn complete_image(
        &self,
        id: String,
        config: Vec<u8>,
        created_at: i64,
        size: i64,
    ) -> Result<ImageRecord, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT l.diff_id, l.size FROM image_layers il JOIN layers l ON l.diff_id = il.diff_id
             WHERE il.image_id = ?1 ORDER BY il.position",
        )?;
        let layers = stmt
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn
            .prepare("SELECT reference FROM image_tags WHERE image_id = ?1 ORDER BY reference")?;
        let tags = stmt
            .query_map(params![id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT reference FROM image_digests WHERE image_id = ?1 ORDER BY reference",
        )?;
        let digests = stmt
            .query_map(params![id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ImageRecord {
            id,
            config,
            created_at,
            size,
            layers,
            tags,
            digests,
        })
    }

    /// Every image, newest first.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let rows: Vec<(String, Vec<u8>, i64, i64)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT id, config, created_at, size FROM images ORDER BY created_at DESC, id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        rows.into_iter()
            .map(|(id, config, created_at, size)| self.complete_image(id, config, created_at, size))
            .collect()
    }

    /// The image a `repo:tag` points at.
    pub fn image_by_tag(&self, reference: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT image_id FROM image_tags WHERE reference = ?1",
                params![reference],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// IDs starting with `prefix` (`sha256:` included).
    pub fn image_ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id FROM images WHERE substr(id, 1, length(?1)) = ?1")?;
        let rows = stmt.query_map(params![prefix], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes a tag. Returns whether it existed.
    pub fn untag_image(&self, reference: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM image_tags WHERE reference = ?1",
            params![reference],
        )? > 0)
    }

    /// Deletes an image (its tags and layer links cascade) and every layer
    /// no other image uses; returns those layers' diff IDs so the caller
    /// can delete their folders.
    pub fn delete_image(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM images WHERE id = ?1", params![id])?;
        let orphans: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT diff_id FROM layers WHERE diff_id NOT IN (SELECT diff_id FROM image_layers)",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        tx.execute(
            "DELETE FROM layers WHERE diff_id NOT IN (SELECT diff_id FROM image_layers)",
            [],
        )?;
        tx.commit()?;
        Ok(orphans)
    }

    /// The recorded size of layer `diff_id`, if any image records it.
    pub fn layer_size(&self, diff_id: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT size FROM layers WHERE diff_id = ?1",
                params![diff_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Diff IDs of every recorded layer.
    pub fn layer_ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT diff_id FROM layers")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
