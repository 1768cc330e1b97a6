//! Backups of volumes to restic-format repositories (deduplicated,
//! encrypted, incremental), through `rustic_core`; restore into a new or
//! empty volume.
//!
//! Split: [`location`] (parsing a repository URL), [`repo`] (records and
//! opening), [`secret`] (secrets sealed at rest), [`meta`] (what a backup
//! records about its volume), [`run`] (backup), [`completeness`] (what a
//! backup could not read), [`restore`], [`maintain`] (forget, prune,
//! check), [`schedule`] (schedules the daemon runs).
//!
//! rustic_core takes no repository locks, so berth serialises every
//! operation on one repository itself (a per-name lock held for the whole
//! operation). Tools outside berth are not stopped: `restic prune` or
//! `restic forget` must not run against a repository while berth writes
//! to it (ARCHITECTURE.md). Every call into rustic blocks; the API calls
//! these methods off its async workers.

pub mod backend;
mod completeness;
mod error;
pub mod location;
mod maintain;
mod meta;
mod repo;
mod restore;
mod run;
mod schedule;
mod secret;
mod stopping;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use error::BackupError;
pub use location::Location;
pub use maintain::{CheckReport, ForgetReport, KeepRules, PruneReport};
pub use meta::{BackupEntry, BackupMeta};
pub use repo::{RepoRecord, RepoSecrets};
pub use run::{BackupReport, BackupRequest, Progress};
pub use schedule::{parse_every, LastRun, Schedule, ScheduleRequest, When};

use crate::events::{Event, EventBus};
use crate::locks::NameLocks;
use crate::store::Store;
use crate::volume::VolumeService;

/// A container as a backup sees it.
#[derive(Debug, Clone, Default)]
pub struct ContainerFacts {
    /// The full ID.
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// What backups need of containers: stopping the ones that use a local
/// volume for the time of its backup, and starting them again (the
/// container service implements it; kept as a trait so the backup module
/// does not depend on containers).
pub trait ContainerControl: Send + Sync {
    /// The container's name and labels, if it exists.
    fn facts(&self, id: &str) -> Option<ContainerFacts>;
    /// Stops it (its stop signal, then SIGKILL after its timeout).
    fn stop(&self, id: &str) -> Result<(), String>;
    /// Starts it again (one already running is no error).
    fn start(&self, id: &str) -> Result<(), String>;
}

/// offen/docker-volume-backup's label: a container with it set to `true`
/// is stopped for the time of a backup of its volumes.
pub const STOP_DURING_BACKUP_LABEL: &str = "docker-volume-backup.stop-during-backup";

/// A request to add (or make) a repository.
#[derive(Debug, Clone, Default)]
pub struct AddRepo {
    pub name: String,
    pub url: String,
    pub options: BTreeMap<String, String>,
    pub secrets: RepoSecrets,
    /// Make a new repository there (else one must exist).
    pub init: bool,
}

/// Backup repositories and the operations on them.
pub struct BackupService {
    store: Arc<Store>,
    volumes: Arc<VolumeService>,
    sealer: secret::Sealer,
    /// One operation at a time per repository (rustic takes no locks).
    repo_locks: NameLocks,
    /// rustic's cache of index and snapshot files, one folder per repository ID.
    cache: PathBuf,
    /// The daemon's root: no repository may live in it.
    root: PathBuf,
    events: Option<Arc<EventBus>>,
    containers: Option<Arc<dyn ContainerControl>>,
    /// Containers stopped for a backup, written down (`stopping.rs`).
    stopped_ledger: PathBuf,
    /// The schedules by volume, as stored (the store is the durable
    /// record; reads, `volume inspect`'s among them, come from here).
    schedules: parking_lot::Mutex<BTreeMap<String, Schedule>>,
}

impl BackupService {
    /// The service over `store` and `volumes`, its key and cache under
    /// `dir` (`<root>/backup`).
    pub fn new(
        store: Arc<Store>,
        volumes: Arc<VolumeService>,
        dir: &std::path::Path,
    ) -> Result<Self, BackupError> {
        // Private like every folder under the root: it holds the key.
        let private = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let perms = std::os::unix::fs::PermissionsExt::from_mode(0o700);
            std::fs::set_permissions(dir, perms)
        };
        private().map_err(|e| BackupError::Secret(format!("{}: {e}", dir.display())))?;
        let sealer = secret::Sealer::open_or_create(&dir.join("secret.key"))
            .map_err(|e| BackupError::Secret(e.to_string()))?;
        volumes.drop_stale_backup_snapshots();
        run::quiet_cancel_panics();
        let schedules = store.backup_schedules()?;
        let schedules = schedules
            .into_iter()
            .map(|s| (s.volume.clone(), s))
            .collect();
        Ok(BackupService {
            store,
            volumes,
            sealer,
            repo_locks: NameLocks::default(),
            cache: dir.join("cache"),
            root: dir.parent().unwrap_or(dir).to_path_buf(),
            events: None,
            containers: None,
            stopped_ledger: dir.join("stopped"),
            schedules: parking_lot::Mutex::new(schedules),
        })
    }

