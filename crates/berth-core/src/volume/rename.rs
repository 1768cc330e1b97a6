//! Volume verbs Docker lacks that change a volume's name or metadata:
//! rename (journalled: a crash part way is finished or undone at start-up)
//! and label updates.

use std::collections::BTreeMap;

use super::{names, ReconcileReport, Volume, VolumeError, VolumeService};
use crate::driver::VolumeDriver;

impl VolumeService {
    /// Renames volume `old` to `new`, keeping its data, driver, options,
    /// labels (except the anonymous label: the new name is the user's) and
    /// creation time. Refused while any container refers to the volume (a
    /// stopped one's configuration names it) or any mount is active, and
    /// when `new` is taken (a volume, storage the driver has under that
    /// name, or the target of an unfinished rename).
    pub fn rename(&self, old: &str, new: &str) -> Result<Volume, VolumeError> {
        names::validate_name(new)?;
        let taken = || VolumeError::NameTaken {
            op: "rename",
            name: new.to_string(),
        };
        if old == new {
            return Err(taken()); // before locking: name locks are not re-entrant
        }
        let (first, second) = if old < new { (old, new) } else { (new, old) };
        let _g1 = self.locks.lock(first);
        let _g2 = self.locks.lock(second);
        let record = self.ready("rename", old)?;
        let store_err = |e| VolumeError::store("rename", old, e);
        if self.record("rename", new)?.is_some() {
            return Err(taken());
        }
        self.refuse_if_renaming("rename", new)?;
        self.refuse_if_held(old)?;
        let driver = self.driver_of("rename", &record)?;
        self.refuse_if_storage_exists("rename", driver.as_ref(), new)?;
        self.settle_name("rename", new)?;
        self.store.begin_rename(old, new).map_err(store_err)?;
        if let Err(e) = driver.rename(old, new) {
            // Put back what moved. Only then is the journal ended: if the
            // undo fails too, start-up settles the rename from the journal
            // (and until then the names are refused, see `ready`).
            match driver.rename(new, old) {
                Ok(()) => {
                    if let Err(abort) = self.store.abort_rename(old) {
                        tracing::error!(volume = %old, target = %new, error = %abort,
                            "rename failed and was undone, but its journal row stays; start-up ends it");
                    }
                }
                Err(undo) => {
                    tracing::error!(volume = %old, target = %new, error = %undo,
                        "rename failed and could not be undone; start-up settles it");
                }
            }
            return Err(VolumeError::driver("rename", old, e));
        }
        if let Err(e) = self
            .store
            .finish_rename(old, new, &[names::ANONYMOUS_LABEL])
        {
            self.undo_unfinished_rename(driver.as_ref(), old, new);
            return Err(store_err(e));
        }
        self.sizes.forget(old);
        self.sizes.forget(new);
        tracing::info!(volume = %new, old = %old, "volume renamed");
        self.publish(
            "rename",
            new,
            &[("oldName", old), ("driver", &record.driver)],
        );
        drop((_g1, _g2));
        self.get(new)
    }

    /// After the storage moved but the row could not (the store failed):
    /// moves the storage back and ends the journal if the row is still
    /// `old`'s. Whatever cannot be done leaves the journal, which start-up
    /// settles; until then both names are refused.
    fn undo_unfinished_rename(&self, driver: &dyn VolumeDriver, old: &str, new: &str) {
        let journalled = matches!(
            self.store.rename_involving(old),
            Ok(Some((ref v, ref t))) if v == old && t == new
        );
        let row_is_old = matches!(self.store.get_volume(old), Ok(Some(_)));
        if !(journalled && row_is_old) {
            tracing::error!(volume = %old, target = %new,
                "rename could not be recorded and the store cannot say how far it got; start-up settles it");
            return;
        }
        let undone = driver
            .rename(new, old)
            .map_err(|e| e.to_string())
            .and_then(|()| self.store.abort_rename(old).map_err(|e| e.to_string()));
        match undone {
            Ok(_) => tracing::warn!(volume = %old, target = %new,
                "rename could not be recorded; the storage was moved back"),
            Err(e) => tracing::error!(volume = %old, target = %new, error = %e,
                "rename could not be recorded nor undone; both names are refused until start-up settles it"),
        }
    }

    /// Refuses `name` while it takes part in a rename that could neither
    /// finish nor be undone (its journal row stays until start-up). The
    /// caller holds `name`'s lock, so a rename still running is not seen.
    pub(super) fn refuse_if_renaming(
        &self,
        op: &'static str,
        name: &str,
    ) -> Result<(), VolumeError> {
        match self.store.rename_involving(name) {
            Ok(None) => Ok(()),
            Ok(Some((renamed, target))) => Err(VolumeError::RenameUnfinished {
                op,
                name: name.to_string(),
                renamed,
                target,
            }),
            Err(e) => Err(VolumeError::store(op, name, e)),
        }
    }

