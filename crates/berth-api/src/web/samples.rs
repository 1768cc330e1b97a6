//! Usage over time for the web view's plots: the daemon samples its pools
//! and its volumes' used bytes every interval and keeps the last
//! [`MAX_SAMPLES`] in memory (bounded; a restart starts a new history).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use crate::metrics::LOCAL_MEASURE_MAX_AGE;
use crate::ApiState;

/// Samples kept: at the default 10 s interval, two hours.
pub const MAX_SAMPLES: usize = 720;

/// One pool at one instant.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoolPoint {
    pub driver: String,
    pub size: u64,
    pub allocated: u64,
    pub virtual_size: u64,
}

/// Everything sampled at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Unix seconds.
    pub at: i64,
    pub pools: Vec<PoolPoint>,
    /// Used bytes by volume name.
    pub volumes: HashMap<String, i64>,
}

/// The kept samples, oldest first.
#[derive(Debug, Default)]
pub struct Samples {
    points: parking_lot::Mutex<VecDeque<Sample>>,
}

impl Samples {
    /// Keeps `sample`, forgetting the oldest past [`MAX_SAMPLES`].
    pub fn push(&self, sample: Sample) {
        let mut points = self.points.lock();
        if points.len() == MAX_SAMPLES {
            points.pop_front();
        }
        points.push_back(sample);
    }

    /// `read` over the kept samples, oldest first.
    pub fn with<T>(&self, read: impl FnOnce(&VecDeque<Sample>) -> T) -> T {
        read(&self.points.lock())
    }
}

/// Reads one sample from the services (blocking: it stats volumes).
pub fn take(state: &ApiState) -> Sample {
    let pools = state
        .volumes
        .pools()
        .into_iter()
        .map(|p| PoolPoint {
            driver: p.driver,
            size: p.size,
            allocated: p.allocated,
            virtual_size: p.virtual_size,
        })
        .collect();
    // Local folders are walked at most once a minute, as for metrics.
    let volumes = state
        .volumes
        .usage_measured_within(LOCAL_MEASURE_MAX_AGE)
        .unwrap_or_default()
        .into_iter()
        .map(|u| (u.volume.name, u.size))
        .collect();
    Sample {
        at: chrono::Utc::now().timestamp(),
        pools,
        volumes,
    }
}

/// Samples every `interval` until the process ends.
pub fn spawn_sampler(state: ApiState, samples: std::sync::Arc<Samples>, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let state = state.clone();
            match tokio::task::spawn_blocking(move || take(&state)).await {
                Ok(sample) => samples.push(sample),
                Err(e) => tracing::warn!(error = %e, "web view sample failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_keeps_the_newest() {
        let samples = Samples::default();
        for at in 0..(MAX_SAMPLES as i64 + 5) {
            samples.push(Sample {
                at,
                pools: Vec::new(),
                volumes: HashMap::new(),
            });
        }
        samples.with(|points| {
            assert_eq!(points.len(), MAX_SAMPLES);
            assert_eq!(points.front().unwrap().at, 5);
            assert_eq!(points.back().unwrap().at, MAX_SAMPLES as i64 + 4);
        });
    }
}
