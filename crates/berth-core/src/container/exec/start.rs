//! Starting an exec: its process made from the container's spec, launched
//! through the helper, and watched until it ends.

use std::os::fd::AsFd;
use std::sync::Arc;

use serde_json::Value;

use super::launch::{self, ExecIo, ExecLaunch, StartedExec};
use super::process::{exec_process, ExecProcessInput};
use super::{ExecError, ExecInstance, ExecSession, WindowSize};
use crate::container::options::caps::daemon_capabilities;
use crate::container::{user, ContainerRecord, ContainerService};

impl ContainerService {
    /// Writes the exec's process, launches it and starts watching it.
    pub(super) fn launch_exec(
        self: &Arc<Self>,
        exec: &Arc<ExecInstance>,
        record: &ContainerRecord,
        attached: bool,
        console_size: Option<WindowSize>,
    ) -> Result<ExecSession, ExecError> {
        let paths = self.paths(&record.id);
        let process = self.exec_process_for(exec, record, console_size)?;
        let process_file = launch::process_file(paths.dir(), &exec.id);
        let bytes = serde_json::to_vec(&process).map_err(|e| ExecError::Launch {
            message: format!("serialising the process: {e}"),
            cause: super::FailureCause::Other,
        })?;
        crate::root::write_private(&process_file, &bytes).map_err(|e| ExecError::Launch {
            message: format!("writing {}: {e}", process_file.display()),
            cause: super::FailureCause::Other,
        })?;
        let req = &exec.request;
        let launched = launch::launch(&ExecLaunch {
            exe: self.settings.shim_exe.clone(),
            container_id: record.id.clone(),
            runtime_root: self.settings.runtime_root.clone(),
            bundle: paths.bundle(),
            process_file: process_file.clone(),
            state_dir: paths.dir().to_path_buf(),
            tty: req.tty,
            stdin: req.attach_stdin,
            attached,
        });
        let _ = std::fs::remove_file(&process_file);
        let mut started = launched?;
        let io = std::mem::replace(&mut started.io, ExecIo::Detached);
        self.record_exec_started(exec, record, &started, &io);
        self.watch_exec(exec.clone(), record.clone(), started);
        Ok(ExecSession {
            io,
            exit: exec.exit.subscribe(),
            detach_keys: if exec.detach_keys.is_empty() {
                super::DEFAULT_DETACH_KEYS.to_vec()
            } else {
                exec.detach_keys.clone()
            },
        })
    }

    /// The OCI process: the container's, with the exec's changes.
    fn exec_process_for(
        &self,
        exec: &ExecInstance,
        record: &ContainerRecord,
        console_size: Option<WindowSize>,
    ) -> Result<Value, ExecError> {
        let paths = self.paths(&record.id);
        let spec_path = paths.bundle().join("config.json");
        let spec: Value = std::fs::read(&spec_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ExecError::ContainerNotRunning(record.id.clone()))?;
        let mut request = exec.request.clone();
        if console_size.is_some() {
            request.console_size = console_size;
        }
        let user = if request.user.is_empty() {
            None
        } else {
            Some(
                user::resolve(&paths.rootfs(), &request.user)
                    .map_err(|e| ExecError::User(e.to_string()))?,
            )
        };
        let privileged_caps = request.privileged.then(daemon_capabilities);
        let input = ExecProcessInput {
            request: &request,
            user,
            privileged_caps,
        };
        Ok(exec_process(&spec["process"], &input))
    }

    fn record_exec_started(
        &self,
        exec: &ExecInstance,
        record: &ContainerRecord,
        started: &StartedExec,
        io: &ExecIo,
    ) {
        let mut state = exec.state.lock();
        state.pid = Some(started.pid);
        if let ExecIo::Terminal { master } = io {
            state.terminal = master.as_fd().try_clone_to_owned().ok();
        }
        drop(state);
        let action = format!("exec_start: {}", exec.request.cmd.join(" "));
        self.publish(&action, record, &[("execID", &exec.id)]);
    }

    /// A thread that waits for the helper's `exited` and records it.
    fn watch_exec(
        self: &Arc<Self>,
        exec: Arc<ExecInstance>,
        record: ContainerRecord,
        mut started: StartedExec,
    ) {
        let svc = self.clone();
        std::thread::spawn(move || {
            let code = launch::wait_exit(&mut started);
            exec.finish(code);
            let code = code.to_string();
            svc.publish(
                "exec_die",
                &record,
                &[("execID", &exec.id), ("exitCode", &code)],
            );
        });
    }
}
