//! `volume prune`: remove unused local volumes, anonymous ones only unless
//! `all=true`. The API decides the version gate (below API 1.42 it adds
//! `all=true`, as moby's router does); this module applies the filters.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::filters::{self, Filters};
use super::service::tombstone_of;
use super::{names, VolumeError, VolumeService};
use crate::driver::{Retiring, DEFAULT_DRIVER};
use crate::failpoint;
use crate::store::{VolumeRecord, VolumeState};

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
    ///
    /// In bulk: every candidate's lock is held (in name order, as every
    /// multi-name operation takes them) from the check to the commit; their
    /// storage is moved to the trash, then one transaction deletes all the
    /// rows, and the storage is destroyed in the background.
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
        let candidates: Vec<String> = (self.store.volumes().iter())
            .filter(|r| is_candidate(r, filters, all))
            .map(|r| r.name.clone())
            .collect();
        let _guards: Vec<_> = candidates.iter().map(|n| self.locks.lock(n)).collect();
        let chosen = self.still_unused(&candidates, filters, all)?;
        let report = self.remove_all(&chosen)?;
        drop(chosen);
        crate::sys::release_free_memory();
        tracing::info!(
            volumes = report.deleted.len(),
            bytes = report.space_reclaimed,
            "volumes pruned"
        );
        let reclaimed = report.space_reclaimed.to_string();
        self.publish("prune", "", &[("reclaimed", &reclaimed)]);
        Ok(report)
    }

    /// The candidates that, under their locks, are still candidates with
    /// no holder, no mount and no rename under way.
    fn still_unused(
        &self,
        names: &[String],
        filters: &Filters,
        all: bool,
    ) -> Result<Vec<Arc<VolumeRecord>>, VolumeError> {
        let store_err = |e| VolumeError::store("prune", "volumes", e);
        let used = self.store.use_counts().map_err(store_err)?;
        let renaming: HashSet<String> = (self.store.pending_renames().map_err(store_err)?)
            .into_iter()
            .flat_map(|(old, new)| [old, new])
            .collect();
        let records = self.store.volumes();
        let by_name: HashMap<&str, &Arc<VolumeRecord>> =
            records.iter().map(|r| (r.name.as_str(), r)).collect();
        Ok(names
            .iter()
            .filter_map(|n| by_name.get(n.as_str()).copied())
            .filter(|r| is_candidate(r, filters, all))
            .filter(|r| !used.contains_key(&r.name) && !renaming.contains(&r.name))
            .cloned()
            .collect())
    }

    /// Removes `chosen` (locks held): sizes, trash, one commit; a volume
    /// the trash cannot take is removed in place.
    fn remove_all(&self, chosen: &[Arc<VolumeRecord>]) -> Result<PruneReport, VolumeError> {
        let driver = self.drivers.get(DEFAULT_DRIVER).ok();
        let Some(driver) = driver.filter(|d| d.trash().is_some()) else {
            let sized = chosen.iter().zip(self.unmounted_sizes(chosen)).collect();
            return Ok(self.remove_one_by_one(sized, |r| self.remove_locked(r, false)));
        };
        let (retired, in_place) = self.retire_all(driver.as_ref(), chosen);
        failpoint::hit("volume-prune-retired");
        let removed: Vec<_> = retired.iter().map(|(r, _)| tombstone_of(r)).collect();
        if let Err(e) = self.store.delete_retired(&removed) {
            for (record, _) in &retired {
                self.put_back(driver.as_ref(), record);
            }
            return Err(VolumeError::store("prune", "volumes", e));
        }
        failpoint::hit("volume-prune-committed");
        let mut report = PruneReport::default();
        for (record, size) in retired {
            self.trash.destroy_later(driver.clone(), record.uid.clone());
            self.removed_quietly(record);
            report.deleted.push(record.name.clone());
            report.space_reclaimed += size;
        }
        let rest = self.remove_one_by_one(in_place, |r| {
            self.remove_in_place(r, driver.as_ref(), false)
        });
        report.deleted.extend(rest.deleted);
        report.space_reclaimed += rest.space_reclaimed;
        Ok(report)
    }

    /// Hides `chosen` and moves them to the trash: (moved, to remove in
    /// place), each with its size.
    fn retire_all<'a>(
        &self,
        driver: &dyn crate::driver::VolumeDriver,
        chosen: &'a [Arc<VolumeRecord>],
    ) -> (Vec<WithSize<'a>>, Vec<WithSize<'a>>) {
        let trash = driver.trash().expect("the caller checked");
        let sizes = self.unmounted_sizes(chosen);
        for record in chosen {
            self.store.hide_volume(&record.name);
        }
        let pairs: Vec<Retiring<'_>> = (chosen.iter())
            .map(|r| Retiring {
                name: &r.name,
                uid: &r.uid,
            })
            .collect();
        let (mut retired, mut in_place) = (Vec::new(), Vec::new());
        for ((record, size), moved) in chosen.iter().zip(sizes).zip(trash.retire(&pairs)) {
            match moved {
                Ok(_) => retired.push((record, size)),
                Err(e) => {
                    tracing::debug!(volume = %record.name, error = %e, "prune: removing in place");
                    self.store.show_volume(&record.name);
                    in_place.push((record, size));
                }
            }
        }
        (retired, in_place)
    }

    /// Removes each volume with `remove`, logging and skipping failures.
    fn remove_one_by_one(
        &self,
        sized: Vec<WithSize<'_>>,
        remove: impl Fn(&VolumeRecord) -> Result<bool, VolumeError>,
    ) -> PruneReport {
        let mut report = PruneReport::default();
        for (record, size) in sized {
            match remove(record) {
                Ok(_) => {
                    report.deleted.push(record.name.clone());
                    report.space_reclaimed += size;
                }
                Err(e) => {
                    tracing::warn!(volume = %record.name, error = %e, "prune: could not remove volume")
                }
            }
        }
        report
    }
}

/// A prune candidate and the bytes it holds.
type WithSize<'a> = (&'a Arc<VolumeRecord>, u64);

fn is_candidate(record: &VolumeRecord, filters: &Filters, all: bool) -> bool {
    record.state == VolumeState::Ready
        && record.driver == DEFAULT_DRIVER
        && record.options.is_empty()
        && (all || names::is_anonymous(&record.labels))
        && filters::labels_match(filters, "label", &record.labels)
        && !filters::labels_excluded(filters, &record.labels)
}
