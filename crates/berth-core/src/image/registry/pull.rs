//! `docker pull`: manifest (through an index to this platform), config,
//! then the layers not yet stored, a few at a time. Each blob is streamed
//! to a file under the image store's scratch folder, checked against its
//! size and digest, then unpacked through the layer store (tar guard
//! included) and checked against the config's diff ID. The image is
//! recorded only when every layer is in place; a failed pull removes the
//! layers it unpacked that no image records, and its scratch folder.

use std::path::PathBuf;
use std::sync::Arc;

use oci_client::RegistryOperation;

use super::download::{download, BlobTarget};
use super::inflight;
use super::manifest::{self, Descriptor, Fetched, ManifestDoc};
use super::progress::{layer, message, LayerState, Progress};
use super::session::Session;
use super::{Credentials, RegistryError, RemoteReference, Target};
use crate::image::config::ImageConfig;
use crate::image::platform::Platform;
use crate::image::ImageService;
use crate::store::ImageRecord;

/// A pull.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub reference: RemoteReference,
    /// The platform to take from an index (this host's when `None`).
    pub platform: Option<Platform>,
    pub credentials: Credentials,
}

/// What a pull gave.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: ImageRecord,
    /// The digest of the manifest (or index) the reference named.
    pub digest: String,
    /// False when the image was already here under this reference.
    pub newer: bool,
}

/// The manifest of the chosen platform and the image config it names.
struct Resolved {
    top_digest: String,
    /// The image ID: the digest of `config_bytes`.
    image_id: String,
    doc: ManifestDoc,
    config_bytes: Vec<u8>,
    config: ImageConfig,
}

impl ImageService {
    /// Pulls `req.reference`, sending progress to `progress`.
    pub async fn pull(
        self: &Arc<Self>,
        req: PullRequest,
        progress: &Progress,
    ) -> Result<Pulled, RegistryError> {
        let reference = &req.reference;
        let want = req.platform.clone().unwrap_or_else(host_platform);
        let (session, resolved) = self.open_and_resolve(&req, &want).await?;
        check_platform(&req, &resolved.config)?;
        // dockerd shows the tag, or the whole canonical reference.
        let shown = match &reference.target {
            Target::Tag(t) => t.clone(),
            Target::Digest(d) => format!("{}/{}@{d}", reference.domain, reference.path),
        };
        message(
            progress,
            Some(&shown),
            format!("Pulling from {}", path_shown(reference)),
        );
        // Held until the image is recorded: no delete or failed pull
        // removes a layer of this one in between.
        let lease = self.layers.lease(&resolved.config.rootfs.diff_ids);
        let layers = self.fetch_layers(&session, &resolved, progress).await?;
        let image = self.record_pull(reference, &resolved, layers)?;
        drop(lease);
        message(progress, None, format!("Digest: {}", resolved.top_digest));
        Ok(Pulled {
            newer: image.1,
            image: image.0,
            digest: resolved.top_digest,
        })
    }

    /// Opens a session on the first source that has the image: Docker
    /// Hub's mirrors in order, then the reference's own registry (whose
    /// error is the one reported, as dockerd reports its last endpoint's).
    async fn open_and_resolve(
        &self,
        req: &PullRequest,
        want: &Platform,
    ) -> Result<(Session, Resolved), RegistryError> {
        let reference = &req.reference;
        if reference.domain == super::name::DOCKER_HUB {
            for (host, plain) in self.registry.mirror_hosts() {
                let mut config = self.registry.clone();
                if plain {
                    config.insecure.push(host.clone());
                }
                let mirror = RemoteReference {
                    domain: host.clone(),
                    ..reference.clone()
                };
                // The user's credentials are for Docker Hub, not for a
                // mirror (which may even be plain http).
                let anonymous = Credentials::Anonymous;
                match open_source(&config, &mirror, &anonymous, want).await {
                    Ok(found) => return Ok(found),
                    Err(e) => {
                        tracing::info!(mirror = %host, error = %e, "mirror failed; next source")
                    }
                }
            }
        }
        open_source(&self.registry, reference, &req.credentials, want).await
    }

