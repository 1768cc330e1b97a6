//! Stopping the containers that use a local volume for the time of its
//! backup (`--stop-containers`, or offen/docker-volume-backup's
//! `docker-volume-backup.stop-during-backup=true` label on a container),
//! and starting them again afterwards, whatever the backup's outcome.
//! A volume with a snapshot driver (thin) is never stopped for: it is
//! backed up from a frozen snapshot while its containers run.

use std::sync::Arc;

use super::{BackupError, ContainerControl, STOP_DURING_BACKUP_LABEL};
use crate::volume::{VolumeService, OPERATION_MOUNT_PREFIX};

/// Containers stopped for a backup; started again when dropped.
pub(super) struct Stopped {
    control: Option<Arc<dyn ContainerControl>>,
    /// (id, name), in the order they were stopped.
    pub stopped: Vec<(String, String)>,
}

impl Stopped {
    pub fn names(&self) -> Vec<String> {
        self.stopped.iter().map(|(_, n)| n.clone()).collect()
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let Some(control) = &self.control else {
            return;
        };
        for (id, name) in self.stopped.iter().rev() {
            if let Err(e) = control.start(id) {
                tracing::error!(container = %name, error = %e,
                    "starting a container again after a backup failed");
            }
        }
    }
}

/// Stops the running containers that use `volume` when the backup must
/// read it in place: all of them with `stop_all`, else those labelled
/// [`STOP_DURING_BACKUP_LABEL`]. Containers left running make the backup
/// refuse later (the volume is in use).
pub(super) fn stop_users(
    volumes: &VolumeService,
    control: Option<&Arc<dyn ContainerControl>>,
    volume: &str,
    stop_all: bool,
) -> Result<Stopped, BackupError> {
    let mut out = Stopped {
        control: control.cloned(),
        stopped: Vec::new(),
    };
    let Some(control) = control else {
        return Ok(out);
    };
    let users = volumes.mount_ids(volume)?;
    for id in users
        .iter()
        .filter(|id| !id.starts_with(OPERATION_MOUNT_PREFIX))
    {
        let Some(facts) = control.facts(id) else {
            continue;
        };
        let labelled = facts
            .labels
            .get(STOP_DURING_BACKUP_LABEL)
            .map(String::as_str)
            == Some("true");
        if !(stop_all || labelled) {
            continue;
        }
        control.stop(id).map_err(|why| BackupError::StopFailed {
            container: facts.name.clone(),
            why,
        })?;
        out.stopped.push((id.clone(), facts.name));
    }
    Ok(out)
}
