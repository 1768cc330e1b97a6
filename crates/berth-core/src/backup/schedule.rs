//! Backup schedules: one per volume, run by the daemon
//! (`berth volume backup-schedule VOL --repo R --every 6h|--cron '0 3 * * *'
//! [--keep-* N]`).
//!
//! - Each due schedule runs on a thread of its own; a schedule whose run is
//!   still going is not started again (never two at a time per volume).
//! - The next run is computed from when a run ends, so runs missed while
//!   the daemon was down are caught up once at start, not once per miss.
//! - A run is a backup, then (with keep rules) a forget of that volume's
//!   backups. Its result (time, snapshot or error, consecutive failures)
//!   is kept with the schedule, shown by `volume inspect` and sent as an
//!   event (`backup` actions `scheduled` and `scheduled-failed`).

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BackupError, BackupRequest, BackupService, KeepRules, Progress};

/// When a schedule runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum When {
    /// Every so many seconds.
    Every(u64),
    /// A five-field cron pattern, in the daemon's local time.
    Cron(String),
}

/// The outcome of a schedule's last run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LastRun {
    /// Seconds since the Unix epoch.
    pub started: i64,
    pub finished: i64,
    pub snapshot: Option<String>,
    pub error: Option<String>,
}

/// One volume's backup schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Schedule {
    pub volume: String,
    pub repo: String,
    pub when: When,
    pub keep: Option<KeepRules>,
    pub tags: Vec<String>,
    pub stop_containers: bool,
    /// Seconds since the Unix epoch.
    pub next_run: i64,
    pub last_run: Option<LastRun>,
    /// Failed runs since the last that worked.
    pub failures: u32,
}

/// The shortest interval a schedule may have.
const MIN_EVERY: u64 = 60;
/// The longest interval (ten years): times stay far inside `i64` seconds.
const MAX_EVERY: u64 = 10 * 366 * 86400;

/// Parses `--every`: a number with a unit, s, m, h or d (`90s`, `30m`,
/// `6h`, `1d`); at least a minute.
pub fn parse_every(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid interval {text:?}: use a number and s, m, h or d (6h)"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(format!(
                "invalid interval {text:?}: use a number and s, m, h or d (6h)"
            ))
        }
    };
    let secs = n.saturating_mul(scale);
    if secs < MIN_EVERY {
        return Err(format!("interval {text:?} is shorter than a minute"));
    }
    if secs > MAX_EVERY {
        return Err(format!("interval {text:?} is longer than ten years"));
    }
    Ok(secs)
}

/// The time a schedule runs next after `after` (seconds since the epoch).
pub fn next_after(when: &When, after: i64) -> Result<i64, String> {
    match when {
        When::Every(secs) => i64::try_from(*secs)
            .ok()
            .and_then(|secs| after.checked_add(secs))
            .ok_or_else(|| format!("interval of {secs} s is out of range")),
        When::Cron(pattern) => {
            let cron = croner::Cron::from_str(pattern)
                .map_err(|e| format!("invalid cron pattern {pattern:?}: {e}"))?;
            let start = chrono::DateTime::from_timestamp(after, 0)
                .ok_or("time out of range")?
                .with_timezone(&chrono::Local);
            let next = cron
                .find_next_occurrence(&start, false)
                .map_err(|e| format!("cron pattern {pattern:?} never matches: {e}"))?;
            Ok(next.timestamp())
        }
    }
}

/// A request to set a schedule.
#[derive(Debug, Clone, Default)]
pub struct ScheduleRequest {
    pub repo: String,
    pub every: Option<String>,
    pub cron: Option<String>,
    pub keep: Option<KeepRules>,
    pub tags: Vec<String>,
    pub stop_containers: bool,
}

impl BackupService {
    /// Sets (or replaces) volume `volume`'s schedule.
    pub fn set_schedule(
        &self,
        volume: &str,
        req: ScheduleRequest,
    ) -> Result<Schedule, BackupError> {
        let bad = BackupError::InvalidRequest;
        let when = match (req.every.as_deref(), req.cron.as_deref()) {
            (Some(e), None) => When::Every(parse_every(e).map_err(bad)?),
            (None, Some(c)) => When::Cron(c.trim().to_string()),
            _ => return Err(bad("give one of --every or --cron".into())),
        };
        let now = chrono::Utc::now().timestamp();
        let next_run = next_after(&when, now).map_err(bad)?;
        if let Some(keep) = &req.keep {
            keep.check()?;
        }
        super::meta::check_tags(&req.tags).map_err(bad)?;
        self.volumes.get(volume)?;
        self.repo(&req.repo)?;
        let schedule = Schedule {
            volume: volume.to_string(),
            repo: req.repo,
            when,
            keep: req.keep,
            tags: req.tags,
            stop_containers: req.stop_containers,
            next_run,
            last_run: None,
            failures: 0,
        };
        let mut schedules = self.schedules.lock();
        self.store.put_backup_schedule(&schedule)?;
        schedules.insert(volume.to_string(), schedule.clone());
        drop(schedules);
        self.publish("schedule", volume, &[("repo", &schedule.repo)]);
        Ok(schedule)
    }

    /// Removes volume `volume`'s schedule. Returns whether it had one.
    pub fn remove_schedule(&self, volume: &str) -> Result<bool, BackupError> {
        let mut schedules = self.schedules.lock();
        let removed = self.store.delete_backup_schedule(volume)?;
        schedules.remove(volume);
        Ok(removed)
    }

