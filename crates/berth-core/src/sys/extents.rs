//! Where a file's blocks are: `FIEMAP` (logical → physical extents), and
//! what differs between two files that share blocks (a thin volume's
//! image and its reflinked snapshot). Two reflinked files on one
//! filesystem read the same bytes wherever they map to the same physical
//! block (a write to either one moves it: copy-on-write), so the blocks to
//! send are those mapped differently. Anything FIEMAP cannot vouch for
//! (delayed, encoded, inline or unknown extents) counts as changed: the
//! diff may send too much, never too little.

use std::fs::File;
use std::os::fd::AsRawFd;

/// `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
const FIEMAP_FLAG_SYNC: u32 = 0x1;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
/// Extents whose physical address says nothing certain about content:
/// UNKNOWN, DELALLOC, ENCODED, DATA_ENCRYPTED, NOT_ALIGNED, DATA_INLINE,
/// DATA_TAIL.
const FIEMAP_EXTENT_OPAQUE: u32 = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400;
/// Extents asked for per call.
const BATCH: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

#[repr(C)]
struct RawMap {
    start: u64,
    length: u64,
    flags: u32,
    mapped: u32,
    count: u32,
    reserved: u32,
    extents: [RawExtent; BATCH],
}

/// One mapped extent of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub logical: u64,
    pub physical: u64,
    pub length: u64,
    pub kind: ExtentKind,
}

/// What an extent's blocks hold, as far as FIEMAP says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// Written data at `physical`.
    Data,
    /// Allocated but never written: reads as zeros.
    Unwritten,
    /// Content FIEMAP cannot vouch for by address.
    Opaque,
}

/// The extents of `file`, in logical order, after its dirty pages are
/// written out (`FIEMAP_FLAG_SYNC`).
pub fn fiemap(file: &File) -> std::io::Result<Vec<Extent>> {
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut map = Box::new(RawMap {
            start,
            length: u64::MAX - start,
            flags: FIEMAP_FLAG_SYNC,
            mapped: 0,
            count: BATCH as u32,
            reserved: 0,
            extents: [RawExtent::default(); BATCH],
        });
        // SAFETY: FS_IOC_FIEMAP fills at most `count` extents of the map.
        if unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut *map as *mut RawMap) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mapped = (map.mapped as usize).min(BATCH);
        let batch = &map.extents[..mapped];
        out.extend(batch.iter().map(extent_of));
        match batch.last() {
            Some(last) if last.flags & FIEMAP_EXTENT_LAST == 0 => {
                start = last.logical + last.length;
            }
            _ => return Ok(out),
        }
    }
}

fn extent_of(raw: &RawExtent) -> Extent {
    let kind = if raw.flags & FIEMAP_EXTENT_OPAQUE != 0 {
        ExtentKind::Opaque
    } else if raw.flags & FIEMAP_EXTENT_UNWRITTEN != 0 {
        ExtentKind::Unwritten
    } else {
        ExtentKind::Data
    };
    Extent {
        logical: raw.logical,
        physical: raw.physical,
        length: raw.length,
        kind,
    }
}

/// A range of the newer file that differs from the older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Bytes to copy from the newer file.
    Data { offset: u64, length: u64 },
    /// Reads as zeros in the newer file (a hole or unwritten extent).
    Zero { offset: u64, length: u64 },
}

impl Change {
    pub fn range(&self) -> (u64, u64) {
        match *self {
            Change::Data { offset, length } | Change::Zero { offset, length } => (offset, length),
        }
    }
}

/// What a position of a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Zeros,
    Block(u64),
    Opaque,
}

/// Where a walk over one file's extents is.
struct Cursor<'a> {
    extents: &'a [Extent],
    index: usize,
}

impl Cursor<'_> {
    /// What `pos` holds, and where that answer stops holding.
    fn at(&mut self, pos: u64, size: u64) -> (At, u64) {
        while self
            .extents
            .get(self.index)
            .is_some_and(|e| e.logical + e.length <= pos)
        {
            self.index += 1;
        }
        match self.extents.get(self.index) {
            Some(e) if e.logical <= pos => {
                let at = match e.kind {
                    ExtentKind::Data => At::Block(e.physical + (pos - e.logical)),
                    ExtentKind::Unwritten => At::Zeros,
                    ExtentKind::Opaque => At::Opaque,
                };
                (at, (e.logical + e.length).min(size))
            }
            Some(e) => (At::Zeros, e.logical.min(size)),
            None => (At::Zeros, size),
        }
    }
}

