//! Content-addressed layer store: each layer extracted once, in
//! `<root>/images/layers/<diff-id hex>/`, named by the sha256 of its
//! uncompressed tar. Extraction goes to a private temporary folder that is
//! renamed into place only when complete, so a crash never leaves a
//! half-extracted layer under its final name.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ImageError;

/// A layer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLayer {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Apparent size of the extracted entries (moby's `directory.Size`).
    pub size: u64,
}

/// Layers under one root.
#[derive(Debug, Clone)]
pub struct LayerStore {
    /// Layers a pull is working with, and by how many pulls: such a layer
    /// may be on disk before any image records it, and must not be
    /// deleted under the pull (by an image delete or a failed pull).
    leases: std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<String, usize>>>,
    layers_dir: PathBuf,
    blobs_dir: PathBuf,
    tmp_dir: PathBuf,
}

/// Layers held by one pull; released on drop.
#[derive(Debug)]
pub struct LayerLease {
    store: LayerStore,
    diff_ids: Vec<String>,
}

impl Drop for LayerLease {
    fn drop(&mut self) {
        let mut leases = self.store.leases.lock();
        for id in &self.diff_ids {
            if let Some(count) = leases.get_mut(id) {
                *count -= 1;
                if *count == 0 {
                    leases.remove(id);
                }
            }
        }
    }
}

/// How a layer blob is compressed (its file name's extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn extension(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    fn from_extension(ext: &str) -> Option<Self> {
        match ext {
            "tar" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// A layer as a registry holds it: its compressed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// `sha256:<hex>` of the blob's bytes.
    pub digest: String,
    pub size: u64,
    pub compression: Compression,
}

impl LayerStore {
    /// A store over `images_dir` (creates its sub-folders).
    pub fn new(images_dir: &Path) -> Result<Self, ImageError> {
        let store = LayerStore {
            leases: Default::default(),
            layers_dir: images_dir.join("layers"),
            blobs_dir: images_dir.join("blobs"),
            tmp_dir: images_dir.join("tmp"),
        };
        for dir in [&store.layers_dir, &store.blobs_dir, &store.tmp_dir] {
            std::fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
        }
        Ok(store)
    }

    /// Holds `diff_ids` for a pull until the returned guard drops.
    pub fn lease(&self, diff_ids: &[String]) -> LayerLease {
        let mut leases = self.leases.lock();
        for id in diff_ids {
            *leases.entry(id.clone()).or_insert(0) += 1;
        }
        LayerLease {
            store: self.clone(),
            diff_ids: diff_ids.to_vec(),
        }
    }

    /// How many pulls hold layer `diff_id`.
    pub fn lease_count(&self, diff_id: &str) -> usize {
        self.leases.lock().get(diff_id).copied().unwrap_or(0)
    }

    /// The folder of layer `diff_id` (a name that is no diff ID maps to
    /// a folder that never exists, never out of the store).
    pub fn path(&self, diff_id: &str) -> PathBuf {
        self.layers_dir.join(id_hex(diff_id))
    }

    /// A fresh private folder for scratch work, removed by the caller (or
    /// by [`LayerStore::clean_tmp`] after a crash).
    pub fn scratch_dir(&self) -> Result<tempfile::TempDir, ImageError> {
        tempfile::Builder::new()
            .prefix("scratch-")
            .tempdir_in(&self.tmp_dir)
            .map_err(|e| ImageError::io(&self.tmp_dir, e))
    }

