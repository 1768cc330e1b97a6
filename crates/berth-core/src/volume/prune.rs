//! `volume prune`: remove unused local volumes, anonymous ones only unless
//! `all=true`. The API decides the version gate (below API 1.42 it adds
//! `all=true`, as moby's router does); this module applies the filters.

use std::sync::atomic::{AtomicBool, Ordering};

use super::filters::{self, Filters};
use super::{names, VolumeError, VolumeService};
use crate::driver::DEFAULT_DRIVER;
use crate::store::{VolumeRecord, VolumeState};
use crate::sys::usage::dir_size;

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Names removed, in the order removed.
    pub deleted: Vec<String>,
    /// Bytes those volumes held.
    pub space_reclaimed: u64,
}

/// Clears the "prune running" flag however the prune ends.
struct RunningFlag<'a>(&'a AtomicBool);

impl Drop for RunningFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl VolumeService {
    /// Removes every candidate volume that matches `filters` (keys: `label`,
    /// `label!`, `all`). Candidates: ready, `local` driver, no driver
    /// options, no holders or mounts. A prune while another runs is a
    /// conflict. A volume that fails to go is logged and skipped.
    pub fn prune(&self, filters: &Filters) -> Result<PruneReport, VolumeError> {
        if self
            .prune_running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(VolumeError::PruneRunning);
        }
        let _running = RunningFlag(&self.prune_running);
        filters::check_keys(filters, filters::PRUNE_KEYS)?;
        let all = filters::all_value(filters)?;
        let records = self
            .store
            .list_volumes()
            .map_err(|e| VolumeError::store("prune", "volumes", e))?;
        let mut report = PruneReport::default();
        for record in records.iter().filter(|r| is_candidate(r, filters, all)) {
            if let Some(bytes) = self.prune_one(&record.name, filters, all) {
                report.deleted.push(record.name.clone());
                report.space_reclaimed += bytes;
            }
        }
        let reclaimed = report.space_reclaimed.to_string();
        self.publish("prune", "", &[("reclaimed", &reclaimed)]);
        Ok(report)
    }

    /// Removes one candidate under its lock, re-checking it first (it may
    /// have changed since the listing). Returns the bytes freed if removed.
    fn prune_one(&self, name: &str, filters: &Filters, all: bool) -> Option<u64> {
        let _guard = self.locks.lock(name);
        let record = self.record("prune", name).ok().flatten()?;
        if !is_candidate(&record, filters, all) || !self.holders(name).ok()?.is_empty() {
            return None;
        }
        let size = self
            .driver_of("prune", &record)
            .ok()?
            .path(name)
            .ok()
            .flatten()
            .and_then(|p| dir_size(&p).ok())
            .unwrap_or(0);
        match self.remove_locked(&record, false) {
            Ok(_) => Some(size),
            Err(e) => {
                tracing::warn!(volume = %name, error = %e, "prune: could not remove volume");
                None
            }
        }
    }
}

fn is_candidate(record: &VolumeRecord, filters: &Filters, all: bool) -> bool {
    record.state == VolumeState::Ready
        && record.driver == DEFAULT_DRIVER
        && record.options.is_empty()
        && (all || names::is_anonymous(&record.labels))
        && filters::labels_match(filters, "label", &record.labels)
        && !filters::labels_excluded(filters, &record.labels)
}