    /// Records the image, its tag and its repo digest in one transaction,
    /// once every layer folder is in place. Returns whether anything new
    /// was recorded (Docker's "Downloaded newer image").
    fn record_pull(
        &self,
        reference: &RemoteReference,
        resolved: &Resolved,
        layers: Vec<(String, i64)>,
    ) -> Result<(ImageRecord, bool), RegistryError> {
        let id = resolved.image_id.clone();
        let tags: Vec<String> = reference
            .local_tag()
            .iter()
            .map(ToString::to_string)
            .collect();
        let repo_digest = reference.repo_digest(&resolved.top_digest);
        let _guard = self.meta_lock.lock();
        for (diff_id, _) in &layers {
            if !self.layers.path(diff_id).is_dir() {
                return Err(RegistryError::Verification(format!(
                    "layer {diff_id} vanished during the pull; pull again"
                )));
            }
        }
        let before = self.store.get_image(&id)?;
        let newer = match &before {
            None => true,
            Some(old) => {
                !tags.iter().all(|t| old.tags.contains(t)) || !old.digests.contains(&repo_digest)
            }
        };
        let record = ImageRecord {
            id: id.clone(),
            created_at: crate::image::created_secs(&resolved.config),
            size: layers.iter().map(|(_, s)| s).sum(),
            config: resolved.config_bytes.clone(),
            layers,
            tags: Vec::new(),
            digests: vec![repo_digest],
        };
        self.store.insert_image(&record, &tags)?;
        let image = self.store.get_image(&id)?.unwrap_or(record);
        tracing::info!(image = %id, reference = %reference, "image pulled");
        Ok((image, newer))
    }

    /// Every layer of the image, in order, as `(diff_id, size)`: those
    /// stored already are reused, the others downloaded and unpacked.
    async fn fetch_layers(
        self: &Arc<Self>,
        session: &Session,
        resolved: &Resolved,
        progress: &Progress,
    ) -> Result<Vec<(String, i64)>, RegistryError> {
        let diff_ids = &resolved.config.rootfs.diff_ids;
        let scratch = Arc::new(self.layers.scratch_dir()?);
        // An image already here is up to date: dockerd shows no layers.
        if let Some(image) = self.store.get_image(&resolved.image_id)? {
            if self.layer_paths(&image).iter().all(|p| p.is_dir()) {
                return Ok(image.layers);
            }
        }
        let mut present = Vec::new();
        for (desc, diff_id) in resolved.doc.layers.iter().zip(diff_ids) {
            let size = self.store.layer_size(diff_id)?;
            let stored = size.filter(|_| self.layers.path(diff_id).is_dir());
            let state = match stored {
                Some(_) => LayerState::AlreadyExists,
                None => LayerState::PullingFsLayer,
            };
            layer(progress, &desc.digest, state);
            present.push(stored);
        }
        let downloads = Arc::new(tokio::sync::Semaphore::new(
            self.registry.max_concurrent_downloads.max(1),
        ));
        let mut tasks = Vec::new();
        for (i, (desc, diff_id)) in resolved.doc.layers.iter().zip(diff_ids).enumerate() {
            if present[i].is_some() {
                continue;
            }
            if tasks.len() >= self.registry.max_concurrent_downloads.max(1) {
                layer(progress, &desc.digest, LayerState::Waiting);
            }
            let job = LayerJob {
                service: self.clone(),
                desc: desc.clone(),
                diff_id: diff_id.clone(),
                file: scratch.path().join(format!("blob-{i}")),
                url: session.blob_url(&desc.digest),
                progress: progress.clone(),
            };
            let permits = downloads.clone();
            let client = session.client.clone();
            let repo = session.repo.clone();
            tasks.push(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                job.run(&client, &repo).await.map(|size| (i, size))
            });
        }
        let results = futures_util::future::join_all(tasks).await;
        let failure = results
            .iter()
            .find_map(|r| r.as_ref().err())
            .map(|e| e.to_string());
        if let Some(text) = failure {
            self.forget_unrecorded(diff_ids);
            let first = results.into_iter().find_map(Result::err);
            return Err(first.unwrap_or(RegistryError::Protocol(text)));
        }
        let mut sizes = present;
        for (i, size) in results.into_iter().flatten() {
            sizes[i] = Some(size);
        }
        Ok(diff_ids
            .iter()
            .zip(sizes)
            .map(|(d, s)| (d.clone(), s.unwrap_or_default()))
            .collect())
    }

    /// After a failed pull: deletes the layers it unpacked that no image
    /// records and no other pull holds.
    fn forget_unrecorded(&self, diff_ids: &[String]) {
        let _guard = self.meta_lock.lock();
        for diff_id in diff_ids {
            let recorded = self.store.layer_size(diff_id).ok().flatten().is_some();
            // This pull's own lease counts once per time the image lists it.
            let own = diff_ids.iter().filter(|d| *d == diff_id).count();
            if !recorded && self.layers.lease_count(diff_id) <= own {
                if let Err(e) = self.layers.remove(diff_id) {
                    tracing::warn!(layer = %diff_id, error = %e, "could not remove a layer of a failed pull");
                }
            }
        }
    }
}