    /// Volume `volume`'s schedule, if it has one (no disk access).
    pub fn schedule(&self, volume: &str) -> Option<Schedule> {
        self.schedules.lock().get(volume).cloned()
    }

    /// Runs due schedules until the process ends (a thread of its own);
    /// checks every `tick`.
    pub fn run_scheduler(self: Arc<Self>, tick: Duration) {
        let running: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        std::thread::Builder::new()
            .name("backup-scheduler".into())
            .spawn(move || loop {
                self.start_due(&running);
                std::thread::sleep(tick);
            })
            .expect("spawning the backup scheduler");
    }

    fn start_due(self: &Arc<Self>, running: &Arc<Mutex<BTreeSet<String>>>) {
        let now = chrono::Utc::now().timestamp();
        let due: Vec<Schedule> = (self.schedules.lock().values())
            .filter(|s| s.next_run <= now)
            .cloned()
            .collect();
        for schedule in due {
            if !running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(schedule.volume.clone())
            {
                continue; // its last run is still going
            }
            let (service, running) = (self.clone(), running.clone());
            std::thread::spawn(move || {
                service.run_scheduled(schedule.clone());
                running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&schedule.volume);
            });
        }
    }

    /// One run: backup, then forget by the keep rules; the outcome is
    /// stored with the schedule (unless it was changed or removed
    /// meanwhile) and published.
    fn run_scheduled(&self, schedule: Schedule) {
        let started = chrono::Utc::now().timestamp();
        let request = BackupRequest {
            tags: schedule.tags.clone(),
            stop_containers: schedule.stop_containers,
        };
        let result = self
            .backup(
                &schedule.volume,
                &schedule.repo,
                &request,
                Arc::new(Progress::default()),
            )
            .and_then(|report| {
                if let Some(keep) = &schedule.keep {
                    self.forget(&schedule.repo, Some(&schedule.volume), keep)?;
                }
                Ok(report)
            });
        let finished = chrono::Utc::now().timestamp();
        // An incomplete backup keeps its snapshot but counts as a failure.
        let (snapshot, error) = match result {
            Ok(report) => (Some(report.entry.id), report.warnings.into_iter().next()),
            Err(e) => (None, Some(e.to_string())),
        };
        let last = LastRun {
            started,
            finished,
            snapshot: snapshot.clone(),
            error: error.clone(),
        };
        self.record_run(&schedule, last);
        match (&snapshot, &error) {
            (Some(id), None) => self.publish(
                "scheduled",
                &schedule.volume,
                &[("repo", &schedule.repo), ("snapshot", id)],
            ),
            (_, Some(e)) => {
                tracing::warn!(volume = %schedule.volume, repo = %schedule.repo, error = %e, "scheduled backup failed");
                let mut attributes = vec![("repo", schedule.repo.as_str()), ("error", e)];
                if let Some(id) = &snapshot {
                    attributes.push(("snapshot", id)); // kept, but incomplete
                }
                self.publish("scheduled-failed", &schedule.volume, &attributes);
            }
            _ => {}
        }
    }

    /// Stores a run's outcome with the volume's schedule as it is now: a
    /// schedule removed meanwhile stays removed, one edited meanwhile keeps
    /// the edit (and its next run, if its times changed).
    fn record_run(&self, ran: &Schedule, last: LastRun) {
        let mut schedules = self.schedules.lock();
        let Some(current) = schedules.get(&ran.volume) else {
            return;
        };
        let mut next = current.clone();
        next.failures = match last.error {
            Some(_) => current.failures + 1,
            None => 0,
        };
        if current.when == ran.when {
            let finished = last.finished;
            next.next_run = next_after(&ran.when, finished).unwrap_or(finished + 86400);
        }
        next.last_run = Some(last);
        match self.store.put_backup_schedule(&next) {
            Ok(()) => {
                schedules.insert(ran.volume.clone(), next);
            }
            Err(e) => {
                tracing::error!(volume = %ran.volume, error = %e, "recording a scheduled backup's result")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_every("6h").unwrap(), 21600);
        assert_eq!(parse_every("90s").unwrap(), 90);
        assert_eq!(parse_every("1d").unwrap(), 86400);
        assert_eq!(parse_every("30m").unwrap(), 1800);
        for bad in ["", "h", "6", "6w", "59s", "-1h", "1.5h"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn next_runs() {
        assert_eq!(next_after(&When::Every(3600), 1000).unwrap(), 4600);
        assert!(next_after(&When::Every(u64::MAX), 1000).is_err());
        for huge in [
            "18446744073709551615s",
            "9223372036854775807s",
            "99999999999h",
            "3700d",
        ] {
            assert!(parse_every(huge).unwrap_err().contains("longer"), "{huge}");
        }
        assert_eq!(parse_every("3650d"), Ok(3650 * 86400));
        let daily = When::Cron("0 3 * * *".into());
        let t = next_after(&daily, 0).unwrap();
        let local = chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .with_timezone(&chrono::Local);
        use chrono::Timelike;
        assert_eq!((local.hour(), local.minute()), (3, 0));
        assert!(t > 0 && t <= 86400 + 3 * 3600 + 86400);
        assert!(next_after(&When::Cron("not cron".into()), 0).is_err());
        assert!(
            next_after(&When::Cron("0 3 31 2 *".into()), 0).is_err(),
            "never matches"
        );
    }
}
