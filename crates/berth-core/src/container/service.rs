//! The container service: shared state, lookup and listing.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::lifecycle::Lifecycle;
use super::{ContainerError, ContainerPaths, ContainerRecord};
use crate::events::{Event, EventBus};
use crate::image::ImageService;
use crate::locks::NameLocks;
use crate::network::NetworkService;
use crate::store::Store;
use crate::volume::{Filters, VolumeService};

/// Where and how containers run.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// `<root>/containers`.
    pub containers_dir: PathBuf,
    /// The runtime's state root (`<root>/runtime`).
    pub runtime_root: PathBuf,
    /// The `berth` binary to run as `berth shim`.
    pub shim_exe: PathBuf,
    /// Default external OCI runtime (`None`: embedded libcontainer).
    pub default_runtime: Option<String>,
    /// The daemon's log options and ulimits for every container.
    pub defaults: super::options::ContainerDefaults,
}

/// Container operations.
pub struct ContainerService {
    pub(super) store: Arc<Store>,
    pub(super) images: Arc<ImageService>,
    pub(super) volumes: Arc<VolumeService>,
    pub(super) settings: RuntimeSettings,
    pub(super) locks: NameLocks,
    pub(super) lifecycles: parking_lot::Mutex<HashMap<String, watch::Sender<Lifecycle>>>,
    /// Containers a remove is working on (Docker's removal-in-progress
    /// flag): a start is refused, a second remove is a 409.
    pub(super) removing: parking_lot::Mutex<HashSet<String>>,
    pub(super) events: Arc<EventBus>,
    pub(super) networks: Arc<NetworkService>,
    /// Held while addresses and host ports are chosen and recorded.
    pub(super) attach_lock: parking_lot::Mutex<()>,
    /// Execs until their container stops (kept in memory, as moby does).
    pub(super) execs: super::exec::ExecTable,
    /// Restarts waiting for their back-off.
    pub(super) restarts: super::restart::RestartTable,
    /// Containers a `docker restart` is stopping (their exit is neither
    /// restarted by the policy nor auto-removed).
    pub(super) manual_restarts: parking_lot::Mutex<HashSet<String>>,
    /// Containers stopped or killed (SIGKILL or their stop signal) since
    /// their start: their next exit is not restarted (moby's
    /// `ExitOnNext`, which cancels the restart manager).
    pub(super) exit_on_next: parking_lot::Mutex<HashSet<String>>,
}

