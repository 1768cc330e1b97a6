//! `docker export`: a container's root filesystem (image and changes, no
//! volumes or binds) as one tar stream. A running container's mounted
//! root is read as it is; a stopped one's is put together read-only for
//! the export alone (its upper folder as the top lower layer of an overlay
//! without an upper), so an export never holds the folders a start needs
//! and never writes to the container.

use std::io::Write;

use super::view::ReadOnlyView;
use super::{ContainerError, ContainerRecord, ContainerService, Status};
use crate::sys::mount;

impl ContainerService {
    /// The container again, unless it is being removed or dead (dockerd
    /// refuses to commit or export those).
    pub(super) fn usable_for_image_work(
        &self,
        id: &str,
    ) -> Result<ContainerRecord, ContainerError> {
        let record = self.resolve(id)?;
        if self.removal_in_progress(&record.id)
            || matches!(record.state.status, Status::Removing | Status::Dead)
        {
            return Err(ContainerError::RemovalInProgress(record.id));
        }
        Ok(record)
    }

    /// Writes the container's root filesystem to `out`; returns the bytes
    /// of file data written.
    pub fn export(&self, name_or_id: &str, out: impl Write) -> Result<u64, ContainerError> {
        let record = self.resolve(name_or_id)?;
        let paths = self.paths(&record.id);
        let io = |e| ContainerError::io(format!("exporting container {}", record.id), e);
        if record.state.status == Status::Running && mount::is_mounted(&paths.rootfs()) {
            let written = crate::archive::write_contents(&paths.rootfs(), out).map_err(io)?;
            self.publish("export", &record, &[]);
            return Ok(written);
        }
        // A stopped container's folders are read: no start or remove
        // meanwhile (both take this lock).
        let _guard = self.locks.lock(&record.id);
        let record = self.usable_for_image_work(&record.id)?;
        let image = self.images.resolve(&record.image_id)?;
        let mut lowers = vec![paths.upper()];
        lowers.extend(self.images.layer_paths(&image).into_iter().rev());
        let views = super::view::views_dir(&self.settings.containers_dir);
        let view = ReadOnlyView::mount(&views, "export", &lowers).map_err(io)?;
        let written = crate::archive::write_contents(view.root(), out).map_err(io)?;
        drop(view);
        self.publish("export", &record, &[]);
        Ok(written)
    }
}
