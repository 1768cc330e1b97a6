//! Start-up: containers found again after a daemon restart (live restore)
//! and everything a crash can leave half done, repaired before the socket
//! opens.
//!
//! | found | action |
//! |---|---|
//! | `running`, its shim alive | watched again, volume mounts re-taken; a connect or disconnect a crash cut is settled (`connect.rs`) |
//! | `running`, shim gone | exit recorded from `exit.json` (255 if none), cgroup emptied, mounts released, `--rm` applied |
//! | `starting` (daemon died mid-start) | shim and cgroup ended, mounts released, back to `created`/`exited` with an error, `--rm` applied |
//! | `removing` (daemon died mid-remove) | removal finished |
//! | `created`/`exited`/`dead` | any shim or process of it ended (an orphan of a cut start), mounts released, `--rm` applied to exited ones |
//! | container folder without a row | shim and cgroup ended, folder removed |
//! | volume reference or mount id of no container | dropped (the volume is unmounted at its last id) |
//! | endpoints of a container not running | netavark teardown, namespace removed, leases freed (with its mounts, above) |
//! | network namespace file of no running container | torn down and removed |

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::cgroup::ContainerCgroup;
use super::shim::{self, ExitStatus};
use super::shim_protocol::Pid;
use super::{ContainerError, ContainerRecord, ContainerService, Status};
use crate::volume::OPERATION_MOUNT_PREFIX;

/// What start-up found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Containers still running (live restore).
    pub restored: usize,
    /// Containers whose process ended while the daemon was away.
    pub exited: usize,
    /// Starts and removals a crash cut, settled.
    pub settled: usize,
    /// `--rm` containers removed.
    pub auto_removed: usize,
    /// Orphans ended: shims, processes, folders of no container.
    pub orphans: usize,
    /// Volume references and mount ids of no container, dropped.
    pub stale_holders: usize,
}

impl ContainerService {
    /// Runs every start-up step (see the module's table).
    pub fn restore(self: &Arc<Self>) -> Result<RecoveryReport, ContainerError> {
        let mut report = RecoveryReport::default();
        let views = super::view::sweep(&super::view::views_dir(&self.settings.containers_dir));
        if views > 0 {
            tracing::info!(views, "read-only views left by a crash removed");
        }
        let shims = shim::shims_under(&self.settings.containers_dir);
        let records = self.store.list_containers()?;
        for record in &records {
            self.recover_one(record, &shims, &mut report);
        }
        let known: BTreeSet<String> = self
            .store
            .list_containers()?
            .into_iter()
            .map(|c| c.id)
            .collect();
        self.remove_orphan_folders(&known, &mut report);
        self.drop_stale_holders(&known, &mut report)?;
        self.remove_orphan_namespaces(&mut report)?;
        Ok(report)
    }

    /// Namespace files of no running container (a start cut after the
    /// namespace was made, before its endpoints were recorded, or a
    /// container gone meanwhile): torn down and removed.
    fn remove_orphan_namespaces(&self, report: &mut RecoveryReport) -> Result<(), ContainerError> {
        let Ok(runtime) = self.networks.runtime() else {
            return Ok(());
        };
        let Ok(entries) = std::fs::read_dir(&runtime.netns_dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if id.starts_with(crate::network::ANCHOR_PREFIX) {
                continue;
            }
            let running = self
                .store
                .get_container(&id)?
                .is_some_and(|c| c.state.status == Status::Running);
            if !running {
                tracing::warn!(container = %id, "removing the network namespace of no running container");
                self.detach_networks(&id);
                report.orphans += 1;
            }
        }
        Ok(())
    }

