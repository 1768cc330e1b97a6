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

use std::time::Instant;

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::json;

use super::volume_migrate::{send, MigrateArgs, Sent, SourceVolume, Transfer};
use crate::client::{encode, ApiClient};

/// Name prefix of the snapshots migrations keep as bases.
const BASE_PREFIX: &str = "migrate-";
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

fn now_nanos() -> Result<i64> {
    chrono::Utc::now()
        .timestamp_nanos_opt()
        .context("the clock is past 2262")
}

/// Runs the migration of thin volume `a.volume` to `new_name` there.
pub(super) async fn run(
    source: &ApiClient,
    target: &ApiClient,
    a: &MigrateArgs,
    new_name: &str,
    volume: &SourceVolume,
) -> Result<Done> {
    let base = common_base(source, target, a, new_name).await?;
    let mut final_since = now_nanos()?;
    let first = take_snapshot(source, &a.volume).await?;
    let mut sent = match pass(
        source,
        target,
        a,
        new_name,
        volume,
        1,
        &first,
        base.as_deref(),
    )
    .await
    {
        Ok(sent) => sent,
        Err(e) => {
            drop_snapshot(source, &a.volume, &first, "here").await;
            return Err(e);
        }
    };
    let mut last = first.clone();
    if a.live {
        final_since = now_nanos()?;
        let (second, more) = final_pass(source, target, a, new_name, volume, &first).await?;
        sent += more;
        last = second;
    }
    // One base per pair of volumes: the older ones go on both sides.
    for old in base.iter().chain((last != first).then_some(&first)) {
        drop_snapshot(source, &a.volume, old, "here").await;
        drop_snapshot(target, new_name, old, "the target").await;
    }
    Ok(Done {
        sent,
        final_since,
        final_snapshot: last,
    })
}

/// Stops the volume's users (or waits for the user to), sends what
/// changed since `first`, and reports the time the volume was
/// unavailable. A failure starts the stopped containers again; the target
/// keeps the first pass (a whole volume as of `first`).
async fn final_pass(
    source: &ApiClient,
    target: &ApiClient,
    a: &MigrateArgs,
    new_name: &str,
    volume: &SourceVolume,
    first: &str,
) -> Result<(String, Sent)> {
    let down = Instant::now();
    let stopped = if a.no_stop {
        wait_for_users(source, &a.volume).await?;
        Vec::new()
    } else {
        stop_users(source, &a.volume).await?
    };
    let down = if a.no_stop { Instant::now() } else { down };
    let stopping = down.elapsed();
    let result = async {
        let second = take_snapshot(source, &a.volume).await?;
        match pass(source, target, a, new_name, volume, 2, &second, Some(first)).await {
            Ok(sent) => Ok((second, sent)),
            Err(e) => {
                drop_snapshot(source, &a.volume, &second, "here").await;
                Err(e)
            }
        }
    }
    .await;
    match result {
        Ok(done) => {
            let total = down.elapsed();
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
            Ok(done)
        }
        Err(e) => {
            start_again(source, &stopped).await;
            Err(e.context(format!(
                "the final pass failed: {new_name} on the target holds the volume as of the \
                 first pass (snapshot {first}); run the migration again to send the rest"
            )))
        }
    }
}

/// One block pass: snapshot `snap` of the source, as a difference from
/// `base` (which the target's volume has) or whole into a new volume.
#[allow(clippy::too_many_arguments)]
async fn pass(
    source: &ApiClient,
    target: &ApiClient,
    a: &MigrateArgs,
    new_name: &str,
    volume: &SourceVolume,
    number: u32,
    snap: &str,
    base: Option<&str>,
) -> Result<Sent> {
    let mut from = format!(
        "/berth/v1/volumes/{}/snapshots/{}/blocks",
        encode(&a.volume),
        encode(snap)
    );
    let mut to = format!(
        "/berth/v1/volumes/{}/blocks?snapshot={}",
        encode(new_name),
        encode(snap)
    );
    match base {
        Some(b) => {
            from.push_str(&format!("?since={}", encode(b)));
            to.push_str(&format!("&base={}", encode(b)));
            if a.discard_target_changes {
                to.push_str("&discard_changes=1");
            }
        }
        None => to.push_str(&create_query(volume)?),
    }
    let what = format!("{} (pass {number})", a.volume);
    let sent = send(source, target, a, Transfer { from, to, what }).await?;
    // Data bytes: the stream less its header, record heads and end.
    eprintln!(
        "migrate: pass {number} sent {} bytes of blocks (snapshot {snap}, since {})",
        sent.data,
        base.unwrap_or("none")
    );
    Ok(sent)
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

/// The newest `migrate-*` snapshot the source volume and the target's
/// share (the target must have one if it has the volume at all).
async fn common_base(
    source: &ApiClient,
    target: &ApiClient,
    a: &MigrateArgs,
    new_name: &str,
) -> Result<Option<String>> {
    let resp = target
        .send(Method::GET, &format!("/volumes/{}", encode(new_name)), None)
        .await
        .with_context(|| format!("reaching the target {}", a.to))?;
    match resp.status.as_u16() {
        404 => return Ok(None),
        200 => {}
        other => bail!("the target {} answered {other} for volume {new_name}", a.to),
    }
    let theirs = migrate_snapshots(target, new_name)
        .await
        .unwrap_or_default();
    let ours = migrate_snapshots(source, &a.volume).await?;
    // Ours are listed oldest first: the last shared one is the newest.
    match ours.into_iter().rev().find(|s| theirs.contains(s)) {
        Some(base) => Ok(Some(base)),
        None => bail!(
            "a volume named {new_name} already exists on {} and was not migrated from {} (no \
             snapshot in common): remove it there, or give --name",
            a.to,
            a.volume
        ),
    }
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

/// Snapshots the source volume under a new `migrate-<random>` name.
async fn take_snapshot(source: &ApiClient, volume: &str) -> Result<String> {
    let name = format!(
        "{BASE_PREFIX}{}",
        &berth_core::volume::names::random_id()[..16]
    );
    let path = format!("/berth/v1/volumes/{}/snapshots", encode(volume));
    source
        .call(Method::POST, &path, Some(json!({"Name": name})))
        .await
        .with_context(|| format!("taking snapshot {name} of {volume}"))?;
    Ok(name)
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
