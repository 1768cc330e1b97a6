//! `/networks`: list, inspect, create, remove and prune, in Docker's
//! shapes (`network.Inspect` field for field) and words.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::network::ipam::IpamConfig;
use berth_core::network::{CreateNetwork, NetworkRecord};
use berth_core::volume::filters::parse_go_bool;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ApiError;
use crate::request::{blocking, json, read_json, Query};
use crate::ApiState;

/// `network.Inspect` (also each item of the list).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkJson {
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
    pub created: String,
    pub scope: &'static str,
    pub driver: &'static str,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: IpamJson,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub config_from: ConfigFromJson,
    pub config_only: bool,
    /// Attached containers by ID (always an object, never null).
    pub containers: BTreeMap<String, serde_json::Value>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// `network.IPAM`: `Options` and `Config` are null when there are none.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamJson {
    pub driver: String,
    pub options: Option<BTreeMap<String, String>>,
    pub config: Option<Vec<IpamConfig>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigFromJson {
    pub network: String,
}

impl From<NetworkRecord> for NetworkJson {
    fn from(n: NetworkRecord) -> Self {
        NetworkJson {
            name: n.name,
            id: n.id,
            created: n.created,
            scope: "local",
            driver: n.driver.as_str(),
            enable_ipv6: n.enable_ipv6,
            ipam: IpamJson {
                driver: n.ipam.driver,
                options: n.ipam.options,
                config: n.ipam.config,
            },
            internal: n.internal,
            attachable: n.attachable,
            ingress: false,
            config_from: ConfigFromJson {
                network: String::new(),
            },
            config_only: false,
            containers: BTreeMap::new(),
            options: n.options,
            labels: n.labels,
        }
    }
}

/// The body of `POST /networks/create` (`CheckDuplicate` is read and
/// ignored: since API 1.44 a duplicate name always fails).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    #[allow(dead_code)]
    check_duplicate: Option<bool>,
    driver: String,
    scope: String,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    internal: bool,
    attachable: bool,
    ingress: bool,
    config_only: bool,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamBody {
    driver: String,
    options: Option<BTreeMap<String, String>>,
    config: Option<Vec<IpamConfig>>,
}

impl From<CreateBody> for CreateNetwork {
    fn from(b: CreateBody) -> Self {
        let ipam = b.ipam.unwrap_or_default();
        CreateNetwork {
            name: b.name,
            driver: b.driver,
            scope: b.scope,
            enable_ipv6: b.enable_ipv6,
            internal: b.internal,
            attachable: b.attachable,
            ingress: b.ingress,
            config_only: b.config_only,
            ipam_driver: ipam.driver,
            ipam_options: ipam.options,
            ipam_config: ipam.config.unwrap_or_default(),
            options: b.options.unwrap_or_default(),
            labels: b.labels.unwrap_or_default(),
        }
    }
}

/// `GET /networks?filters=`
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let filters = Query::parse(q.as_deref()).filters()?;
    let svc = state.networks.clone();
    let networks = blocking(move || svc.list(&filters)).await?;
    let shown: Vec<NetworkJson> = networks.into_iter().map(NetworkJson::from).collect();
    Ok(json(StatusCode::OK, &shown))
}

/// `GET /networks/{id}?verbose=&scope=`
pub async fn inspect(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    if let Some(verbose) = query.get("verbose") {
        if parse_go_bool(verbose).is_none() {
            return Err(ApiError::bad_request(format!(
                "invalid value for verbose: {verbose}: strconv.ParseBool: parsing {verbose:?}: invalid syntax"
            )));
        }
    }
    let scope = query.get("scope").unwrap_or_default().to_string();
    let svc = state.networks.clone();
    let lookup = id.clone();
    let (network, attached) = blocking(move || {
        let network = svc.get(&lookup)?;
        let attached = svc.attached(&network.id)?;
        Ok::<_, berth_core::network::NetworkError>((network, attached))
    })
    .await?;
    if !scope.is_empty() && scope != "local" {
        return Err(berth_core::network::NetworkError::NotFound(id).into());
    }
    let mut shown = NetworkJson::from(network);
    shown.containers = attached
        .into_iter()
        .map(|(e, name)| {
            let endpoint = json!({"Name": name, "EndpointID": e.endpoint_id, "MacAddress": e.mac,
                                  "IPv4Address": e.ipv4_cidr(), "IPv6Address": e.ipv6_cidr()});
            (e.container_id, endpoint)
        })
        .collect();
    Ok(json(StatusCode::OK, &shown))
}

/// `POST /networks/create`
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: CreateBody = read_json(&headers, &body)?;
    let svc = state.networks.clone();
    let network = blocking(move || svc.create(body.into())).await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"Id": network.id, "Warning": ""}),
    ))
}

/// `DELETE /networks/{id}`
pub async fn remove(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svc = state.networks.clone();
    blocking(move || svc.remove(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /networks/prune?filters=`: `NetworksDeleted` lists names, and is
/// null when none was removed (as Docker sends it).
pub async fn prune(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let filters = Query::parse(q.as_deref()).filters()?;
    let svc = state.networks.clone();
    let removed = blocking(move || svc.prune(&filters)).await?;
    let deleted = (!removed.is_empty()).then_some(removed);
    Ok(json(StatusCode::OK, &json!({"NetworksDeleted": deleted})))
}

/// The body of `POST /networks/{id}/connect` and `/disconnect`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct AttachBody {
    container: String,
    endpoint_config: Option<serde_json::Value>,
    #[allow(dead_code)]
    force: bool,
}

/// `POST /networks/{id}/connect`: 200 with an empty body.
pub async fn connect(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: AttachBody = read_json(&headers, &body)?;
    let wrapped = json!({"EndpointsConfig": {"endpoint": body.endpoint_config}});
    let mut parsed = berth_core::container::options::parse_networking_config(&wrapped)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let config = parsed.remove("endpoint").unwrap_or_default();
    let svc = state.containers.clone();
    blocking(move || svc.connect(&id, &body.container, config)).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /networks/{id}/disconnect`: 200 with an empty body.
pub async fn disconnect(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: AttachBody = read_json(&headers, &body)?;
    let svc = state.containers.clone();
    blocking(move || svc.disconnect(&id, &body.container)).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /swarm/leave`: berth is never part of a swarm. docker-py's test
/// teardown calls it and ignores 503 (Docker's answer off a swarm).
pub async fn swarm_leave() -> Result<Response, ApiError> {
    Err(ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "This node is not part of a swarm".into(),
    })
}
