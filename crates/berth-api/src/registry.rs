//! Registry routes: `POST /images/create?fromImage=` (pull), `POST
//! /images/{name}/push`, `POST /auth`. Each parses the request into a
//! core call and streams the core's progress events as Docker's JSON
//! messages; a failure before the first event is answered as an HTTP
//! error, as dockerd does before its output starts.

use std::future::Future;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use berth_core::image::platform::Platform;
use berth_core::image::registry::inspect::distribution_info;
use berth_core::image::registry::name::names_a_tag;
use berth_core::image::registry::pull::{PullRequest, Pulled};
use berth_core::image::registry::push::PushRequest;
use berth_core::image::registry::{AuthConfig, ProgressEvent, RegistryError, RemoteReference};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::progress_json;
use crate::request::{json, Query};
use crate::ApiState;

/// One item of a progress response: an event, or the end of the work.
enum Step<T> {
    Event(ProgressEvent),
    Done(Result<T, RegistryError>),
}

/// The credentials a client sent for the registry (`X-Registry-Auth`).
pub fn registry_auth(headers: &HeaderMap) -> AuthConfig {
    headers
        .get("x-registry-auth")
        .and_then(|v| v.to_str().ok())
        .map(AuthConfig::from_header)
        .unwrap_or_default()
}

/// `POST /images/create?fromImage=&tag=&platform=`
pub async fn pull(state: ApiState, query: Query, headers: HeaderMap) -> Result<Response, ApiError> {
    let reference = RemoteReference::parse(
        query.get("fromImage").unwrap_or_default(),
        query.get("tag").unwrap_or_default(),
    )?;
    let platform = match query.get("platform").filter(|p| !p.is_empty()) {
        Some(spec) => Some(Platform::parse(spec).map_err(ApiError::bad_request)?),
        None => None,
    };
    let from_image = query.get("fromImage").unwrap_or_default();
    // An empty tag and a name without one: every tag (`pull --all-tags`).
    let all_tags = query.get("tag").unwrap_or_default().is_empty()
        && !names_a_tag(from_image)
        && !from_image.contains('@');
    let req = PullRequest {
        reference: reference.clone(),
        platform,
        credentials: registry_auth(&headers).credentials(),
    };
    let svc = state.images.clone();
    stream_progress(
        move |progress| async move {
            if all_tags {
                svc.pull_all_tags(req, &progress).await
            } else {
                svc.pull(req, &progress).await.map(|p| vec![p])
            }
        },
        move |pulled: Vec<Pulled>| {
            let verb = if pulled.iter().any(|p| p.newer) {
                "Downloaded newer image for"
            } else {
                "Image is up to date for"
            };
            let shown = if all_tags {
                reference.familiar_name()
            } else {
                reference.familiar()
            };
            vec![json!({"status": format!("Status: {verb} {shown}")})]
        },
    )
    .await
}

/// `POST /images/{name}/push?tag=`: no tag (and none in the name) pushes
/// every local tag of the repository, as the API documents.
pub async fn push(
    state: ApiState,
    name: String,
    query: Query,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tag = query.get("tag").unwrap_or_default();
    if name.contains('@') {
        return Err(ApiError::bad_request(format!(
            "cannot push a digest reference: {name}"
        )));
    }
    let reference = RemoteReference::parse(&name, tag)?;
    let req = PushRequest {
        reference,
        all_tags: tag.is_empty() && !names_a_tag(&name),
        credentials: registry_auth(&headers).credentials(),
    };
    let svc = state.images.clone();
    stream_progress(
        move |progress| async move { svc.push(req, &progress).await },
        |_| Vec::new(),
    )
    .await
}

/// `GET /distribution/{name}/json`: the descriptor and platforms of what
/// the registry holds under `name`.
pub async fn distribution(
    State(state): State<ApiState>,
    axum::extract::Path(rest): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = rest
        .strip_suffix("/json")
        .ok_or_else(ApiError::page_not_found)?;
    let reference = RemoteReference::parse(name, "")?;
    let credentials = registry_auth(&headers).credentials();
    let registry = state.images.registry_config().clone();
    let info = distribution_info(&registry, &reference, &credentials).await?;
    let platforms: Vec<Value> = info
        .platforms
        .iter()
        .map(|p| {
            let mut item = json!({"architecture": p.architecture, "os": p.os});
            if !p.variant.is_empty() {
                item["variant"] = json!(p.variant);
            }
            item
        })
        .collect();
    let d = &info.descriptor;
    Ok(json(
        StatusCode::OK,
        &json!({
            "Descriptor": {"mediaType": d.media_type, "digest": d.digest, "size": d.size},
            "Platforms": platforms,
        }),
    ))
}

/// Runs `work` with a progress sender and answers with its events, then
/// `finish`'s messages (or the error, inside the stream).
async fn stream_progress<T, W, Fut>(
    work: W,
    finish: impl FnOnce(T) -> Vec<Value> + Send + 'static,
) -> Result<Response, ApiError>
where
    T: Send + 'static,
    W: FnOnce(berth_core::image::registry::Progress) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, RegistryError>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Step<T>>(256);
    tokio::spawn(async move {
        let (progress, mut events) = mpsc::unbounded_channel();
        let running = work(progress);
        tokio::pin!(running);
        // A client that went away does not stop the work: a pull then
        // finishes (or fails and cleans up) on its own.
        let result = loop {
            tokio::select! {
                Some(event) = events.recv() => { let _ = tx.send(Step::Event(event)).await; }
                result = &mut running => break result,
            }
        };
        while let Ok(event) = events.try_recv() {
            let _ = tx.send(Step::Event(event)).await;
        }
        if let Err(e) = &result {
            // Sent inside the stream, so the API layer's log never sees it.
            tracing::warn!(error = %e, "registry operation failed");
        }
        let _ = tx.send(Step::Done(result)).await;
    });
    let mut finish = Some(finish);
    let mut done = false;
    crate::task_stream::respond_with_events(
        rx,
        |first| match first {
            Step::Done(Err(e)) => Err(ApiError::from(e)),
            other => Ok(other),
        },
        "application/json",
        move |step| {
            let lines = match step {
                // The work ended without a result (it panicked): the body
                // is cut short, never ended as if all went well.
                None if !done => {
                    return Some(Err(std::io::Error::other(
                        "the operation ended unexpectedly",
                    )))
                }
                None => return None,
                Some(Step::Event(event)) => vec![progress_json::render(&event)],
                Some(Step::Done(Ok(value))) => {
                    done = true;
                    finish.take().map(|f| f(value)).unwrap_or_default()
                }
                Some(Step::Done(Err(e))) => {
                    done = true;
                    vec![progress_json::error(&e.to_string())]
                }
            };
            let mut body = Vec::new();
            for line in lines {
                body.extend_from_slice(line.to_string().as_bytes());
                // dockerd's stream formatter ends lines with CRLF.
                body.extend_from_slice(b"\r\n");
            }
            Some(Ok(Bytes::from(body)))
        },
    )
    .await
}

/// `POST /auth`: checks the credentials with the registry.
pub async fn auth(State(state): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let config = AuthConfig::from_json(&body)?;
    let registry = state.images.registry_config().clone();
    let token = berth_core::image::registry::login(&registry, &config).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"IdentityToken": token.unwrap_or_default(), "Status": "Login Succeeded"}),
    ))
}
