//! Containers: create from an image, run through `berth shim`, stop, kill,
//! wait, remove, and find again after a daemon restart.
//!
//! Split by operation: [`create`] (merge with the image, names, mounts),
//! [`lifecycle`] (start, exit, stop, kill, wait), [`network`] (network
//! modes, endpoints set up at start and undone at exit), [`remove`] (remove,
//! prune), [`recover`] (start-up: live restore and repair after a crash);
//! [`spec`] writes the OCI spec, [`paths`] owns the container's folder and
//! root filesystem, [`shim`] talks to the shim over [`shim_protocol`],
//! [`cgroup`] finds and ends a container's processes, [`jsonlog`] is the
//! log format.

pub mod backup_control;
mod bundle;
pub mod cgroup;
pub mod changes;
pub mod commit;
mod connect;
pub mod copy;
mod copyup;
mod create;
pub mod detach_keys;
mod error;
pub mod exec;
mod export;
pub mod health;
pub mod jsonlog;
mod lifecycle;
pub mod logrotate;
mod model;
pub mod mounts;
pub mod names;
mod netconfig;
mod netview;
mod network;
pub mod options;
mod paths;
mod pause;
mod recover;
mod remove;
mod rename;
pub mod restart;
mod service;
pub mod shim;
pub mod shim_protocol;
pub mod spec;
pub mod stats;
pub mod top;
mod update;
mod usage;
mod user;
mod view;

pub use create::CreateContainer;
pub use error::ContainerError;
pub use lifecycle::{parse_signal, wait_for, Lifecycle, WaitCondition};
pub use model::{ContainerConfig, ContainerRecord, ContainerState, HostConfig, MountPoint, Status};
pub use netconfig::NetworkMode;
pub use netview::NetworkView;
pub use network::{NetworkFacts, SpecNetwork};
pub use paths::ContainerPaths;
pub use recover::RecoveryReport;
pub use remove::PruneReport;
pub use service::{ContainerService, RuntimeSettings};
pub use usage::{image_usage, ContainerUsage, DiskUsage, ImageUsage};
