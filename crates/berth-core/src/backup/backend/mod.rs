//! Where rustic reads and writes a repository's files: rustic_backend's
//! local backend for a folder, and berth's own S3 and SFTP backends (a
//! few hundred lines each, in place of OpenDAL: that library and its
//! dozens of services doubled the daemon's binary, its idle memory and
//! its build). Each implements rustic's `ReadBackend`/`WriteBackend` with
//! restic's layout: `config`, `keys/ID`, `snapshots/ID`, `index/ID`,
//! `locks/ID` and `data/XX/ID`.

mod cancel;
mod s3;
mod s3_list;
mod sftp;
mod sftp_wire;
pub mod sigv4;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use rustic_core::{ErrorKind, FileType, Id, RepositoryBackends, RusticError, WriteBackend};

use super::location::Location;
use super::BackupError;

pub use cancel::{Cancellable, CANCELLED};
pub use s3::{S3Backend, S3Config};
pub use sftp::{SftpBackend, SftpConfig};

/// What a backend call can fail with (the source of the rustic error).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Config(String),
    #[error("HTTP: {0}")]
    Http(#[source] reqwest::Error),
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
    #[error("SFTP connection: {0}")]
    Io(#[source] std::io::Error),
    #[error("SFTP connection: {0}")]
    Broken(String),
    #[error("{what}: SFTP status {code}: {message}")]
    Sftp {
        what: String,
        code: u32,
        message: String,
    },
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The operation was cancelled (holds [`CANCELLED`], so a panic on
    /// it is known for what it is).
    #[error("{0}")]
    Cancelled(&'static str),
}

impl BackendError {
    /// Whether trying again may help (the network, not the request).
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::Http(e) => {
                e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode()
            }
            _ => false,
        }
    }
}

/// A backend error as rustic's.
pub(super) fn backend_error(doing: &'static str, e: BackendError) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, doing, e)
}

/// The path of a repository file, relative to the repository's root.
pub(super) fn object_path(tpe: FileType, id: &Id) -> String {
    let hex = id.to_hex();
    match tpe {
        FileType::Config => "config".to_string(),
        FileType::Pack => format!("data/{}/{}", &hex[..2], &*hex),
        _ => format!("{}/{}", tpe.dirname(), &*hex),
    }
}

/// Waits on futures from threads that are not the runtime's (rustic
/// calls its backends from blocking threads of its own).
#[derive(Debug, Clone)]
pub struct Blocking(tokio::runtime::Handle);

impl Blocking {
    /// The daemon's runtime when there is one; else a small one of its own.
    pub fn new() -> Self {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return Blocking(handle);
        }
        static OWN: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        let rt = OWN.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the backup backends")
        });
        Blocking(rt.handle().clone())
    }

    /// Runs `fut` to completion. Must not be called on a runtime worker.
    pub fn wait<T>(&self, fut: impl Future<Output = T>) -> T {
        self.0.block_on(fut)
    }
}

impl Default for Blocking {
    fn default() -> Self {
        Self::new()
    }
}

/// The backend for `location`, with the options and secrets berth keeps.
pub fn open(
    location: &Location,
    plain: &BTreeMap<String, String>,
    secret: &BTreeMap<String, String>,
    stop: &Arc<super::Progress>,
) -> Result<RepositoryBackends, BackupError> {
    let config_err = |e: BackendError| BackupError::InvalidRequest(e.to_string());
    let backend: Arc<dyn WriteBackend> = match location {
        Location::Local { path } => {
            let local = rustic_backend::LocalBackend::new(path, BTreeMap::new())
                .map_err(|e| BackupError::InvalidRequest(e.display_log()))?;
            Arc::new(local)
        }
        Location::S3 {
            endpoint,
            bucket,
            root,
        } => {
            let config = s3_config(endpoint, bucket, root, plain, secret)?;
            Arc::new(S3Backend::new(config, Blocking::new(), stop.clone()).map_err(config_err)?)
        }
        Location::Sftp {
            user,
            endpoint,
            root,
        } => Arc::new(SftpBackend::new(
            SftpConfig::new(user.as_deref(), endpoint, root, plain),
            stop.clone(),
        )),
    };
    let cancellable = Cancellable::new(backend, stop.clone());
    Ok(RepositoryBackends::new(Arc::new(cancellable), None))
}

fn s3_config(
    endpoint: &str,
    bucket: &str,
    root: &str,
    plain: &BTreeMap<String, String>,
    secret: &BTreeMap<String, String>,
) -> Result<S3Config, BackupError> {
    let key = |k: &str| secret.get(k).cloned().unwrap_or_default();
    let tries = match plain.get("retry").map(String::as_str) {
        None | Some("default") => S3Config::default_tries(),
        Some("off" | "false") => 1,
        Some(n) => n.parse::<u32>().map(|n| n + 1).map_err(|_| {
            BackupError::InvalidRequest(format!("option retry: {n:?} is not a number"))
        })?,
    };
    Ok(S3Config {
        endpoint: endpoint.to_string(),
        bucket: bucket.to_string(),
        prefix: root.trim_matches('/').to_string(),
        region: plain
            .get("region")
            .cloned()
            .unwrap_or_else(|| "us-east-1".into()),
        keys: sigv4::Keys {
            access_key_id: key("access_key_id"),
            secret_access_key: key("secret_access_key"),
            session_token: secret.get("session_token").cloned(),
        },
        tries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_layout() {
        let id = Id::random();
        let hex = id.to_hex();
        assert_eq!(object_path(FileType::Config, &id), "config");
        assert_eq!(
            object_path(FileType::Pack, &id),
            format!("data/{}/{}", &hex[..2], &*hex)
        );
        assert_eq!(
            object_path(FileType::Snapshot, &id),
            format!("snapshots/{}", &*hex)
        );
    }

    #[test]
    fn s3_options() {
        let mut plain = BTreeMap::new();
        let secret = BTreeMap::from([
            ("access_key_id".to_string(), "a".to_string()),
            ("secret_access_key".to_string(), "s".to_string()),
        ]);
        let c = s3_config("http://h:9000", "b", "/p/q", &plain, &secret).unwrap();
        assert_eq!(
            (c.prefix.as_str(), c.region.as_str(), c.tries),
            ("p/q", "us-east-1", 5)
        );
        plain.insert("retry".into(), "off".into());
        plain.insert("region".into(), "eu-west-1".into());
        let c = s3_config("http://h", "b", "/", &plain, &secret).unwrap();
        assert_eq!(
            (c.prefix.as_str(), c.region.as_str(), c.tries),
            ("", "eu-west-1", 1)
        );
        plain.insert("retry".into(), "many".into());
        assert!(s3_config("http://h", "b", "/", &plain, &secret).is_err());
    }
}
