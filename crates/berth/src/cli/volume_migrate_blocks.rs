//! `volume migrate` of a thin volume: by blocks, from snapshots.
//!
//! The first pass sends a snapshot `migrate-<random>` of the volume (all
//! its data, or only what changed since the newest `migrate-*` snapshot
//! the target's volume shares with it: a second migration sends the
//! difference). The target applies it all or nothing and keeps the
//! snapshot too, as the base of the next copy. With `--live` the
//! containers using the volume keep writing during that pass; then they
//! are stopped (or the user is asked to, `--no-stop`), a second snapshot
//! is taken and only what changed since the first is sent: the volume is
//! unavailable for that last step only. Each side keeps one `migrate-*`
//! snapshot per target afterwards.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::json;

use super::volume_migrate::{send, MigrateArgs, Sent, SourceVolume, Transfer};
use crate::client::{encode, ApiClient};

/// Name prefix of the snapshots migrations keep as bases.
const BASE_PREFIX: &str = berth_core::volume::MIGRATE_PREFIX;
/// How often `--no-stop` looks whether the user stopped the containers.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// What a block migration did.
pub(super) struct Done {
    pub(super) sent: Sent,
    /// The time (ns since the epoch) before the last snapshot was taken:
    /// `--move` accepts no change to the volume after it.
    pub(super) final_since: i64,
    /// The snapshot both sides now keep.
    final_snapshot: String,
}

impl Done {
    /// Drops the target's base snapshot (`--move`: there is no source
    /// left to copy from again).
    pub(super) async fn drop_target_base(&self, target: &ApiClient, name: &str) {
        drop_snapshot(target, name, &self.final_snapshot, "the target").await;
    }
}

pub(super) fn now_nanos() -> Result<i64> {
    chrono::Utc::now()
        .timestamp_nanos_opt()
        .context("the clock is past 2262")
}

/// One block migration: both daemons, the arguments, the volume.
struct Migration<'a> {
    source: &'a ApiClient,
    target: &'a ApiClient,
    a: &'a MigrateArgs,
    new_name: &'a str,
    volume: &'a SourceVolume,
    /// `migrate-` and 8 hex digits of this target and name: the source's
    /// bases for this target start with it (a volume may be migrated to
    /// several), so ones an interrupted run left are found and dropped.
    prefix: String,
}

/// Where a pass starts from on the target.
#[derive(Clone, Copy)]
enum Origin<'s> {
    /// Nothing there: the volume is made.
    Nothing,
    /// The snapshot both sides share.
    Base(&'s str),
    /// Replace the target's volume whole (`--discard-target-changes`
    /// without a shared snapshot).
    Replace,
}

/// Runs the migration of thin volume `a.volume` to `new_name` there.
pub(super) async fn run(
    source: &ApiClient,
    target: &ApiClient,
    a: &MigrateArgs,
    new_name: &str,
    volume: &SourceVolume,
) -> Result<Done> {
    let m = Migration {
        source,
        target,
        a,
        new_name,
        volume,
        prefix: pair_prefix(&a.to, new_name),
    };
    let start = m.starting_point().await?;
    let mut final_since = now_nanos()?;
    let first = m.take_snapshot().await?;
    let origin = match &start {
        Start::Absent => Origin::Nothing,
        Start::Base(b) => Origin::Base(b),
        Start::Replace => Origin::Replace,
    };
    let mut sent = match m.pass(1, &first, origin).await {
        Ok(sent) => sent,
        Err(e) => {
            drop_snapshot(source, &a.volume, &first, "here").await;
            return Err(e);
        }
    };
    let mut last = first.clone();
    if a.live {
        let (second, more, since) = m.final_pass(&first).await?;
        sent += more;
        (last, final_since) = (second, since);
    }
    m.keep_only(&last).await;
    Ok(Done {
        sent,
        final_since,
        final_snapshot: last,
    })
}

/// `migrate-` and 8 hex digits of SHA-256 of the target and the name.
fn pair_prefix(to: &str, new_name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{to}\n{new_name}").as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{BASE_PREFIX}{hex}")
}

/// What the target has of the volume.
enum Start {
    Absent,
    Base(String),
    Replace,
}

