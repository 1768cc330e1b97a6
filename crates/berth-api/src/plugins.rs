//! `GET /plugins` and `GET /plugins/{name}/json`: the volume plugins berth
//! knows (found in its plugin folders, or activated), in Docker's plugin
//! shape, so `docker plugin ls` and `docker plugin inspect` show them.
//! Managed plugins (`docker plugin install`, enable, disable, rm, push,
//! set, upgrade, create) are Docker's own image-based plugin system, which
//! berth does not run: those answer 501 and say how to add a plugin.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use berth_core::driver::plugin::KnownPlugin;
use serde::Serialize;

use crate::error::ApiError;
use crate::request::json;
use crate::ApiState;

/// Docker's `types.Plugin`, with what a legacy volume plugin has.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PluginJson {
    id: String,
    name: String,
    enabled: bool,
    settings: SettingsJson,
    plugin_reference: String,
    config: ConfigJson,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct SettingsJson {
    mounts: Vec<serde_json::Value>,
    env: Vec<String>,
    args: Vec<String>,
    devices: Vec<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigJson {
    description: String,
    documentation: String,
    interface: InterfaceJson,
    entrypoint: Vec<String>,
    work_dir: String,
    network: serde_json::Value,
    linux: serde_json::Value,
    propagated_mount: String,
    env: Vec<String>,
    args: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InterfaceJson {
    types: Vec<String>,
    socket: String,
}

impl From<&KnownPlugin> for PluginJson {
    fn from(p: &KnownPlugin) -> Self {
        let id = p.id();
        let address = p.address.clone().unwrap_or_default();
        let state = match (&p.address, p.active) {
            (None, _) => "gone",
            (Some(_), true) => "active",
            (Some(_), false) => "not activated yet",
        };
        PluginJson {
            id,
            name: p.name.clone(),
            enabled: p.address.is_some(),
            settings: SettingsJson::default(),
            plugin_reference: String::new(),
            config: ConfigJson {
                description: format!("volume plugin at {address} ({state})"),
                documentation: "https://docs.docker.com/engine/extend/plugins_volume/".into(),
                interface: InterfaceJson {
                    types: vec!["docker.volumedriver/1.0".into()],
                    socket: address,
                },
                entrypoint: Vec::new(),
                work_dir: String::new(),
                network: serde_json::json!({"Type": ""}),
                linux: serde_json::json!({"Capabilities": [], "AllowAllDevices": false, "Devices": []}),
                propagated_mount: String::new(),
                env: Vec::new(),
                args: serde_json::json!({"Name": "", "Description": "", "Settable": [], "Value": []}),
            },
        }
    }
}

fn known(state: &ApiState) -> Vec<KnownPlugin> {
    state
        .volumes
        .plugins()
        .map(|p| p.known())
        .unwrap_or_default()
}

/// `GET /plugins`
pub async fn list(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let known = tokio::task::spawn_blocking(move || known(&state))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let items: Vec<PluginJson> = known.iter().map(PluginJson::from).collect();
    Ok(json(StatusCode::OK, &items))
}

/// `GET /plugins/{name}/json`
pub async fn inspect(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let wanted = name.trim_end_matches(":latest").to_string();
    let known = tokio::task::spawn_blocking(move || known(&state))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match known.iter().find(|p| p.name == wanted) {
        Some(p) => Ok(json(StatusCode::OK, &PluginJson::from(p))),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("plugin \"{name}\" not found"),
        }),
    }
}

/// Every managed-plugin verb.
pub async fn managed() -> Result<Response, ApiError> {
    Err(ApiError {
        status: StatusCode::NOT_IMPLEMENTED,
        message: "berth does not run managed (image-based) plugins: run a volume plugin as a \
                  service of its own and put its socket in the plugin socket folder \
                  (--plugin-socket-dir, /run/docker/plugins) or a NAME.spec file in a plugin \
                  spec folder (/etc/docker/plugins)"
            .into(),
    })
}
