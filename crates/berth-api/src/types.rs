//! Docker's JSON shapes, field for field and in Docker's order (Go writes
//! struct fields in declaration order; these structs declare the same).

use std::collections::BTreeMap;

use berth_core::driver::PoolStats;
use berth_core::volume::{PruneReport, Volume, VolumeUsage};
use serde::{Deserialize, Serialize};

/// `volume.Volume`. `Labels`/`Options` are `null` when empty; `Status`
/// and `UsageData` appear only when set.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeJson {
    pub created_at: String,
    pub driver: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub mountpoint: String,
    pub name: String,
    pub options: Option<BTreeMap<String, String>>,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_data: Option<UsageDataJson>,
}

/// `volume.UsageData`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct UsageDataJson {
    pub ref_count: i64,
    pub size: i64,
}

impl From<Volume> for VolumeJson {
    fn from(v: Volume) -> Self {
        VolumeJson {
            created_at: rfc3339_local(v.created_at),
            driver: v.driver,
            labels: (!v.labels.is_empty()).then_some(v.labels),
            mountpoint: (v.mountpoint.into_os_string().into_string())
                .unwrap_or_else(|raw| raw.to_string_lossy().into_owned()),
            name: v.name,
            options: (!v.options.is_empty()).then_some(v.options),
            scope: v.scope.as_str().to_string(),
            status: v.status,
            usage_data: None,
        }
    }
}

impl From<VolumeUsage> for VolumeJson {
    fn from(u: VolumeUsage) -> Self {
        VolumeJson {
            usage_data: Some(UsageDataJson {
                ref_count: u.ref_count,
                size: u.size,
            }),
            ..u.volume.into()
        }
    }
}

/// Go's `time.RFC3339` in the daemon's local time zone, whole seconds.
/// The last answer is kept per thread: a list of thousands of volumes
/// made in bulk asks for the same second again and again.
pub fn rfc3339_local(secs: i64) -> String {
    use chrono::TimeZone;
    thread_local! {
        static LAST: std::cell::RefCell<Option<(i64, String)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((at, text)) if *at == secs => text.clone(),
        _ => {
            let text = match chrono::Local.timestamp_opt(secs, 0).single() {
                Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                None => "0001-01-01T00:00:00Z".to_string(),
            };
            *last = Some((secs, text.clone()));
            text
        }
    })
}

/// `volume.CreateOptions` (the create request body).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeCreateBody {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// `volume.PruneReport`: `VolumesDeleted` is never null.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumePruneJson {
    pub volumes_deleted: Vec<String>,
    pub space_reclaimed: u64,
}

impl From<PruneReport> for VolumePruneJson {
    fn from(r: PruneReport) -> Self {
        VolumePruneJson {
            volumes_deleted: r.deleted,
            space_reclaimed: r.space_reclaimed,
        }
    }
}

/// One pool of `GET /berth/v1/pools` (berth's own answer).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoolJson {
    pub driver: String,
    pub root: String,
    pub size: u64,
    pub allocated: u64,
    pub virtual_size: u64,
    pub overcommit: f64,
    pub volumes: usize,
    pub backing_file_allocated: Option<u64>,
    pub high_water: f64,
}

impl From<PoolStats> for PoolJson {
    fn from(p: PoolStats) -> Self {
        PoolJson {
            driver: p.driver,
            root: p.root.to_string_lossy().into_owned(),
            size: p.size,
            allocated: p.allocated,
            virtual_size: p.virtual_size,
            overcommit: p.overcommit,
            volumes: p.volumes,
            backing_file_allocated: p.backing_file_allocated,
            high_water: p.high_water,
        }
    }
}

/// `types.DiskUsage`. Parts not asked for (API ≥ 1.42 `type`) are null.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskUsageJson {
    pub layers_size: i64,
    pub images: Option<Vec<serde_json::Value>>,
    pub containers: Option<Vec<serde_json::Value>>,
    pub volumes: Option<Vec<VolumeJson>>,
    pub build_cache: Option<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builder_size: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::driver::Scope;

    #[test]
    fn volume_json_matches_dockers_shape() {
        let v = Volume {
            name: "foo".into(),
            driver: "local".into(),
            mountpoint: "/r/volumes/foo/_data".into(),
            created_at: 0,
            labels: Default::default(),
            options: Default::default(),
            scope: Scope::Local,
            status: None,
        };
        let json = serde_json::to_string(&VolumeJson::from(v)).unwrap();
        let created = rfc3339_local(0);
        assert_eq!(
            json,
            format!(
                r#"{{"CreatedAt":"{created}","Driver":"local","Labels":null,"Mountpoint":"/r/volumes/foo/_data","Name":"foo","Options":null,"Scope":"local"}}"#
            )
        );
    }
}
