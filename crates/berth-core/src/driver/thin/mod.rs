//! The `thin` driver: one sparse filesystem image per volume inside the
//! thin pool ([`pool`]), loop-mounted at its first mount id and detached at
//! its last. The image's size is a hard cap (writes past it fail with
//! ENOSPC inside the container and nowhere else); space is allocated only
//! when written, and returned to the pool when freed (`discard`) or when
//! the volume is removed.

mod blocks;
mod extended;
pub mod options;
pub mod pool;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::mount_ids::MountIds;
use super::{DriverError, DriverOptions, DriverVolume, PoolStats, VolumeDriver};
use crate::sys::{loopdev, mount, units};
use options::ThinOptions;
use pool::{allocated, Pool};

/// Deletes staged files (`*.tmp`, `*.restore`) under `dir`, recursively one
/// level (snapshot folders).
fn remove_staged(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            remove_staged(&path);
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") || name.ends_with(".restore") {
            tracing::warn!(file = %path.display(), "removing a staged image left by a crash");
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Free pool space below which creates are refused. A new image's own
/// metadata takes tens of MiB (ext4 preallocates its journal, 32 MiB at
/// 1 GiB; xfs zeroes its log), and a volume made in a pool that cannot hold
/// its first writes loses them: buffered writeback fails after `write`
/// already succeeded.
const CREATE_HEADROOM: u64 = 64 << 20;

/// The one wording of "the pool is full": what is free, what a create
/// needs, what to do, and the failure that revealed it, if any.
fn pool_full(stats: pool::PoolStats, cause: Option<&str>) -> DriverError {
    let mut why = format!(
        "the thin pool is full: {} free of {}, a new volume needs at least {}; \
         remove thin volumes, snapshots or data in them to free space",
        units::format_size(stats.free()),
        units::format_size(stats.size),
        units::format_size(CREATE_HEADROOM)
    );
    if let Some(cause) = cause {
        why.push_str(&format!(" ({cause})"));
    }
    io("creating the volume image", std::io::Error::other(why))
}

/// Creates, sizes (sparse), formats and syncs an image file at `path`.
fn format_image(path: &Path, o: &ThinOptions) -> Result<(), DriverError> {
    let file = std::fs::File::create(path).map_err(|e| io("creating the volume image", e))?;
    file.set_len(o.size)
        .map_err(|e| io("sizing the volume image", e))?;
    let mut mkfs = match o.fs.as_str() {
        "xfs" => {
            let mut c = Command::new("mkfs.xfs");
            c.args(["-q", "-f", "-K", "-s", "size=4096"]);
            c
        }
        _ => {
            let mut c = Command::new("mkfs.ext4");
            // 4 KiB blocks always: a direct-I/O loop device has 4 KiB
            // sectors, and mkfs would pick 1 KiB blocks for small images.
            c.args(["-q", "-F", "-b", "4096", "-m", "0", "-E"])
                .arg(format!("nodiscard,root_owner={}:{}", o.uid, o.gid));
            c
        }
    };
    match mkfs.arg(path).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            // The first line says why; mkfs.xfs follows it with its usage.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr.trim().lines().next().unwrap_or("").to_string();
            return Err(io(
                "formatting the volume image",
                std::io::Error::other(why),
            ));
        }
        Err(e) => return Err(io(format!("running mkfs.{}", o.fs), e)),
    }
    if o.fs != "xfs" {
        drop_lost_and_found(path);
    }
    file.sync_all()
        .map_err(|e| io("syncing the volume image", e))
}

/// Removes the empty `lost+found` mkfs.ext4 leaves in the root, so a new
/// thin volume is as empty as a local one: copy-up (which fills only an
/// empty volume and gives it the image folder's owner) and programs that
/// want an empty data folder (initdb) treat both alike. e2fsck makes it
/// again when it needs it. Without debugfs it stays (logged).
fn drop_lost_and_found(image: &Path) {
    let done = Command::new("debugfs")
        .args(["-w", "-R", "rmdir lost+found"])
        .arg(image)
        .output();
    match done {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            tracing::warn!(stderr = %String::from_utf8_lossy(&out.stderr).trim(), "debugfs could not remove lost+found")
        }
        Err(e) => {
            tracing::warn!(error = %e, "debugfs not run: lost+found stays in new thin volumes")
        }
    }
}

