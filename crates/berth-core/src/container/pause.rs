//! `pause`, `unpause` and `resize`: the container's cgroup frozen and thawed (v1
//! `freezer.state`, v2 `cgroup.freeze`), as runc does. The flag is kept
//! in the container's state (a frozen cgroup outlives a daemon restart);
//! an exit clears it. Errors in moby's words (`daemon/pause.go`,
//! `unpause.go`).

use super::cgroup::ContainerCgroup;
use super::{ContainerError, ContainerService, Status};

impl ContainerService {
    /// Freezes every process of a running container.
    pub fn pause(&self, name_or_id: &str) -> Result<(), ContainerError> {
        let id = self.resolve(name_or_id)?.id;
        let _guard = self.locks.lock(&id);
        let mut record = self.resolve(&id)?;
        if record.state.status != Status::Running {
            return Err(ContainerError::NotRunningConflict(record.id));
        }
        if record.state.paused {
            return Err(ContainerError::AlreadyPaused(record.id));
        }
        ContainerCgroup::of(&id)
            .freeze(true)
            .map_err(|e| ContainerError::Start(format!("cannot pause container {id}: {e}")))?;
        record.state.paused = true;
        self.store.set_container_state(&id, &record.state)?;
        self.publish("pause", &record, &[]);
        Ok(())
    }

    /// Thaws a paused container.
    pub fn unpause(&self, name_or_id: &str) -> Result<(), ContainerError> {
        let id = self.resolve(name_or_id)?.id;
        let _guard = self.locks.lock(&id);
        let record = self.resolve(&id)?;
        if record.state.status != Status::Running || !record.state.paused {
            return Err(ContainerError::NotPaused(record.id));
        }
        self.thaw(&record)?;
        self.publish("unpause", &record, &[]);
        Ok(())
    }

    /// Thaws and records it (also after a kill of a paused container, so
    /// the signal is delivered, as moby does).
    pub(super) fn thaw(&self, record: &super::ContainerRecord) -> Result<(), ContainerError> {
        let id = &record.id;
        ContainerCgroup::of(id)
            .freeze(false)
            .map_err(|e| ContainerError::Start(format!("Cannot unpause container {id}: {e}")))?;
        let mut state = record.state.clone();
        state.paused = false;
        self.store.set_container_state(id, &state)?;
        Ok(())
    }

    /// `POST /containers/{id}/resize`: the terminal of a running TTY
    /// container (a no-op without one, as the CLI only asks with `-t`).
    pub fn resize(
        &self,
        name_or_id: &str,
        size: crate::sys::terminal::WindowSize,
    ) -> Result<(), ContainerError> {
        let record = self.resolve(name_or_id)?;
        if record.state.status != Status::Running {
            return Err(ContainerError::NotRunningConflict(record.id));
        }
        if !record.config.tty {
            return Ok(());
        }
        let dir = self.paths(&record.id).dir().to_path_buf();
        super::shim::resize_terminal(&dir, size).map_err(|e| {
            ContainerError::Start(format!("cannot resize container {}: {e}", record.id))
        })
    }

    /// Whether container `id` is paused (as recorded).
    pub fn is_paused(&self, id: &str) -> bool {
        self.resolve(id).is_ok_and(|r| r.state.paused)
    }
}
