//! Block-level copies of thin volumes (`volume migrate`): what a snapshot
//! changed since an older one (FIEMAP of the two reflinked images), and
//! receiving such changes into a staged image that replaces the volume's
//! only when whole.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use super::ThinDriver;
use crate::driver::{BlockSource, DriverError, StagedImage};
use crate::sys::extents::{diff, fiemap};
use crate::sys::{mount, reflink};

fn io(context: impl Into<String>, e: std::io::Error) -> DriverError {
    DriverError::io(context, e)
}

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
        let path = self.snapshot_dir(name).join(format!("{snap}.img"));
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
    /// or an empty (sparse) image the size of the volume's.
    pub(super) fn stage(&self, name: &str, base: Option<&str>) -> Result<StagedImage, DriverError> {
        let image = self.image(name);
        let size = std::fs::metadata(&image)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DriverError::NoSuchVolume,
                _ => io("reading the image", e),
            })?
            .len();
        let path = self.staged_image(name);
        let _ = std::fs::remove_file(&path);
        match base {
            Some(snap) => {
                drop(self.snapshot_file(name, snap)?);
                let from = self.snapshot_dir(name).join(format!("{snap}.img"));
                reflink::clone_file(&from, &path)
                    .map_err(|e| io("cloning the base snapshot", e))?;
            }
            None => {
                let f = File::create(&path).map_err(|e| io("making the staged image", e))?;
                f.set_len(size)
                    .map_err(|e| io("sizing the staged image", e))?;
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("opening the staged image", e))?;
        Ok(StagedImage::new(file, path, size))
    }

    /// Makes `staged` the volume's image and keeps it as snapshot `snap`
    /// too (the base of the next copy). Refused while the volume is
    /// mounted. The rename is the commit: before it the volume is as it
    /// was, after it the new content is there.
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
        let path = staged.into_path();
        if let Err(e) = replace_durable(&path, &self.image(name)) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        crate::driver::ExtendedDriver::snapshot_create(self, name, snap)
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
