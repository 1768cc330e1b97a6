//! Docker's container JSON: list items (`container.Summary`) and inspect
//! (`InspectResponse`), from berth's container records.

use berth_core::container::{ContainerRecord, ContainerUsage, MountPoint, NetworkView, Status};
use berth_core::network::{Endpoint, EndpointConfig};
use serde_json::{json, Map, Value};

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `GET /containers/json` item.
pub fn summary(c: &ContainerRecord, view: &NetworkView) -> Value {
    json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.config.image,
        "ImageID": c.image_id,
        "Command": command_line(c),
        "Created": unix_seconds(&c.created),
        "Ports": summary_ports(c, view),
        "Labels": c.config.labels.clone().unwrap_or_default(),
        "State": c.state.docker_status(),
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host_config.network_mode},
        "NetworkSettings": {"Networks": networks_json(c, view)},
        "Mounts": c.mounts.iter().map(mount_json).collect::<Vec<_>>(),
    })
}

/// `NetworkSettings` of inspect: Docker's legacy top-level fields come
/// from the `bridge` network's endpoint only.
fn network_settings(c: &ContainerRecord, view: &NetworkView) -> Value {
    let bridge = view.endpoint("bridge");
    let field = |f: fn(&Endpoint) -> Value, zero: Value| bridge.map_or(zero, f);
    json!({
        "Bridge": "",
        "SandboxID": if view.sandbox_key.is_empty() { "" } else { c.id.as_str() },
        "SandboxKey": view.sandbox_key,
        "Ports": ports_json(c, view),
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": field(|e| json!(e.endpoint_id), json!("")),
        "Gateway": field(|e| json!(e.gateway), json!("")),
        "GlobalIPv6Address": field(|e| json!(e.ipv6.clone().unwrap_or_default()), json!("")),
        "GlobalIPv6PrefixLen": field(|e| json!(e.ipv6_prefix), json!(0)),
        "IPAddress": field(|e| json!(e.ipv4.clone().unwrap_or_default()), json!("")),
        "IPPrefixLen": field(|e| json!(e.ipv4_prefix), json!(0)),
        "IPv6Gateway": field(|e| json!(e.ipv6_gateway), json!("")),
        "MacAddress": field(|e| json!(e.mac), json!("")),
        "Networks": networks_json(c, view),
    })
}

/// `NetworkSettings.Networks`: per configured network, its settings and,
/// while set up, the endpoint's addresses.
fn networks_json(c: &ContainerRecord, view: &NetworkView) -> Map<String, Value> {
    c.networks
        .iter()
        .map(|(name, config)| {
            let id = view.network_ids.get(name).cloned().unwrap_or_default();
            (
                name.clone(),
                endpoint_json(config, view.endpoint(name), &id),
            )
        })
        .collect()
}

/// Docker's `EndpointSettings` (v26 field order).
fn endpoint_json(config: &EndpointConfig, e: Option<&Endpoint>, network_id: &str) -> Value {
    let live = |f: fn(&Endpoint) -> Value, zero: Value| e.map_or(zero, f);
    let mac = e.map_or(config.mac_address.clone(), |e| e.mac.clone());
    json!({
        "IPAMConfig": config.ipam_config,
        "Links": config.links,
        "Aliases": config.aliases,
        "MacAddress": mac,
        "NetworkID": network_id,
        "EndpointID": live(|e| json!(e.endpoint_id), json!("")),
        "Gateway": live(|e| json!(e.gateway), json!("")),
        "IPAddress": live(|e| json!(e.ipv4.clone().unwrap_or_default()), json!("")),
        "IPPrefixLen": live(|e| json!(e.ipv4_prefix), json!(0)),
        "IPv6Gateway": live(|e| json!(e.ipv6_gateway), json!("")),
        "GlobalIPv6Address": live(|e| json!(e.ipv6.clone().unwrap_or_default()), json!("")),
        "GlobalIPv6PrefixLen": live(|e| json!(e.ipv6_prefix), json!(0)),
        "DriverOpts": config.driver_opts,
        "DNSNames": e.filter(|e| !e.dns_names.is_empty()).map(|e| e.dns_names.clone()),
    })
}

