//! The reference count behind `mount(id)`/`unmount(id)`: which ids hold
//! each volume mounted. Drivers do the real mount at the first id and undo
//! it at the last; this table only answers "first?" and "last?".

use std::collections::{HashMap, HashSet};

/// Mount ids per volume name.
#[derive(Debug, Default)]
pub struct MountIds(parking_lot::Mutex<HashMap<String, HashSet<String>>>);

impl MountIds {
    /// Whether no id holds `name`.
    pub fn is_unheld(&self, name: &str) -> bool {
        self.0.lock().get(name).is_none_or(|ids| ids.is_empty())
    }

    /// Records that `id` holds `name` (idempotent).
    pub fn add(&self, name: &str, id: &str) {
        self.0
            .lock()
            .entry(name.to_string())
            .or_default()
            .insert(id.to_string());
    }

    /// `None` if `id` does not hold `name`; otherwise whether it is the
    /// last id that does.
    pub fn is_last(&self, name: &str, id: &str) -> Option<bool> {
        match self.0.lock().get(name) {
            Some(ids) if ids.contains(id) => Some(ids.len() == 1),
            _ => None,
        }
    }

    /// Drops `id`'s hold on `name`.
    pub fn remove(&self, name: &str, id: &str) {
        let mut table = self.0.lock();
        if let Some(ids) = table.get_mut(name) {
            ids.remove(id);
            if ids.is_empty() {
                table.remove(name);
            }
        }
    }

    /// The driver's `unmount(id)`: `Ok(false)` if `id` does not hold
    /// `name`; otherwise runs `undo_mount` when `id` is the last holder, and
    /// drops the hold only when that worked (a failed unmount keeps the id,
    /// so it can be retried). Returns `Ok(true)` when the hold was dropped.
    pub fn release<E>(
        &self,
        name: &str,
        id: &str,
        undo_mount: impl FnOnce() -> Result<(), E>,
    ) -> Result<bool, E> {
        let Some(last) = self.is_last(name, id) else {
            return Ok(false);
        };
        if last {
            undo_mount()?;
        }
        self.remove(name, id);
        Ok(true)
    }

    /// Forgets every hold on `name` (the volume is being removed).
    pub fn forget(&self, name: &str) {
        let mut ids = self.0.lock();
        ids.remove(name);
        crate::sys::ShrinkWhenSparse::shrink_when_sparse(&mut *ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last() {
        let ids = MountIds::default();
        assert!(ids.is_unheld("v"));
        ids.add("v", "a");
        ids.add("v", "b");
        assert_eq!(ids.is_last("v", "a"), Some(false));
        assert_eq!(ids.is_last("v", "zz"), None);
        ids.remove("v", "a");
        assert_eq!(ids.is_last("v", "b"), Some(true));
        ids.remove("v", "b");
        assert!(ids.is_unheld("v"));
    }

    #[test]
    fn release_undoes_the_mount_at_the_last_holder_only() {
        let ids = MountIds::default();
        ids.add("v", "a");
        ids.add("v", "b");
        let mut undone = 0;
        let mut undo = || {
            undone += 1;
            Ok::<_, ()>(())
        };
        assert_eq!(ids.release("v", "zz", &mut undo), Ok(false));
        assert_eq!(ids.release("v", "a", &mut undo), Ok(true));
        assert_eq!(ids.release("v", "b", || Err("busy")), Err("busy"));
        assert_eq!(
            ids.is_last("v", "b"),
            Some(true),
            "a failed unmount keeps the hold"
        );
        assert_eq!(ids.release("v", "b", &mut undo), Ok(true));
        assert_eq!(undone, 1);
        assert!(ids.is_unheld("v"));
    }
}
