//! Safe extraction of a tar stream into a private folder (image layers,
//! with their whiteouts turned into overlayfs whiteouts; volume imports).
//!
//! Safety: an entry path is normalised component by component; `..` is
//! refused (never clamped: a layer that tries to climb out is hostile);
//! every parent folder is checked with `lstat` and a symlink parent is
//! refused, so nothing is ever written through a link. Symlinks themselves
//! are created as they are (absolute targets are fine: they are only ever
//! resolved inside the container). Hard links must point inside the layer.
//! The destination is a fresh folder only this extraction writes to, so the
//! checks cannot race with another writer.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};
use tar::EntryType;

use super::pax_sparse::{self, PaxSparse};
use super::ArchiveError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Attributes an archive may not set: berth marks its import staging
/// folders with `trusted.berth.*`, and overlayfs reads `trusted.overlay.*`
/// (whiteouts are made from `.wh.` names instead).
const RESERVED_XATTRS: &[&str] = &["trusted.berth.", "trusted.overlay."];

/// How an extraction treats what it writes over.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    /// `.wh.` entries become overlayfs whiteouts (image layers).
    pub whiteouts: bool,
    /// An entry may not replace a folder by a non-folder or the other way
    /// round (`docker cp`'s `noOverwriteDirNonDir`).
    pub keep_kinds: bool,
    /// Every entry gets this owner instead of the archive's (`docker cp -a`
    /// into a container with a `User`).
    pub owner: Option<(u32, u32)>,
}

/// What an extraction found beyond the files it wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unpacked {
    /// The archive had an entry for its root (`./`), whose owner, mode and
    /// time were given to `dest`.
    pub had_root: bool,
}

/// Extracts every entry of `archive` under `dest` (an existing, empty,
/// private folder). With `whiteouts`, `.wh.` entries become overlayfs
/// whiteouts; without (plain archives such as `docker save` output) they
/// are written as ordinary files.
pub fn unpack<R: Read>(
    archive: &mut tar::Archive<R>,
    dest: &Path,
    whiteouts: bool,
) -> Result<Unpacked, ArchiveError> {
    let opts = UnpackOptions {
        whiteouts,
        ..UnpackOptions::default()
    };
    unpack_with(archive, dest, &opts)
}

/// [`unpack`] with every option.
pub fn unpack_with<R: Read>(
    archive: &mut tar::Archive<R>,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<Unpacked, ArchiveError> {
    let whiteouts = opts.whiteouts;
    let mut dir_times = HashMap::new();
    let mut found = Unpacked::default();
    for entry in archive.entries().map_err(ArchiveError::tar)? {
        let mut entry = entry.map_err(ArchiveError::tar)?;
        // GNU tar's sparse files in pax archives are named after their
        // real name in the pax header, not the entry's placeholder.
        let sparse = pax_sparse_of(&mut entry)?;
        let path = match sparse.as_ref().and_then(|s| s.name.as_deref()) {
            Some(name) => PathBuf::from(std::ffi::OsStr::from_bytes(name)),
            None => entry.path().map_err(ArchiveError::tar)?.into_owned(),
        };
        let rel = sanitize(&path)?;
        if rel.as_os_str().is_empty() {
            let header = entry.header().clone();
            if header.entry_type() != EntryType::Directory {
                return Err(ArchiveError::Hostile(
                    "the archive's root is not a folder".into(),
                ));
            }
            apply_metadata(&mut entry, &header, dest, opts.owner)?;
            dir_times.insert(dest.to_path_buf(), header.mtime().unwrap_or(0));
            found.had_root = true;
            continue;
        }
        let target = dest.join(&rel);
        ensure_parents(dest, &rel)?;
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if whiteouts && name.starts_with(WHITEOUT_PREFIX) {
            write_whiteout(&target, &name)?;
            continue;
        }
        write_entry(&mut entry, dest, &target, opts, sparse.as_ref())?;
        if entry.header().entry_type() == EntryType::Directory {
            dir_times.insert(target, entry.header().mtime().unwrap_or(0));
        }
    }
    // Folder times last: writing children changed them.
    for (dir, mtime) in dir_times {
        set_mtime(&dir, mtime)?;
    }
    Ok(found)
}

/// A reader that notes whether its input ran out. A tar archive ends with
/// a block of zeros, which the tar reader stops at without reading on; an
/// input that runs out first was cut short, possibly exactly between two
/// entries, which the tar reader alone takes for a clean end.
pub struct EndWatch<R> {
    inner: R,
    /// A read returned no bytes.
    pub ran_out: bool,
}

impl<R: Read> EndWatch<R> {
    pub fn new(inner: R) -> Self {
        EndWatch {
            inner,
            ran_out: false,
        }
    }
}

impl<R: Read> Read for EndWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ran_out = true;
        }
        Ok(n)
    }
}

