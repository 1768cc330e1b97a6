//! Snapshots, clones and resize of thin volumes. Snapshots and clones are
//! one `FICLONE` of the volume's image (blocks shared copy-on-write inside
//! the XFS pool): milliseconds, whatever the size. A snapshot of a mounted
//! volume freezes its filesystem for the instant of the clone.

use std::path::PathBuf;
use std::process::Command;

use super::pool::{allocated, punch_all};
use super::{io, ThinDriver};
use crate::driver::{DriverError, ExtendedDriver, SnapshotInfo};
use crate::sys::{loopdev, mount, reflink};

pub(super) fn no_such_snapshot(name: &str, snap: &str) -> DriverError {
    DriverError::InvalidOption(format!("volume {name} has no snapshot {snap}"))
}

impl ThinDriver {
    pub(super) fn snapshot_dir(&self, name: &str) -> PathBuf {
        self.pool.root().join("snapshots").join(name)
    }

    /// Moves a volume's image, snapshots and mount point to `new`, each a
    /// rename that a resumed call skips when done. The image goes last: it
    /// is what says which name the volume has, so a crash before it leaves
    /// the volume whole under `old` (and the resumed call moves the rest).
    pub(super) fn rename_storage(&self, old: &str, new: &str) -> Result<(), DriverError> {
        self.pool.ensure()?;
        crate::driver::rename_durable(&self.snapshot_dir(old), &self.snapshot_dir(new))?;
        crate::driver::rename_durable(&self.mountpoint(old), &self.mountpoint(new))?;
        crate::driver::rename_durable(&self.image(old), &self.image(new))
    }

    /// Where [`ExtendedDriver::open_snapshot`] mounts a snapshot: under
    /// the mounts folder, in `.snapshots` (no volume name starts with a
    /// dot, so it never meets a volume's mount point).
    fn snapshot_mountpoint(&self, name: &str, snap: &str) -> PathBuf {
        self.mounts_dir.join(".snapshots").join(name).join(snap)
    }

    pub(super) fn snapshot_image(&self, name: &str, snap: &str) -> PathBuf {
        self.snapshot_dir(name).join(format!("{snap}.img"))
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Result<(), DriverError> {
        match cmd.output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(io(
                what.to_string(),
                std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            )),
            Err(e) => Err(io(what.to_string(), e)),
        }
    }

