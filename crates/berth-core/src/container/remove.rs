//! Remove and prune.

use std::sync::Arc;
use std::time::Duration;

use super::cgroup::ContainerCgroup;
use super::{ContainerError, ContainerRecord, ContainerService, Status};
use crate::volume::Filters;

/// What `container prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub space_reclaimed: u64,
}

impl ContainerService {
    /// Removes a container. A running one is refused unless `force` (then
    /// killed first). `remove_volumes` also removes the anonymous volumes
    /// it created, unless another container holds them.
    pub fn remove(
        self: &Arc<Self>,
        name_or_id: &str,
        force: bool,
        remove_volumes: bool,
    ) -> Result<(), ContainerError> {
        let record = self.resolve(name_or_id)?;
        if record.state.status == Status::Running {
            if !force {
                return Err(ContainerError::RemoveRunning(name_or_id.to_string()));
            }
            let exits = self.lifecycle_sender(&record.id).borrow().exits;
            match self.kill(&record.id, Some("SIGKILL")) {
                // It exited by itself meanwhile: nothing to kill.
                Err(e) if e.is_not_running() => {}
                other => other?,
            }
            if !self.wait_exit_after(&record.id, exits, Some(Duration::from_secs(30))) {
                return Err(ContainerError::Start(format!(
                    "container {} did not die after SIGKILL",
                    record.id
                )));
            }
        }
        let _guard = self.locks.lock(&record.id);
        let record = self.resolve(&record.id)?;
        if matches!(record.state.status, Status::Running | Status::Starting) {
            return Err(ContainerError::RemoveRunning(name_or_id.to_string()));
        }
        // Nothing of the container may run on once its mounts are released.
        ContainerCgroup::of(&record.id)
            .kill_all(&record.id)
            .map_err(|e| ContainerError::Start(e.to_string()))?;
        // From here a crash is finished at start-up (`recover`).
        let mut removing = record.state.clone();
        removing.status = Status::Removing;
        self.store.set_container_state(&record.id, &removing)?;
        self.finish_remove(&record, remove_volumes)
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
        let _ = std::fs::remove_dir_all(self.settings.runtime_root.join(&record.id));
        self.release_mounts(record, remove_volumes);
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
