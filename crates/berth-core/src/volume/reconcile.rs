//! Start-up reconciliation: bring the store and the drivers' storage back in
//! agreement after a crash, repairing what can be repaired and reporting the
//! rest. Nothing is dropped silently: each finding is logged and kept as a
//! list warning for the daemon's lifetime.

use std::collections::HashSet;

use super::{names, VolumeError, VolumeService};
use crate::driver::{Retiring, VolumeDriver};
use crate::store::{Tombstone, VolumeRecord, VolumeState};

/// What start-up made of the tombstones it found.
#[derive(Debug, Default)]
struct Buried {
    /// Uids of tombstones with nothing left under their names: dropped
    /// once the moves are durable.
    settled: Vec<String>,
    /// Names whose removed storage could not go: refused to new volumes
    /// until it is gone, never adopted.
    kept: HashSet<String>,
    /// Names whose tombstones wait for an unfinished rename (or a rename
    /// journal that could not be read): never adopted.
    waiting: HashSet<String>,
}

/// What reconciliation found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Half-finished creates undone (never acknowledged to a client).
    pub rolled_back: Vec<String>,
    /// Half-finished removes completed.
    pub finished_removals: Vec<String>,
    /// Ready volumes whose storage was gone, recreated empty.
    pub recreated: Vec<String>,
    /// Ready volumes that had never been used and whose storage a crash
    /// cut before it was made (or a power cut before it was synced), made
    /// now: nothing was lost.
    pub made: Vec<String>,
    /// Removes a crash cut before their commit: the storage put back.
    pub removes_undone: Vec<String>,
    /// Storage of committed removes found in a trash, handed to the trash
    /// thread.
    pub trash_destroyed: usize,
    /// Storage with no row, adopted as volumes.
    pub adopted: Vec<String>,
    /// Mount ids replayed into their drivers.
    pub remounted: usize,
    /// Renames a crash cut short and start-up finished (`old -> new`).
    pub renamed: Vec<String>,
    /// Renames a crash cut short and start-up undid (the old names).
    pub rename_undone: Vec<String>,
    /// Findings that need a human: left as they were.
    pub problems: Vec<String>,
}

impl VolumeService {
    /// Settles every row and every piece of storage. Call once at start,
    /// before serving requests.
    pub fn reconcile(&self) -> Result<ReconcileReport, VolumeError> {
        let mut report = ReconcileReport::default();
        // First: a half-renamed volume has storage under either name, a
        // half-removed one in its driver's trash.
        self.resume_renames(&mut report);
        self.settle_trash(&mut report);
        // Renames start-up could not finish: their names' rows, storage and
        // tombstones are left as they are for the next start.
        let renaming = match self.store.pending_renames() {
            Ok(renames) => Some(renames.into_iter().flat_map(|(o, n)| [o, n]).collect()),
            Err(e) => {
                report.problems.push(e.to_string());
                None
            }
        };
        let buried = self.finish_buried_removes(renaming.as_ref(), &mut report);
        let records = self
            .store
            .list_volumes()
            .map_err(|e| VolumeError::store("reconcile", "volumes", e))?;
        for record in &records {
            if renaming.as_ref().is_some_and(|r| r.contains(&record.name)) {
                continue;
            }
            let _guard = self.locks.lock(&record.name);
            if let Err(e) = self.reconcile_row(record, &mut report) {
                report.problems.push(e.to_string());
            }
        }
        self.buried.lock().clone_from(&buried.kept);
        let mut untouched = buried.kept.clone();
        untouched.extend(buried.waiting.iter().cloned());
        untouched.extend(renaming.unwrap_or_default());
        for driver in self.drivers.all() {
            self.adopt_orphans(driver.as_ref(), &untouched, &mut report);
            driver.after_reconcile();
        }
        self.forget_buried(&buried.settled, &mut report);
        self.record_findings(&report);
        Ok(report)
    }

    /// Committed removes whose move to the trash a power cut may have
    /// undone: a folder back under the name of a removed volume that has
    /// no row now is that volume's, and goes (a new volume of the name has
    /// a row, and its create synced the move before its row). A name in an
    /// unfinished rename is left with its tombstone for the next start.
    fn finish_buried_removes(
        &self,
        renaming: Option<&HashSet<String>>,
        report: &mut ReconcileReport,
    ) -> Buried {
        let mut buried = Buried::default();
        let tombstones = match self.store.tombstones() {
            Ok(t) => t,
            Err(e) => {
                report.problems.push(e.to_string());
                return buried;
            }
        };
        for t in tombstones {
            let _guard = self.locks.lock(&t.name);
            // Unknown renames (the journal unreadable): nothing is touched.
            if renaming.is_none_or(|r| r.contains(&t.name)) {
                buried.waiting.insert(t.name);
                continue;
            }
            match self.finish_buried(&t, report) {
                true => buried.settled.push(t.uid),
                false => {
                    buried.kept.insert(t.name);
                }
            }
        }
        buried
    }