/// [`unpack`] of a whole archive from an untrusted source: one that runs
/// out before its end-of-archive block is refused as cut short, and its
/// structure is checked as it passes (`guard.rs`: no header the tar reader
/// would hold whole in memory beyond 1 MiB, no sparse file claiming more
/// than 1 TiB).
pub fn unpack_complete<R: Read>(
    input: R,
    dest: &Path,
    whiteouts: bool,
) -> Result<Unpacked, ArchiveError> {
    let opts = UnpackOptions {
        whiteouts,
        ..UnpackOptions::default()
    };
    unpack_complete_with(input, dest, &opts)
}

/// [`unpack_complete`] with every option.
pub fn unpack_complete_with<R: Read>(
    input: R,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<Unpacked, ArchiveError> {
    let mut archive = tar::Archive::new(EndWatch::new(super::guard::TarGuard::new(input)));
    let found = unpack_with(&mut archive, dest, opts)?;
    if archive.into_inner().ran_out {
        let why = "the archive is cut short (it has no end-of-archive block)";
        return Err(ArchiveError::Tar(std::io::Error::other(why)));
    }
    Ok(found)
}

/// Normalises an archive path to a relative path with no `.`, `/` or `..`.
pub fn sanitize(path: &Path) -> Result<PathBuf, ArchiveError> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ArchiveError::Hostile(format!(
                    "entry {} climbs out of the layer with ..",
                    path.display()
                )))
            }
        }
    }
    Ok(out)
}

/// Creates missing parent folders of `rel` under `root`, refusing a parent
/// that is a symlink or not a folder.
fn ensure_parents(root: &Path, rel: &Path) -> Result<(), ArchiveError> {
    let mut cur = root.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for component in parents {
        cur.push(component);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ArchiveError::Hostile(format!(
                    "entry {} would be written through the symlink {}",
                    rel.display(),
                    cur.strip_prefix(root).unwrap_or(&cur).display()
                )))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ArchiveError::Hostile(format!(
                    "entry {} has a parent that is not a folder",
                    rel.display()
                )))
            }
            Err(_) => std::fs::create_dir(&cur).map_err(|e| ArchiveError::io(&cur, e))?,
        }
    }
    Ok(())
}

/// Removes whatever is at `target` unless both it and the new entry are
/// folders (a later layer entry replaces an earlier one, as tar does).
fn clear_target(target: &Path, new_is_dir: bool) -> Result<(), ArchiveError> {
    let Ok(meta) = std::fs::symlink_metadata(target) else {
        return Ok(());
    };
    let result = if meta.is_dir() && !meta.file_type().is_symlink() {
        if new_is_dir {
            return Ok(());
        }
        // Never through a mount (a volume mounted in a container's tree).
        crate::sys::remove_tree::remove_tree_same_fs(target).map(|_| ())
    } else {
        std::fs::remove_file(target)
    };
    result.map_err(|e| ArchiveError::io(target, e))
}

fn write_whiteout(target: &Path, name: &str) -> Result<(), ArchiveError> {
    if name == OPAQUE_MARKER {
        let dir = target.parent().unwrap_or(target);
        return set_xattr(dir, OPAQUE_XATTR, b"y");
    }
    let hidden = target.with_file_name(&name[WHITEOUT_PREFIX.len()..]);
    clear_target(&hidden, false)?;
    nix::sys::stat::mknod(&hidden, SFlag::S_IFCHR, Mode::empty(), 0)
        .map_err(|e| ArchiveError::io(&hidden, e.into()))
}

