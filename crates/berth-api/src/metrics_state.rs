//! The state half of the metrics: volumes, pools, snapshots, containers and
//! images, read from the services at each scrape into a fresh registry
//! (with the API's counters added), then encoded.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::AtomicU64;

use berth_core::container::Status;
use berth_core::driver::PoolStats;
use berth_core::volume::{Filters, VolumeUsage};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::ApiError;
use crate::metrics::{register_api, LOCAL_MEASURE_MAX_AGE};
use crate::ApiState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabels {
    volume: String,
    driver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriverLabels {
    driver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: ContainerState,
}

/// The states a container is counted in (Docker's words).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum ContainerState {
    created,
    running,
    exited,
    removing,
    dead,
}

impl From<Status> for ContainerState {
    fn from(status: Status) -> Self {
        match status {
            Status::Created | Status::Starting => ContainerState::created,
            Status::Running => ContainerState::running,
            Status::Exited => ContainerState::exited,
            Status::Removing => ContainerState::removing,
            Status::Dead => ContainerState::dead,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// The whole scrape, as OpenMetrics text.
pub fn render(state: &ApiState) -> Result<String, ApiError> {
    let mut registry = Registry::default();
    let version = VersionLabels {
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    gauges(
        &mut registry,
        "berth_build_info",
        "berth's version",
        [(version, 1)],
    );
    let usage = state.volumes.usage_measured_within(LOCAL_MEASURE_MAX_AGE)?;
    register_volumes(&mut registry, state, &usage);
    register_pools(&mut registry, &state.volumes.pools());
    register_containers(&mut registry, state)?;
    let images = Gauge::<i64>::default();
    images.set(state.images.list()?.len() as i64);
    registry.register("berth_images", "Images", images);
    register_api(&state.metrics, &mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|e| ApiError::internal(format!("encoding metrics: {e}")))?;
    Ok(text)
}

fn register_volumes(registry: &mut Registry, state: &ApiState, usage: &[VolumeUsage]) {
    let labels = |u: &VolumeUsage| VolumeLabels {
        volume: u.volume.name.clone(),
        driver: u.volume.driver.clone(),
    };
    let mut by_driver: BTreeMap<String, i64> = BTreeMap::new();
    for u in usage {
        *by_driver.entry(u.volume.driver.clone()).or_default() += 1;
    }
    let by_driver = by_driver
        .into_iter()
        .map(|(driver, n)| (DriverLabels { driver }, n));
    gauges(registry, "berth_volumes", "Volumes, by driver", by_driver);
    let used = usage
        .iter()
        .filter(|u| u.size >= 0)
        .map(|u| (labels(u), u.size));
    gauges(
        registry,
        "berth_volume_used_bytes",
        "Bytes a volume takes (thin: allocated in the pool; local: its folder, measured at most a minute ago)",
        used,
    );
    let capacity = usage
        .iter()
        .filter_map(|u| Some((labels(u), i64::try_from(u.capacity?).ok()?)));
    gauges(
        registry,
        "berth_volume_size_bytes",
        "Bytes a volume can hold, where its driver sets a limit",
        capacity,
    );
    let holders = usage.iter().map(|u| (labels(u), u.ref_count));
    gauges(
        registry,
        "berth_volume_holders",
        "Containers and mounts holding a volume",
        holders,
    );
    register_snapshots(registry, state, usage, labels);
}

/// Snapshot counts and bytes of the volumes whose driver has snapshots.
fn register_snapshots(
    registry: &mut Registry,
    state: &ApiState,
    usage: &[VolumeUsage],
    labels: impl Fn(&VolumeUsage) -> VolumeLabels,
) {
    let mut counts = Vec::new();
    let mut bytes = Vec::new();
    for u in usage {
        // Volumes whose driver has no snapshots answer an error: left out.
        let Ok(snapshots) = state.volumes.snapshot_list(&u.volume.name) else {
            continue;
        };
        counts.push((labels(u), snapshots.len() as i64));
        let held: u64 = snapshots.iter().map(|s| s.allocated).sum();
        bytes.push((labels(u), held as i64));
    }
    gauges(
        registry,
        "berth_volume_snapshots",
        "Snapshots of a volume",
        counts,
    );
    gauges(
        registry,
        "berth_volume_snapshots_allocated_bytes",
        "Bytes a volume's snapshots hold in the pool",
        bytes,
    );
}

/// A pool gauge: name, help, and how its value is read.
type PoolGauge<T> = (&'static str, &'static str, fn(&PoolStats) -> T);

fn register_pools(registry: &mut Registry, pools: &[PoolStats]) {
    let each = |value: fn(&PoolStats) -> u64| {
        pools.iter().map(move |p| {
            (
                DriverLabels {
                    driver: p.driver.clone(),
                },
                value(p) as i64,
            )
        })
    };
    let pool_gauges: [PoolGauge<u64>; 6] = [
        ("berth_pool_size_bytes", "Bytes a pool can hold", |p| p.size),
        (
            "berth_pool_allocated_bytes",
            "Bytes of a pool in use",
            |p| p.allocated,
        ),
        (
            "berth_pool_free_bytes",
            "Bytes of a pool still free",
            PoolStats::free,
        ),
        (
            "berth_pool_virtual_bytes",
            "Sum of the sizes of a pool's volumes",
            |p| p.virtual_size,
        ),
        ("berth_pool_volumes", "Volumes in a pool", |p| {
            p.volumes as u64
        }),
        (
            "berth_pool_backing_file_allocated_bytes",
            "Bytes a pool's backing file takes on the host",
            |p| p.backing_file_allocated.unwrap_or(0),
        ),
    ];
    for (name, help, value) in pool_gauges {
        gauges(registry, name, help, each(value));
    }
    let ratios: [PoolGauge<f64>; 2] = [
        (
            "berth_pool_overcommit_ratio",
            "Sum of the volumes' sizes over the pool's size",
            |p| p.overcommit,
        ),
        (
            "berth_pool_high_water_ratio",
            "Allocated fraction past which creates warn",
            |p| p.high_water,
        ),
    ];
    for (name, help, value) in ratios {
        let family = Family::<DriverLabels, Gauge<f64, AtomicU64>>::default();
        for p in pools {
            let labels = DriverLabels {
                driver: p.driver.clone(),
            };
            family.get_or_create(&labels).set(value(p));
        }
        registry.register(name, help, family);
    }
}

fn register_containers(registry: &mut Registry, state: &ApiState) -> Result<(), ApiError> {
    use ContainerState::*;
    let mut counts = [created, running, exited, removing, dead].map(|s| (s, 0i64));
    for container in state.containers.list(true, &Filters::new())? {
        let s = ContainerState::from(container.state.status);
        if let Some(entry) = counts.iter_mut().find(|(state, _)| *state == s) {
            entry.1 += 1;
        }
    }
    let values = counts.map(|(state, n)| (StateLabels { state }, n));
    gauges(registry, "berth_containers", "Containers, by state", values);
    Ok(())
}

/// Registers a gauge family holding `values`.
fn gauges<L>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) where
    L: Clone + Debug + Hash + Eq + EncodeLabelSet + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).set(value);
    }
    registry.register(name, help, family);
}
