//! `/images` routes: import, load, list, inspect, tag, remove.
//!
//! Image names may contain slashes (`team/app:v1`), so everything under
//! `/images/` that is not a fixed route goes through [`by_name`], which
//! splits off the verb (`/json`, `/tag`) as moby's `{name:.*}` routes do.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use berth_core::container::image_usage;
use berth_core::image::list_filter::ListFilter;
use berth_core::image::{ImportRequest, Reference, RemoveAction};
use berth_core::store::ImageRecord;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::request::{blocking, json, with_upload, Query};
use crate::version::ApiVersion;
use crate::ApiState;

/// `VirtualSize` left the image list at API 1.44.
const NO_VIRTUAL_SIZE_SINCE: ApiVersion = ApiVersion::new(1, 44);
/// The image list computes `SharedSize` on request from API 1.42.
const SHARED_SIZE_SINCE: ApiVersion = ApiVersion::new(1, 42);

/// JSON-lines progress stream (what `docker import`/`load` read).
fn message_stream(messages: &[Value]) -> Response {
    let mut body = Vec::new();
    for m in messages {
        body.extend_from_slice(m.to_string().as_bytes());
        body.push(b'\n');
    }
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `POST /images/create?fromSrc=-&repo=&tag=&changes=&message=` (an
/// import), or `?fromImage=` (a pull, [`crate::registry::pull`]).
pub async fn create(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    if query.get("fromImage").is_some_and(|i| !i.is_empty()) {
        return crate::registry::pull(state, query, headers).await;
    }
    if query.get("fromSrc") != Some("-") {
        return Err(ApiError::bad_request(
            "berth takes fromImage=NAME (a pull) or fromSrc=- (an import of the request body)",
        ));
    }
    let reference = match query.get("repo").filter(|r| !r.is_empty()) {
        Some(repo) => Some(
            Reference::from_parts(repo, query.get("tag").unwrap_or_default())
                .map_err(ApiError::from)?,
        ),
        None => None,
    };
    let req = ImportRequest {
        reference,
        changes: query
            .all("changes")
            .into_iter()
            .map(str::to_string)
            .collect(),
        message: query
            .get("message")
            .filter(|m| !m.is_empty())
            .map(str::to_string),
    };
    let svc = state.images.clone();
    let image = with_upload(body, move |reader| {
        svc.import(req, reader).map_err(ApiError::from)
    })
    .await?;
    Ok(message_stream(&[json!({"status": image.id})]))
}

/// `POST /images/load`
pub async fn load(State(state): State<ApiState>, body: Body) -> Result<Response, ApiError> {
    let svc = state.images.clone();
    let images = with_upload(body, move |reader| svc.load(reader).map_err(ApiError::from)).await?;
    let mut messages = Vec::new();
    for image in &images {
        if image.tags.is_empty() {
            messages.push(json!({"stream": format!("Loaded image ID: {}\n", image.id)}));
        }
        for tag in &image.tags {
            messages.push(json!({"stream": format!("Loaded image: {tag}\n")}));
        }
    }
    Ok(message_stream(&messages))
}

/// `GET /images/json[?shared-size=1]` (`shared-size` from API 1.42).
pub async fn list(
    State(state): State<ApiState>,
    Extension(version): Extension<ApiVersion>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let shared = version >= SHARED_SIZE_SINCE && query.bool("shared-size");
    let filter = parse_list_filter(&query.filters()?)?;
    let svc = state.images.clone();
    let images = blocking(move || svc.list().map_err(ApiError::from)).await?;
    let images: Vec<ImageRecord> = images.iter().filter_map(|i| filter.apply(i)).collect();
    let items: Vec<Value> = if shared {
        let (_, usage) = image_usage(images, &[]);
        (usage.iter())
            .map(|u| summary(&u.image, version, Some(u.shared_size), None))
            .collect()
    } else {
        (images.iter())
            .map(|image| summary(image, version, None, None))
            .collect()
    };
    Ok(json(StatusCode::OK, &items))
}

/// The image list's filters berth applies (`reference`, `dangling`).
fn parse_list_filter(
    filters: &berth_core::volume::filters::Filters,
) -> Result<ListFilter, ApiError> {
    let mut filter = ListFilter::default();
    for (key, values) in filters {
        match key.as_str() {
            "reference" => filter.references = values.clone(),
            "dangling" => {
                filter.dangling = match values.as_slice() {
                    [v] if v == "true" || v == "1" => Some(true),
                    [v] if v == "false" || v == "0" => Some(false),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "invalid filter 'dangling={}'",
                            values.join(",")
                        )))
                    }
                }
            }
            // label, before, since, until: not applied yet (the list
            // stays whole, as before they were read at all).
            other => tracing::debug!(filter = other, "image list filter not applied"),
        }
    }
    Ok(filter)
}

