//! The volume as callers see it, and the requests that make one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::driver::{DriverOptions, Scope};

/// A request to create (or reuse) a volume.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// `None` or `""` makes an anonymous volume.
    pub name: Option<String>,
    /// `""` means the default driver.
    pub driver: String,
    pub options: DriverOptions,
    pub labels: BTreeMap<String, String>,
}

/// One volume: its metadata plus what its driver says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: PathBuf,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
    pub options: DriverOptions,
    pub scope: Scope,
    /// Driver status, filled only by single-volume get.
    pub status: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A volume as a list shows it: the stored row, shared with the store's
/// in-memory rows (nothing copied), and what its driver says without
/// touching storage.
#[derive(Debug, Clone)]
pub struct ListedVolume {
    pub record: std::sync::Arc<crate::store::VolumeRecord>,
    pub mountpoint: PathBuf,
    pub scope: Scope,
}

/// A volume with its disk usage, for `system df`.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeUsage {
    pub volume: Volume,
    /// Bytes used, or -1 when the driver cannot tell.
    pub size: i64,
    /// Number of holders (containers) and active mounts.
    pub ref_count: i64,
    /// Bytes the volume can hold, when its driver sets a limit.
    pub capacity: Option<u64>,
}
