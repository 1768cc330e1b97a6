//! Tar streams of folder trees: safe extraction (image layers, volume
//! import), writing one that keeps everything a filesystem records (volume
//! export), and recognising compressed input.

pub mod block_stream;
pub mod digest;
mod error;
pub mod extract;
mod fd;
mod guard;
mod pax_sparse;
mod sparse;
mod write;

use std::io::{BufReader, Read};
use std::path::Path;

pub use error::ArchiveError;
pub use fd::pin_proc_fd_dir;
pub use guard::TarGuard;
pub use write::{write_changes, write_contents, write_named, write_tree, DiffEntry};

/// Wraps `input` in the decompressor its magic bytes call for (gzip,
/// zstd, or none).
pub fn decompress<'a>(mut input: impl Read + 'a) -> Result<Box<dyn Read + 'a>, ArchiveError> {
    let magic = read_magic(&mut input).map_err(|e| ArchiveError::io(Path::new("-"), e))?;
    let whole = std::io::Cursor::new(magic.clone()).chain(input);
    let buffered = BufReader::with_capacity(256 * 1024, whole);
    Ok(match magic.as_slice() {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(
            zstd::Decoder::with_buffer(buffered)
                .map_err(|e| ArchiveError::io(Path::new("-"), e))?,
        ),
        [b'B', b'Z', b'h', ..] | [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => {
            return Err(ArchiveError::UnsupportedCompression)
        }
        _ => Box::new(buffered),
    })
}

/// The first six bytes of `input` (fewer if it is shorter). A network body
/// may arrive a few bytes at a time, so one read is not enough to tell
/// gzip or zstd from plain tar.
fn read_magic(input: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut magic = vec![0u8; 6];
    let mut filled = 0;
    while filled < magic.len() {
        match input.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    magic.truncate(filled);
    Ok(magic)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives one byte per read, as a slow upload might.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn compression_is_recognised_when_bytes_trickle_in() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello").unwrap();
        let gz = gz.finish().unwrap();
        let mut out = String::new();
        decompress(Trickle(&gz))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello");
        let mut plain = String::new();
        decompress(Trickle(b"abc"))
            .unwrap()
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "abc");
    }
}
