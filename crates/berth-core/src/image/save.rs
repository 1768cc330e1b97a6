//! `docker save`: images as the archive Docker 25 and later write, an OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) that also
//! holds the `manifest.json` every `docker load` reads. Layers go as
//! uncompressed tars named by their diff IDs, each once however many
//! images share it; they are unpacked from the blob kept beside the layer
//! (the exact bytes its diff ID names: the extracted folder cannot give
//! them back) and checked against the diff ID before they are written.
//!
//! Names are resolved before a byte is written, so an unknown name is an
//! error of its own; a failure after that cuts the stream short.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::registry::manifest::{OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST};
use super::{layers::digest, ImageError, ImageService, Reference};
use crate::store::ImageRecord;

/// One image to save and the names it goes under.
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub image: ImageRecord,
    /// `repo:tag` names (none when it was named by ID).
    pub tags: Vec<String>,
}

impl ImageService {
    /// Resolves `docker save` names: an ID names an image without tags, a
    /// repository without a tag every tag of it, anything else itself.
    pub fn save_items(&self, names: &[String]) -> Result<Vec<SaveItem>, ImageError> {
        let mut items: Vec<SaveItem> = Vec::new();
        for name in names {
            for (image, tag) in self.save_targets(name)? {
                match items.iter_mut().find(|i| i.image.id == image.id) {
                    Some(item) => item.tags.extend(tag),
                    None => items.push(SaveItem {
                        image,
                        tags: tag.into_iter().collect(),
                    }),
                }
            }
        }
        for item in &mut items {
            let mut seen = std::collections::HashSet::new();
            item.tags.retain(|t| seen.insert(t.clone()));
        }
        Ok(items)
    }

    fn save_targets(&self, name: &str) -> Result<Vec<(ImageRecord, Option<String>)>, ImageError> {
        if is_name_only(name) {
            let repo = Reference::parse(name)?.repository;
            let prefix = format!("{repo}:");
            let tagged: Vec<_> = (self.list()?.into_iter())
                .flat_map(|image| {
                    let tags: Vec<String> = (image.tags.iter())
                        .filter(|t| t.starts_with(&prefix))
                        .cloned()
                        .collect();
                    tags.into_iter().map(move |t| (image.clone(), Some(t)))
                })
                .collect();
            if !tagged.is_empty() {
                return Ok(tagged);
            }
        }
        let image = self.resolve(name)?;
        let tag = Reference::parse(name)
            .ok()
            .map(|r| r.to_string())
            .filter(|t| image.tags.contains(t));
        Ok(vec![(image, tag)])
    }

    /// Writes the archive of `items` to `out`; returns the bytes written.
    pub fn save(&self, items: &[SaveItem], out: impl Write) -> Result<u64, ImageError> {
        let mut archive = tar::Builder::new(CountingWriter {
            inner: out,
            bytes: 0,
        });
        let mut written: HashSet<String> = HashSet::new();
        let mut manifests = Vec::new();
        let mut index = Vec::new();
        for item in items {
            let (entry, descriptors) = self.save_image(&mut archive, item, &mut written)?;
            manifests.push(entry);
            index.extend(descriptors);
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index});
        add_json(&mut archive, "index.json", &index)?;
        add_json(&mut archive, "manifest.json", &Value::Array(manifests))?;
        add_file(
            &mut archive,
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let mut out = archive.into_inner().map_err(save_io)?;
        out.flush().map_err(save_io)?;
        Ok(out.bytes)
    }

