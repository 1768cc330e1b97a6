//! `GET /containers/{id}/stats` (Docker's `StatsResponse`, streamed once a
//! second or one object) and `GET /containers/{id}/top`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::container::stats::StatsSample;
use bytes::Bytes;
use serde::Serialize;

use crate::error::ApiError;
use crate::request::{blocking, json, Query};
use crate::ApiState;

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Serialize, Default)]
struct CpuUsage {
    total_usage: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    percpu_usage: Vec<u64>,
    usage_in_kernelmode: u64,
    usage_in_usermode: u64,
}

#[derive(Debug, Serialize, Default)]
struct ThrottlingData {
    periods: u64,
    throttled_periods: u64,
    throttled_time: u64,
}

#[derive(Debug, Serialize, Default)]
struct CpuStats {
    cpu_usage: CpuUsage,
    #[serde(skip_serializing_if = "is_zero")]
    system_cpu_usage: u64,
    #[serde(skip_serializing_if = "is_zero32")]
    online_cpus: u32,
    throttling_data: ThrottlingData,
}

#[derive(Debug, Serialize, Default)]
struct MemoryStats {
    #[serde(skip_serializing_if = "is_zero")]
    usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    max_usage: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    stats: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "is_zero")]
    failcnt: u64,
    #[serde(skip_serializing_if = "is_zero")]
    limit: u64,
}

#[derive(Debug, Serialize, Default)]
struct PidsStats {
    #[serde(skip_serializing_if = "is_zero")]
    current: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u64>,
}

#[derive(Debug, Serialize)]
struct BlkioStatEntry {
    major: u64,
    minor: u64,
    op: String,
    value: u64,
}

#[derive(Debug, Serialize, Default)]
struct BlkioStats {
    io_service_bytes_recursive: Option<Vec<BlkioStatEntry>>,
    io_serviced_recursive: Option<Vec<BlkioStatEntry>>,
    io_queue_recursive: Option<Vec<BlkioStatEntry>>,
    io_service_time_recursive: Option<Vec<BlkioStatEntry>>,
    io_wait_time_recursive: Option<Vec<BlkioStatEntry>>,
    io_merged_recursive: Option<Vec<BlkioStatEntry>>,
    io_time_recursive: Option<Vec<BlkioStatEntry>>,
    sectors_recursive: Option<Vec<BlkioStatEntry>>,
}

#[derive(Debug, Serialize)]
struct NetworkStats {
    rx_bytes: u64,
    rx_packets: u64,
    rx_errors: u64,
    rx_dropped: u64,
    tx_bytes: u64,
    tx_packets: u64,
    tx_errors: u64,
    tx_dropped: u64,
}

/// Docker's `StatsResponse`.
#[derive(Debug, Serialize)]
struct StatsResponse {
    name: String,
    id: String,
    read: String,
    preread: String,
    pids_stats: PidsStats,
    blkio_stats: BlkioStats,
    num_procs: u32,
    storage_stats: serde_json::Value,
    cpu_stats: CpuStats,
    precpu_stats: CpuStats,
    memory_stats: MemoryStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    networks: Option<BTreeMap<String, NetworkStats>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}

fn cpu_stats(s: &StatsSample) -> CpuStats {
    CpuStats {
        cpu_usage: CpuUsage {
            total_usage: s.cpu_total_ns,
            percpu_usage: s.cpu_percpu_ns.clone(),
            usage_in_kernelmode: s.cpu_kernel_ns,
            usage_in_usermode: s.cpu_user_ns,
        },
        system_cpu_usage: s.system_cpu_ns,
        online_cpus: s.online_cpus,
        throttling_data: ThrottlingData {
            periods: s.throttling.0,
            throttled_periods: s.throttling.1,
            throttled_time: s.throttling.2,
        },
    }
}