/// `NetworkSettings.Ports` while running: every exposed port, with its
/// host bindings or null; `{}` otherwise.
fn ports_json(c: &ContainerRecord, view: &NetworkView) -> Map<String, Value> {
    let mut ports = Map::new();
    if view.endpoints.is_empty() {
        return ports;
    }
    for key in c.config.exposed_ports.iter().flat_map(|p| p.keys()) {
        let key = if key.contains('/') {
            key.clone()
        } else {
            format!("{key}/tcp")
        };
        ports.insert(key, Value::Null);
    }
    for p in view.endpoints.iter().flat_map(|e| &e.ports) {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        let binding = json!({"HostIp": p.shown_ip(), "HostPort": p.host_port.to_string()});
        match ports.entry(key).or_insert(Value::Null) {
            Value::Array(list) => list.push(binding),
            slot => *slot = json!([binding]),
        }
    }
    ports
}

/// `Ports` of a list item: each published binding, and each exposed port
/// without one.
fn summary_ports(c: &ContainerRecord, view: &NetworkView) -> Vec<Value> {
    let mut out = Vec::new();
    for (key, bindings) in ports_json(c, view) {
        let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        let private: u16 = port.parse().unwrap_or(0);
        match bindings.as_array() {
            Some(list) => out.extend(list.iter().map(|b| {
                json!({"IP": b["HostIp"], "PrivatePort": private,
                       "PublicPort": b["HostPort"].as_str().and_then(|p| p.parse::<u16>().ok()),
                       "Type": proto})
            })),
            None => out.push(json!({"PrivatePort": private, "Type": proto})),
        }
    }
    out
}

/// A list item with `SizeRw` (left out when 0, as Docker's `omitempty`
/// does) and `SizeRootFs` (`size=1`, and `system df`).
pub fn summary_with_size(u: &ContainerUsage, view: &NetworkView) -> Value {
    let mut item = summary(&u.record, view);
    if u.size_rw != 0 {
        item["SizeRw"] = json!(u.size_rw);
    }
    item["SizeRootFs"] = json!(u.size_root_fs);
    item
}

/// `GET /containers/{id}/json`.
pub fn inspect(
    c: &ContainerRecord,
    paths: &berth_core::container::ContainerPaths,
    view: &NetworkView,
) -> Value {
    let s = &c.state;
    let host_config = host_config_json(c);
    let mut doc = json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": {
            "Status": s.docker_status(),
            "Running": s.status == Status::Running || s.restarting,
            "Paused": s.status == Status::Running && s.paused,
            "Restarting": s.restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid.map_or(0, |p| p.raw()),
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
            "FinishedAt": s.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
            "Health": s.health,
        },
        "Image": c.image_id,
        "ResolvConfPath": paths.resolv_file(),
        "HostnamePath": paths.hostname_file(),
        "HostsPath": paths.hosts_file(),
        "LogPath": if s.started_at.is_some() { paths.log().display().to_string() } else { String::new() },
        "Name": format!("/{}", c.name),
        "RestartCount": s.restart_count,
        "Driver": "overlayfs",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config,
        "GraphDriver": {"Data": {"MergedDir": paths.rootfs(), "UpperDir": paths.upper(), "WorkDir": paths.work()}, "Name": "overlayfs"},
        "Mounts": c.mounts.iter().map(mount_json).collect::<Vec<_>>(),
        "Config": c.config,
        "NetworkSettings": network_settings(c, view),
    });
    // `State.Health` is omitted without a health check, as Docker does.
    if s.health.is_none() {
        if let Some(state) = doc["State"].as_object_mut() {
            state.remove("Health");
        }
    }
    doc
}