/// One layer to download and unpack.
struct LayerJob {
    service: Arc<ImageService>,
    desc: Descriptor,
    diff_id: String,
    file: PathBuf,
    /// The blob's URL (for messages).
    url: String,
    progress: Progress,
}

impl LayerJob {
    /// The layer, downloaded here or by a concurrent pull of it (waited
    /// for; done here if that one failed); returns the layer's size.
    async fn run(
        self,
        client: &oci_client::Client,
        repo: &oci_client::Reference,
    ) -> Result<i64, RegistryError> {
        loop {
            match inflight::claim(&self.service.inflight, &self.diff_id) {
                inflight::Claim::Mine(_guard) => {
                    // Stored meanwhile by a pull that ended before this claim.
                    if let Some(size) = self.stored_size().await? {
                        layer(&self.progress, &self.desc.digest, LayerState::PullComplete);
                        return Ok(size);
                    }
                    return self.fetch(client, repo).await;
                }
                inflight::Claim::Theirs(mut done) => {
                    layer(&self.progress, &self.desc.digest, LayerState::Waiting);
                    let _ = done.changed().await;
                    if let Some(size) = self.stored_size().await? {
                        layer(
                            &self.progress,
                            &self.desc.digest,
                            LayerState::DownloadComplete,
                        );
                        layer(&self.progress, &self.desc.digest, LayerState::PullComplete);
                        return Ok(size);
                    }
                }
            }
        }
    }

    /// The size of the layer if another pull stored it (recorded, or
    /// measured as the layer store measures it).
    async fn stored_size(&self) -> Result<Option<i64>, RegistryError> {
        let path = self.service.layers.path(&self.diff_id);
        if !path.is_dir() {
            return Ok(None);
        }
        if let Some(size) = self.service.store.layer_size(&self.diff_id)? {
            return Ok(Some(size));
        }
        let measured = tokio::task::spawn_blocking(move || crate::sys::usage::dir_size(&path))
            .await
            .map_err(|e| RegistryError::Protocol(format!("measuring a layer stopped: {e}")))?
            .map_err(|e| RegistryError::Protocol(format!("measuring a layer: {e}")))?;
        Ok(Some(measured as i64))
    }