impl Migration<'_> {
    /// Drops every other base: this pair's on the source (also ones an
    /// interrupted run left), all `migrate-*` ones on the target's volume
    /// (it has one source).
    async fn keep_only(&self, last: &str) {
        let (a, source, target) = (self.a, self.source, self.target);
        for old in migrate_snapshots(source, &a.volume)
            .await
            .unwrap_or_default()
        {
            if old != last && old.starts_with(&self.prefix) {
                drop_snapshot(source, &a.volume, &old, "here").await;
            }
        }
        for old in migrate_snapshots(target, self.new_name)
            .await
            .unwrap_or_default()
        {
            if old != last {
                drop_snapshot(target, self.new_name, &old, "the target").await;
            }
        }
    }

    /// Stops the volume's users (or waits for the user to), sends what
    /// changed since `first`, and reports the time the volume was
    /// unavailable. A failure starts the stopped containers again; the
    /// target keeps the first pass (a whole volume as of `first`).
    /// Returns the last snapshot, what was sent, and the time (ns) after
    /// the users stopped.
    async fn final_pass(&self, first: &str) -> Result<(String, Sent, i64)> {
        let (a, source) = (self.a, self.source);
        let down = Instant::now();
        let stopped = if a.no_stop {
            wait_for_users(source, &a.volume).await?;
            Vec::new()
        } else {
            stop_users(source, &a.volume).await?
        };
        let down = if a.no_stop { Instant::now() } else { down };
        let stopping = down.elapsed();
        // The users' own unmounts came before this; anything after it
        // happened to the volume after the last snapshot.
        let since = now_nanos()?;
        let result = async {
            let second = self.take_snapshot().await?;
            match self.pass(2, &second, Origin::Base(first)).await {
                Ok(sent) => Ok((second, sent)),
                Err(e) => {
                    drop_snapshot(source, &a.volume, &second, "here").await;
                    Err(e)
                }
            }
        }
        .await;
        match result {
            Ok((second, sent)) => {
                report_downtime(down.elapsed(), stopping, &stopped);
                Ok((second, sent, since))
            }
            Err(e) => {
                start_again(source, &stopped).await;
                Err(e.context(format!(
                    "the final pass failed: {} on the target holds the volume as of the \
                     first pass (snapshot {first}); run the migration again to send the rest",
                    self.new_name
                )))
            }
        }
    }

    /// One block pass: snapshot `snap` of the source, as a difference from
    /// what the target has (`from`).
    async fn pass(&self, number: u32, snap: &str, from: Origin<'_>) -> Result<Sent> {
        let (a, new_name) = (self.a, self.new_name);
        let mut src = format!(
            "/berth/v1/volumes/{}/snapshots/{}/blocks",
            encode(&a.volume),
            encode(snap)
        );
        let mut to = format!(
            "/berth/v1/volumes/{}/blocks?snapshot={}",
            encode(new_name),
            encode(snap)
        );
        let discard = if a.discard_target_changes {
            "&discard_changes=1"
        } else {
            ""
        };
        match from {
            Origin::Base(b) => {
                src.push_str(&format!("?since={}", encode(b)));
                to.push_str(&format!("&base={}{discard}", encode(b)));
            }
            Origin::Replace => to.push_str(discard),
            Origin::Nothing => to.push_str(&create_query(self.volume)?),
        }
        let what = format!("{} (pass {number})", a.volume);
        let transfer = Transfer {
            from: src,
            to,
            what,
        };
        let sent = send(self.source, self.target, a, transfer).await?;
        let base = match from {
            Origin::Base(b) => b,
            Origin::Nothing | Origin::Replace => "none",
        };
        eprintln!(
            "migrate: pass {number} sent {} bytes of blocks (snapshot {snap}, since {base})",
            sent.data
        );
        Ok(sent)
    }

    /// What the target has: nothing of that name, a volume sharing a
    /// `migrate-*` snapshot with the source (the newest is the base), or
    /// (with `--discard-target-changes`) a volume to replace whole.
    async fn starting_point(&self) -> Result<Start> {
        let (a, new_name) = (self.a, self.new_name);
        let path = format!("/volumes/{}", encode(new_name));
        let resp = (self.target.send(Method::GET, &path, None).await)
            .with_context(|| format!("reaching the target {}", a.to))?;
        match resp.status.as_u16() {
            404 => return Ok(Start::Absent),
            200 => {}
            other => bail!("the target {} answered {other} for volume {new_name}", a.to),
        }
        let theirs = migrate_snapshots(self.target, new_name)
            .await
            .unwrap_or_default();
        let ours = migrate_snapshots(self.source, &a.volume).await?;
        // Ours are listed oldest first: the last shared one is the newest.
        if let Some(base) = ours.into_iter().rev().find(|s| theirs.contains(s)) {
            return Ok(Start::Base(base));
        }
        if a.discard_target_changes {
            return Ok(Start::Replace);
        }
        bail!(
            "a volume named {new_name} already exists on {} and has no migrate-* snapshot in \
             common with {} (never migrated from it, or the base was deleted): remove it there, \
             give --name, or replace it whole with --discard-target-changes",
            a.to,
            a.volume
        )
    }

    /// Snapshots the source volume under a new name of this pair.
    async fn take_snapshot(&self) -> Result<String> {
        let volume = &self.a.volume;
        let name = format!(
            "{}{}",
            self.prefix,
            &berth_core::volume::names::random_id()[..8]
        );
        let path = format!("/berth/v1/volumes/{}/snapshots", encode(volume));
        (self.source)
            .call(Method::POST, &path, Some(json!({"Name": name})))
            .await
            .with_context(|| format!("taking snapshot {name} of {volume}"))?;
        Ok(name)
    }
}

