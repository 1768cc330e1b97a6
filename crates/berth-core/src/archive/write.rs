//! Writes a folder tree as a tar stream that GNU tar and berth's own
//! extraction read back whole: the root itself (`./`), owners and modes
//! (numeric), times, symlinks as links, hard links as links (each inode's
//! data once), device nodes and FIFOs, holes in sparse files (old GNU
//! sparse), and extended attributes as PAX `SCHILY.xattr.*` records (what
//! GNU tar `--xattrs` writes).
//!
//! The tree may be changed while it is read by a container that does not
//! mean well, so nothing is ever reached by a path:
//! - every entry is opened with `openat(parent, name, O_PATH|O_NOFOLLOW)`
//!   relative to its folder's descriptor and its kind is taken from
//!   `fstat` of that descriptor. A name swapped for a symlink meanwhile is
//!   archived as the symlink it now is, never followed out of the tree;
//! - a regular file's data is read from the very inode that was `fstat`ed
//!   (reopened through `/proc/self/fd`, non-blocking); FIFOs and device
//!   nodes are never opened (a FIFO would block, `/dev/zero` never ends);
//! - a file's entry holds exactly the size its `fstat` gave: a file that
//!   grows meanwhile is cut there, one that shrinks is padded with zeros,
//!   so the entries after it are never shifted.
//!
//! Every folder on the way down holds one descriptor, so the deepest
//! nesting an export takes is bounded by the open-files limit.
//!
//! This file holds the walk, the headers and the PAX records; the
//! descriptor-level calls are in `fd.rs`, a regular file's body (sparse
//! map, reads of exactly the size given) in `sparse.rs`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header, HeaderMode};

use super::fd::{
    context, fd_metadata, list_folder, open_node, open_root_folder, read_link, read_xattrs,
    reopen_file,
};
use super::sparse::{file_body, READ_BUFFER};

/// Writes `root` itself (as `./`) and every entry under it, in name order,
/// to `out`; entries whose top-level name `skip` accepts are left out.
/// Returns the bytes of file data written (apparent sizes, each hard-linked
/// inode once). An error from `out` (a client that went away) ends the walk
/// at once.
pub fn write_tree<W: Write>(root: &Path, out: W, skip: &dyn Fn(&OsStr) -> bool) -> io::Result<u64> {
    let root_fd = open_root_folder(root)?;
    let mut writer = TreeWriter::new(out);
    let mut stack = vec![writer.root(root_fd)?];
    stack[0].names.retain(|name| !skip(name));
    walk(writer, stack)
}

/// One entry of a layer diff ([`write_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffEntry {
    /// A path (relative) written as the folder holds it; a folder alone,
    /// without what is under it (those are entries of their own).
    Present(PathBuf),
    /// A path deleted: written as its `.wh.<name>` whiteout file.
    Deleted(PathBuf),
}

/// Writes a layer tar of `entries` (parents before children) read from
/// `root` (an overlay upper folder: every changed path is there). Each
/// path is reached one component at a time without following symlinks;
/// overlay's own `trusted.overlay.*` attributes are left out, and a
/// redirected folder or a metadata-only copy (`redirect_dir`, `metacopy`:
/// data the folder does not hold) is refused.
pub fn write_changes<W: Write>(root: &Path, entries: &[DiffEntry], out: W) -> io::Result<u64> {
    let root_fd = open_root_folder(root)?;
    let mut writer = TreeWriter::new(out);
    writer.layer = true;
    for entry in entries {
        match entry {
            DiffEntry::Present(rel) => {
                if let Some(node) = open_path(&root_fd, rel)? {
                    writer.entry(node, rel.clone())?;
                }
            }
            DiffEntry::Deleted(rel) => writer.deletion(rel)?,
        }
    }
    writer.builder.into_inner()?.flush()?;
    Ok(writer.bytes)
}

/// `rel` under the folder `root`, each component opened `O_PATH|O_NOFOLLOW`
/// from the one before (a symlink on the way is never followed: the next
/// lookup through it fails). `None` when it is gone.
fn open_path(root: &OwnedFd, rel: &Path) -> io::Result<Option<OwnedFd>> {
    let mut node: Option<OwnedFd> = None;
    for name in rel.iter() {
        let dir = node.as_ref().unwrap_or(root);
        match open_node(dir.as_fd(), name, rel)? {
            Some(next) => node = Some(next),
            None => return Ok(None),
        }
    }
    Ok(node)
}

/// Writes what `root` holds, without an entry for `root` itself (as
/// `docker export` writes a root filesystem).
pub fn write_contents<W: Write>(root: &Path, out: W) -> io::Result<u64> {
    let root_fd = open_root_folder(root)?;
    let (_, names) = list_folder(&root_fd).map_err(|e| context(e, "listing", root))?;
    let frame = Frame {
        dir: root_fd,
        rel: PathBuf::new(),
        names,
        next: 0,
    };
    walk(TreeWriter::new(out), vec![frame])
}