    /// Refuses a new name (rename or clone target) under which the driver
    /// already has storage, or snapshots: nothing is ever put over them.
    pub(super) fn refuse_if_storage_exists(
        &self,
        op: &'static str,
        driver: &dyn VolumeDriver,
        name: &str,
    ) -> Result<(), VolumeError> {
        let driver_err = |e| VolumeError::driver(op, name, e);
        let has_storage = driver.path(name).map_err(driver_err)?.is_some();
        let has_snapshots = match driver.extended() {
            Some(ext) => !ext.snapshot_list(name).map_err(driver_err)?.is_empty(),
            None => false,
        };
        if has_storage || has_snapshots {
            return Err(VolumeError::StorageExists {
                op,
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Refuses while containers refer to `name` or mounts are active.
    fn refuse_if_held(&self, name: &str) -> Result<(), VolumeError> {
        let holders = self.holders(name)?; // references and mount ids
        if holders.is_empty() {
            return Ok(());
        }
        Err(VolumeError::InUse {
            op: "rename",
            name: name.to_string(),
            holders,
        })
    }

    /// Adds (or replaces) the labels in `add` and drops the keys in
    /// `remove` (a key it does not have is no error). Returns the volume.
    pub fn update_labels(
        &self,
        name: &str,
        add: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<Volume, VolumeError> {
        if let Some(key) = add.keys().chain(remove).find(|k| k.is_empty()) {
            return Err(VolumeError::InvalidLabel(format!(
                "invalid label key {key:?}"
            )));
        }
        if add.contains_key(names::ANONYMOUS_LABEL) {
            return Err(VolumeError::InvalidLabel(format!(
                "label {:?} is reserved: berth sets it on anonymous volumes only",
                names::ANONYMOUS_LABEL
            )));
        }
        {
            let _guard = self.locks.lock(name);
            let mut labels = self.ready("update", name)?.labels;
            labels.retain(|k, _| !remove.contains(k));
            labels.extend(add.iter().map(|(k, v)| (k.clone(), v.clone())));
            self.store
                .set_volume_labels(name, &labels)
                .map_err(|e| VolumeError::store("update", name, e))?;
        }
        self.publish("update", name, &[]);
        self.get(name)
    }

    /// Renames a crash (or a failed undo) cut short: finished when the
    /// storage has the new name and no longer the old one (the driver moves
    /// what is left), undone otherwise.
    pub(super) fn resume_renames(&self, report: &mut ReconcileReport) {
        let pending = match self.store.pending_renames() {
            Ok(pending) => pending,
            Err(e) => return report.problems.push(format!("rename journal: {e}")),
        };
        for (old, new) in pending {
            let _guard = self.locks.lock(&old);
            match self.settle_rename(&old, &new) {
                Ok(true) => report.renamed.push(format!("{old} -> {new}")),
                Ok(false) => report.rename_undone.push(old),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
    }

    /// Finishes (`Ok(true)`) or undoes (`Ok(false)`) one journalled rename.
    /// Finished only when the storage is under `new` and no longer under
    /// `old` (the driver's last step, the one that says which name the
    /// volume has, was done); undone otherwise. Storage under both names
    /// means `new`'s is not this volume's (it predates the rename): it is
    /// left alone, and `old` keeps its own.
    fn settle_rename(&self, old: &str, new: &str) -> Result<bool, VolumeError> {
        let record = self
            .record("rename", old)?
            .ok_or_else(|| VolumeError::not_found("rename", old))?;
        let driver = self.driver_of("rename", &record)?;
        let driver_err = |e| VolumeError::driver("rename", old, e);
        let store_err = |e| VolumeError::store("rename", old, e);
        let at_old = storage_exists(driver.as_ref(), old)?;
        let at_new = storage_exists(driver.as_ref(), new)?;
        if at_new && !at_old {
            driver.rename(old, new).map_err(driver_err)?;
            self.store
                .finish_rename(old, new, &[names::ANONYMOUS_LABEL])
                .map_err(store_err)?;
            return Ok(true);
        }
        if let Err(e) = driver.rename(new, old) {
            if !(at_old && at_new) {
                return Err(driver_err(e));
            }
            // `new`'s storage is not this volume's: what could not move
            // back stays under `new`, which start-up adopts or reports.
            tracing::error!(volume = %old, target = %new, error = %e,
                "undoing an interrupted rename: storage under both names; each kept where it is");
        }
        self.store.abort_rename(old).map_err(store_err)?;
        Ok(false)
    }
}

fn storage_exists(driver: &dyn VolumeDriver, name: &str) -> Result<bool, VolumeError> {
    driver
        .path(name)
        .map(|p| p.is_some())
        .map_err(|e| VolumeError::driver("rename", name, e))
}
