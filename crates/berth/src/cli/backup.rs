//! `berth backup …` (repositories, forget, prune, check) and the volume
//! verbs `berth volume backup|backups|restore`, through `/berth/v1`.
//!
//! Secrets never come from the command line: the password from
//! `--password-file FILE`, or `BERTH_REPO_PASSWORD` (else `RESTIC_PASSWORD`)
//! in the environment; an S3 repository's keys from `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use super::format::{pretty_json, table};
use super::key_values;
use crate::client::{encode, ApiClient};

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Backup repositories berth knows.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Drop backups by keep rules (each volume's apart).
    Forget(ForgetArgs),
    /// Return the space of data no backup uses any more.
    Prune(PruneArgs),
    /// Verify a repository.
    Check(CheckArgs),
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Add an existing restic repository.
    Add(RepoAddArgs),
    /// Make a new repository and add it.
    Init(RepoAddArgs),
    /// List repositories.
    #[command(alias = "list")]
    Ls,
    /// Show one repository (never its secrets).
    Inspect { name: String },
    /// Forget a repository (the repository itself is left as it is).
    #[command(alias = "remove")]
    Rm { name: String },
}

#[derive(Debug, Args)]
pub struct RepoAddArgs {
    name: String,
    /// /path, s3:http://host:port/bucket/prefix, or sftp:user@host:/path.
    #[arg(long)]
    url: String,
    /// Read the password from this file (else BERTH_REPO_PASSWORD or RESTIC_PASSWORD).
    #[arg(long)]
    password_file: Option<String>,
    /// A repository option (key=value): S3: region, retry; SFTP: key, known_hosts_strategy, command.
    #[arg(short = 'o', long = "opt")]
    opts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    repo: String,
    /// Only this volume's backups.
    #[arg(long)]
    volume: Option<String>,
    #[command(flatten)]
    keep: KeepArgs,
}

/// restic's `--keep-*` rules.
#[derive(Debug, Args)]
pub struct KeepArgs {
    /// Keep the last N backups.
    #[arg(long)]
    keep_last: Option<i32>,
    #[arg(long)]
    keep_hourly: Option<i32>,
    #[arg(long)]
    keep_daily: Option<i32>,
    #[arg(long)]
    keep_weekly: Option<i32>,
    #[arg(long)]
    keep_monthly: Option<i32>,
    #[arg(long)]
    keep_yearly: Option<i32>,
}

impl KeepArgs {
    /// The API's `Keep` object, or `None` when no rule is given.
    fn to_json(&self) -> Option<Value> {
        let rules = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        rules.iter().any(Option::is_some).then(|| {
            json!({
                "Last": self.keep_last, "Hourly": self.keep_hourly, "Daily": self.keep_daily,
                "Weekly": self.keep_weekly, "Monthly": self.keep_monthly, "Yearly": self.keep_yearly,
            })
        })
    }
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    repo: String,
    /// Delete unused data now (only when nothing but berth uses the repository).
    #[arg(long)]
    instant: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    repo: String,
    /// Also read and verify every pack's content.
    #[arg(long)]
    read_data: bool,
}

#[derive(Debug, Args)]
pub struct VolumeBackupArgs {
    volume: String,
    #[arg(long)]
    repo: String,
    /// A tag for this backup (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Stop the containers that use a local volume during the backup, and start them again after.
    #[arg(long)]
    stop_containers: bool,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    volume: String,
    #[arg(long, required_unless_present = "remove")]
    repo: Option<String>,
    /// Run every so long: 90s, 30m, 6h, 1d (at least a minute).
    #[arg(long, conflicts_with = "cron")]
    every: Option<String>,
    /// Run at the times of a five-field cron pattern ('0 3 * * *'), local time.
    #[arg(long)]
    cron: Option<String>,
    /// After each backup, forget this volume's backups these rules do not keep.
    #[command(flatten)]
    keep: KeepArgs,
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long)]
    stop_containers: bool,
    /// Remove the volume's schedule.
    #[arg(long, conflicts_with_all = ["every", "cron"])]
    remove: bool,
}

#[derive(Debug, Args)]
pub struct VolumeBackupsArgs {
    /// Only this volume's backups.
    volume: Option<String>,
    #[arg(long)]
    repo: Option<String>,
    /// Only print backup IDs.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct VolumeRestoreArgs {
    /// REPO:SNAPSHOT (an ID, a prefix of one, or latest).
    #[arg(long)]
    from: String,
    /// The volume to restore into (new, or empty); default: the backed-up name.
    volume: Option<String>,
}

