//! The volume rows held in memory, in step with the database: inspect and
//! list read them without a query, and a create or remove that commits
//! updates them after the commit.
//!
//! Keeping them in step is the store's job: every store method that writes
//! the `volumes` table or a volume's labels or options updates the index
//! once its transaction has committed (while the connection lock is still
//! held, so two writers never apply their updates out of commit order). A
//! failed transaction leaves the index as it was.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::VolumeRecord;

/// Volume records by name, ordered (list answers by name).
#[derive(Debug, Default)]
pub(super) struct VolumeIndex {
    by_name: RwLock<BTreeMap<String, Arc<VolumeRecord>>>,
}

impl VolumeIndex {
    /// An index holding `records` (loaded from the database at open).
    pub(super) fn from_records(records: Vec<VolumeRecord>) -> Self {
        let by_name = records
            .into_iter()
            .map(|r| (r.name.clone(), Arc::new(r)))
            .collect();
        VolumeIndex {
            by_name: RwLock::new(by_name),
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<Arc<VolumeRecord>> {
        self.by_name.read().get(name).cloned()
    }

    /// Every record, ordered by name (shared, not copied).
    pub(super) fn all(&self) -> Vec<Arc<VolumeRecord>> {
        self.by_name.read().values().cloned().collect()
    }

    /// The record whose uid is `uid` (start-up only: a scan).
    pub(super) fn by_uid(&self, uid: &str) -> Option<Arc<VolumeRecord>> {
        self.by_name.read().values().find(|r| r.uid == uid).cloned()
    }

    pub(super) fn put(&self, record: VolumeRecord) {
        self.by_name
            .write()
            .insert(record.name.clone(), Arc::new(record));
    }

    /// Replaces `name`'s record with what `change` makes of a copy of it.
    pub(super) fn update(&self, name: &str, change: impl FnOnce(&mut VolumeRecord)) {
        let mut by_name = self.by_name.write();
        if let Some(record) = by_name.get_mut(name) {
            change(Arc::make_mut(record));
        }
    }

    pub(super) fn remove(&self, name: &str) {
        self.by_name.write().remove(name);
    }

    pub(super) fn remove_all<'a>(&self, names: impl IntoIterator<Item = &'a String>) {
        let mut by_name = self.by_name.write();
        for name in names {
            by_name.remove(name);
        }
    }

    /// Number of volumes held.
    pub(super) fn len(&self) -> usize {
        self.by_name.read().len()
    }
}
