//! Restart policies (`--restart no|always|unless-stopped|on-failure[:N]`)
//! as moby's restart manager applies them (`daemon/internal/restartmanager`,
//! `daemon/monitor.go`): on each exit the policy decides; a restart waits
//! a back-off that starts at 100 ms, doubles on each restart and stops at
//! one minute, and starts over once the container ran 10 s; `docker stop`
//! and `docker kill` mark the container manually stopped (which
//! `unless-stopped` honours, and which cancels a restart under way); a
//! manual start clears the mark and the count. At daemon start-up the
//! containers the policy wants running are started again (`always` even
//! after a manual stop, as Docker does).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{ContainerRecord, ContainerService, ContainerState, Status};

/// The first back-off.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest back-off.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long resets the back-off.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// Restart after a non-zero exit, at most `max_retries` times (0: no
    /// limit).
    OnFailure {
        max_retries: i64,
    },
}

/// Parses and checks a restart policy with moby's rules and words
/// (`ValidateRestartPolicy`; an empty name is "no", as before Docker 25).
pub fn parse_restart_policy(value: Option<&Value>) -> Result<RestartPolicy, String> {
    let Some(Value::Object(policy)) = value else {
        return Ok(RestartPolicy::No);
    };
    let name = policy.get("Name").and_then(Value::as_str).unwrap_or("");
    let max = policy
        .get("MaximumRetryCount")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    match name {
        "always" | "unless-stopped" | "no" if max != 0 => {
            let mut msg =
                "invalid restart policy: maximum retry count can only be used with 'on-failure'"
                    .to_string();
            if max < 0 {
                msg.push_str(" and cannot be negative");
            }
            Err(msg)
        }
        "always" => Ok(RestartPolicy::Always),
        "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
        "no" | "" => Ok(RestartPolicy::No),
        "on-failure" if max < 0 => {
            Err("invalid restart policy: maximum retry count cannot be negative".into())
        }
        "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: max }),
        other => Err(format!(
            "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        )),
    }
}

impl RestartPolicy {
    /// Whether an exit with `exit_code` is followed by a restart.
    pub fn wants_restart(self, exit_code: i64, manually_stopped: bool, restarts: i64) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::UnlessStopped => !manually_stopped,
            RestartPolicy::OnFailure { max_retries } => {
                (max_retries == 0 || restarts < max_retries) && exit_code != 0
            }
        }
    }
}

/// The next back-off after `previous` (none yet: `None`) for a run of
/// `ran_for`.
pub fn next_delay(previous: Option<Duration>, ran_for: Duration) -> Duration {
    match previous {
        Some(p) if ran_for < RESET_AFTER => (p * 2).min(MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

/// Generations of planned restarts: never reused, so a back-off thread of
/// a cancelled restart can never match a later one of the same container
/// (a count taken from the table's current entries could repeat once the
/// table emptied).
static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A restart waiting for its back-off; a newer generation (or none)
/// cancels it.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingRestart {
    delay: Duration,
    generation: u64,
}

/// Back-offs by container.
pub(super) type RestartTable = parking_lot::Mutex<HashMap<String, PendingRestart>>;

impl ContainerService {
    /// Decides, under the container's lock at its exit, whether the policy
    /// restarts it; if so marks `state` restarting and returns the delay.
    pub(super) fn plan_restart(
        &self,
        record: &ContainerRecord,
        state: &mut ContainerState,
    ) -> Option<(Duration, u64)> {
        let policy = parse_restart_policy(record.host_config.extra.get("RestartPolicy")).ok()?;
        let stopped_on_purpose = self.exit_on_next.lock().contains(&record.id);
        if stopped_on_purpose
            || !policy.wants_restart(state.exit_code, state.manually_stopped, state.restart_count)
        {
            self.restarts.lock().remove(&record.id);
            return None;
        }
        let ran_for = run_time(state);
        let mut table = self.restarts.lock();
        let previous = table.get(&record.id).map(|p| p.delay);
        let generation = NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let delay = next_delay(previous, ran_for);
        table.insert(record.id.clone(), PendingRestart { delay, generation });
        state.restarting = true;
        state.restart_count += 1;
        Some((delay, generation))
    }

    /// After the back-off, starts the container again unless the restart
    /// was cancelled meanwhile (stop, kill, remove, a manual start).
    pub(super) fn schedule_restart(self: &Arc<Self>, id: String, delay: Duration, generation: u64) {
        let svc = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            if !svc.restart_still_planned(&id, generation) {
                return;
            }
            if let Err(e) = svc.start_restarting(&id, generation) {
                tracing::warn!(container = %id, error = %e, "restart failed");
                svc.end_restarting(&id, Some(e.to_string()));
            }
        });
    }

    /// Whether the restart of generation `generation` is still the one
    /// planned for `id` (checked again under the container's lock: a stop
    /// may have cancelled it after the back-off thread's first look).
    pub(super) fn restart_still_planned(&self, id: &str, generation: u64) -> bool {
        self.restarts.lock().get(id).map(|p| p.generation) == Some(generation)
    }

    /// Cancels a restart waiting for its back-off and marks the container
    /// stopped; whether one was waiting.
    pub(super) fn cancel_restart(&self, id: &str) -> bool {
        self.restarts.lock().remove(id);
        self.end_restarting(id, None)
    }

    /// Clears the restarting mark (with the start's error, if any).
    fn end_restarting(&self, id: &str, error: Option<String>) -> bool {
        let _guard = self.locks.lock(id);
        let Ok(record) = self.resolve(id) else {
            return false;
        };
        if !record.state.restarting {
            return false;
        }
        let mut state = record.state.clone();
        state.restarting = false;
        if let Some(e) = error {
            state.error = e;
        }
        if let Err(e) = self.store.set_container_state(id, &state) {
            tracing::error!(container = %id, error = %e, "cannot record state");
        }
        true
    }

    /// `docker restart`: stops a running container (its stop signal, then
    /// SIGKILL after `timeout`), its exit neither restarted by the policy
    /// nor auto-removed, then starts it (a manual start).
    pub fn restart(
        self: &Arc<Self>,
        name_or_id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), super::ContainerError> {
        let record = self.resolve(name_or_id)?;
        let id = record.id.clone();
        self.manual_restarts.lock().insert(id.clone());
        let stopped = match self.stop(&id, timeout, signal) {
            Err(super::ContainerError::NotRunning(_)) => Ok(()),
            other => other,
        };
        self.manual_restarts.lock().remove(&id);
        stopped?;
        self.start(&id)?;
        self.publish("restart", &record, &[]);
        Ok(())
    }

    /// Starts the containers the policy wants running after the daemon
    /// was down: every restart policy is applied to the exit recorded
    /// (containers that were waiting for a back-off start at once).
    pub fn restart_after_startup(self: &Arc<Self>) -> Vec<String> {
        let Ok(records) = self.store.list_containers() else {
            return Vec::new();
        };
        // Exits recorded by this start-up's recovery have their restart
        // scheduled already (with its back-off).
        let scheduled = self.restarts.lock().clone();
        let wanted: Vec<String> = records
            .into_iter()
            .filter(|c| !scheduled.contains_key(&c.id))
            .filter(|c| c.state.status == Status::Exited && c.state.started_at.is_some())
            .filter(|c| {
                let policy = parse_restart_policy(c.host_config.extra.get("RestartPolicy"))
                    .unwrap_or_default();
                c.state.restarting
                    || policy.wants_restart(
                        c.state.exit_code,
                        c.state.manually_stopped,
                        c.state.restart_count,
                    )
            })
            .map(|c| c.id)
            .collect();
        for id in &wanted {
            // As moby's restore: a start that resets the restart manager.
            if let Err(e) = self.start(id) {
                tracing::warn!(container = %id, error = %e, "restart at start-up failed");
                self.end_restarting(id, Some(e.to_string()));
            }
        }
        wanted
    }
}

