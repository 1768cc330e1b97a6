//! `docker push`: each layer goes as the blob kept beside it (the exact
//! compressed bytes it was pulled as, or the gzip written once when it was
//! imported, loaded or committed: a layer is compressed once, never per
//! push). A blob the repository has is skipped, one another repository of
//! the same registry has is mounted from there, the others are streamed
//! from their files; then the config and a manifest naming them. The
//! manifest's digest is recorded in the image's `RepoDigests`. Progress
//! goes out in dockerd's words and order; per-layer ids are diff IDs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_client::RegistryOperation;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::manifest;
use super::progress::{layer, message, LayerState, Progress, ProgressEvent};
use super::session::Session;
use super::{Credentials, RegistryError, RemoteReference, Target};
use crate::image::layers::{Compression, LayerBlob};
use crate::image::ImageService;
use crate::store::ImageRecord;

/// How often a layer's upload bar moves.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Bytes read from a blob file per piece of the upload body.
const READ_CHUNK: usize = 256 * 1024;

/// A push.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The repository and the tag to push.
    pub reference: RemoteReference,
    /// Push every local tag of the repository instead (`--all-tags`).
    pub all_tags: bool,
    pub credentials: Credentials,
}

/// One tag pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub tag: String,
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's size in bytes.
    pub size: u64,
}

/// A layer to send: its diff ID and the blob that carries it.
#[derive(Debug, Clone)]
struct LayerUpload {
    diff_id: String,
    blob: LayerBlob,
    path: PathBuf,
}

impl ImageService {
    /// Pushes `req.reference` (or all its tags), sending progress.
    pub async fn push(
        self: &Arc<Self>,
        req: PushRequest,
        progress: &Progress,
    ) -> Result<Vec<Pushed>, RegistryError> {
        let reference = &req.reference;
        message(
            progress,
            None,
            format!(
                "The push refers to repository [{}/{}]",
                reference.domain, reference.path
            ),
        );
        let images = self.images_to_push(&req)?;
        let session = Session::open(
            &self.registry,
            reference,
            &req.credentials,
            RegistryOperation::Push,
        )
        .await?;
        let mut pushed = Vec::new();
        for (tag, image) in images {
            pushed.push(
                self.push_tag(&session, reference, &tag, &image, progress)
                    .await?,
            );
        }
        Ok(pushed)
    }

    /// The `(tag, image)` pairs to push, in dockerd's words when there
    /// are none.
    fn images_to_push(
        &self,
        req: &PushRequest,
    ) -> Result<Vec<(String, ImageRecord)>, RegistryError> {
        let name = req.reference.familiar_name();
        let prefix = format!("{name}:");
        let mut tagged: Vec<(String, ImageRecord)> = Vec::new();
        for image in self.list()? {
            for tag in &image.tags {
                if let Some(t) = tag.strip_prefix(&prefix) {
                    tagged.push((t.to_string(), image.clone()));
                }
            }
        }
        if tagged.is_empty() {
            return Err(RegistryError::NotFound(format!(
                "An image does not exist locally with the tag: {name}"
            )));
        }
        tagged.sort_by(|a, b| a.0.cmp(&b.0));
        if req.all_tags {
            return Ok(tagged);
        }
        let Target::Tag(want) = &req.reference.target else {
            return Err(RegistryError::BadRequest(
                "a push names a tag, not a digest".into(),
            ));
        };
        match tagged.into_iter().find(|(t, _)| t == want) {
            Some(found) => Ok(vec![found]),
            None => Err(RegistryError::NotFound(format!(
                "tag does not exist: {name}:{want}"
            ))),
        }
    }