/// Writes one entry.
/// The pax sparse description of `entry`, if it is one (malformed
/// records are left for `apply_metadata` to refuse).
fn pax_sparse_of<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<Option<PaxSparse>, ArchiveError> {
    let Some(exts) = entry.pax_extensions().map_err(ArchiveError::tar)? else {
        return Ok(None);
    };
    let records: Vec<(String, Vec<u8>)> = exts
        .flatten()
        .filter_map(|e| Some((e.key().ok()?.to_string(), e.value_bytes().to_vec())))
        .collect();
    pax_sparse::detect(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

fn write_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Path,
    target: &Path,
    opts: &UnpackOptions,
    sparse: Option<&PaxSparse>,
) -> Result<(), ArchiveError> {
    let header = entry.header().clone();
    let kind = header.entry_type();
    if opts.keep_kinds {
        check_same_kind(target, kind == EntryType::Directory)?;
    }
    clear_target(target, kind == EntryType::Directory)?;
    if sparse.is_some() && !matches!(kind, EntryType::Regular | EntryType::Continuous) {
        return Err(ArchiveError::Hostile(
            "a sparse description on an entry that is not a file".into(),
        ));
    }
    match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            write_file(entry, target, sparse)?
        }
        EntryType::Directory => match std::fs::create_dir(target) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(ArchiveError::io(target, e))
            }
            _ => {}
        },
        EntryType::Symlink => {
            let link = entry
                .link_name()
                .map_err(ArchiveError::tar)?
                .unwrap_or_default();
            std::os::unix::fs::symlink(&link, target).map_err(|e| ArchiveError::io(target, e))?;
        }
        EntryType::Link => return write_hardlink(entry, root, target),
        EntryType::Char | EntryType::Block | EntryType::Fifo => make_node(&header, target)?,
        _ => return Ok(()),
    }
    apply_metadata(entry, &header, target, opts.owner)
}

/// moby's `noOverwriteDirNonDir`: a folder stays a folder, a non-folder a
/// non-folder.
fn check_same_kind(target: &Path, new_is_dir: bool) -> Result<(), ArchiveError> {
    let Ok(meta) = std::fs::symlink_metadata(target) else {
        return Ok(());
    };
    let is_dir = meta.is_dir() && !meta.file_type().is_symlink();
    match (is_dir, new_is_dir) {
        (true, false) => Err(ArchiveError::Hostile(format!(
            "cannot overwrite directory {:?} with non-directory",
            target
        ))),
        (false, true) => Err(ArchiveError::Hostile(format!(
            "cannot overwrite non-directory {:?} with directory",
            target
        ))),
        _ => Ok(()),
    }
}

fn write_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    target: &Path,
    sparse: Option<&PaxSparse>,
) -> Result<(), ArchiveError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(target)
        .map_err(|e| ArchiveError::io(target, e))?;
    match sparse {
        Some(sparse) => {
            let data_len = entry.size();
            pax_sparse::write(sparse, entry, data_len, &mut file, target)
        }
        None => copy_keeping_holes(entry, &mut file, target),
    }
}

/// Copies file data, seeking over 4 KiB blocks of zeros instead of writing
/// them, so holes (a GNU sparse entry's, or any run of zeros) stay holes.
/// A read failure is the archive's fault; a write failure the host's.
fn copy_keeping_holes(
    input: &mut impl Read,
    file: &mut std::fs::File,
    target: &Path,
) -> Result<(), ArchiveError> {
    use std::io::{Seek, SeekFrom, Write};
    const BLOCK: usize = 4096;
    let mut buf = vec![0u8; 256 * BLOCK];
    let mut length = 0u64;
    loop {
        let n = read_full(input, &mut buf).map_err(ArchiveError::tar)?;
        if n == 0 {
            break;
        }
        // Runs of data blocks go out in one write, runs of zero blocks in
        // one seek.
        let io = |e| ArchiveError::io(target, e);
        let chunk = &buf[..n];
        let mut start = 0;
        while start < n {
            let zero = is_zero(&chunk[start..(start + BLOCK).min(n)]);
            let mut end = (start + BLOCK).min(n);
            while end < n && is_zero(&chunk[end..(end + BLOCK).min(n)]) == zero {
                end = (end + BLOCK).min(n);
            }
            if zero {
                file.seek(SeekFrom::Current((end - start) as i64))
                    .map_err(io)?;
            } else {
                file.write_all(&chunk[start..end]).map_err(io)?;
            }
            start = end;
        }
        length += n as u64;
    }
    file.set_len(length)
        .map_err(|e| ArchiveError::io(target, e))
}