/// Writes the node `node` (an `O_PATH` descriptor of a file, folder,
/// symlink…) as `name`, and for a folder everything under it as
/// `name/…` (`docker cp`'s archive of a path: entries named after its
/// last component). A symlink is written as a symlink, never followed.
pub fn write_named<W: Write>(node: OwnedFd, name: &Path, out: W) -> io::Result<u64> {
    let mut writer = TreeWriter::new(out);
    let mut stack = Vec::new();
    if let Some(folder) = writer.entry(node, name.to_path_buf())? {
        stack.push(folder);
    }
    walk(writer, stack)
}

/// Walks the folders on `stack` depth first, writing every entry.
fn walk<W: Write>(mut writer: TreeWriter<W>, mut stack: Vec<Frame>) -> io::Result<u64> {
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.get(frame.next).cloned() else {
            stack.pop();
            continue;
        };
        frame.next += 1;
        let rel = frame.rel.join(&name);
        let Some(node) = open_node(frame.dir.as_fd(), &name, &rel)? else {
            continue;
        };
        if let Some(folder) = writer.entry(node, rel)? {
            stack.push(folder);
        }
    }
    writer.builder.into_inner()?.flush()?;
    Ok(writer.bytes)
}

/// A folder being walked: its descriptor (`O_PATH`), its path in the
/// archive, its sorted names and the next one to write.
struct Frame {
    dir: OwnedFd,
    rel: PathBuf,
    names: Vec<OsString>,
    next: usize,
}

/// One stream's state: the first path written for each hard-linked inode.
struct TreeWriter<W: Write> {
    builder: Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
    bytes: u64,
    /// Set when writing entries of an overlay upper folder as a layer
    /// ([`write_changes`]): overlay's own attributes are left out.
    layer: bool,
}

impl<W: Write> TreeWriter<W> {
    fn new(out: W) -> Self {
        TreeWriter {
            builder: Builder::new(out),
            links: HashMap::new(),
            bytes: 0,
            layer: false,
        }
    }

    /// The root's `./` entry (owner, mode, time, xattrs); returns the root
    /// as the first folder to walk.
    fn root(&mut self, fd: OwnedFd) -> io::Result<Frame> {
        let rel = Path::new(".");
        let meta = fd_metadata(&fd).map_err(|e| context(e, "reading", rel))?;
        if !meta.is_dir() {
            return Err(io::Error::other("the tree's root is not a folder"));
        }
        let (attrs, names) = list_folder(&fd).map_err(|e| context(e, "listing", rel))?;
        self.xattrs(&attrs, rel)?;
        let mut header = header_from(&meta);
        header.set_size(0);
        self.builder.append_data(&mut header, "./", io::empty())?;
        Ok(Frame {
            dir: fd,
            rel: PathBuf::new(),
            names,
            next: 0,
        })
    }

    /// Writes the entry `node` (an `O_PATH` descriptor) as `rel`; a folder
    /// comes back as the next frame to walk.
    fn entry(&mut self, node: OwnedFd, rel: PathBuf) -> io::Result<Option<Frame>> {
        let meta = fd_metadata(&node).map_err(|e| context(e, "reading", &rel))?;
        if !archivable(&meta, &rel) {
            return Ok(None);
        }
        if let Some(first) = self.first_link(&meta, &rel) {
            return self.hard_link(&meta, &rel, &first).map(|()| None);
        }
        let kind = meta.file_type();
        if kind.is_dir() {
            return self.folder(node, &meta, rel).map(Some);
        }
        if kind.is_file() {
            self.regular(&node, &meta, &rel)?;
        } else if kind.is_symlink() {
            let target = read_link(&node).map_err(|e| context(e, "reading", &rel))?;
            self.symlink(&meta, &rel, &target)?;
        } else {
            self.special(&meta, &rel)?;
        }
        Ok(None)
    }

    /// For an inode with more than one name (folders aside): the path it
    /// was first written as, or `None` (`rel` noted as that first path) if
    /// this is its first.
    fn first_link(&mut self, meta: &Metadata, rel: &Path) -> Option<PathBuf> {
        if meta.is_dir() || meta.nlink() <= 1 {
            return None;
        }
        let key = (meta.dev(), meta.ino());
        if let Some(first) = self.links.get(&key) {
            return Some(first.clone());
        }
        self.links.insert(key, rel.to_path_buf());
        None
    }