    /// Pushes one tag: layers, config, manifest; records the digest.
    async fn push_tag(
        self: &Arc<Self>,
        session: &Session,
        reference: &RemoteReference,
        tag: &str,
        image: &ImageRecord,
        progress: &Progress,
    ) -> Result<Pushed, RegistryError> {
        let uploads = self.layer_uploads(image)?;
        for upload in uploads.iter().rev() {
            layer(progress, &upload.diff_id, LayerState::Preparing);
        }
        let mounts = mount_sources(image, reference);
        self.upload_layers(session, &uploads, &mounts, progress)
            .await?;
        push_config(session, image).await?;
        let (body, media_type) = manifest_for(image, &uploads)?;
        let digest = crate::image::layers::digest(&body);
        let size = body.len() as u64;
        let target = reference.with_target(Target::Tag(tag.to_string()));
        let content_type = media_type
            .parse()
            .expect("a media type is a valid header value");
        session
            .client
            .push_manifest_raw(&target.to_oci(), body, content_type)
            .await
            .map_err(|e| RegistryError::from_oci(e, "Put", &session.manifest_url(tag)))?;
        self.store
            .add_image_digest(&reference.repo_digest(&digest), &image.id)?;
        message(
            progress,
            None,
            format!("{tag}: digest: {digest} size: {size}"),
        );
        let _ = progress.send(ProgressEvent::PushResult {
            tag: tag.to_string(),
            digest: digest.clone(),
            size,
        });
        tracing::info!(image = %image.id, reference = %target, %digest, "image pushed");
        Ok(Pushed {
            tag: tag.to_string(),
            digest,
            size,
        })
    }

    /// The blob to send for each layer, bottom first (gzip preferred).
    fn layer_uploads(&self, image: &ImageRecord) -> Result<Vec<LayerUpload>, RegistryError> {
        image
            .layers
            .iter()
            .map(|(diff_id, _)| {
                let (blob, path) =
                    self.layers
                        .blobs(diff_id)
                        .into_iter()
                        .next()
                        .ok_or_else(|| {
                            RegistryError::Protocol(format!(
                        "layer {diff_id} has no compressed copy to push (it was stored by an \
                         older berth): pull or load the image again"
                    ))
                        })?;
                Ok(LayerUpload {
                    diff_id: diff_id.clone(),
                    blob,
                    path,
                })
            })
            .collect()
    }

    /// Sends the layers, a few at a time (`--max-concurrent-uploads`).
    async fn upload_layers(
        &self,
        session: &Session,
        uploads: &[LayerUpload],
        mounts: &[String],
        progress: &Progress,
    ) -> Result<(), RegistryError> {
        let most = self.registry.max_concurrent_uploads.max(1);
        let slots = tokio::sync::Semaphore::new(most);
        let mut tasks = Vec::new();
        // dockerd starts from the top layer: the bottom ones wait.
        for (i, upload) in uploads.iter().rev().enumerate() {
            if i >= most {
                layer(progress, &upload.diff_id, LayerState::Waiting);
            }
            let slots = &slots;
            tasks.push(async move {
                let _slot = slots.acquire().await.expect("never closed");
                upload_layer(session, upload, mounts, progress).await
            });
        }
        futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .collect()
    }
}

/// Tries of one layer's upload when the registry fails on its side
/// (dockerd retries too; a distribution registry answers 500 to some
/// concurrent pushes of one blob).
const UPLOAD_ATTEMPTS: u64 = 3;

