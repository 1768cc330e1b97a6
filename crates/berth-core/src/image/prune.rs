//! `docker image prune`: images no container uses — only untagged ones
//! unless `dangling=false` (`-a`) — filtered by `label`, `label!` and
//! `until`, as moby's `ImagesPrune` does.

use std::collections::HashSet;

use super::{ImageError, ImageService, RemoveAction};
use crate::store::ImageRecord;
use crate::volume::filters::{self, Filters};

/// Filter keys `image prune` accepts.
pub const PRUNE_KEYS: &[&str] = &["dangling", "label", "label!", "until"];

/// What a prune removed.
#[derive(Debug, Default, Clone)]
pub struct ImagePruneReport {
    /// Untagged references and deleted image IDs, in Docker's order.
    pub actions: Vec<RemoveAction>,
    /// Bytes of the layers deleted with them.
    pub space_reclaimed: u64,
}

impl ImageService {
    /// Deletes the images `filters` select that no container uses (their
    /// IDs are `in_use`).
    pub fn prune(
        &self,
        filters: &Filters,
        in_use: &HashSet<String>,
    ) -> Result<ImagePruneReport, ImageError> {
        let invalid = |e: crate::volume::VolumeError| ImageError::InvalidFilter(e.to_string());
        filters::check_keys(filters, PRUNE_KEYS).map_err(invalid)?;
        let dangling_only = filters::dangling_value(filters)
            .map_err(invalid)?
            .unwrap_or(true);
        let cutoff =
            filters::until_cutoff(filters, chrono::Utc::now().timestamp()).map_err(invalid)?;
        let _guard = self.meta_lock.lock();
        let mut report = ImagePruneReport::default();
        for image in self.store.list_images()? {
            let unused = !in_use.contains(&image.id);
            let selected = (!dangling_only || image.tags.is_empty())
                && cutoff.is_none_or(|c| image.created_at < c)
                && self.labels_pass(&image, filters);
            if unused && selected {
                let (actions, reclaimed) = self.delete_reclaiming(&image)?;
                report.actions.extend(actions);
                report.space_reclaimed += reclaimed;
            }
        }
        Ok(report)
    }

    /// Whether the image's labels pass the `label` and `label!` filters.
    fn labels_pass(&self, image: &ImageRecord, filters: &Filters) -> bool {
        let labels = self
            .config(image)
            .ok()
            .and_then(|c| c.config.labels)
            .unwrap_or_default();
        filters::labels_match(filters, "label", &labels)
            && !filters::labels_excluded(filters, &labels)
    }
}
