//! `docker exec`: processes started in a running container, as moby keeps
//! them (`daemon/exec.go`): an exec is created (checked, given an ID,
//! kept in memory), started once, inspected while and after it runs, and
//! forgotten when its container stops or is removed. [`process`] builds its
//! OCI process from the container's, [`launch`] runs it through the
//! `berth exec-shim` helper.

mod launch;
mod process;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rand::RngCore;
use tokio::sync::watch;

use super::detach_keys::{parse_detach_keys, DEFAULT_DETACH_KEYS};
use super::shim_protocol::{FailureCause, Pid};
use super::user;
use super::{ContainerRecord, ContainerService, Status};
use crate::error::ErrorKind;
pub use crate::sys::terminal::WindowSize;
pub use launch::ExecIo;
pub use process::{exec_env, exec_process, ExecProcessInput};

/// How long a resize waits for a start still launching.
const RESIZE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What `POST /containers/{id}/exec` asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub privileged: bool,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    /// `DetachKeys` as sent (empty: the default).
    pub detach_keys: String,
    pub console_size: Option<WindowSize>,
}

/// An exec failure, in moby's words.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("No such exec instance: {0}")]
    NotFound(String),
    #[error("container {0} is not running")]
    ContainerNotRunning(String),
    #[error("Container {0} is paused, unpause the container before exec")]
    ContainerPaused(String),
    #[error("No exec command specified")]
    NoCommand,
    #[error("{0}")]
    InvalidDetachKeys(String),
    #[error("exec command {0} is already running")]
    AlreadyRunning(String),
    #[error("exec command {0} has already run")]
    AlreadyRan(String),
    #[error("{0}")]
    User(String),
    #[error("OCI runtime exec failed: {message}")]
    Launch {
        message: String,
        cause: FailureCause,
    },
    #[error("resizing the exec's terminal: {0}")]
    Resize(std::io::Error),
    #[error(transparent)]
    Container(Box<super::ContainerError>),
}

impl ExecError {
    pub fn kind(&self) -> ErrorKind {
        use ExecError::*;
        match self {
            NotFound(_) => ErrorKind::NotFound,
            ContainerNotRunning(_) | ContainerPaused(_) | AlreadyRunning(_) | AlreadyRan(_) => {
                ErrorKind::Conflict
            }
            NoCommand | User(_) => ErrorKind::InvalidArgument,
            Launch { cause, .. } if *cause != FailureCause::Other => ErrorKind::InvalidArgument,
            // moby answers a bad DetachKeys with a plain error: a 500.
            InvalidDetachKeys(_) | Launch { .. } | Resize(_) => ErrorKind::Internal,
            Container(e) => e.kind(),
        }
    }

    /// The exit code moby records for an exec that could not start
    /// (`setExitCodeFromError`): 127 not found, 126 not runnable, 128
    /// anything else.
    fn exit_code(&self) -> i64 {
        match self {
            ExecError::Launch { cause, .. } => match cause {
                FailureCause::ProgramNotFound => 127,
                FailureCause::NotExecutable => 126,
                FailureCause::Other => 128,
            },
            _ => 126,
        }
    }
}

/// Where an exec is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Created,
    Running,
    Ended,
}

#[derive(Debug)]
struct ExecState {
    phase: Phase,
    pid: Option<Pid>,
    exit_code: Option<i64>,
    /// A copy of the terminal's master, for resizes.
    terminal: Option<OwnedFd>,
}

/// One exec, from create until its container stops.
#[derive(Debug)]
pub struct ExecInstance {
    pub id: String,
    pub container_id: String,
    pub request: ExecRequest,
    /// As given (empty: none given, the default applies).
    pub detach_keys: Vec<u8>,
    state: parking_lot::Mutex<ExecState>,
    exit: watch::Sender<Option<i64>>,
}

/// What `GET /exec/{id}/json` shows.
#[derive(Debug, Clone)]
pub struct ExecInfo {
    pub id: String,
    pub container_id: String,
    pub request: ExecRequest,
    pub detach_keys: Vec<u8>,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: Option<Pid>,
}

/// A started, attached exec: its streams and the exit to wait for.
#[derive(Debug)]
pub struct ExecSession {
    pub io: ExecIo,
    /// Becomes `Some(code)` when the process has ended.
    pub exit: watch::Receiver<Option<i64>>,
    pub detach_keys: Vec<u8>,
}

/// An exec that passed the start checks and is marked running.
#[derive(Debug)]
pub struct ClaimedExec {
    exec: Arc<ExecInstance>,
    record: ContainerRecord,
}

/// The execs of the daemon, by ID (moby's `execStore`).
pub(super) type ExecTable = parking_lot::Mutex<HashMap<String, Arc<ExecInstance>>>;

