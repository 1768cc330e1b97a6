//! The thin pool: a sparse file, attached to a loop device, formatted XFS
//! with reflink, mounted (with `discard`, so space freed inside the pool is
//! punched back out of the file) at `<root>/thin/pool`. Or, given by the
//! administrator, a block device already formatted XFS with reflink (berth
//! mounts it there and never formats it), or an existing folder on a
//! reflink-capable filesystem. A file pool is made on first use; every
//! pool is mounted again at start (XFS replays its log, so the pool is
//! consistent after a crash) and checked once for reflink support.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::driver::DriverError;
use crate::sys::{loopdev, mount};

/// How the pool is made.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// `<root>/thin`.
    pub dir: PathBuf,
    /// Size of the pool file when berth makes one.
    pub size: u64,
    /// What holds the pool.
    pub source: PoolSource,
    /// Fraction of the pool allocated past which creates warn.
    pub high_water: f64,
    /// Size of a thin volume created without `-o size`.
    pub default_volume_size: Option<u64>,
}

/// What holds the pool's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolSource {
    /// A sparse file berth makes at first use and attaches to a loop
    /// device (`--thin-pool-file`; by default `<root>/thin/pool.img`).
    File(PathBuf),
    /// A block device the administrator formatted XFS with reflink
    /// (`--thin-pool-device`). Mounted, never formatted.
    Device(PathBuf),
    /// A folder on a reflink-capable filesystem (`--thin-pool-dir`).
    Folder(PathBuf),
}

/// Space in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub size: u64,
    pub allocated: u64,
}

impl PoolStats {
    /// Bytes not allocated.
    pub fn free(&self) -> u64 {
        self.size.saturating_sub(self.allocated)
    }
}

/// The pool.
#[derive(Debug)]
pub struct Pool {
    pub settings: PoolSettings,
    lock: parking_lot::Mutex<()>,
    /// Set once the mounted pool has shown it can share blocks.
    reflink_checked: AtomicBool,
}

fn io(context: &str, e: std::io::Error) -> DriverError {
    DriverError::io(context.to_string(), e)
}

impl Pool {
    pub fn new(settings: PoolSettings) -> Self {
        Pool {
            settings,
            lock: parking_lot::Mutex::new(()),
            reflink_checked: AtomicBool::new(false),
        }
    }

    /// The pool file, when the pool is one.
    fn file(&self) -> Option<&Path> {
        match &self.settings.source {
            PoolSource::File(file) => Some(file),
            _ => None,
        }
    }

    fn mountpoint(&self) -> PathBuf {
        self.settings.dir.join("pool")
    }

    /// The folder images live in (no setup).
    pub fn root(&self) -> PathBuf {
        match &self.settings.source {
            PoolSource::Folder(dir) => dir.clone(),
            _ => self.mountpoint(),
        }
    }

    /// Whether a pool exists already (so start-up should mount it).
    pub fn exists(&self) -> bool {
        self.file().is_none_or(Path::exists)
    }

    /// Makes and mounts the pool if needed; returns its root. Idempotent.
    pub fn ensure(&self) -> Result<PathBuf, DriverError> {
        let _guard = self.lock.lock();
        let root = self.root();
        // A pool file's loop device stays open until it is mounted: with
        // autoclear, its last close would detach it.
        let (device, _loop_held) = match &self.settings.source {
            PoolSource::Folder(_) => (None, None),
            _ if mount::is_mounted(&root) => (None, None),
            PoolSource::File(file) => {
                let held = self.attach_file(file)?;
                (Some(held.path.display().to_string()), Some(held))
            }
            PoolSource::Device(device) => (Some(check_xfs_device(device)?), None),
        };
        if let Some(device) = &device {
            std::fs::create_dir_all(&root).map_err(|e| io("creating the pool mount point", e))?;
            mount::mount(device, &root, "xfs", "discard")
                .map_err(|e| io("mounting the thin pool", e))?;
            tracing::info!(pool = %root.display(), device, "thin pool mounted");
        }
        if !self.reflink_checked.load(Ordering::Acquire) {
            if let Err(e) = probe_reflink(&root) {
                if device.is_some() {
                    let _ = mount::unmount(&root); // mounted just now: leave as found
                }
                return Err(e);
            }
            self.reflink_checked.store(true, Ordering::Release);
        }
        for sub in ["volumes", "snapshots"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| io("creating pool folders", e))?;
            // A pool folder or device may sit outside berth's root: its
            // images hold volume data, readable by no one else.
            crate::root::make_private(&dir, 0o700).map_err(|e| {
                io(
                    "securing pool folders",
                    std::io::Error::other(e.to_string()),
                )
            })?;
        }
        if let PoolSource::Folder(folder) = &self.settings.source {
            crate::root::make_private(folder, 0o700).map_err(|e| {
                io(
                    "securing the pool folder",
                    std::io::Error::other(e.to_string()),
                )
            })?;
        }
        if let PoolSource::File(file) = &self.settings.source {
            crate::root::make_private(file, crate::root::SECRET_FILE_MODE).map_err(|e| {
                io(
                    "securing the pool file",
                    std::io::Error::other(e.to_string()),
                )
            })?;
        }
        Ok(root)
    }

    /// The pool file on a loop device (made first if missing).
    fn attach_file(&self, file: &Path) -> Result<loopdev::LoopDevice, DriverError> {
        if !file.exists() {
            self.format(file)?;
        }
        loopdev::attach(file, false).map_err(|e| io("attaching the pool file", e))
    }

    /// A sparse pool file formatted XFS with reflink (made under a temporary
    /// name and renamed, so a crash never leaves a half-made pool).
    fn format(&self, file: &Path) -> Result<(), DriverError> {
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating the pool folder", e))?;
        }
        let mut tmp = file.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let handle = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(crate::root::SECRET_FILE_MODE)
                .open(&tmp)
                .map_err(|e| io("creating the pool file", e))?
        };
        handle
            .set_len(self.settings.size)
            .map_err(|e| io("sizing the pool file", e))?;
        let out = Command::new("mkfs.xfs")
            .args(["-q", "-f", "-m", "reflink=1"])
            .arg(&tmp)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(
                    "formatting the thin pool",
                    std::io::Error::other(self.format_failure(&o.stderr)),
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io("running mkfs.xfs (install xfsprogs)", e));
            }
        }
        handle
            .sync_all()
            .map_err(|e| io("syncing the pool file", e))?;
        std::fs::rename(&tmp, file).map_err(|e| io("placing the pool file", e))
    }

    /// mkfs.xfs's complaint with the size asked: its first line only, since
    /// it follows a refusal ("Filesystem must be larger than 300MB.") with
    /// its whole usage text.
    fn format_failure(&self, stderr: &[u8]) -> String {
        let stderr = String::from_utf8_lossy(stderr);
        let first = stderr.lines().next().unwrap_or_default().trim();
        format!(
            "{first} (thin pool size {})",
            crate::sys::units::format_size(self.settings.size)
        )
    }

    /// Size and allocation of the pool's filesystem.
    pub fn stats(&self) -> PoolStats {
        let Ok(st) = nix::sys::statvfs::statvfs(&self.root()) else {
            return PoolStats::default();
        };
        let block = st.fragment_size();
        let size = st.blocks() * block;
        PoolStats {
            size,
            allocated: size - st.blocks_free() * block,
        }
    }

    /// Returns the pool's free space to the host (see [`trim`]).
    pub fn trim(&self) -> Result<u64, DriverError> {
        trim(&self.root()).map_err(|e| io("trimming the thin pool", e))
    }

    /// Bytes the pool's backing file really occupies on the host.
    pub fn backing_allocated(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.file()?)
            .ok()
            .map(|m| m.blocks() * 512)
    }
}