/// One `image.Summary`; `SharedSize` and `Containers` are -1 when not
/// computed, as in Docker.
pub fn summary(
    image: &ImageRecord,
    version: ApiVersion,
    shared_size: Option<i64>,
    containers: Option<i64>,
) -> Value {
    let labels = config_json(image)["config"]["Labels"].clone();
    let mut item = json!({
        "Containers": containers.unwrap_or(-1), "Created": image.created_at, "Id": image.id,
        "Labels": labels, "ParentId": "", "RepoDigests": image.digests, "RepoTags": image.tags,
        "SharedSize": shared_size.unwrap_or(-1), "Size": image.size,
    });
    if version < NO_VIRTUAL_SIZE_SINCE {
        item["VirtualSize"] = json!(image.size);
    }
    item
}

/// Everything under `/images/{name}…`: `GET …/json`, `POST …/tag`,
/// `DELETE …`.
pub async fn by_name(
    State(state): State<ApiState>,
    Extension(version): Extension<ApiVersion>,
    method: Method,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    match method {
        Method::GET => {
            if let Some(name) = rest.strip_suffix("/history") {
                return history(state, name.to_string()).await;
            }
            if let Some(name) = rest.strip_suffix("/get") {
                return save(state, vec![name.to_string()]).await;
            }
            match rest.strip_suffix("/json") {
                Some(name) => inspect(state, name.to_string(), version).await,
                None => Err(ApiError::page_not_found()),
            }
        }
        Method::POST => {
            if let Some(name) = rest.strip_suffix("/push") {
                return crate::registry::push(state, name.to_string(), query, headers).await;
            }
            match rest.strip_suffix("/tag") {
                Some(name) => tag(state, name.to_string(), query).await,
                None => Err(ApiError::page_not_found()),
            }
        }
        Method::DELETE => remove(state, rest, query.bool("force")).await,
        _ => Err(ApiError::page_not_found()),
    }
}

/// `GET /images/{name}/history`: newest first; `Tags` is `null` on rows
/// without tags, as dockerd sends it.
async fn history(state: ApiState, name: String) -> Result<Response, ApiError> {
    let svc = state.images.clone();
    let rows = blocking(move || svc.history(&name).map_err(ApiError::from)).await?;
    let body: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "Id": r.id, "Created": r.created, "CreatedBy": r.created_by,
                "Tags": (!r.tags.is_empty()).then_some(&r.tags),
                "Size": r.size, "Comment": r.comment,
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &body))
}

/// `GET /images/get?names=…` (`docker save` of several images).
pub async fn save_many(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let names: Vec<String> = query.all("names").into_iter().map(str::to_string).collect();
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given (names=…)"));
    }
    save(state, names).await
}

/// The `docker save` archive of `names`, resolved before it starts.
async fn save(state: ApiState, names: Vec<String>) -> Result<Response, ApiError> {
    let svc = state.images.clone();
    let lookup = svc.clone();
    let items = blocking(move || lookup.save_items(&names).map_err(ApiError::from)).await?;
    let what = format!("save of {} image(s)", items.len());
    crate::tar_stream::stream_tar(what, move |writer| svc.save(&items, writer)).await
}

/// `Container` and `ContainerConfig` left image inspect at API 1.45.
const NO_CONTAINER_CONFIG_SINCE: ApiVersion = ApiVersion::new(1, 45);