/// How long the container ran before this exit.
fn run_time(state: &ContainerState) -> Duration {
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    match (parse(&state.started_at), parse(&state.finished_at)) {
        (Some(start), Some(end)) => (end - start).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_parse_with_mobys_words() {
        let p = |v: Value| parse_restart_policy(Some(&v));
        assert_eq!(p(json!({"Name": "always"})), Ok(RestartPolicy::Always));
        assert_eq!(p(json!({"Name": ""})), Ok(RestartPolicy::No));
        assert_eq!(parse_restart_policy(None), Ok(RestartPolicy::No));
        assert_eq!(
            p(json!({"Name": "on-failure", "MaximumRetryCount": 3})),
            Ok(RestartPolicy::OnFailure { max_retries: 3 })
        );
        let err = p(json!({"Name": "always", "MaximumRetryCount": -1})).unwrap_err();
        assert!(
            err.ends_with("with 'on-failure' and cannot be negative"),
            "{err}"
        );
        let err = p(json!({"Name": "on-failure", "MaximumRetryCount": -2})).unwrap_err();
        assert_eq!(
            err,
            "invalid restart policy: maximum retry count cannot be negative"
        );
        let err = p(json!({"Name": "sometimes"})).unwrap_err();
        assert!(err.starts_with("invalid restart policy: unknown policy 'sometimes'"));
    }

    #[test]
    fn policies_decide_like_the_restart_manager() {
        use RestartPolicy::*;
        assert!(!No.wants_restart(1, false, 0));
        assert!(Always.wants_restart(0, true, 99));
        assert!(UnlessStopped.wants_restart(0, false, 0));
        assert!(!UnlessStopped.wants_restart(137, true, 0));
        let twice = OnFailure { max_retries: 2 };
        assert!(twice.wants_restart(1, false, 1));
        assert!(!twice.wants_restart(1, false, 2));
        assert!(!twice.wants_restart(0, false, 0));
        assert!(OnFailure { max_retries: 0 }.wants_restart(3, false, 1000));
    }

    #[test]
    fn back_off_doubles_caps_and_resets() {
        let short = Duration::from_secs(1);
        let mut d = next_delay(None, short);
        assert_eq!(d, Duration::from_millis(100));
        let mut seen = vec![d];
        for _ in 0..12 {
            d = next_delay(Some(d), short);
            seen.push(d);
        }
        assert_eq!(seen[1], Duration::from_millis(200));
        assert_eq!(seen[4], Duration::from_millis(1600));
        assert_eq!(*seen.last().unwrap(), Duration::from_secs(60));
        assert_eq!(next_delay(Some(d), Duration::from_secs(10)), FIRST_DELAY);
    }
}
