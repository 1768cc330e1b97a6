//! The body of a regular file's tar entry, holes and all: the file's data
//! segments found with `SEEK_DATA`/`SEEK_HOLE`, the old GNU sparse header
//! (and extension blocks) that describes them, and [`FileBody`], which
//! reads exactly those segments with `pread`.
//!
//! Kept apart from the tree walk (`write.rs`) because it is about one
//! file's bytes, not about the tree: a volume may hold large, mostly empty
//! files (disk images, databases) whose holes must neither be written out
//! as zeros nor come back filled in. A file may also grow or shrink while
//! it is read, so a body always yields exactly the size it was given.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

use tar::{EntryType, GnuExtSparseHeader, Header};

/// Sparse-map segments kept per file at most; beyond that neighbouring
/// segments are merged (the holes between them written as zeros), so a
/// file with millions of tiny holes costs bounded memory.
pub(super) const MAX_SEGMENTS: usize = 1 << 16;

/// Largest read buffer for file data.
pub(super) const READ_BUFFER: u64 = 256 * 1024;

/// The body of `file`'s entry of `size` bytes: read whole or, when `meta`
/// allows holes and the file has some, as old GNU sparse segments (then
/// `header` is made a sparse header for them).
pub(super) fn file_body<'a>(
    file: &'a File,
    meta: &Metadata,
    size: u64,
    header: &mut Header,
) -> FileBody<'a> {
    let holes_possible = size > 0 && meta.blocks().saturating_mul(512) < size;
    let segments = if holes_possible {
        data_segments(file, size, MAX_SEGMENTS)
    } else {
        None
    };
    match segments {
        None => FileBody::new(file, Vec::new(), vec![(0, size)]),
        Some(segments) => {
            let prefix = sparse_header(header, &segments, size);
            FileBody::new(file, prefix, segments)
        }
    }
}

/// Turns `header` into an old GNU sparse header for `segments` (data
/// extents, in order, each 512-aligned but the last, which may end at
/// `size`); returns the extension blocks that must precede the data.
pub(super) fn sparse_header(header: &mut Header, segments: &[(u64, u64)], size: u64) -> Vec<u8> {
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
pub(super) fn data_segments(file: &File, size: u64, max: usize) -> Option<Vec<(u64, u64)>> {
    let mut segments: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0;
    while pos < size {
        let start = match seek(file, pos, libc::SEEK_DATA) {
            Ok(at) => at.max(pos),
            Err(libc::ENXIO) => break, // no data from `pos` on
            Err(_) => return None,
        };
        if start >= size {
            break;
        }
        let end = match seek(file, start, libc::SEEK_HOLE) {
            Ok(at) => at.min(size),
            Err(libc::ENXIO) => size, // the file shrank under us: zeros
            Err(_) => return None,
        };
        let start = start / 512 * 512;
        let end = end.div_ceil(512).saturating_mul(512).min(size);
        if end > start {
            add_segment(&mut segments, start, end, max);
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

/// `lseek(file, offset, whence)`: the offset reached, or the errno.
fn seek(file: &File, offset: u64, whence: libc::c_int) -> Result<u64, i32> {
    let offset = i64::try_from(offset).map_err(|_| libc::EINVAL)?;
    // SAFETY: a plain lseek on a descriptor we own.
    match unsafe { libc::lseek(file.as_raw_fd(), offset, whence) } {
        -1 => Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)),
        at => Ok(at as u64),
    }
}

/// Adds the data extent `start..end` to `segments` (joined to the last one
/// if they touch or overlap); past `max` segments, neighbours are merged
/// in pairs.
fn add_segment(segments: &mut Vec<(u64, u64)>, start: u64, end: u64, max: usize) {
    match segments.last_mut() {
        Some((offset, len)) if *offset + *len >= start => {
            *len = (*len).max(end - *offset);
        }
        _ => segments.push((start, end - start)),
    }
    if segments.len() > max {
        *segments = segments
            .chunks(2)
            .map(|pair| {
                let (first, last) = (pair[0], pair[pair.len() - 1]);
                (first.0, last.0 + last.1 - first.0)
            })
            .collect();
    }
}

/// The bytes of one file entry: the sparse extension blocks, then each
/// segment read with `pread`, exactly its length: zeros stand for what is
/// no longer there, and nothing past it is ever read.
pub(super) struct FileBody<'a> {
    file: &'a File,
    prefix: Vec<u8>,
    prefix_at: usize,
    segments: Vec<(u64, u64)>,
    segment: usize,
    done: u64,
    /// Zeros given for bytes the file no longer had.
    pub(super) padded: u64,
}

impl<'a> FileBody<'a> {
    pub(super) fn new(file: &'a File, prefix: Vec<u8>, segments: Vec<(u64, u64)>) -> Self {
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
    pub(super) fn len(&self) -> u64 {
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
