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

use super::location::Location;
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

/// Where a repository is and how to reach it, for one operation.
pub(super) struct Target<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub location: &'a Location,
    pub options: &'a BTreeMap<String, String>,
    pub secrets: &'a RepoSecrets,
    /// rustic's cache folder; `None` reads everything from the backend.
    pub cache: Option<&'a Path>,
}

impl Target<'_> {
    /// The rustic repository (not yet opened), and whether one exists.
    fn unopened(&self, progress: &Arc<Progress>) -> Result<(Repository<()>, bool), BackupError> {
        let err = |e: Box<rustic_core::RusticError>| BackupError::repository(self.name, &e);
        let backends =
            super::backend::open(self.location, self.options, &self.secrets.options, progress)?;
        let mut repo_opts = RepositoryOptions::default();
        match self.cache {
            Some(cache) => repo_opts.cache_dir = Some(cache.to_path_buf()),
            None => repo_opts.no_cache = true,
        }
        let repo = Repository::new_with_progress(&repo_opts, &backends, Bars(progress.clone()))
            .map_err(err)?;
        let exists = repo.config_id().map_err(err)?.is_some();
        Ok((repo, exists))
    }

    /// Opens the existing repository with its password.
    pub fn open(&self, progress: &Arc<Progress>) -> Result<Opened, BackupError> {
        let (repo, exists) = self.unopened(progress)?;
        if !exists {
            return Err(BackupError::NotARepository(self.url.to_string()));
        }
        repo.open(&Credentials::password(&self.secrets.password))
            .map_err(|e| match e.is_incorrect_password() {
                true => BackupError::WrongPassword(self.name.to_string()),
                false => BackupError::repository(self.name, &e),
            })
    }

    /// Makes a new repository; refuses a location that holds one already.
    pub fn init(&self, progress: &Arc<Progress>) -> Result<Opened, BackupError> {
        let (repo, exists) = self.unopened(progress)?;
        if exists {
            return Err(BackupError::AlreadyARepository {
                url: self.url.to_string(),
            });
        }
        let password = Credentials::password(&self.secrets.password);
        repo.init(&password, &KeyOptions::default(), &ConfigOptions::default())
            .map_err(|e| BackupError::repository(self.name, &e))
    }
}

/// The repository's own ID, in full.
pub(super) fn repository_id(repo: &Opened) -> String {
    repo.config().id.to_hex().to_string()
}
