//! Every `HostConfig` and `Config` field berth does not handle elsewhere:
//! honoured, or refused at create with a clear message — never accepted
//! and ignored (ARCHITECTURE.md has the table).
//!
//! [`ContainerOptions::parse`] reads and checks them at create (a 400 for
//! a bad value, so nothing is recorded) and again at start, where the spec
//! builder applies them. Split by subject: [`caps`] (capabilities),
//! [`devices`] (device nodes and cgroup rules), [`resources`] (limits,
//! ulimits, sysctls, shm), [`security`] (`--security-opt`, namespaces, log
//! driver, runtime).

pub mod caps;
pub mod defaults;
pub mod devices;
pub mod resources;
pub mod security;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::model::{ContainerConfig, HostConfig};
pub use defaults::ContainerDefaults;
pub use devices::DeviceMapping;
pub use resources::Resources;
pub use security::{IpcMode, NamespaceMode, SecurityOptions};

/// A field that cannot be honoured, or a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// Refused at create (400).
    #[error("{0}")]
    Invalid(String),
    /// Found only at start (Docker: 500), e.g. a missing device.
    #[error("{0}")]
    Start(String),
}

/// The HostConfig fields read here (the rest of HostConfig is in
/// [`HostConfig`] or in the refusal table).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostFields {
    privileged: bool,
    cap_add: Option<Vec<String>>,
    cap_drop: Option<Vec<String>>,
    devices: Option<Vec<DeviceMapping>>,
    device_cgroup_rules: Option<Vec<String>>,
    security_opt: Option<Vec<String>>,
    pid_mode: String,
    ipc_mode: String,
    #[serde(rename = "UTSMode")]
    uts_mode: String,
    userns_mode: String,
    cgroupns_mode: String,
    group_add: Option<Vec<String>>,
    readonly_rootfs: bool,
    dns: Option<Vec<String>>,
    dns_options: Option<Vec<String>>,
    dns_search: Option<Vec<String>>,
    extra_hosts: Option<Vec<String>>,
    masked_paths: Option<Vec<String>>,
    readonly_paths: Option<Vec<String>>,
    annotations: Option<BTreeMap<String, String>>,
    log_config: Option<LogConfig>,
    tmpfs: Option<BTreeMap<String, String>>,
    init: Option<bool>,
    isolation: String,
}

/// `HostConfig.LogConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct LogConfig {
    #[serde(rename = "Type")]
    kind: String,
    config: Option<BTreeMap<String, String>>,
}

/// What the spec builder needs, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerOptions {
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub devices: Vec<DeviceMapping>,
    /// Parsed `--device-cgroup-rule`s (spec rules).
    pub device_rules: Vec<Value>,
    pub security: SecurityOptions,
    pub pid: NamespaceMode,
    pub ipc: IpcMode,
    pub uts_host: bool,
    pub cgroupns_private: bool,
    pub group_add: Vec<String>,
    /// `--init`: the host's static tini runs as pid 1 (`/sbin/docker-init`).
    pub init: Option<std::path::PathBuf>,
    pub readonly_rootfs: bool,
    pub resources: Resources,
    pub dns: Vec<String>,
    pub dns_options: Vec<String>,
    pub dns_search: Vec<String>,
    /// `host:ip` pairs for /etc/hosts.
    pub extra_hosts: Vec<(String, String)>,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub annotations: BTreeMap<String, String>,
    pub domainname: String,
    /// json-file rotation from `LogConfig.Config`.
    pub log_rotation: super::logrotate::Rotation,
}