    /// A folder's entry (its xattrs first); returns it as the next frame
    /// to walk.
    fn folder(&mut self, node: OwnedFd, meta: &Metadata, rel: PathBuf) -> io::Result<Frame> {
        let (mut attrs, names) = list_folder(&node).map_err(|e| context(e, "listing", &rel))?;
        if self.layer {
            overlay_attrs(&mut attrs, &rel)?;
        }
        self.xattrs(&attrs, &rel)?;
        let mut header = header_from(meta);
        header.set_size(0);
        self.builder.append_data(&mut header, &rel, io::empty())?;
        Ok(Frame {
            dir: node,
            rel,
            names,
            next: 0,
        })
    }

    /// A regular file's entry (its xattrs first), read from the inode
    /// `node` was opened on, as long as `meta` said it was.
    fn regular(&mut self, node: &OwnedFd, meta: &Metadata, rel: &Path) -> io::Result<()> {
        let file = reopen_file(node, meta).map_err(|e| context(e, "opening", rel))?;
        let mut attrs =
            read_xattrs(file.as_fd()).map_err(|e| context(e, "reading xattrs of", rel))?;
        if self.layer {
            overlay_attrs(&mut attrs, rel)?;
        }
        self.xattrs(&attrs, rel)?;
        self.file(&file, meta, meta.len(), rel)
    }

    /// A regular file's entry: the header from `meta` with size `size`,
    /// then exactly `size` bytes read from `file` at their offsets (zeros
    /// where the file has shrunk since), holes left out as old GNU sparse
    /// segments.
    fn file(&mut self, file: &File, meta: &Metadata, size: u64, rel: &Path) -> io::Result<()> {
        let mut header = header_from(meta);
        header.set_size(size);
        let mut body = file_body(file, meta, size, &mut header);
        let buffer = body.len().clamp(512, READ_BUFFER) as usize;
        self.builder.append_data(
            &mut header,
            rel,
            BufReader::with_capacity(buffer, &mut body),
        )?;
        if body.padded > 0 {
            tracing::warn!(path = %rel.display(), zeros = body.padded, "file shrank while it was archived; padded with zeros");
        }
        self.bytes += size;
        Ok(())
    }

    /// A symlink's entry; its target is kept byte for byte.
    fn symlink(&mut self, meta: &Metadata, rel: &Path, target: &[u8]) -> io::Result<()> {
        let mut header = header_from(meta);
        header.set_size(0);
        let slot = &mut header.as_old_mut().linkname;
        if target.len() <= slot.len() {
            slot[..target.len()].copy_from_slice(target);
            self.builder.append_data(&mut header, rel, io::empty())
        } else {
            // A GNU long-link entry carries the whole target.
            let target = Path::new(OsStr::from_bytes(target));
            self.builder.append_link(&mut header, rel, target)
        }
    }

    /// A FIFO or device node: a header, never opened.
    fn special(&mut self, meta: &Metadata, rel: &Path) -> io::Result<()> {
        let mut header = header_from(meta);
        header.set_size(0);
        let kind = meta.file_type();
        if kind.is_char_device() || kind.is_block_device() {
            let rdev = meta.rdev();
            header.set_device_major(libc::major(rdev))?;
            header.set_device_minor(libc::minor(rdev))?;
        }
        self.builder.append_data(&mut header, rel, io::empty())
    }

    /// The whiteout of a deleted path: an empty regular file
    /// `dir/.wh.<name>`, owned by root, mode 0, as moby's
    /// `ExportChanges` writes it.
    fn deletion(&mut self, rel: &Path) -> io::Result<()> {
        let mut name = OsString::from(".wh.");
        name.push(rel.file_name().unwrap_or_default());
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0);
        header.set_size(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        header.set_mtime(now);
        self.builder
            .append_data(&mut header, rel.with_file_name(name), io::empty())
    }

    /// A hard link entry to the first path of the same inode.
    fn hard_link(&mut self, meta: &Metadata, rel: &Path, first: &Path) -> io::Result<()> {
        let mut header = header_from(meta);
        header.set_entry_type(EntryType::Link);
        header.set_size(0);
        self.builder.append_link(&mut header, rel, first)
    }

    /// A PAX header with the entry's extended attributes, if it has any.
    fn xattrs(&mut self, attrs: &[(Vec<u8>, Vec<u8>)], rel: &Path) -> io::Result<()> {
        if attrs.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        for (name, value) in attrs {
            let key = [b"SCHILY.xattr.".as_slice(), name].concat();
            records.extend(pax_record(&key, value));
        }
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_path(pax_name(rel))?;
        header.set_mode(0o644);
        header.set_size(records.len() as u64);
        header.set_cksum();
        self.builder.append(&header, records.as_slice())
    }
}

