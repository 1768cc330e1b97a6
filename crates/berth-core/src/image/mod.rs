//! Images: import (`docker import`), load (`docker load`), lookup, tag,
//! remove. Layers are content-addressed and extracted once ([`layers`]);
//! configs are kept byte for byte in the store, so an image ID is always
//! the sha256 of the stored config.

pub mod changes;
pub mod commit;
pub mod config;
mod error;
pub mod history;
pub mod layers;
pub mod list_filter;
mod load;
pub mod platform;
mod prune;
pub mod reference;
pub mod registry;
pub mod save;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::ImageConfig;
pub use error::ImageError;
pub use prune::{ImagePruneReport, PRUNE_KEYS};
pub use reference::Reference;

use crate::store::{ImageRecord, Store};
use layers::{digest, LayerStore};

/// What a remove did, in order (Docker's `Untagged`/`Deleted` list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveAction {
    Untagged(String),
    Deleted(String),
}

/// A `docker import`.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    pub reference: Option<Reference>,
    /// Dockerfile-style change lines.
    pub changes: Vec<String>,
    /// Commit message (kept as the history comment).
    pub message: Option<String>,
}

/// Image operations over one store.
#[derive(Debug)]
pub struct ImageService {
    store: Arc<Store>,
    layers: LayerStore,
    /// Serialises tag moves and deletes (short metadata work only).
    meta_lock: parking_lot::Mutex<()>,
    /// How registries are reached.
    registry: registry::RegistryConfig,
    /// Layers a pull is downloading now, by diff ID: another pull of the
    /// same layer waits for that one instead of downloading it again.
    inflight: registry::InflightTable,
}

impl ImageService {
    /// A service keeping layers under `images_dir`.
    pub fn new(store: Arc<Store>, images_dir: &Path) -> Result<Self, ImageError> {
        Ok(ImageService {
            store,
            layers: LayerStore::new(images_dir)?,
            meta_lock: parking_lot::Mutex::new(()),
            registry: registry::RegistryConfig::default(),
            inflight: Default::default(),
        })
    }

    /// Sets how registries are reached (the daemon's flags).
    pub fn with_registry(mut self, config: registry::RegistryConfig) -> Self {
        self.registry = config;
        self
    }

    /// How registries are reached.
    pub fn registry_config(&self) -> &registry::RegistryConfig {
        &self.registry
    }

    /// Makes a one-layer image from a root filesystem tar.
    pub fn import(&self, req: ImportRequest, input: impl Read) -> Result<ImageRecord, ImageError> {
        let run_config = changes::apply(&Default::default(), &req.changes)?;
        let (layer, _lease) = self.layers.add(input)?;
        let now = chrono::Utc::now();
        let created = now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let config = ImageConfig {
            architecture: config::go_arch().into(),
            config: run_config,
            created: Some(created.clone()),
            history: vec![config::History {
                created: Some(created),
                comment: Some(req.message.unwrap_or_else(|| "Imported from -".into())),
                ..Default::default()
            }],
            os: "linux".into(),
            rootfs: config::RootFs {
                kind: "layers".into(),
                diff_ids: vec![layer.diff_id.clone()],
            },
            ..Default::default()
        };
        let bytes =
            serde_json::to_vec(&config).map_err(|e| ImageError::BadArchive(e.to_string()))?;
        let record = ImageRecord {
            id: digest(&bytes),
            config: bytes,
            created_at: now.timestamp(),
            size: layer.size as i64,
            layers: vec![(layer.diff_id, layer.size as i64)],
            tags: Vec::new(),
            digests: Vec::new(),
        };
        let tags: Vec<String> = req.reference.iter().map(ToString::to_string).collect();
        let _guard = self.meta_lock.lock();
        self.store.insert_image(&record, &tags)?;
        tracing::info!(image = %record.id, tags = ?tags, "image imported");
        Ok(ImageRecord { tags, ..record })
    }

    /// Loads every image of a `docker save` archive. Returns them with the
    /// tags they were given.
    pub fn load(&self, input: impl Read) -> Result<Vec<ImageRecord>, ImageError> {
        let scratch = self.layers.scratch_dir()?;
        load::unpack_archive(input, scratch.path())?;
        let mut loaded = Vec::new();
        for entry in load::read_images(scratch.path())? {
            loaded.push(self.load_one(scratch.path(), &entry)?);
        }
        Ok(loaded)
    }