impl ContainerOptions {
    /// Reads and checks every field of `config` and `host` this module
    /// owns; refuses the fields berth cannot honour.
    pub fn parse(config: &ContainerConfig, host: &HostConfig) -> Result<Self, OptionsError> {
        refuse_unsupported(config, host)?;
        // Records stored before `null` was read as unset may hold nulls.
        let stored: Map<String, Value> = host
            .extra
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let fields: HostFields = serde_json::from_value(Value::Object(stored.clone()))
            .map_err(|e| OptionsError::Invalid(format!("invalid host configuration: {e}")))?;
        refuse_init_and_isolation(&fields)?;
        let host_network = host.network_mode == "host";
        let log_rotation =
            security::check_log_config(fields.log_config.as_ref().map(|l| (&l.kind, &l.config)))?;
        let resources = Resources::parse(&stored)?;
        resources.validate(host_network)?;
        caps::validate(
            fields.cap_add.as_deref().unwrap_or_default(),
            fields.cap_drop.as_deref().unwrap_or_default(),
        )?;
        let devices = fields
            .devices
            .unwrap_or_default()
            .into_iter()
            .map(DeviceMapping::checked)
            .collect::<Result<Vec<_>, _>>()?;
        let device_rules = fields
            .device_cgroup_rules
            .unwrap_or_default()
            .iter()
            .map(|r| devices::parse_cgroup_rule(r))
            .collect::<Result<Vec<_>, _>>()?;
        let modes = security::Modes::parse(
            &fields.pid_mode,
            &fields.ipc_mode,
            &fields.uts_mode,
            &fields.userns_mode,
            &fields.cgroupns_mode,
        )?;
        for (dest, data) in fields.tmpfs.iter().flatten() {
            super::mounts::parse_tmpfs_entry(dest, data)
                .map_err(|e| OptionsError::Invalid(e.to_string()))?;
        }
        let init = match fields.init {
            Some(true) => Some(find_init()?),
            _ => None,
        };
        Ok(ContainerOptions {
            init,
            privileged: fields.privileged,
            cap_add: fields.cap_add.unwrap_or_default(),
            cap_drop: fields.cap_drop.unwrap_or_default(),
            devices,
            device_rules,
            security: SecurityOptions::parse(fields.security_opt.as_deref().unwrap_or_default())?,
            pid: modes.pid,
            ipc: modes.ipc,
            uts_host: modes.uts_host,
            cgroupns_private: modes.cgroupns_private,
            group_add: fields.group_add.unwrap_or_default(),
            readonly_rootfs: fields.readonly_rootfs,
            resources,
            dns: parse_dns(fields.dns.unwrap_or_default())?,
            dns_options: fields.dns_options.unwrap_or_default(),
            dns_search: fields.dns_search.unwrap_or_default(),
            extra_hosts: parse_extra_hosts(fields.extra_hosts.as_deref().unwrap_or_default())?,
            masked_paths: fields.masked_paths,
            readonly_paths: fields.readonly_paths,
            annotations: fields.annotations.unwrap_or_default(),
            domainname: config.domainname.clone(),
            log_rotation,
        })
    }

    /// The capabilities the container's process gets.
    pub fn capabilities(&self) -> Vec<String> {
        caps::effective(&self.cap_add, &self.cap_drop, self.privileged)
    }
}

/// The request's own working directory must be absolute (Docker checks
/// the request, not what the image brings).
pub fn check_working_dir(dir: &str) -> Result<(), OptionsError> {
    if !dir.is_empty() && !dir.starts_with('/') {
        return Err(OptionsError::Invalid(format!(
            "the working directory '{dir}' is invalid, it needs to be an absolute path"
        )));
    }
    Ok(())
}

/// `--dns`: addresses only (Docker's CLI checks so; they reach
/// resolv.conf and aardvark-dns's files, one a line).
fn parse_dns(servers: Vec<String>) -> Result<Vec<String>, OptionsError> {
    match servers
        .iter()
        .find(|s| s.parse::<std::net::IpAddr>().is_err())
    {
        Some(bad) => Err(OptionsError::Invalid(format!(
            "{bad:?} is not an IP address (--dns)"
        ))),
        None => Ok(servers),
    }
}

/// `--add-host NAME:host-gateway`: the host's address on the default
/// bridge (its gateway), filled in when the /etc files are written.
pub const HOST_GATEWAY: &str = "host-gateway";

/// `--add-host name:ip` (the first `:` splits, so IPv6 addresses work).
fn parse_extra_hosts(entries: &[String]) -> Result<Vec<(String, String)>, OptionsError> {
    entries
        .iter()
        .map(|entry| {
            let (host, ip) = entry
                .split_once(':')
                .or_else(|| entry.split_once('='))
                .ok_or_else(|| {
                    OptionsError::Invalid(format!("bad format for add-host: {entry:?}"))
                })?;
            if ip == HOST_GATEWAY {
                return Ok((host.to_string(), ip.to_string()));
            }
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(OptionsError::Invalid(format!(
                    "invalid IP address in add-host: {ip:?}"
                )));
            }
            Ok((host.to_string(), ip.to_string()))
        })
        .collect()
}

