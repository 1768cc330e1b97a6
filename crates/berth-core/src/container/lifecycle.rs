//! Start, exit, stop, kill and wait.
//!
//! A started container is watched by a thread blocked on a pidfd of its
//! shim; when the shim ends, [`ContainerService::handle_exit`] records the
//! exit status the shim left, releases mounts, wakes waiters and, for
//! `--rm`, removes the container.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::watch;

use super::cgroup::ContainerCgroup;
use super::model::{MountPoint, Recursion};
use super::options::ContainerOptions;
use super::shim::{self, ExitStatus, ShimArgs};
use super::shim_protocol::Pid;
use super::spec::BindMount;
use super::{
    ContainerError, ContainerPaths, ContainerRecord, ContainerService, ContainerState, Status,
};
use crate::sys::mount;

/// What follows an exit.
enum AfterExit {
    Nothing,
    /// `--rm`.
    Remove,
    /// The restart policy restarts it after `delay`.
    Restart {
        delay: Duration,
        generation: u64,
    },
}

/// What waiters watch: counts of exits, the last exit code, removal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lifecycle {
    pub running: bool,
    pub exits: u64,
    pub exit_code: i64,
    pub removed: bool,
}

/// The exits of one container from a moment on.
pub(super) struct ExitWatch {
    rx: watch::Receiver<Lifecycle>,
    exits: u64,
}

