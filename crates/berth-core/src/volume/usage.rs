//! `system df` for volumes: each volume's size and use count.
//!
//! Drivers that know their usage (thin: allocated blocks) answer at once.
//! A local volume's folder is walked, as Docker does, but a walk is kept:
//! a volume nothing has mounted cannot change through berth (containers,
//! import, copy and clone all write through a mount), so its last measure
//! stands until the next mount or unmount of it. Mounted volumes are walked
//! every time, in parallel. Writes made on the host straight into a
//! volume's folder, behind berth's back, are seen once the measure is
//! older than [`UNMOUNTED_KEPT`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::filters::Filters;
use super::{VolumeError, VolumeService, VolumeUsage};
use crate::driver::DEFAULT_DRIVER;
use crate::store::VolumeRecord;
use crate::sys::usage::dir_size;

/// How long the measure of a volume nothing mounts is kept.
pub const UNMOUNTED_KEPT: Duration = Duration::from_secs(3600);

/// One measure: when, how much, and whether the volume was unmounted
/// throughout (so it stays true until a mount).
#[derive(Debug, Clone, Copy)]
struct Measure {
    at: Instant,
    bytes: i64,
    unmounted: bool,
}

/// Measures by volume name.
#[derive(Debug, Default)]
pub(super) struct SizeCache {
    measures: parking_lot::Mutex<HashMap<String, Measure>>,
    /// Bumped by every [`SizeCache::forget`]: a walk that saw it move
    /// cannot tell whether its volume was mounted meanwhile.
    forgets: AtomicU64,
}

impl SizeCache {
    /// Drops `name`'s measure: it was mounted, unmounted, removed or
    /// renamed.
    pub(super) fn forget(&self, name: &str) {
        self.forgets.fetch_add(1, Ordering::SeqCst);
        let mut measures = self.measures.lock();
        measures.remove(name);
        crate::sys::ShrinkWhenSparse::shrink_when_sparse(&mut *measures);
    }

    /// Keeps a walk's measure. It stands until the next mount only if the
    /// volume was unmounted and no mount came or went since `forgets` was
    /// read (before the walks); otherwise only for the caller's max age.
    fn keep(&self, walk: Walk, bytes: i64, forgets: u64) {
        let still = self.forgets.load(Ordering::SeqCst) == forgets;
        let measure = Measure {
            at: Instant::now(),
            bytes,
            unmounted: still && !walk.mounted,
        };
        self.measures.lock().insert(walk.name, measure);
    }

    /// The measure of `name` if it still holds: unmounted since, or
    /// younger than `max_age`.
    fn get(&self, name: &str, mounted: bool, max_age: Duration) -> Option<i64> {
        let measure = *self.measures.lock().get(name)?;
        let age = measure.at.elapsed();
        let holds = (measure.unmounted && !mounted && age < UNMOUNTED_KEPT) || age < max_age;
        holds.then_some(measure.bytes)
    }
}

/// A folder to walk for one volume.
struct Walk {
    index: usize,
    name: String,
    folder: PathBuf,
    mounted: bool,
}

impl VolumeService {
    /// Every volume with its size and use count (`system df`). Local volumes
    /// with driver options are left out, as Docker does: their data is a
    /// mounted device, not the volume folder.
    pub fn usage(&self) -> Result<Vec<VolumeUsage>, VolumeError> {
        self.usage_measured_within(Duration::ZERO)
    }

    /// [`VolumeService::usage`], where a mounted volume's folder measured
    /// less than `max_age` ago is not walked again either (metrics scraped
    /// every few seconds must not walk every file of every volume each
    /// time).
    pub fn usage_measured_within(
        &self,
        max_age: Duration,
    ) -> Result<Vec<VolumeUsage>, VolumeError> {
        let store_err = |e| VolumeError::store("df", "volumes", e);
        let counts = self.store.use_counts().map_err(store_err)?;
        let mounted: HashSet<String> = (self.store.all_mounts().map_err(store_err)?)
            .into_iter()
            .map(|(volume, _)| volume)
            .collect();
        let forgets_before = self.sizes.forgets.load(Ordering::SeqCst);
        let mut out = Vec::new();
        let mut walks = Vec::new();
        let volumes = self.list(&Filters::new())?.into_iter();
        for volume in volumes.filter(|v| v.driver != DEFAULT_DRIVER || v.options.is_empty()) {
            // Berth's own drivers only: a plugin's data is its own (Docker
            // sizes local volumes only), and is never walked or activated.
            let driver = self.drivers.builtin(&volume.driver);
            let known = driver.as_ref().and_then(|d| d.usage(&volume.name));
            let is_mounted = mounted.contains(&volume.name);
            let size = known
                .or_else(|| self.sizes.get(&volume.name, is_mounted, max_age))
                .unwrap_or_else(|| {
                    walks.push(Walk {
                        index: out.len(),
                        name: volume.name.clone(),
                        folder: volume.mountpoint.clone(),
                        mounted: is_mounted,
                    });
                    -1
                });
            out.push(VolumeUsage {
                ref_count: counts.get(&volume.name).copied().unwrap_or(0),
                capacity: driver.as_ref().and_then(|d| d.capacity(&volume.name)),
                volume,
                size,
            });
        }
        for (walk, bytes) in walk_all(walks) {
            out[walk.index].size = bytes;
            self.sizes.keep(walk, bytes, forgets_before);
        }
        Ok(out)
    }
}

impl VolumeService {
    /// The bytes each of `records` (volumes nothing mounts, under their
    /// locks) holds: the kept measure where there is one, a walk (in
    /// parallel) otherwise.
    pub(super) fn unmounted_sizes(&self, records: &[Arc<VolumeRecord>]) -> Vec<u64> {
        let mut sizes = vec![0u64; records.len()];
        let mut walks = Vec::new();
        for (index, record) in records.iter().enumerate() {
            if let Some(bytes) = self.sizes.get(&record.name, false, Duration::ZERO) {
                sizes[index] = bytes.max(0) as u64;
                continue;
            }
            let driver = self.drivers.builtin(&record.driver);
            if let Some(folder) = driver.and_then(|d| d.mountpoint(&record.name)) {
                let name = record.name.clone();
                walks.push(Walk {
                    index,
                    name,
                    folder,
                    mounted: false,
                });
            }
        }
        for (walk, bytes) in walk_all(walks) {
            sizes[walk.index] = bytes.max(0) as u64;
        }
        sizes
    }
}

/// Walks every folder (-1 for one that cannot be read), on as many
/// threads as the machine has cores.
fn walk_all(walks: Vec<Walk>) -> Vec<(Walk, i64)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(walks.len().max(1));
    if threads <= 1 {
        return walks.into_iter().map(measure).collect();
    }
    let queue = parking_lot::Mutex::new(walks.into_iter());
    let done = parking_lot::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let Some(walk) = queue.lock().next() else {
                    break;
                };
                let result = measure(walk);
                done.lock().push(result);
            });
        }
    });
    done.into_inner()
}

fn measure(walk: Walk) -> (Walk, i64) {
    let bytes = dir_size(&walk.folder).map_or(-1, |b| b as i64);
    (walk, bytes)
}