/// The answer for `now` (and the sample before it, if any); a container
/// that does not run gets zeroes, as dockerd sends.
fn response(
    name: &str,
    id: &str,
    now: Option<&StatsSample>,
    before: Option<&StatsSample>,
) -> StatsResponse {
    let Some(s) = now else {
        return StatsResponse {
            name: format!("/{name}"),
            id: id.to_string(),
            read: ZERO_TIME.into(),
            preread: ZERO_TIME.into(),
            pids_stats: PidsStats::default(),
            blkio_stats: BlkioStats::default(),
            num_procs: 0,
            storage_stats: serde_json::json!({}),
            cpu_stats: CpuStats::default(),
            precpu_stats: CpuStats::default(),
            memory_stats: MemoryStats::default(),
            networks: None,
        };
    };
    let blkio: Vec<BlkioStatEntry> = s
        .blkio
        .iter()
        .map(|e| BlkioStatEntry {
            major: e.major,
            minor: e.minor,
            op: e.op.clone(),
            value: e.value,
        })
        .collect();
    let networks: BTreeMap<String, NetworkStats> = s
        .networks
        .iter()
        .map(|(k, n)| {
            (
                k.clone(),
                NetworkStats {
                    rx_bytes: n.rx_bytes,
                    rx_packets: n.rx_packets,
                    rx_errors: n.rx_errors,
                    rx_dropped: n.rx_dropped,
                    tx_bytes: n.tx_bytes,
                    tx_packets: n.tx_packets,
                    tx_errors: n.tx_errors,
                    tx_dropped: n.tx_dropped,
                },
            )
        })
        .collect();
    StatsResponse {
        name: format!("/{name}"),
        id: id.to_string(),
        read: s.read.clone(),
        preread: before.map_or(ZERO_TIME.into(), |b| b.read.clone()),
        pids_stats: PidsStats {
            current: s.pids_current,
            limit: s.pids_limit,
        },
        blkio_stats: BlkioStats {
            io_service_bytes_recursive: Some(blkio),
            ..BlkioStats::default()
        },
        num_procs: 0,
        storage_stats: serde_json::json!({}),
        cpu_stats: cpu_stats(s),
        precpu_stats: before.map(cpu_stats).unwrap_or_default(),
        memory_stats: MemoryStats {
            usage: s.memory_usage,
            max_usage: s.memory_max_usage,
            stats: s.memory_stat.clone(),
            failcnt: s.memory_failcnt,
            limit: s.memory_limit,
        },
        networks: (!networks.is_empty()).then_some(networks),
    }
}

/// `GET /containers/{id}/stats?stream=&one-shot=`
pub async fn stats(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(q.as_deref());
    let stream = query.get("stream").is_none() || query.bool("stream");
    let one_shot = query.bool("one-shot");
    let svc = state.containers.clone();
    let sample = move || {
        let svc = svc.clone();
        let id = id.clone();
        async move { blocking(move || svc.stats_sample(&id).map_err(ApiError::from)).await }
    };
    let (record, first) = sample().await?;
    if !stream {
        let mut before = None;
        let mut now = first;
        if !one_shot && now.is_some() {
            // As dockerd: a second sample, so `precpu_stats` is set.
            tokio::time::sleep(Duration::from_secs(1)).await;
            before = now;
            now = sample().await?.1;
        }
        let body = response(&record.name, &record.id, now.as_ref(), before.as_ref());
        return Ok(json(StatusCode::OK, &body));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut before: Option<StatsSample> = None;
        let mut now = first;
        loop {
            let body = response(&record.name, &record.id, now.as_ref(), before.as_ref());
            let mut line = serde_json::to_vec(&body).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Ok(Bytes::from(line))).await.is_err() || now.is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            before = now;
            now = match sample().await {
                Ok((_, s)) => s,
                Err(_) => return,
            };
        }
    });
    let body = Body::from_stream(crate::streams::receiver_stream(rx));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `ContainerTopOKBody`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct TopBody {
    titles: Vec<String>,
    processes: Vec<Vec<String>>,
}

/// `GET /containers/{id}/top?ps_args=`
pub async fn top(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let args = Query::parse(q.as_deref())
        .get("ps_args")
        .unwrap_or_default()
        .to_string();
    let svc = state.containers.clone();
    let top = blocking(move || svc.top(&id, &args).map_err(ApiError::from)).await?;
    Ok(json(
        StatusCode::OK,
        &TopBody {
            titles: top.titles,
            processes: top.processes,
        },
    ))
}