fn is_zero(block: &[u8]) -> bool {
    block.iter().all(|b| *b == 0)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn write_hardlink<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Path,
    target: &Path,
) -> Result<(), ArchiveError> {
    let link = entry
        .link_name()
        .map_err(ArchiveError::tar)?
        .unwrap_or_default();
    let rel = sanitize(&link)?;
    ensure_parents(root, &rel)?;
    let source = root.join(&rel);
    if std::fs::symlink_metadata(&source).is_err() {
        return Err(ArchiveError::Hostile(format!(
            "hard link {} points to {}, which is not in the layer",
            target.file_name().unwrap_or_default().to_string_lossy(),
            link.display()
        )));
    }
    std::fs::hard_link(&source, target).map_err(|e| ArchiveError::io(target, e))
}

fn make_node(header: &tar::Header, target: &Path) -> Result<(), ArchiveError> {
    let kind = match header.entry_type() {
        EntryType::Char => SFlag::S_IFCHR,
        EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let major = header.device_major().ok().flatten().unwrap_or(0) as u64;
    let minor = header.device_minor().ok().flatten().unwrap_or(0) as u64;
    let dev = nix::sys::stat::makedev(major, minor);
    nix::sys::stat::mknod(target, kind, Mode::from_bits_truncate(0o600), dev)
        .map_err(|e| ArchiveError::io(target, e.into()))
}

/// Owner, mode, xattrs and mtime, never following a symlink.
fn apply_metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    header: &tar::Header,
    target: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), ArchiveError> {
    let (uid, gid) = owner.unwrap_or((
        header.uid().unwrap_or(0) as u32,
        header.gid().unwrap_or(0) as u32,
    ));
    nix::unistd::fchownat(
        None,
        target,
        Some(uid.into()),
        Some(gid.into()),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| ArchiveError::io(target, e.into()))?;
    if header.entry_type() != EntryType::Symlink {
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        std::fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(|e| ArchiveError::io(target, e))?;
    }
    let exts = entry.pax_extensions().map_err(ArchiveError::tar)?;
    for ext in exts.into_iter().flatten() {
        // The tar crate splits PAX records at newlines, so a value holding
        // one (a binary xattr such as a file capability) reads as
        // malformed: refuse the archive rather than drop the attribute.
        let ext = ext.map_err(|e| {
            ArchiveError::Tar(std::io::Error::other(format!(
                "{}: a PAX record berth cannot read ({e}); extended attribute values \
                 containing a newline are not supported",
                target.display()
            )))
        })?;
        if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
            if RESERVED_XATTRS.iter().any(|p| name.starts_with(p)) {
                continue; // berth's and overlayfs' own markers: never from an archive
            }
            set_xattr(target, name, ext.value_bytes())?;
        }
    }
    if header.entry_type() != EntryType::Directory {
        set_mtime(target, header.mtime().unwrap_or(0))?;
    }
    Ok(())
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), ArchiveError> {
    crate::sys::xattr::set(path, name.as_bytes(), value).map_err(|e| ArchiveError::io(path, e))
}

fn set_mtime(path: &Path, mtime: u64) -> Result<(), ArchiveError> {
    let ts = nix::sys::time::TimeSpec::new(mtime as i64, 0);
    nix::sys::stat::utimensat(
        None,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| ArchiveError::io(path, e.into()))
}