    /// Writes one image's blobs; returns its `manifest.json` entry and
    /// its `index.json` descriptors (one per tag, or one untagged).
    fn save_image<W: Write>(
        &self,
        archive: &mut tar::Builder<W>,
        item: &SaveItem,
        written: &mut HashSet<String>,
    ) -> Result<(Value, Vec<Value>), ImageError> {
        let image = &item.image;
        add_blob(archive, &image.id, &image.config, written)?;
        let mut layers = Vec::new();
        let mut paths = Vec::new();
        for (diff_id, _) in &image.layers {
            let size = self.save_layer(archive, diff_id, written)?;
            layers.push(json!({"mediaType": OCI_LAYER, "digest": diff_id, "size": size}));
            paths.push(blob_path(diff_id));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": image.id, "size": image.config.len()},
            "layers": layers,
        });
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::BadArchive(e.to_string()))?;
        let manifest_digest = digest(&bytes);
        add_blob(archive, &manifest_digest, &bytes, written)?;
        let entry = json!({
            "Config": blob_path(&image.id),
            "RepoTags": (!item.tags.is_empty()).then_some(&item.tags),
            "Layers": paths,
        });
        let descriptor = |annotations: Value| {
            json!({"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": bytes.len(),
                   "annotations": annotations})
        };
        let descriptors = if item.tags.is_empty() {
            vec![descriptor(json!({}))]
        } else {
            (item.tags.iter())
                .map(|t| descriptor(tag_annotations(t)))
                .collect()
        };
        Ok((entry, descriptors))
    }

    /// Writes a layer's tar (once per archive); returns its size.
    fn save_layer<W: Write>(
        &self,
        archive: &mut tar::Builder<W>,
        diff_id: &str,
        written: &mut HashSet<String>,
    ) -> Result<u64, ImageError> {
        let (_, path) = self.layers.blobs(diff_id).into_iter().next().ok_or_else(|| {
            ImageError::BadArchive(format!(
                "layer {diff_id} has no stored copy to save (it was stored by an older berth): pull or load the image again"
            ))
        })?;
        let open = || -> Result<Box<dyn Read>, ImageError> {
            let file = std::fs::File::open(&path).map_err(|e| ImageError::io(&path, e))?;
            Ok(crate::archive::decompress(file)?)
        };
        // First pass: the size a tar header needs, and the diff ID check.
        let mut hasher = Sha256::new();
        let size =
            std::io::copy(&mut open()?, &mut hasher).map_err(|e| ImageError::io(&path, e))?;
        if format!("sha256:{}", hex::encode(hasher.finalize())) != diff_id {
            return Err(ImageError::BadArchive(format!(
                "the stored copy of layer {diff_id} does not match its digest"
            )));
        }
        if written.insert(diff_id.to_string()) {
            let mut header = blob_header(size);
            archive
                .append_data(&mut header, blob_path(diff_id), open()?.take(size))
                .map_err(save_io)?;
        }
        Ok(size)
    }
}

/// Whether a name is a repository alone (no tag, digest or ID): `docker
/// save busybox` saves every tag of it.
fn is_name_only(name: &str) -> bool {
    let hexish = name.len() >= 12 && name.bytes().all(|b| b.is_ascii_hexdigit());
    !super::registry::name::names_a_tag(name) && !name.contains('@') && !hexish
}

/// containerd's and OCI's names for a tag in `index.json`.
fn tag_annotations(tag: &str) -> Value {
    let reference = Reference::parse(tag).ok();
    let full = reference.as_ref().map_or_else(
        || tag.to_string(),
        |r| {
            let repo = &r.repository;
            let first = repo.split('/').next().unwrap_or_default();
            let has_domain = repo.contains('/')
                && (first.contains('.') || first.contains(':') || first == "localhost");
            match (has_domain, repo.contains('/')) {
                (true, _) => format!("{repo}:{}", r.tag),
                (false, true) => format!("docker.io/{repo}:{}", r.tag),
                (false, false) => format!("docker.io/library/{repo}:{}", r.tag),
            }
        },
    );
    let short = reference.map(|r| r.tag).unwrap_or_default();
    let mut map = BTreeMap::new();
    map.insert("io.containerd.image.name", full);
    map.insert("org.opencontainers.image.ref.name", short);
    json!(map)
}

/// `blobs/sha256/<hex>` for a digest.
fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

fn blob_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o444);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// A small blob (config, manifest), once per archive.
fn add_blob<W: Write>(
    archive: &mut tar::Builder<W>,
    digest: &str,
    bytes: &[u8],
    written: &mut HashSet<String>,
) -> Result<(), ImageError> {
    if written.insert(digest.to_string()) {
        add_file(archive, &blob_path(digest), bytes)?;
    }
    Ok(())
}

fn add_json<W: Write>(
    archive: &mut tar::Builder<W>,
    name: &str,
    value: &Value,
) -> Result<(), ImageError> {
    let bytes = serde_json::to_vec(value).map_err(|e| ImageError::BadArchive(e.to_string()))?;
    add_file(archive, name, &bytes)
}

fn add_file<W: Write>(
    archive: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> Result<(), ImageError> {
    let mut header = blob_header(bytes.len() as u64);
    archive
        .append_data(&mut header, name, bytes)
        .map_err(save_io)
}

fn save_io(e: std::io::Error) -> ImageError {
    ImageError::io(std::path::Path::new("the save archive"), e)
}

/// A writer that counts what passes.
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_alone_is_name_only() {
        assert!(is_name_only("busybox"));
        assert!(is_name_only("127.0.0.1:5000/app"));
        assert!(!is_name_only("busybox:1"));
        assert!(!is_name_only("app@sha256:abc"));
        assert!(!is_name_only("0123456789abcdef"));
    }

    #[test]
    fn tags_get_containerds_full_names() {
        let a = tag_annotations("busybox:1");
        assert_eq!(a["io.containerd.image.name"], "docker.io/library/busybox:1");
        assert_eq!(a["org.opencontainers.image.ref.name"], "1");
        let b = tag_annotations("127.0.0.1:5000/app:v2");
        assert_eq!(b["io.containerd.image.name"], "127.0.0.1:5000/app:v2");
        let c = tag_annotations("team/app:v2");
        assert_eq!(c["io.containerd.image.name"], "docker.io/team/app:v2");
    }
}
