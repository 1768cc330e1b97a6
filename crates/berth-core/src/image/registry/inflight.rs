//! Layer downloads shared between concurrent pulls (as dockerd shares
//! them): the first pull of a layer downloads it, the others wait for it
//! and use what it stored; if it fails, the next of them downloads it.
//! Each waiting pull holds its own lease on the layer, so a failed first
//! pull never deletes a layer another one is about to record.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

/// The downloads in progress: diff ID → a receiver that ends with them.
pub type InflightTable = Arc<parking_lot::Mutex<HashMap<String, watch::Receiver<()>>>>;

/// Who downloads a layer.
pub enum Claim {
    /// This pull does; the guard ends the download's entry when dropped.
    Mine(InflightGuard),
    /// Another pull is; wait for the receiver to end.
    Theirs(watch::Receiver<()>),
}

/// The entry of a download in progress; dropping it (success, failure or
/// a cancelled pull) removes the entry first, then wakes the waiters.
pub struct InflightGuard {
    table: InflightTable,
    diff_id: String,
    _done: watch::Sender<()>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.table.lock().remove(&self.diff_id);
    }
}

/// Claims the download of `diff_id`.
pub fn claim(table: &InflightTable, diff_id: &str) -> Claim {
    let mut downloads = table.lock();
    if let Some(rx) = downloads.get(diff_id) {
        return Claim::Theirs(rx.clone());
    }
    let (tx, rx) = watch::channel(());
    downloads.insert(diff_id.to_string(), rx);
    Claim::Mine(InflightGuard {
        table: table.clone(),
        diff_id: diff_id.to_string(),
        _done: tx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_waits_for_the_first() {
        let table = InflightTable::default();
        let first = claim(&table, "sha256:a");
        let Claim::Theirs(mut rx) = claim(&table, "sha256:a") else {
            panic!("the second claim must wait");
        };
        assert!(matches!(claim(&table, "sha256:b"), Claim::Mine(_)));
        drop(first);
        assert!(
            rx.changed().await.is_err(),
            "the waiter wakes when the download ends"
        );
        assert!(matches!(claim(&table, "sha256:a"), Claim::Mine(_)));
    }
}
