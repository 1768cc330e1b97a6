//! Registries: pull, push and `docker login` over the distribution
//! protocol. The protocol itself (token flow, blob streams, uploads) is
//! `oci-client`'s; berth adds what an engine needs around it: Docker's
//! reference names, insecure and mirror settings, blobs streamed to files
//! and checked before anything is unpacked, layers shared with the layer
//! store, and Docker's progress events.

pub mod auth;
mod download;
mod error;
mod inflight;
pub mod inspect;
pub mod manifest;
pub mod name;
pub mod progress;
pub mod pull;
pub mod push;
pub mod session;
mod tags;
pub mod transport;

use std::path::PathBuf;

pub use auth::{AuthConfig, Credentials};
pub use error::RegistryError;
pub use inflight::InflightTable;
pub use name::{RemoteReference, Target};
pub use progress::{LayerState, Progress, ProgressEvent};

/// Docker's default `--max-concurrent-downloads`.
pub const DEFAULT_DOWNLOADS: usize = 3;
/// Docker's default `--max-concurrent-uploads`.
pub const DEFAULT_UPLOADS: usize = 5;
/// Docker's default `--max-download-attempts`.
pub const DEFAULT_DOWNLOAD_ATTEMPTS: usize = 5;

/// How berth reaches registries (dockerd's flags of the same names).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `host[:port]` names and CIDRs spoken to without verified TLS.
    /// `127.0.0.0/8` is always among them, as in dockerd.
    pub insecure: Vec<String>,
    /// Mirrors of Docker Hub (`https://mirror.example.com`), tried first.
    pub mirrors: Vec<String>,
    /// Docker's `certs.d` folder: `<dir>/<host:port>/*.crt` are CAs.
    pub certs_dir: PathBuf,
    pub max_concurrent_downloads: usize,
    pub max_concurrent_uploads: usize,
    /// Attempts per layer download; a broken transfer is resumed where
    /// it stopped (dockerd's `--max-download-attempts`).
    pub max_download_attempts: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: vec!["127.0.0.0/8".into()],
            mirrors: Vec::new(),
            certs_dir: PathBuf::from("/etc/docker/certs.d"),
            max_concurrent_downloads: DEFAULT_DOWNLOADS,
            max_concurrent_uploads: DEFAULT_UPLOADS,
            max_download_attempts: DEFAULT_DOWNLOAD_ATTEMPTS,
        }
    }
}

impl RegistryConfig {
    /// The hosts of the mirror URLs, and those of them given as `http://`.
    pub fn mirror_hosts(&self) -> Vec<(String, bool)> {
        self.mirrors
            .iter()
            .filter_map(|url| {
                let plain = url.starts_with("http://");
                let host = url
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .split('/')
                    .next()?;
                (!host.is_empty()).then(|| (host.to_string(), plain))
            })
            .collect()
    }
}

/// A `docker login` check: credentials tried against the registry's
/// `/v2/`, with the token flow when it asks for one. Returns the identity
/// token when the registry gave a refresh token.
pub async fn login(
    config: &RegistryConfig,
    auth: &AuthConfig,
) -> Result<Option<String>, RegistryError> {
    let host = auth::login_host(&auth.serveraddress);
    let host = if host == name::DOCKER_HUB {
        "registry-1.docker.io".to_string()
    } else {
        host
    };
    let endpoint = transport::Endpoint::resolve(config, &host).await?;
    let http = endpoint.http_client(std::time::Duration::from_secs(30))?;
    auth::check_login(&http, &endpoint.base_url(), &auth.credentials()).await
}
