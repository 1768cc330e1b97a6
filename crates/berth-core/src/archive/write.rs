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

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, GnuExtSparseHeader, Header, HeaderMode};

/// Sparse-map segments kept per file at most; beyond that neighbouring
/// segments are merged (the holes between them written as zeros), so a
/// file with millions of tiny holes costs bounded memory.
const MAX_SEGMENTS: usize = 1 << 16;

/// Largest read buffer for file data.
const READ_BUFFER: u64 = 256 * 1024;

/// Writes `root` itself (as `./`) and every entry under it, in name order,
/// to `out`; entries whose top-level name `skip` accepts are left out.
/// Returns the bytes of file data written (apparent sizes, each hard-linked
/// inode once). An error from `out` (a client that went away) ends the walk
/// at once.
pub fn write_tree<W: Write>(root: &Path, out: W, skip: &dyn Fn(&OsStr) -> bool) -> io::Result<u64> {
    let c_root = CString::new(root.as_os_str().as_bytes())?;
    // The root's own path is the host's, trusted: opened (following links)
    // once; everything below it is reached through descriptors.
    // SAFETY: a NUL-terminated path.
    let root_fd = retry(|| unsafe {
        libc::open(
            c_root.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
    .map_err(|e| context(e, "opening", root))?;
    let mut writer = TreeWriter::new(out);
    let mut stack = vec![writer.root(root_fd)?];
    stack[0].names.retain(|name| !skip(name));
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
}

impl<W: Write> TreeWriter<W> {
    fn new(out: W) -> Self {
        TreeWriter {
            builder: Builder::new(out),
            links: HashMap::new(),
            bytes: 0,
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
        let kind = meta.file_type();
        if kind.is_socket() {
            // As GNU tar does: a socket is a live endpoint, not data. Left
            // out before anything else is noted about it (its attributes,
            // its hard links).
            tracing::debug!(path = %rel.display(), "socket left out of the archive");
            return Ok(None);
        }
        let known = kind.is_dir()
            || kind.is_file()
            || kind.is_symlink()
            || kind.is_fifo()
            || kind.is_char_device()
            || kind.is_block_device();
        if !known {
            tracing::warn!(path = %rel.display(), mode = meta.mode(), "entry of unknown kind left out of the archive");
            return Ok(None);
        }
        if !kind.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                return self.hard_link(&meta, &rel, &first).map(|()| None);
            }
            self.links.insert(key, rel.clone());
        }
        if kind.is_dir() {
            let (attrs, names) = list_folder(&node).map_err(|e| context(e, "listing", &rel))?;
            self.xattrs(&attrs, &rel)?;
            let mut header = header_from(&meta);
            header.set_size(0);
            self.builder.append_data(&mut header, &rel, io::empty())?;
            return Ok(Some(Frame {
                dir: node,
                rel,
                names,
                next: 0,
            }));
        }
        if kind.is_file() {
            let file = reopen_file(&node, &meta).map_err(|e| context(e, "opening", &rel))?;
            let attrs =
                read_xattrs(file.as_fd()).map_err(|e| context(e, "reading xattrs of", &rel))?;
            self.xattrs(&attrs, &rel)?;
            self.file(&file, &meta, meta.len(), &rel)?;
        } else if kind.is_symlink() {
            let target = read_link(&node).map_err(|e| context(e, "reading", &rel))?;
            self.symlink(&meta, &rel, &target)?;
        } else {
            self.special(&meta, &rel)?;
        }
        Ok(None)
    }

    /// A regular file's entry: the header from `meta` with size `size`,
    /// then exactly `size` bytes read from `file` at their offsets (zeros
    /// where the file has shrunk since), holes left out as old GNU sparse
    /// segments.
    fn file(&mut self, file: &File, meta: &Metadata, size: u64, rel: &Path) -> io::Result<()> {
        let mut header = header_from(meta);
        header.set_size(size);
        let holes_possible = size > 0 && meta.blocks().saturating_mul(512) < size;
        let segments = if holes_possible {
            data_segments(file, size, MAX_SEGMENTS)
        } else {
            None
        };
        let mut body = match segments {
            None => FileBody::new(file, Vec::new(), vec![(0, size)]),
            Some(segments) => {
                let prefix = sparse_header(&mut header, &segments, size);
                FileBody::new(file, prefix, segments)
            }
        };
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

/// A GNU header with `meta`'s kind, numeric owner, permission bits and
/// time (the size is the caller's to set).
fn header_from(meta: &Metadata) -> Header {
    let mut header = Header::new_gnu();
    header.set_metadata_in_mode(meta, HeaderMode::Complete);
    header.set_mode(meta.mode() & 0o7777);
    header
}

/// Turns `header` into an old GNU sparse header for `segments` (data
/// extents, in order, each 512-aligned but the last, which may end at
/// `size`); returns the extension blocks that must precede the data.
fn sparse_header(header: &mut Header, segments: &[(u64, u64)], size: u64) -> Vec<u8> {
    header.set_entry_type(EntryType::GNUSparse);
    header.set_size(segments.iter().map(|(_, len)| len).sum());
    // GNU tar ends every map with an empty segment at the real size, which
    // is also how a file ending in a hole (or wholly one) is described.
    let mut map = segments.to_vec();
    map.push((size, 0));
    let gnu = header.as_gnu_mut().expect("a GNU header");
    gnu.set_real_size(size);
    let in_header = gnu.sparse.len();
    for (slot, (offset, len)) in gnu.sparse.iter_mut().zip(&map) {
        slot.set_offset(*offset);
        slot.set_length(*len);
    }
    gnu.set_is_extended(map.len() > in_header);
    let mut prefix = Vec::new();
    let mut rest = map
        .get(in_header..)
        .unwrap_or_default()
        .chunks(21)
        .peekable();
    while let Some(chunk) = rest.next() {
        let mut ext = GnuExtSparseHeader::new();
        debug_assert_eq!(ext.sparse.len(), 21);
        for (slot, (offset, len)) in ext.sparse.iter_mut().zip(chunk) {
            slot.set_offset(*offset);
            slot.set_length(*len);
        }
        ext.set_is_extended(rest.peek().is_some());
        prefix.extend_from_slice(ext.as_bytes());
    }
    prefix
}

/// The data segments `(offset, length)` of the first `size` bytes of
/// `file`, by `SEEK_DATA`/`SEEK_HOLE`, widened to 512-byte boundaries (the
/// last may end at `size`), at most `max` of them (neighbours merged past
/// that). `None` when the file has no hole there or the filesystem cannot
/// tell: it is then read whole, which is always right.
fn data_segments(file: &File, size: u64, max: usize) -> Option<Vec<(u64, u64)>> {
    let seek = |offset: u64, whence: libc::c_int| -> Result<u64, i32> {
        let offset = i64::try_from(offset).map_err(|_| libc::EINVAL)?;
        // SAFETY: a plain lseek on a descriptor we own.
        match unsafe { libc::lseek(file.as_raw_fd(), offset, whence) } {
            -1 => Err(io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)),
            at => Ok(at as u64),
        }
    };
    let mut segments: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0;
    while pos < size {
        let start = match seek(pos, libc::SEEK_DATA) {
            Ok(at) => at.max(pos),
            Err(libc::ENXIO) => break, // no data from `pos` on
            Err(_) => return None,
        };
        if start >= size {
            break;
        }
        let end = match seek(start, libc::SEEK_HOLE) {
            Ok(at) => at.min(size),
            Err(libc::ENXIO) => size, // the file shrank under us: zeros
            Err(_) => return None,
        };
        let start = start / 512 * 512;
        let end = end.div_ceil(512).saturating_mul(512).min(size);
        if end > start {
            match segments.last_mut() {
                Some((offset, len)) if *offset + *len >= start => {
                    *len = (*len).max(end - *offset);
                }
                _ => segments.push((start, end - start)),
            }
            if segments.len() > max {
                segments = segments
                    .chunks(2)
                    .map(|pair| {
                        let (first, last) = (pair[0], pair[pair.len() - 1]);
                        (first.0, last.0 + last.1 - first.0)
                    })
                    .collect();
            }
        }
        // Always forward, even if the file changes between the two seeks.
        pos = end.max((start / 512 + 1) * 512);
    }
    if segments == [(0, size)] {
        None
    } else {
        Some(segments)
    }
}

/// The bytes of one file entry: the sparse extension blocks, then each
/// segment read with `pread`, exactly its length: zeros stand for what is
/// no longer there, and nothing past it is ever read.
struct FileBody<'a> {
    file: &'a File,
    prefix: Vec<u8>,
    prefix_at: usize,
    segments: Vec<(u64, u64)>,
    segment: usize,
    done: u64,
    /// Zeros given for bytes the file no longer had.
    padded: u64,
}

impl<'a> FileBody<'a> {
    fn new(file: &'a File, prefix: Vec<u8>, segments: Vec<(u64, u64)>) -> Self {
        FileBody {
            file,
            prefix,
            prefix_at: 0,
            segments,
            segment: 0,
            done: 0,
            padded: 0,
        }
    }

    /// Bytes this body yields in all.
    fn len(&self) -> u64 {
        self.prefix.len() as u64 + self.segments.iter().map(|(_, len)| len).sum::<u64>()
    }
}

impl Read for FileBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.prefix_at < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.prefix_at);
            buf[..n].copy_from_slice(&self.prefix[self.prefix_at..self.prefix_at + n]);
            self.prefix_at += n;
            return Ok(n);
        }
        loop {
            let Some(&(offset, len)) = self.segments.get(self.segment) else {
                return Ok(0);
            };
            if self.done == len {
                self.segment += 1;
                self.done = 0;
                continue;
            }
            let want = (len - self.done).min(buf.len() as u64) as usize;
            let buf = &mut buf[..want];
            let n = match self.file.read_at(buf, offset + self.done) {
                Ok(0) => {
                    buf.fill(0);
                    self.padded += want as u64;
                    want
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.done += n as u64;
            return Ok(n);
        }
    }
}