/// Runs one `berth backup` subcommand.
pub async fn run(api: &ApiClient, cmd: BackupCommand) -> Result<i32> {
    match cmd {
        BackupCommand::Repo(c) => repo(api, c).await,
        BackupCommand::Forget(a) => forget(api, a).await,
        BackupCommand::Prune(a) => {
            let path = format!("/berth/v1/backup/repos/{}/prune", encode(&a.repo));
            let r = api
                .call(Method::POST, &path, Some(json!({"Instant": a.instant})))
                .await?;
            println!("{}", pretty_json(&r.json::<Value>()?));
            Ok(0)
        }
        BackupCommand::Check(a) => check(api, a).await,
    }
}

async fn repo(api: &ApiClient, cmd: RepoCommand) -> Result<i32> {
    const BASE: &str = "/berth/v1/backup/repos";
    match cmd {
        RepoCommand::Add(a) => add(api, a, false).await,
        RepoCommand::Init(a) => add(api, a, true).await,
        RepoCommand::Ls => {
            let list: Vec<Value> = api.call(Method::GET, BASE, None).await?.json()?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|r| vec![text(&r["Name"]), text(&r["Kind"]), text(&r["Url"])])
                .collect();
            print!("{}", table(&["NAME", "KIND", "URL"], &rows));
            Ok(0)
        }
        RepoCommand::Inspect { name } => {
            let path = format!("{BASE}/{}", encode(&name));
            let r: Value = api.call(Method::GET, &path, None).await?.json()?;
            println!("{}", pretty_json(&r));
            Ok(0)
        }
        RepoCommand::Rm { name } => {
            api.call(Method::DELETE, &format!("{BASE}/{}", encode(&name)), None)
                .await?;
            println!("{name}");
            Ok(0)
        }
    }
}

fn text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// The password: `--password-file`, else the environment.
fn password(file: Option<&str>) -> Result<String> {
    if let Some(path) = file {
        let raw = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        return Ok(raw.trim_end_matches(['\n', '\r']).to_string());
    }
    for var in ["BERTH_REPO_PASSWORD", "RESTIC_PASSWORD"] {
        if let Ok(p) = std::env::var(var) {
            return Ok(p);
        }
    }
    bail!("no password: give --password-file FILE or set BERTH_REPO_PASSWORD")
}

/// An S3 repository's keys from the environment.
fn s3_secrets(url: &str) -> BTreeMap<String, String> {
    let mut secrets = BTreeMap::new();
    if !url.starts_with("s3:") {
        return secrets;
    }
    for (var, key) in [
        ("AWS_ACCESS_KEY_ID", "access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
        ("AWS_SESSION_TOKEN", "session_token"),
    ] {
        if let Ok(v) = std::env::var(var).map(|v| v.trim().to_string()) {
            if !v.is_empty() {
                secrets.insert(key.to_string(), v);
            }
        }
    }
    secrets
}

async fn add(api: &ApiClient, a: RepoAddArgs, init: bool) -> Result<i32> {
    let body = json!({
        "Name": a.name,
        "Url": a.url,
        "Options": key_values(&a.opts),
        "Secrets": {"Password": password(a.password_file.as_deref())?, "Options": s3_secrets(&a.url)},
        "Init": init,
    });
    api.call(Method::POST, "/berth/v1/backup/repos", Some(body))
        .await?;
    println!("{}", a.name);
    Ok(0)
}

async fn forget(api: &ApiClient, a: ForgetArgs) -> Result<i32> {
    let keep = a.keep.to_json().unwrap_or_else(|| json!({}));
    let path = format!("/berth/v1/backup/repos/{}/forget", encode(&a.repo));
    let r: Value = api
        .call(
            Method::POST,
            &path,
            Some(json!({"Volume": a.volume, "Keep": keep})),
        )
        .await?
        .json()?;
    for id in r["Removed"].as_array().into_iter().flatten() {
        println!("removed {}", text(id));
    }
    Ok(0)
}

async fn check(api: &ApiClient, a: CheckArgs) -> Result<i32> {
    let path = format!("/berth/v1/backup/repos/{}/check", encode(&a.repo));
    let r: Value = api
        .call(Method::POST, &path, Some(json!({"ReadData": a.read_data})))
        .await?
        .json()?;
    for w in r["Warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", text(w));
    }
    for e in r["Errors"].as_array().into_iter().flatten() {
        eprintln!("error: {}", text(e));
    }
    if r["Ok"].as_bool() == Some(true) {
        println!("no errors were found");
        return Ok(0);
    }
    Ok(1)
}

