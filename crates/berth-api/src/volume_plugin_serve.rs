//! berth's own drivers served to another engine as a Docker volume plugin
//! (`berth daemon --serve-volume-plugin /run/docker/plugins/berth.sock`):
//! a Docker engine then runs `docker volume create -d berth -o size=1G db`
//! and `docker run -v db:/data`, and the volume is berth's (size caps,
//! snapshots, clones, backups, migration).
//!
//! The protocol is Docker's (docker/cli `docs/extend/plugins_volume.md`):
//! POST with a JSON body; an error is HTTP 500 with `{"Err": "…"}`, as
//! Docker's plugin helpers answer. This layer only parses requests into
//! volume service calls:
//! - `Create {Name, Opts}`: option `driver` picks berth's driver (default
//!   [`DEFAULT_DRIVER`]), the others go to it as `-o` does;
//! - `Mount`/`Unmount {Name, ID}`: the ID (a Docker container's) is a
//!   mount id of its own (`plugin-client-ID`), persisted, so a volume two
//!   Docker containers use stays mounted until both unmount, across a
//!   restart of either engine;
//! - `List`, `Get`, `Path`: the volumes of berth's own drivers, not those
//!   of plugins berth itself uses.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use berth_core::volume::{plugin_client_mount_id, CreateRequest, Volume, VolumeService};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The driver a volume created without `-o driver=` gets.
pub const DEFAULT_DRIVER: &str = "thin";

/// Docker's plugin content type.
const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.1+json";

type Volumes = Arc<VolumeService>;

/// The plugin's routes over `volumes`.
pub fn app(volumes: Volumes) -> Router {
    Router::new()
        .route("/Plugin.Activate", post(activate))
        .route("/VolumeDriver.Capabilities", post(capabilities))
        .route("/VolumeDriver.Create", post(create))
        .route("/VolumeDriver.Remove", post(remove))
        .route("/VolumeDriver.Mount", post(mount))
        .route("/VolumeDriver.Unmount", post(unmount))
        .route("/VolumeDriver.Path", post(path))
        .route("/VolumeDriver.Get", post(get))
        .route("/VolumeDriver.List", post(list))
        .with_state(volumes)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NameRequest {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    name: String,
    #[serde(default)]
    opts: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MountBody {
    name: String,
    #[serde(rename = "ID")]
    id: String,
}

/// A volume as the protocol describes it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PluginVolume {
    name: String,
    mountpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<serde_json::Map<String, serde_json::Value>>,
}

impl PluginVolume {
    fn of(volume: Volume, full: bool) -> Self {
        let created = chrono::DateTime::from_timestamp(volume.created_at, 0);
        PluginVolume {
            name: volume.name,
            mountpoint: volume.mountpoint.to_string_lossy().into_owned(),
            created_at: full.then(|| created.map(|t| t.to_rfc3339())).flatten(),
            status: full.then_some(volume.status).flatten(),
        }
    }
}

/// An answer: 200 with `value`, or 500 with `{"Err": …}`.
fn answer(result: Result<serde_json::Value, String>) -> Response {
    let (status, body) = match result {
        Ok(value) => (StatusCode::OK, value),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, json!({ "Err": e })),
    };
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))
}

/// Runs `work` off the async workers; its error text is the `Err`.
async fn run(
    work: impl FnOnce() -> Result<serde_json::Value, String> + Send + 'static,
) -> Response {
    let result = tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(format!("internal task failed: {e}")));
    answer(result)
}

// Calls with nothing to read still take their body: answered before the
// request is read whole, the connection would be closed under a client
// still sending it (a broken pipe on its side).
async fn activate(_body: Bytes) -> Response {
    answer(Ok(json!({ "Implements": ["VolumeDriver"] })))
}

async fn capabilities(_body: Bytes) -> Response {
    answer(Ok(json!({ "Capabilities": { "Scope": "local" } })))
}

