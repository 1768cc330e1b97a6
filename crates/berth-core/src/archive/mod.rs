//! Tar streams of folder trees: safe extraction (image layers, volume
//! import), writing one that keeps everything a filesystem records (volume
//! export), and recognising compressed input.

mod error;
pub mod extract;
mod write;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

pub use error::ArchiveError;
pub use write::write_tree;

/// Wraps `input` in the decompressor its magic bytes call for (gzip,
/// zstd, or none).
pub fn decompress<'a>(input: impl Read + 'a) -> Result<Box<dyn Read + 'a>, ArchiveError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, input);
    let magic = buffered
        .fill_buf()
        .map_err(|e| ArchiveError::io(Path::new("-"), e))?
        .to_vec();
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
