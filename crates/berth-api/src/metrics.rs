//! Prometheus metrics (`berth daemon --metrics-addr HOST:PORT`, `GET
//! /metrics`, OpenMetrics text from the `prometheus-client` crate).
//!
//! Two kinds: the API's own counters (requests by route and status, their
//! latency, requests in flight), kept from start; and the state of the
//! data (volumes, pools, snapshots, containers, images), read afresh at
//! every scrape from the services, the same numbers `volume inspect`,
//! `system df` and `berth pool ls` show. Local volumes are the exception:
//! their size is a walk of the folder, so a scrape reuses a measure taken
//! less than [`LOCAL_MEASURE_MAX_AGE`] ago.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::error::ApiError;
use crate::request::blocking;
use crate::ApiState;

/// How old a local volume's measured size may be in a scrape.
pub const LOCAL_MEASURE_MAX_AGE: Duration = Duration::from_secs(60);

/// The route label of requests no route matched.
const UNMATCHED: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// The API's counters, shared by every request from the daemon's start.
#[derive(Debug)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<RouteLabels, Gauge>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            // 1 ms to about 33 s.
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            in_flight: Family::default(),
        }
    }
}

/// Which route answered, left on the response for [`count_unmatched`].
#[derive(Clone, Copy)]
struct Routed;

/// Middleware on every matched route: counts the request, times it to its
/// response head, and holds it "in flight" until its body is finished (a
/// streamed clone or export stays in flight while it streams).
pub async fn track_route(
    State(state): State<ApiState>,
    route: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let labels = RouteLabels {
        method: method_label(request.method()),
        route: route.as_str().to_string(),
    };
    // The guard exists before the handler runs: a client that goes away
    // first drops this future, and the guard with it.
    let in_flight = InFlight::enter(state.metrics.in_flight.get_or_create(&labels).clone());
    let started = Instant::now();
    let mut response = next.run(request).await;
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    state.metrics.count(labels, response.status());
    response.extensions_mut().insert(Routed);
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, streams_guarded(body, in_flight))
}

/// A request method as a label: the standard ones by name, anything else
/// `other` (a client must not create series at will).
fn method_label(method: &axum::http::Method) -> String {
    use axum::http::Method;
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    if known.contains(method) {
        method.as_str().to_string()
    } else {
        "other".to_string()
    }
}

/// Middleware around the whole API: counts what no route matched.
pub async fn count_unmatched(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.method());
    let response = next.run(request).await;
    if response.extensions().get::<Routed>().is_none() {
        let route = UNMATCHED.to_string();
        state
            .metrics
            .count(RouteLabels { method, route }, response.status());
    }
    response
}

impl ApiMetrics {
    fn count(&self, route: RouteLabels, status: StatusCode) {
        let labels = RequestLabels {
            method: route.method,
            route: route.route,
            status: status.as_u16(),
        };
        self.requests.get_or_create(&labels).inc();
    }
}

/// A request in the in-flight gauge until dropped.
struct InFlight(Gauge);

impl InFlight {
    fn enter(gauge: Gauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `body`, holding `guard` until the body is dropped (sent or abandoned);
/// its size stays known, so answers keep their `Content-Length`.
fn streams_guarded(body: axum::body::Body, guard: InFlight) -> axum::body::Body {
    axum::body::Body::new(Guarded {
        inner: body,
        _guard: guard,
    })
}

struct Guarded {
    inner: axum::body::Body,
    _guard: InFlight,
}

impl http_body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `GET /metrics` of the metrics listener.
pub async fn scrape(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let text = blocking(move || super::metrics_state::render(&state)).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Registers the API's counters in a scrape's registry.
pub(crate) fn register_api(metrics: &ApiMetrics, registry: &mut Registry) {
    registry.register(
        "berth_api_requests",
        "API requests answered, by method, route and status",
        metrics.requests.clone(),
    );
    registry.register(
        "berth_api_request_duration_seconds",
        "Time to the response head of API requests, by method and route",
        metrics.latency.clone(),
    );
    registry.register(
        "berth_api_requests_in_flight",
        "API requests (and their streamed bodies) in progress, by method and route; attach sessions leave the count when the connection is taken over",
        metrics.in_flight.clone(),
    );
}

/// The metrics listener's routes: `/metrics`, anything else 404.
pub fn metrics_app(state: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(crate::error::not_found)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let odd = Method::from_bytes(b"METH1").unwrap();
        assert_eq!(method_label(&odd), "other");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other");
    }
}