    /// Downloads, verifies and unpacks; returns the layer's size.
    async fn fetch(
        &self,
        client: &oci_client::Client,
        repo: &oci_client::Reference,
    ) -> Result<i64, RegistryError> {
        let compression = manifest::layer_compression(&self.desc.media_type).ok_or_else(|| {
            RegistryError::Protocol(format!(
                "unsupported layer media type {:?}",
                self.desc.media_type
            ))
        })?;
        let target = BlobTarget {
            desc: &self.desc,
            url: &self.url,
            file: &self.file,
        };
        let attempts = self.service.registry.max_download_attempts.max(1);
        download(client, repo, &target, &self.progress, attempts).await?;
        layer(
            &self.progress,
            &self.desc.digest,
            LayerState::Extracting {
                current: 0,
                total: self.desc.size as u64,
            },
        );
        let service = self.service.clone();
        let (file, digest) = (self.file.clone(), self.desc.digest.clone());
        let stored = tokio::task::spawn_blocking(move || {
            service
                .layers
                .add_blob(&file, &digest, compression)
                .map(|(stored, _)| stored)
        })
        .await
        .map_err(|e| RegistryError::Protocol(format!("unpacking stopped: {e}")))??;
        if stored.diff_id != self.diff_id {
            return Err(RegistryError::Verification(format!(
                "layer {} unpacks to {}, but the image config lists {}",
                self.desc.digest, stored.diff_id, self.diff_id
            )));
        }
        layer(
            &self.progress,
            &self.desc.digest,
            LayerState::Extracting {
                current: self.desc.size as u64,
                total: self.desc.size as u64,
            },
        );
        layer(&self.progress, &self.desc.digest, LayerState::PullComplete);
        Ok(stored.size as i64)
    }
}

/// A session on one registry, and the image resolved there.
async fn open_source(
    config: &super::RegistryConfig,
    reference: &RemoteReference,
    credentials: &Credentials,
    want: &Platform,
) -> Result<(Session, Resolved), RegistryError> {
    let session = Session::open(config, reference, credentials, RegistryOperation::Pull)
        .await
        .map_err(|e| access_denied(e, reference))?;
    let resolved = resolve(&session, reference, want).await?;
    Ok((session, resolved))
}

/// The manifest for `want` and its config, every piece checked.
async fn resolve(
    session: &Session,
    reference: &RemoteReference,
    want: &Platform,
) -> Result<Resolved, RegistryError> {
    let target = match &reference.target {
        Target::Tag(t) => t.clone(),
        Target::Digest(d) => d.clone(),
    };
    let top = manifest::fetch(session, &target)
        .await
        .map_err(|e| manifest_error(e, reference))?;
    let doc = choose_platform(session, &top, want).await?;
    let config_desc = doc
        .config
        .clone()
        .ok_or_else(|| RegistryError::Protocol("manifest has no config".into()))?;
    let config_bytes = fetch_config(session, &config_desc).await?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| RegistryError::Protocol(format!("invalid image config: {e}")))?;
    check_digests(&config, &doc, &config_desc)?;
    if config.rootfs.diff_ids.len() != doc.layers.len() {
        return Err(RegistryError::Protocol(format!(
            "image config lists {} layers, manifest {}",
            config.rootfs.diff_ids.len(),
            doc.layers.len()
        )));
    }
    Ok(Resolved {
        top_digest: top.digest,
        image_id: crate::image::layers::digest(&config_bytes),
        doc,
        config_bytes,
        config,
    })
}

/// Every digest a registry sent is `sha256:` and 64 lower-case hex
/// digits before any of them names a file or a folder (a diff ID such as
/// `/etc` or `sha256:../x` would otherwise point out of the layer store).
fn check_digests(
    config: &ImageConfig,
    doc: &ManifestDoc,
    config_desc: &Descriptor,
) -> Result<(), RegistryError> {
    let named = (config.rootfs.diff_ids.iter())
        .chain(doc.layers.iter().map(|d| &d.digest))
        .chain(std::iter::once(&config_desc.digest));
    for digest in named {
        if super::name::parse_digest(digest).is_none() {
            return Err(RegistryError::Protocol(format!(
                "invalid digest {digest:?} in the image's manifest or config"
            )));
        }
    }
    Ok(())
}

