//! Copy-up: image content at a volume's mount point is copied into the
//! volume when a container is created, if the volume is empty, not asked
//! with `nocopy`, and has never been populated before. One-shot per volume
//! (as Podman), not "whenever empty" (as Docker): a volume a user emptied on
//! purpose is not silently refilled. See ARCHITECTURE.md.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

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

    /// Copies the image's folder at one mount point into its volume if the
    /// volume is empty, then marks the volume populated either way.
    fn copy_up_one(&self, id: &str, rootfs: &Path, m: &MountPoint) -> Result<(), ContainerError> {
        let Some(source) = image_folder(rootfs, &m.destination) else {
            self.volumes.mark_populated(&m.name)?;
            return Ok(());
        };
        // An operation's id, not a container's: after a crash during the
        // copy, start-up drops it instead of replaying it as a container
        // mount that nothing would ever release.
        let mount_id = format!("{}copyup-{id}", crate::volume::OPERATION_MOUNT_PREFIX);
        let target = self.volumes.mount(&m.name, &mount_id)?;
        let copied = copy_if_empty(&fd_path(&source), &target, &m.name);
        self.volumes.unmount(&m.name, &mount_id)?;
        let copied = copied?;
        self.volumes.mark_populated(&m.name)?;
        tracing::info!(volume = %m.name, path = %m.destination, bytes = copied.unwrap_or(0), copied = copied.is_some(), "copy-up decided");
        Ok(())
    }
}

/// The image's folder at mount point `destination`, opened without
/// following symlinks: an image whose mount point is a link gets no
/// copy-up rather than a copy of whatever the link names. `None` also for
/// a missing path or one that is not a folder.
fn image_folder(rootfs: &Path, destination: &str) -> Option<OwnedFd> {
    let rel = destination.trim_start_matches('/');
    let folder = crate::sys::inroot::open_beneath(rootfs, rel).ok()?;
    let is_dir = std::fs::metadata(fd_path(&folder)).is_ok_and(|meta| meta.is_dir());
    is_dir.then_some(folder)
}

/// The path that names an open descriptor (the descriptor must stay open
/// while the path is used).
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Copies `source` into the mounted volume at `target` if the volume is
/// empty; returns the bytes copied, or `None` when it was not empty.
fn copy_if_empty(
    source: &Path,
    target: &Path,
    volume: &str,
) -> Result<Option<u64>, ContainerError> {
    let empty = std::fs::read_dir(target)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty {
        return Ok(None);
    }
    crate::sys::copy::copy_tree(source, target)
        .map(Some)
        .map_err(|e| ContainerError::io(format!("copying image content into volume {volume}"), e))
}
