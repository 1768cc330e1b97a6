//! The content digest of a tar stream: SHA-256 of its uncompressed bytes,
//! written `sha256:<hex>`. `volume migrate` sends it after the stream (an
//! HTTP trailer) and the receiving daemon compares it with what it read
//! before the volume counts as made.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::ArchiveError;

/// Bytes a verified stream may carry after its end-of-archive blocks
/// (tar writers pad to their record size, 10 KiB for GNU tar).
const TRAILING_LIMIT: u64 = 1 << 20;

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The digest of everything read so far.
    pub fn digest(self) -> String {
        format_digest(self.hasher.finalize().as_slice())
    }

    /// Reads what is left after the archive (at most [`TRAILING_LIMIT`]
    /// bytes), then gives the digest of everything read.
    pub fn finish(mut self) -> Result<String, ArchiveError> {
        let mut rest = (&mut self).take(TRAILING_LIMIT + 1);
        let extra = std::io::copy(&mut rest, &mut std::io::sink()).map_err(ArchiveError::tar)?;
        if extra > TRAILING_LIMIT {
            let why = "more than 1 MiB of data after the end of the archive";
            return Err(ArchiveError::Unverified(why.into()));
        }
        Ok(format_digest(self.hasher.finalize().as_slice()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// `sha256:<hex>` of a finished hash.
pub fn format_digest(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Compares the digest the sender announced (`None`: it sent none) with
/// the one computed from what was received.
pub fn check_digest(announced: Option<&str>, received: &str) -> Result<(), ArchiveError> {
    match announced {
        None => Err(ArchiveError::Unverified(
            "the sender announced a content digest but did not send it (the upload was cut short?)"
                .into(),
        )),
        Some(sent) if sent.trim().eq_ignore_ascii_case(received) => Ok(()),
        Some(sent) => Err(ArchiveError::Unverified(format!(
            "the content digest does not match: sent {}, received {received}",
            sent.trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_covers_every_byte_read_and_the_rest() {
        let mut reader = HashingReader::new(&b"abcdef"[..]);
        let mut first = [0u8; 2];
        reader.read_exact(&mut first).unwrap();
        // sha256("abcdef")
        let expected = "sha256:bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721";
        assert_eq!(reader.finish().unwrap(), expected);
    }

    #[test]
    fn too_much_after_the_archive_is_refused() {
        let big = vec![0u8; (TRAILING_LIMIT + 10) as usize];
        let err = HashingReader::new(&big[..]).finish().unwrap_err();
        assert!(err.to_string().contains("after the end"), "{err}");
    }

    #[test]
    fn announced_digest_must_match() {
        assert!(check_digest(Some("sha256:AB"), "sha256:ab").is_ok());
        let missing = check_digest(None, "sha256:ab").unwrap_err();
        assert!(missing.to_string().contains("did not send"), "{missing}");
        let wrong = check_digest(Some("sha256:cd"), "sha256:ab").unwrap_err();
        assert!(wrong.to_string().contains("does not match"), "{wrong}");
        assert_eq!(wrong.kind(), crate::error::ErrorKind::InvalidArgument);
    }
}
