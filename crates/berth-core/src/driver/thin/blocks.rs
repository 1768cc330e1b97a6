//! Block-level copies of thin volumes (`volume migrate`): what a snapshot
//! changed since an older one (FIEMAP of the two reflinked images), and
//! receiving such changes into a staged image that replaces the volume's
//! only when whole.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use super::{io, ThinDriver};
use crate::driver::{BlockSource, DriverError, StagedImage};
use crate::sys::extents::{diff, fiemap};
use crate::sys::{mount, reflink};

fn open_existing(
    path: &std::path::Path,
    what: impl FnOnce() -> DriverError,
) -> Result<File, DriverError> {
    match File::open(path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(what()),
        Err(e) => Err(io(format!("opening {}", path.display()), e)),
    }
}

impl ThinDriver {
    fn snapshot_file(&self, name: &str, snap: &str) -> Result<File, DriverError> {
        let path = self.snapshot_image(name, snap);
        open_existing(&path, || super::extended::no_such_snapshot(name, snap))
    }

    fn staged_image(&self, name: &str) -> PathBuf {
        // `*.tmp`: start-up deletes one a crash left.
        self.image(name).with_extension("img.receive.tmp")
    }

    /// The ranges where `snap` of `name` differs from its snapshot `since`
    /// (or from zeros), and `snap`'s image opened for reading.
    pub(super) fn block_source(
        &self,
        name: &str,
        snap: &str,
        since: Option<&str>,
    ) -> Result<BlockSource, DriverError> {
        let image = self.snapshot_file(name, snap)?;
        let size = image
            .metadata()
            .map_err(|e| io("reading the snapshot", e))?
            .len();
        let new = fiemap(&image).map_err(|e| io("mapping the snapshot's blocks", e))?;
        let old = match since {
            Some(base) => fiemap(&self.snapshot_file(name, base)?)
                .map_err(|e| io("mapping the base snapshot's blocks", e))?,
            None => Vec::new(),
        };
        Ok(BlockSource {
            changes: diff(&new, &old, size),
            image,
            size,
        })
    }

    /// Whether the volume's image may differ from its snapshot `snap`.
    pub(super) fn image_changed_since(&self, name: &str, snap: &str) -> Result<bool, DriverError> {
        let image = open_existing(&self.image(name), || DriverError::NoSuchVolume)?;
        let base = self.snapshot_file(name, snap)?;
        let size = image
            .metadata()
            .map_err(|e| io("reading the image", e))?
            .len();
        if base
            .metadata()
            .map_err(|e| io("reading the snapshot", e))?
            .len()
            != size
        {
            return Ok(true);
        }
        let now = fiemap(&image).map_err(|e| io("mapping the image's blocks", e))?;
        let then = fiemap(&base).map_err(|e| io("mapping the snapshot's blocks", e))?;
        Ok(!diff(&now, &then, size).is_empty())
    }

    /// A staged image to receive changes into: a clone of snapshot `base`,
    /// or an empty (sparse) image; either way the size of the volume's
    /// image now (a base from before a resize is grown to it: the grown
    /// part reads as zeros, as a grown image does).
    pub(super) fn stage(&self, name: &str, base: Option<&str>) -> Result<StagedImage, DriverError> {
        let size = std::fs::metadata(self.image(name))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DriverError::NoSuchVolume,
                _ => io("reading the image", e),
            })?
            .len();
        let path = self.staged_image(name);
        let _ = std::fs::remove_file(&path);
        if let Some(snap) = base {
            drop(self.snapshot_file(name, snap)?);
            let from = self.snapshot_image(name, snap);
            reflink::clone_file(&from, &path).map_err(|e| io("cloning the base snapshot", e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("opening the staged image", e))?;
        // Owned from here: dropped on any error below, the file goes.
        let staged = StagedImage::new(file, path, size);
        let len = (staged.file().metadata())
            .map_err(|e| io("reading the staged image", e))?
            .len();
        if len > size {
            return Err(DriverError::InvalidOption(format!(
                "snapshot {} is larger than volume {name} ({len} > {size} bytes): it was shrunk?",
                base.unwrap_or_default()
            )));
        }
        (staged.file().set_len(size)).map_err(|e| io("sizing the staged image", e))?;
        Ok(staged)
    }

    /// Makes `staged` the volume's image, keeping it as snapshot `snap`
    /// too (the base of the next copy). The snapshot is made first, from
    /// the staged image, so a refusal (the name is taken, the pool is
    /// full) changes nothing; the rename over the image is the commit.
    /// Refused while the volume is mounted.
    pub(super) fn install(
        &self,
        name: &str,
        staged: StagedImage,
        snap: &str,
    ) -> Result<(), DriverError> {
        if mount::is_mounted(&self.mountpoint(name)) {
            return Err(DriverError::Unsupported(format!(
                "volume {name} is mounted; stop the containers using it first"
            )));
        }
        self.refuse_if_alive_elsewhere(name)?;
        staged
            .file()
            .sync_all()
            .map_err(|e| io("syncing the received image", e))?;
        let target = self.snapshot_image(name, snap);
        if target.exists() {
            return Err(DriverError::InvalidOption(format!(
                "volume {name} already has a snapshot {snap}"
            )));
        }
        std::fs::create_dir_all(self.snapshot_dir(name))
            .map_err(|e| io("creating the snapshot folder", e))?;
        let snap_staged = target.with_extension("img.tmp");
        let _ = std::fs::remove_file(&snap_staged);
        reflink::clone_file(staged.path(), &snap_staged)
            .map_err(|e| io("cloning the received image", e))?;
        crate::driver::rename_durable(&snap_staged, &target).inspect_err(|_| {
            let _ = std::fs::remove_file(&snap_staged);
        })?;
        let path = staged.into_path();
        replace_durable(&path, &self.image(name)).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&target);
        })
    }
}

/// `rename(from, to)` replacing `to`, then the folder synced.
fn replace_durable(from: &std::path::Path, to: &std::path::Path) -> Result<(), DriverError> {
    std::fs::rename(from, to).map_err(|e| io("replacing the volume image", e))?;
    match to.parent() {
        Some(dir) => crate::driver::sync_dir(dir),
        None => Ok(()),
    }
}