/// Opens a volume image for its loop device: through its XFS handle, so
/// the container's writes do not move the image's timestamps and its
/// fsyncs do not log the image's inode in the pool (`sys::xfs_handle`);
/// by path if XFS refuses (logged: the volume works, its fsyncs are slower).
fn open_image(image: &Path) -> Result<std::fs::File, DriverError> {
    match crate::sys::xfs_handle::open_without_cmtime(image) {
        Ok(file) => Ok(file),
        Err(e) => {
            tracing::warn!(image = %image.display(), error = %e,
                "opening the volume image by handle failed: attaching it by path");
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(image)
                .map_err(|e| io("opening the volume image", e))
        }
    }
}

/// The thin driver over one pool.
#[derive(Debug)]
pub struct ThinDriver {
    pool: Pool,
    /// `<root>/thin/mnt`: where volumes are mounted (their `Mountpoint`).
    mounts_dir: PathBuf,
    active: MountIds,
}

fn io(context: impl Into<String>, e: std::io::Error) -> DriverError {
    DriverError::io(context, e)
}

impl ThinDriver {
    /// A driver whose pool lives as `settings` say. An existing pool is
    /// mounted now; a new one is made at the first create.
    pub fn new(settings: pool::PoolSettings) -> Result<Self, DriverError> {
        let mounts_dir = settings.dir.join("mnt");
        std::fs::create_dir_all(&mounts_dir)
            .map_err(|e| io("creating the thin mount folder", e))?;
        let pool = Pool::new(settings);
        // A pool that cannot be mounted now must not keep the daemon (and
        // every other volume) down: say so, and retry at the next use.
        if pool.exists() {
            if let Err(e) = pool.ensure() {
                tracing::error!(error = %e, "thin pool not available; thin volumes fail until it is");
            }
        }
        Ok(ThinDriver {
            pool,
            mounts_dir,
            active: Default::default(),
        })
    }

    fn image(&self, name: &str) -> PathBuf {
        self.pool.root().join("volumes").join(format!("{name}.img"))
    }

    fn mountpoint(&self, name: &str) -> PathBuf {
        self.mounts_dir.join(name)
    }

    fn parse(&self, options: &DriverOptions) -> Result<ThinOptions, DriverError> {
        options::parse(options, self.pool.settings.default_volume_size)
    }

