//! The bundle a start hands the runtime: the options resolved against the
//! mounted root filesystem and the host (user and groups, working folder,
//! devices, the namespace of another container, /etc files) and
//! `config.json` written privately and atomically.

use std::path::Path;

use super::create::process_env;
use super::options::{devices, ContainerOptions, NamespaceMode};
use super::spec::{self, BindMount, SpecInput};
use super::{
    ContainerError, ContainerPaths, ContainerRecord, ContainerService, SpecNetwork, Status,
};

impl ContainerService {
    /// Resolves everything the spec needs and writes `config.json`.
    pub(super) fn write_bundle(
        &self,
        record: &ContainerRecord,
        paths: &ContainerPaths,
        binds: Vec<BindMount>,
        options: &ContainerOptions,
        network: SpecNetwork,
    ) -> Result<(), ContainerError> {
        let rootfs = paths.rootfs();
        let mut user = super::user::resolve(&rootfs, &record.config.user)?;
        user.additional_gids
            .extend(super::user::additional_groups(&rootfs, &options.group_add)?);
        let mut args = vec![record.path.clone()];
        args.extend(record.args.iter().cloned());
        let mut binds = binds;
        if let Some(init) = &options.init {
            // Docker's `--init`: tini as pid 1, the program after `--`.
            args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
            binds.push(BindMount::private(
                init.display().to_string(),
                INIT_PATH,
                true,
            ));
        }
        let spec = spec::build(&SpecInput {
            id: &record.id,
            rootfs: &rootfs,
            args,
            env: process_env(&record.config),
            cwd: working_dir(&rootfs, &record.config.working_dir)?,
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids,
            hostname: record.config.hostname.clone(),
            network,
            binds,
            pid_namespace: self.pid_namespace(options)?,
            devices: resolve_devices(options)?,
            terminal: record.config.tty.then(|| console_size(&record.host_config)),
            options,
        })?;
        let bytes = serde_json::to_vec_pretty(&spec)
            .map_err(|e| ContainerError::io("serialising config.json", e.into()))?;
        // The spec holds the container's environment (secrets), and the
        // runtime must never read a half-written one.
        crate::root::write_private(&paths.bundle().join("config.json"), &bytes)
            .map_err(|e| ContainerError::io("writing config.json", e))
    }

    /// `--pid container:X`: X's PID namespace, X running (Docker's words).
    fn pid_namespace(&self, options: &ContainerOptions) -> Result<Option<String>, ContainerError> {
        let NamespaceMode::Container(other) = &options.pid else {
            return Ok(None);
        };
        let fail = |m: String| ContainerError::Start(format!("failed to join PID namespace: {m}"));
        let donor = self.resolve(other).map_err(|e| fail(e.to_string()))?;
        match (donor.state.status, donor.state.pid) {
            (Status::Running, Some(pid)) => Ok(Some(format!("/proc/{pid}/ns/pid"))),
            _ => Err(fail(format!("container {} is not running", donor.id))),
        }
    }
}

/// `--device` entries as nodes and rules; a privileged container also
/// gets every host device (an explicit entry at another path is added).
fn resolve_devices(options: &ContainerOptions) -> Result<Vec<devices::SpecDevice>, ContainerError> {
    let mut out = if options.privileged {
        devices::host_devices()
    } else {
        Vec::new()
    };
    for mapping in &options.devices {
        if options.privileged && mapping.path_on_host == mapping.path_in_container {
            continue;
        }
        out.extend(devices::resolve(mapping)?);
    }
    Ok(out)
}

/// The working directory, created in the root filesystem if missing (as
/// Docker does), without following symlinks out of it.
fn working_dir(rootfs: &Path, dir: &str) -> Result<String, ContainerError> {
    if dir.is_empty() {
        return Ok("/".into());
    }
    crate::sys::inroot::mkdir_all(rootfs, dir, 0o755).map_err(|e| {
        ContainerError::InvalidConfig(format!("cannot create working directory {dir}: {e}"))
    })?;
    Ok(dir.to_string())
}

/// Where `--init`'s init is bound in the container (Docker's path).
const INIT_PATH: &str = "/sbin/docker-init";

/// `HostConfig.ConsoleSize` (`[height, width]`, API 1.42+; zero: unset).
fn console_size(host: &super::HostConfig) -> crate::sys::terminal::WindowSize {
    let size = host.extra.get("ConsoleSize").and_then(|v| v.as_array());
    let at = |i: usize| {
        size.and_then(|s| s.get(i))
            .and_then(|v| v.as_u64())
            .and_then(|v| u16::try_from(v).ok())
            .unwrap_or(0)
    };
    crate::sys::terminal::WindowSize {
        height: at(0),
        width: at(1),
    }
}
