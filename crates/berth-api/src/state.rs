//! What handlers share: the core services and facts about the daemon that
//! the daemon gathered at start (the API layer reads no files itself).

use std::path::PathBuf;
use std::sync::Arc;

use berth_core::container::ContainerService;
use berth_core::image::ImageService;
use berth_core::volume::VolumeService;

/// Facts about this daemon and host, for `/info` and `/version`.
#[derive(Debug, Clone, Default)]
pub struct DaemonFacts {
    /// Stable daemon ID (persisted in the root).
    pub id: String,
    pub hostname: String,
    pub root_dir: PathBuf,
    pub kernel_version: String,
    pub operating_system: String,
    pub os_version: String,
    pub architecture: String,
    pub ncpu: usize,
    pub mem_total: u64,
    pub cgroup_version: String,
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct ApiState {
    pub volumes: Arc<VolumeService>,
    pub backups: Arc<berth_core::backup::BackupService>,
    pub images: Arc<ImageService>,
    pub containers: Arc<ContainerService>,
    pub events: Arc<berth_core::events::EventBus>,
    pub networks: Arc<berth_core::network::NetworkService>,
    pub facts: Arc<DaemonFacts>,
    /// The API's request counters (`--metrics-addr`).
    pub metrics: Arc<crate::metrics::ApiMetrics>,
}