    /// Stores one image of an unpacked archive: its layers (checked against
    /// the config's diff IDs), its config byte for byte, its tags.
    fn load_one(&self, root: &Path, entry: &load::ArchiveImage) -> Result<ImageRecord, ImageError> {
        let (bytes, config) = read_archive_config(root, entry)?;
        let (layers, _leases) = self.add_archive_layers(root, entry, &config)?;
        let tags = entry
            .tags
            .iter()
            .map(|t| Reference::parse(t).map(|r| r.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let record = ImageRecord {
            id: digest(&bytes),
            created_at: created_secs(&config),
            size: layers.iter().map(|(_, s)| s).sum(),
            config: bytes,
            layers,
            tags: tags.clone(),
            digests: Vec::new(),
        };
        let _guard = self.meta_lock.lock();
        self.store.insert_image(&record, &tags)?;
        tracing::info!(image = %record.id, tags = ?tags, "image loaded");
        Ok(record)
    }

    /// Adds an archive image's layer tars to the layer store, bottom first;
    /// a layer whose digest is not the one its config lists is refused.
    /// Returns `(diff_id, size)` per layer, and their leases (held until
    /// the image is recorded).
    fn add_archive_layers(
        &self,
        root: &Path,
        entry: &load::ArchiveImage,
        config: &ImageConfig,
    ) -> Result<(LayerSizes, Vec<layers::LayerLease>), ImageError> {
        let mut layers = Vec::new();
        let mut leases = Vec::new();
        for (path, want) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let (layer, lease) = self.layers.add(load::open_inside(root, path)?)?;
            leases.push(lease);
            if &layer.diff_id != want {
                return Err(ImageError::BadArchive(format!(
                    "layer {} has digest {}, config says {want}",
                    path.display(),
                    layer.diff_id
                )));
            }
            layers.push((layer.diff_id, layer.size as i64));
        }
        Ok((layers, leases))
    }

    /// Finds an image by full ID (`sha256:…` or bare hex), `repo[:tag]`, or
    /// a unique ID prefix, in Docker's order.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let not_found = || ImageError::NotFound(display_name(name));
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let is_hex = !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if is_hex && hex.len() == 64 {
            return self
                .store
                .get_image(&format!("sha256:{hex}"))?
                .ok_or_else(not_found);
        }
        if name.contains('@') {
            let remote = registry::RemoteReference::parse(name, "").map_err(|_| not_found())?;
            if let registry::Target::Digest(d) = &remote.target {
                if let Some(id) = self.store.image_by_digest(&remote.repo_digest(d))? {
                    return self.store.get_image(&id)?.ok_or_else(not_found);
                }
            }
            return Err(not_found());
        }
        if let Ok(reference) = Reference::parse(name) {
            if let Some(id) = self.store.image_by_tag(&reference.to_string())? {
                return self.store.get_image(&id)?.ok_or_else(not_found);
            }
        }
        if is_hex {
            let ids = self.store.image_ids_with_prefix(&format!("sha256:{hex}"))?;
            if let [id] = ids.as_slice() {
                return self.store.get_image(id)?.ok_or_else(not_found);
            }
        }
        Err(not_found())
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.store.list_images()?)
    }

    /// Points `reference` at the image `name` resolves to.
    pub fn tag(&self, name: &str, reference: &Reference) -> Result<(), ImageError> {
        let image = self.resolve(name)?;
        let _guard = self.meta_lock.lock();
        self.store.insert_image(&image, &[reference.to_string()])?;
        Ok(())
    }

    /// Removes a tag, or an image with all its tags. `used_by` lists the
    /// containers using an image (they block deletion, as in Docker).
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        used_by: &dyn Fn(&str) -> Vec<(String, bool)>,
    ) -> Result<Vec<RemoveAction>, ImageError> {
        let image = self.resolve(name)?;
        let _guard = self.meta_lock.lock();
        if let Some(digest_ref) = digest_reference(name).filter(|d| image.digests.contains(d)) {
            if image.tags.len() + image.digests.len() > 1 {
                self.store.remove_image_digest(&digest_ref)?;
                return Ok(vec![RemoveAction::Untagged(digest_ref)]);
            }
        }
        let by_tag = Reference::parse(name)
            .ok()
            .map(|r| r.to_string())
            .filter(|t| image.tags.contains(t));
        if let Some(untagged) = self.untag_if_shared(&image, by_tag.as_deref(), force)? {
            return Ok(untagged);
        }
        if let Some((container, running)) = used_by(&image.id).first() {
            return Err(in_use_error(
                &image.id,
                by_tag.as_deref(),
                container,
                *running,
                force,
            ));
        }
        self.delete_with_tags(&image)
    }

    /// An image with several tags loses only the named tag when removed by
    /// tag, and needs `force` when removed by ID. `None`: go on to delete.
    fn untag_if_shared(
        &self,
        image: &ImageRecord,
        by_tag: Option<&str>,
        force: bool,
    ) -> Result<Option<Vec<RemoveAction>>, ImageError> {
        match by_tag {
            Some(tag) if image.tags.len() > 1 => {
                self.store.untag_image(tag)?;
                let mut actions = vec![RemoveAction::Untagged(tag.to_string())];
                actions.extend(self.untag_orphaned_digests(image, tag)?);
                Ok(Some(actions))
            }
            None if image.tags.len() > 1 && !force => Err(conflict(
                &image.id,
                "image is referenced in multiple repositories",
            )),
            _ => Ok(None),
        }
    }

    /// After `tag` left `image`: when no other tag of its repository
    /// remains, that repository's digest references go too (moby's
    /// `image_delete.go`: a `repo@digest` is kept only beside a tag of
    /// the same repository or on its own).
    fn untag_orphaned_digests(
        &self,
        image: &ImageRecord,
        tag: &str,
    ) -> Result<Vec<RemoveAction>, ImageError> {
        let repo = Reference::parse(tag)?.repository;
        let same_repo = |r: &str| Reference::parse(r).is_ok_and(|r| r.repository == repo);
        if image.tags.iter().any(|t| t != tag && same_repo(t)) {
            return Ok(Vec::new());
        }
        let mut actions = Vec::new();
        for digest in &image.digests {
            if digest.split_once('@').is_some_and(|(name, _)| name == repo) {
                self.store.remove_image_digest(digest)?;
                actions.push(RemoveAction::Untagged(digest.clone()));
            }
        }
        Ok(actions)
    }

    /// Deletes the image and the layers no other image uses; reports its
    /// tags as untagged, then the image as deleted.
    fn delete_with_tags(&self, image: &ImageRecord) -> Result<Vec<RemoveAction>, ImageError> {
        self.delete_reclaiming(image).map(|(actions, _)| actions)
    }

    /// [`ImageService::delete_with_tags`], also returning the bytes of the
    /// layers deleted with the image.
    fn delete_reclaiming(
        &self,
        image: &ImageRecord,
    ) -> Result<(Vec<RemoveAction>, u64), ImageError> {
        let mut actions: Vec<RemoveAction> = (image.tags.iter())
            .chain(&image.digests)
            .cloned()
            .map(RemoveAction::Untagged)
            .collect();
        // Refused before the record goes: a layer that could not be
        // deleted afterwards would leave a half-removed image.
        for (diff_id, _) in &image.layers {
            self.layers.check_removable(diff_id)?;
        }
        let orphans = self.store.delete_image(&image.id)?;
        actions.push(RemoveAction::Deleted(image.id.clone()));
        // Docker then lists the layers released, top first, by chain ID.
        let chain = chain_ids(&image.layers);
        let mut reclaimed = 0;
        for (position, (diff_id, size)) in image.layers.iter().enumerate().rev() {
            if orphans.contains(diff_id) {
                // A pull that is about to record this layer again keeps it.
                if self.layers.lease_count(diff_id) == 0 {
                    self.layers.remove(diff_id)?;
                }
                reclaimed += *size as u64;
                actions.push(RemoveAction::Deleted(chain[position].clone()));
            }
        }
        tracing::info!(image = %image.id, "image deleted");
        Ok((actions, reclaimed))
    }

    /// The parsed config of an image.
    pub fn config(&self, image: &ImageRecord) -> Result<ImageConfig, ImageError> {
        serde_json::from_slice(&image.config)
            .map_err(|e| ImageError::BadArchive(format!("stored config of {}: {e}", image.id)))
    }

    /// Layer folders of an image, bottom first.
    pub fn layer_paths(&self, image: &ImageRecord) -> Vec<PathBuf> {
        image
            .layers
            .iter()
            .map(|(d, _)| self.layers.path(d))
            .collect()
    }

    /// Start-up repair: removes scratch leftovers and layer folders no
    /// image records (an interrupted import or delete); reports recorded
    /// layers whose folder is missing. Returns the problems found.
    pub fn reconcile(&self) -> Result<Vec<String>, ImageError> {
        let cleaned = self.layers.clean_tmp()?;
        let recorded = self.store.layer_ids()?;
        let mut problems = Vec::new();
        for on_disk in self.layers.list()? {
            if !recorded.contains(&on_disk) {
                // One that cannot go (something mounted in it) stays; the
                // start goes on.
                if let Err(e) = self.layers.remove(&on_disk) {
                    tracing::warn!(layer = %on_disk, error = %e, "layer of no image left in place");
                    problems.push(format!("layer {on_disk} of no image left in place: {e}"));
                }
            }
        }
        for diff_id in &recorded {
            if !self.layers.path(diff_id).is_dir() {
                problems.push(format!(
                    "layer {diff_id} is recorded but its folder is missing"
                ));
            }
        }
        tracing::info!(
            scratch_removed = cleaned,
            problems = problems.len(),
            "image store reconciled"
        );
        Ok(problems)
    }
}