/// Whether an entry of `meta`'s kind goes into the archive: a socket is
/// left out (as GNU tar does: a live endpoint, not data), and so is a kind
/// not known here. Decided before anything else is noted about the entry
/// (its attributes, its hard links).
fn archivable(meta: &Metadata, rel: &Path) -> bool {
    let kind = meta.file_type();
    if kind.is_socket() {
        tracing::debug!(path = %rel.display(), "socket left out of the archive");
        return false;
    }
    let known = kind.is_dir()
        || kind.is_file()
        || kind.is_symlink()
        || kind.is_fifo()
        || kind.is_char_device()
        || kind.is_block_device();
    if !known {
        tracing::warn!(path = %rel.display(), mode = meta.mode(), "entry of unknown kind left out of the archive");
    }
    known
}

/// Drops overlay's own attributes from `attrs`. Redirects and
/// metadata-only copies are refused (their data is not in the upper
/// folder).
fn overlay_attrs(attrs: &mut Vec<(Vec<u8>, Vec<u8>)>, rel: &Path) -> io::Result<()> {
    let elsewhere =
        |name: &[u8]| name == b"trusted.overlay.redirect" || name == b"trusted.overlay.metacopy";
    if attrs.iter().any(|(name, _)| elsewhere(name)) {
        return Err(io::Error::other(format!(
            "{} is an overlay redirect or metadata-only copy: its data is in a lower layer",
            rel.display()
        )));
    }
    attrs.retain(|(name, _)| !name.starts_with(b"trusted.overlay."));
    Ok(())
}

/// A GNU header with `meta`'s kind, numeric owner, permission bits and
/// time (the size is the caller's to set).
fn header_from(meta: &Metadata) -> Header {
    let mut header = Header::new_gnu();
    header.set_metadata_in_mode(meta, HeaderMode::Complete);
    header.set_mode(meta.mode() & 0o7777);
    header
}

/// A PAX header's own name, as GNU tar makes it, always short enough for
/// ustar's 100-byte name field: readers ignore it, so the entry's base name
/// is cut to at most [`PAX_BASE_MAX`] bytes *after* it is made valid UTF-8
/// (each invalid byte becomes a 3-byte U+FFFD, so cutting the raw bytes
/// first could leave it longer than the field, and the export would fail).
fn pax_name(rel: &Path) -> PathBuf {
    let base = rel.file_name().map(|n| n.as_bytes()).unwrap_or(b"entry");
    let base = String::from_utf8_lossy(base);
    let mut cut = base.len().min(PAX_BASE_MAX);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    Path::new("PaxHeaders.0").join(&base[..cut])
}

/// The longest base name a PAX header's own name keeps, in bytes
/// (`PaxHeaders.0/` plus this fits ustar's 100-byte name field).
const PAX_BASE_MAX: usize = 80;

/// `"<len> <key>=<value>\n"`, where `<len>` counts the whole record,
/// itself included.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + body.to_string().len();
    while len != body + len.to_string().len() {
        len += 1; // the length's own digits carried it over a power of ten
    }
    let mut record = format!("{len} ").into_bytes();
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;

#[cfg(test)]
mod pax_name_tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn pax_names_fit_ustar_for_names_that_are_not_utf8() {
        // Names the lossy conversion makes longer than ustar's field.
        let names = [
            b"caf\xe9".repeat(20),
            b"\xff".repeat(255),
            format!("x{}", "é".repeat(127)).into_bytes(), // byte 80 is mid-character
        ];
        for n in &names {
            let name = pax_name(Path::new(OsStr::from_bytes(n)));
            assert!(name.as_os_str().len() <= 100, "{name:?}");
            assert!(name.to_str().is_some(), "{name:?}");
        }
    }

    #[test]
    fn a_file_named_in_no_encoding_with_an_xattr_is_exported_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // 80 bytes, 20 of them invalid UTF-8: 120 once made lossy.
        let raw = b"caf\xe9".repeat(20);
        let name = OsStr::from_bytes(&raw);
        let file = root.join(name);
        std::fs::write(&file, b"data").unwrap();
        crate::sys::xattr::set(&file, b"user.note", b"v").unwrap();
        let mut out = Vec::new();
        write_tree(&root, &mut out, &|_| false).unwrap();
        let mut archive = tar::Archive::new(out.as_slice());
        let mut found = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut xattrs = Vec::new();
            if let Some(pax) = entry.pax_extensions().unwrap() {
                for ext in pax {
                    let ext = ext.unwrap();
                    xattrs.push((ext.key().unwrap().to_string(), ext.value_bytes().to_vec()));
                }
            }
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            let path = entry.path_bytes().into_owned();
            found.push((path, data, xattrs));
        }
        assert_eq!(found.len(), 2, "the root and the file");
        let (path, data, xattrs) = &found[1];
        assert_eq!(path, &raw);
        assert_eq!(data, b"data");
        assert_eq!(
            xattrs,
            &[("SCHILY.xattr.user.note".to_string(), b"v".to_vec())]
        );
    }
}
