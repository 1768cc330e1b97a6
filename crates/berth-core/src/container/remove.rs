//! Remove, prune, and finding running containers again after a daemon
//! restart.

use std::sync::Arc;
use std::time::Duration;

use super::shim::{self, ExitStatus};
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
            self.kill(&record.id, Some("SIGKILL"))?;
            if !self.wait_exit_after(&record.id, exits, Some(Duration::from_secs(30))) {
                return Err(ContainerError::Start(format!(
                    "container {} did not die after SIGKILL",
                    record.id
                )));
            }
        }
        let _guard = self.locks.lock(&record.id);
        let record = self.resolve(&record.id)?;
        if record.state.status == Status::Running {
            return Err(ContainerError::RemoveRunning(name_or_id.to_string()));
        }
        self.paths(&record.id).remove_all()?;
        let _ = std::fs::remove_dir_all(self.settings.runtime_root.join(&record.id));
        self.release_mounts(&record, remove_volumes);
        self.store.delete_container(&record.id)?;
        if let Some(tx) = self.lifecycles.lock().remove(&record.id) {
            tx.send_modify(|l| l.removed = true);
        }
        tracing::info!(container = %record.id, "container removed");
        self.publish("destroy", &record, &[]);
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

    /// After a daemon restart: containers whose shim still runs are watched
    /// again (they kept running: live restore); those whose shim ended
    /// while the daemon was away get their recorded exit status.
    pub fn restore(self: &Arc<Self>) -> Result<usize, ContainerError> {
        let mut restored = 0;
        for record in self.store.list_containers()? {
            let paths = self.paths(&record.id);
            if record.state.status != Status::Running {
                let _ = paths.unmount_rootfs();
                continue;
            }
            if shim::is_shim_of(record.state.shim_pid, &record.id) {
                self.lifecycle_sender(&record.id)
                    .send_modify(|l| l.running = true);
                for m in record.mounts.iter().filter(|m| m.kind == "volume") {
                    let _ = self.volumes.mount(&m.name, &record.id);
                }
                self.watch_shim(record.id.clone(), record.state.shim_pid);
                restored += 1;
            } else {
                if ExitStatus::read(&paths.exit_file()).is_none() {
                    tracing::warn!(container = %record.id, "shim gone without an exit status");
                }
                self.handle_exit(&record.id);
            }
        }
        Ok(restored)
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