/// An archive image's config: the bytes as stored (its ID is their
/// digest) and parsed, with as many layers as the manifest lists.
fn read_archive_config(
    root: &Path,
    entry: &load::ArchiveImage,
) -> Result<(Vec<u8>, ImageConfig), ImageError> {
    let mut bytes = Vec::new();
    load::open_inside(root, &entry.config)?
        .read_to_end(&mut bytes)
        .map_err(|e| ImageError::io(&entry.config, e))?;
    let config: ImageConfig = serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::BadArchive(format!("image config: {e}")))?;
    if config.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(ImageError::BadArchive(format!(
            "config lists {} layers, manifest {}",
            config.rootfs.diff_ids.len(),
            entry.layers.len()
        )));
    }
    Ok((bytes, config))
}

/// Why an image some container uses cannot be removed, in Docker's words.
/// berth never deletes layers a container's filesystem is built on, so
/// even `force` cannot remove an image in use.
fn in_use_error(
    image_id: &str,
    by_tag: Option<&str>,
    container: &str,
    running: bool,
    force: bool,
) -> ImageError {
    let short = &container[..container.len().min(12)];
    let image_short = &image_id[7..19.min(image_id.len())];
    match (by_tag, running) {
        (Some(tag), _) => ImageError::ReferenceInUse {
            reference: tag.to_string(),
            container: short.to_string(),
            image: image_short.to_string(),
        },
        (None, true) => conflict_forced(image_id, &format!("image is being used by running container {short}")),
        (None, false) if force => conflict_forced(image_id, &format!("image is being used by stopped container {short}; berth keeps the layers of an existing container, remove the container first")),
        (None, false) => conflict(image_id, &format!("image is being used by stopped container {short}")),
    }
}

