//! `GET /events`: Docker's event stream (JSON messages, one per line) of
//! volume, container and image events, with `since`, `until` and filters
//! (`type`, `event`, `container`, `volume`, `image`).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::events::Event;
use berth_core::volume::Filters;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::request::Query;
use crate::ApiState;

const FILTER_KEYS: [&str; 6] = ["type", "event", "container", "volume", "image", "network"];

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

/// Actions that carry a detail after a colon (`health_status: healthy`,
/// `exec_start: sh -c …`); filtering on the bare word matches them all,
/// as moby's `matchEvent` does (its prefix match, #25798).
const DETAILED_ACTIONS: [&str; 3] = ["health_status", "exec_create", "exec_start"];

fn event_matches(wanted: &str, action: &str) -> bool {
    wanted == action || DETAILED_ACTIONS.contains(&wanted) && action.starts_with(wanted)
}

fn matches(filters: &Filters, e: &Event) -> bool {
    let any = |key: &str, test: &dyn Fn(&str) -> bool| {
        filters.get(key).is_none_or(|vs| vs.iter().any(|v| test(v)))
    };
    let attr = |k: &str| e.attributes.get(k).map(String::as_str).unwrap_or_default();
    any("type", &|v| v == e.kind)
        && any("event", &|v| event_matches(v, &e.action))
        && any("container", &|v| {
            e.kind == "container" && (e.actor.starts_with(v) || attr("name") == v)
                || e.kind == "volume" && attr("container").starts_with(v)
        })
        && any("volume", &|v| e.kind == "volume" && e.actor == v)
        // Docker matches a network by ID or name.
        && any("network", &|v| e.kind == "network" && (e.actor == v || attr("name") == v))
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
    check_filter_keys(&filters)?;
    let since = parse_time(query.get("since"))?;
    let until = parse_time(query.get("until"))?;
    let (history, live) = state.events.subscribe();
    let past = past_lines(&history, since, until, &filters);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(send_events(past, live, until, filters, tx));
    Ok(json_lines_response(rx))
}

/// Refuses a filter key `/events` does not know, with Docker's words.
fn check_filter_keys(filters: &Filters) -> Result<(), ApiError> {
    match filters.keys().find(|k| !FILTER_KEYS.contains(&k.as_str())) {
        Some(bad) => Err(ApiError::bad_request(format!("invalid filter '{bad}'"))),
        None => Ok(()),
    }
}

/// The stored events between `since` and `until` that pass the filters,
/// as lines. Without `since` there are none: Docker replays history only
/// when asked.
fn past_lines(
    history: &[Event],
    since: Option<i128>,
    until: Option<i128>,
    filters: &Filters,
) -> Vec<Bytes> {
    history
        .iter()
        .filter(|e| {
            since.is_some_and(|s| e.time_nanos >= s) && until.is_none_or(|u| e.time_nanos <= u)
        })
        .filter(|e| matches(filters, e))
        .map(line)
        .collect()
}

/// Sends the past lines, then every live event that passes the filters
/// until `until` (forever without it), the bus closes, or the client goes
/// away.
async fn send_events(
    past: Vec<Bytes>,
    mut live: broadcast::Receiver<Event>,
    until: Option<i128>,
    filters: Filters,
    tx: mpsc::Sender<Bytes>,
) {
    for bytes in past {
        if tx.send(bytes).await.is_err() {
            return;
        }
    }
    let deadline = deadline_of(until);
    loop {
        match next_event(&mut live, deadline).await {
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
}

/// `until` (unix nanoseconds, the event clock) as an instant on tokio's
/// clock; a time already past is now.
fn deadline_of(until: Option<i128>) -> Option<Instant> {
    let now = Event::now("", "", "", &[]).time_nanos;
    until.map(|u| Instant::now() + Duration::from_nanos((u - now).max(0) as u64))
}

/// The next live event; `None` once `deadline` has passed.
async fn next_event(
    live: &mut broadcast::Receiver<Event>,
    deadline: Option<Instant>,
) -> Option<Result<Event, RecvError>> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, live.recv()).await.ok(),
        None => Some(live.recv().await),
    }
}

/// A `200` of JSON lines arriving on `lines`, until its sender is dropped.
fn json_lines_response(mut lines: mpsc::Receiver<Bytes>) -> Response {
    let body = futures_util::stream::poll_fn(move |cx| {
        lines
            .poll_recv(cx)
            .map(|b| b.map(Ok::<_, std::convert::Infallible>))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
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
        assert!(event_matches("health_status", "health_status: healthy"));
        assert!(!event_matches("die", "died"));
        assert_eq!(message(&ctr)["status"], "die");
        assert_eq!(message(&vol)["Actor"]["Attributes"]["driver"], "local");
    }
}
