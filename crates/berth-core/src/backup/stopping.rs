//! Stopping the containers that use a local volume for the time of its
//! backup (`--stop-containers`, or offen/docker-volume-backup's
//! `docker-volume-backup.stop-during-backup=true` label on a container),
//! and starting them again afterwards, whatever the backup's outcome.
//! A volume with a snapshot driver (thin) is never stopped for: it is
//! backed up from a frozen snapshot while its containers run.
//!
//! Each container is written down (a file named after it in
//! `<root>/backup/stopped/`, synced) before it is stopped and crossed off
//! once it runs again, so a crash in between does not leave it stopped:
//! the next start starts what is written down. A user who stops or kills
//! one of them meanwhile crosses it off: it stays stopped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{BackupError, ContainerControl, STOP_DURING_BACKUP_LABEL};
use crate::volume::{VolumeService, OPERATION_MOUNT_PREFIX};

/// Containers stopped for a backup; started again when dropped.
pub(super) struct Stopped {
    control: Option<Arc<dyn ContainerControl>>,
    /// Where stopped containers are written down.
    ledger: PathBuf,
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
            if !self.ledger.join(id).exists() {
                tracing::info!(container = %name,
                    "not started again after the backup: its user stopped it meanwhile");
                continue;
            }
            match control.start(id) {
                Ok(()) => _ = cross_off(&self.ledger, id),
                Err(e) => tracing::error!(container = %name, error = %e,
                    "starting a container again after a backup failed (the next start tries again)"),
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
    ledger: &Path,
) -> Result<Stopped, BackupError> {
    let mut out = Stopped {
        control: control.cloned(),
        ledger: ledger.to_path_buf(),
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
        write_down(ledger, id).map_err(|e| BackupError::StopFailed {
            container: facts.name.clone(),
            why: format!("writing it down first: {e}"),
        })?;
        if let Err(why) = control.stop(id) {
            cross_off(ledger, id);
            return Err(BackupError::StopFailed {
                container: facts.name.clone(),
                why,
            });
        }
        out.stopped.push((id.clone(), facts.name));
    }
    Ok(out)
}

/// Writes container `id` down as stopped for a backup (synced).
fn write_down(ledger: &Path, id: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(ledger)?;
    std::fs::File::create(ledger.join(id))?.sync_all()?;
    crate::driver::sync_dir(ledger).map_err(std::io::Error::other)
}

/// Crosses container `id` off; returns whether it was written down.
pub(super) fn cross_off(ledger: &Path, id: &str) -> bool {
    std::fs::remove_file(ledger.join(id)).is_ok()
}

/// Start-up: starts again the containers a backup stopped and a crash
/// kept from starting; crosses off each one started (or gone).
pub(super) fn restart_written_down(control: &dyn ContainerControl, ledger: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(ledger) else {
        return 0;
    };
    let mut started = 0;
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        if control.facts(&id).is_none() {
            cross_off(ledger, &id);
            continue;
        }
        match control.start(&id) {
            Ok(()) => {
                started += 1;
                cross_off(ledger, &id);
            }
            Err(e) => tracing::error!(container = %id, error = %e,
                "starting a container a cut-short backup had stopped"),
        }
    }
    started
}