/// `name` in `dir`, opened `O_PATH|O_NOFOLLOW`: the entry itself, whatever
/// it is, never what a symlink points to, and without the side effects of
/// a real open. `None` when it is gone (removed since the folder was
/// listed).
fn open_node(dir: BorrowedFd, name: &OsStr, rel: &Path) -> io::Result<Option<OwnedFd>> {
    let c_name = CString::new(name.as_bytes())?;
    let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid descriptor and NUL-terminated name.
    match retry(|| unsafe { libc::openat(dir.as_raw_fd(), c_name.as_ptr(), flags) }) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            tracing::debug!(path = %rel.display(), "removed before it was archived");
            Ok(None)
        }
        Err(e) => Err(context(e, "opening", rel)),
    }
}

/// `fstat` of a descriptor (an `O_PATH` one too).
fn fd_metadata(fd: &OwnedFd) -> io::Result<Metadata> {
    // SAFETY: `fd` stays open for the call and the `File` never closes it.
    let file = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd.as_raw_fd()) });
    file.metadata()
}

/// The regular file behind `node` (`O_PATH`) opened for reading: the same
/// inode, reached through `/proc/self/fd`, never through its name again;
/// non-blocking, so a lease or lock cannot hold the export.
fn reopen_file(node: &OwnedFd, meta: &Metadata) -> io::Result<File> {
    let path = CString::new(format!("/proc/self/fd/{}", node.as_raw_fd()))?;
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path.
    let file = File::from(retry(|| unsafe { libc::open(path.as_ptr(), flags) })?);
    let again = file.metadata()?;
    if !again.is_file() || (again.dev(), again.ino()) != (meta.dev(), meta.ino()) {
        return Err(io::Error::other("reopened a different file"));
    }
    Ok(file)
}

