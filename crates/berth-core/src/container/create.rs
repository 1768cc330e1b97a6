//! Container create: merge the request with the image (Docker's rules),
//! pick a name, resolve mounts (creating volumes and taking references),
//! record the container.

use std::collections::BTreeMap;

use super::model::{ContainerConfig, ContainerState, HostConfig, MountPoint};
use super::mounts::{parse_api_mount, parse_bind, parse_tmpfs_entry, BindSource, BindSpec};
use super::netconfig::NetworkMode;
use super::options::ContainerOptions;
use super::{names, ContainerError, ContainerRecord, ContainerService};
use crate::image::config::RunConfig;
use crate::image::platform::Platform;
use crate::image::{ImageConfig, ImageError};
use crate::store::ImageRecord;
use crate::volume::CreateRequest;

/// A create request.
#[derive(Debug, Clone, Default)]
pub struct CreateContainer {
    pub name: Option<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// The request came with an API version before 1.44, where read-only
    /// binds are read-only at their top only (Docker keeps that for them).
    pub readonly_top_only: bool,
    /// `?platform=`: the image must be of this platform.
    pub platform: Option<Platform>,
    /// `NetworkingConfig.EndpointsConfig`: per network, its settings.
    pub endpoints: crate::network::EndpointsConfig,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ContainerService {
    /// Creates a container; returns it with warnings for the client.
    pub fn create(
        &self,
        req: CreateContainer,
    ) -> Result<(ContainerRecord, Vec<String>), ContainerError> {
        let requested_name = requested_name(req.name.as_deref())?;
        super::options::check_working_dir(&req.config.working_dir)?;
        let image = self.images.resolve(&req.config.image)?;
        let image_config = self.images.config(&image)?;
        check_platform(&req.config.image, req.platform.as_ref(), &image_config)?;
        let mut config = merge(req.config, &image_config);
        let (path, args) = command(&config)?;
        let warnings = Vec::new();
        let mut host_config = check_runtime(req.host_config)?;
        let mode = NetworkMode::parse(&host_config.network_mode);
        if mode == NetworkMode::Bridge {
            // As moby 26: "" and "default" are stored as "bridge".
            host_config.network_mode = "bridge".into();
        }
        check_ports(&config, &host_config)?;
        let legacy_mac = config.extra.get("MacAddress").and_then(|m| m.as_str());
        let networks = self.configure_networks(&mode, req.endpoints, legacy_mac)?;
        self.settings
            .defaults
            .merge_log_config(&mut host_config.extra);
        let options = ContainerOptions::parse(&config, &host_config)?;
        if options.uts_host && !config.hostname.is_empty() {
            return Err(ContainerError::InvalidConfig(
                "conflicting options: hostname and the UTS mode".into(),
            ));
        }
        let id = new_id();
        if config.hostname.is_empty() {
            config.hostname = id[..12].to_string();
        }
        self.check_name_free(requested_name.as_deref())?;
        let mut mounts = self.resolve_mounts(&id, &config, &host_config)?;
        if req.readonly_top_only {
            mounts.iter_mut().for_each(read_only_at_top_only);
        }
        let mounts = self.copy_up_or_release(&id, &image, mounts)?;
        let mut record = ContainerRecord {
            id: id.clone(),
            name: requested_name.clone().unwrap_or_default(),
            image_id: image.id.clone(),
            created: super::jsonlog::now_rfc3339_nano(),
            config,
            host_config,
            path,
            args,
            mounts,
            state: ContainerState::default(),
            networks,
        };
        self.record_or_release(&mut record, requested_name.is_some())?;
        tracing::info!(container = %id, name = %record.name, image = %image.id, "container created");
        self.publish("create", &record, &[]);
        Ok((record, warnings))
    }

    /// Copy-up for a new container; on failure its volume references (and
    /// the anonymous volumes it made) and its folder are dropped again.
    fn copy_up_or_release(
        &self,
        id: &str,
        image: &ImageRecord,
        mounts: Vec<MountPoint>,
    ) -> Result<Vec<MountPoint>, ContainerError> {
        if let Err(e) = self.copy_up(id, image, &mounts) {
            let partial = ContainerRecord {
                mounts,
                ..placeholder(id)
            };
            self.release_mounts(&partial, true);
            let _ = self.paths(id).remove_all();
            return Err(e);
        }
        Ok(mounts)
    }

    /// Records the new container; if that fails, its mounts are released
    /// so no volume stays referenced by a container that does not exist.
    fn record_or_release(
        &self,
        record: &mut ContainerRecord,
        name_requested: bool,
    ) -> Result<(), ContainerError> {
        if let Err(e) = self.record_new(record, name_requested) {
            self.release_mounts(record, true);
            return Err(e);
        }
        Ok(())
    }

    fn record_new(
        &self,
        record: &mut ContainerRecord,
        name_requested: bool,
    ) -> Result<(), ContainerError> {
        let paths = self.paths(&record.id);
        paths.create()?;
        let inserted = if name_requested {
            self.store.insert_container(record)
        } else {
            self.insert_with_generated_name(record)
        };
        match inserted {
            Ok(true) => {}
            Ok(false) => {
                let _ = paths.remove_all();
                let id = self.store.container_by_name(&record.name)?.map(|c| c.id);
                return Err(ContainerError::NameInUse {
                    name: record.name.clone(),
                    id: id.unwrap_or_default(),
                });
            }
            Err(e) => {
                let _ = paths.remove_all();
                return Err(e.into());
            }
        }
        self.lifecycle_sender(&record.id);
        Ok(())
    }

    /// Docker's generated names, each tried by inserting it (the database
    /// decides who gets a name two creates draw at once): six draws (a
    /// digit appended after the first), then the short ID.
    fn insert_with_generated_name(
        &self,
        record: &mut ContainerRecord,
    ) -> Result<bool, crate::store::StoreError> {
        for attempt in 0..6 {
            record.name = names::generate(attempt);
            if self.store.insert_container(record)? {
                return Ok(true);
            }
        }
        record.name = record.id[..12].to_string();
        self.store.insert_container(record)
    }

    /// A requested name already taken is refused before any volume is
    /// made (the insert checks again).
    fn check_name_free(&self, requested: Option<&str>) -> Result<(), ContainerError> {
        if let Some(name) = requested {
            if let Some(other) = self.store.container_by_name(name)? {
                return Err(ContainerError::NameInUse {
                    name: name.to_string(),
                    id: other.id,
                });
            }
        }
        Ok(())
    }

    /// Binds, `--volumes-from` and the image's `VOLUME`s, with volumes
    /// created on first use and referenced by this container. On error the
    /// references taken so far are released.
    fn resolve_mounts(
        &self,
        id: &str,
        config: &ContainerConfig,
        host: &HostConfig,
    ) -> Result<Vec<MountPoint>, ContainerError> {
        let mut mounts: Vec<MountPoint> = Vec::new();
        if let Err(e) = self.collect_mounts(id, config, host, &mut mounts) {
            let partial = ContainerRecord {
                mounts,
                ..placeholder(id)
            };
            self.release_mounts(&partial, true);
            return Err(e);
        }
        Ok(mounts)
    }

    /// Explicit binds first; `--volumes-from` and image volumes only fill
    /// destinations nothing else covers (Docker's precedence).
    fn collect_mounts(
        &self,
        id: &str,
        config: &ContainerConfig,
        host: &HostConfig,
        mounts: &mut Vec<MountPoint>,
    ) -> Result<(), ContainerError> {
        let binds = host.binds.iter().flatten().map(|b| parse_bind(b));
        let api_mounts = host.mounts.iter().flatten().map(parse_api_mount);
        let tmpfs: Vec<(String, String)> = host
            .extra
            .get("Tmpfs")
            .and_then(|t| t.as_object())
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let tmpfs = tmpfs
            .iter()
            .map(|(dest, data)| parse_tmpfs_entry(dest, data));
        for spec in binds.chain(api_mounts).chain(tmpfs) {
            let spec = spec?;
            if mounts.iter().any(|m| m.destination == spec.destination) {
                return Err(ContainerError::InvalidConfig(format!(
                    "Duplicate mount point: {}",
                    spec.destination
                )));
            }
            mounts.push(self.mount_for(id, &spec, &host.volume_driver)?);
        }
        for entry in host.volumes_from.iter().flatten() {
            self.add_volumes_from(id, entry, mounts)?;
        }
        let image_volumes = config.volumes.iter().flat_map(|v| v.keys());
        for dst in image_volumes.map(|d| super::mounts::clean(d)) {
            if !mounts.iter().any(|m| m.destination == dst) {
                let spec = BindSpec {
                    destination: dst,
                    ..Default::default()
                };
                mounts.push(self.mount_for(id, &spec, &host.volume_driver)?);
            }
        }
        Ok(())
    }

    /// `--volumes-from ctr[:ro|:rw]`: the source container's mount points,
    /// each with a new reference held by this container. `ro` makes them
    /// read-only; a read-only source mount stays read-only even with `rw`.
    fn add_volumes_from(
        &self,
        id: &str,
        entry: &str,
        mounts: &mut Vec<MountPoint>,
    ) -> Result<(), ContainerError> {
        let (name, mode) = entry.split_once(':').unwrap_or((entry, ""));
        if !matches!(mode, "" | "ro" | "rw") {
            return Err(ContainerError::InvalidConfig(format!(
                "invalid mode for volumes-from: {mode}"
            )));
        }
        // A 400, not a 404: the docker CLI takes a 404 from create to mean
        // a missing image and would try to pull it.
        let source = self.resolve(name).map_err(|e| match e {
            ContainerError::NotFound(n) => {
                ContainerError::InvalidConfig(format!("No such container: {n}"))
            }
            other => other,
        })?;
        for m in &source.mounts {
            if mounts.iter().any(|x| x.destination == m.destination) {
                continue;
            }
            if m.kind == "volume" {
                self.volumes.add_ref(&m.name, id)?;
            }
            let rw = m.rw && mode != "ro";
            let shown_mode = if mode.is_empty() {
                m.mode.clone()
            } else {
                mode.to_string()
            };
            mounts.push(MountPoint {
                rw,
                anonymous: false,
                mode: shown_mode,
                ..m.clone()
            });
        }
        Ok(())
    }

    /// The mount point for one request: a bind (host folder made for `-v`),
    /// a tmpfs, or a volume created on first use and referenced by `id`.
    fn mount_for(
        &self,
        id: &str,
        b: &BindSpec,
        default_driver: &str,
    ) -> Result<MountPoint, ContainerError> {
        let point = base_point(b);
        match &b.source {
            BindSource::Host(path) => host_point(point, b, path),
            BindSource::Tmpfs => Ok(MountPoint {
                kind: "tmpfs".into(),
                options: b.tmpfs_options.clone(),
                ..point
            }),
            BindSource::Volume(_) | BindSource::Anonymous => {
                self.volume_point(id, point, b, default_driver)
            }
        }
    }

    /// A volume mount point: the named volume (or a new anonymous one)
    /// created on first use and referenced by `id`; mode `z` if none given.
    fn volume_point(
        &self,
        id: &str,
        mut point: MountPoint,
        b: &BindSpec,
        default_driver: &str,
    ) -> Result<MountPoint, ContainerError> {
        let name = match &b.source {
            BindSource::Volume(n) => Some(n.clone()),
            _ => None,
        };
        point.anonymous = name.is_none();
        let req = CreateRequest {
            name,
            driver: b
                .volume_driver
                .clone()
                .unwrap_or_else(|| default_driver.to_string()),
            options: b.volume_options.clone(),
            labels: b.volume_labels.clone(),
        };
        let (volume, _) = self.volumes.create_referenced(req, id)?;
        point.name = volume.name;
        point.source = volume.mountpoint.display().to_string();
        point.driver = volume.driver;
        if point.mode.is_empty() {
            point.mode = "z".into();
        }
        Ok(point)
    }

    /// Drops this container's volume references; with `remove_anonymous`,
    /// also removes the anonymous volumes it created, unless another
    /// container still holds them.
    pub(super) fn release_mounts(&self, record: &ContainerRecord, remove_anonymous: bool) {
        for m in record.mounts.iter().filter(|m| m.kind == "volume") {
            if let Err(e) = self.volumes.remove_ref(&m.name, &record.id) {
                tracing::warn!(volume = %m.name, error = %e, "could not release volume");
            }
            if remove_anonymous && m.anonymous {
                match self.volumes.remove(&m.name, false) {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::info!(volume = %m.name, reason = %e, "anonymous volume kept")
                    }
                }
            }
        }
    }
}

