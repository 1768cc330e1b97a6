//! `berth volume backup`: one volume's content into a repository, as a
//! restic snapshot deduplicated against everything the repository holds
//! (the previous backup of the same volume from this host is its parent,
//! so unchanged files are not even read).
//!
//! A backup that fails or is cut off leaves the repository valid: rustic
//! writes the snapshot file last, so what came before it is only packs
//! (reused by the next backup, or dropped by `prune`).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rustic_core::repofile::SnapshotFile;
use rustic_core::{
    BackupOptions, IndexedIdsStatus, LocalSourceFilterOptions, PathList, ProgressBars,
    ProgressType, Repository, RusticProgress, SnapshotOptions, StringList,
};
use serde::Serialize;

use super::completeness;
use super::meta::{
    check_tags, BackupEntry, BackupMeta, BERTH_TAG, INCOMPLETE_TAG, VOLUME_TAG_PREFIX,
};
use super::{BackupError, BackupService};

/// A backup's progress, shared with whoever reports it; also how it is
/// cancelled.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of file content read or found unchanged so far.
    pub done: AtomicU64,
    /// Bytes of file content in the volume (0 until the scan knows).
    pub total: AtomicU64,
    cancelled: AtomicBool,
    started: AtomicBool,
}

impl Progress {
    /// Whether the checks are over and data is moving (an error before
    /// that is a refusal, after it a failure part way).
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    pub(super) fn start(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// Asks the operation to stop; it ends with [`BackupError::Cancelled`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// The bar rustic drives for the byte counts of a backup or restore.
#[derive(Debug, Clone)]
pub(super) struct Bars(pub Arc<Progress>);

#[derive(Debug)]
struct Bar(Arc<Progress>);

/// rustic has no way to stop a backup; a cancelled one is unwound from
/// its progress callback (caught where the backup was called). The
/// repository stays valid: the snapshot file is written last.
const CANCEL_PANIC: &str = "berth: backup cancelled";

/// Keeps the cancellation unwind out of the log: the default panic hook
/// prints every panic, and a cancelled backup unwinds once per job still
/// running (hundreds of lines, thousands with a backtrace). Other panics
/// go to the hook that was there before.
pub(super) fn quiet_cancel_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = (payload.downcast_ref::<&str>().copied())
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            // Ours, or rustic's unwrap of the cancelled backend's error.
            if text != CANCEL_PANIC && !text.contains(super::backend::CANCELLED) {
                previous(info);
            }
        }));
    });
}

impl RusticProgress for Bar {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.0.total.store(len, Ordering::Relaxed);
    }
    fn set_title(&self, _title: &str) {}
    fn inc(&self, n: u64) {
        if self.0.is_cancelled() {
            std::panic::panic_any(CANCEL_PANIC);
        }
        self.0.done.fetch_add(n, Ordering::Relaxed);
    }
    fn finish(&self) {}
}

impl ProgressBars for Bars {
    fn progress(&self, kind: ProgressType, _prefix: &str) -> rustic_core::Progress {
        match kind {
            ProgressType::Bytes => rustic_core::Progress::new(Bar(self.0.clone())),
            _ => rustic_core::Progress::hidden(),
        }
    }
}

/// How to take a backup.
#[derive(Debug, Clone, Default)]
pub struct BackupRequest {
    /// The user's tags.
    pub tags: Vec<String>,
    /// Stop the containers that use a local volume for the time of the
    /// backup (else only those labelled to be; others make it refuse).
    pub stop_containers: bool,
}

/// What a finished backup reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupReport {
    #[serde(flatten)]
    pub entry: BackupEntry,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    /// Seconds the backup took.
    pub duration: f64,
    /// What the backup lacks (entries of the volume it could not read),
    /// empty when it is whole.
    pub warnings: Vec<String>,
}