    /// One tombstone: whether nothing of the removed volume is left under
    /// its name. Storage the trash cannot take is removed in place.
    fn finish_buried(&self, t: &Tombstone, report: &mut ReconcileReport) -> bool {
        match self.store.get_volume(&t.name) {
            // A newer volume of the same driver: its create synced the move
            // first, so the storage under the name is its own. (One of
            // another driver does not make the removed storage its.)
            Ok(Some(row)) if row.driver == t.driver => return true,
            Ok(_) => {}
            Err(e) => {
                report.problems.push(e.to_string());
                return false;
            }
        }
        let Some(driver) = self.drivers.builtin(&t.driver) else {
            return true;
        };
        let retiring = Retiring {
            name: &t.name,
            uid: &t.uid,
        };
        let retired = driver.trash().and_then(|tr| tr.retire(&[retiring]).pop());
        let removed = match retired {
            Some(Ok(false)) => return true,
            Some(Ok(true)) => {
                self.trash.destroy_later(driver.clone(), t.uid.clone());
                Ok(())
            }
            None | Some(Err(_)) => driver.remove(&t.name).map(drop),
        };
        match removed {
            Ok(()) => {
                report.finished_removals.push(t.name.clone());
                true
            }
            Err(e) => {
                report.problems.push(format!(
                    "volume {} was removed, but its storage is back under its name and could not be removed: {e}; left for the next start",
                    t.name
                ));
                false
            }
        }
    }

    /// Drops the tombstones start-up settled, once every driver's moves
    /// are durable; on error they stay for the next start.
    fn forget_buried(&self, uids: &[String], report: &mut ReconcileReport) {
        for driver in self.drivers.all() {
            if let Some(Err(e)) = driver.trash().map(|t| t.settle()) {
                return report.problems.push(format!("{}: {e}", driver.name()));
            }
        }
        if let Err(e) = self.store.forget_tombstones(uids) {
            report.problems.push(e.to_string());
        }
    }

    fn reconcile_row(
        &self,
        record: &VolumeRecord,
        report: &mut ReconcileReport,
    ) -> Result<(), VolumeError> {
        // A plugin keeps its own storage, and may not be up yet: its rows
        // are left as they are (never dropped), and it is asked at use.
        if self.drivers.builtin(&record.driver).is_none() {
            return Ok(());
        }
        match record.state {
            VolumeState::Creating => {
                self.settle_unfinished(record)?;
                report.rolled_back.push(record.name.clone());
            }
            VolumeState::Removing => {
                self.settle_unfinished(record)?;
                report.finished_removals.push(record.name.clone());
            }
            VolumeState::Ready => self.check_ready(record, report)?,
        }
        Ok(())
    }

    /// Undoes a create or finishes a remove that a crash interrupted: both
    /// end with the storage and the row gone. Caller holds the name lock.
    pub(super) fn settle_unfinished(&self, record: &VolumeRecord) -> Result<(), VolumeError> {
        let name = record.name.as_str();
        let driver = self.driver_of("reconcile", record)?;
        driver
            .remove(name)
            .map_err(|e| VolumeError::driver("reconcile", name, e))?;
        self.store
            .purge_volume(name)
            .map_err(|e| VolumeError::store("reconcile", name, e))?;
        tracing::warn!(volume = %name, state = ?record.state, "settled an operation interrupted by a crash");
        Ok(())
    }

    /// A ready row: its storage must exist (recreate it empty, loudly, if
    /// not) and its persisted mount ids are replayed into the driver. An id
    /// that fails is reported in `report.problems` and the others are still
    /// replayed.
    fn check_ready(
        &self,
        record: &VolumeRecord,
        report: &mut ReconcileReport,
    ) -> Result<(), VolumeError> {
        let name = record.name.as_str();
        let driver = self.driver_of("reconcile", record)?;
        let driver_err = |e| VolumeError::driver("reconcile", name, e);
        if driver.path(name).map_err(driver_err)?.is_none() {
            driver.create(name, &record.options).map_err(driver_err)?;
            let used = (self.store.is_populated(name))
                .map_err(|e| VolumeError::store("reconcile", name, e))?;
            match used {
                true => report.recreated.push(name.to_string()),
                false => report.made.push(name.to_string()),
            }
        }
        let mounts = self
            .store
            .mounts(name)
            .map_err(|e| VolumeError::store("reconcile", name, e))?;
        for id in mounts {
            if id.starts_with(super::OPERATION_MOUNT_PREFIX) {
                // An operation (export, import, copy-up) that died with the
                // daemon.
                if let Err(e) = self.settle_operation_mount(record, driver.as_ref(), &id) {
                    report.problems.push(format!("{e} (mount id {id})"));
                }
                continue;
            }
            match driver.mount(name, &record.options, &id) {
                Ok(_) => report.remounted += 1,
                Err(e) => report
                    .problems
                    .push(format!("{} (mount id {id})", driver_err(e))),
            }
        }
        Ok(())
    }

