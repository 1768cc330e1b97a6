//! What the web view's pages read: typed answers gathered from the
//! services (blocking), with the sampled history cut to what a page plots.

use std::collections::{BTreeMap, HashMap};

use berth_core::volume::{Filters, VolumeUsage};
use serde::Serialize;

use super::samples::{PoolPoint, Samples};
use crate::error::ApiError;
use crate::types::{PoolJson, VolumeJson};
use crate::ApiState;

/// A container or operation holding a volume.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HolderJson {
    pub id: String,
    /// The container's name; empty for an operation (export, copy-up).
    pub name: String,
    /// The container's state (Docker's word), or "operation".
    pub state: String,
}

/// One row of the volume list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeRowJson {
    pub name: String,
    pub driver: String,
    pub created_at: String,
    pub size: Option<u64>,
    pub used: i64,
    pub holders: Vec<HolderJson>,
    pub snapshots: Option<usize>,
    pub labels: BTreeMap<String, String>,
}

/// `GET /web/v1/overview`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OverviewJson {
    pub admin: bool,
    pub volumes: Vec<VolumeRowJson>,
    pub pools: Vec<PoolJson>,
    pub pool_history: Vec<PoolHistoryJson>,
}

/// A pool at one sampled instant.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoolHistoryJson {
    pub at: i64,
    pub pools: Vec<PoolPoint>,
}

/// One sampled value of a volume.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UsedPointJson {
    pub at: i64,
    pub used: i64,
}

/// A snapshot on a volume's page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotJson {
    pub name: String,
    pub created_at: String,
    pub allocated: u64,
}

/// `GET /web/v1/volumes/{name}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumePageJson {
    pub admin: bool,
    pub volume: VolumeJson,
    pub size: Option<u64>,
    pub used: i64,
    pub holders: Vec<HolderJson>,
    /// `None` when the driver has no snapshots.
    pub snapshots: Option<Vec<SnapshotJson>>,
    pub used_history: Vec<UsedPointJson>,
    pub pool_history: Vec<PoolHistoryJson>,
}

/// The holders of every volume, containers named.
fn holders_by_volume(state: &ApiState) -> Result<HashMap<String, Vec<HolderJson>>, ApiError> {
    let containers: HashMap<String, (String, String)> = state
        .containers
        .list(true, &Filters::new())?
        .into_iter()
        .map(|c| (c.id, (c.name, c.state.status.as_str().to_string())))
        .collect();
    let mut out: HashMap<String, Vec<HolderJson>> = HashMap::new();
    for (volume, id, _) in state.volumes.all_holders()? {
        let list = out.entry(volume).or_default();
        if list.iter().any(|h| h.id == id) {
            continue;
        }
        let (name, state) = match containers.get(&id) {
            Some((name, state)) => (name.trim_start_matches('/').to_string(), state.clone()),
            None => (String::new(), "operation".to_string()),
        };
        list.push(HolderJson { id, name, state });
    }
    Ok(out)
}

fn pool_history(samples: &Samples) -> Vec<PoolHistoryJson> {
    samples.with(|points| {
        points
            .iter()
            .map(|s| PoolHistoryJson {
                at: s.at,
                pools: s.pools.clone(),
            })
            .collect()
    })
}

fn row(u: VolumeUsage, holders: Vec<HolderJson>, snapshots: Option<usize>) -> VolumeRowJson {
    VolumeRowJson {
        name: u.volume.name.clone(),
        driver: u.volume.driver.clone(),
        created_at: crate::types::rfc3339_local(u.volume.created_at),
        size: u.capacity,
        used: u.size,
        holders,
        snapshots,
        labels: u.volume.labels,
    }
}

/// The volume list with the pools and their history.
pub fn overview(
    state: &ApiState,
    samples: &Samples,
    admin: bool,
) -> Result<OverviewJson, ApiError> {
    let mut holders = holders_by_volume(state)?;
    let usage = state
        .volumes
        .usage_measured_within(crate::metrics::LOCAL_MEASURE_MAX_AGE)?;
    let volumes = usage
        .into_iter()
        .map(|u| {
            let snapshots = state
                .volumes
                .snapshot_list(&u.volume.name)
                .ok()
                .map(|s| s.len());
            let held = holders.remove(&u.volume.name).unwrap_or_default();
            row(u, held, snapshots)
        })
        .collect();
    Ok(OverviewJson {
        admin,
        volumes,
        pools: state
            .volumes
            .pools()
            .into_iter()
            .map(PoolJson::from)
            .collect(),
        pool_history: pool_history(samples),
    })
}

/// One volume's page: inspect, holders, snapshots, history.
pub fn volume_page(
    state: &ApiState,
    samples: &Samples,
    admin: bool,
    name: &str,
) -> Result<VolumePageJson, ApiError> {
    let volume = state.volumes.get(name)?;
    let usage = state
        .volumes
        .usage_measured_within(crate::metrics::LOCAL_MEASURE_MAX_AGE)?
        .into_iter()
        .find(|u| u.volume.name == name);
    let holders = holders_by_volume(state)?.remove(name).unwrap_or_default();
    let snapshots = state.volumes.snapshot_list(name).ok().map(|list| {
        list.into_iter()
            .map(|s| SnapshotJson {
                name: s.name,
                created_at: crate::types::rfc3339_local(s.created_at),
                allocated: s.allocated,
            })
            .collect()
    });
    let used_history = samples.with(|points| {
        points
            .iter()
            .filter_map(|s| {
                Some(UsedPointJson {
                    at: s.at,
                    used: *s.volumes.get(name)?,
                })
            })
            .collect()
    });
    let driver = volume.driver.clone();
    let mut pool_history = pool_history(samples);
    for point in &mut pool_history {
        point.pools.retain(|p| p.driver == driver);
    }
    pool_history.retain(|p| !p.pools.is_empty());
    Ok(VolumePageJson {
        admin,
        volume: VolumeJson::from(volume),
        size: usage.as_ref().and_then(|u| u.capacity),
        used: usage.map_or(-1, |u| u.size),
        holders,
        snapshots,
        used_history,
        pool_history,
    })
}