/// The manifest itself, or the entry of an index for `want`.
async fn choose_platform(
    session: &Session,
    top: &Fetched,
    want: &Platform,
) -> Result<ManifestDoc, RegistryError> {
    let doc = top.parse()?;
    if !top.is_index(&doc) {
        return Ok(doc);
    }
    let entry = manifest::choose(&doc, want)?;
    if super::name::parse_digest(&entry.digest).is_none() {
        return Err(RegistryError::Protocol(format!(
            "invalid digest {:?} in the image index",
            entry.digest
        )));
    }
    let fetched = manifest::fetch(session, &entry.digest).await?;
    let inner = fetched.parse()?;
    if fetched.is_index(&inner) {
        return Err(RegistryError::Protocol(
            "nested indexes are not supported".into(),
        ));
    }
    Ok(inner)
}

/// The image config blob, capped and checked against its digest.
pub(super) async fn fetch_config(
    session: &Session,
    desc: &Descriptor,
) -> Result<Vec<u8>, RegistryError> {
    if desc.size < 0 || desc.size as u64 > manifest::MAX_CONFIG {
        return Err(RegistryError::Protocol(format!(
            "image config of {} bytes is over the {} allowed",
            desc.size,
            manifest::MAX_CONFIG
        )));
    }
    let url = format!(
        "{}{}/blobs/{}",
        session.base_url(),
        session.path(),
        desc.digest
    );
    let response = session.get(&url, "*/*").await?;
    let bytes = super::session::read_capped(response, manifest::MAX_CONFIG, "image config").await?;
    if crate::image::layers::digest(&bytes) != desc.digest {
        return Err(RegistryError::Verification(format!(
            "image config verification failed for digest {}",
            desc.digest
        )));
    }
    Ok(bytes)
}

/// A manifest the registry does not have, in dockerd's words.
fn manifest_error(error: RegistryError, reference: &RemoteReference) -> RegistryError {
    match error {
        RegistryError::NotFound(detail) if detail.starts_with("manifest unknown") => {
            RegistryError::NotFound(format!(
                "manifest for {} not found: {detail}",
                reference.familiar()
            ))
        }
        other => access_denied(other, reference),
    }
}

/// A repository missing or refused, in dockerd's words (its
/// `distribution/errors.go`): `denied` and `name unknown` are 404s.
fn access_denied(error: RegistryError, reference: &RemoteReference) -> RegistryError {
    match error {
        RegistryError::Unauthorized(detail) if detail.starts_with("denied") => {
            RegistryError::NotFound(format!(
                "pull access denied for {}, repository does not exist or may require 'docker login': {detail}",
                reference.familiar_name()
            ))
        }
        RegistryError::NotFound(detail) if detail.starts_with("name unknown") => {
            RegistryError::NotFound(format!(
                "repository {} not found: {detail}",
                reference.familiar_name()
            ))
        }
        other => other,
    }
}

/// The repository as the "Pulling from" line shows it: its path in the
/// registry (dockerd prints `library/busybox`, `team/app`).
fn path_shown(reference: &RemoteReference) -> String {
    reference.path.clone()
}

/// An index was matched to the platform asked for already; a single
/// manifest may be of another one (dockerd's 404 then).
fn check_platform(req: &PullRequest, config: &ImageConfig) -> Result<(), RegistryError> {
    let Some(wanted) = &req.platform else {
        return Ok(());
    };
    let actual = config.platform();
    if actual.as_ref().is_some_and(|a| wanted.matches(a)) {
        return Ok(());
    }
    Err(RegistryError::Image(
        crate::image::ImageError::PlatformMismatch {
            reference: req.reference.familiar(),
            wanted: wanted.to_string(),
            actual: actual.map_or_else(|| "nil".to_string(), |a| a.to_string()),
        },
    ))
}

/// This host's platform.
pub fn host_platform() -> Platform {
    Platform::of("linux", crate::image::config::go_arch(), "").expect("static platform")
}
