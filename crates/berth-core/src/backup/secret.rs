//! Secrets at rest: a repository's password and object-store keys are
//! sealed (ChaCha20-Poly1305) with a key only the daemon can read
//! (`<root>/backup/secret.key`, 0600, made at first use), so the database
//! never holds them in clear; the sealed blob also binds the repository
//! name (associated data), so one repository's secrets cannot be pasted
//! onto another's row.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Seals and unseals with the daemon's key.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Reads the key at `path`, or makes one there (mode 0600, synced).
    pub fn open_or_create(path: &Path) -> std::io::Result<Self> {
        let key = match std::fs::read(path) {
            Ok(key) => key,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_key(path)?,
            Err(e) => return Err(e),
        };
        if key.len() != KEY_LEN {
            return Err(std::io::Error::other(format!(
                "{} holds {} bytes, not a {KEY_LEN}-byte key",
                path.display(),
                key.len()
            )));
        }
        Ok(Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    /// `nonce || ciphertext` of `plain`, bound to `context`.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plain,
            aad: context.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("ChaCha20-Poly1305 encrypts any length we store");
        [nonce.as_slice(), &sealed].concat()
    }

    /// The plain text of [`Sealer::seal`]'s output, if it was sealed with
    /// this key for this `context` and not altered.
    pub fn unseal(&self, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let payload = Payload {
            msg: body,
            aad: context.as_bytes(),
        };
        self.cipher.decrypt(Nonce::from_slice(nonce), payload).ok()
    }
}

fn make_key(path: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut key = vec![0u8; KEY_LEN];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&key)?;
    file.sync_all()?;
    crate::driver::rename_durable(&tmp, path).map_err(std::io::Error::other)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_refuses_tampering_or_another_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let sealer = Sealer::open_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let sealed = sealer.seal("repo1", b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(sealer.unseal("repo1", &sealed).unwrap(), b"hunter2");
        assert!(sealer.unseal("repo2", &sealed).is_none());
        let mut bent = sealed.clone();
        *bent.last_mut().unwrap() ^= 1;
        assert!(sealer.unseal("repo1", &bent).is_none());
        // The same key is read back by the next daemon.
        let again = Sealer::open_or_create(&path).unwrap();
        assert_eq!(again.unseal("repo1", &sealed).unwrap(), b"hunter2");
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, b"short").unwrap();
        assert!(Sealer::open_or_create(&path).is_err());
    }
}
