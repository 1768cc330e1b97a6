//! Loop devices through raw ioctls on `/dev/loop-control` (no losetup):
//! `LOOP_CTL_GET_FREE`, then `LOOP_CONFIGURE` with autoclear, so the device
//! detaches by itself when its last user (a mount) goes away — a crash can
//! never leave one attached to a file nobody mounts. `/dev/loopN` nodes are
//! created when udev is absent.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LOOP_MAJOR: u64 = 7;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// An attached loop device. Dropping it closes our descriptor; with
/// autoclear the device detaches when nothing else (a mount) holds it.
#[derive(Debug)]
pub struct LoopDevice {
    pub path: PathBuf,
    _device: File,
}

/// Attaches `backing` (a regular file) to a free loop device, with direct
/// I/O where the backing filesystem allows it.
pub fn attach(backing: &Path, read_only: bool) -> std::io::Result<LoopDevice> {
    let file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(backing)?;
    attach_file(&file, read_only)
}

/// Attaches an already open regular file (opened for writing unless
/// `read_only`): the device keeps the open file description, with whatever
/// mode it was opened in (see `xfs_handle`).
pub fn attach_file(file: &File, read_only: bool) -> std::io::Result<LoopDevice> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    for _ in 0..16 {
        // SAFETY: ioctl on an open control device, no argument.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let path = ensure_node(n as u64)?;
        let device = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&path)?;
        match configure(&device, file, read_only) {
            Ok(()) => {
                return Ok(LoopDevice {
                    path,
                    _device: device,
                })
            }
            // Taken by someone else between GET_FREE and CONFIGURE: retry.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "no free loop device after 16 attempts",
    ))
}

fn configure(device: &File, backing: &File, read_only: bool) -> std::io::Result<()> {
    let mut result = Ok(());
    for flags in [LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO, LO_FLAGS_AUTOCLEAR] {
        // SAFETY: an all-zero LoopConfig is a valid "no options" value.
        let mut config: LoopConfig = unsafe { std::mem::zeroed() };
        config.fd = backing.as_raw_fd() as u32;
        config.info.lo_flags = flags | if read_only { 1 } else { 0 };
        // SAFETY: ioctl with a pointer to a live, correctly laid out struct.
        let rc = unsafe {
            libc::ioctl(
                device.as_raw_fd(),
                LOOP_CONFIGURE,
                &config as *const LoopConfig,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        result = Err(std::io::Error::last_os_error());
        // Direct I/O refused by the backing filesystem: try without it.
        if result.as_ref().err().and_then(|e| e.raw_os_error()) != Some(libc::EINVAL) {
            break;
        }
    }
    result
}

/// `/dev/loopN`, created as a block node if udev has not made it.
fn ensure_node(n: u64) -> std::io::Result<PathBuf> {
    let path = PathBuf::from(format!("/dev/loop{n}"));
    match std::fs::metadata(&path) {
        Ok(m) if m.file_type().is_block_device() => Ok(path),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} is not a block device",
            path.display()
        ))),
        Err(_) => {
            let dev = nix::sys::stat::makedev(LOOP_MAJOR, n);
            match nix::sys::stat::mknod(
                &path,
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o660),
                dev,
            ) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(path),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Opens the loop device still backed by `backing`, if one is, and checks
/// through `LOOP_GET_STATUS64` while holding it open that it is backed by
/// that very file (device and inode): sysfs alone could name a device that
/// detaches, and is reused for another file, before it is mounted.
pub fn open_attached(backing: &Path) -> std::io::Result<Option<LoopDevice>> {
    use std::os::unix::fs::MetadataExt;
    const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
    let meta = std::fs::metadata(backing)?;
    for path in attached_to(backing) {
        let Ok(device) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        // SAFETY: a zeroed plain-data struct the ioctl fills in.
        let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
        // SAFETY: ioctl on an open loop device with a pointer to its struct.
        let rc = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_GET_STATUS64, &mut info) };
        if rc == 0 && info.lo_device == meta.dev() && info.lo_inode == meta.ino() {
            return Ok(Some(LoopDevice {
                path,
                _device: device,
            }));
        }
    }
    Ok(None)
}

/// Tells loop device `device` that its backing file grew (`LOOP_SET_CAPACITY`).
pub fn refresh_capacity(device: &Path) -> std::io::Result<()> {
    const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
    let file = OpenOptions::new().read(true).open(device)?;
    // SAFETY: ioctl on an open loop device; no argument.
    if unsafe { libc::ioctl(file.as_raw_fd(), LOOP_SET_CAPACITY, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits (up to `limit`) until no loop device is backed by `backing`:
/// autoclear releases a device asynchronously after its last close, and
/// until then the file is still open (its blocks not yet freed).
pub fn wait_detached(backing: &Path, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if attached_to(backing).is_empty() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Loop devices whose backing file is `backing` (from sysfs).
pub fn attached_to(backing: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let wanted = backing
        .canonicalize()
        .unwrap_or_else(|_| backing.to_path_buf());
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|f| Path::new(f.trim()) == wanted)
        })
        .map(|e| PathBuf::from("/dev").join(e.file_name()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_mount_and_autoclear() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        File::create(&image)
            .unwrap()
            .set_len(16 * 1024 * 1024)
            .unwrap();
        let status = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)
            .status()
            .unwrap();
        assert!(status.success());
        let target = dir.path().join("mnt");
        std::fs::create_dir(&target).unwrap();
        let dev = attach(&image, false).unwrap();
        assert_eq!(attached_to(&image), std::slice::from_ref(&dev.path));
        crate::sys::mount::mount(dev.path.to_str().unwrap(), &target, "ext4", "").unwrap();
        drop(dev);
        std::fs::write(target.join("f"), b"kept").unwrap();
        assert_eq!(attached_to(&image).len(), 1, "held by the mount");
        crate::sys::mount::unmount(&target).unwrap();
        // Autoclear releases the device asynchronously after the last close.
        for _ in 0..100 {
            if attached_to(&image).is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            attached_to(&image).is_empty(),
            "detached after the last unmount"
        );
    }
}
