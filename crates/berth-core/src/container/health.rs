//! Health checks (`HEALTHCHECK`, `--health-*`) as moby runs them
//! (`daemon/health.go`): from the start, a probe runs through exec every
//! interval (the start interval while starting within the start period);
//! exit 0 is healthy and resets the failing streak; a failure adds to it
//! (not while starting within the start period) and `Retries` failures in
//! a row make the container unhealthy; a probe past its timeout is killed
//! and fails. The last five results are kept in `State.Health.Log`; a
//! change of status is a `health_status: …` event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::exec::{ExecIo, ExecRequest};
use super::{ContainerService, Status};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// Results kept in the log.
const MAX_LOG_ENTRIES: usize = 5;
/// Bytes of a probe's output kept.
const MAX_OUTPUT: usize = 4096;

/// `State.Health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthResult>,
}

/// One probe's result.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// A container's checked `Healthcheck`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// The probe's command (`CMD-SHELL` already as `/bin/sh -c …`).
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: i64,
}

/// The image's `Healthcheck` under the container's, field by field
/// (moby's `merge`).
pub fn merge_healthcheck(container: Option<&Value>, image: Option<&Value>) -> Option<Value> {
    let Some(Value::Object(image)) = image else {
        return container.cloned();
    };
    let Some(Value::Object(own)) = container else {
        return Some(Value::Object(image.clone()));
    };
    let mut merged = own.clone();
    for key in [
        "Test",
        "Interval",
        "Timeout",
        "StartPeriod",
        "StartInterval",
        "Retries",
    ] {
        let unset = match merged.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            _ => false,
        };
        if unset {
            if let Some(v) = image.get(key) {
                merged.insert(key.to_string(), v.clone());
            }
        }
    }
    Some(Value::Object(merged))
}

/// Checks a `Healthcheck` with moby's rules and words; `None` when there
/// is none to run (absent, empty, or `["NONE"]`).
pub fn parse_healthcheck(value: Option<&Value>) -> Result<Option<HealthCheck>, String> {
    let Some(Value::Object(h)) = value else {
        return Ok(None);
    };
    let duration = |key: &str| -> Result<Option<Duration>, String> {
        let ns = h.get(key).and_then(Value::as_i64).unwrap_or(0);
        match ns {
            0 => Ok(None),
            n if n < 1_000_000 => Err(format!("{key} in Healthcheck cannot be less than 1ms")),
            n => Ok(Some(Duration::from_nanos(n as u64))),
        }
    };
    let interval = duration("Interval")?;
    let timeout = duration("Timeout")?;
    let start_period = duration("StartPeriod")?;
    let start_interval = duration("StartInterval")?;
    let retries = h.get("Retries").and_then(Value::as_i64).unwrap_or(0);
    if retries < 0 {
        return Err("Retries in Healthcheck cannot be negative".into());
    }
    let test: Vec<String> = h
        .get("Test")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let command = match test.first().map(String::as_str) {
        None | Some("NONE") => return Ok(None),
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        Some(other) => return Err(format!("unknown healthcheck type {other:?}")),
    };
    if command.is_empty() {
        return Ok(None);
    }
    Ok(Some(HealthCheck {
        command,
        interval: interval.unwrap_or(DEFAULT_INTERVAL),
        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
        start_period: start_period.unwrap_or_default(),
        start_interval: start_interval.unwrap_or(DEFAULT_START_INTERVAL),
        retries: if retries == 0 {
            DEFAULT_RETRIES
        } else {
            retries
        },
    }))
}

impl Health {
    /// Adds a result; returns the status before it.
    pub fn record(&mut self, result: HealthResult, retries: i64, in_start_period: bool) -> String {
        let before = self.status.clone();
        if self.log.len() >= MAX_LOG_ENTRIES {
            self.log.drain(..self.log.len() + 1 - MAX_LOG_ENTRIES);
        }
        let passed = result.exit_code == 0;
        self.log.push(result);
        if passed {
            self.failing_streak = 0;
            self.status = "healthy".into();
        } else if !(self.status == "starting" && in_start_period) {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
        before
    }
}

impl ContainerService {
    /// Starts the health monitor of a container that just started (if it
    /// has a check); it ends with this run of the container.
    pub(super) fn start_health_monitor(self: &Arc<Self>, id: &str) {
        let Ok(record) = self.resolve(id) else { return };
        let Ok(Some(check)) = parse_healthcheck(record.config.extra.get("Healthcheck")) else {
            return;
        };
        self.update_health(id, |h| {
            h.status = "starting".into();
            h.failing_streak = 0;
        });
        let svc = self.clone();
        let id = id.to_string();
        let started = Instant::now();
        std::thread::spawn(move || svc.health_monitor(&id, &check, started));
    }

    fn health_monitor(self: &Arc<Self>, id: &str, check: &HealthCheck, started: Instant) {
        let watch = self.exit_watch(id);
        loop {
            let starting = self.health_status(id).as_deref() == Some("starting");
            let interval = if started.elapsed() < check.start_period && starting {
                check.start_interval
            } else {
                check.interval
            };
            if watch.wait(Some(interval)) {
                return;
            }
            let result = self.probe(id, check);
            let in_start_period = started.elapsed() < check.start_period;
            let mut change = None;
            self.update_health(id, |h| {
                let before = h.record(result.clone(), check.retries, in_start_period);
                if before != h.status {
                    change = Some(h.status.clone());
                }
            });
            if let (Some(status), Ok(record)) = (change, self.resolve(id)) {
                self.publish(&format!("health_status: {status}"), &record, &[]);
            }
        }
    }