/// `device` if it is a block device holding XFS; berth never formats an
/// administrator's device, so anything else is refused with what to run.
fn check_xfs_device(device: &Path) -> Result<String, DriverError> {
    use std::os::unix::fs::FileTypeExt;
    let shown = device.display().to_string();
    let meta =
        std::fs::metadata(device).map_err(|e| io(&format!("thin pool device {shown}"), e))?;
    if !meta.file_type().is_block_device() {
        return Err(DriverError::InvalidOption(format!(
            "thin pool device {shown} is not a block device"
        )));
    }
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE"])
        .arg(device)
        .output()
        .map_err(|e| io("running blkid (install util-linux)", e))?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if found != "xfs" {
        let found = if found.is_empty() {
            "no filesystem".into()
        } else {
            found
        };
        return Err(DriverError::InvalidOption(format!(
            "thin pool device {shown} holds {found}, not XFS; berth never formats a device: \
             run `mkfs.xfs -m reflink=1 {shown}` first if its data may go"
        )));
    }
    Ok(shown)
}

/// Refuses a pool whose filesystem cannot share blocks: snapshots and
/// clones are `FICLONE`s. Tries one on a small file and removes both.
fn probe_reflink(root: &Path) -> Result<(), DriverError> {
    let src = root.join(".berth-reflink-probe");
    let dst = root.join(".berth-reflink-probe.clone");
    let _ = std::fs::remove_file(&dst); // left by a crash
    let result = std::fs::write(&src, [0u8; 4096])
        .and_then(|()| crate::sys::reflink::clone_file(&src, &dst));
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
    result.map_err(|e| {
        io(
            &format!(
                "the thin pool at {} cannot share blocks (reflink), which snapshots and \
                 clones need; use XFS made with `mkfs.xfs -m reflink=1`",
                root.display()
            ),
            e,
        )
    })
}

/// `FITRIM` (what fstrim(8) does) on the filesystem mounted at `path`:
/// its free space is discarded, which through the loop device punches it
/// out of the backing file. Returns the bytes trimmed.
pub fn trim(path: &Path) -> std::io::Result<u64> {
    #[repr(C)]
    struct FstrimRange {
        start: u64,
        len: u64,
        minlen: u64,
    }
    const FITRIM: libc::c_ulong = 0xC018_5879;
    // XFS frees an unlinked file's blocks in the background; syncfs waits
    // for that, so the trim sees them free.
    crate::sys::sync_filesystem(path)?;
    let dir = std::fs::File::open(path)?;
    let mut range = FstrimRange {
        start: 0,
        len: u64::MAX,
        minlen: 0,
    };
    // SAFETY: ioctl with a pointer to a live, correctly laid out struct.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&dir),
            FITRIM,
            &mut range as *mut FstrimRange,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(range.len)
}

/// Deallocates every block of `path` (size kept).
pub fn punch_all(path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let len = file.metadata()?.len() as i64;
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate on an open descriptor with a valid range.
    if unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&file), mode, 0, len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes a (sparse) file occupies: its allocated blocks, O(1).
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}
