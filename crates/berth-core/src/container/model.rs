//! A container as berth keeps it: Docker's `Config` and `HostConfig` (the
//! parts berth acts on, everything else kept as sent), the resolved
//! command, and its state.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::shim_protocol::Pid;

/// `container.Config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    #[serde(deserialize_with = "str_slice")]
    pub cmd: Option<Vec<String>>,
    pub image: String,
    pub volumes: Option<BTreeMap<String, Value>>,
    pub working_dir: String,
    #[serde(deserialize_with = "str_slice")]
    pub entrypoint: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `container.HostConfig` (the fields berth acts on; the rest kept).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    pub network_mode: String,
    pub auto_remove: bool,
    pub volumes_from: Option<Vec<String>>,
    pub mounts: Option<Vec<Value>>,
    pub runtime: String,
    pub volume_driver: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Docker's `strslice`: a JSON string or an array of strings (or null).
fn str_slice<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    })
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    /// The shim has created the container and both pids are recorded; the
    /// start is not acknowledged yet. Found at start-up, it means the
    /// daemon died mid-start: the shim and its processes are ended.
    Starting,
    Running,
    Exited,
    Removing,
    Dead,
}

impl Status {
    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            // Docker has no such state: a start in progress shows "created".
            Status::Created | Status::Starting => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Removing => "removing",
            Status::Dead => "dead",
        }
    }
}

/// `State` of a container (persisted).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerState {
    pub status: Status,
    /// Host PID of the container's first process while running (stored
    /// and shown as Docker does: 0 for none).
    #[serde(with = "super::shim_protocol::optional_pid", default)]
    pub pid: Option<Pid>,
    /// PID of its shim while one runs.
    #[serde(with = "super::shim_protocol::optional_pid", default)]
    pub shim_pid: Option<Pid>,
    pub exit_code: i64,
    pub error: String,
    pub oom_killed: bool,
    /// Frozen by `pause` (while running).
    #[serde(default)]
    pub paused: bool,
    /// Exited, waiting for its restart policy's back-off.
    #[serde(default)]
    pub restarting: bool,
    /// Restarts by the policy since the last manual start.
    #[serde(default)]
    pub restart_count: i64,
    /// Stopped by `docker stop`/`kill` (moby's `HasBeenManuallyStopped`).
    #[serde(default)]
    pub manually_stopped: bool,
    /// `State.Health` of a container with a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::health::Health>,
    /// RFC 3339 with nanoseconds, or `None` for Docker's zero time.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl ContainerState {
    /// Docker's `State.Status`: a paused running container is "paused".
    pub fn docker_status(&self) -> &'static str {
        if self.status == Status::Running && self.paused {
            "paused"
        } else if self.restarting {
            "restarting"
        } else {
            self.status.as_str()
        }
    }
}

/// A mount the container gets, resolved at create.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    /// Volume name (for `volume`), empty otherwise.
    pub name: String,
    /// Host path (bind source or volume mountpoint).
    pub source: String,
    pub destination: String,
    pub driver: String,
    pub mode: String,
    pub rw: bool,
    pub propagation: String,
    /// Created for this container (anonymous volume): removed with `rm -v`.
    #[serde(default)]
    pub anonymous: bool,
    /// tmpfs options.
    #[serde(default)]
    pub options: Vec<String>,
    /// Folder inside the volume mounted instead of its root.
    #[serde(default)]
    pub subpath: Option<String>,
    /// Do not copy image content into an empty volume.
    #[serde(default)]
    pub nocopy: bool,
    /// Whether the bind takes the source's sub-mounts, and how far
    /// read-only reaches into them.
    #[serde(default)]
    pub recursion: Recursion,
}

/// Docker's `BindOptions` recursion flags. By default a bind takes the
/// sub-mounts of its source (`rbind`) and read-only reaches into them
/// (`rro`, API 1.44 and later).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Recursion {
    /// `bind-recursive=disabled`: the source alone, without its sub-mounts.
    #[serde(default)]
    pub non_recursive: bool,
    /// `bind-recursive=writable`, and every read-only bind of an API older
    /// than 1.44: read-only at the top only.
    #[serde(default)]
    pub readonly_non_recursive: bool,
    /// `bind-recursive=readonly`: recursively read-only or fail.
    #[serde(default)]
    pub readonly_force_recursive: bool,
}

/// One container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub image_id: String,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// The resolved program and its arguments.
    pub path: String,
    pub args: Vec<String>,
    pub mounts: Vec<MountPoint>,
    pub state: ContainerState,
    /// The networks it is configured for (`bridge`/user network modes).
    pub networks: crate::network::EndpointsConfig,
}

impl ContainerRecord {
    /// The first 12 characters of the ID.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}