/// `berth volume backup VOL --repo R [--tag T]…`
pub async fn volume_backup(api: &ApiClient, a: VolumeBackupArgs) -> Result<i32> {
    let body = Bytes::from(serde_json::to_vec(
        &json!({"Repo": a.repo, "Tags": a.tags, "StopContainers": a.stop_containers}),
    )?);
    let path = format!("/berth/v1/volumes/{}/backup?progress=1", encode(&a.volume));
    let resp = api
        .open(Method::POST, &path, Some((body, "application/json")))
        .await?;
    let message = format!("backing up {} to {}", a.volume, a.repo);
    let report = super::progress::follow(resp, message).await?;
    println!("{}", text(&report["Id"]));
    let warnings = report["Warnings"].as_array().cloned().unwrap_or_default();
    for w in &warnings {
        eprintln!("warning: {}", text(w));
    }
    // restic's code for "snapshot saved, but some of the source unread".
    Ok(if warnings.is_empty() { 0 } else { 3 })
}

/// `berth volume backups [VOL] [--repo R]`
pub async fn volume_backups(api: &ApiClient, a: VolumeBackupsArgs) -> Result<i32> {
    let mut path = format!(
        "/berth/v1/backups?volume={}",
        encode(a.volume.as_deref().unwrap_or(""))
    );
    if let Some(r) = &a.repo {
        path.push_str(&format!("&repo={}", encode(r)));
    }
    let list: Vec<Value> = api.call(Method::GET, &path, None).await?.json()?;
    if a.quiet {
        list.iter().for_each(|b| println!("{}", text(&b["Id"])));
        return Ok(0);
    }
    let size = |v: &Value| {
        v.as_f64()
            .map(super::format::human_size)
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            let tags: Vec<String> = b["Tags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            // A backup that lacks part of its volume never looks whole.
            let id = match b["Incomplete"].as_bool() {
                Some(true) => format!("{} (incomplete)", text(&b["ShortId"])),
                _ => text(&b["ShortId"]),
            };
            vec![
                id,
                text(&b["Repo"]),
                text(&b["Volume"]),
                text(&b["Time"]),
                size(&b["DataAddedPacked"]),
                size(&b["TotalSize"]),
                tags.join(","),
            ]
        })
        .collect();
    let header = ["ID", "REPO", "VOLUME", "TIME", "ADDED", "SIZE", "TAGS"];
    print!("{}", table(&header, &rows));
    Ok(0)
}

/// `berth volume restore --from REPO:SNAPSHOT [VOL]`
pub async fn volume_restore(api: &ApiClient, a: VolumeRestoreArgs) -> Result<i32> {
    let Some((repo, snapshot)) = a.from.split_once(':') else {
        bail!("--from takes REPO:SNAPSHOT (an ID, a prefix of one, or latest)");
    };
    let body = json!({"Repo": repo, "Snapshot": snapshot, "Volume": a.volume});
    let body = Bytes::from(serde_json::to_vec(&body)?);
    let resp = api
        .open(
            Method::POST,
            "/berth/v1/backups/restore?progress=1",
            Some((body, "application/json")),
        )
        .await?;
    let volume = super::progress::follow(resp, format!("restoring {}", a.from)).await?;
    println!("{}", text(&volume["Name"]));
    Ok(0)
}

/// `berth volume backup-schedule VOL --repo R --every 6h|--cron '…' [--keep-* N]` (or `--remove`)
pub async fn volume_schedule(api: &ApiClient, a: ScheduleArgs) -> Result<i32> {
    let path = format!("/berth/v1/volumes/{}/backup-schedule", encode(&a.volume));
    if a.remove {
        api.call(Method::DELETE, &path, None).await?;
        println!("{}", a.volume);
        return Ok(0);
    }
    let keep = a.keep.to_json();
    let body = json!({
        "Repo": a.repo, "Every": a.every, "Cron": a.cron, "Keep": keep,
        "Tags": a.tags, "StopContainers": a.stop_containers,
    });
    let r: Value = api.call(Method::PUT, &path, Some(body)).await?.json()?;
    println!("{} next backup at {}", a.volume, text(&r["NextRun"]));
    Ok(0)
}