impl ContainerService {
    /// `POST /containers/{id}/exec`: checks and records an exec.
    pub fn exec_create(&self, name_or_id: &str, request: ExecRequest) -> Result<String, ExecError> {
        let record = self.running_container(name_or_id)?;
        if request.cmd.is_empty() {
            return Err(ExecError::NoCommand);
        }
        if !request.user.is_empty() {
            // Looked up now for an early error, as moby does (and again
            // at start: the container may change its /etc/passwd).
            user::resolve(&self.paths(&record.id).rootfs(), &request.user)
                .map_err(|e| ExecError::User(e.to_string()))?;
        }
        let detach_keys = if request.detach_keys.is_empty() {
            Vec::new()
        } else {
            parse_detach_keys(&request.detach_keys).map_err(|_| {
                ExecError::InvalidDetachKeys(format!(
                    "Invalid escape keys ({}) provided",
                    request.detach_keys
                ))
            })?
        };
        let id = new_exec_id();
        let action = format!("exec_create: {}", request.cmd.join(" "));
        let instance = ExecInstance {
            id: id.clone(),
            container_id: record.id.clone(),
            request,
            detach_keys,
            state: parking_lot::Mutex::new(ExecState {
                phase: Phase::Created,
                pid: None,
                exit_code: None,
                terminal: None,
            }),
            exit: watch::channel(None).0,
        };
        self.execs.lock().insert(id.clone(), Arc::new(instance));
        self.publish(&action, &record, &[("execID", &id)]);
        Ok(id)
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, exec_id: &str) -> Result<ExecInfo, ExecError> {
        let exec = self.exec(exec_id)?;
        let state = exec.state.lock();
        Ok(ExecInfo {
            id: exec.id.clone(),
            container_id: exec.container_id.clone(),
            request: exec.request.clone(),
            detach_keys: exec.detach_keys.clone(),
            running: state.phase == Phase::Running,
            exit_code: state.exit_code,
            pid: state.pid,
        })
    }

    /// `POST /exec/{id}/resize`: a no-op for an exec without a terminal.
    /// A start still launching is waited for (moby waits up to 10 s).
    pub fn exec_resize(&self, exec_id: &str, size: WindowSize) -> Result<(), ExecError> {
        let exec = self.exec(exec_id)?;
        self.running_container(&exec.container_id)?;
        let deadline = std::time::Instant::now() + RESIZE_WAIT;
        loop {
            let state = exec.state.lock();
            let launching = state.phase == Phase::Running && state.pid.is_none();
            if !launching || std::time::Instant::now() > deadline {
                return match &state.terminal {
                    Some(master) => crate::sys::terminal::set_window_size(master.as_fd(), size)
                        .map_err(ExecError::Resize),
                    None => Ok(()),
                };
            }
            drop(state);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// `POST /exec/{id}/start`: runs the process once. `attached` gives
    /// its streams to the caller; detached, its output is discarded.
    pub fn exec_start(
        self: &Arc<Self>,
        exec_id: &str,
        attached: bool,
        console_size: Option<WindowSize>,
    ) -> Result<ExecSession, ExecError> {
        let claimed = self.exec_claim(exec_id)?;
        self.exec_launch(claimed, attached, console_size)
    }

    /// The checks of a start (the exec exists, has not run, its container
    /// runs), and the exec marked running: a second start is a conflict.
    /// The API answers these before it upgrades the connection.
    pub fn exec_claim(&self, exec_id: &str) -> Result<ClaimedExec, ExecError> {
        let exec = self.exec(exec_id)?;
        let record = self.running_container(&exec.container_id)?;
        exec.claim()?;
        Ok(ClaimedExec { exec, record })
    }

    /// Launches a claimed exec; a failure is recorded as its exit (127,
    /// 126 or 128, as moby).
    pub fn exec_launch(
        self: &Arc<Self>,
        claimed: ClaimedExec,
        attached: bool,
        console_size: Option<WindowSize>,
    ) -> Result<ExecSession, ExecError> {
        let ClaimedExec { exec, record } = claimed;
        self.launch_exec(&exec, &record, attached, console_size)
            .inspect_err(|e| exec.finish(e.exit_code()))
    }

    /// Forgets the execs of a container that stopped or was removed.
    pub(super) fn forget_execs(&self, container_id: &str) {
        self.execs
            .lock()
            .retain(|_, e| e.container_id != container_id);
    }

    fn exec(&self, exec_id: &str) -> Result<Arc<ExecInstance>, ExecError> {
        self.execs
            .lock()
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ExecError::NotFound(exec_id.to_string()))
    }

    /// The container, which must be running (moby's `getActiveContainer`).
    fn running_container(&self, name_or_id: &str) -> Result<ContainerRecord, ExecError> {
        let record = self
            .resolve(name_or_id)
            .map_err(|e| ExecError::Container(Box::new(e)))?;
        if record.state.status != Status::Running {
            return Err(ExecError::ContainerNotRunning(record.id));
        }
        if self.is_paused(&record.id) {
            return Err(ExecError::ContainerPaused(record.id));
        }
        Ok(record)
    }
}

impl ExecInstance {
    /// Moves a created exec to running; a second start is a conflict.
    fn claim(&self) -> Result<(), ExecError> {
        let mut state = self.state.lock();
        match state.phase {
            Phase::Created => {
                state.phase = Phase::Running;
                Ok(())
            }
            Phase::Running => Err(ExecError::AlreadyRunning(self.id.clone())),
            Phase::Ended => Err(ExecError::AlreadyRan(self.id.clone())),
        }
    }

    /// Records the end and wakes the session.
    fn finish(&self, code: i64) {
        let mut state = self.state.lock();
        state.phase = Phase::Ended;
        state.exit_code = Some(code);
        state.terminal = None;
        drop(state);
        self.exit.send_replace(Some(code));
    }
}

/// 64 hex digits, as Docker's exec IDs.
fn new_exec_id() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

mod start;
