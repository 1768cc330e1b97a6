//! Copy-up: image content at a volume's mount point is copied into the
//! volume when a container is created, if the volume is empty, not asked
//! with `nocopy`, and has never been populated before. One-shot per volume
//! (as Podman), not "whenever empty" (as Docker): a volume a user emptied on
//! purpose is not silently refilled. See ARCHITECTURE.md.

use std::os::fd::AsRawFd;

use super::{ContainerError, ContainerService, MountPoint};
use crate::store::ImageRecord;

impl ContainerService {
    /// Copies image content into each eligible volume of a new container.
    pub(super) fn copy_up(
        &self,
        id: &str,
        image: &ImageRecord,
        mounts: &[MountPoint],
    ) -> Result<(), ContainerError> {
        let eligible: Vec<&MountPoint> = mounts
            .iter()
            .filter(|m| m.kind == "volume" && m.subpath.is_none())
            .collect();
        let mut pending = Vec::new();
        for m in eligible {
            if self.volumes.copy_up_pending(&m.name)? {
                if m.nocopy {
                    self.volumes.mark_populated(&m.name)?;
                } else {
                    pending.push(m);
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        let paths = self.paths(id);
        paths.create()?;
        paths.mount_rootfs(&self.images.layer_paths(image))?;
        let result = pending
            .iter()
            .try_for_each(|m| self.copy_up_one(id, &paths.rootfs(), m));
        let unmounted = paths.unmount_rootfs();
        result.and(unmounted)
    }

    fn copy_up_one(
        &self,
        id: &str,
        rootfs: &std::path::Path,
        m: &MountPoint,
    ) -> Result<(), ContainerError> {
        let rel = m.destination.trim_start_matches('/');
        // The image side is resolved without following symlinks: an image
        // whose mount point is a link gets no copy-up rather than a copy of
        // whatever the link names.
        let source = match crate::sys::inroot::open_beneath(rootfs, rel) {
            Ok(fd) => fd,
            Err(_) => {
                return self
                    .volumes
                    .mark_populated(&m.name)
                    .map(|_| ())
                    .map_err(Into::into)
            }
        };
        let source_path = format!("/proc/self/fd/{}", source.as_raw_fd());
        if !std::fs::metadata(&source_path).is_ok_and(|meta| meta.is_dir()) {
            self.volumes.mark_populated(&m.name)?;
            return Ok(());
        }
        let mount_id = format!("copyup-{id}");
        let target = self.volumes.mount(&m.name, &mount_id)?;
        let empty = std::fs::read_dir(&target)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        let copied = if empty {
            crate::sys::copy::copy_tree(std::path::Path::new(&source_path), &target).map_err(|e| {
                ContainerError::io(format!("copying image content into volume {}", m.name), e)
            })
        } else {
            Ok(0)
        };
        self.volumes.unmount(&m.name, &mount_id)?;
        let bytes = copied?;
        self.volumes.mark_populated(&m.name)?;
        tracing::info!(volume = %m.name, path = %m.destination, bytes, copied = empty, "copy-up decided");
        Ok(())
    }
}