    /// Publishes `backup` events on `bus`.
    pub fn with_events(mut self, bus: Arc<EventBus>) -> Self {
        self.events = Some(bus);
        self
    }

    /// Lets backups stop and start the containers that use a volume; starts
    /// again those a backup cut short by a crash had stopped.
    pub fn with_containers(mut self, containers: Arc<dyn ContainerControl>) -> Self {
        let started = stopping::restart_written_down(containers.as_ref(), &self.stopped_ledger);
        if started > 0 {
            tracing::warn!(
                started,
                "started again the containers a cut-short backup had stopped"
            );
        }
        self.containers = Some(containers);
        self
    }

    /// Its user stopped or killed container `id` (a name or an ID): if a
    /// backup had stopped it, that backup no longer starts it again at
    /// its end (nor does the next start after a crash). Returns whether a
    /// backup had it stopped.
    pub fn user_stopped(&self, id: &str) -> bool {
        let Some(facts) = self.containers.as_ref().and_then(|c| c.facts(id)) else {
            return false;
        };
        stopping::cross_off(&self.stopped_ledger, &facts.id)
    }

    fn publish(&self, action: &str, id: &str, attributes: &[(&str, &str)]) {
        if let Some(bus) = &self.events {
            bus.publish(Event::now("backup", action, id, attributes));
        }
    }

    /// Adds a repository (`init`: makes it first). The password is checked
    /// by opening the repository; nothing is recorded unless that works.
    pub fn add_repo(&self, req: AddRepo) -> Result<RepoRecord, BackupError> {
        crate::volume::names::validate_name(&req.name)
            .map_err(|_| BackupError::InvalidName(req.name.clone()))?;
        let location = location::parse_url(&req.url)?;
        location::check_options(&location, &req.options, &req.secrets.options)?;
        location::refuse_inside(&location, &self.root)?;
        if req.secrets.password.is_empty() {
            return Err(BackupError::InvalidRequest(
                "a repository needs a password (from a file or the environment)".into(),
            ));
        }
        let _guard = self.repo_locks.lock(&format!("name:{}", req.name));
        if self.store.backup_repo(&req.name)?.is_some() {
            return Err(BackupError::RepoExists(req.name));
        }
        let target = repo::Target {
            name: &req.name,
            url: &req.url,
            location: &location,
            options: &req.options,
            secrets: &req.secrets,
            cache: Some(&self.cache),
        };
        let opened = match req.init {
            true => target.init(&Arc::default())?,
            false => target.open(&Arc::default())?,
        };
        if req.init {
            location::make_private(&location);
        }
        let record = RepoRecord {
            name: req.name.clone(),
            url: req.url.clone(),
            location,
            options: req.options.clone(),
            secret_options: req.secrets.options.keys().cloned().collect(),
            repository_id: repo::repository_id(&opened),
            created_at: chrono::Utc::now().timestamp(),
        };
        let plain =
            serde_json::to_vec(&req.secrets).map_err(|e| BackupError::Secret(e.to_string()))?;
        let sealed = self.sealer.seal(&record.name, &plain);
        if !self.store.insert_backup_repo(&record, &sealed)? {
            return Err(BackupError::RepoExists(req.name));
        }
        let action = if req.init { "repo-init" } else { "repo-add" };
        self.publish(action, &record.name, &[("url", &record.url)]);
        Ok(record)
    }