/// A symlink's target, from its `O_PATH` descriptor.
fn read_link(node: &OwnedFd) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    loop {
        // SAFETY: a valid descriptor, an empty path (the descriptor's own
        // symlink) and a buffer of the length given.
        let n = unsafe {
            libc::readlinkat(
                node.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if (n as usize) < buf.len() {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        if buf.len() >= 1 << 20 {
            return Err(io::Error::other("symlink target too long"));
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// The extended attributes and the sorted names (a stable order makes
/// equal trees give equal streams) of the folder `node` (`O_PATH`), read
/// through a descriptor opened from it.
#[allow(clippy::type_complexity)]
fn list_folder(node: &OwnedFd) -> io::Result<(Vec<(Vec<u8>, Vec<u8>)>, Vec<OsString>)> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: a valid descriptor and NUL-terminated name.
    let fd = retry(|| unsafe { libc::openat(node.as_raw_fd(), c".".as_ptr(), flags) })?;
    let attrs = read_xattrs(fd.as_fd())?;
    let dir = DirStream::new(fd)?;
    let mut names = Vec::new();
    while let Some(name) = dir.next_name()? {
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name));
        }
    }
    names.sort();
    Ok((attrs, names))
}

/// A folder's `readdir` stream (owns the descriptor it was made from).
struct DirStream(std::ptr::NonNull<libc::DIR>);

impl DirStream {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is an open folder descriptor; on success the stream
        // owns it.
        match std::ptr::NonNull::new(unsafe { libc::fdopendir(raw) }) {
            Some(dir) => Ok(DirStream(dir)),
            None => {
                let e = io::Error::last_os_error();
                // SAFETY: still ours after a failed fdopendir.
                unsafe { libc::close(raw) };
                Err(e)
            }
        }
    }

    /// The next name, `None` at the end.
    fn next_name(&self) -> io::Result<Option<Vec<u8>>> {
        nix::errno::Errno::clear();
        // SAFETY: a live stream; the entry is copied before the next call.
        let entry = unsafe { libc::readdir(self.0.as_ptr()) };
        if entry.is_null() {
            return match nix::errno::Errno::last_raw() {
                0 => Ok(None),
                errno => Err(io::Error::from_raw_os_error(errno)),
            };
        }
        // SAFETY: readdir gives a NUL-terminated name.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        Ok(Some(name.to_bytes().to_vec()))
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: a live stream, closed once.
        unsafe { libc::closedir(self.0.as_ptr()) };
    }
}