    /// Runs the probe once through exec, within its timeout.
    fn probe(self: &Arc<Self>, id: &str, check: &HealthCheck) -> HealthResult {
        let start = super::jsonlog::now_rfc3339_nano();
        let request = ExecRequest {
            cmd: check.command.clone(),
            attach_stdout: true,
            attach_stderr: true,
            ..ExecRequest::default()
        };
        let outcome = self
            .exec_create(id, request)
            .and_then(|exec_id| Ok((self.exec_start(&exec_id, true, None)?, exec_id)));
        let (exit_code, output) = match outcome {
            Ok((session, exec_id)) => self.finish_probe(session, &exec_id, check.timeout),
            Err(e) => (-1, e.to_string()),
        };
        HealthResult {
            start,
            end: super::jsonlog::now_rfc3339_nano(),
            exit_code,
            output,
        }
    }

    fn finish_probe(
        &self,
        session: super::exec::ExecSession,
        exec_id: &str,
        timeout: Duration,
    ) -> (i64, String) {
        let reader = match session.io {
            ExecIo::Pipes { stdout, stderr, .. } => Some(std::thread::spawn(move || {
                let mut out = read_capped(stdout);
                out.push_str(&read_capped(stderr));
                out
            })),
            _ => None,
        };
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Some(code) = *session.exit.borrow() {
                break Some(code);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let Some(code) = code else {
            if let Ok(info) = self.exec_inspect(exec_id) {
                if let Some(pid) = info.pid {
                    let _ = nix::sys::signal::kill(pid.to_nix(), nix::sys::signal::Signal::SIGKILL);
                }
            }
            return (-1, format!("Health check exceeded timeout ({timeout:?})"));
        };
        let output = reader.and_then(|r| r.join().ok()).unwrap_or_default();
        (code, output)
    }

    fn health_status(&self, id: &str) -> Option<String> {
        self.resolve(id).ok()?.state.health.map(|h| h.status)
    }

    /// Changes the stored health of a running container.
    fn update_health(&self, id: &str, change: impl FnOnce(&mut Health)) {
        let _guard = self.locks.lock(id);
        let Ok(record) = self.resolve(id) else { return };
        if record.state.status != Status::Running {
            return;
        }
        let mut state = record.state.clone();
        let mut health = state.health.take().unwrap_or_default();
        change(&mut health);
        state.health = Some(health);
        if let Err(e) = self.store.set_container_state(id, &state) {
            tracing::warn!(container = %id, error = %e, "cannot record health");
        }
    }
}

/// Reads a pipe to its end, keeping the first [`MAX_OUTPUT`] bytes.
fn read_capped(fd: std::os::fd::OwnedFd) -> String {
    use std::io::Read;
    let mut file = std::fs::File::from(fd);
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_parse_with_mobys_words_and_defaults() {
        let p = |v: Value| parse_healthcheck(Some(&v));
        let c = p(json!({"Test": ["CMD-SHELL", "test -f /ok"]}))
            .unwrap()
            .unwrap();
        assert_eq!(c.command, vec!["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!((c.interval, c.retries), (DEFAULT_INTERVAL, 3));
        assert_eq!(p(json!({"Test": ["NONE"]})).unwrap(), None);
        assert_eq!(p(json!({"Test": []})).unwrap(), None);
        assert_eq!(
            p(json!({"Test": ["CMD", "true"], "Interval": 5})).unwrap_err(),
            "Interval in Healthcheck cannot be less than 1ms"
        );
        assert_eq!(
            p(json!({"Test": ["CMD", "true"], "Retries": -1})).unwrap_err(),
            "Retries in Healthcheck cannot be negative"
        );
    }

    #[test]
    fn the_image_check_fills_what_the_container_leaves_unset() {
        let image = json!({"Test": ["CMD", "img"], "Interval": 5_000_000_000i64, "Retries": 4});
        let own = json!({"Retries": 2});
        let merged = merge_healthcheck(Some(&own), Some(&image)).unwrap();
        assert_eq!(merged["Test"], json!(["CMD", "img"]));
        assert_eq!(merged["Retries"], 2);
        assert_eq!(merged["Interval"], 5_000_000_000i64);
        assert_eq!(merge_healthcheck(None, Some(&image)), Some(image));
    }

    #[test]
    fn results_move_the_status_like_moby() {
        let result = |code| HealthResult {
            exit_code: code,
            ..HealthResult::default()
        };
        let mut h = Health {
            status: "starting".into(),
            ..Health::default()
        };
        h.record(result(1), 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        h.record(result(1), 2, false);
        h.record(result(1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        assert_eq!(h.record(result(0), 2, false), "unhealthy");
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        for _ in 0..10 {
            h.record(result(0), 2, false);
        }
        assert_eq!(h.log.len(), MAX_LOG_ENTRIES);
    }
}