fn placeholder(id: &str) -> ContainerRecord {
    ContainerRecord {
        id: id.to_string(),
        name: String::new(),
        image_id: String::new(),
        created: String::new(),
        config: ContainerConfig::default(),
        host_config: HostConfig::default(),
        path: String::new(),
        args: Vec::new(),
        mounts: Vec::new(),
        state: ContainerState::default(),
        networks: Default::default(),
    }
}

/// `?platform=` against the image's own (Docker's 404 when they differ).
fn check_platform(
    reference: &str,
    wanted: Option<&Platform>,
    image: &ImageConfig,
) -> Result<(), ContainerError> {
    let Some(wanted) = wanted else {
        return Ok(());
    };
    let actual = image.platform();
    if actual.as_ref().is_some_and(|a| wanted.matches(a)) {
        return Ok(());
    }
    Err(ImageError::PlatformMismatch {
        reference: reference.to_string(),
        wanted: wanted.to_string(),
        actual: actual.map_or_else(|| "nil".to_string(), |a| a.to_string()),
    }
    .into())
}

/// API versions before 1.44 knew no recursive read-only: a read-only bind
/// stays read-only at its top only, and the recursion flags (which those
/// versions could not send) are ignored, as Docker does.
fn read_only_at_top_only(m: &mut MountPoint) {
    m.recursion.readonly_force_recursive = false;
    m.recursion.readonly_non_recursive = !m.rw;
}

