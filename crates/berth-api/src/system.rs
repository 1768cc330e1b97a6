//! System routes: `/_ping`, `/version`, `/info`, `/system/df`.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use berth_core::container::{ContainerUsage, DiskUsage, ImageUsage};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::request::{blocking, Query};
use crate::types::{DiskUsageJson, VolumeJson};
use crate::version::{ApiVersion, MAX_API_VERSION, MIN_API_VERSION};
use crate::ApiState;

/// The engine version berth reports.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Since this version `/system/df` honours `type`.
const DF_TYPES_SINCE: ApiVersion = ApiVersion::new(1, 42);
const DF_TYPES: [&str; 4] = ["container", "image", "volume", "build-cache"];

fn ping_response(body: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    resp
}

/// `GET /_ping`
pub async fn ping() -> Response {
    ping_response("OK")
}

/// `HEAD /_ping`
pub async fn ping_head() -> Response {
    ping_response("")
}

/// `GET /version`
pub async fn version(State(state): State<ApiState>) -> Response {
    let f = &state.facts;
    let details = json!({
        "ApiVersion": MAX_API_VERSION.to_string(),
        "Arch": go_arch(&f.architecture),
        "BuildTime": "",
        "Experimental": "false",
        "GitCommit": "",
        "GoVersion": "",
        "KernelVersion": f.kernel_version,
        "MinAPIVersion": MIN_API_VERSION.to_string(),
        "Os": "linux",
    });
    let body = json!({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": ENGINE_VERSION, "Details": details}],
        "Version": ENGINE_VERSION,
        "ApiVersion": MAX_API_VERSION.to_string(),
        "MinAPIVersion": MIN_API_VERSION.to_string(),
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": go_arch(&f.architecture),
        "KernelVersion": f.kernel_version,
    });
    crate::request::json(StatusCode::OK, &body)
}

/// Go's GOARCH spelling of a machine name (`x86_64` → `amd64`).
fn go_arch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `GET /info`: what the docker CLI and docker-py read, with correct types.
pub async fn info(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let f = state.facts.clone();
    let svc = state.volumes.clone();
    let volume_count = blocking(move || svc.list_shared(&Default::default()))
        .await?
        .len();
    let body = json!({
        "ID": f.id, "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0,
        "ContainersStopped": 0, "Images": 0, "Driver": "overlayfs",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Volumes", volume_count.to_string()]],
        "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": null, "Log": ["json-file"]},
        "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": true, "CPUSet": true, "PidsLimit": true, "IPv4Forwarding": false,
        "Debug": false, "OomKillDisable": false, "NFd": 0, "NGoroutines": 0,
        "SystemTime": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": f.cgroup_version,
        "NEventsListener": 0, "KernelVersion": f.kernel_version, "OperatingSystem": f.operating_system,
        "OSVersion": f.os_version, "OSType": "linux", "Architecture": f.architecture,
        "IndexServerAddress": "https://index.docker.io/v1/", "RegistryConfig": null,
        "NCPU": f.ncpu, "MemTotal": f.mem_total, "GenericResources": null,
        "DockerRootDir": f.root_dir.to_string_lossy(), "HttpProxy": "", "HttpsProxy": "",
        "NoProxy": "", "Name": f.hostname, "Labels": [], "ExperimentalBuild": false,
        "ServerVersion": ENGINE_VERSION, "Runtimes": {"berth": {"path": "berth"}},
        "DefaultRuntime": "berth",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"], "CDISpecDirs": [], "Warnings": null,
    });
    Ok(crate::request::json(StatusCode::OK, &body))
}

/// `GET /system/df`: images (with shared sizes and container counts),
/// containers (with their sizes), volumes; berth has no build cache.
pub async fn disk_usage(
    State(state): State<ApiState>,
    Extension(version): Extension<ApiVersion>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let types = df_types(&query, version)?;
    let wants = |t: &str| types.contains(&t);
    let (images, containers) = (wants("image"), wants("container"));
    let volumes = if wants("volume") {
        Some(volume_usage(&state).await?)
    } else {
        None
    };
    let usage = if images || containers {
        image_and_container_usage(&state, containers).await?
    } else {
        Default::default()
    };
    let old = version < DF_TYPES_SINCE;
    let body = DiskUsageJson {
        layers_size: if images { usage.layers_size } else { 0 },
        images: images.then(|| image_summaries(&usage.images, version)),
        containers: containers.then(|| container_summaries(&usage.containers)),
        volumes,
        // Before 1.42: `BuildCache` null and the since-removed `BuilderSize`.
        build_cache: (wants("build-cache") && !old).then(Vec::new),
        builder_size: old.then_some(0),
    };
    Ok(crate::request::json(StatusCode::OK, &body))
}

/// The object types a `/system/df` asks for: its `type=` values (1.42+),
/// all of them when none are given or the version predates `type`.
fn df_types(query: &Query, version: ApiVersion) -> Result<Vec<&str>, ApiError> {
    let mut types = query.all("type");
    if version < DF_TYPES_SINCE || types.is_empty() {
        types = DF_TYPES.to_vec();
    }
    if let Some(bad) = types.iter().find(|t| !DF_TYPES.contains(t)) {
        return Err(ApiError::bad_request(format!("unknown object type: {bad}")));
    }
    Ok(types)
}

/// The volumes part of `/system/df`: each volume with its size and use
/// count, as Docker's JSON.
async fn volume_usage(state: &ApiState) -> Result<Vec<VolumeJson>, ApiError> {
    let svc = state.volumes.clone();
    let usage = blocking(move || svc.usage()).await?;
    Ok(usage.into_iter().map(VolumeJson::from).collect())
}

/// Images and layers, plus every container with its sizes when
/// `with_containers` (walking writable layers costs, so only when asked).
async fn image_and_container_usage(
    state: &ApiState,
    with_containers: bool,
) -> Result<DiskUsage, ApiError> {
    let svc = state.containers.clone();
    blocking(move || svc.disk_usage(with_containers).map_err(ApiError::from)).await
}

/// The images part of `/system/df`: image summaries with `SharedSize` and
/// `Containers` filled in.
fn image_summaries(usage: &[ImageUsage], version: ApiVersion) -> Vec<Value> {
    usage
        .iter()
        .map(|u| {
            let (shared, count) = (Some(u.shared_size), Some(u.containers));
            crate::images::summary(&u.image, version, shared, count)
        })
        .collect()
}

/// The containers part of `/system/df`: summaries with `SizeRw` and
/// `SizeRootFs` (ports and addresses left out: `system df` shows none).
fn container_summaries(usage: &[ContainerUsage]) -> Vec<Value> {
    let no_network = Default::default();
    usage
        .iter()
        .map(|u| crate::container_json::summary_with_size(u, &no_network))
        .collect()
}

/// `POST /build/prune`: berth has no builder, so no build cache.
pub async fn prune_build_cache() -> Response {
    crate::request::json(
        StatusCode::OK,
        &json!({"CachesDeleted": null, "SpaceReclaimed": 0}),
    )
}