    fn recover_one(
        self: &Arc<Self>,
        record: &ContainerRecord,
        shims: &HashMap<String, Vec<Pid>>,
        report: &mut RecoveryReport,
    ) {
        let dir = self.paths(&record.id).dir().to_path_buf();
        // Specs written by an older berth were 0644 (they hold `-e` values).
        let spec = self.paths(&record.id).bundle().join("config.json");
        if spec.exists() {
            let _ = crate::root::make_private(&spec, crate::root::SECRET_FILE_MODE);
        }
        if !record.state.paused && !ContainerCgroup::of(&record.id).is_empty() {
            // A commit cut by the crash may have left it frozen; a paused
            // container stays so.
            if let Err(e) = ContainerCgroup::of(&record.id).freeze(false) {
                tracing::debug!(container = %record.id, error = %e, "no freezer to thaw");
            }
        }
        match record.state.status {
            Status::Running if shim::is_shim_of(record.state.shim_pid, &record.id, &dir) => {
                self.readopt(record);
                self.start_health_monitor(&record.id);
                report.settled += self.settle_cut_changes(record);
                report.restored += 1;
            }
            Status::Running => {
                if ExitStatus::read(&self.paths(&record.id).exit_file()).is_none() {
                    tracing::warn!(container = %record.id, "shim gone without an exit status");
                }
                self.handle_exit(&record.id);
                report.exited += 1;
            }
            Status::Starting => {
                shim::end_shim(&record.id, &dir);
                self.settle_cut_start(record);
                report.settled += 1;
            }
            Status::Removing => {
                shim::end_shim(&record.id, &dir);
                match self.finish_remove(record, record.host_config.auto_remove) {
                    Ok(()) => report.settled += 1,
                    Err(e) => {
                        tracing::error!(container = %record.id, error = %e, "cut removal not finished")
                    }
                }
            }
            Status::Created | Status::Exited | Status::Dead => {
                if shims.contains_key(&record.id) || !ContainerCgroup::of(&record.id).is_empty() {
                    tracing::warn!(container = %record.id, "ending processes of a stopped container");
                    report.orphans += 1;
                }
                // Also removes cgroup folders a start cut by the crash made.
                if shims.contains_key(&record.id) {
                    shim::end_shim(&record.id, &dir);
                } else {
                    shim::end_cgroup(&record.id);
                }
                self.unmount_all(record);
                if record.state.status == Status::Exited && record.host_config.auto_remove {
                    self.auto_remove(&record.id, report);
                }
            }
        }
    }

    /// A container that kept running while the daemon was away.
    fn readopt(self: &Arc<Self>, record: &ContainerRecord) {
        self.lifecycle_sender(&record.id)
            .send_modify(|l| l.running = true);
        for m in record.mounts.iter().filter(|m| m.kind == "volume") {
            let _ = self.volumes.mount(&m.name, &record.id);
        }
        if let Some(pid) = record.state.shim_pid {
            self.watch_shim(record.id.clone(), pid);
        }
    }

    /// A start the daemon did not finish: the container never ran for the
    /// client, so it goes back to where it was, with the reason recorded.
    fn settle_cut_start(self: &Arc<Self>, record: &ContainerRecord) {
        let mut state = record.state.clone();
        state.status = if state.started_at.is_some() {
            Status::Exited
        } else {
            Status::Created
        };
        state.pid = None;
        state.shim_pid = None;
        state.exit_code = 128;
        state.error = "the daemon stopped while the container was starting".into();
        if let Err(e) = self.store.set_container_state(&record.id, &state) {
            tracing::error!(container = %record.id, error = %e, "cannot settle a cut start");
        }
        self.unmount_all(record);
        if record.host_config.auto_remove {
            let _ = self.remove(&record.id, true, true);
        }
    }

    fn auto_remove(self: &Arc<Self>, id: &str, report: &mut RecoveryReport) {
        match self.remove(id, false, true) {
            Ok(()) => report.auto_removed += 1,
            Err(e) => tracing::warn!(container = %id, error = %e, "auto-remove at start-up failed"),
        }
    }

    /// Folders under `containers/` of no container (a create or remove a
    /// crash cut): their processes are ended, mounts undone, folder removed.
    fn remove_orphan_folders(&self, known: &BTreeSet<String>, report: &mut RecoveryReport) {
        let Ok(entries) = std::fs::read_dir(&self.settings.containers_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if known.contains(&id) {
                continue;
            }
            tracing::warn!(container = %id, "removing the folder of no container");
            shim::end_shim(&id, &entry.path());
            if let Err(e) = self.paths(&id).remove_all() {
                tracing::error!(container = %id, error = %e, "orphan folder not removed");
            }
            super::paths::remove_runtime_state(&self.settings.runtime_root.join(&id));
            report.orphans += 1;
        }
    }

    /// References and mount ids held by no container (a create cut
    /// between taking references and recording the container, or a remove
    /// cut after its row went): dropped, so the volumes can be removed.
    fn drop_stale_holders(
        &self,
        known: &BTreeSet<String>,
        report: &mut RecoveryReport,
    ) -> Result<(), ContainerError> {
        for (volume, holder, is_mount) in self.volumes.all_holders()? {
            // Operations settle their own; another engine's mounts through
            // berth's volume plugin end with that engine's Unmount.
            if known.contains(&holder)
                || holder.starts_with(OPERATION_MOUNT_PREFIX)
                || crate::volume::is_plugin_client_id(&holder)
            {
                continue;
            }
            tracing::warn!(%volume, %holder, "dropping the hold of no container");
            let dropped = if is_mount {
                self.volumes.unmount(&volume, &holder)
            } else {
                self.volumes.remove_ref(&volume, &holder)
            };
            match dropped {
                Ok(_) => report.stale_holders += 1,
                Err(e) => tracing::error!(%volume, %holder, error = %e, "stale hold not dropped"),
            }
        }
        Ok(())
    }
}
