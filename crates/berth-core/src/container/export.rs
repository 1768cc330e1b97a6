//! `docker export`: a container's root filesystem (image and changes, no
//! volumes or binds) as one tar stream. A running container's mounted
//! root is read as it is; a stopped one's is put together read-only for
//! the export alone (its upper folder as the top lower layer of an overlay
//! without an upper), so an export never holds the folders a start needs
//! and never writes to the container.

use std::io::Write;
use std::path::PathBuf;

use super::{ContainerError, ContainerService, Status};
use crate::sys::mount;

impl ContainerService {
    /// Writes the container's root filesystem to `out`; returns the bytes
    /// of file data written.
    pub fn export(&self, name_or_id: &str, out: impl Write) -> Result<u64, ContainerError> {
        let record = self.resolve(name_or_id)?;
        let paths = self.paths(&record.id);
        let io = |e| ContainerError::io(format!("exporting container {}", record.id), e);
        if record.state.status == Status::Running && mount::is_mounted(&paths.rootfs()) {
            return crate::archive::write_tree(&paths.rootfs(), out, &|_| false).map_err(io);
        }
        let image = self.images.resolve(&record.image_id)?;
        let mut lowers = vec![paths.upper()];
        lowers.extend(self.images.layer_paths(&image).into_iter().rev());
        let name = format!("export-{}", &crate::volume::names::random_id()[..12]);
        let view = ReadOnlyView::mount(paths.dir().join(name), &lowers).map_err(io)?;
        let written = crate::archive::write_tree(&view.target, out, &|_| false).map_err(io);
        drop(view);
        self.publish("export", &record, &[]);
        written
    }
}

/// A read-only overlay of folders (top first), unmounted and removed on
/// drop.
struct ReadOnlyView {
    target: PathBuf,
}

impl ReadOnlyView {
    fn mount(target: PathBuf, lowers: &[PathBuf]) -> std::io::Result<Self> {
        std::fs::create_dir_all(&target)?;
        let view = ReadOnlyView { target };
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        // An overlay needs two lower folders at least without an upper.
        let mut lower = lower;
        if lower.len() == 1 {
            let empty = view.target.with_extension("empty");
            std::fs::create_dir_all(&empty)?;
            lower.push(empty.display().to_string());
        }
        let options = format!("ro,lowerdir={}", lower.join(":"));
        mount::mount("overlay", &view.target, "overlay", &options)?;
        Ok(view)
    }
}

impl Drop for ReadOnlyView {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %self.target.display(), error = %e, "could not unmount an export view");
        }
        let _ = std::fs::remove_dir(&self.target);
        let _ = std::fs::remove_dir(self.target.with_extension("empty"));
    }
}