async fn inspect(state: ApiState, name: String, version: ApiVersion) -> Result<Response, ApiError> {
    let svc = state.images.clone();
    let image = blocking(move || svc.resolve(&name).map_err(ApiError::from)).await?;
    let config = config_json(&image);
    let text = |key: &str| config[key].as_str().unwrap_or_default().to_string();
    let mut body = json!({
        "Id": image.id, "RepoTags": image.tags, "RepoDigests": image.digests, "Parent": "",
        "Comment": last_comment(&config),
        "Created": config["created"].as_str().unwrap_or("0001-01-01T00:00:00Z"),
        "Container": text("container"),
        "ContainerConfig": container_config(&config["container_config"]),
        "DockerVersion": text("docker_version"), "Author": text("author"),
        "Config": container_config(&config["config"]),
        "Architecture": config["architecture"], "Os": config["os"], "Size": image.size,
        "GraphDriver": {"Data": null, "Name": "overlayfs"},
        "RootFS": {"Type": "layers", "Layers": image.layers.iter().map(|(d, _)| d).collect::<Vec<_>>()},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    });
    if version >= NO_CONTAINER_CONFIG_SINCE {
        let fields = body.as_object_mut().expect("an object");
        fields.remove("Container");
        fields.remove("ContainerConfig");
    }
    Ok(json(StatusCode::OK, &body))
}

/// The config's `comment` (dockerd's `Comment`), else that of its newest
/// history entry, else "".
fn last_comment(config: &Value) -> String {
    if let Some(comment) = config["comment"].as_str() {
        return comment.to_string();
    }
    let history = config["history"].as_array();
    let last = history.and_then(|h| h.last());
    last.and_then(|h| h["comment"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The image's run config in the shape of Docker's `container.Config`.
fn container_config(run: &Value) -> Value {
    let field = |k: &str| run.get(k).cloned().unwrap_or(Value::Null);
    let text = |k: &str| run.get(k).cloned().unwrap_or(json!(""));
    json!({
        "Hostname": "", "Domainname": "", "User": text("User"), "AttachStdin": false,
        "AttachStdout": false, "AttachStderr": false, "ExposedPorts": field("ExposedPorts"),
        "Tty": false, "OpenStdin": false, "StdinOnce": false, "Env": field("Env"),
        "Cmd": field("Cmd"), "Image": "", "Volumes": field("Volumes"),
        "WorkingDir": text("WorkingDir"), "Entrypoint": field("Entrypoint"),
        "OnBuild": null, "Labels": field("Labels"), "StopSignal": field("StopSignal"),
    })
}

fn config_json(image: &ImageRecord) -> Value {
    serde_json::from_slice(&image.config).unwrap_or(Value::Null)
}

async fn tag(state: ApiState, name: String, query: Query) -> Result<Response, ApiError> {
    let repo = query.get("repo").unwrap_or_default();
    if repo.is_empty() {
        return Err(ApiError::bad_request(
            "repository name must have at least one component",
        ));
    }
    let reference = Reference::from_parts(repo, query.get("tag").unwrap_or_default())
        .map_err(ApiError::from)?;
    let svc = state.images.clone();
    blocking(move || svc.tag(&name, &reference).map_err(ApiError::from)).await?;
    Ok(StatusCode::CREATED.into_response())
}

async fn remove(state: ApiState, name: String, force: bool) -> Result<Response, ApiError> {
    let svc = state.images.clone();
    let containers = state.containers.clone();
    let used_by = move |id: &str| containers.using_image(id);
    let actions =
        blocking(move || svc.remove(&name, force, &used_by).map_err(ApiError::from)).await?;
    let body: Vec<Value> = actions.into_iter().map(action_json).collect();
    Ok(json(StatusCode::OK, &body))
}

/// One `image.DeleteResponse` item.
fn action_json(action: RemoveAction) -> Value {
    match action {
        RemoveAction::Untagged(t) => json!({"Untagged": t}),
        RemoveAction::Deleted(id) => json!({"Deleted": id}),
    }
}

/// `POST /images/prune?filters=` (`dangling`, `label`, `label!`, `until`)
pub async fn prune(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let filters = Query::parse(q.as_deref()).filters()?;
    let svc = state.containers.clone();
    let report = blocking(move || svc.prune_images(&filters).map_err(ApiError::from)).await?;
    let deleted: Vec<Value> = report.actions.into_iter().map(action_json).collect();
    let body = json!({
        // Docker sends null, not [], when nothing was deleted.
        "ImagesDeleted": (!deleted.is_empty()).then_some(deleted),
        "SpaceReclaimed": report.space_reclaimed,
    });
    Ok(json(StatusCode::OK, &body))
}