impl BackupService {
    /// Backs up volume `volume` into repository `repo` with the user's
    /// `tags`; see the module docs.
    pub fn backup(
        &self,
        volume: &str,
        repo: &str,
        options: &BackupRequest,
        progress: Arc<Progress>,
    ) -> Result<BackupReport, BackupError> {
        check_tags(&options.tags).map_err(BackupError::InvalidRequest)?;
        let (_guard, record, opened) = self.open_repo(repo, &progress)?;
        // Stopped before the source is taken, started again after it is
        // released (both dropped explicitly below, the source first).
        let stopped = match self.volumes.backs_up_from_snapshot(volume)? {
            true => None,
            false => Some(super::stopping::stop_users(
                &self.volumes,
                self.containers.as_ref(),
                volume,
                options.stop_containers,
                &self.stopped_ledger,
            )?),
        };
        let stopped_names = stopped.as_ref().map(|s| s.names()).unwrap_or_default();
        let source = self.volumes.backup_source(volume)?;
        let meta = BackupMeta::of(&source.volume, source.consistency, stopped_names);
        let snapshot = snapshot_options(&meta, &options.tags)?;
        let indexed = opened
            .to_indexed_ids()
            .map_err(|e| BackupError::repository(repo, &e))?;
        let source_path = source.path.clone();
        progress.start();
        let run = || {
            let list = PathList::from_string(&source_path.to_string_lossy())
                .map_err(|e| BackupError::repository(repo, &e))?;
            let options = BackupOptions::default()
                .as_path(PathBuf::from(format!("/{volume}")))
                .ignore_filter_opts(LocalSourceFilterOptions::default().one_file_system(true));
            indexed
                .backup(&options, &list, snapshot)
                .map_err(|e| BackupError::repository(repo, &e))
        };
        let saved = with_progress(repo, &progress, run);
        let summary = saved.as_ref().ok().and_then(|s| s.summary.clone());
        let summary = summary.unwrap_or_default();
        let warning = match &saved {
            Ok(_) => completeness::missing_warning(&source_path, summary.total_files_processed),
            Err(_) => None,
        };
        drop(source);
        drop(stopped);
        let mut saved = saved?;
        if warning.is_some() {
            saved = mark_incomplete(repo, &indexed, saved)?;
        }
        let report = BackupReport {
            entry: BackupEntry::of(&record.name, &saved),
            files_new: summary.files_new,
            files_changed: summary.files_changed,
            files_unmodified: summary.files_unmodified,
            duration: summary.total_duration,
            warnings: warning.into_iter().collect(),
        };
        let mut attributes = vec![("repo", repo), ("snapshot", report.entry.id.as_str())];
        if let Some(w) = report.warnings.first() {
            tracing::warn!(volume, repo, snapshot = %report.entry.id, "{w}");
            attributes.push(("warning", w));
        }
        self.publish("backup", volume, &attributes);
        Ok(report)
    }
}

/// Tags `saved` as incomplete: rustic writes the snapshot before berth
/// can tell, so it is saved again with the tag and the first copy
/// deleted (a crash between leaves both, the tagged one telling). The
/// new copy is found again by its time and tag (its ID is its content's).
fn mark_incomplete(
    repo: &str,
    indexed: &Repository<IndexedIdsStatus>,
    saved: SnapshotFile,
) -> Result<SnapshotFile, BackupError> {
    let err = |e: Box<rustic_core::RusticError>| BackupError::repository(repo, &e);
    let mut tagged = saved.clone();
    let tag = StringList::from_str(INCOMPLETE_TAG)
        .map_err(|e| BackupError::InvalidRequest(e.to_string()))?;
    tagged.add_tags(vec![tag]);
    indexed.save_snapshots(vec![tagged]).map_err(err)?;
    indexed.delete_snapshots(&[saved.id]).map_err(err)?;
    let all = indexed.get_all_snapshots().map_err(err)?;
    let found = all.into_iter().find(|s| {
        s.time == saved.time && s.label == saved.label && s.tags.contains(INCOMPLETE_TAG)
    });
    found.ok_or_else(|| BackupError::Repository {
        repo: repo.to_string(),
        detail: "the incomplete backup's tagged snapshot was not found after saving it".into(),
    })
}

/// Runs `work` on repository `repo`, with rustic reporting into
/// `progress` (through the repository's bars: see `repo::Target`),
/// turning a cancellation unwind into [`BackupError::Cancelled`] and any
/// other panic into an error.
pub(super) fn with_progress<T>(
    repo: &str,
    progress: &Progress,
    work: impl FnOnce() -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(_) if progress.is_cancelled() => Err(BackupError::Cancelled),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".to_string());
            Err(BackupError::Repository {
                repo: repo.to_string(),
                detail: format!("the repository library failed: {what}"),
            })
        }
    }
}

fn snapshot_options(
    meta: &BackupMeta,
    tags: &[String],
) -> Result<rustic_core::repofile::SnapshotFile, BackupError> {
    let mut all = vec![
        BERTH_TAG.to_string(),
        format!("{VOLUME_TAG_PREFIX}{}", meta.volume),
    ];
    all.extend(tags.iter().cloned());
    let list = StringList::from_str(&all.join(","))
        .map_err(|e| BackupError::InvalidRequest(e.to_string()))?;
    let description =
        serde_json::to_string(meta).map_err(|e| BackupError::InvalidRequest(e.to_string()))?;
    SnapshotOptions::default()
        .label(meta.volume.clone())
        .description(description)
        .command("berth volume backup".to_string())
        .tags(vec![list])
        .to_snapshot()
        .map_err(|e| BackupError::InvalidRequest(e.display_log()))
}
