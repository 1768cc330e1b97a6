//! Listing backups, and keeping a repository in shape: `forget` (drop
//! snapshots by keep rules, per volume), `prune` (return the space that
//! forgotten snapshots held), `check` (verify the repository, optionally
//! reading every pack).

use std::collections::BTreeMap;
use std::sync::Arc;

use rustic_core::repofile::SnapshotFile;
use rustic_core::{CheckOptions, KeepOptions, PruneOptions};
use serde::{Deserialize, Serialize};

use super::meta::{volume_of, BackupEntry};
use super::{BackupError, BackupService};

/// Which backups `forget` keeps, per volume (restic's `--keep-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct KeepRules {
    pub last: Option<i32>,
    pub hourly: Option<i32>,
    pub daily: Option<i32>,
    pub weekly: Option<i32>,
    pub monthly: Option<i32>,
    pub yearly: Option<i32>,
}

impl KeepRules {
    /// Refuses rules that keep nothing or are negative.
    pub fn check(&self) -> Result<(), BackupError> {
        self.to_options().map(|_| ())
    }

    /// rustic's options; refuses rules that keep nothing or are negative.
    fn to_options(&self) -> Result<KeepOptions, BackupError> {
        let all = [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ];
        if all.iter().all(Option::is_none) {
            return Err(BackupError::InvalidRequest(
                "forget needs at least one --keep-* rule".into(),
            ));
        }
        if all.iter().flatten().any(|n| *n < 1) {
            return Err(BackupError::InvalidRequest(
                "a --keep-* count is at least 1".into(),
            ));
        }
        let mut o = KeepOptions::default();
        o.keep_last = self.last;
        o.keep_hourly = self.hourly;
        o.keep_daily = self.daily;
        o.keep_weekly = self.weekly;
        o.keep_monthly = self.monthly;
        o.keep_yearly = self.yearly;
        Ok(o)
    }
}

/// What `forget` did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ForgetReport {
    pub removed: Vec<String>,
    pub kept: Vec<String>,
}

/// What `prune` did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PruneReport {
    /// Pack files deleted now (or marked, when not instant).
    pub packs_removed: u64,
    /// Bytes of pack files deleted now (or marked, when not instant).
    pub bytes_removed: u64,
    /// Whether unused packs were deleted at once (else marked, and
    /// deleted by a prune a day later: safe against restic running
    /// alongside).
    pub instant: bool,
}

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckReport {
    pub ok: bool,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub read_data: bool,
}

impl BackupService {
    /// Backups in `repo` (or in every repository), of `volume` (or of
    /// all), oldest first.
    pub fn backups(
        &self,
        repo: Option<&str>,
        volume: Option<&str>,
    ) -> Result<Vec<BackupEntry>, BackupError> {
        let names = match repo {
            Some(r) => vec![r.to_string()],
            None => self.repos()?.into_iter().map(|r| r.name).collect(),
        };
        let mut out = Vec::new();
        for name in names {
            let mut snaps = self.snapshots_of(&name)?;
            snaps.retain(|s| volume.is_none_or(|v| volume_of(s) == Some(v)));
            snaps.sort_by(|a, b| a.time.cmp(&b.time));
            out.extend(snaps.iter().map(|s| BackupEntry::of(&name, s)));
        }
        Ok(out)
    }

    /// Every snapshot in `repo`, read without waiting for an operation
    /// that holds the repository (a backup may take hours); read again
    /// under its lock if that failed (a forget removed a file meanwhile).
    fn snapshots_of(&self, repo: &str) -> Result<Vec<SnapshotFile>, BackupError> {
        let read = |opened: &super::repo::Opened| {
            opened
                .get_all_snapshots()
                .map_err(|e| BackupError::repository(repo, &e))
        };
        match self.open_repo_unlocked(repo).and_then(|o| read(&o)) {
            Err(BackupError::Repository { .. }) => {
                let (_guard, _, opened) = self.open_repo(repo, &Arc::default())?;
                read(&opened)
            }
            answer => answer,
        }
    }

