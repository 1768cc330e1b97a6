//! A reader between the decompressor and the tar reader that checks an
//! archive's structure as it passes, because the tar crate trusts it:
//!
//! - PAX (`x`, `g`) and GNU long-name (`L`, `K`) headers are read whole
//!   into memory by the tar crate: one of 32 GiB (a few MiB of zstd) would
//!   exhaust the daemon's memory. They are limited to [`MAX_META`].
//! - A GNU sparse entry's holes come out of the tar crate as zeros that
//!   extraction must read through: a claimed size of 2^62 bytes would run
//!   for ever. Real sizes are limited to [`MAX_SPARSE_SIZE`], and the
//!   extension blocks of its map to [`MAX_SPARSE_BLOCKS`].
//!
//! Headers are inspected block by block; entry data passes through in
//! large reads. A PAX `size` record, which overrides the next entry's size,
//! is honoured when the guard tracks where the next header starts.

use std::io::Read;

use tar::EntryType;

/// Largest PAX or GNU long-name header body accepted.
pub const MAX_META: u64 = 1 << 20;
/// Largest real size of a GNU sparse entry accepted (1 TiB).
pub const MAX_SPARSE_SIZE: u64 = 1 << 40;
/// Most extension blocks of one sparse map (21 segments each).
pub const MAX_SPARSE_BLOCKS: u64 = 4096;

const BLOCK: usize = 512;

/// The guard's view of where it is in the archive.
#[derive(Debug, Default)]
struct Position {
    /// Bytes of the current entry's data (padded to blocks) still to pass.
    data_left: u64,
    /// Sparse extension blocks follow the current header.
    sparse_extension: bool,
    sparse_blocks: u64,
    /// The body of a PAX header being read, to find a `size` record, and
    /// its length without the padding to the block.
    pax: Option<Vec<u8>>,
    pax_len: usize,
    /// A `size` a PAX header gave the next entry.
    next_size: Option<u64>,
    /// The end-of-archive block was seen: nothing more is inspected.
    ended: bool,
}

/// See the module documentation.
pub struct TarGuard<R> {
    inner: R,
    block: [u8; BLOCK],
    served: usize,
    filled: usize,
    at: Position,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> Self {
        TarGuard {
            inner,
            block: [0; BLOCK],
            served: 0,
            filled: 0,
            at: Position::default(),
        }
    }

    /// Reads the next header block whole and inspects it; `false` at the
    /// end of the input.
    fn next_header(&mut self) -> std::io::Result<bool> {
        let mut got = 0;
        while got < BLOCK {
            match self.inner.read(&mut self.block[got..])? {
                0 if got == 0 => return Ok(false),
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        self.served = 0;
        self.filled = BLOCK;
        let block = self.block;
        self.at.inspect(&block)?;
        Ok(true)
    }

    /// Entry data straight from the input, at most what the entry has left.
    fn read_data(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.at.data_left.min(1 << 20) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.at.data_left -= n as u64;
        if let Some(pax) = &mut self.at.pax {
            pax.extend_from_slice(&buf[..n]);
            if self.at.data_left == 0 {
                // The padding is no record: read with it, the size found
                // was dropped, and the guard lost step with the tar reader
                // (which honours a PAX size, as GNU tar's posix writer
                // relies on for entries of 8 GiB and more).
                pax.truncate(self.at.pax_len);
                self.at.next_size = pax_size(pax);
                self.at.pax = None;
            }
        }
        Ok(n)
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.served == self.filled {
            if self.at.ended {
                return self.inner.read(buf);
            }
            if self.at.data_left > 0 && !self.at.sparse_extension {
                return self.read_data(buf);
            }
            if !self.next_header()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.filled - self.served);
        buf[..n].copy_from_slice(&self.block[self.served..self.served + n]);
        self.served += n;
        Ok(n)
    }
}

fn refuse(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

impl Position {
    /// Takes in one header block (or a sparse extension block).
    fn inspect(&mut self, block: &[u8; BLOCK]) -> std::io::Result<()> {
        if self.sparse_extension {
            return self.sparse_extension_block(block);
        }
        if block.iter().all(|b| *b == 0) {
            self.ended = true;
            return Ok(());
        }
        let header = tar::Header::from_byte_slice(block);
        let kind = header.entry_type();
        let metadata = matches!(
            kind,
            EntryType::XHeader
                | EntryType::XGlobalHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        );
        let mut size = header.entry_size()?;
        if !matches!(kind, EntryType::XHeader | EntryType::XGlobalHeader) {
            size = self.next_size.take().unwrap_or(size);
        }
        if metadata && size > MAX_META {
            return Err(refuse(format!(
                "an archive header of {size} bytes (type {}) is larger than berth accepts ({MAX_META})",
                kind.as_byte() as char
            )));
        }
        if kind == EntryType::GNUSparse {
            self.sparse_header(header)?;
        }
        self.pax = (kind == EntryType::XHeader && size > 0).then(Vec::new);
        self.pax_len = size as usize; // at most MAX_META here
        self.data_left = size
            .div_ceil(BLOCK as u64)
            .checked_mul(BLOCK as u64)
            .ok_or_else(|| {
                refuse(format!(
                    "an entry of {size} bytes is larger than a tar can hold"
                ))
            })?;
        Ok(())
    }

    fn sparse_header(&mut self, header: &tar::Header) -> std::io::Result<()> {
        let gnu = header
            .as_gnu()
            .ok_or_else(|| refuse("a sparse entry without a GNU header".into()))?;
        let real = gnu.real_size()?;
        if real > MAX_SPARSE_SIZE {
            return Err(refuse(format!(
                "a sparse file of {real} bytes is larger than berth accepts ({MAX_SPARSE_SIZE})"
            )));
        }
        self.sparse_extension = gnu.is_extended();
        self.sparse_blocks = 0;
        Ok(())
    }

    fn sparse_extension_block(&mut self, block: &[u8; BLOCK]) -> std::io::Result<()> {
        self.sparse_blocks += 1;
        if self.sparse_blocks > MAX_SPARSE_BLOCKS {
            return Err(refuse(format!(
                "a sparse map of more than {MAX_SPARSE_BLOCKS} blocks is larger than berth accepts"
            )));
        }
        // An extension block's "another follows" flag (GNU format).
        const IS_EXTENDED: usize = 504;
        self.sparse_extension = block[IS_EXTENDED] == 1;
        Ok(())
    }
}

/// The `size` record of a PAX header body, read by length prefix.
fn pax_size(mut body: &[u8]) -> Option<u64> {
    let mut size = None;
    while !body.is_empty() {
        let space = body.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&body[..space]).ok()?.parse().ok()?;
        if len <= space || len > body.len() {
            return size;
        }
        let record = &body[space + 1..len];
        if let Some(value) = record.strip_prefix(b"size=") {
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            size = std::str::from_utf8(value).ok()?.parse().ok();
        }
        body = &body[len..];
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8, size: &[u8]) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..4].copy_from_slice(b"name");
        h[124..124 + size.len()].copy_from_slice(size);
        h[156] = kind;
        h
    }

