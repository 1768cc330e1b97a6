//! Remove, prune, and finding running containers again after a daemon
//! restart.

use std::sync::Arc;
use std::time::Duration;

use super::shim::{self, ExitStatus};
use super::{ContainerError, ContainerService, Status};

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
    pub fn prune(self: &Arc<Self>) -> Result<PruneReport, ContainerError> {
        let mut report = PruneReport::default();
        for record in self.store.list_containers()? {
            if matches!(
                record.state.status,
                Status::Created | Status::Exited | Status::Dead
            ) {
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