    /// Storage the driver has but the store does not: adopt it when its
    /// name is valid (a folder made by another tool or restored by hand),
    /// otherwise report it and leave it alone.
    fn adopt_orphans(
        &self,
        driver: &dyn VolumeDriver,
        untouched: &HashSet<String>,
        report: &mut ReconcileReport,
    ) {
        let found = match driver.list() {
            Ok(found) => found,
            Err(e) => return report.problems.push(format!("{}: {e}", driver.name())),
        };
        for volume in found {
            if untouched.contains(&volume.name) {
                continue; // a removed volume's storage, or a rename's: never adopted
            }
            let _guard = self.locks.lock(&volume.name);
            match self.record("reconcile", &volume.name) {
                Ok(None) => {}
                Ok(Some(_)) => continue,
                Err(e) => {
                    report.problems.push(e.to_string());
                    continue;
                }
            }
            if names::validate_name(&volume.name).is_err() || !volume.mountpoint.is_dir() {
                report.problems.push(format!(
                    "folder {} is not a volume berth knows; left in place",
                    volume.mountpoint.display()
                ));
                continue;
            }
            match self.adopt(driver, &volume.name, &volume.mountpoint) {
                Ok(()) => report.adopted.push(volume.name),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
    }

    fn adopt(
        &self,
        driver: &dyn VolumeDriver,
        name: &str,
        mountpoint: &std::path::Path,
    ) -> Result<(), VolumeError> {
        let created_at = std::fs::metadata(mountpoint)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let record = VolumeRecord {
            name: name.to_string(),
            uid: VolumeRecord::new_uid(),
            driver: driver.name().to_string(),
            created_at,
            state: VolumeState::Ready,
            labels: Default::default(),
            options: Default::default(),
        };
        self.store
            .insert_volume(&record)
            .map_err(|e| VolumeError::store("reconcile", name, e))
    }

    /// Storage in a driver's trash: its row still there means the remove
    /// never committed (put it back); no row means it did (destroy it).
    fn settle_trash(&self, report: &mut ReconcileReport) {
        let by_uid: std::collections::HashMap<String, VolumeRecord> =
            match self.store.list_volumes() {
                Ok(rows) => rows.into_iter().map(|r| (r.uid.clone(), r)).collect(),
                Err(e) => return report.problems.push(e.to_string()),
            };
        for driver in self.drivers.all() {
            let Some(trash) = driver.trash() else {
                continue;
            };
            let uids = match trash.retired() {
                Ok(uids) => uids,
                Err(e) => return report.problems.push(format!("{}: {e}", driver.name())),
            };
            for uid in uids {
                match by_uid.get(&uid) {
                    Some(record) => match self.restore_retired(driver.as_ref(), record, &uid) {
                        Ok(()) => report.removes_undone.push(record.name.clone()),
                        Err(e) => report.problems.push(e.to_string()),
                    },
                    None => {
                        self.trash.destroy_later(driver.clone(), uid);
                        report.trash_destroyed += 1;
                    }
                }
            }
        }
    }

    /// Puts a volume's retired storage back under its name, unless the
    /// name has storage already (then both are left for a human).
    fn restore_retired(
        &self,
        driver: &dyn VolumeDriver,
        record: &VolumeRecord,
        uid: &str,
    ) -> Result<(), VolumeError> {
        let name = record.name.as_str();
        let _guard = self.locks.lock(name);
        let driver_err = |e| VolumeError::driver("reconcile", name, e);
        if driver.path(name).map_err(driver_err)?.is_some() {
            let both = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
            let context = format!("an interrupted remove left trash entry {uid}, but the volume has storage too; both left in place");
            return Err(driver_err(crate::driver::DriverError::Io {
                context,
                source: both,
            }));
        }
        let trash = driver.trash().expect("the caller found the trash");
        trash.restore(uid, name).map_err(driver_err)?;
        self.store.show_volume(name);
        Ok(())
    }

    fn record_findings(&self, report: &ReconcileReport) {
        let mut warnings = self.warnings.lock();
        let groups = [
            (&report.rolled_back, "an interrupted create was rolled back"),
            (
                &report.finished_removals,
                "an interrupted remove was completed",
            ),
            (
                &report.recreated,
                "its data folder was missing at start-up and was recreated empty",
            ),
            (
                &report.adopted,
                "its folder had no metadata and was adopted as a volume",
            ),
            (&report.renamed, "an interrupted rename was completed"),
            (&report.rename_undone, "an interrupted rename was undone"),
            (
                &report.made,
                "its storage, cut by a crash before it was made, was made",
            ),
            (&report.removes_undone, "an interrupted remove was undone"),
        ];
        for (names, what) in groups {
            for name in names {
                tracing::warn!(volume = %name, "{what}");
            }
        }
        // Only losses and unknowns stay visible in `volume ls` warnings; a
        // rolled-back create or finished remove lost nothing acknowledged.
        for name in &report.recreated {
            warnings.push(format!("volume {name}: {}", groups[2].1));
        }
        for name in &report.adopted {
            warnings.push(format!("volume {name}: {}", groups[3].1));
        }
        for problem in &report.problems {
            tracing::error!("reconcile: {problem}");
            warnings.push(problem.clone());
        }
    }
}