/// Only volumes of berth's own drivers are served.
fn own_volume(volumes: &VolumeService, name: &str) -> Result<Volume, String> {
    let volume = volumes.get(name).map_err(|e| e.to_string())?;
    match volumes.is_builtin_driver(&volume.driver) {
        true => Ok(volume),
        false => Err(format!(
            "volume {name} is of driver {}, which berth does not serve",
            volume.driver
        )),
    }
}

async fn create(State(volumes): State<Volumes>, body: Bytes) -> Response {
    run(move || {
        let body: CreateBody = parse(&body)?;
        // Not anonymous: the client must be able to name it again.
        berth_core::volume::names::validate_name(&body.name).map_err(|e| e.to_string())?;
        // A create of this name through a plugin berth uses is under way
        // and holds the name: this call is most likely that create come
        // back to berth (a relay to this socket). Failing at once lets it
        // fail, instead of both waiting out the plugin timeout.
        if let Some(plugin) = volumes.being_created(&body.name) {
            if !volumes.is_builtin_driver(&plugin) {
                return Err(format!(
                    "volume {} is being created through volume plugin {plugin}, \
                     which leads back to berth",
                    body.name
                ));
            }
        }
        let mut options = body.opts.unwrap_or_default();
        let driver = options
            .remove("driver")
            .unwrap_or_else(|| DEFAULT_DRIVER.into());
        if !volumes.is_builtin_driver(&driver) {
            return Err(format!(
                "driver {driver:?} is not one of berth's drivers (local, thin)"
            ));
        }
        let request = CreateRequest {
            name: Some(body.name),
            driver,
            options,
            labels: BTreeMap::new(),
        };
        volumes.create(request).map_err(|e| e.to_string())?;
        Ok(json!({}))
    })
    .await
}

async fn remove(State(volumes): State<Volumes>, body: Bytes) -> Response {
    run(move || {
        let body: NameRequest = parse(&body)?;
        own_volume(&volumes, &body.name)?;
        volumes
            .remove(&body.name, false)
            .map_err(|e| e.to_string())?;
        Ok(json!({}))
    })
    .await
}

/// A Mount or Unmount body: the volume (one of berth's own drivers') and
/// the client's mount id for it.
fn mount_target(volumes: &VolumeService, body: &Bytes) -> Result<(String, String), String> {
    let body: MountBody = parse(body)?;
    let id = plugin_client_mount_id(&body.id)?;
    own_volume(volumes, &body.name)?;
    Ok((body.name, id))
}

async fn mount(State(volumes): State<Volumes>, body: Bytes) -> Response {
    run(move || {
        let (name, id) = mount_target(&volumes, &body)?;
        let path = volumes.mount(&name, &id).map_err(|e| e.to_string())?;
        Ok(json!({ "Mountpoint": path.to_string_lossy() }))
    })
    .await
}

async fn unmount(State(volumes): State<Volumes>, body: Bytes) -> Response {
    run(move || {
        let (name, id) = mount_target(&volumes, &body)?;
        volumes.unmount(&name, &id).map_err(|e| e.to_string())?;
        Ok(json!({}))
    })
    .await
}

async fn path(State(volumes): State<Volumes>, body: Bytes) -> Response {
    run(move || {
        let body: NameRequest = parse(&body)?;
        let volume = own_volume(&volumes, &body.name)?;
        Ok(json!({ "Mountpoint": volume.mountpoint.to_string_lossy() }))
    })
    .await
}

async fn get(State(volumes): State<Volumes>, body: Bytes) -> Response {
    run(move || {
        let body: NameRequest = parse(&body)?;
        let volume = PluginVolume::of(own_volume(&volumes, &body.name)?, true);
        Ok(json!({ "Volume": volume }))
    })
    .await
}

async fn list(State(volumes): State<Volumes>, _body: Bytes) -> Response {
    run(move || {
        let all = volumes
            .list(&Default::default())
            .map_err(|e| e.to_string())?;
        let own: Vec<PluginVolume> = all
            .into_iter()
            .filter(|v| volumes.is_builtin_driver(&v.driver))
            .map(|v| PluginVolume::of(v, false))
            .collect();
        Ok(json!({ "Volumes": own }))
    })
    .await
}
