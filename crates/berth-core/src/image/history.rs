//! `docker history`: an image's history entries, newest first, each with
//! the size of the layer it made (0 for an `empty_layer` entry), as
//! moby's `ImageHistory` pairs them. The newest row carries the image's
//! ID and tags; berth keeps no parent chain, so older rows are
//! `<missing>`, as they are in dockerd for pulled images.

use super::{ImageError, ImageService};

/// One row of `docker history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The image ID, or `<missing>`.
    pub id: String,
    /// Seconds since the epoch.
    pub created: i64,
    pub created_by: String,
    /// `repo:tag` names (only on the image's own row).
    pub tags: Vec<String>,
    pub size: i64,
    pub comment: String,
}

impl ImageService {
    /// The history of image `name`, newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryRow>, ImageError> {
        let image = self.resolve(name)?;
        let config = self.config(&image)?;
        let mut layers = image.layers.iter();
        let mut rows = Vec::new();
        for entry in &config.history {
            let size = if entry.empty_layer == Some(true) {
                0
            } else {
                let (_, size) = layers.next().ok_or_else(|| {
                    ImageError::BadArchive("too many non-empty layers in History section".into())
                })?;
                *size
            };
            let created = (entry.created.as_deref())
                .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                .map_or(0, |t| t.timestamp());
            rows.push(HistoryRow {
                id: "<missing>".into(),
                created,
                created_by: entry.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size,
                comment: entry.comment.clone().unwrap_or_default(),
            });
        }
        rows.reverse();
        if let Some(top) = rows.first_mut() {
            top.id = image.id.clone();
            top.tags = image.tags.clone();
        }
        Ok(rows)
    }
}
