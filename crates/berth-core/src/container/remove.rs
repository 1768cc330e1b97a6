//! Remove and prune.

use std::sync::Arc;
use std::time::Duration;

use super::cgroup::ContainerCgroup;
use super::{ContainerError, ContainerRecord, ContainerService, Status};
use crate::volume::Filters;

/// Kill-and-check rounds a forced remove makes before giving up (a start
/// already under way when the remove began may need one more).
const REMOVE_ATTEMPTS: usize = 4;

/// The removal-in-progress mark of one container, dropped when the
/// remove ends however it ends.
struct RemovalFlag<'a> {
    service: &'a ContainerService,
    id: String,
}

impl<'a> RemovalFlag<'a> {
    fn take(service: &'a ContainerService, id: &str) -> Result<Self, ContainerError> {
        if !service.removing.lock().insert(id.to_string()) {
            return Err(ContainerError::RemovalInProgress(id.to_string()));
        }
        Ok(RemovalFlag {
            service,
            id: id.to_string(),
        })
    }
}

impl Drop for RemovalFlag<'_> {
    fn drop(&mut self) {
        self.service.removing.lock().remove(&self.id);
    }
}

/// What `container prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub space_reclaimed: u64,
}

impl ContainerService {
    /// Removes a container. A running one is refused unless `force` (then
    /// killed first). `remove_volumes` also removes the anonymous volumes
    /// it created, unless another container holds them. While it works,
    /// the container is marked (Docker's removal in progress): starts are
    /// refused and a second remove is a 409, so a start racing a forced
    /// remove can never make it answer "container is running".
    pub fn remove(
        self: &Arc<Self>,
        name_or_id: &str,
        force: bool,
        remove_volumes: bool,
    ) -> Result<(), ContainerError> {
        let id = self.resolve(name_or_id)?.id;
        let _flag = RemovalFlag::take(self, &id)?;
        for _ in 0..REMOVE_ATTEMPTS {
            let record = match self.resolve(&id) {
                Ok(record) => record,
                // Killed by us, then auto-removed: it is gone, as asked.
                Err(ContainerError::NotFound(_)) if force => return Ok(()),
                Err(e) => return Err(e),
            };
            if record.state.paused && !force {
                return Err(ContainerError::RemovePaused(name_or_id.to_string()));
            }
            if record.state.restarting {
                if !force {
                    return Err(ContainerError::RemoveRestarting(name_or_id.to_string()));
                }
                self.cancel_restart(&record.id);
            }
            if matches!(record.state.status, Status::Running | Status::Starting) {
                if !force {
                    return Err(ContainerError::RemoveRunning(name_or_id.to_string()));
                }
                self.kill_for_removal(&record)?;
                continue;
            }
            let _guard = self.locks.lock(&id);
            let record = self.resolve(&id)?;
            // A start that was already under way when the flag was set.
            if matches!(record.state.status, Status::Running | Status::Starting) {
                continue;
            }
            return self.remove_stopped(&record, remove_volumes);
        }
        Err(ContainerError::RemoveRunning(name_or_id.to_string()))
    }

    /// SIGKILL and wait for the exit to be recorded.
    fn kill_for_removal(&self, record: &ContainerRecord) -> Result<(), ContainerError> {
        let watch = self.exit_watch(&record.id);
        match self.kill(&record.id, Some("SIGKILL")) {
            // Not running: it exited by itself meanwhile, or a start under
            // way has not finished. Waiting for an exit that a container
            // still starting will not make answered "did not die" after
            // 30 s; instead the caller reads its state again, after a
            // moment for the start to finish or the exit to land.
            Err(e) if e.is_not_running() => {
                self.wait_while_starting(&record.id);
                return Ok(());
            }
            other => other?,
        }
        if watch.wait(Some(Duration::from_secs(30))) {
            Ok(())
        } else {
            Err(ContainerError::Start(format!(
                "container {} did not die after SIGKILL",
                record.id
            )))
        }
    }