/// The request's name checked against Docker's rule, leading `/` dropped;
/// `None` when none or an empty one was given.
fn requested_name(name: Option<&str>) -> Result<Option<String>, ContainerError> {
    name.filter(|n| !n.is_empty())
        .map(names::normalize)
        .transpose()
}

/// What every mount point starts as: a volume mount of the request's
/// destination, mode, access, sub-path and `nocopy`, the rest empty.
fn base_point(b: &BindSpec) -> MountPoint {
    MountPoint {
        kind: "volume".into(),
        name: String::new(),
        source: String::new(),
        destination: b.destination.clone(),
        driver: String::new(),
        mode: b.mode.clone(),
        rw: !b.readonly,
        propagation: String::new(),
        anonymous: false,
        options: Vec::new(),
        subpath: b.subpath.clone(),
        nocopy: b.nocopy,
        recursion: b.recursion,
    }
}

/// A bind mount point of host folder `path` (made first for `-v`, which
/// creates a missing one); propagation defaults to `rprivate`.
fn host_point(point: MountPoint, b: &BindSpec, path: &str) -> Result<MountPoint, ContainerError> {
    // Docker makes a missing `-v` source a folder; an existing file or
    // anything else is bound as it is.
    if b.create_host_path && std::fs::symlink_metadata(path).is_err() {
        std::fs::create_dir_all(path)
            .map_err(|e| ContainerError::io(format!("creating bind source {path}"), e))?;
    }
    let propagation = if b.propagation.is_empty() {
        "rprivate".into()
    } else {
        b.propagation.clone()
    };
    Ok(MountPoint {
        kind: "bind".into(),
        source: path.to_string(),
        propagation,
        ..point
    })
}