    /// Removes every snapshot of a volume (its removal).
    pub(super) fn remove_snapshots(&self, name: &str) {
        let dir = self.snapshot_dir(name);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if let Some(snap) = entry.path().file_stem().and_then(|s| s.to_str()) {
                    let _ = self.close_snapshot(name, snap);
                }
                let _ = punch_all(&entry.path());
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

impl ExtendedDriver for ThinDriver {
    fn snapshot_create(&self, name: &str, snap: &str) -> Result<(), DriverError> {
        let image = self.image(name);
        if !image.exists() {
            return Err(DriverError::NoSuchVolume);
        }
        let target = self.snapshot_image(name, snap);
        if target.exists() {
            return Err(DriverError::InvalidOption(format!(
                "volume {name} already has a snapshot {snap}"
            )));
        }
        self.refuse_if_alive_elsewhere(name)?;
        std::fs::create_dir_all(self.snapshot_dir(name))
            .map_err(|e| io("creating the snapshot folder", e))?;
        let mountpoint = self.mountpoint(name);
        // Frozen only for the clone; the guard thaws on every path.
        let _frozen = if mount::is_mounted(&mountpoint) {
            Some(reflink::freeze(&mountpoint).map_err(|e| io("freezing the volume", e))?)
        } else {
            None
        };
        // Staged and renamed: a crash never leaves a partial snapshot.
        let staged = target.with_extension("img.tmp");
        let _ = std::fs::remove_file(&staged);
        reflink::clone_file(&image, &staged).map_err(|e| io("cloning the volume image", e))?;
        drop(_frozen);
        // The clone is fsynced; the rename is made durable too, so an
        // acknowledged snapshot survives a power loss.
        crate::driver::rename_durable(&staged, &target)
    }

    fn snapshot_list(&self, name: &str) -> Result<Vec<SnapshotInfo>, DriverError> {
        let Ok(entries) = std::fs::read_dir(self.snapshot_dir(name)) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<SnapshotInfo> = entries
            .flatten()
            .filter_map(|e| {
                let snap = e
                    .file_name()
                    .to_string_lossy()
                    .strip_suffix(".img")?
                    .to_string();
                let meta = e.metadata().ok()?;
                let created_at = meta
                    .modified()
                    .ok()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs() as i64;
                Some(SnapshotInfo {
                    name: snap,
                    created_at,
                    allocated: allocated(&e.path()),
                })
            })
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(out)
    }

    fn snapshot_remove(&self, name: &str, snap: &str) -> Result<bool, DriverError> {
        let target = self.snapshot_image(name, snap);
        if !target.exists() {
            return Ok(false);
        }
        self.close_snapshot(name, snap)?;
        let _ = punch_all(&target);
        std::fs::remove_file(&target).map_err(|e| io("removing the snapshot", e))?;
        let _ = self.pool.trim();
        Ok(true)
    }

    fn snapshot_restore(&self, name: &str, snap: &str) -> Result<(), DriverError> {
        let source = self.snapshot_image(name, snap);
        if !source.exists() {
            return Err(no_such_snapshot(name, snap));
        }
        if mount::is_mounted(&self.mountpoint(name)) {
            return Err(DriverError::Unsupported(format!(
                "volume {name} is mounted; stop the containers using it first"
            )));
        }
        let image = self.image(name);
        let staged = image.with_extension("img.restore");
        let _ = std::fs::remove_file(&staged);
        reflink::clone_file(&source, &staged).map_err(|e| io("cloning the snapshot", e))?;
        std::fs::rename(&staged, &image).map_err(|e| io("replacing the volume image", e))?;
        let _ = self.pool.trim();
        Ok(())
    }

    fn clone_volume(&self, src: &str, dst: &str) -> Result<(), DriverError> {
        let source = self.image(src);
        if !source.exists() {
            return Err(DriverError::NoSuchVolume);
        }
        self.refuse_if_alive_elsewhere(src)?;
        let target = self.image(dst);
        let staged = target.with_extension("img.tmp");
        let _ = std::fs::remove_file(&staged);
        let mountpoint = self.mountpoint(src);
        let frozen = if mount::is_mounted(&mountpoint) {
            Some(reflink::freeze(&mountpoint).map_err(|e| io("freezing the source volume", e))?)
        } else {
            None
        };
        let cloned = reflink::clone_file(&source, &staged);
        drop(frozen);
        cloned.map_err(|e| io("cloning the volume image", e))?;
        std::fs::create_dir_all(self.mountpoint(dst))
            .map_err(|e| io("creating the mount point", e))?;
        crate::driver::rename_durable(&staged, &target)
    }

    fn open_snapshot(
        &self,
        name: &str,
        snap: &str,
        options: &crate::driver::DriverOptions,
    ) -> Result<PathBuf, DriverError> {
        let image = self.snapshot_image(name, snap);
        if !image.exists() {
            return Err(no_such_snapshot(name, snap));
        }
        let target = self.snapshot_mountpoint(name, snap);
        if mount::is_mounted(&target) {
            return Ok(target);
        }
        let fs = self.parse(options)?.fs;
        std::fs::create_dir_all(&target)
            .map_err(|e| io("creating the snapshot's mount point", e))?;
        let device = loopdev::attach(&image, true).map_err(|e| io("attaching the snapshot", e))?;
        // Read-only, without log replay (a snapshot is taken frozen, so its
        // log is clean); a snapshot of an XFS volume shares its UUID.
        let flags = if fs == "xfs" {
            "ro,norecovery,nouuid"
        } else {
            "ro,noload"
        };
        mount::mount(&device.path.display().to_string(), &target, &fs, flags).map_err(|e| {
            let _ = std::fs::remove_dir(&target);
            io(format!("mounting snapshot {snap} of {name}"), e)
        })?;
        Ok(target)
    }

    fn block_source(
        &self,
        name: &str,
        snap: &str,
        since: Option<&str>,
    ) -> Result<crate::driver::BlockSource, DriverError> {
        ThinDriver::block_source(self, name, snap, since)
    }

    fn changed_since(&self, name: &str, snap: &str) -> Result<bool, DriverError> {
        self.image_changed_since(name, snap)
    }

    fn stage_blocks(
        &self,
        name: &str,
        base: Option<&str>,
    ) -> Result<crate::driver::StagedImage, DriverError> {
        self.stage(name, base)
    }

    fn install_blocks(
        &self,
        name: &str,
        staged: crate::driver::StagedImage,
        snap: &str,
    ) -> Result<(), DriverError> {
        self.install(name, staged, snap)
    }

    fn close_snapshot(&self, name: &str, snap: &str) -> Result<bool, DriverError> {
        let target = self.snapshot_mountpoint(name, snap);
        let was_open = mount::is_mounted(&target);
        if was_open {
            mount::unmount(&target).map_err(|e| io("unmounting the snapshot", e))?;
        }
        let _ = std::fs::remove_dir(&target);
        if let Some(parent) = target.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(was_open)
    }

    fn resize(&self, name: &str, size: u64) -> Result<(), DriverError> {
        let image = self.image(name);
        let current = std::fs::metadata(&image)
            .map_err(|e| io("reading the volume image", e))?
            .len();
        if size < current {
            return Err(DriverError::Unsupported(format!(
                "shrinking a thin volume is not supported ({current} bytes now, {size} asked); clone the data into a smaller volume instead"
            )));
        }
        if size == current {
            return Ok(());
        }
        let mountpoint = self.mountpoint(name);
        if !mount::is_mounted(&mountpoint) {
            self.refuse_if_alive_elsewhere(name)?;
            return self.grow_offline(&image, size);
        }
        let fs = mount_fstype(&mountpoint).unwrap_or_else(|| "ext4".into());
        if fs == "ext4" && !has_cap_sys_resource() {
            return Err(DriverError::Unsupported(
                "growing a mounted ext4 volume needs CAP_SYS_RESOURCE, which this daemon does not have; \
                 stop the containers using it (offline resize works) or use -o fs=xfs"
                    .into(),
            ));
        }
        set_len(&image, size)?;
        let grown = self.grow_online(&image, &mountpoint, &fs);
        if grown.is_err() {
            // The filesystem did not grow, so the added tail is unused:
            // give the image its old length back.
            let _ = set_len(&image, current);
            if let Some(device) = loopdev::attached_to(&image).into_iter().next() {
                let _ = loopdev::refresh_capacity(&device);
            }
        }
        grown
    }
}

impl ThinDriver {
    fn grow_online(
        &self,
        image: &std::path::Path,
        mountpoint: &std::path::Path,
        fs: &str,
    ) -> Result<(), DriverError> {
        let device = loopdev::attached_to(image)
            .into_iter()
            .next()
            .ok_or_else(|| {
                io(
                    "finding the volume's loop device",
                    std::io::Error::other("not attached"),
                )
            })?;
        loopdev::refresh_capacity(&device).map_err(|e| io("refreshing the loop device size", e))?;
        if fs == "xfs" {
            self.run(
                "growing the xfs filesystem",
                Command::new("xfs_growfs").arg("-d").arg(mountpoint),
            )
        } else {
            self.run(
                "growing the ext4 filesystem",
                Command::new("resize2fs").arg(&device),
            )
        }
    }

    /// Grows an unmounted ext4 image: check (e2fsck exits 1 when it fixed
    /// something, which is fine), then resize2fs on the file.
    fn grow_offline(&self, image: &std::path::Path, size: u64) -> Result<(), DriverError> {
        set_len(image, size)?;
        let check = Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(image)
            .output();
        match check {
            Ok(out) if out.status.code().is_some_and(|c| c <= 1) => {}
            Ok(out) => {
                return Err(io(
                    "checking the filesystem",
                    std::io::Error::other(String::from_utf8_lossy(&out.stdout).trim().to_string()),
                ))
            }
            Err(e) => return Err(io("running e2fsck", e)),
        }
        self.run(
            "growing the ext4 filesystem",
            Command::new("resize2fs").arg(image),
        )
    }
}

fn set_len(image: &std::path::Path, size: u64) -> Result<(), DriverError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(|e| io("opening the volume image", e))?;
    file.set_len(size)
        .map_err(|e| io("resizing the volume image", e))
}

/// Whether this process may use CAP_SYS_RESOURCE (online ext4 resize).
fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        })
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .is_some_and(|caps| caps >> CAP_SYS_RESOURCE & 1 == 1)
}

/// The filesystem type mounted at `path`, from /proc/self/mounts.
fn mount_fstype(path: &std::path::Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let wanted = path.to_string_lossy();
    table
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() > 2 && f[1] == wanted)
        .map(|f| f[2].to_string())
        .next_back()
}