    /// Removes `repo`'s snapshots that `rules` do not keep, each host's
    /// backups of each volume judged apart (snapshots berth did not make
    /// are left alone).
    pub fn forget(
        &self,
        repo: &str,
        volume: Option<&str>,
        rules: &KeepRules,
    ) -> Result<ForgetReport, BackupError> {
        let keep = rules.to_options()?;
        let (_guard, _, opened) = self.open_repo(repo, &Arc::default())?;
        let snaps = opened
            .get_all_snapshots()
            .map_err(|e| BackupError::repository(repo, &e))?;
        // Per host and volume, as restic groups by host: two hosts that
        // share a repository each keep their own backups of a volume name.
        let mut groups: BTreeMap<(String, String), Vec<SnapshotFile>> = BTreeMap::new();
        for snap in snaps {
            if let Some(v) = volume_of(&snap).map(str::to_string) {
                if volume.is_none_or(|w| w == v) {
                    groups
                        .entry((snap.hostname.clone(), v))
                        .or_default()
                        .push(snap);
                }
            }
        }
        let now = rustic_core::jiff::Zoned::now();
        let mut report = ForgetReport::default();
        let mut doomed = Vec::new();
        for (_, group) in groups {
            let decided = keep
                .apply(group, &now)
                .map_err(|e| BackupError::repository(repo, &e))?;
            for d in decided {
                let id = d.snapshot.id.to_hex().to_string();
                if d.keep {
                    report.kept.push(id);
                } else {
                    doomed.push(d.snapshot.id);
                    report.removed.push(id);
                }
            }
        }
        opened
            .delete_snapshots(&doomed)
            .map_err(|e| BackupError::repository(repo, &e))?;
        self.publish("forget", repo, &[("removed", &doomed.len().to_string())]);
        Ok(report)
    }

    /// Returns the space of data no snapshot uses any more. `instant`
    /// deletes unused packs now (only safe when nothing but berth uses the
    /// repository); otherwise they are marked and deleted by a later prune.
    pub fn prune(&self, repo: &str, instant: bool) -> Result<PruneReport, BackupError> {
        let (_guard, _, opened) = self.open_repo(repo, &Arc::default())?;
        let options = PruneOptions::default().instant_delete(instant);
        let err = |e: Box<rustic_core::RusticError>| BackupError::repository(repo, &e);
        let plan = opened.prune_plan(&options).map_err(err)?;
        // What goes: unused packs, packs repacked (their used blobs copied
        // to new packs first), packs no index names, and packs an earlier
        // prune marked (deleted now).
        let stats = &plan.stats;
        let size = stats.size_sum();
        let report = PruneReport {
            packs_removed: stats.packs.unused
                + stats.packs.repack
                + stats.packs_unref
                + stats.packs_to_delete.remove,
            bytes_removed: size.remove
                + size.repackrm
                + stats.size_unref
                + stats.size_to_delete.remove,
            instant,
        };
        opened.prune(&options, plan).map_err(err)?;
        self.publish(
            "prune",
            repo,
            &[("bytes", &report.bytes_removed.to_string())],
        );
        Ok(report)
    }

    /// Checks `repo`'s structure (and with `read_data`, every pack's
    /// content). Corruption is reported, not an error.
    pub fn check(&self, repo: &str, read_data: bool) -> Result<CheckReport, BackupError> {
        let (_guard, _, opened) = self.open_repo(repo, &Arc::default())?;
        let results = opened
            .check(CheckOptions::default().read_data(read_data))
            .map_err(|e| BackupError::repository(repo, &e))?;
        let mut report = CheckReport {
            read_data,
            ..CheckReport::default()
        };
        for (level, finding) in &results.0 {
            match format!("{level:?}").as_str() {
                "Error" => report.errors.push(finding.to_string()),
                _ => report.warnings.push(finding.to_string()),
            }
        }
        report.ok = report.errors.is_empty();
        Ok(report)
    }
}