/// `NetworkingConfig` of a create: per network, the endpoint settings
/// (aliases, static addresses, MAC, driver options). Legacy links and
/// link-local addresses are refused, not dropped: berth cannot honour
/// them yet.
pub fn parse_networking_config(
    networking: &Value,
) -> Result<crate::network::EndpointsConfig, OptionsError> {
    let endpoints = networking
        .get("EndpointsConfig")
        .cloned()
        .unwrap_or(Value::Null);
    let parsed: BTreeMap<String, Option<crate::network::EndpointConfig>> = match endpoints {
        Value::Null => BTreeMap::new(),
        v => serde_json::from_value(v).map_err(|e| {
            OptionsError::Invalid(format!("invalid NetworkingConfig.EndpointsConfig: {e}"))
        })?,
    };
    let mut out = crate::network::EndpointsConfig::new();
    for (network, settings) in parsed {
        let settings = settings.unwrap_or_default();
        if settings.links.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(unsupported(
                &format!("NetworkingConfig.EndpointsConfig.{network}.Links"),
                "legacy links are not implemented; containers on a user network find each other by name",
            ));
        }
        let link_local = settings
            .ipam_config
            .as_ref()
            .and_then(|c| c.link_local_ips.as_ref());
        if link_local.is_some_and(|l| !l.is_empty()) {
            return Err(unsupported(
                &format!("NetworkingConfig.EndpointsConfig.{network}.IPAMConfig.LinkLocalIPs"),
                "netavark gives no link-local addresses",
            ));
        }
        out.insert(network, settings);
    }
    Ok(out)
}

fn unsupported(what: &str, why: &str) -> OptionsError {
    OptionsError::Invalid(format!("berth does not support {what}: {why}"))
}

/// Fields berth cannot honour yet: refused when set to anything but
/// their zero value.
const REFUSED_HOST_FIELDS: [(&str, &str); 18] = [
    (
        "Links",
        "legacy links are not implemented; containers on a user network find each other by name",
    ),
    (
        "CgroupParent",
        "containers always run in the cgroup /berth/<id>",
    ),
    ("Cgroup", "containers always run in their own cgroup"),
    (
        "StorageOpt",
        "the overlay root filesystem has no per-container storage options",
    ),
    (
        "DeviceRequests",
        "device requests (GPUs, CDI) are not supported",
    ),
    (
        "BlkioWeightDevice",
        "per-device block I/O weights are not supported",
    ),
    (
        "BlkioDeviceReadBps",
        "block I/O throttling is not supported",
    ),
    (
        "BlkioDeviceWriteBps",
        "block I/O throttling is not supported",
    ),
    (
        "BlkioDeviceReadIOps",
        "block I/O throttling is not supported",
    ),
    (
        "BlkioDeviceWriteIOps",
        "block I/O throttling is not supported",
    ),
    (
        "CpuRealtimePeriod",
        "real-time CPU scheduling is not supported",
    ),
    (
        "CpuRealtimeRuntime",
        "real-time CPU scheduling is not supported",
    ),
    (
        "KernelMemory",
        "kernel memory limits are deprecated and not supported",
    ),
    (
        "KernelMemoryTCP",
        "kernel memory limits are deprecated and not supported",
    ),
    ("CpuCount", "a Windows-only setting"),
    ("CpuPercent", "a Windows-only setting"),
    ("IOMaximumIOps", "a Windows-only setting"),
    ("IOMaximumBandwidth", "a Windows-only setting"),
];

/// Refuses every field of the tables that is set (non-zero, non-empty),
/// and `Init`, `Isolation`, health checks and MAC addresses.
fn refuse_unsupported(config: &ContainerConfig, host: &HostConfig) -> Result<(), OptionsError> {
    let policy = super::restart::parse_restart_policy(host.extra.get("RestartPolicy"))
        .map_err(OptionsError::Invalid)?;
    if host.auto_remove && policy != super::restart::RestartPolicy::No {
        return Err(OptionsError::Invalid(
            "can't create 'AutoRemove' container with restart policy".into(),
        ));
    }
    for (field, why) in REFUSED_HOST_FIELDS {
        if is_set(host.extra.get(field), field) {
            return Err(unsupported(&format!("HostConfig.{field}"), why));
        }
    }
    if host.extra.get("OomKillDisable").and_then(Value::as_bool) == Some(true) {
        return Err(unsupported(
            "--oom-kill-disable",
            "the embedded runtime does not apply it",
        ));
    }
    if config.extra.get("NetworkDisabled").and_then(Value::as_bool) == Some(true)
        && host.network_mode != "none"
    {
        return Err(unsupported("Config.NetworkDisabled", "use --network none"));
    }
    if let Some(signal) = &config.stop_signal {
        super::parse_signal(signal).map_err(|e| OptionsError::Invalid(e.to_string()))?;
    }
    refuse_config_fields(&config.extra)
}

/// `--init` (not shipped yet) and `--isolation` (Linux knows one).
/// Where an init for `--init` can be found: a static tini (Docker's own
/// `docker-init` is tini), from the host's PATH.
const INIT_CANDIDATES: [&str; 2] = ["tini-static", "docker-init"];