/// `repo@sha256:…` in its familiar form, if `name` is a digest reference.
fn digest_reference(name: &str) -> Option<String> {
    let remote = registry::RemoteReference::parse(name, "").ok()?;
    match &remote.target {
        registry::Target::Digest(d) => Some(remote.repo_digest(d)),
        registry::Target::Tag(_) => None,
    }
}

/// How Docker names a missing image: a reference in its familiar form
/// (`busybox` → `busybox:latest`), anything else as given.
fn display_name(name: &str) -> String {
    let hexish = name.bytes().all(|b| b.is_ascii_hexdigit()) || name.starts_with("sha256:");
    match Reference::parse(name) {
        Ok(r) if !hexish => r.to_string(),
        _ => name.to_string(),
    }
}

fn conflict_forced(id: &str, reason: &str) -> ImageError {
    let hex = id.trim_start_matches("sha256:");
    ImageError::ConflictForced {
        image: hex[..hex.len().min(12)].to_string(),
        reason: reason.to_string(),
    }
}

fn conflict(id: &str, reason: &str) -> ImageError {
    let hex = id.trim_start_matches("sha256:");
    ImageError::Conflict {
        image: hex[..hex.len().min(12)].to_string(),
        reason: reason.to_string(),
    }
}

/// `(diff_id, size)` of each layer of an image, bottom first.
type LayerSizes = Vec<(String, i64)>;

pub(crate) fn created_secs(config: &ImageConfig) -> i64 {
    config
        .created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map_or(0, |t| t.timestamp())
}

/// The chain ID of each layer of a stack, bottom first (the OCI image
/// spec's `ChainID`: the first is its diff ID, each next one the digest of
/// "<previous chain ID> <diff ID>").
fn chain_ids(layers: &[(String, i64)]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut out: Vec<String> = Vec::with_capacity(layers.len());
    for (diff_id, _) in layers {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(previous) => {
                let digest = Sha256::digest(format!("{previous} {diff_id}").as_bytes());
                format!("sha256:{}", hex::encode(digest))
            }
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let layers = [("sha256:aa".to_string(), 1), ("sha256:bb".to_string(), 2)];
        let chain = chain_ids(&layers);
        assert_eq!(chain[0], "sha256:aa");
        // sha256("sha256:aa sha256:bb"), computed with Python's hashlib
        assert_eq!(
            chain[1],
            "sha256:b68ad689d6d1ec110ea1c13617437ad6f3766d4b3b309f6a603a222e07a0164f"
        );
    }
}