    /// Waits (at most 30 s) until container `id` is no longer starting.
    fn wait_while_starting(&self, id: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            match self.resolve(id) {
                Ok(r) if r.state.status == Status::Starting => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => return,
            }
        }
    }

    /// Removes a container that is not running (the caller holds its lock).
    fn remove_stopped(
        &self,
        record: &ContainerRecord,
        remove_volumes: bool,
    ) -> Result<(), ContainerError> {
        // Nothing of the container may run on once its mounts are released.
        ContainerCgroup::of(&record.id)
            .kill_all(&record.id)
            .map_err(|e| ContainerError::Start(e.to_string()))?;
        // From here a crash is finished at start-up (`recover`).
        let mut removing = record.state.clone();
        removing.status = Status::Removing;
        self.store.set_container_state(&record.id, &removing)?;
        self.finish_remove(record, remove_volumes)
    }

    /// Whether a remove is working on `id`.
    pub(super) fn removal_in_progress(&self, id: &str) -> bool {
        self.removing.lock().contains(id)
    }

    /// The rest of a removal, in an order a crash can resume from: the
    /// folder (mounts first), the runtime's state, the volume references
    /// (and anonymous volumes), then the row. Idempotent.
    pub(super) fn finish_remove(
        &self,
        record: &ContainerRecord,
        remove_volumes: bool,
    ) -> Result<(), ContainerError> {
        self.paths(&record.id).remove_all()?;
        self.forget_runtime_state(&record.id);
        self.forget_execs(&record.id);
        self.release_mounts(record, remove_volumes);
        self.detach_networks(&record.id);
        self.store.delete_container(&record.id)?;
        if let Some(tx) = self.lifecycles.lock().remove(&record.id) {
            tx.send_modify(|l| l.removed = true);
        }
        tracing::info!(container = %record.id, "container removed");
        self.publish("destroy", record, &[]);
        Ok(())
    }

    /// Removes every stopped container.
    pub fn prune(self: &Arc<Self>, filters: &Filters) -> Result<PruneReport, ContainerError> {
        let selected = prune_selector(filters)?;
        let mut report = PruneReport::default();
        for record in self.store.list_containers()? {
            let stopped = matches!(
                record.state.status,
                Status::Created | Status::Exited | Status::Dead
            );
            if stopped && selected(&record) {
                let upper = self.paths(&record.id).upper();
                let size = crate::sys::usage::dir_size(&upper).unwrap_or(0);
                match self.remove(&record.id, false, false) {
                    Ok(()) => {
                        report.deleted.push(record.id);
                        report.space_reclaimed += size;
                    }
                    Err(e) => {
                        tracing::warn!(container = %record.id, error = %e, "prune: not removed")
                    }
                }
            }
        }
        Ok(report)
    }
}

/// Which containers a prune's `until`, `label` and `label!` filters pass
/// (moby's `ContainersPrune`: created before `until`, labels as for
/// volumes).
fn prune_selector(
    filters: &Filters,
) -> Result<impl Fn(&ContainerRecord) -> bool + '_, ContainerError> {
    use crate::volume::filters as f;
    let invalid = |e: crate::volume::VolumeError| ContainerError::InvalidConfig(e.to_string());
    f::check_keys(filters, &["until", "label", "label!"]).map_err(invalid)?;
    let cutoff = f::until_cutoff(filters, chrono::Utc::now().timestamp()).map_err(invalid)?;
    Ok(move |record: &ContainerRecord| {
        let created =
            chrono::DateTime::parse_from_rfc3339(&record.created).map_or(0, |t| t.timestamp());
        let labels = record.config.labels.clone().unwrap_or_default();
        cutoff.is_none_or(|c| created < c)
            && f::labels_match(filters, "label", &labels)
            && !f::labels_excluded(filters, &labels)
    })
}
