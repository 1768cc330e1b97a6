//! The volume rows held in memory, in step with the database: inspect and
//! list read them without a query.
//!
//! Keeping them in step is the store's job: every store method that writes
//! the `volumes` table or a volume's labels or options updates the index
//! after its transaction has committed. A failed transaction leaves the
//! index as it was. Writes to one name are ordered by the volume service's
//! per-name lock, so their updates land in commit order.
//!
//! A row can be *hidden* while an operation holding its name's lock has
//! its storage out of place (a create between its commit and its folders,
//! a remove between moving its folder away and its commit): readers do not
//! see it, the operation itself does.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::VolumeRecord;

#[derive(Debug)]
struct Entry {
    record: Arc<VolumeRecord>,
    hidden: bool,
}

/// Volume records by name, ordered (list answers by name).
#[derive(Debug, Default)]
pub(super) struct VolumeIndex {
    by_name: RwLock<BTreeMap<String, Entry>>,
}

impl VolumeIndex {
    /// An index holding `records`, none hidden (loaded at open).
    pub(super) fn from_records(records: Vec<VolumeRecord>) -> Self {
        let by_name = (records.into_iter())
            .map(|r| {
                (
                    r.name.clone(),
                    Entry {
                        record: Arc::new(r),
                        hidden: false,
                    },
                )
            })
            .collect();
        VolumeIndex {
            by_name: RwLock::new(by_name),
        }
    }

    /// `name`'s record, hidden or not.
    pub(super) fn get(&self, name: &str) -> Option<Arc<VolumeRecord>> {
        self.by_name.read().get(name).map(|e| e.record.clone())
    }

    /// `name`'s record unless it is hidden.
    pub(super) fn get_visible(&self, name: &str) -> Option<Arc<VolumeRecord>> {
        let by_name = self.by_name.read();
        by_name
            .get(name)
            .filter(|e| !e.hidden)
            .map(|e| e.record.clone())
    }

    /// Every record, hidden ones too, ordered by name.
    pub(super) fn all(&self) -> Vec<Arc<VolumeRecord>> {
        self.by_name
            .read()
            .values()
            .map(|e| e.record.clone())
            .collect()
    }

    /// Every record not hidden, ordered by name (shared, not copied).
    pub(super) fn visible(&self) -> Vec<Arc<VolumeRecord>> {
        let by_name = self.by_name.read();
        by_name
            .values()
            .filter(|e| !e.hidden)
            .map(|e| e.record.clone())
            .collect()
    }

    pub(super) fn put(&self, record: VolumeRecord, hidden: bool) {
        let name = record.name.clone();
        let entry = Entry {
            record: Arc::new(record),
            hidden,
        };
        self.by_name.write().insert(name, entry);
    }

    /// Replaces `name`'s record with what `change` makes of a copy of it.
    pub(super) fn update(&self, name: &str, change: impl FnOnce(&mut VolumeRecord)) {
        if let Some(entry) = self.by_name.write().get_mut(name) {
            change(Arc::make_mut(&mut entry.record));
        }
    }

    /// Hides `name` from readers, or shows it again.
    pub(super) fn set_hidden(&self, name: &str, hidden: bool) {
        if let Some(entry) = self.by_name.write().get_mut(name) {
            entry.hidden = hidden;
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
}
