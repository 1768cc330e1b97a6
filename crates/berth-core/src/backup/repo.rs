//! Repository records and opening a repository: what berth keeps about a
//! repository (never its secrets in clear), and the rustic calls that
//! check a password, make a new repository or open one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rustic_core::{
    ConfigOptions, Credentials, KeyOptions, OpenStatus, Repository, RepositoryOptions,
};
use serde::{Deserialize, Serialize};

use super::location::{backend_options, Location};
use super::run::{Bars, Progress};
use super::BackupError;

/// What berth stores about a repository in the clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RepoRecord {
    pub name: String,
    /// The URL as the user gave it (it holds no credentials).
    pub url: String,
    pub location: Location,
    /// Options that are not secret (`region`, ...).
    pub options: BTreeMap<String, String>,
    /// The names of the secret options given (their values are sealed).
    pub secret_options: Vec<String>,
    /// The repository's own ID (restic's config ID).
    pub repository_id: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

/// A repository's secrets, sealed at rest. `Debug` shows no values.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct RepoSecrets {
    pub password: String,
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for RepoSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&String> = self.options.keys().collect();
        write!(f, "RepoSecrets {{ password: <hidden>, options: {keys:?} }}")
    }
}

/// A repository handle for one operation.
pub(super) type Opened = Repository<OpenStatus>;

/// The rustic repository at `location` (not yet opened).
fn unopened(
    name: &str,
    location: &Location,
    options: &BTreeMap<String, String>,
    secrets: &RepoSecrets,
    cache: &Path,
    progress: &Arc<Progress>,
) -> Result<Repository<()>, BackupError> {
    let (repository, backend_opts) = backend_options(location, options, &secrets.options);
    let backends = rustic_backend::BackendOptions::default()
        .repository(repository)
        .options(backend_opts)
        .to_backends()
        .map_err(|e| BackupError::repository(name, &e))?;
    let mut repo_opts = RepositoryOptions::default();
    repo_opts.cache_dir = Some(cache.to_path_buf());
    Repository::new_with_progress(&repo_opts, &backends, Bars(progress.clone()))
        .map_err(|e| BackupError::repository(name, &e))
}

/// Opens an existing repository with its password.
pub(super) fn open(
    name: &str,
    url: &str,
    location: &Location,
    options: &BTreeMap<String, String>,
    secrets: &RepoSecrets,
    cache: &Path,
    progress: &Arc<Progress>,
) -> Result<Opened, BackupError> {
    let repo = unopened(name, location, options, secrets, cache, progress)?;
    let found = repo
        .config_id()
        .map_err(|e| BackupError::repository(name, &e))?;
    if found.is_none() {
        return Err(BackupError::NotARepository(url.to_string()));
    }
    repo.open(&Credentials::password(&secrets.password))
        .map_err(|e| {
            if e.is_incorrect_password() {
                BackupError::WrongPassword(name.to_string())
            } else {
                BackupError::repository(name, &e)
            }
        })
}

/// Makes a new repository; refuses a location that holds one already.
pub(super) fn init(
    name: &str,
    url: &str,
    location: &Location,
    options: &BTreeMap<String, String>,
    secrets: &RepoSecrets,
    cache: &Path,
    progress: &Arc<Progress>,
) -> Result<Opened, BackupError> {
    let repo = unopened(name, location, options, secrets, cache, progress)?;
    let found = repo
        .config_id()
        .map_err(|e| BackupError::repository(name, &e))?;
    if found.is_some() {
        return Err(BackupError::AlreadyARepository {
            url: url.to_string(),
        });
    }
    repo.init(
        &Credentials::password(&secrets.password),
        &KeyOptions::default(),
        &ConfigOptions::default(),
    )
    .map_err(|e| BackupError::repository(name, &e))
}

/// The repository's own ID, in full.
pub(super) fn repository_id(repo: &Opened) -> String {
    repo.config().id.to_hex().to_string()
}