/// [`upload_once`], again after dockerd's count-down ("Retrying in 5
/// seconds", then 10) when the registry answered a 5xx.
async fn upload_layer(
    session: &Session,
    upload: &LayerUpload,
    mounts: &[String],
    progress: &Progress,
) -> Result<(), RegistryError> {
    let mut attempt = 1;
    loop {
        match upload_once(session, upload, mounts, progress).await {
            Err(RegistryError::Server(why)) if attempt < UPLOAD_ATTEMPTS => {
                tracing::info!(layer = %upload.diff_id, attempt, error = %why, "upload failed; retrying");
                super::download::count_down(progress, &upload.diff_id, 5 * attempt).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Sends one layer, unless the repository has it or can mount it.
async fn upload_once(
    session: &Session,
    upload: &LayerUpload,
    mounts: &[String],
    progress: &Progress,
) -> Result<(), RegistryError> {
    let digest = &upload.blob.digest;
    let url = session.blob_url(digest);
    let exists = session
        .client
        .blob_exists(&session.repo, digest)
        .await
        .map_err(|e| RegistryError::from_oci(e, "Head", &url))?;
    if exists {
        layer(progress, &upload.diff_id, LayerState::LayerAlreadyExists);
        return Ok(());
    }
    for source in mounts {
        let from = oci_client::Reference::with_tag(
            session.repo.registry().to_string(),
            source.clone(),
            "latest".into(),
        );
        // A registry that cannot mount answers 202 (an upload to use
        // instead): that shows here as an error, and the blob is sent.
        if session
            .client
            .mount_blob(&session.repo, &from, digest)
            .await
            .is_ok()
        {
            layer(
                progress,
                &upload.diff_id,
                LayerState::MountedFrom(source.clone()),
            );
            return Ok(());
        }
    }
    let file = tokio::fs::File::open(&upload.path)
        .await
        .map_err(|e| crate::image::ImageError::io(&upload.path, e))?;
    let body = upload_stream(
        file,
        upload.blob.size,
        upload.diff_id.clone(),
        progress.clone(),
    );
    session
        .client
        .push_blob_stream(&session.repo, body, digest, Some(upload.blob.size))
        .await
        .map_err(|e| RegistryError::from_oci(e, "Put", &uploads_url(session)))?;
    layer(progress, &upload.diff_id, LayerState::Pushed);
    Ok(())
}

/// Where uploads of the repository start (what an upload error names).
fn uploads_url(session: &Session) -> String {
    format!("{}{}/blobs/uploads/", session.base_url(), session.path())
}

/// A blob file as an upload body, reporting "Pushing" as it is read.
fn upload_stream(
    file: tokio::fs::File,
    total: u64,
    diff_id: String,
    progress: Progress,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    let start = (file, 0u64, Instant::now() - PROGRESS_EVERY);
    futures_util::stream::unfold(start, move |(mut file, sent, last)| {
        let (diff_id, progress) = (diff_id.clone(), progress.clone());
        async move {
            let mut buf = vec![0u8; READ_CHUNK];
            let n = match file.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => return Some((Err(e.into()), (file, sent, last))),
            };
            buf.truncate(n);
            let sent = sent + n as u64;
            let last = if last.elapsed() >= PROGRESS_EVERY || sent == total {
                let state = LayerState::Pushing {
                    current: sent,
                    total,
                };
                layer(&progress, &diff_id, state);
                Instant::now()
            } else {
                last
            };
            Some((Ok(bytes::Bytes::from(buf)), (file, sent, last)))
        }
    })
}

/// Other repositories of the target's registry that hold this image
/// (from its `RepoDigests`): its blobs can be mounted from there.
fn mount_sources(image: &ImageRecord, target: &RemoteReference) -> Vec<String> {
    let mut sources: Vec<String> = image
        .digests
        .iter()
        .filter_map(|d| RemoteReference::parse(d, "").ok())
        .filter(|r| r.domain == target.domain && r.path != target.path)
        .map(|r| r.path)
        .collect();
    sources.dedup();
    sources
}

/// Sends the image config unless the repository has it.
async fn push_config(session: &Session, image: &ImageRecord) -> Result<(), RegistryError> {
    let exists = session
        .client
        .blob_exists(&session.repo, &image.id)
        .await
        .map_err(|e| RegistryError::from_oci(e, "Head", &session.blob_url(&image.id)))?;
    if !exists {
        session
            .client
            .push_blob(&session.repo, image.config.clone(), &image.id)
            .await
            .map_err(|e| RegistryError::from_oci(e, "Put", &uploads_url(session)))?;
    }
    Ok(())
}

/// A descriptor in the field order Docker writes (so a manifest berth
/// writes for the same blobs has the bytes, hence the digest, dockerd's
/// has).
#[derive(Serialize)]
struct PushDescriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    size: u64,
    digest: &'a str,
}

#[derive(Serialize)]
struct PushManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: PushDescriptor<'a>,
    layers: Vec<PushDescriptor<'a>>,
}

/// The manifest bytes and media type: Docker schema 2 when every layer
/// goes as gzip (what dockerd pushes), else OCI (zstd and plain tar
/// layers have no Docker media type). Indented with three spaces, as
/// dockerd's `json.MarshalIndent` writes it.
fn manifest_for(
    image: &ImageRecord,
    uploads: &[LayerUpload],
) -> Result<(Vec<u8>, &'static str), RegistryError> {
    let docker = uploads
        .iter()
        .all(|u| u.blob.compression == Compression::Gzip);
    let (media_type, config_type) = if docker {
        (manifest::DOCKER_MANIFEST, manifest::DOCKER_CONFIG)
    } else {
        (manifest::OCI_MANIFEST, manifest::OCI_CONFIG)
    };
    let layers = uploads
        .iter()
        .map(|u| PushDescriptor {
            media_type: layer_media_type(u.blob.compression, docker),
            size: u.blob.size,
            digest: &u.blob.digest,
        })
        .collect();
    let doc = PushManifest {
        schema_version: 2,
        media_type,
        config: PushDescriptor {
            media_type: config_type,
            size: image.config.len() as u64,
            digest: &image.id,
        },
        layers,
    };
    let mut body = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut writer = serde_json::Serializer::with_formatter(&mut body, formatter);
    doc.serialize(&mut writer)
        .map_err(|e| RegistryError::Protocol(format!("writing the manifest: {e}")))?;
    Ok((body, media_type))
}

/// A layer's media type in a Docker or an OCI manifest.
fn layer_media_type(compression: Compression, docker: bool) -> &'static str {
    match (compression, docker) {
        (Compression::Gzip, true) => manifest::DOCKER_LAYER,
        (Compression::Gzip, false) => manifest::OCI_LAYER_GZIP,
        (Compression::Zstd, _) => manifest::OCI_LAYER_ZSTD,
        (Compression::None, _) => manifest::OCI_LAYER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(layers: usize) -> ImageRecord {
        ImageRecord {
            id: format!("sha256:{}", "c".repeat(64)),
            created_at: 0,
            size: 0,
            config: b"{}".to_vec(),
            layers: (0..layers)
                .map(|i| (format!("sha256:{i:064}"), 1))
                .collect(),
            tags: vec![],
            digests: vec![
                format!("127.0.0.1:5000/other@sha256:{}", "a".repeat(64)),
                format!("127.0.0.1:5000/app@sha256:{}", "b".repeat(64)),
                format!("example.com/third@sha256:{}", "d".repeat(64)),
            ],
        }
    }

    fn upload(i: usize, compression: Compression) -> LayerUpload {
        LayerUpload {
            diff_id: format!("sha256:{i:064}"),
            blob: LayerBlob {
                digest: format!("sha256:{:064}", i + 100),
                size: 10 + i as u64,
                compression,
            },
            path: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn gzip_layers_make_a_docker_manifest_in_dockers_layout() {
        let (body, kind) =
            manifest_for(&image(1), &[upload(0, Compression::Gzip)]).expect("manifest");
        assert_eq!(kind, manifest::DOCKER_MANIFEST);
        let text = String::from_utf8(body).expect("utf-8");
        let expected = format!(
            "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{}\",\n   \"config\": {{\n      \
             \"mediaType\": \"{}\",\n      \"size\": 2,\n      \"digest\": \"sha256:{}\"\n   }},\n   \
             \"layers\": [\n      {{\n         \"mediaType\": \"{}\",\n         \"size\": 10,\n         \
             \"digest\": \"sha256:{:064}\"\n      }}\n   ]\n}}",
            manifest::DOCKER_MANIFEST,
            manifest::DOCKER_CONFIG,
            "c".repeat(64),
            manifest::DOCKER_LAYER,
            100
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn a_zstd_layer_makes_an_oci_manifest() {
        let uploads = [upload(0, Compression::Gzip), upload(1, Compression::Zstd)];
        let (body, kind) = manifest_for(&image(2), &uploads).expect("manifest");
        assert_eq!(kind, manifest::OCI_MANIFEST);
        let doc: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(doc["config"]["mediaType"], manifest::OCI_CONFIG);
        assert_eq!(doc["layers"][0]["mediaType"], manifest::OCI_LAYER_GZIP);
        assert_eq!(doc["layers"][1]["mediaType"], manifest::OCI_LAYER_ZSTD);
    }

    #[test]
    fn mounts_come_from_other_repositories_of_the_same_registry() {
        let target = RemoteReference::parse("127.0.0.1:5000/app", "1").expect("reference");
        assert_eq!(mount_sources(&image(1), &target), vec!["other".to_string()]);
    }
}
