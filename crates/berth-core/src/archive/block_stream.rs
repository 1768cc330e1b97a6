//! The block stream `volume migrate` sends for a thin volume: the ranges
//! of a snapshot's image that differ from a base both sides share (or
//! from zeros, for a first copy). Integers are big-endian:
//!
//! ```text
//! "BERTHBK1"  u64 image size
//! record*     u8 kind, u64 offset, u64 length
//!               kind 1 (data):  followed by `length` bytes
//!               kind 2 (zeros): the range reads as zeros (a hole)
//!               kind 0 (end):   offset 0, length 0; nothing follows
//! ```
//!
//! The receiver trusts nothing: ranges must be 512-byte aligned, in
//! increasing order without overlap, inside the image, data records at
//! most [`MAX_DATA`]; a stream without its end record is cut short.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use super::ArchiveError;
use crate::sys::extents::Change;

pub const MAGIC: &[u8; 8] = b"BERTHBK1";
/// The largest data record a receiver takes (and twice what a sender
/// writes), so a record is buffered whole without trusting its length.
pub const MAX_DATA: u64 = 8 << 20;
/// What a sender puts in one data record.
const CHUNK: u64 = 4 << 20;
const ALIGN: u64 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    End = 0,
    Data = 1,
    Zeros = 2,
}

/// Bytes of data records a stream of `changes` carries.
pub fn data_bytes(changes: &[Change]) -> u64 {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Data { length, .. } => Some(*length),
            Change::Zero { .. } => None,
        })
        .sum()
}

fn record(out: &mut impl Write, kind: Kind, offset: u64, length: u64) -> std::io::Result<()> {
    let mut head = [0u8; 17];
    head[0] = kind as u8;
    head[1..9].copy_from_slice(&offset.to_be_bytes());
    head[9..].copy_from_slice(&length.to_be_bytes());
    out.write_all(&head)
}

/// Writes the stream of `changes` of `image` (of `size` bytes) to `out`.
pub fn write_stream(
    image: &File,
    size: u64,
    changes: &[Change],
    out: &mut impl Write,
) -> std::io::Result<()> {
    out.write_all(MAGIC)?;
    out.write_all(&size.to_be_bytes())?;
    let mut buf = vec![0u8; CHUNK as usize];
    for change in changes {
        match *change {
            Change::Zero { offset, length } => record(out, Kind::Zeros, offset, length)?,
            Change::Data { offset, length } => {
                let mut at = offset;
                while at < offset + length {
                    let n = CHUNK.min(offset + length - at);
                    let chunk = &mut buf[..n as usize];
                    image.read_exact_at(chunk, at)?;
                    record(out, Kind::Data, at, n)?;
                    out.write_all(chunk)?;
                    at += n;
                }
            }
        }
    }
    record(out, Kind::End, 0, 0)?;
    out.flush()
}

/// What a received stream held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub data: u64,
    pub zeroed: u64,
}

fn bad(why: impl Into<String>) -> ArchiveError {
    ArchiveError::Blocks(why.into())
}

fn read_u64(input: &mut impl Read) -> Result<u64, ArchiveError> {
    let mut b = [0u8; 8];
    input.read_exact(&mut b).map_err(cut_short)?;
    Ok(u64::from_be_bytes(b))
}

fn cut_short(e: std::io::Error) -> ArchiveError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        bad("the stream ended before its end record (cut short?)")
    } else {
        ArchiveError::Tar(e)
    }
}

/// Reads the header: the image size the stream is for, which must be
/// `expected`.
pub fn read_header(input: &mut impl Read, expected: u64) -> Result<(), ArchiveError> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).map_err(cut_short)?;
    if &magic != MAGIC {
        return Err(bad("not a berth block stream (bad magic)"));
    }
    let size = read_u64(input)?;
    if size != expected {
        return Err(bad(format!(
            "the stream is for an image of {size} bytes, the volume's is {expected}"
        )));
    }
    Ok(())
}

/// Checks one record's range against the image size and the end of the
/// previous record.
fn check_range(offset: u64, length: u64, floor: u64, size: u64) -> Result<u64, ArchiveError> {
    if !offset.is_multiple_of(ALIGN) || !length.is_multiple_of(ALIGN) || length == 0 {
        return Err(bad(format!(
            "range {offset}+{length} is empty or not 512-byte aligned"
        )));
    }
    let end = offset
        .checked_add(length)
        .filter(|end| *end <= size)
        .ok_or_else(|| bad(format!("range {offset}+{length} is outside the image")))?;
    if offset < floor {
        return Err(bad(format!(
            "range {offset}+{length} overlaps or precedes the previous one"
        )));
    }
    Ok(end)
}

/// Applies the records that follow the header to `dest` (an image of
/// `size` bytes): data written in place, zero ranges punched. Stops at
/// the end record; nothing is synced (the caller does, once).
pub fn apply_records(
    input: &mut impl Read,
    dest: &File,
    size: u64,
) -> Result<Applied, ArchiveError> {
    let mut applied = Applied::default();
    let mut floor = 0;
    let mut buf = Vec::new();
    loop {
        let mut kind = [0u8; 1];
        input.read_exact(&mut kind).map_err(cut_short)?;
        let offset = read_u64(input)?;
        let length = read_u64(input)?;
        match kind[0] {
            k if k == Kind::End as u8 && offset == 0 && length == 0 => return Ok(applied),
            k if k == Kind::Data as u8 => {
                floor = check_range(offset, length, floor, size)?;
                if length > MAX_DATA {
                    return Err(bad(format!("data record of {length} bytes (limit 8 MiB)")));
                }
                buf.resize(length as usize, 0);
                input.read_exact(&mut buf).map_err(cut_short)?;
                dest.write_all_at(&buf, offset)
                    .map_err(|e| ArchiveError::io(std::path::Path::new("image"), e))?;
                applied.data += length;
            }
            k if k == Kind::Zeros as u8 => {
                floor = check_range(offset, length, floor, size)?;
                punch(dest, offset, length)?;
                applied.zeroed += length;
            }
            other => return Err(bad(format!("unknown record kind {other}"))),
        }
    }
}