fn new_id() -> String {
    crate::volume::names::new_object_id()
}

/// Docker's merge of a create request with the image config.
pub(super) fn merge(mut config: ContainerConfig, image: &ImageConfig) -> ContainerConfig {
    let ic = &image.config;
    if config.user.is_empty() {
        config.user = ic.user.clone().unwrap_or_default();
    }
    if config.working_dir.is_empty() {
        config.working_dir = ic.working_dir.clone().unwrap_or_default();
    }
    if config.stop_signal.is_none() {
        config.stop_signal = ic.stop_signal.clone();
    }
    config.env = Some(merge_env(config.env.take(), ic));
    let mut labels: BTreeMap<String, String> = ic.labels.clone().unwrap_or_default();
    labels.extend(config.labels.take().unwrap_or_default());
    config.labels = Some(labels);
    let mut volumes = ic.volumes.clone().unwrap_or_default();
    volumes.extend(config.volumes.take().unwrap_or_default());
    config.volumes = (!volumes.is_empty()).then_some(volumes);
    let mut exposed = ic.exposed_ports.clone().unwrap_or_default();
    exposed.extend(config.exposed_ports.take().unwrap_or_default());
    config.exposed_ports = (!exposed.is_empty()).then_some(exposed);
    inherit_command(&mut config, ic);
    let health = super::health::merge_healthcheck(
        config.extra.get("Healthcheck"),
        ic.extra.get("Healthcheck"),
    );
    if let Some(health) = health {
        config.extra.insert("Healthcheck".into(), health);
    }
    config
}