impl ExitWatch {
    /// Blocks until the container has exited since the watch was taken,
    /// or is removed (its channel then closes), or `limit` passes.
    /// Returns whether it exited or is gone.
    pub(super) fn wait(&self, limit: Option<Duration>) -> bool {
        let deadline = limit.map(|l| Instant::now() + l);
        loop {
            let closed = self.rx.has_changed().is_err();
            let now = self.rx.borrow();
            if closed || now.exits > self.exits || now.removed {
                return true;
            }
            drop(now);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `POST /containers/{id}/wait?condition=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> Result<Self, ContainerError> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(ContainerError::InvalidCondition(other.to_string())),
        }
    }
}

/// Default grace period of `stop`.
const DEFAULT_STOP_TIMEOUT: i64 = 10;
/// How long `kill` (SIGKILL) waits for the exit to be recorded (Docker: 10 s).
const KILL_WAIT: Duration = Duration::from_secs(10);

impl ContainerService {
    /// The lifecycle channel of `id` (created on first use).
    pub(super) fn lifecycle_sender(&self, id: &str) -> watch::Sender<Lifecycle> {
        self.lifecycles
            .lock()
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(Lifecycle::default()).0)
            .clone()
    }

    /// Starts a created or exited container (a manual start: a restart
    /// waiting for its back-off is cancelled, the restart count and the
    /// manual-stop mark cleared, as moby's `resetRestartManager`).
    pub fn start(self: &Arc<Self>, name_or_id: &str) -> Result<(), ContainerError> {
        self.start_as(name_or_id, None)
    }

    /// Starts a container its restart policy restarts (the count kept),
    /// unless restart `generation` was cancelled meanwhile.
    pub(super) fn start_restarting(
        self: &Arc<Self>,
        id: &str,
        generation: u64,
    ) -> Result<(), ContainerError> {
        self.start_as(id, Some(generation))
    }

    /// A manual start (`restart` None), or the policy's restart of that
    /// generation.
    fn start_as(
        self: &Arc<Self>,
        name_or_id: &str,
        restart: Option<u64>,
    ) -> Result<(), ContainerError> {
        let manual = restart.is_none();
        let record = self.resolve(name_or_id)?;
        let _guard = self.locks.lock(&record.id);
        if restart.is_some_and(|g| !self.restart_still_planned(&record.id, g)) {
            return Ok(()); // a stop, kill or start cancelled it meanwhile
        }
        let mut record = self.resolve(&record.id)?;
        self.exit_on_next.lock().remove(&record.id);
        if manual {
            self.restarts.lock().remove(&record.id);
            record.state.restart_count = 0;
            record.state.manually_stopped = false;
        }
        record.state.restarting = false;
        match record.state.status {
            Status::Running => return Err(ContainerError::AlreadyRunning),
            Status::Removing => return Err(ContainerError::MarkedForRemoval),
            _ if self.removal_in_progress(&record.id) => {
                return Err(ContainerError::MarkedForRemoval)
            }
            _ => {}
        }
        let result = self.launch(&record);
        if let Err(e) = &result {
            self.record_failed_start(&record, e);
        }
        drop(_guard);
        if result.is_ok() {
            // After the lock: the monitor records health under it.
            self.start_health_monitor(&record.id);
        }
        if result.is_err() && record.host_config.auto_remove {
            // Docker removes an --rm container whose start failed.
            let _ = self.remove(&record.id, true, true);
        }
        result
    }

    /// Prepares the bundle (root filesystem, volumes, `config.json`) and
    /// starts the container through a new shim.
    fn launch(self: &Arc<Self>, record: &ContainerRecord) -> Result<(), ContainerError> {
        let paths = self.paths(&record.id);
        let mut options =
            super::options::ContainerOptions::parse(&record.config, &record.host_config)?;
        // As dockerd: the daemon's default ulimits as they are at this start.
        let own = options.resources.ulimits.take();
        options.resources.ulimits = self.settings.defaults.merge_ulimits(own);
        let (network, facts, pending) = self.attach_networks(record)?;
        // netavark sets the network up while the root filesystem is
        // mounted and the runtime creates the container in the namespace.
        let created = self.create_in_shim(record, &paths, &options, network, &facts);
        if let Err(e) = pending.wait() {
            if created.is_ok() {
                shim::end_shim(&record.id, paths.dir());
            }
            return Err(e);
        }
        let created = created?;
        let (init_pid, shim_pid) = (created.init_pid, created.shim_pid);
        // Recorded before `start`, so a daemon dying from here on leaves a
        // state start-up recognises (and ends the shim of).
        if let Err(e) = self.mark_starting(record, init_pid, shim_pid) {
            shim::end_shim(&record.id, paths.dir());
            return Err(e);
        }
        created.start(paths.dir())?;
        self.mark_running(record, init_pid, shim_pid)?;
        self.watch_shim(record.id.clone(), shim_pid);
        tracing::info!(container = %record.id, pid = %init_pid, shim = %shim_pid, "container started");
        self.publish("start", record, &[]);
        Ok(())
    }

    /// The bundle written and the container created by a new shim
    /// (waiting for `start`).
    fn create_in_shim(
        &self,
        record: &ContainerRecord,
        paths: &ContainerPaths,
        options: &ContainerOptions,
        network: super::SpecNetwork,
        facts: &super::NetworkFacts,
    ) -> Result<shim::CreatedShim, ContainerError> {
        let binds = self.prepare_rootfs(record, paths, options, facts)?;
        self.write_bundle(record, paths, binds, options, network)?;
        let _ = std::fs::remove_file(paths.exit_file());
        let args = self.shim_args(record, paths, options);
        Ok(shim::spawn(&self.settings.shim_exe, &args)?)
    }

    /// Mounts the overlay root filesystem, writes the `/etc` files and
    /// mounts the volumes; returns every bind for the spec.
    fn prepare_rootfs(
        &self,
        record: &ContainerRecord,
        paths: &ContainerPaths,
        options: &ContainerOptions,
        facts: &super::NetworkFacts,
    ) -> Result<Vec<BindMount>, ContainerError> {
        paths.create()?;
        let image = self.images.resolve(&record.image_id)?;
        paths.mount_rootfs(&self.images.layer_paths(&image))?;
        paths.write_etc_files(&record.config.hostname, options, facts)?;
        self.mount_volumes(record)
    }

    /// The shim's arguments; runtime `""`/`berth` means the daemon's
    /// default runtime.
    fn shim_args(
        &self,
        record: &ContainerRecord,
        paths: &ContainerPaths,
        options: &ContainerOptions,
    ) -> ShimArgs {
        let runtime = match record.host_config.runtime.as_str() {
            path if path.starts_with('/') => Some(path.to_string()),
            _ => self.settings.default_runtime.clone(),
        };
        ShimArgs {
            id: record.id.clone(),
            bundle: paths.bundle(),
            state_dir: paths.dir().to_path_buf(),
            runtime_root: self.settings.runtime_root.clone(),
            log: paths.log(),
            runtime,
            stdin: record.config.open_stdin,
            tty: record.config.tty,
            rotation: options.log_rotation,
        }
    }

    /// Mounts the container's volumes (first mount id mounts a device or
    /// tmpfs volume) and returns every bind for the spec.
    fn mount_volumes(&self, record: &ContainerRecord) -> Result<Vec<BindMount>, ContainerError> {
        let paths = self.paths(&record.id);
        // With a read-only root filesystem these are read-only too (Docker).
        let readonly =
            record.host_config.extra.get("ReadonlyRootfs") == Some(&serde_json::Value::Bool(true));
        let mut binds = vec![
            etc_bind(paths.hostname_file(), "/etc/hostname", readonly),
            etc_bind(paths.hosts_file(), "/etc/hosts", readonly),
            etc_bind(paths.resolv_file(), "/etc/resolv.conf", readonly),
        ];
        for (index, m) in record.mounts.iter().enumerate() {
            let mut source = m.source.clone();
            if m.kind == "volume" {
                let root = self.volumes.mount(&m.name, &record.id)?;
                source = match &m.subpath {
                    Some(sub) => paths
                        .mount_subpath(index, &root, sub)?
                        .display()
                        .to_string(),
                    None => root.display().to_string(),
                };
            }
            let tmpfs = (m.kind == "tmpfs").then(|| m.options.clone());
            if m.kind == "bind" {
                check_propagation_source(&source, &m.propagation)?;
            }
            binds.push(BindMount {
                source,
                destination: m.destination.clone(),
                readonly: !m.rw,
                tmpfs,
                propagation: m.propagation.clone(),
                recursion: recursion_the_kernel_allows(m)?,
            });
        }
        Ok(binds)
    }

    /// Records `starting` with both pids (the shim waits for `start`).
    fn mark_starting(
        &self,
        record: &ContainerRecord,
        pid: Pid,
        shim_pid: Pid,
    ) -> Result<(), ContainerError> {
        let state = with_pids(&record.state, Status::Starting, pid, shim_pid);
        self.store.set_container_state(&record.id, &state)?;
        Ok(())
    }

    fn mark_running(
        &self,
        record: &ContainerRecord,
        pid: Pid,
        shim_pid: Pid,
    ) -> Result<(), ContainerError> {
        let mut state = with_pids(&record.state, Status::Running, pid, shim_pid);
        state.restarting = false;
        state.oom_killed = false;
        state.exit_code = 0;
        state.error.clear();
        state.started_at = Some(super::jsonlog::now_rfc3339_nano());
        state.finished_at = None;
        self.store.set_container_state(&record.id, &state)?;
        self.lifecycle_sender(&record.id)
            .send_modify(|l| l.running = true);
        Ok(())
    }

    /// A failed start leaves the container exited with Docker's exit code
    /// (127 for a missing program, 128 otherwise) and the error recorded.
    fn record_failed_start(&self, record: &ContainerRecord, error: &ContainerError) {
        let mut state = record.state.clone();
        state.status = if record.state.started_at.is_some() {
            Status::Exited
        } else {
            Status::Created
        };
        state.exit_code = match error {
            ContainerError::StartNotFound(_) => 127,
            _ => 128,
        };
        state.pid = None;
        state.shim_pid = None;
        state.error = error.to_string();
        let _ = self.store.set_container_state(&record.id, &state);
        self.unmount_all(record);
        // Waiters and attached clients see the failed start as an exit.
        self.notify_exit(&record.id, state.exit_code);
        tracing::warn!(container = %record.id, error = %error, "start failed");
    }

    /// Releases what a run holds: volume mounts, the root filesystem and
    /// the networks.
    pub(super) fn unmount_all(&self, record: &ContainerRecord) {
        self.unmount_files(record);
        self.detach_networks(&record.id);
    }

    /// Unmounts the volumes, their sub-paths and the root filesystem.
    fn unmount_files(&self, record: &ContainerRecord) {
        if let Err(e) = self.paths(&record.id).unmount_subpaths() {
            tracing::warn!(container = %record.id, error = %e, "could not unmount volume sub-paths");
        }
        for m in record.mounts.iter().filter(|m| m.kind == "volume") {
            if let Err(e) = self.volumes.unmount(&m.name, &record.id) {
                tracing::warn!(volume = %m.name, error = %e, "could not unmount volume");
            }
        }
        if let Err(e) = self.paths(&record.id).unmount_rootfs() {
            tracing::warn!(container = %record.id, error = %e, "could not unmount root filesystem");
        }
    }

    /// Watches a shim from a thread; handles the exit when it ends.
    pub(super) fn watch_shim(self: &Arc<Self>, id: String, shim_pid: Pid) {
        let service = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("watch-{}", &id[..12]))
            .spawn(move || {
                shim::wait_for_exit(shim_pid);
                service.handle_exit(&id);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot watch shim");
        }
    }

    /// Records the end of a container's process and, for `--rm`, removes
    /// the container (after the container's lock is released).
    pub(super) fn handle_exit(self: &Arc<Self>, id: &str) {
        match self.record_exit(id) {
            AfterExit::Remove => {
                if let Err(e) = self.remove(id, false, true) {
                    tracing::warn!(container = %id, error = %e, "auto-remove failed");
                }
            }
            AfterExit::Restart { delay, generation } => {
                self.schedule_restart(id.to_string(), delay, generation)
            }
            AfterExit::Nothing => {}
        }
    }

    /// Under the container's lock, records the exit of a running container
    /// (from `exit.json`, or 255 if the shim died without writing one),
    /// ends whatever is left in its cgroup (a shim killed with -9 leaves
    /// the container's processes running), unmounts, wakes waiters.
    /// Returns whether it is to be auto-removed.
    fn record_exit(&self, id: &str) -> AfterExit {
        let _guard = self.locks.lock(id);
        let Ok(record) = self.resolve(id) else {
            return AfterExit::Nothing;
        };
        if record.state.status != Status::Running {
            return AfterExit::Nothing;
        }
        let exit = ExitStatus::read(&self.paths(id).exit_file());
        let mut state = exited_state(&record.state, exit.as_ref());
        // Read before the cgroup goes: did the kernel's OOM killer act?
        state.oom_killed =
            exit.as_ref().is_some_and(|e| e.oom_killed) || ContainerCgroup::of(id).oom_kills() > 0;
        if state.oom_killed {
            self.publish("oom", &record, &[]);
        }
        let ended = ContainerCgroup::of(id).kill_all(id);
        if let Err(e) = &ended {
            state.error = e.to_string();
        }
        let manual_restart = self.manual_restarts.lock().contains(id);
        let restart = if ended.is_ok() && !manual_restart {
            self.plan_restart(&record, &mut state)
        } else {
            None
        };
        if let Err(e) = self.store.set_container_state(id, &state) {
            tracing::error!(container = %id, error = %e, "could not record exit");
        }
        let released = ended.is_ok();
        if released {
            // A shim killed with -9 never deleted the runtime's state of
            // the container; a start would find it "already exists".
            self.forget_runtime_state(id);
        }
        // Counted before the exit is told, so whoever reacts to it finds
        // the teardown under way and waits for what it holds.
        let teardown = self.networks.teardowns().begin();
        match ended {
            Ok(()) => self.unmount_files(&record),
            // Its volumes stay mounted and in use while a process is left.
            Err(e) => tracing::error!(container = %id, error = %e, "mounts kept"),
        }
        let code = state.exit_code;
        // Waiters (kill, stop, wait) hear of the exit before the network
        // teardown, which can take long (netavark removes a rule at a
        // time); the container's lock is held until it is done.
        self.notify_exit(id, code);
        if released {
            self.detach_networks(id);
        }
        drop(teardown);
        tracing::info!(container = %id, exit_code = code, "container exited");
        self.publish("die", &record, &[("exitCode", &code.to_string())]);
        match restart {
            Some((delay, generation)) => AfterExit::Restart { delay, generation },
            None if record.host_config.auto_remove && !manual_restart => AfterExit::Remove,
            None => AfterExit::Nothing,
        }
    }

    /// Tells waiters and attached clients the process ended with `code`.
    fn notify_exit(&self, id: &str, code: i64) {
        self.lifecycle_sender(id).send_modify(|l| {
            l.running = false;
            l.exits += 1;
            l.exit_code = code;
        });
    }

    /// Sends `signal` (default SIGKILL) to a running container. For
    /// SIGKILL it waits until the exit is recorded (Docker's `Kill`), so a
    /// `rm` or `inspect` right after sees the container exited (137).
    pub fn kill(&self, name_or_id: &str, signal: Option<&str>) -> Result<(), ContainerError> {
        let record = self.resolve(name_or_id)?;
        let watch = self.exit_watch(&record.id);
        let record = self.resolve(&record.id)?;
        if record.state.restarting && self.cancel_restart(&record.id) {
            self.mark_manually_stopped(&record.id);
            return Ok(());
        }
        // A restart may have started it between the read and the cancel.
        let record = self.resolve(&record.id)?;
        if record.state.status != Status::Running {
            return Err(ContainerError::KillNotRunning {
                name: name_or_id.into(),
                id: record.id,
            });
        }
        let signal = parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
        self.mark_manually_stopped(&record.id);
        self.signal_container(&record, signal)?;
        if signal == Signal::SIGKILL {
            watch.wait(Some(KILL_WAIT));
            self.cancel_restart_planned_meanwhile(&record.id);
        }
        Ok(())
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout`
    /// seconds (default: StopTimeout or 10). Not running is `AlreadyStopped`.
    pub fn stop(
        &self,
        name_or_id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), ContainerError> {
        let record = self.resolve(name_or_id)?;
        // The watch is taken before the state is read, so an exit in
        // between is seen by the wait below at once.
        let watch = self.exit_watch(&record.id);
        let record = self.resolve(&record.id)?;
        if record.state.restarting && self.cancel_restart(&record.id) {
            self.mark_manually_stopped(&record.id);
            return Ok(());
        }
        // A restart may have started it between the read and the cancel.
        let record = self.resolve(&record.id)?;
        if record.state.status != Status::Running {
            return Err(ContainerError::NotRunning(record.id));
        }
        self.mark_manually_stopped(&record.id);
        let timeout = timeout
            .or(record.config.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        let stop_signal = signal
            .or(record.config.stop_signal.as_deref())
            .unwrap_or("SIGTERM");
        let grace = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
        let stopped = timeout != 0 && {
            self.signal_container(&record, parse_signal(stop_signal)?)?;
            watch.wait(grace)
        };
        if !stopped {
            self.signal_container(&record, Signal::SIGKILL)?;
            watch.wait(Some(Duration::from_secs(30)));
        }
        self.cancel_restart_planned_meanwhile(&record.id);
        self.publish("stop", &record, &[]);
        Ok(())
    }

    /// Sends `signal` (after marking the exit it may cause as wanted),
    /// thaws a paused container it ends, and publishes `kill`.
    fn signal_container(
        &self,
        record: &ContainerRecord,
        signal: Signal,
    ) -> Result<(), ContainerError> {
        let ending = self.mark_ending(record, signal);
        send(record, signal)?;
        self.resume_if_ending(record, ending);
        self.publish("kill", record, &[("signal", &(signal as i32).to_string())]);
        Ok(())
    }

    /// Removes the runtime's state of container `id` (the embedded
    /// runtime's `<runtime root>/<id>`, an external runtime's
    /// `<runtime root>/<runtime>/<id>`). Only once its processes are gone.
    pub(super) fn forget_runtime_state(&self, id: &str) {
        let root = &self.settings.runtime_root;
        super::paths::remove_runtime_state(&root.join(id));
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                let state = entry.path().join(id);
                if entry.file_type().is_ok_and(|t| t.is_dir()) && state.is_dir() {
                    super::paths::remove_runtime_state(&state);
                }
            }
        }
    }

    /// A container that exited by itself between a stop's (or kill's) read
    /// of its state and the signal had its exit planned for a restart
    /// then, before the stop marked it: the stop leaves it stopped, as
    /// Docker's does.
    fn cancel_restart_planned_meanwhile(&self, id: &str) {
        if self.resolve(id).is_ok_and(|r| r.state.restarting) && self.cancel_restart(id) {
            tracing::debug!(container = %id, "a restart planned during a stop was cancelled");
        }
    }

    /// Records a manual stop (`docker stop`, `docker kill`): the exit it
    /// causes is not restarted by `unless-stopped`.
    fn mark_manually_stopped(&self, id: &str) {
        let _guard = self.locks.lock(id);
        if let Ok(record) = self.resolve(id) {
            let mut state = record.state.clone();
            state.manually_stopped = true;
            if let Err(e) = self.store.set_container_state(id, &state) {
                tracing::warn!(container = %id, error = %e, "cannot record the stop");
            }
        }
    }

    /// A container about to be sent SIGKILL or its stop signal ends on
    /// purpose: its restart policy does not restart it (moby's
    /// `ExitOnNext`). Marked before the signal, so the exit finds it.
    /// Returns whether it is ending.
    fn mark_ending(&self, record: &ContainerRecord, signal: Signal) -> bool {
        // moby: without a configured stop signal, any signal sent by
        // kill or stop marks the next exit as wanted.
        let ending = signal == Signal::SIGKILL
            || match record.config.stop_signal.as_deref() {
                None | Some("") => true,
                Some(stop) => parse_signal(stop).ok() == Some(signal),
            };
        if ending {
            self.exit_on_next.lock().insert(record.id.clone());
        }
        ending
    }

    /// An ending container that is paused is thawed so the signal is
    /// delivered (moby's `killWithSignal`).
    fn resume_if_ending(&self, record: &ContainerRecord, ending: bool) {
        let Ok(now) = self.resolve(&record.id) else {
            return;
        };
        if now.state.paused && ending {
            if let Err(e) = self.thaw(&now) {
                tracing::warn!(container = %record.id, error = %e, "cannot unpause container");
            }
        }
    }

    /// A watch on the container's exits from now on (take it before
    /// reading the state that decides what to do).
    pub(super) fn exit_watch(&self, id: &str) -> ExitWatch {
        let rx = self.lifecycle_sender(id).subscribe();
        let exits = rx.borrow().exits;
        ExitWatch { rx, exits }
    }

    /// Subscribes to a container's lifecycle, checking it exists first (so
    /// a missing container is an error before any response is sent).
    pub fn subscribe(
        &self,
        name_or_id: &str,
    ) -> Result<(ContainerRecord, watch::Receiver<Lifecycle>), ContainerError> {
        let record = self.resolve(name_or_id)?;
        let sender = self.lifecycle_sender(&record.id);
        sender.send_if_modified(|l| {
            let running = record.state.status == Status::Running;
            let changed = l.running != running;
            l.running = running;
            if l.exits == 0 {
                l.exit_code = record.state.exit_code;
            }
            changed
        });
        Ok((record, sender.subscribe()))
    }
}

/// Waits for `condition` on a subscribed lifecycle; returns the exit code.
/// `start` is the lifecycle when the caller subscribed: an exit after that
/// counts even if it happens before this future is first polled.
pub async fn wait_for(
    mut rx: watch::Receiver<Lifecycle>,
    start: Lifecycle,
    condition: WaitCondition,
) -> i64 {
    if condition == WaitCondition::NotRunning && !start.running {
        return start.exit_code;
    }
    let done = |l: &Lifecycle| match condition {
        WaitCondition::NotRunning | WaitCondition::NextExit => l.exits > start.exits || l.removed,
        WaitCondition::Removed => l.removed,
    };
    match rx.wait_for(done).await {
        Ok(l) => l.exit_code,
        Err(_) => start.exit_code,
    }
}

/// `state` moved to `status` with both pids of a live shim.
fn with_pids(state: &ContainerState, status: Status, pid: Pid, shim_pid: Pid) -> ContainerState {
    ContainerState {
        status,
        pid: Some(pid),
        shim_pid: Some(shim_pid),
        ..state.clone()
    }
}

/// The state after an exit: the shim's code and time, or 255 with an
/// error when it recorded none.
fn exited_state(running: &ContainerState, exit: Option<&ExitStatus>) -> ContainerState {
    let mut state = running.clone();
    state.status = Status::Exited;
    state.paused = false;
    state.pid = None;
    state.shim_pid = None;
    match exit {
        Some(status) => {
            state.exit_code = status.exit_code;
            state.finished_at = Some(status.finished_at.clone());
        }
        None => {
            state.exit_code = 255;
            state.error = "the shim ended without recording an exit status".into();
            state.finished_at = Some(super::jsonlog::now_rfc3339_nano());
        }
    }
    state
}

/// A shared bind needs a shared source mount, a slave one a shared or
/// slave source: otherwise the container would silently receive nothing.
/// Docker's check and words.
fn check_propagation_source(source: &str, propagation: &str) -> Result<(), ContainerError> {
    use crate::sys::mount::Propagation;
    let wanted = match propagation {
        "shared" | "rshared" => "a shared",
        "slave" | "rslave" => "a shared or slave",
        _ => return Ok(()),
    };
    let path = std::fs::canonicalize(source).unwrap_or_else(|_| source.into());
    let (point, found) = mount::propagation_of(&path).ok_or_else(|| {
        ContainerError::Start(format!("could not find the mount point of {source}"))
    })?;
    let ok = match found {
        Propagation::Shared => true,
        Propagation::Slave => wanted == "a shared or slave",
        Propagation::Private => false,
    };
    if ok {
        return Ok(());
    }
    Err(ContainerError::Start(format!(
        "path {source} is mounted on {} but it is not {wanted} mount",
        point.display()
    )))
}

/// A read-only bind is made read-only recursively where the kernel can
/// (mount_setattr, Linux 5.12); elsewhere at its top only, as Docker
/// falls back, unless the mount insists (`bind-recursive=readonly`).
fn recursion_the_kernel_allows(m: &MountPoint) -> Result<Recursion, ContainerError> {
    let mut recursion = m.recursion;
    if m.rw || recursion.readonly_non_recursive || mount::supports_recursive_attributes() {
        return Ok(recursion);
    }
    if recursion.readonly_force_recursive {
        return Err(ContainerError::Start(
            "recursively read-only mounts need Linux 5.12 or later (mount_setattr)".into(),
        ));
    }
    recursion.readonly_non_recursive = true;
    Ok(recursion)
}

fn etc_bind(source: std::path::PathBuf, destination: &str, readonly: bool) -> BindMount {
    BindMount::private(source.display().to_string(), destination, readonly)
}

/// Sends `signal` to the container's first process through a pidfd, and
/// only if that process is still in the container's cgroup: a pid read
/// from the record may belong to another process once the container has
/// exited. A process already gone is not an error.
fn send(record: &ContainerRecord, signal: Signal) -> Result<(), ContainerError> {
    let Some(pid) = record.state.pid else {
        return Err(ContainerError::NotRunning(record.id.clone()));
    };
    let failed =
        |e: std::io::Error| ContainerError::io(format!("sending {signal} to {}", record.id), e);
    let Some(pidfd) = crate::sys::process::pidfd_open(pid).map_err(failed)? else {
        return Ok(());
    };
    if !crate::sys::process::in_cgroup(pid, &format!("/berth/{}", record.id)) {
        return Ok(());
    }
    crate::sys::process::pidfd_send_signal(&pidfd, signal).map_err(failed)
}

/// `SIGTERM`, `TERM`, `15` → the signal.
pub fn parse_signal(s: &str) -> Result<Signal, ContainerError> {
    let bad = || ContainerError::InvalidConfig(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("kill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("1").unwrap(), Signal::SIGHUP);
        assert!(parse_signal("NOPE").is_err());
    }

    #[tokio::test]
    async fn wait_conditions() {
        let (tx, rx) = watch::channel(Lifecycle {
            running: true,
            ..Default::default()
        });
        let start = rx.borrow().clone();
        let next = tokio::spawn(wait_for(rx.clone(), start.clone(), WaitCondition::NextExit));
        let removed = tokio::spawn(wait_for(rx.clone(), start, WaitCondition::Removed));
        tx.send_modify(|l| {
            l.running = false;
            l.exits = 1;
            l.exit_code = 7;
        });
        assert_eq!(next.await.unwrap(), 7);
        assert!(!removed.is_finished());
        tx.send_modify(|l| l.removed = true);
        assert_eq!(removed.await.unwrap(), 7);
        let now = rx.borrow().clone();
        assert_eq!(wait_for(rx, now, WaitCondition::NotRunning).await, 7);
    }
}