/// `(name, value)` of every extended attribute of the file or folder open
/// as `fd`.
fn read_xattrs(fd: BorrowedFd) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let raw = fd.as_raw_fd();
    // SAFETY: a valid descriptor; the buffer is the length given.
    let names = sized_read(|buf, len| unsafe { libc::flistxattr(raw, buf.cast(), len) })?;
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let c_name = CString::new(name)?;
        // SAFETY: a valid descriptor and name; the buffer is the length given.
        let value = sized_read(|buf, len| unsafe {
            libc::fgetxattr(raw, c_name.as_ptr(), buf.cast(), len)
        });
        match value {
            Ok(value) => out.push((name.to_vec(), value)),
            // Removed since the list was read.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Calls `call(buffer, len)`, a `*xattr` call that tells its result's
/// size when given no buffer, with a buffer of the size it asks for
/// (asking again if the value grew between the calls). A filesystem
/// without attributes gives none.
fn sized_read(call: impl Fn(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    for _ in 0..16 {
        let len = call(std::ptr::null_mut(), 0);
        if len < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(e),
            };
        }
        let mut buf = vec![0u8; len as usize];
        let n = call(buf.as_mut_ptr(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
    Err(io::Error::other("extended attributes keep changing"))
}

/// Runs an `open`-like call until it is not interrupted; its descriptor.
fn retry(call: impl Fn() -> libc::c_int) -> io::Result<OwnedFd> {
    loop {
        let fd = call();
        if fd >= 0 {
            // SAFETY: a new descriptor nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `e`, saying what was being done to which entry.
fn context(e: io::Error, doing: &str, rel: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", rel.display()))
}

/// A PAX header's own name, as GNU tar makes it (short enough for ustar).
fn pax_name(rel: &Path) -> PathBuf {
    let base = rel.file_name().map(|n| n.as_bytes()).unwrap_or(b"entry");
    let base = String::from_utf8_lossy(&base[..base.len().min(80)]).into_owned();
    Path::new("PaxHeaders.0").join(base)
}

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
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    /// One entry as the tar crate reads it back.
    struct Got {
        path: String,
        kind: EntryType,
        header: Header,
        link: Option<PathBuf>,
        data: Vec<u8>,
        xattrs: Vec<(String, Vec<u8>)>,
    }

    fn read_back(archive: &[u8]) -> Vec<Got> {
        let mut archive = tar::Archive::new(archive);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut xattrs = Vec::new();
                if let Some(pax) = e.pax_extensions().unwrap() {
                    // (The tar crate's reader cuts records at newlines, so a
                    // value holding one is not read back here; GNU tar reads it.)
                    for ext in pax.map_while(Result::ok) {
                        xattrs.push((ext.key().unwrap().to_string(), ext.value_bytes().to_vec()));
                    }
                }
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                Got {
                    path: e.path().unwrap().display().to_string(),
                    kind: e.header().entry_type(),
                    header: e.header().clone(),
                    link: e.link_name().unwrap().map(|l| l.into_owned()),
                    data,
                    xattrs,
                }
            })
            .collect()
    }

    fn export(root: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        write_tree(root, &mut out, &|_| false).unwrap();
        out
    }

    /// Runs GNU tar; its stderr must be empty (no warning either).
    fn gnu_tar(args: &[&str], archive: &Path, dir: &Path) -> String {
        let out = Command::new("tar")
            .args(args)
            .arg("-f")
            .arg(archive)
            .arg("-C")
            .arg(dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "tar {args:?}: {stderr}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Lists `archive` with `tar --xattrs -tv` and extracts it into a new
    /// folder with `tar --xattrs --xattrs-include='*' -xp`.
    fn gnu_extract(archive: &[u8], work: &Path) -> (String, PathBuf) {
        let file = work.join("archive.tar");
        std::fs::write(&file, archive).unwrap();
        let listing = gnu_tar(&["--xattrs", "-tv"], &file, work);
        let out = work.join("out");
        std::fs::create_dir(&out).unwrap();
        gnu_tar(&["--xattrs", "--xattrs-include=*", "-xp"], &file, &out);
        (listing, out)
    }

    fn set_xattr(path: &Path, name: &str, value: &[u8]) {
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        let c_name = CString::new(name).unwrap();
        // SAFETY: valid strings and buffer.
        let r = unsafe {
            libc::lsetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
    }

    fn get_xattr(path: &Path, name: &str) -> Vec<u8> {
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        let c_name = CString::new(name).unwrap();
        let mut value = vec![0u8; 256];
        // SAFETY: valid strings and buffer.
        let n = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(
            n >= 0,
            "{name} on {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
        value.truncate(n as usize);
        value
    }

    fn open_root(root: &Path) -> OwnedFd {
        let c_root = CString::new(root.as_os_str().as_bytes()).unwrap();
        retry(|| unsafe { libc::open(c_root.as_ptr(), libc::O_PATH | libc::O_DIRECTORY) }).unwrap()
    }

    /// A sparse file of `size` bytes with `segments` distinct 4 KiB data
    /// extents, 256 KiB apart; its expected bytes.
    fn make_sparse(path: &Path, segments: u64, size: u64) -> Vec<u8> {
        let file = File::create(path).unwrap();
        let mut want = vec![0u8; size as usize + segments as usize * 256 * 1024];
        for i in 0..segments {
            let at = i * 256 * 1024 + 8192;
            let block: Vec<u8> = (0..4096u64).map(|j| (i * 7 + j % 251) as u8 | 1).collect();
            file.write_at(&block, at).unwrap();
            want[at as usize..at as usize + 4096].copy_from_slice(&block);
        }
        // Cut (or extended with a hole) to `size`.
        file.set_len(size).unwrap();
        want.truncate(size as usize);
        want
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record(b"a", b"b"), b"6 a=b\n");
        let r = pax_record(b"k", &[b'v'; 94]);
        assert_eq!(r.len(), 101);
        assert!(r.starts_with(b"101 k="));
        let r = pax_record(b"k", &[b'v'; 93]);
        assert_eq!(r.len(), 99);
        assert!(r.starts_with(b"99 k="));
    }

    #[test]
    fn writes_links_specials_holes_and_xattrs_gnu_tar_reads() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"hi\n").unwrap();
        set_xattr(&root.join("a/b/f"), "user.note", b"v =1");
        std::fs::write(root.join("bin"), b"").unwrap();
        set_xattr(&root.join("bin"), "user.bin", b"\n\0=\xff");
        set_xattr(&root.join("a"), "user.dir", b"d");
        std::fs::hard_link(root.join("a/b/f"), root.join("hard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        // A copy of /dev/zero: its entry is a header, never an endless read.
        nix::sys::stat::mknod(
            &root.join("zero"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            libc::makedev(1, 5),
        )
        .unwrap();
        std::fs::File::create(root.join("sparse"))
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let mut out = Vec::new();
        let bytes = write_tree(&root, &mut out, &|_| false).unwrap();
        assert_eq!(bytes, 3 + (64 << 20), "apparent sizes, the hard link once");
        assert!(
            out.len() < 64 * 1024,
            "the hole is not written: {} bytes",
            out.len()
        );
        let entries = read_back(&out);
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            names,
            ["./", "a", "a/b", "a/b/f", "bin", "fifo", "hard", "link", "sparse", "zero"]
        );
        let kind = |name: &str| entries.iter().find(|e| e.path == name).unwrap();
        assert_eq!(kind("./").kind, EntryType::Directory);
        assert_eq!(kind("fifo").kind, EntryType::Fifo);
        assert_eq!(kind("hard").kind, EntryType::Link);
        assert_eq!(kind("hard").link.clone().unwrap(), Path::new("a/b/f"));
        assert_eq!(kind("link").kind, EntryType::Symlink);
        assert_eq!(kind("link").link.clone().unwrap(), Path::new("/etc/passwd"));
        assert_eq!(kind("sparse").kind, EntryType::GNUSparse);
        assert_eq!(kind("sparse").data.len(), 64 << 20);
        assert!(kind("sparse").data.iter().all(|b| *b == 0));
        let zero = &kind("zero").header;
        assert_eq!(zero.entry_type(), EntryType::Char);
        assert_eq!(zero.device_major().unwrap(), Some(1));
        assert_eq!(zero.device_minor().unwrap(), Some(5));
        assert_eq!(zero.size().unwrap(), 0);
        assert_eq!(
            kind("a").xattrs,
            [("SCHILY.xattr.user.dir".into(), b"d".to_vec())]
        );
        assert_eq!(
            kind("a/b/f").xattrs,
            [("SCHILY.xattr.user.note".into(), b"v =1".to_vec())]
        );
        assert_eq!(
            kind("a/b/f").header.mode().unwrap(),
            0o644,
            "permission bits only"
        );

        let (listing, got) = gnu_extract(&out, dir.path());
        assert!(listing.contains("a/b/f"), "{listing}");
        assert_eq!(std::fs::read(got.join("a/b/f")).unwrap(), b"hi\n");
        let f = std::fs::metadata(got.join("a/b/f")).unwrap();
        assert_eq!(f.ino(), std::fs::metadata(got.join("hard")).unwrap().ino());
        assert_eq!(
            std::fs::read_link(got.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(std::fs::symlink_metadata(got.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(
            std::fs::metadata(got.join("zero")).unwrap().rdev(),
            libc::makedev(1, 5)
        );
        let sparse = std::fs::metadata(got.join("sparse")).unwrap();
        assert_eq!((sparse.len(), sparse.blocks()), (64 << 20, 0));
        assert_eq!(get_xattr(&got.join("a/b/f"), "user.note"), b"v =1");
        assert_eq!(get_xattr(&got.join("a"), "user.dir"), b"d");
        assert_eq!(get_xattr(&got.join("bin"), "user.bin"), b"\n\0=\xff");
    }

    #[test]
    fn the_root_entry_comes_first_with_its_owner_mode_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("f"), b"x").unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&root, Some(999), Some(998)).unwrap();
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        File::open(&root).unwrap().set_modified(when).unwrap();
        let out = export(&root);
        let entries = read_back(&out);
        let first = &entries[0].header;
        assert_eq!(entries[0].path, "./");
        assert_eq!(first.entry_type(), EntryType::Directory);
        assert_eq!(first.mode().unwrap(), 0o700);
        assert_eq!((first.uid().unwrap(), first.gid().unwrap()), (999, 998));
        assert_eq!(first.mtime().unwrap(), 1_600_000_000);
        assert_eq!(entries[1].path, "f");
        let (listing, got) = gnu_extract(&out, dir.path());
        assert!(listing.lines().next().unwrap().contains("./"), "{listing}");
        let meta = std::fs::metadata(&got).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o700);
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mtime()),
            (999, 998, 1_600_000_000)
        );
    }

    #[test]
    fn sparse_files_with_many_segments_round_trip_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // 8 segments (one extension block), ending in a hole at an odd size;
        // 60 segments (three extension blocks), ending in data at an odd size.
        let few = make_sparse(&root.join("few"), 8, (3 << 20) + 77);
        let many = make_sparse(&root.join("many"), 60, 59 * 256 * 1024 + 8192 + 1000);
        set_xattr(&root.join("many"), "user.kept", b"yes");
        let after = b"after the sparse files".to_vec();
        std::fs::write(root.join("z-after"), &after).unwrap();
        let out = export(&root);
        assert!(
            out.len() < 512 * 1024,
            "holes are not written: {}",
            out.len()
        );
        let entries = read_back(&out);
        let by_name = |n: &str| entries.iter().find(|e| e.path == n).unwrap();
        for (name, want, segments) in [("few", &few, 8), ("many", &many, 60)] {
            let e = by_name(name);
            assert_eq!(e.kind, EntryType::GNUSparse, "{name}");
            let gnu = e.header.as_gnu().unwrap();
            assert!(gnu.is_extended(), "{name}: more than 4 segments");
            assert_eq!(gnu.real_size().unwrap(), want.len() as u64);
            assert_eq!(
                e.header.entry_size().unwrap(),
                segments * 4096 - if name == "many" { 3096 } else { 0 }
            );
            assert!(
                e.data == *want,
                "{name}: the tar crate reads it back byte-exact"
            );
        }
        assert_eq!(
            by_name("many").xattrs,
            [("SCHILY.xattr.user.kept".into(), b"yes".to_vec())]
        );
        assert_eq!(by_name("z-after").data, after);

        let (listing, got) = gnu_extract(&out, dir.path());
        assert!(listing.contains("many"), "{listing}");
        for (name, want) in [("few", &few), ("many", &many)] {
            assert!(
                std::fs::read(got.join(name)).unwrap() == *want,
                "{name}: GNU tar byte-exact"
            );
            let meta = std::fs::metadata(got.join(name)).unwrap();
            assert!(
                meta.blocks() * 512 <= 1 << 20,
                "{name}: holes stay holes: {}",
                meta.blocks()
            );
        }
        assert_eq!(std::fs::read(got.join("z-after")).unwrap(), after);
        assert_eq!(get_xattr(&got.join("many"), "user.kept"), b"yes");
    }

    #[test]
    fn too_many_segments_are_merged_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("many");
        let size = 40 * 256 * 1024 + 100;
        let want = make_sparse(&path, 40, size);
        let file = File::open(&path).unwrap();
        let all = data_segments(&file, size, MAX_SEGMENTS).unwrap();
        assert_eq!(all.len(), 40);
        let merged = data_segments(&file, size, 4).unwrap();
        assert!(merged.len() <= 4, "{merged:?}");
        for pair in merged.windows(2) {
            assert!(
                pair[0].0 + pair[0].1 < pair[1].0,
                "in order, apart: {merged:?}"
            );
        }
        for (offset, len) in &all {
            assert!(merged
                .iter()
                .any(|(o, l)| o <= offset && offset + len <= o + l));
        }
        // And the entry made from a merged map reads back whole.
        let mut header = header_from(&file.metadata().unwrap());
        let prefix = sparse_header(&mut header, &merged, size);
        let mut body = FileBody::new(&file, prefix, merged);
        let mut builder = Builder::new(Vec::new());
        builder.append_data(&mut header, "many", &mut body).unwrap();
        let entries = read_back(&builder.into_inner().unwrap());
        assert!(entries[0].data == want);
    }

    /// Changes files the moment their header goes out, as a container
    /// writing to the volume during the export could.
    struct Meddler {
        out: Vec<u8>,
        root: PathBuf,
    }

    impl Write for Meddler {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() == 512 {
                let name = &buf[..100];
                let named = |n: &[u8]| name.starts_with(n) && name[n.len()] == 0;
                if named(b"a-grows") {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(self.root.join("a-grows"))
                        .unwrap();
                    f.write_all(&[b'G'; 1 << 20]).unwrap();
                } else if named(b"b-shrinks") {
                    File::options()
                        .write(true)
                        .open(self.root.join("b-shrinks"))
                        .unwrap()
                        .set_len(10)
                        .unwrap();
                } else if named(b"c-sparse-shrinks") {
                    File::options()
                        .write(true)
                        .open(self.root.join("c-sparse-shrinks"))
                        .unwrap()
                        .set_len(0)
                        .unwrap();
                }
            }
            self.out.write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn files_that_grow_are_cut_and_files_that_shrink_are_padded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let grows: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(root.join("a-grows"), &grows).unwrap();
        let shrinks: Vec<u8> = (0..100_001u32).map(|i| (i % 241) as u8 | 1).collect();
        std::fs::write(root.join("b-shrinks"), &shrinks).unwrap();
        let sparse = make_sparse(&root.join("c-sparse-shrinks"), 6, 2 << 20);
        std::fs::write(root.join("d-after"), b"intact").unwrap();
        std::fs::create_dir(root.join("e-dir")).unwrap();
        std::fs::write(root.join("e-dir/f"), b"also intact").unwrap();
        let mut meddler = Meddler {
            out: Vec::new(),
            root: root.clone(),
        };
        let bytes = write_tree(&root, &mut meddler, &|_| false).unwrap();
        assert_eq!(
            bytes,
            (grows.len() + shrinks.len() + sparse.len() + 6 + 11) as u64
        );
        assert_eq!(
            std::fs::metadata(root.join("a-grows")).unwrap().len(),
            100_000 + (1 << 20)
        );
        let entries = read_back(&meddler.out);
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "./",
                "a-grows",
                "b-shrinks",
                "c-sparse-shrinks",
                "d-after",
                "e-dir",
                "e-dir/f"
            ]
        );
        assert!(entries[1].data == grows, "cut at the size it had");
        let mut padded = shrinks[..10].to_vec();
        padded.resize(shrinks.len(), 0);
        assert!(entries[2].data == padded, "padded with zeros");
        assert_eq!(entries[3].kind, EntryType::GNUSparse);
        assert!(entries[3].data.len() == sparse.len() && entries[3].data.iter().all(|b| *b == 0));
        assert_eq!(entries[4].data, b"intact");
        assert_eq!(entries[6].data, b"also intact");
        let (_, got) = gnu_extract(&meddler.out, dir.path());
        assert_eq!(std::fs::read(got.join("e-dir/f")).unwrap(), b"also intact");
        assert!(std::fs::read(got.join("b-shrinks")).unwrap() == padded);
    }

    #[test]
    fn a_file_entry_holds_exactly_the_size_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = File::open(&path).unwrap();
        let meta = file.metadata().unwrap();
        let mut writer = TreeWriter::new(Vec::new());
        writer.file(&file, &meta, 4, Path::new("grew")).unwrap();
        writer.file(&file, &meta, 700, Path::new("shrank")).unwrap();
        writer.file(&file, &meta, 10, Path::new("same")).unwrap();
        assert_eq!(writer.bytes, 714);
        let entries = read_back(&writer.builder.into_inner().unwrap());
        assert_eq!(entries[0].data, b"0123");
        let mut shrank = b"0123456789".to_vec();
        shrank.resize(700, 0);
        assert_eq!(entries[1].data, shrank);
        assert_eq!(entries[2].data, b"0123456789");
    }

    #[test]
    fn a_symlink_to_a_folder_outside_is_archived_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"host secret").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("link-file")).unwrap();
        let out = export(&root);
        let entries = read_back(&out);
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["./", "link", "link-file"]);
        assert_eq!(entries[1].kind, EntryType::Symlink);
        assert_eq!(entries[1].link.clone().unwrap(), outside);
        assert!(!out.windows(11).any(|w| w == b"host secret"));
    }

    #[test]
    fn an_entry_swapped_after_it_was_opened_is_read_from_what_was_opened() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), b"host secret").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("f"), b"volume data").unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/inner"), b"inner").unwrap();
        let root_fd = open_root(&root);
        let f = open_node(root_fd.as_fd(), OsStr::new("f"), Path::new("f"))
            .unwrap()
            .unwrap();
        let d = open_node(root_fd.as_fd(), OsStr::new("d"), Path::new("d"))
            .unwrap()
            .unwrap();
        // The container swaps both for symlinks to host paths.
        std::fs::rename(root.join("f"), root.join("f-moved")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("f")).unwrap();
        std::fs::rename(root.join("d"), root.join("d-moved")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("d")).unwrap();
        let mut writer = TreeWriter::new(Vec::new());
        assert!(writer.entry(f, "f".into()).unwrap().is_none());
        let mut frame = writer.entry(d, "d".into()).unwrap().unwrap();
        assert_eq!(frame.names, ["inner"]);
        let inner = open_node(frame.dir.as_fd(), OsStr::new("inner"), Path::new("d/inner"));
        frame.next = 1;
        writer
            .entry(inner.unwrap().unwrap(), "d/inner".into())
            .unwrap();
        // Gone since the folder was listed: left out, no error.
        assert!(
            open_node(root_fd.as_fd(), OsStr::new("gone"), Path::new("gone"))
                .unwrap()
                .is_none()
        );
        let out = writer.builder.into_inner().unwrap();
        let entries = read_back(&out);
        assert_eq!(entries[0].data, b"volume data");
        assert_eq!(entries[0].kind, EntryType::Regular);
        assert_eq!(entries[1].kind, EntryType::Directory);
        assert_eq!(entries[2].data, b"inner");
        assert!(!out.windows(11).any(|w| w == b"host secret"));
    }

    #[test]
    fn sockets_are_left_out_with_their_links_and_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(root.join("a-sock")).unwrap();
        set_xattr(&root.join("a-sock"), "trusted.sock", b"s");
        std::fs::hard_link(root.join("a-sock"), root.join("b-sock-link")).unwrap();
        std::fs::write(root.join("c-file"), b"c").unwrap();
        let out = export(&root);
        let entries = read_back(&out);
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["./", "c-file"]);
        assert!(
            entries[1].xattrs.is_empty(),
            "nothing of the socket's carried over"
        );
        assert_eq!(entries[1].kind, EntryType::Regular);
        let (_, got) = gnu_extract(&out, dir.path());
        assert_eq!(std::fs::read(got.join("c-file")).unwrap(), b"c");
    }

    #[test]
    fn skipped_top_level_names_and_long_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let long = "n".repeat(120);
        std::fs::create_dir_all(root.join(&long).join("x".repeat(150))).unwrap();
        std::fs::write(root.join(".staging"), b"no").unwrap();
        std::os::unix::fs::symlink("t".repeat(300), root.join("long-target")).unwrap();
        let mut out = Vec::new();
        write_tree(&root, &mut out, &|n| n == ".staging").unwrap();
        let entries = read_back(&out);
        let names: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(
            names,
            [
                "./".to_string(),
                "long-target".into(),
                long.clone(),
                format!("{long}/{}", "x".repeat(150)),
            ]
        );
        assert_eq!(
            entries[1].link.clone().unwrap(),
            Path::new(&"t".repeat(300))
        );
        let (_, got) = gnu_extract(&out, dir.path());
        assert!(got.join(&long).join("x".repeat(150)).is_dir());
        assert_eq!(
            std::fs::read_link(got.join("long-target")).unwrap(),
            Path::new(&"t".repeat(300))
        );
    }

    #[test]
    fn a_container_swapping_entries_meanwhile_never_gets_host_data_in() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let secret = b"HOST-SECRET-7d1e";
        std::fs::write(outside.join("shadow"), secret).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/inner"), b"volume").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d-alt")).unwrap();
        std::fs::write(root.join("f"), b"volume").unwrap();
        std::os::unix::fs::symlink(outside.join("shadow"), root.join("f-alt")).unwrap();
        std::fs::write(root.join("g"), b"volume").unwrap();
        nix::unistd::mkfifo(
            &root.join("g-alt"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let names = [("d", "d-alt"), ("f", "f-alt"), ("g", "g-alt")];
                let c = |n: &str| CString::new(root.join(n).as_os_str().as_bytes()).unwrap();
                let pairs: Vec<_> = names.iter().map(|(a, b)| (c(a), c(b))).collect();
                while !stop.load(Ordering::Relaxed) {
                    for (a, b) in &pairs {
                        // SAFETY: valid paths.
                        let r = unsafe {
                            libc::renameat2(
                                libc::AT_FDCWD,
                                a.as_ptr(),
                                libc::AT_FDCWD,
                                b.as_ptr(),
                                libc::RENAME_EXCHANGE,
                            )
                        };
                        assert_eq!(r, 0, "{}", io::Error::last_os_error());
                    }
                }
            });
            for _ in 0..300 {
                let out = export(&root);
                assert!(!out.windows(secret.len()).any(|w| w == secret));
                let entries = read_back(&out);
                assert!(entries.iter().all(|e| !e.path.contains("shadow")));
                assert!(entries.len() >= 7);
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
}
