//! Per-name locks: operations on one object (a volume, a container) are
//! serialised, operations on different objects never wait for each other,
//! and no lock spans a whole service (a slow driver call on one volume does
//! not stall `volume ls`).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RawMutex};

use crate::sys::ShrinkWhenSparse;

type Entry = Arc<Mutex<()>>;

/// A table of locks keyed by volume name; entries live only while held.
#[derive(Debug, Default)]
pub struct NameLocks {
    table: Mutex<HashMap<String, Entry>>,
}

/// Holds one name's lock until dropped.
pub struct NameGuard<'a> {
    locks: &'a NameLocks,
    name: String,
    guard: Option<parking_lot::lock_api::ArcMutexGuard<RawMutex, ()>>,
}

impl NameLocks {
    /// Blocks until `name` is free, then holds it.
    pub fn lock(&self, name: &str) -> NameGuard<'_> {
        let entry = self
            .table
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone();
        NameGuard {
            locks: self,
            name: name.to_string(),
            guard: Some(entry.lock_arc()),
        }
    }
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut table = self.locks.table.lock();
        // Only the table still points at the entry: nobody waits, drop it.
        if table
            .get(&self.name)
            .is_some_and(|e| Arc::strong_count(e) == 1)
        {
            table.remove(&self.name);
            table.shrink_when_sparse();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn same_name_is_exclusive_and_table_empties() {
        let locks = Arc::new(NameLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (locks, inside) = (locks.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _g = locks.lock("v");
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(locks.table.lock().is_empty());
    }

    #[test]
    fn different_names_do_not_block() {
        let locks = NameLocks::default();
        let _a = locks.lock("a");
        let _b = locks.lock("b");
    }
}