    fn read_all(data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        TarGuard::new(data).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_huge_pax_header_is_refused_before_its_body_is_read() {
        let mut data = header(b'x', b"77777777777").to_vec(); // 8 GiB
        data.extend_from_slice(&[b'a'; BLOCK]);
        let err = read_all(&data).unwrap_err();
        assert!(
            err.to_string().contains("larger than berth accepts"),
            "{err}"
        );
    }

    #[test]
    fn a_size_field_of_all_ones_is_refused_not_overflowed() {
        let mut size = [0xffu8; 12];
        size[0] = 0x80; // base-256: 2^88 - 1, beyond u64 or just below it
        let h = header(b'0', &size);
        let err = read_all(&h).unwrap_err();
        assert!(!err.to_string().is_empty());
        let mut near_max = [0u8; 12];
        near_max[0] = 0x80;
        near_max[4..].copy_from_slice(&(u64::MAX - 5).to_be_bytes());
        let err = read_all(&header(b'0', &near_max)).unwrap_err();
        assert!(
            err.to_string().contains("larger than a tar can hold"),
            "{err}"
        );
    }

    #[test]
    fn a_sparse_entry_claiming_exabytes_is_refused() {
        let mut h = header(b'S', b"00000000000");
        h[257..265].copy_from_slice(b"ustar  \0"); // GNU magic: sparse is GNU's
        h[483] = 0x80;
        h[488] = 0x40; // base-256 real size 2^62
        let err = read_all(&h).unwrap_err();
        assert!(err.to_string().contains("sparse file"), "{err}");
    }

    #[test]
    fn real_archives_pass_unchanged_including_pax_sizes() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3000);
        h.set_mode(0o644);
        h.set_cksum();
        let long = "d/".repeat(80) + "file";
        builder
            .append_data(&mut h, &long, &[7u8; 3000][..])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(5);
        h.set_cksum();
        builder.append_data(&mut h, "small", &b"hello"[..]).unwrap();
        let data = builder.into_inner().unwrap();
        assert_eq!(read_all(&data).unwrap(), data);
        let mut archive = tar::Archive::new(TarGuard::new(data.as_slice()));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, [long, "small".to_string()]);
    }

    #[test]
    fn pax_size_records_are_read_by_length() {
        assert_eq!(pax_size(b"12 size=345\n"), Some(345));
        // A value holding a newline does not end its record early.
        assert_eq!(pax_size(b"12 path=a\nb\n12 size=345\n"), Some(345));
        assert_eq!(pax_size(b"garbage"), None);
    }

    /// A PAX size the tar reader honours (GNU tar's posix writer puts the
    /// real size there and 0 in the header for entries of 8 GiB or more)
    /// is honoured by the guard too: it stays in step with the reader, so
    /// what follows is still checked.
    #[test]
    fn a_pax_size_over_the_header_size_keeps_the_guard_in_step() {
        let mut archive = Vec::new();
        let mut pax = tar::Header::new_ustar();
        let record = b"12 size=300\n";
        pax.set_entry_type(EntryType::XHeader);
        pax.set_size(record.len() as u64);
        pax.set_cksum();
        archive.extend_from_slice(pax.as_bytes());
        let mut body = record.to_vec();
        body.resize(BLOCK, 0);
        archive.extend_from_slice(&body);
        let mut file = tar::Header::new_ustar();
        file.set_path("f").unwrap();
        file.set_size(0);
        file.set_cksum();
        archive.extend_from_slice(file.as_bytes());
        let mut data = vec![b'x'; 300];
        data.resize(BLOCK, 0);
        archive.extend_from_slice(&data);
        // Then a GNU long name header over the limit: refused, not missed.
        let mut long = tar::Header::new_gnu();
        long.set_entry_type(EntryType::GNULongName);
        long.set_size(MAX_META + 1);
        long.set_cksum();
        archive.extend_from_slice(long.as_bytes());
        let err = read_all(&archive).unwrap_err();
        assert!(
            err.to_string().contains("larger than berth accepts"),
            "{err}"
        );
    }
}
