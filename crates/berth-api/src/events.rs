//! `GET /events`: Docker's event stream (JSON messages, one per line) of
//! volume, container and image events, with `since`, `until` and filters
//! (`type`, `event`, `container`, `volume`, `image`).

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::events::Event;
use berth_core::volume::Filters;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::request::Query;
use crate::ApiState;

const FILTER_KEYS: [&str; 5] = ["type", "event", "container", "volume", "image"];

/// Docker's `events.Message` for one event.
fn message(e: &Event) -> Value {
    let secs = (e.time_nanos / 1_000_000_000) as i64;
    let mut v = json!({
        "Type": e.kind, "Action": e.action,
        "Actor": {"ID": e.actor, "Attributes": e.attributes},
        "scope": "local", "time": secs, "timeNano": e.time_nanos as i64,
    });
    if e.kind == "container" {
        v["status"] = json!(e.action);
        v["id"] = json!(e.actor);
        v["from"] = json!(e.attributes.get("image").cloned().unwrap_or_default());
    }
    v
}

fn matches(filters: &Filters, e: &Event) -> bool {
    let any = |key: &str, test: &dyn Fn(&str) -> bool| {
        filters.get(key).is_none_or(|vs| vs.iter().any(|v| test(v)))
    };
    let attr = |k: &str| e.attributes.get(k).map(String::as_str).unwrap_or_default();
    any("type", &|v| v == e.kind)
        && any("event", &|v| v == e.action)
        && any("container", &|v| {
            e.kind == "container" && (e.actor.starts_with(v) || attr("name") == v)
                || e.kind == "volume" && attr("container").starts_with(v)
        })
        && any("volume", &|v| e.kind == "volume" && e.actor == v)
        && any("image", &|v| {
            e.kind == "container" && attr("image") == v || e.kind == "image" && e.actor == v
        })
}

/// `since`/`until`: unix seconds with an optional fraction (what the docker
/// CLI sends), as nanoseconds.
fn parse_time(raw: Option<&str>) -> Result<Option<i128>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let secs: f64 = raw
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid time value: {raw:?}")))?;
    Ok(Some((secs * 1e9) as i128))
}

fn line(e: &Event) -> Bytes {
    let mut bytes = serde_json::to_vec(&message(e)).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// `GET /events?since=&until=&filters=`
pub async fn events(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let filters = query.filters()?;
    if let Some(bad) = filters.keys().find(|k| !FILTER_KEYS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("invalid filter '{bad}'")));
    }
    let since = parse_time(query.get("since"))?;
    let until = parse_time(query.get("until"))?;
    let (history, mut live) = state.events.subscribe();
    let past: Vec<Bytes> = history
        .iter()
        .filter(|e| {
            since.is_some_and(|s| e.time_nanos >= s) && until.is_none_or(|u| e.time_nanos <= u)
        })
        .filter(|e| matches(&filters, e))
        .map(line)
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        for bytes in past {
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
        let now = berth_core::events::Event::now("", "", "", &[]).time_nanos;
        let deadline = until.map(|u| {
            tokio::time::Instant::now() + std::time::Duration::from_nanos((u - now).max(0) as u64)
        });
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, live.recv()).await.ok(),
                    None => Some(live.recv().await),
                }
            };
            match next.await {
                None | Some(Err(RecvError::Closed)) => return,
                Some(Err(RecvError::Lagged(_))) => continue,
                Some(Ok(e)) if matches(&filters, &e) => {
                    if tx.send(line(&e)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|b| b.map(Ok::<_, std::convert::Infallible>))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_select_by_type_action_and_actor() {
        let vol = Event::now(
            "volume",
            "mount",
            "data",
            &[("container", "abc123"), ("driver", "local")],
        );
        let ctr = Event::now(
            "container",
            "die",
            "abc123",
            &[("image", "img:1"), ("name", "web")],
        );
        let f = |pairs: &[(&str, &str)]| -> Filters {
            let mut m = Filters::new();
            for (k, v) in pairs {
                m.entry(k.to_string()).or_default().push(v.to_string());
            }
            m
        };
        assert!(
            matches(&f(&[("type", "volume")]), &vol) && !matches(&f(&[("type", "volume")]), &ctr)
        );
        assert!(matches(&f(&[("container", "web")]), &ctr));
        assert!(matches(&f(&[("container", "abc")]), &vol));
        assert!(matches(&f(&[("image", "img:1"), ("event", "die")]), &ctr));
        assert_eq!(message(&ctr)["status"], "die");
        assert_eq!(message(&vol)["Actor"]["Attributes"]["driver"], "local");
    }
}