/// The full `HostConfig` Docker returns (clients such as docker-py read
/// fields the create request never sent): Docker's defaults, overlaid with
/// what the container was created with.
fn host_config_json(c: &ContainerRecord) -> Value {
    let mut hc = json!({
        "Binds": null, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": false, "VolumeDriver": "", "VolumesFrom": null, "ConsoleSize": [0, 0],
        "CapAdd": null, "CapDrop": null, "CgroupnsMode": "host", "Dns": [], "DnsOptions": [],
        "DnsSearch": [], "ExtraHosts": null, "GroupAdd": null, "IpcMode": "private", "Cgroup": "",
        "Links": null, "OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false,
        "ReadonlyRootfs": false, "SecurityOpt": null, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 67108864, "Runtime": "berth", "Isolation": "", "CpuShares": 0, "Memory": 0,
        "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": null, "DeviceRequests": null, "MemoryReservation": 0, "MemorySwap": 0,
        "MemorySwappiness": null, "OomKillDisable": null, "PidsLimit": null, "Ulimits": [],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    });
    if let Value::Object(given) = serde_json::to_value(&c.host_config).unwrap_or(Value::Null) {
        for (key, value) in given {
            let empty_string = value.as_str().is_some_and(str::is_empty);
            if !value.is_null() && !empty_string {
                hc[key.as_str()] = value;
            }
        }
    }
    if hc["LogConfig"]["Type"].as_str().is_none_or(str::is_empty) {
        hc["LogConfig"] = json!({"Type": "json-file", "Config": {}});
    }
    hc
}

/// Docker's `MountPoint`.
pub fn mount_json(m: &MountPoint) -> Value {
    let mut v = json!({"Type": m.kind});
    if m.kind == "volume" {
        v["Name"] = json!(m.name);
    }
    v["Source"] = json!(m.source);
    v["Destination"] = json!(m.destination);
    if m.kind == "volume" {
        v["Driver"] = json!(m.driver);
    }
    v["Mode"] = json!(m.mode);
    v["RW"] = json!(m.rw);
    v["Propagation"] = json!(m.propagation);
    v
}

/// `Path` and args, args with spaces quoted (Docker's `Command`).
fn command_line(c: &ContainerRecord) -> String {
    let mut parts = vec![c.path.clone()];
    parts.extend(c.args.iter().map(|a| {
        if a.contains(' ') {
            format!("'{a}'")
        } else {
            a.clone()
        }
    }));
    parts.join(" ")
}

fn unix_seconds(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map_or(0, |t| t.timestamp())
}

fn since(rfc3339: Option<&str>) -> String {
    let then = rfc3339.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let secs = then.map_or(0, |t| {
        (chrono::Utc::now().timestamp() - t.timestamp()).max(0)
    });
    human_duration(secs)
}

/// Docker's `State.String()` for `ps`.
fn status_text(c: &ContainerRecord) -> String {
    let s = &c.state;
    match s.status {
        Status::Running if s.paused => {
            format!("Up {} (Paused)", since(s.started_at.as_deref()))
        }
        Status::Running => format!("Up {}{}", since(s.started_at.as_deref()), health_suffix(s)),
        _ if s.restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code,
            since(s.finished_at.as_deref())
        ),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        _ if s.started_at.is_none() => "Created".into(),
        _ => format!(
            "Exited ({}) {} ago",
            s.exit_code,
            since(s.finished_at.as_deref())
        ),
    }
}

/// `docker ps`'s health in the status: " (healthy)", " (health: starting)".
fn health_suffix(s: &berth_core::container::ContainerState) -> String {
    match s.health.as_ref().map(|h| h.status.as_str()) {
        Some("starting") => " (health: starting)".into(),
        Some(status) if !status.is_empty() => format!(" ({status})"),
        _ => String::new(),
    }
}

/// go-units `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let mins = secs / 60;
    let hours = (secs as f64 / 3600.0).round() as i64;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        _ if mins == 1 => "About a minute".into(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 14 => format!("{} days", hours / 24),
        _ if hours < 24 * 60 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