    /// Extracts a layer tar (plain, gzip or zstd) and stores it under its
    /// diff ID, with a gzip copy of the tar as its blob (what `docker push`
    /// sends and `docker save` unpacks: the exact bytes its diff ID names,
    /// which cannot be rebuilt from the extracted files). A layer already
    /// stored is kept and the new copy dropped.
    pub fn add(&self, input: impl Read) -> Result<(StoredLayer, LayerLease), ImageError> {
        let scratch = self.scratch_dir()?;
        let blob_tmp = scratch.path().join("blob");
        let file = std::fs::File::create(&blob_tmp).map_err(|e| ImageError::io(&blob_tmp, e))?;
        let gzip = flate2::write::GzEncoder::new(
            std::io::BufWriter::with_capacity(256 * 1024, file),
            flate2::Compression::fast(),
        );
        let mut hashing = TeeHasher::new(crate::archive::decompress(input)?, Some(gzip));
        let (stored, lease) = self.extract(&scratch, &mut hashing)?;
        let gzip = hashing.copy.take().expect("copy kept until here");
        gzip.finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_all())
            .map_err(|e| ImageError::io(&blob_tmp, e))?;
        let blob_digest = file_digest(&blob_tmp)?;
        self.keep_blob(&stored.diff_id, &blob_tmp, &blob_digest, Compression::Gzip)?;
        Ok((stored, lease))
    }

    /// Stores a layer from a blob downloaded from a registry (already
    /// checked against `blob_digest`), and keeps the blob itself.
    pub fn add_blob(
        &self,
        blob_file: &Path,
        blob_digest: &str,
        compression: Compression,
    ) -> Result<(StoredLayer, LayerLease), ImageError> {
        let scratch = self.scratch_dir()?;
        let file = std::fs::File::open(blob_file).map_err(|e| ImageError::io(blob_file, e))?;
        let mut hashing = TeeHasher::new(crate::archive::decompress(file)?, None);
        let (stored, lease) = self.extract(&scratch, &mut hashing)?;
        self.keep_blob(&stored.diff_id, blob_file, blob_digest, compression)?;
        Ok((stored, lease))
    }

    /// Extracts a decompressed tar stream into a staging folder of
    /// `scratch`, digests the whole stream, and moves the folder into
    /// place (unless that layer is already there). The layer is leased
    /// before it shows under its name, so a failed pull of the same layer
    /// never deletes it before the caller records it.
    fn extract<R: Read>(
        &self,
        scratch: &tempfile::TempDir,
        hashing: &mut TeeHasher<R>,
    ) -> Result<(StoredLayer, LayerLease), ImageError> {
        let staging = scratch.path().join("layer");
        std::fs::create_dir(&staging).map_err(|e| ImageError::io(&staging, e))?;
        let guarded = crate::archive::TarGuard::new(&mut *hashing);
        crate::archive::extract::unpack(&mut tar::Archive::new(guarded), &staging, true)?;
        // Digest the whole stream, tar padding included.
        std::io::copy(hashing, &mut std::io::sink()).map_err(|e| ImageError::io(&staging, e))?;
        let diff_id = format!("sha256:{}", hex::encode(hashing.hasher.clone().finalize()));
        // Docker's layer size is what its overlay2 driver measures after
        // extraction (directory.Size: symlinks and all, hard links once),
        // not the tar's regular-file bytes.
        let size =
            crate::sys::usage::dir_size(&staging).map_err(|e| ImageError::io(&staging, e))?;
        let lease = self.lease(std::slice::from_ref(&diff_id));
        let final_dir = self.path(&diff_id);
        if !final_dir.exists() {
            if let Err(e) = std::fs::rename(&staging, &final_dir) {
                // Another pull of the same layer may have won the race.
                if !final_dir.is_dir() {
                    return Err(ImageError::io(&final_dir, e));
                }
            }
        }
        Ok((StoredLayer { diff_id, size }, lease))
    }

    /// Moves a blob file in beside its layer (replacing an identical one).
    fn keep_blob(
        &self,
        diff_id: &str,
        file: &Path,
        blob_digest: &str,
        compression: Compression,
    ) -> Result<(), ImageError> {
        let dir = self.blob_dir(diff_id);
        std::fs::create_dir_all(&dir).map_err(|e| ImageError::io(&dir, e))?;
        let name = format!("{}.{}", id_hex(blob_digest), compression.extension());
        std::fs::rename(file, dir.join(&name)).map_err(|e| ImageError::io(&dir.join(name), e))
    }

    /// The folder holding layer `diff_id`'s blobs.
    fn blob_dir(&self, diff_id: &str) -> PathBuf {
        self.blobs_dir.join(id_hex(diff_id))
    }

    /// The blobs kept for layer `diff_id` (gzip first), with their paths.
    pub fn blobs(&self, diff_id: &str) -> Vec<(LayerBlob, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.blob_dir(diff_id)) else {
            return Vec::new();
        };
        let mut blobs: Vec<(LayerBlob, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let (hex, ext) = name.split_once('.')?;
                let blob = LayerBlob {
                    digest: format!("sha256:{hex}"),
                    size: e.metadata().ok()?.len(),
                    compression: Compression::from_extension(ext)?,
                };
                Some((blob, e.path()))
            })
            .collect();
        blobs.sort_by_key(|(b, _)| b.compression != Compression::Gzip);
        blobs
    }

    /// Deletes layer `diff_id`'s folder. Idempotent.
    pub fn remove(&self, diff_id: &str) -> Result<bool, ImageError> {
        if id_hex(diff_id) == NOT_AN_ID {
            return Err(ImageError::BadArchive(format!(
                "{diff_id:?} is not a layer ID"
            )));
        }
        self.check_removable(diff_id)?;
        remove_dir(&self.blob_dir(diff_id))?;
        remove_dir(&self.path(diff_id))
    }

    /// Refuses (nothing deleted) if a filesystem is mounted in the layer's
    /// folder or its blob folder, or the mount table cannot be read.
    pub fn check_removable(&self, diff_id: &str) -> Result<(), ImageError> {
        for dir in [self.blob_dir(diff_id), self.path(diff_id)] {
            refuse_if_mounted(&dir)?;
        }
        Ok(())
    }

    /// Diff IDs of every layer folder or blob folder present.
    pub fn list(&self) -> Result<Vec<String>, ImageError> {
        let mut ids = Vec::new();
        for dir in [&self.layers_dir, &self.blobs_dir] {
            let entries = std::fs::read_dir(dir).map_err(|e| ImageError::io(dir, e))?;
            ids.extend(
                entries
                    .flatten()
                    .map(|e| format!("sha256:{}", e.file_name().to_string_lossy())),
            );
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Removes leftovers of interrupted work. Returns how many.
    pub fn clean_tmp(&self) -> Result<usize, ImageError> {
        let entries =
            std::fs::read_dir(&self.tmp_dir).map_err(|e| ImageError::io(&self.tmp_dir, e))?;
        let mut n = 0;
        for entry in entries.flatten() {
            // A leftover that cannot go (something mounted in it) stays,
            // and the start goes on: it is only scratch.
            match refuse_if_mounted(&entry.path()).and_then(|()| remove_dir(&entry.path())) {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(error = %e, "scratch folder of an image left in place"),
            }
        }
        Ok(n)
    }
}

type GzipFile = flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>>;

/// A reader that hashes what passes through it, and may copy it into a
/// gzip file.
struct TeeHasher<R> {
    inner: R,
    hasher: Sha256,
    copy: Option<GzipFile>,
}

impl<R: Read> TeeHasher<R> {
    fn new(inner: R, copy: Option<GzipFile>) -> Self {
        TeeHasher {
            inner,
            hasher: Sha256::new(),
            copy,
        }
    }
}

impl<R: Read> Read for TeeHasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(copy) = &mut self.copy {
            std::io::Write::write_all(copy, &buf[..n])?;
        }
        Ok(n)
    }
}