    /// Every repository berth knows, by name.
    pub fn repos(&self) -> Result<Vec<RepoRecord>, BackupError> {
        Ok(self.store.list_backup_repos()?)
    }

    /// One repository's record (its secrets stay sealed).
    pub fn repo(&self, name: &str) -> Result<RepoRecord, BackupError> {
        let (record, _sealed) = self
            .store
            .backup_repo(name)?
            .ok_or_else(|| BackupError::NoSuchRepo(name.to_string()))?;
        Ok(record)
    }

    /// Forgets berth's record of a repository; the repository itself is
    /// never touched. Returns whether there was one.
    pub fn remove_repo(&self, name: &str) -> Result<bool, BackupError> {
        let _guard = self.repo_locks.lock(&format!("name:{name}"));
        let removed = self.store.delete_backup_repo(name)?;
        if removed {
            self.publish("repo-rm", name, &[]);
        }
        Ok(removed)
    }

    fn record_and_secrets(&self, name: &str) -> Result<(RepoRecord, RepoSecrets), BackupError> {
        let (record, sealed) = self
            .store
            .backup_repo(name)?
            .ok_or_else(|| BackupError::NoSuchRepo(name.to_string()))?;
        let plain = self.sealer.unseal(name, &sealed).ok_or_else(|| {
            BackupError::Secret(format!(
                "the secrets of repository {name} cannot be read with this daemon's key \
                 (add the repository again)"
            ))
        })?;
        let secrets =
            serde_json::from_slice(&plain).map_err(|e| BackupError::Secret(e.to_string()))?;
        Ok((record, secrets))
    }

    /// Opens repository `name`, reporting byte counts into `progress`,
    /// and holds the repository's lock until the guard is dropped. The lock
    /// is the repository's own ID, not berth's name for it: two names for
    /// one repository share it (a prune through one never runs under a
    /// backup through the other).
    fn open_repo(
        &self,
        name: &str,
        progress: &Arc<Progress>,
    ) -> Result<(crate::locks::NameGuard<'_>, RepoRecord, repo::Opened), BackupError> {
        let (record, secrets) = self.record_and_secrets(name)?;
        let guard = self
            .repo_locks
            .lock(&format!("id:{}", record.repository_id));
        let opened = self.target(&record, &secrets, true).open(progress)?;
        Ok((guard, record, opened))
    }

    /// Opens repository `name` for reading without its lock and without
    /// rustic's cache, so it never waits for a backup of that repository.
    /// Safe beside a writer: every backend puts a file in place whole
    /// (written under a temporary name, then renamed; an object store's
    /// PUT), but the cache is written in place, so a reader could see a
    /// cached file half written. A file that a forget removes meanwhile
    /// fails the read; callers then read again under the lock.
    fn open_repo_unlocked(&self, name: &str) -> Result<repo::Opened, BackupError> {
        let (record, secrets) = self.record_and_secrets(name)?;
        self.target(&record, &secrets, false).open(&Arc::default())
    }

    fn target<'a>(
        &'a self,
        record: &'a RepoRecord,
        secrets: &'a RepoSecrets,
        cached: bool,
    ) -> repo::Target<'a> {
        repo::Target {
            name: &record.name,
            url: &record.url,
            location: &record.location,
            options: &record.options,
            secrets,
            cache: cached.then_some(self.cache.as_path()),
        }
    }
}
