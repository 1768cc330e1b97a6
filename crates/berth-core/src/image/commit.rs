//! Images made from containers (`docker commit`): the parent image's
//! config with a new run config, one more history entry, and one more
//! layer (the container's changes, stored and compressed once like any
//! layer), in the fields dockerd writes (`container`, `container_config`,
//! `docker_version`, `author`, `comment`). A commit that changed no file
//! adds no layer: its history entry is an `empty_layer`, as dockerd
//! records one.

use serde_json::Value;

use super::config::{History, ImageConfig, RunConfig};
use super::layers::digest;
use super::{ImageError, ImageService, Reference};
use crate::store::ImageRecord;

/// The digest of an empty layer tar (1024 zero bytes): moby's
/// `DigestSHA256EmptyTar`.
pub const EMPTY_TAR_DIGEST: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// What a commit records besides the layer.
#[derive(Debug, Clone)]
pub struct CommitImage {
    /// The image the container runs.
    pub parent_id: String,
    /// The new image's run config (changes applied).
    pub config: RunConfig,
    pub container_id: String,
    /// The container's own config, as dockerd keeps it (`container_config`).
    pub container_config: Value,
    pub author: Option<String>,
    pub comment: Option<String>,
    /// The history entry's `created_by` (the container's command).
    pub created_by: String,
    pub reference: Option<Reference>,
}

impl ImageService {
    /// Makes an image from `req.parent_id` plus the layer tar that
    /// `write_layer` writes (into a scratch file first: a tar cut short by
    /// a failed walk must never be stored as a whole layer).
    pub fn commit(
        &self,
        req: CommitImage,
        write_layer: impl FnOnce(&mut std::fs::File) -> std::io::Result<u64>,
    ) -> Result<ImageRecord, ImageError> {
        let parent = self
            .store
            .get_image(&req.parent_id)?
            .ok_or_else(|| ImageError::NotFound(req.parent_id.clone()))?;
        let scratch = self.layers.scratch_dir()?;
        let path = scratch.path().join("layer.tar");
        let mut file = std::fs::File::create(&path).map_err(|e| ImageError::io(&path, e))?;
        write_layer(&mut file).map_err(|e| ImageError::io(&path, e))?;
        let file = std::fs::File::open(&path).map_err(|e| ImageError::io(&path, e))?;
        let (stored, lease) = self.layers.add(file)?;
        drop(scratch);
        let empty = stored.diff_id == EMPTY_TAR_DIGEST;
        let now = chrono::Utc::now();
        let config = child_config(&self.config(&parent)?, &req, &stored.diff_id, empty, now);
        let bytes =
            serde_json::to_vec(&config).map_err(|e| ImageError::BadArchive(e.to_string()))?;
        let mut layers = parent.layers.clone();
        if !empty {
            layers.push((stored.diff_id.clone(), stored.size as i64));
        }
        let record = ImageRecord {
            id: digest(&bytes),
            config: bytes,
            created_at: now.timestamp(),
            size: layers.iter().map(|(_, s)| s).sum(),
            layers,
            tags: Vec::new(),
            digests: Vec::new(),
        };
        let tags: Vec<String> = req.reference.iter().map(ToString::to_string).collect();
        let _guard = self.meta_lock.lock();
        self.store.insert_image(&record, &tags)?;
        if empty
            && self.store.layer_size(&stored.diff_id)?.is_none()
            && self.layers.lease_count(&stored.diff_id) <= 1
        {
            // The empty layer is not part of the image: drop its copy.
            self.layers.remove(&stored.diff_id)?;
        }
        drop(lease);
        tracing::info!(image = %record.id, container = %req.container_id, tags = ?tags, "container committed");
        Ok(ImageRecord { tags, ..record })
    }
}

/// The new image's config: the parent's, with `req`'s run config, time,
/// author, comment and container, and one history entry and layer more.
fn child_config(
    parent: &ImageConfig,
    req: &CommitImage,
    diff_id: &str,
    empty: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> ImageConfig {
    let created = crate::container::jsonlog::format_rfc3339_nano(now);
    let mut config = parent.clone();
    config.config = req.config.clone();
    config.created = Some(created.clone());
    config.author = req.author.clone().filter(|a| !a.is_empty());
    let comment = req.comment.clone().filter(|c| !c.is_empty());
    let extra = &mut config.extra;
    extra.insert("container".into(), Value::from(req.container_id.clone()));
    extra.insert("container_config".into(), req.container_config.clone());
    extra.insert(
        "docker_version".into(),
        Value::from(env!("CARGO_PKG_VERSION")),
    );
    match &comment {
        Some(c) => extra.insert("comment".into(), Value::from(c.clone())),
        None => extra.remove("comment"),
    };
    config.history.push(History {
        created: Some(created),
        author: config.author.clone(),
        created_by: Some(req.created_by.clone()),
        comment,
        empty_layer: empty.then_some(true),
        ..Default::default()
    });
    if !empty {
        config.rootfs.diff_ids.push(diff_id.to_string());
    }
    config
}