/// The file name standing for a name that is no `sha256:<64 hex>` ID.
const NOT_AN_ID: &str = "not-a-layer-id";

/// The 64 hex digits of a `sha256:` ID (also given bare, as folder names
/// are), or [`NOT_AN_ID`]: only these name files in the store.
fn id_hex(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if super::registry::name::is_sha256_hex(hex) {
        hex
    } else {
        NOT_AN_ID
    }
}

/// Deletes a folder and what it holds, never through a mount. Idempotent:
/// whether it existed. Callers refuse a folder with a mount in it first
/// ([`refuse_if_mounted`]), so that nothing of it is deleted.
fn remove_dir(dir: &Path) -> Result<bool, ImageError> {
    crate::sys::remove_tree::remove_tree_same_fs(dir).map_err(|e| ImageError::io(dir, e))
}

/// An error if a filesystem is mounted at or under `dir` (or the mount
/// table cannot be read).
fn refuse_if_mounted(dir: &Path) -> Result<(), ImageError> {
    let mounted = crate::sys::mount::mount_points_under(dir).map_err(|e| ImageError::io(dir, e))?;
    match mounted.first() {
        None => Ok(()),
        Some(point) => {
            let busy = std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                format!("a filesystem is mounted on {}", point.display()),
            );
            Err(ImageError::io(dir, busy))
        }
    }
}

/// `sha256:<hex>` of a file's bytes.
pub fn file_digest(path: &Path) -> Result<String, ImageError> {
    let mut file = std::fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| ImageError::io(path, e))?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_ids_name_files() {
        let hex = "a".repeat(64);
        assert_eq!(id_hex(&format!("sha256:{hex}")), hex);
        assert_eq!(id_hex(&hex), hex);
        for bad in [
            "/etc",
            "sha256:../../../../home",
            "sha256:",
            &"A".repeat(64),
            "..",
            "",
        ] {
            assert_eq!(id_hex(bad), NOT_AN_ID, "{bad}");
        }
    }

    #[test]
    fn removing_a_non_id_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LayerStore::new(dir.path()).expect("store");
        assert!(store.remove("/etc").is_err());
        assert!(store.remove("sha256:../layers").is_err());
        assert!(store.path("/etc").starts_with(dir.path()));
    }
}
