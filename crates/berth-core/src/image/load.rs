//! `docker load`: the archive `docker save` writes — `manifest.json` with
//! config and layer tars (all Docker versions), or only an OCI layout
//! (`index.json` + `blobs/sha256/…`). The archive is unpacked into a
//! private scratch folder first (with the same checks as a layer), then
//! every file it names is opened with a containment check.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ImageError;
use crate::archive::extract::{sanitize, unpack};

/// One image to import from an unpacked archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveImage {
    /// Path of the config file inside the archive.
    pub config: PathBuf,
    /// Layer tar paths, bottom first.
    pub layers: Vec<PathBuf>,
    /// `repo:tag` names to give it.
    pub tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciDescriptor {
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct OciManifest {
    config: OciDescriptor,
    layers: Vec<OciDescriptor>,
}

/// Unpacks `input` into `dest` (plain files; no whiteout conversion).
pub fn unpack_archive(input: impl Read, dest: &Path) -> Result<(), ImageError> {
    let mut archive = tar::Archive::new(crate::archive::TarGuard::new(input));
    unpack(&mut archive, dest, false)?;
    Ok(())
}

/// The images an unpacked archive holds.
pub fn read_images(root: &Path) -> Result<Vec<ArchiveImage>, ImageError> {
    if root.join("manifest.json").exists() {
        let entries: Vec<ManifestEntry> = read_json(root, "manifest.json")?;
        return Ok(entries
            .into_iter()
            .map(|e| ArchiveImage {
                config: PathBuf::from(e.config),
                layers: e.layers.into_iter().map(PathBuf::from).collect(),
                tags: e.repo_tags.unwrap_or_default(),
            })
            .collect());
    }
    if root.join("index.json").exists() {
        return read_oci(root);
    }
    Err(ImageError::BadArchive(
        "no manifest.json or index.json in the archive".into(),
    ))
}

fn read_oci(root: &Path) -> Result<Vec<ArchiveImage>, ImageError> {
    let index: OciIndex = read_json(root, "index.json")?;
    let mut out = Vec::new();
    for desc in index.manifests {
        let manifest: OciManifest = read_json(root, &blob_path(&desc.digest)?)?;
        let tag = desc
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| desc.annotations.get("org.opencontainers.image.ref.name"))
            .cloned();
        out.push(ArchiveImage {
            config: PathBuf::from(blob_path(&manifest.config.digest)?),
            layers: manifest
                .layers
                .iter()
                .map(|l| blob_path(&l.digest).map(PathBuf::from))
                .collect::<Result<_, _>>()?,
            tags: tag.into_iter().collect(),
        });
    }
    Ok(out)
}

fn blob_path(digest: &str) -> Result<String, ImageError> {
    match digest.split_once(':') {
        Some((algo, hex)) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("blobs/{algo}/{hex}"))
        }
        _ => Err(ImageError::BadArchive(format!("bad digest {digest:?}"))),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(root: &Path, rel: &str) -> Result<T, ImageError> {
    let file = open_inside(root, Path::new(rel))?;
    serde_json::from_reader(file).map_err(|e| ImageError::BadArchive(format!("{rel}: {e}")))
}

/// Opens `rel` under `root`, following links only if they stay inside.
pub fn open_inside(root: &Path, rel: &Path) -> Result<File, ImageError> {
    let path = root.join(sanitize(rel)?);
    let real = path.canonicalize().map_err(|_| {
        ImageError::BadArchive(format!("{} is missing from the archive", rel.display()))
    })?;
    let real_root = root.canonicalize().map_err(|e| ImageError::io(root, e))?;
    if !real.starts_with(&real_root) {
        return Err(ImageError::HostileArchive(format!(
            "{} points outside the archive",
            rel.display()
        )));
    }
    File::open(&real).map_err(|e| ImageError::io(&real, e))
}