/// The request's variables, then the image's whose names it does not set.
fn merge_env(requested: Option<Vec<String>>, ic: &RunConfig) -> Vec<String> {
    let mut env = requested.unwrap_or_default();
    for var in ic.env.iter().flatten() {
        let key = var.split('=').next().unwrap_or_default();
        if !env.iter().any(|e| e.split('=').next() == Some(key)) {
            env.push(var.clone());
        }
    }
    env
}

/// `--entrypoint ""` clears the image's entrypoint; without an entrypoint
/// of its own the request takes the image's cmd (unless it gave one) and,
/// if it said nothing about it, the image's entrypoint. A request's own
/// entrypoint drops the image's cmd.
fn inherit_command(config: &mut ContainerConfig, ic: &RunConfig) {
    if config
        .entrypoint
        .as_ref()
        .is_some_and(|e| e.len() == 1 && e[0].is_empty())
    {
        config.entrypoint = Some(Vec::new());
    }
    let user_entrypoint_empty = config.entrypoint.as_ref().is_none_or(|e| e.is_empty());
    if user_entrypoint_empty {
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            config.cmd = ic.cmd.clone();
        }
        if config.entrypoint.is_none() {
            config.entrypoint = ic.entrypoint.clone();
        }
    }
}

/// `Path` and `Args` from entrypoint and cmd.
fn command(config: &ContainerConfig) -> Result<(String, Vec<String>), ContainerError> {
    let mut full: Vec<String> = config.entrypoint.clone().unwrap_or_default();
    full.extend(config.cmd.clone().unwrap_or_default());
    if full.is_empty() {
        return Err(ContainerError::InvalidConfig("no command specified".into()));
    }
    let path = full.remove(0);
    Ok((path, full))
}