impl ContainerService {
    pub fn new(
        store: Arc<Store>,
        images: Arc<ImageService>,
        volumes: Arc<VolumeService>,
        settings: RuntimeSettings,
    ) -> Result<Self, ContainerError> {
        for dir in [&settings.containers_dir, &settings.runtime_root] {
            std::fs::create_dir_all(dir)
                .map_err(|e| ContainerError::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(ContainerService {
            networks: Arc::new(NetworkService::new(store.clone())),
            attach_lock: parking_lot::Mutex::new(()),
            execs: Default::default(),
            restarts: Default::default(),
            manual_restarts: Default::default(),
            exit_on_next: Default::default(),
            store,
            images,
            volumes,
            settings,
            locks: NameLocks::default(),
            lifecycles: parking_lot::Mutex::new(HashMap::new()),
            removing: parking_lot::Mutex::new(HashSet::new()),
            events: Arc::new(EventBus::placeholder()),
        })
    }

    /// Uses `networks` (the daemon's one service) for network look-ups.
    pub fn with_networks(mut self, networks: Arc<NetworkService>) -> Self {
        self.networks = networks;
        self
    }

    /// Publishes this service's events on `bus` (shared with the others).
    pub fn with_events(mut self, bus: Arc<EventBus>) -> Self {
        self.events = bus;
        self
    }

    /// A container event with Docker's standard attributes (image, name).
    pub(super) fn publish(&self, action: &str, c: &ContainerRecord, extra: &[(&str, &str)]) {
        let mut attributes = vec![
            ("image", c.config.image.as_str()),
            ("name", c.name.as_str()),
        ];
        attributes.extend_from_slice(extra);
        self.events
            .publish(Event::now("container", action, &c.id, &attributes));
    }

    /// Finds a container by full ID, name (with or without `/`), or unique
    /// ID prefix, in Docker's order.
    pub fn resolve(&self, name_or_id: &str) -> Result<ContainerRecord, ContainerError> {
        if name_or_id.is_empty() {
            return Err(ContainerError::InvalidConfig(
                "invalid name or ID supplied: \"\"".into(),
            ));
        }
        if let Some(c) = self.store.get_container(name_or_id)? {
            return Ok(c);
        }
        if let Some(c) = self
            .store
            .container_by_name(name_or_id.trim_start_matches('/'))?
        {
            return Ok(c);
        }
        let ids = self.store.container_ids_with_prefix(name_or_id)?;
        match ids.as_slice() {
            [id] => self
                .store
                .get_container(id)?
                .ok_or_else(|| ContainerError::NotFound(name_or_id.into())),
            [] => Err(ContainerError::NotFound(name_or_id.into())),
            _ => Err(ContainerError::Ambiguous(name_or_id.into())),
        }
    }

    /// Containers matching `filters` (keys: status, label, name, id,
    /// ancestor, exited, health, volume), newest first; stopped ones only
    /// with `all`.
    pub fn list(
        &self,
        all: bool,
        filters: &Filters,
    ) -> Result<Vec<ContainerRecord>, ContainerError> {
        const KEYS: [&str; 8] = [
            "status", "label", "name", "id", "ancestor", "exited", "health", "volume",
        ];
        if let Some(bad) = filters.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(ContainerError::InvalidConfig(format!(
                "invalid filter '{bad}'"
            )));
        }
        let any = |key: &str, test: &dyn Fn(&str) -> bool| {
            filters.get(key).is_none_or(|vs| vs.iter().any(|v| test(v)))
        };
        let all = all || filters.contains_key("status") || filters.contains_key("exited");
        // Compiled once, not per container (Docker's name filter: exact or
        // unanchored regular expression).
        let names = crate::volume::filters::NameFilter::new(filters)
            .map_err(|e| ContainerError::InvalidConfig(e.to_string()))?;
        let out = self
            .store
            .list_containers()?
            .into_iter()
            .filter(|c| all || c.state.status == super::Status::Running || c.state.restarting)
            .filter(|c| any("status", &|v| v == c.state.docker_status()))
            .filter(|c| any("id", &|v| c.id.starts_with(v)))
            .filter(|c| {
                let health = c
                    .state
                    .health
                    .as_ref()
                    .map_or("none", |h| h.status.as_str());
                any("health", &|v| v == health)
            })
            .filter(|c| names.matches(&c.name))
            .filter(|c| any("ancestor", &|v| v == c.config.image || v == c.image_id))
            // Docker's: a volume's name, or any mount's destination.
            .filter(|c| {
                any("volume", &|v| {
                    (c.mounts.iter())
                        .any(|m| (m.kind == "volume" && m.name == v) || m.destination == v)
                })
            })
            .filter(|c| {
                any("exited", &|v| {
                    c.state.status == super::Status::Exited && v == c.state.exit_code.to_string()
                })
            })
            .filter(|c| {
                let labels = c.config.labels.clone().unwrap_or_default();
                crate::volume::filters::labels_match(filters, "label", &labels)
            })
            .collect();
        Ok(out)
    }

    /// The folder layout of container `id`.
    pub fn paths(&self, id: &str) -> ContainerPaths {
        ContainerPaths::new(&self.settings.containers_dir, id)
    }

    /// Containers using an image (they block its removal), with whether
    /// each is running, running ones first.
    pub fn using_image(&self, image_id: &str) -> Vec<(String, bool)> {
        let mut users: Vec<(String, bool)> = self
            .store
            .containers_using_image(image_id)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| self.store.get_container(&id).ok().flatten())
            .map(|c| (c.id, c.state.status == super::Status::Running))
            .collect();
        users.sort_by_key(|(_, running)| !running);
        users
    }

    /// `image prune`: the images `filters` select that no container (in
    /// any state) uses.
    pub fn prune_images(
        &self,
        filters: &Filters,
    ) -> Result<crate::image::ImagePruneReport, ContainerError> {
        let in_use = self
            .store
            .list_containers()?
            .into_iter()
            .map(|c| c.image_id)
            .collect();
        Ok(self.images.prune(filters, &in_use)?)
    }
}