fn find_init() -> Result<std::path::PathBuf, OptionsError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    for name in INIT_CANDIDATES {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(unsupported(
        "--init",
        "no static init found on the host (tini-static; scripts/setup installs the tini package)",
    ))
}

fn refuse_init_and_isolation(fields: &HostFields) -> Result<(), OptionsError> {
    let isolation = fields.isolation.as_str();
    if !isolation.is_empty() && !isolation.eq_ignore_ascii_case("default") {
        return Err(OptionsError::Invalid(format!(
            "Invalid isolation: {isolation:?} - linux only supports 'default'"
        )));
    }
    Ok(())
}

fn refuse_config_fields(extra: &Map<String, Value>) -> Result<(), OptionsError> {
    super::health::parse_healthcheck(extra.get("Healthcheck")).map_err(OptionsError::Invalid)?;
    Ok(())
}

/// Whether a JSON value is set: not null, false, 0, "", [] or {}; a
/// restart policy is set unless its name is empty or "no".
fn is_set(value: Option<&Value>, field: &str) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) if field == "RestartPolicy" => !matches!(
            o.get("Name").and_then(Value::as_str),
            None | Some("") | Some("no")
        ),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host(extra: Value) -> HostConfig {
        HostConfig {
            extra: extra.as_object().unwrap().clone(),
            ..Default::default()
        }
    }

    fn parse(extra: Value) -> Result<ContainerOptions, OptionsError> {
        ContainerOptions::parse(&ContainerConfig::default(), &host(extra))
    }

    #[test]
    fn what_the_docker_cli_always_sends_is_accepted() {
        let sent = json!({
            "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "Links": null, "CgroupParent": "", "BlkioWeightDevice": [], "KernelMemory": 0,
            "PidsLimit": null, "MemorySwappiness": null, "OomKillDisable": false,
            "LogConfig": {"Type": "", "Config": {}}, "Isolation": "", "Init": null,
            "MaskedPaths": null, "ReadonlyPaths": null, "CapAdd": null, "Privileged": false,
        });
        let opts = parse(sent).unwrap();
        assert_eq!(opts.capabilities().len(), 14);
    }

    #[test]
    fn fields_berth_cannot_honour_are_refused_by_name() {
        for (extra, word) in [
            (
                json!({"RestartPolicy": {"Name": "never"}}),
                "unknown policy 'never'",
            ),
            (json!({"Links": ["db:db"]}), "Links"),
            (
                json!({"LogConfig": {"Type": "syslog"}}),
                "syslog log driver",
            ),
            (
                json!({"LogConfig": {"Type": "bogus"}}),
                "plugin \"bogus\" not found",
            ),
        ] {
            let err = parse(extra.clone()).unwrap_err().to_string();
            assert!(err.contains(word), "{extra}: {err}");
        }
        let config = ContainerConfig {
            extra: json!({"Healthcheck": {"Test": ["CMD", "true"], "Retries": -1}})
                .as_object()
                .unwrap()
                .clone(),
            ..Default::default()
        };
        assert!(ContainerOptions::parse(&config, &HostConfig::default()).is_err());
    }

    #[test]
    fn endpoint_settings_parse_and_links_are_refused() {
        let parsed = parse_networking_config(&json!({"EndpointsConfig": {
            "none": null,
            "net": {"Aliases": ["db"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}}}}))
        .unwrap();
        assert_eq!(parsed["none"], Default::default());
        assert_eq!(parsed["net"].aliases, Some(vec!["db".to_string()]));
        assert_eq!(parsed["net"].static_ipv4(), Some("10.1.0.5"));
        let err = parse_networking_config(&json!({"EndpointsConfig": {"n": {"Links": ["a:b"]}}}))
            .unwrap_err();
        assert!(err.to_string().contains("EndpointsConfig.n.Links"), "{err}");
        assert!(
            parse_networking_config(&json!({"EndpointsConfig": {"n": {"Aliases": 3}}})).is_err()
        );
    }

    #[test]
    fn extra_hosts_split_at_the_first_colon() {
        let opts = parse(json!({"ExtraHosts": ["db:10.0.0.2", "v6:::1"]})).unwrap();
        assert_eq!(opts.extra_hosts[0], ("db".into(), "10.0.0.2".into()));
        assert_eq!(opts.extra_hosts[1], ("v6".into(), "::1".into()));
        assert!(parse(json!({"ExtraHosts": ["bad:not-an-ip"]})).is_err());
    }
}
