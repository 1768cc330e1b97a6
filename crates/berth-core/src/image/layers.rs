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
    layers_dir: PathBuf,
    tmp_dir: PathBuf,
}

impl LayerStore {
    /// A store over `images_dir` (creates its sub-folders).
    pub fn new(images_dir: &Path) -> Result<Self, ImageError> {
        let store = LayerStore {
            layers_dir: images_dir.join("layers"),
            tmp_dir: images_dir.join("tmp"),
        };
        for dir in [&store.layers_dir, &store.tmp_dir] {
            std::fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
        }
        Ok(store)
    }

    /// The folder of layer `diff_id`.
    pub fn path(&self, diff_id: &str) -> PathBuf {
        self.layers_dir.join(diff_id.trim_start_matches("sha256:"))
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
    /// diff ID. A layer already stored is kept and the new copy dropped.
    pub fn add(&self, input: impl Read) -> Result<StoredLayer, ImageError> {
        let scratch = self.scratch_dir()?;
        let staging = scratch.path().join("layer");
        std::fs::create_dir(&staging).map_err(|e| ImageError::io(&staging, e))?;
        let mut hashing = HashingReader::new(crate::archive::decompress(input)?);
        let guarded = crate::archive::TarGuard::new(&mut hashing);
        crate::archive::extract::unpack(&mut tar::Archive::new(guarded), &staging, true)?;
        // Digest the whole stream, tar padding included.
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(|e| ImageError::io(&staging, e))?;
        let diff_id = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
        // Docker's layer size is what its overlay2 driver measures after
        // extraction (directory.Size: symlinks and all, hard links once),
        // not the tar's regular-file bytes.
        let size =
            crate::sys::usage::dir_size(&staging).map_err(|e| ImageError::io(&staging, e))?;
        let final_dir = self.path(&diff_id);
        if !final_dir.exists() {
            std::fs::rename(&staging, &final_dir).map_err(|e| ImageError::io(&final_dir, e))?;
        }
        Ok(StoredLayer { diff_id, size })
    }

    /// Deletes layer `diff_id`'s folder. Idempotent.
    pub fn remove(&self, diff_id: &str) -> Result<bool, ImageError> {
        let dir = self.path(diff_id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ImageError::io(&dir, e)),
        }
    }

    /// Diff IDs of every layer folder present.
    pub fn list(&self) -> Result<Vec<String>, ImageError> {
        let entries =
            std::fs::read_dir(&self.layers_dir).map_err(|e| ImageError::io(&self.layers_dir, e))?;
        Ok(entries
            .flatten()
            .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
            .collect())
    }

    /// Removes leftovers of interrupted work. Returns how many.
    pub fn clean_tmp(&self) -> Result<usize, ImageError> {
        let entries =
            std::fs::read_dir(&self.tmp_dir).map_err(|e| ImageError::io(&self.tmp_dir, e))?;
        let mut n = 0;
        for entry in entries.flatten() {
            std::fs::remove_dir_all(entry.path()).map_err(|e| ImageError::io(&entry.path(), e))?;
            n += 1;
        }
        Ok(n)
    }
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
