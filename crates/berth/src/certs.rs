//! The certificate files both ends of the API over TCP read, found and
//! parsed once for both: Docker's default folder, PEM certificates, a CA
//! as roots, a private key, and the crypto provider and TLS versions
//! berth speaks (ring; TLS 1.3 and 1.2 only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{RootCertStore, SupportedProtocolVersion};

/// The TLS versions berth accepts.
pub const VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto provider of every TLS configuration berth makes.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `given`, or `name` in Docker's folder: `$DOCKER_CERT_PATH`, else
/// `~/.docker` (as dockerd and the docker CLI look).
pub fn or_default(given: &Option<PathBuf>, name: &str) -> PathBuf {
    given.clone().unwrap_or_else(|| {
        std::env::var_os("DOCKER_CERT_PATH")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .unwrap_or_else(|| PathBuf::from("/root/.docker"))
            .join(name)
    })
}

/// The PEM certificates in `path` (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// The CA certificates in `path` as trusted roots.
pub fn read_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .with_context(|| format!("CA certificate in {}", path.display()))?;
    }
    Ok(roots)
}

/// The private key in `path`.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("reading the private key in {}", path.display()))
}