/// Checks that nothing follows the end record.
pub fn expect_end(input: &mut impl Read) -> Result<(), ArchiveError> {
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(bad("data after the end record")),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArchiveError::Tar(e)),
        }
    }
}

/// Makes `[offset, offset+length)` of `dest` a hole (reads as zeros).
fn punch(dest: &File, offset: u64, length: u64) -> Result<(), ArchiveError> {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate on an open descriptor; the range was checked.
    let rc = unsafe { libc::fallocate(dest.as_raw_fd(), mode, offset as i64, length as i64) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(ArchiveError::io(std::path::Path::new("image"), e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn image_with(bytes: &[(u64, u8, usize)], size: u64) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("img"))
            .unwrap();
        f.set_len(size).unwrap();
        for (at, byte, n) in bytes {
            f.write_all_at(&vec![*byte; *n], *at).unwrap();
        }
        (dir, f)
    }

    fn stream(src: &File, size: u64, changes: &[Change]) -> Vec<u8> {
        let mut out = Vec::new();
        write_stream(src, size, changes, &mut out).unwrap();
        out
    }

    fn apply(bytes: &[u8], dest: &File, size: u64) -> Result<Applied, ArchiveError> {
        let mut input = Cursor::new(bytes);
        read_header(&mut input, size)?;
        let applied = apply_records(&mut input, dest, size)?;
        expect_end(&mut input)?;
        Ok(applied)
    }

    #[test]
    fn a_stream_carries_data_and_zeros_to_the_other_image() {
        let size = 64 * 1024;
        let (_a, src) = image_with(&[(4096, 7, 4096), (40960, 9, 512)], size);
        let (_b, dest) = image_with(&[(8192, 1, 4096)], size);
        let changes = [
            Change::Data {
                offset: 4096,
                length: 4096,
            },
            Change::Zero {
                offset: 8192,
                length: 4096,
            },
            Change::Data {
                offset: 40960,
                length: 512,
            },
        ];
        let applied = apply(&stream(&src, size, &changes), &dest, size).unwrap();
        assert_eq!(applied.data, 4608);
        assert_eq!(applied.zeroed, 4096);
        let read = |f: &File| {
            let mut v = vec![0u8; size as usize];
            f.read_exact_at(&mut v, 0).unwrap();
            v
        };
        assert_eq!(read(&src), read(&dest));
    }

    #[test]
    fn large_data_is_sent_in_records_a_receiver_takes() {
        let size = 10 << 20;
        let (_a, src) = image_with(&[(0, 3, 10 << 20)], size);
        let (_b, dest) = image_with(&[], size);
        let all = [Change::Data {
            offset: 0,
            length: size,
        }];
        assert_eq!(
            apply(&stream(&src, size, &all), &dest, size).unwrap().data,
            size
        );
    }

    fn hand_made(size: u64, records: &[(u8, u64, u64)], end: bool) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&size.to_be_bytes());
        for (kind, offset, length) in records {
            out.push(*kind);
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&length.to_be_bytes());
            if *kind == 1 {
                out.extend(std::iter::repeat_n(5u8, *length as usize));
            }
        }
        if end {
            out.extend_from_slice(&[0u8; 17]);
        }
        out
    }

    #[test]
    fn hostile_streams_are_refused() {
        let size = 1 << 20;
        let (_d, dest) = image_with(&[], size);
        let refused = |bytes: Vec<u8>| apply(&bytes, &dest, size).unwrap_err().to_string();
        let mut bad_magic = hand_made(size, &[], true);
        bad_magic[0] = b'X';
        assert!(refused(bad_magic).contains("magic"));
        assert!(refused(hand_made(size * 2, &[], true)).contains("bytes"));
        assert!(refused(hand_made(size, &[(1, 100, 512)], true)).contains("aligned"));
        assert!(refused(hand_made(size, &[(1, 0, 0)], true)).contains("aligned"));
        assert!(refused(hand_made(size, &[(2, size - 512, 1024)], true)).contains("outside"));
        assert!(refused(hand_made(size, &[(2, u64::MAX - 511, 512)], true)).contains("outside"));
        let overlap = hand_made(size, &[(1, 0, 1024), (2, 512, 512)], true);
        assert!(refused(overlap).contains("overlaps"));
        let backwards = hand_made(size, &[(2, 4096, 512), (2, 0, 512)], true);
        assert!(refused(backwards).contains("precedes"));
        assert!(refused(hand_made(size, &[(1, 0, 512)], false)).contains("cut short"));
        assert!(refused(hand_made(size, &[(7, 0, 512)], true)).contains("kind"));
        let mut trailing = hand_made(size, &[], true);
        trailing.push(0);
        assert!(refused(trailing).contains("after the end"));
        let big = 16 << 20;
        let (_e, large) = image_with(&[], big);
        let huge = hand_made(big, &[(1, 0, MAX_DATA + 512)], true);
        assert!(apply(&huge, &large, big)
            .unwrap_err()
            .to_string()
            .contains("limit"));
    }
}