    /// Makes a new image: formatted at a temporary name and renamed when
    /// whole, so a failure (or a crash) never leaves a half image listed; a
    /// failed attempt deletes its staged file at once.
    fn make_image(&self, image: &Path, o: &ThinOptions) -> Result<(), DriverError> {
        let tmp = image.with_extension("img.tmp");
        if let Err(e) = format_image(&tmp, o) {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.explain_no_space(e));
        }
        std::fs::rename(&tmp, image).map_err(|e| io("placing the volume image", e))
    }

    /// Refuses a create up front when the pool has less than
    /// [`CREATE_HEADROOM`] free, so a full pool always gives the same clear
    /// answer and nothing is made.
    fn ensure_room(&self) -> Result<(), DriverError> {
        let stats = self.pool.stats();
        if stats.size == 0 || stats.free() >= CREATE_HEADROOM {
            return Ok(());
        }
        Err(pool_full(stats, None))
    }

    /// An ENOSPC while making an image is the pool running out (the image
    /// is sparse: pool space is all it uses): say so, with the numbers.
    fn explain_no_space(&self, e: DriverError) -> DriverError {
        let text = e.to_string();
        let enospc = matches!(&e, DriverError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
            || text.contains("No space left on device");
        if enospc {
            pool_full(self.pool.stats(), Some(&text))
        } else {
            e
        }
    }

    /// The loop device to mount a volume's image from, held open until
    /// mounted (autoclear detaches a device at its last close): the one
    /// still backed by the image if there is one — a process that copied
    /// the host's mount table (`unshare -m`, a service's private namespace,
    /// a starting container) keeps the image's filesystem alive after
    /// berth unmounted it, and a second loop device would give the same
    /// image a second, independent filesystem instance (corruption);
    /// mounting the same device reuses the live one. Otherwise a new one.
    fn device_for(
        &self,
        name: &str,
        image: &Path,
    ) -> Result<(loopdev::LoopDevice, bool), DriverError> {
        let alive =
            loopdev::open_attached(image).map_err(|e| io("opening the volume's loop device", e))?;
        if let Some(device) = alive {
            tracing::warn!(volume = %name, device = %device.path.display(),
                "the volume's filesystem is still alive on its loop device (a mount namespace elsewhere holds it): mounting that device again");
            return Ok((device, true));
        }
        let file = open_image(image)?;
        let device =
            loopdev::attach_file(&file, false).map_err(|e| io("attaching the volume image", e))?;
        Ok((device, false))
    }

    /// Refuses an operation that needs the image at rest (a snapshot or
    /// clone without a mount to freeze, an offline resize) while berth has
    /// the volume unmounted but its filesystem is still alive on a loop
    /// device, held by a mount namespace elsewhere: that instance may hold
    /// unwritten data, and may write.
    pub(super) fn refuse_if_alive_elsewhere(&self, name: &str) -> Result<(), DriverError> {
        if mount::is_mounted(&self.mountpoint(name)) {
            return Ok(());
        }
        match loopdev::attached_to(&self.image(name)).first() {
            None => Ok(()),
            Some(device) => Err(DriverError::Unsupported(format!(
                "the filesystem of volume {name} is still open on {} in another mount namespace \
                 (a process that copied the host's mounts holds it); start a container with the \
                 volume (berth then freezes it for snapshots) or retry when it is released",
                device.display()
            ))),
        }
    }

    /// Unmounts a volume and waits for its loop device to let go of the
    /// image, so what follows (remove, snapshot) sees a closed file.
    fn unmount_image(&self, name: &str) -> Result<(), DriverError> {
        let target = self.mountpoint(name);
        // A superblock unmounted while frozen stays alive, frozen, with its
        // loop device attached for good: thaw first (a no-op when not
        // frozen; a snapshot cut by a crash is the way it gets left so).
        if mount::is_mounted(&target) {
            crate::sys::reflink::thaw(&target);
        }
        mount::unmount_when_free(&target)
            .map_err(|e| io(format!("unmounting {}", target.display()), e))?;
        if !loopdev::wait_detached(&self.image(name), std::time::Duration::from_secs(5)) {
            tracing::warn!(volume = %name, "loop device still attached 5 s after unmount");
        }
        Ok(())
    }

    /// After a crash: thaw any volume left frozen (a daemon killed during a
    /// snapshot), unmount volumes no mount id holds, delete staged images.
    fn recover(&self) {
        let Ok(entries) = std::fs::read_dir(&self.mounts_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let target = entry.path();
            if !mount::is_mounted(&target) {
                continue;
            }
            crate::sys::reflink::thaw(&target);
            if self.active.is_unheld(&name) {
                tracing::warn!(volume = %name, "unmounting a thin volume no container holds (left by a crash)");
                if let Err(e) = self.unmount_image(&name) {
                    tracing::error!(volume = %name, error = %e, "could not unmount");
                }
            }
        }
        for dir in [
            self.pool.root().join("volumes"),
            self.pool.root().join("snapshots"),
        ] {
            remove_staged(&dir);
        }
    }

    /// A warning when the pool's allocation is past the high-water mark.
    fn high_water_warning(&self, stats: pool::PoolStats) -> Option<String> {
        let mark = self.pool.settings.high_water;
        let used = stats.allocated as f64 / stats.size.max(1) as f64;
        (stats.size > 0 && used > mark).then(|| {
            format!(
                "thin pool is {:.0}% allocated, past its high-water mark of {:.0}%",
                used * 100.0,
                mark * 100.0
            )
        })
    }

    fn warn_if_past_high_water(&self) {
        if let Some(warning) = self.high_water_warning(self.pool.stats()) {
            tracing::warn!("{warning}");
        }
    }

    fn status(&self, name: &str) -> serde_json::Map<String, serde_json::Value> {
        let image = self.image(name);
        let virtual_size = std::fs::metadata(&image).map_or(0, |m| m.len());
        let stats = self.pool.stats();
        let mut status = json!({
            "Size": units::format_size(virtual_size),
            "SizeBytes": virtual_size,
            "Allocated": allocated(&image),
            "Mounted": mount::is_mounted(&self.mountpoint(name)),
            "Pool": {"Size": stats.size, "Allocated": stats.allocated},
        });
        if let Some(warning) = self.high_water_warning(stats) {
            status["Warning"] = json!(warning);
        }
        status.as_object().cloned().unwrap_or_default()
    }
}

