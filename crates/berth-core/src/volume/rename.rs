//! Volume verbs Docker lacks that change a volume's name or metadata:
//! rename (journalled: a crash part way is finished or undone at start-up)
//! and label updates.

use std::collections::BTreeMap;

use super::{names, ReconcileReport, Volume, VolumeError, VolumeService};
use crate::driver::VolumeDriver;

impl VolumeService {
    /// Renames volume `old` to `new`, keeping its data, driver, options,
    /// labels and creation time. Refused while any container refers to the
    /// volume (a stopped one's configuration names it) or any mount is
    /// active, and when `new` is taken.
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
        if self.record("rename", new)?.is_some()
            || self.store.is_rename_target(new).map_err(store_err)?
        {
            return Err(taken());
        }
        self.refuse_if_held(old)?;
        let driver = self.driver_of("rename", &record)?;
        self.store.begin_rename(old, new).map_err(store_err)?;
        if let Err(e) = driver.rename(old, new) {
            let _ = driver.rename(new, old); // put back what moved
            let _ = self.store.abort_rename(old);
            return Err(VolumeError::driver("rename", old, e));
        }
        // If this fails the journal stays, and start-up finishes the rename.
        self.store.finish_rename(old, new).map_err(store_err)?;
        self.publish(
            "rename",
            new,
            &[("oldName", old), ("driver", &record.driver)],
        );
        drop((_g1, _g2));
        self.get(new)
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

    /// Renames a crash cut short: finished when the storage already has the
    /// new name (the driver moves what is left), undone otherwise.
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
    fn settle_rename(&self, old: &str, new: &str) -> Result<bool, VolumeError> {
        let record = self
            .record("rename", old)?
            .ok_or_else(|| VolumeError::not_found("rename", old))?;
        let driver = self.driver_of("rename", &record)?;
        let driver_err = |e| VolumeError::driver("rename", old, e);
        let store_err = |e| VolumeError::store("rename", old, e);
        if storage_exists(driver.as_ref(), new)? {
            driver.rename(old, new).map_err(driver_err)?;
            self.store.finish_rename(old, new).map_err(store_err)?;
            return Ok(true);
        }
        driver.rename(new, old).map_err(driver_err)?;
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