/// Prints how long the volume was unavailable, and who was stopped.
fn report_downtime(total: Duration, stopping: Duration, stopped: &[(String, String)]) {
    eprintln!(
        "migrate: unavailable for {:.3} s (stopping containers {:.3} s, final pass {:.3} s)",
        total.as_secs_f64(),
        stopping.as_secs_f64(),
        (total - stopping).as_secs_f64()
    );
    if !stopped.is_empty() {
        let names: Vec<&str> = stopped.iter().map(|(_, n)| n.as_str()).collect();
        eprintln!(
            "stopped here, and left stopped: {} (start them on the target)",
            names.join(", ")
        );
    }
}

/// The query that makes the volume on the target.
fn create_query(volume: &SourceVolume) -> Result<String> {
    let opts = serde_json::to_string(&volume.options.clone().unwrap_or_default())?;
    let labels = serde_json::to_string(&volume.labels.clone().unwrap_or_default())?;
    Ok(format!(
        "&create=1&driver={}&opts={}&labels={}",
        encode(&volume.driver),
        encode(&opts),
        encode(&labels)
    ))
}

/// The `migrate-*` snapshots of a volume, oldest first.
async fn migrate_snapshots(api: &ApiClient, volume: &str) -> Result<Vec<String>> {
    let path = format!("/berth/v1/volumes/{}/snapshots", encode(volume));
    let list: Vec<serde_json::Value> = api.call(Method::GET, &path, None).await?.json()?;
    Ok(list
        .iter()
        .filter_map(|s| s["Name"].as_str())
        .filter(|n| n.starts_with(BASE_PREFIX))
        .map(str::to_string)
        .collect())
}

/// Deletes a snapshot, warning (not failing) when it cannot.
async fn drop_snapshot(api: &ApiClient, volume: &str, snap: &str, side: &str) {
    let path = format!(
        "/berth/v1/volumes/{}/snapshots/{}",
        encode(volume),
        encode(snap)
    );
    if let Err(e) = api.call(Method::DELETE, &path, None).await {
        eprintln!("warning: could not delete snapshot {snap} of {volume} {side}: {e}");
    }
}

/// Running containers that use `volume`: (id, name).
async fn users(source: &ApiClient, volume: &str) -> Result<Vec<(String, String)>> {
    let filters = json!({"volume": [volume]}).to_string();
    let path = format!("/containers/json?filters={}", encode(&filters));
    let list: Vec<serde_json::Value> = source.call(Method::GET, &path, None).await?.json()?;
    Ok(list
        .iter()
        .map(|c| {
            let id = c["Id"].as_str().unwrap_or_default().to_string();
            let name = c["Names"][0]
                .as_str()
                .unwrap_or(&id)
                .trim_start_matches('/');
            (id.clone(), name.to_string())
        })
        .collect())
}

/// Stops the running containers that use `volume`; returns them.
async fn stop_users(source: &ApiClient, volume: &str) -> Result<Vec<(String, String)>> {
    let running = users(source, volume).await?;
    let mut stopped = Vec::new();
    for (id, name) in running {
        let path = format!("/containers/{}/stop", encode(&id));
        if let Err(e) = source.call(Method::POST, &path, None).await {
            start_again(source, &stopped).await;
            return Err(e.context(format!("stopping container {name}")));
        }
        stopped.push((id, name));
    }
    Ok(stopped)
}

/// `--no-stop`: waits until no running container uses `volume`.
async fn wait_for_users(source: &ApiClient, volume: &str) -> Result<()> {
    let mut told = false;
    loop {
        let running = users(source, volume).await?;
        if running.is_empty() {
            return Ok(());
        }
        if !told {
            let names: Vec<&str> = running.iter().map(|(_, n)| n.as_str()).collect();
            eprintln!(
                "migrate: waiting for these containers to stop to finish: {}",
                names.join(", ")
            );
            told = true;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// Starts containers again after a failed final pass.
async fn start_again(source: &ApiClient, containers: &[(String, String)]) {
    for (id, name) in containers {
        let path = format!("/containers/{}/start", encode(id));
        if let Err(e) = source.call(Method::POST, &path, None).await {
            eprintln!("warning: could not start container {name} again: {e}");
        }
    }
}
