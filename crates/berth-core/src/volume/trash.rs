//! Destroying removed volumes' storage off the request path, and dropping
//! their tombstones once the moves are durable.
//!
//! A remove moves the storage into its driver's trash, commits the row's
//! delete with a tombstone, and hands the uid here; one thread destroys what
//! it is handed, in order. When it has been idle for [`SETTLE_AFTER`] (or
//! has [`SETTLE_EVERY`] destroyed), it has each driver make its moves
//! durable (`Trash::settle`: one sync for all) and then drops their
//! tombstones in one commit, so neither cost falls on a remove. What it had
//! not finished when the daemon stopped is found at the next start, in the
//! trash and in the tombstones (see `reconcile`).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use crate::driver::VolumeDriver;
use crate::store::Store;

/// Idle time after which destroyed volumes' tombstones are dropped.
const SETTLE_AFTER: Duration = Duration::from_secs(1);

/// Destroyed volumes after which their tombstones are dropped even if the
/// thread is never idle (a long stream of removes).
const SETTLE_EVERY: usize = 4096;

/// Storage whose remove has committed.
struct Retired {
    driver: Arc<dyn VolumeDriver>,
    uid: String,
}

/// The queue of retired storage and the thread that destroys it.
#[derive(Debug)]
pub(super) struct TrashWorker {
    queue: Sender<Retired>,
}

impl TrashWorker {
    /// Starts the thread. It ends when the worker is dropped and the queue
    /// is empty.
    pub(super) fn start(store: Arc<Store>) -> Self {
        let (queue, work) = mpsc::channel::<Retired>();
        let spawned = std::thread::Builder::new()
            .name("volume-trash".into())
            .spawn(move || run(&work, &store));
        if let Err(e) = spawned {
            // Nothing is lost: the trash is emptied and the tombstones
            // settled at the next start.
            tracing::error!(error = %e, "could not start the volume trash thread");
        }
        TrashWorker { queue }
    }

    /// Destroys `uid`'s storage in `driver`'s trash, later. Call only once
    /// the volume's row is deleted for good.
    pub(super) fn destroy_later(&self, driver: Arc<dyn VolumeDriver>, uid: String) {
        if let Err(mpsc::SendError(retired)) = self.queue.send(Retired { driver, uid }) {
            destroy(&retired);
        }
    }
}

/// The thread: destroy each retired volume, settle when idle.
fn run(work: &mpsc::Receiver<Retired>, store: &Store) {
    let mut done: Vec<Retired> = Vec::new();
    loop {
        let next = match done.is_empty() {
            true => work.recv().map_err(|_| RecvTimeoutError::Disconnected),
            false => work.recv_timeout(SETTLE_AFTER),
        };
        match next {
            Ok(retired) => {
                destroy(&retired);
                done.push(retired);
                if done.len() >= SETTLE_EVERY {
                    settle(store, &mut done);
                }
            }
            Err(RecvTimeoutError::Timeout) => settle(store, &mut done),
            Err(RecvTimeoutError::Disconnected) => return settle(store, &mut done),
        }
    }
}

fn destroy(retired: &Retired) {
    let Some(trash) = retired.driver.trash() else {
        return;
    };
    if let Err(e) = trash.destroy(&retired.uid) {
        // Left in the trash: the next start tries again.
        tracing::warn!(uid = %retired.uid, error = %e, "could not destroy a removed volume's storage");
    }
}

/// Makes the moves of `done` durable, then drops their tombstones. On any
/// error the tombstones stay, and start-up settles them.
fn settle(store: &Store, done: &mut Vec<Retired>) {
    let mut drivers: Vec<&Arc<dyn VolumeDriver>> = Vec::new();
    for retired in done.iter() {
        if !drivers.iter().any(|d| d.name() == retired.driver.name()) {
            drivers.push(&retired.driver);
        }
    }
    let synced = (drivers.iter()).try_for_each(|d| d.trash().map_or(Ok(()), |t| t.settle()));
    if let Err(e) = synced {
        tracing::warn!(error = %e, "could not sync removed volumes' moves; their tombstones stay until the next start");
        done.clear();
        return;
    }
    let uids: Vec<String> = done.drain(..).map(|r| r.uid).collect();
    if let Err(e) = store.forget_tombstones(&uids) {
        tracing::warn!(error = %e, "could not drop removed volumes' tombstones; the next start does");
    }
}
