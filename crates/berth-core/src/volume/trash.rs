//! Destroying removed volumes' storage off the request path. A remove
//! moves the storage into its driver's trash, commits the row's delete and
//! hands the uid here; one thread destroys what it is handed, in order.
//! What it had not finished when the daemon stopped is found in the trash
//! at the next start and handed here again (see `reconcile`).

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use crate::driver::VolumeDriver;

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
    pub(super) fn start() -> Self {
        let (queue, work) = mpsc::channel::<Retired>();
        let spawned = std::thread::Builder::new()
            .name("volume-trash".into())
            .spawn(move || {
                for retired in work {
                    destroy(&retired);
                }
            });
        if let Err(e) = spawned {
            // Nothing is lost: the trash is emptied at the next start.
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

fn destroy(retired: &Retired) {
    let Some(trash) = retired.driver.trash() else {
        return;
    };
    if let Err(e) = trash.destroy(&retired.uid) {
        // Left in the trash: the next start tries again.
        tracing::warn!(uid = %retired.uid, error = %e, "could not destroy a removed volume's storage");
    }
}