impl VolumeDriver for ThinDriver {
    fn name(&self) -> &str {
        "thin"
    }

    fn validate(&self, options: &DriverOptions) -> Result<(), DriverError> {
        self.parse(options).map(|_| ())
    }

    fn create(&self, name: &str, options: &DriverOptions) -> Result<bool, DriverError> {
        let o = self.parse(options)?;
        self.pool.ensure()?;
        let image = self.image(name);
        let mountpoint = self.mountpoint(name);
        std::fs::create_dir_all(&mountpoint).map_err(|e| io("creating the mount point", e))?;
        if image.exists() {
            return Ok(false);
        }
        // A failed create leaves nothing behind, not even the mount point.
        if let Err(e) = self
            .ensure_room()
            .and_then(|()| self.make_image(&image, &o))
        {
            let _ = std::fs::remove_dir(&mountpoint);
            return Err(e);
        }
        self.warn_if_past_high_water();
        Ok(true)
    }

    fn remove(&self, name: &str) -> Result<bool, DriverError> {
        let target = self.mountpoint(name);
        if mount::is_mounted(&target) {
            self.unmount_image(name)?;
        }
        self.active.forget(name);
        let image = self.image(name);
        // Punch the image's blocks out first: XFS frees an unlinked file's
        // extents in the background, too late for the trim below; a punch
        // frees them now.
        if let Err(e) = pool::punch_all(&image) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(volume = %name, error = %e, "could not punch the image before removal");
            }
        }
        let existed = match std::fs::remove_file(&image) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(format!("removing {}", image.display()), e)),
        };
        let _ = std::fs::remove_dir(&target);
        self.remove_snapshots(name);
        if existed {
            // Give the freed blocks back to the host now, not at some
            // later trim: deleting a volume should free its space.
            if let Err(e) = self.pool.trim() {
                tracing::warn!(error = %e, "could not trim the thin pool");
            }
        }
        Ok(existed)
    }

    fn rename(&self, old: &str, new: &str) -> Result<(), DriverError> {
        self.rename_storage(old, new)
    }

    fn path(&self, name: &str) -> Result<Option<PathBuf>, DriverError> {
        Ok(self.image(name).exists().then(|| self.mountpoint(name)))
    }

    fn mount(&self, name: &str, options: &DriverOptions, id: &str) -> Result<PathBuf, DriverError> {
        self.pool.ensure()?;
        let image = self.image(name);
        if !image.exists() {
            return Err(DriverError::NoSuchVolume);
        }
        let target = self.mountpoint(name);
        if self.active.is_unheld(name) && !mount::is_mounted(&target) {
            let o = self.parse(options)?;
            std::fs::create_dir_all(&target).map_err(|e| io("creating the mount point", e))?;
            let (device, reused) = self.device_for(name, &image)?;
            mount::mount(
                &device.path.display().to_string(),
                &target,
                &o.fs,
                "discard",
            )
            .map_err(|e| io(format!("mounting thin volume {name}"), e))?;
            if reused {
                // A snapshot cut by a crash may have left the live
                // filesystem frozen: a container would hang on its first
                // write (a no-op when not frozen).
                crate::sys::reflink::thaw(&target);
            }
            if let Some(mode) = o.mode {
                let perms = std::os::unix::fs::PermissionsExt::from_mode(mode);
                std::fs::set_permissions(&target, perms)
                    .map_err(|e| io("setting the root mode", e))?;
            }
            if o.fs == "xfs" {
                let _ = nix::unistd::chown(&target, Some(o.uid.into()), Some(o.gid.into()));
            }
        }
        self.active.add(name, id);
        Ok(target)
    }

    fn unmount(&self, name: &str, id: &str) -> Result<bool, DriverError> {
        self.active.release(name, id, || {
            if !mount::is_mounted(&self.mountpoint(name)) {
                return Ok(());
            }
            self.unmount_image(name)
        })
    }

    fn get(&self, name: &str) -> Result<Option<DriverVolume>, DriverError> {
        Ok(self.path(name)?.map(|mountpoint| DriverVolume {
            name: name.to_string(),
            mountpoint,
            status: Some(self.status(name)),
        }))
    }

    fn list(&self) -> Result<Vec<DriverVolume>, DriverError> {
        let dir = self.pool.root().join("volumes");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        Ok(entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".img")
                    .map(str::to_string)
            })
            .map(|name| DriverVolume {
                mountpoint: self.mountpoint(&name),
                name,
                status: None,
            })
            .collect())
    }

    fn usage(&self, name: &str) -> Option<i64> {
        Some(allocated(&self.image(name)) as i64)
    }

    fn capacity(&self, name: &str) -> Option<u64> {
        std::fs::metadata(self.image(name)).ok().map(|m| m.len())
    }

    fn extended(&self) -> Option<&dyn super::ExtendedDriver> {
        Some(self)
    }

    fn after_reconcile(&self) {
        self.recover();
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let stats = self.pool.stats();
        let volumes = self.list().unwrap_or_default();
        let virtual_size: u64 = volumes
            .iter()
            .filter_map(|v| std::fs::metadata(self.image(&v.name)).ok())
            .map(|m| m.len())
            .sum();
        let ratio = if stats.size > 0 {
            virtual_size as f64 / stats.size as f64
        } else {
            0.0
        };
        Some(PoolStats {
            driver: "thin".into(),
            root: self.pool.root(),
            size: stats.size,
            allocated: stats.allocated,
            virtual_size,
            overcommit: (ratio * 100.0).round() / 100.0,
            volumes: volumes.len(),
            backing_file_allocated: self.pool.backing_allocated(),
            high_water: self.pool.settings.high_water,
        })
    }

    fn trim(&self) -> Result<u64, DriverError> {
        if !self.pool.exists() {
            return Ok(0);
        }
        let mut trimmed = self.pool.trim()?;
        let Ok(entries) = std::fs::read_dir(&self.mounts_dir) else {
            return Ok(trimmed);
        };
        for entry in entries.flatten() {
            if mount::is_mounted(&entry.path()) {
                trimmed += pool::trim(&entry.path()).unwrap_or(0);
            }
        }
        Ok(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(dir: &Path) -> ThinDriver {
        ThinDriver::new(pool::PoolSettings {
            dir: dir.to_path_buf(),
            size: 1 << 30,
            source: pool::PoolSource::File(dir.join("pool.img")),
            high_water: 0.8,
            default_volume_size: None,
        })
        .unwrap()
    }

    #[test]
    fn enospc_while_making_an_image_says_the_pool_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let d = driver(dir.path());
        let raw = io(
            "creating the volume image",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let mkfs = io(
            "formatting the volume image",
            std::io::Error::other("mkfs.ext4: No space left on device while writing out"),
        );
        for e in [raw, mkfs] {
            let text = d.explain_no_space(e).to_string();
            assert!(text.contains("the thin pool is full: "), "{text}");
            assert!(text.contains("No space left on device"), "{text}");
        }
        let other = io("running mkfs.xfs", std::io::Error::other("not found"));
        assert_eq!(
            d.explain_no_space(other).to_string(),
            "running mkfs.xfs: not found"
        );
    }

    #[test]
    fn an_unreadable_pool_is_not_called_full() {
        let dir = tempfile::tempdir().unwrap();
        assert!(driver(dir.path()).ensure_room().is_ok());
    }
}