/// The ranges of `[0, size)` where the file mapped by `new` may read
/// differently from the one mapped by `old` (both on one filesystem;
/// `old` empty: a file of zeros). Adjacent changes of one kind are merged.
pub fn diff(new: &[Extent], old: &[Extent], size: u64) -> Vec<Change> {
    let (mut a, mut b) = (
        Cursor {
            extents: new,
            index: 0,
        },
        Cursor {
            extents: old,
            index: 0,
        },
    );
    let mut out: Vec<Change> = Vec::new();
    let mut pos = 0;
    while pos < size {
        let (here, a_end) = a.at(pos, size);
        let (there, b_end) = b.at(pos, size);
        let end = a_end.min(b_end).max(pos + 1);
        let same = match (here, there) {
            (At::Zeros, At::Zeros) => true,
            (At::Block(x), At::Block(y)) => x == y,
            _ => false,
        };
        if !same {
            let length = end - pos;
            push_merged(
                &mut out,
                match here {
                    At::Zeros => Change::Zero {
                        offset: pos,
                        length,
                    },
                    _ => Change::Data {
                        offset: pos,
                        length,
                    },
                },
            );
        }
        pos = end;
    }
    out
}

fn push_merged(out: &mut Vec<Change>, next: Change) {
    if let Some(last) = out.last_mut() {
        match (last, next) {
            (
                Change::Data { offset, length },
                Change::Data {
                    offset: o,
                    length: l,
                },
            )
            | (
                Change::Zero { offset, length },
                Change::Zero {
                    offset: o,
                    length: l,
                },
            ) if *offset + *length == o => {
                *length += l;
                return;
            }
            _ => {}
        }
    }
    out.push(next);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(logical: u64, physical: u64, length: u64) -> Extent {
        Extent {
            logical,
            physical,
            length,
            kind: ExtentKind::Data,
        }
    }

    #[test]
    fn a_full_pass_sends_every_written_extent() {
        let new = [data(0, 1000, 10), data(40, 2000, 10)];
        let changes = diff(&new, &[], 100);
        assert_eq!(
            changes,
            vec![
                Change::Data {
                    offset: 0,
                    length: 10
                },
                Change::Data {
                    offset: 40,
                    length: 10
                }
            ]
        );
    }

    #[test]
    fn shared_blocks_are_skipped_and_moved_ones_sent() {
        // The snapshot shares all of [0, 30); the newer file rewrote
        // [10, 20) elsewhere and punched [20, 30).
        let old = [data(0, 1000, 30)];
        let new = [data(0, 1000, 10), data(10, 5000, 10)];
        let changes = diff(&new, &old, 30);
        assert_eq!(
            changes,
            vec![
                Change::Data {
                    offset: 10,
                    length: 10
                },
                Change::Zero {
                    offset: 20,
                    length: 10
                }
            ]
        );
    }

    #[test]
    fn identical_mappings_differ_nowhere() {
        let ext = [data(0, 1000, 10), data(20, 3000, 5)];
        assert!(diff(&ext, &ext, 64).is_empty());
    }

    #[test]
    fn an_extent_at_another_offset_of_the_same_blocks_is_a_change() {
        // Same physical start, shifted logical: different bytes at `pos`.
        let old = [data(0, 1000, 20)];
        let new = [data(0, 1010, 10), data(10, 1030, 10)];
        let changes = diff(&new, &old, 20);
        assert_eq!(
            changes,
            vec![Change::Data {
                offset: 0,
                length: 20
            }]
        );
    }

    #[test]
    fn unwritten_reads_as_zeros_and_opaque_is_always_sent() {
        let unwritten = Extent {
            kind: ExtentKind::Unwritten,
            ..data(0, 1000, 10)
        };
        assert!(diff(&[unwritten], &[], 10).is_empty());
        let opaque = Extent {
            kind: ExtentKind::Opaque,
            ..data(0, 1000, 10)
        };
        assert_eq!(
            diff(&[opaque], &[opaque], 10),
            vec![Change::Data {
                offset: 0,
                length: 10
            }]
        );
    }

    #[test]
    fn extents_past_the_size_are_cut_at_it() {
        let changes = diff(&[data(0, 1000, 100)], &[], 50);
        assert_eq!(
            changes,
            vec![Change::Data {
                offset: 0,
                length: 50
            }]
        );
    }

    #[test]
    fn fiemap_of_a_real_file_finds_its_data_and_holes() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(&[7u8; 8192]).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(&[9u8; 4096]).unwrap();
        let extents = fiemap(&f).unwrap();
        let changes = diff(&extents, &[], (1 << 20) + 4096);
        let sent: u64 = changes
            .iter()
            .filter(|c| matches!(c, Change::Data { .. }))
            .map(|c| c.range().1)
            .sum();
        // Filesystems allocate at least what was written, and the hole
        // between stays a hole (tmpfs and ext4 alike).
        assert!(sent >= 8192 + 4096, "{changes:?}");
        assert!(sent < 1 << 20, "{changes:?}");
    }
}