/// Published ports are checked at create (Docker's 400s for a bad port
/// or address); host ports are chosen at start.
fn check_ports(config: &ContainerConfig, host: &HostConfig) -> Result<(), ContainerError> {
    let publish_all = host.extra.get("PublishAllPorts") == Some(&serde_json::Value::Bool(true));
    crate::network::ports::requests(
        host.extra.get("PortBindings"),
        publish_all,
        config.exposed_ports.as_ref(),
    )
    .map(drop)
    .map_err(ContainerError::InvalidConfig)
}

/// Runtime names: Docker's default names (`runc`, shown by inspect) and
/// berth's `berth` mean the daemon's default runtime (the embedded
/// runc-compatible libcontainer unless the daemon was given `--runtime`);
/// an absolute path names an OCI runtime binary; anything else is
/// Docker's 400.
fn check_runtime(mut host: HostConfig) -> Result<HostConfig, ContainerError> {
    match host.runtime.as_str() {
        "" | "berth" | DEFAULT_RUNTIME | "io.containerd.runc.v2" => {
            host.runtime = DEFAULT_RUNTIME.into();
        }
        path if path.starts_with('/') => {}
        other => {
            return Err(ContainerError::InvalidConfig(format!(
                "unknown or invalid runtime name: {other}"
            )))
        }
    }
    Ok(host)
}

/// The runtime name inspect shows for the daemon's default runtime.
pub(super) const DEFAULT_RUNTIME: &str = "runc";

/// The process environment: Docker's PATH and HOSTNAME, overridden by the
/// container's own variables.
pub(super) fn process_env(config: &ContainerConfig) -> Vec<String> {
    let mut env = vec![
        DEFAULT_PATH.to_string(),
        format!("HOSTNAME={}", config.hostname),
    ];
    for var in config.env.iter().flatten() {
        let key = var.split('=').next().unwrap_or_default();
        match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            Some(existing) => *existing = var.clone(),
            None => env.push(var.clone()),
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(cmd: Option<Vec<&str>>, entrypoint: Option<Vec<&str>>) -> ImageConfig {
        let mut ic = ImageConfig::default();
        ic.config.cmd = cmd.map(|c| c.into_iter().map(String::from).collect());
        ic.config.entrypoint = entrypoint.map(|c| c.into_iter().map(String::from).collect());
        ic.config.env = Some(vec!["A=image".into(), "B=image".into()]);
        ic
    }

    #[test]
    fn merge_follows_docker() {
        let req = ContainerConfig {
            env: Some(vec!["A=mine".into()]),
            ..Default::default()
        };
        let c = merge(req, &image(Some(vec!["sh"]), None));
        assert_eq!(c.env.unwrap(), ["A=mine", "B=image"]);
        assert_eq!(c.cmd.unwrap(), ["sh"]);
        let req = ContainerConfig {
            entrypoint: Some(vec!["/bin/app".into()]),
            ..Default::default()
        };
        let c = merge(req, &image(Some(vec!["sh"]), Some(vec!["/entry"])));
        assert_eq!(
            c.cmd, None,
            "an entrypoint from the request drops the image's cmd"
        );
        assert_eq!(command(&c).unwrap(), ("/bin/app".to_string(), vec![]));
        let req = ContainerConfig {
            cmd: Some(vec!["echo".into(), "hi".into()]),
            ..Default::default()
        };
        let c = merge(req, &image(Some(vec!["sh"]), Some(vec!["/entry"])));
        assert_eq!(
            command(&c).unwrap(),
            (
                "/entry".to_string(),
                vec!["echo".to_string(), "hi".to_string()]
            )
        );
        assert!(command(&ContainerConfig::default()).is_err());
    }

    #[test]
    fn env_gets_path_and_hostname() {
        let c = ContainerConfig {
            hostname: "h".into(),
            env: Some(vec!["PATH=/x".into(), "K=v".into()]),
            ..Default::default()
        };
        assert_eq!(process_env(&c), ["PATH=/x", "HOSTNAME=h", "K=v"]);
    }
}
