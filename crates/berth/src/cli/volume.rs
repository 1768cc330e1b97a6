//! `berth volume …`: create, ls, inspect, rm, prune — the docker CLI's
//! flags and output.

use std::io::{BufRead, Write};

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Map, Value};

use super::format::{human_size, pretty_json, table, template};
use super::{filters_json, key_values};
use crate::client::{encode, ApiClient};

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes.
    Inspect(InspectArgs),
    /// Remove one or more volumes.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes.
    Prune(PruneArgs),
    /// Snapshots of thin volumes.
    #[command(subcommand)]
    Snapshot(super::volume_ext::SnapshotCommand),
    /// Copy a volume into a new one (shared blocks on thin volumes).
    Clone(super::volume_ext::CloneArgs),
    /// Grow a thin volume (online when mounted).
    Resize(super::volume_ext::ResizeArgs),
    /// Give a volume a new name (it must not be in use).
    Rename(super::volume_ext::RenameArgs),
    /// Change a volume's labels.
    Update(super::volume_ext::UpdateArgs),
    /// Write a volume's contents as a tar archive.
    Export(super::volume_archive::ExportArgs),
    /// Extract a tar archive (plain, gzip or zstd) into a volume.
    Import(super::volume_archive::ImportArgs),
    /// Move a volume to another berth daemon (verified before it counts).
    Migrate(super::volume_migrate::MigrateArgs),
    /// Back a volume up into a backup repository (incremental, deduplicated).
    Backup(super::backup::VolumeBackupArgs),
    /// List backups of volumes.
    Backups(super::backup::VolumeBackupsArgs),
    /// Restore a backup into a new or empty volume.
    Restore(super::backup::VolumeRestoreArgs),
    /// Back a volume up on a schedule (run by the daemon).
    BackupSchedule(super::backup::ScheduleArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Volume name (empty: an anonymous volume).
    name: Option<String>,
    /// Specify volume name (same as the positional argument).
    #[arg(long = "name")]
    name_flag: Option<String>,
    /// Specify volume driver name.
    #[arg(short = 'd', long, default_value = "local")]
    driver: String,
    /// Set driver specific options (key=value).
    #[arg(short = 'o', long = "opt")]
    opts: Vec<String>,
    /// Set metadata for a volume (key=value).
    #[arg(long = "label")]
    labels: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display volume names.
    #[arg(short, long)]
    quiet: bool,
    /// Provide filter values (e.g. "dangling=true").
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json, or a Go-style template.
    #[arg(long)]
    format: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    names: Vec<String>,
    /// Format output using a template or "json".
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true)]
    names: Vec<String>,
    /// Do not error if the volume does not exist.
    #[arg(short, long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones.
    #[arg(short, long)]
    all: bool,
    /// Provide filter values (e.g. "label=<label>").
    #[arg(long = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// Runs one volume subcommand; returns the exit code.
pub async fn run(api: &ApiClient, cmd: VolumeCommand) -> Result<i32> {
    match cmd {
        VolumeCommand::Create(a) => create(api, a).await,
        VolumeCommand::Ls(a) => ls(api, a).await,
        VolumeCommand::Inspect(a) => inspect(api, a).await,
        VolumeCommand::Rm(a) => rm(api, a).await,
        VolumeCommand::Prune(a) => prune(api, a).await,
        VolumeCommand::Snapshot(c) => super::volume_ext::snapshot(api, c).await,
        VolumeCommand::Clone(a) => super::volume_ext::clone(api, a).await,
        VolumeCommand::Resize(a) => super::volume_ext::resize(api, a).await,
        VolumeCommand::Rename(a) => super::volume_ext::rename(api, a).await,
        VolumeCommand::Update(a) => super::volume_ext::update(api, a).await,
        VolumeCommand::Export(a) => super::volume_archive::export(api, a).await,
        VolumeCommand::Import(a) => super::volume_archive::import(api, a).await,
        VolumeCommand::Migrate(a) => super::volume_migrate::migrate(api, a).await,
        VolumeCommand::Backup(a) => super::backup::volume_backup(api, a).await,
        VolumeCommand::Backups(a) => super::backup::volume_backups(api, a).await,
        VolumeCommand::Restore(a) => super::backup::volume_restore(api, a).await,
        VolumeCommand::BackupSchedule(a) => super::backup::volume_schedule(api, a).await,
    }
}

async fn create(api: &ApiClient, a: CreateArgs) -> Result<i32> {
    if a.name.is_some() && a.name_flag.is_some() {
        bail!("conflicting options: cannot specify a volume-name through both --name and as a positional arg");
    }
    let mut body = json!({"Driver": a.driver, "Name": a.name.or(a.name_flag).unwrap_or_default()});
    if !a.opts.is_empty() {
        body["DriverOpts"] = json!(key_values(&a.opts));
    }
    if !a.labels.is_empty() {
        body["Labels"] = json!(key_values(&a.labels));
    }
    let volume: Value = api
        .call(Method::POST, "/volumes/create", Some(body))
        .await?
        .json()?;
    println!("{}", volume["Name"].as_str().unwrap_or_default());
    Ok(0)
}

async fn ls(api: &ApiClient, a: LsArgs) -> Result<i32> {
    let path = format!("/volumes?filters={}", encode(&filters_json(&a.filter)?));
    let list: Value = api.call(Method::GET, &path, None).await?.json()?;
    let mut volumes: Vec<Map<String, Value>> = list["Volumes"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_object().cloned()).collect())
        .unwrap_or_default();
    volumes.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    for warning in list["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", warning.as_str().unwrap_or_default());
    }
    let contexts: Vec<Map<String, Value>> = volumes.iter().map(ls_context).collect();
    match a.format.as_deref() {
        _ if a.quiet => contexts
            .iter()
            .for_each(|c| println!("{}", str_of(c, "Name"))),
        None | Some("table") => {
            let rows: Vec<Vec<String>> = contexts
                .iter()
                .map(|c| vec![str_of(c, "Driver"), str_of(c, "Name")])
                .collect();
            print!("{}", table(&["DRIVER", "VOLUME NAME"], &rows));
        }
        Some(f) => contexts.iter().for_each(|c| println!("{}", template(f, c))),
    }
    Ok(0)
}

/// The docker CLI's formatter context for one volume (what `--format`
/// fields and `--format json` see).
fn ls_context(v: &Map<String, Value>) -> Map<String, Value> {
    let labels = v
        .get("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let mut ctx = Map::new();
    for (key, value) in [
        ("Availability", json!("N/A")),
        ("Driver", v["Driver"].clone()),
        ("Group", json!("N/A")),
        ("Labels", json!(labels)),
        ("Links", json!("N/A")),
        ("Mountpoint", v["Mountpoint"].clone()),
        ("Name", v["Name"].clone()),
        ("Scope", v["Scope"].clone()),
        ("Size", json!("N/A")),
        ("Status", json!("N/A")),
    ] {
        ctx.insert(key.into(), value);
    }
    ctx
}

fn str_of(m: &Map<String, Value>, key: &str) -> String {
    m.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn inspect(api: &ApiClient, a: InspectArgs) -> Result<i32> {
    let mut found = Vec::new();
    let mut failed = false;
    for name in &a.names {
        match api
            .call(Method::GET, &format!("/volumes/{}", encode(name)), None)
            .await
        {
            Ok(resp) => found.push(resp.json::<Value>()?),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    match a.format.as_deref() {
        None => println!("{}", pretty_json(&Value::Array(found))),
        Some(f) => {
            for v in found.iter().filter_map(Value::as_object) {
                println!("{}", template(f, v));
            }
        }
    }
    Ok(i32::from(failed))
}

async fn rm(api: &ApiClient, a: RmArgs) -> Result<i32> {
    let mut failed = false;
    for name in &a.names {
        let path = format!(
            "/volumes/{}{}",
            encode(name),
            if a.force { "?force=1" } else { "" }
        );
        match api.call(Method::DELETE, &path, None).await {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

async fn prune(api: &ApiClient, a: PruneArgs) -> Result<i32> {
    let mut filter = a.filter.clone();
    if a.all {
        if filter.iter().any(|f| f.starts_with("all=")) {
            bail!("conflicting options: cannot specify both --all and --filter all=1");
        }
        filter.push("all=true".into());
    }
    if !a.force && !confirm(a.all)? {
        return Ok(0);
    }
    let path = format!("/volumes/prune?filters={}", encode(&filters_json(&filter)?));
    let report: Value = api.call(Method::POST, &path, None).await?.json()?;
    let deleted = report["VolumesDeleted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Volumes:");
        for name in &deleted {
            println!("{}", name.as_str().unwrap_or_default());
        }
        println!();
    }
    let reclaimed = report["SpaceReclaimed"].as_f64().unwrap_or(0.0);
    println!("Total reclaimed space: {}", human_size(reclaimed));
    Ok(0)
}

/// Asks as `docker volume prune` does; only `y`/`Y` confirms.
fn confirm(all: bool) -> Result<bool> {
    let what = if all {
        "all local volumes"
    } else {
        "anonymous local volumes"
    };
    print!("WARNING! This will remove {what} not used by at least one container.\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| anyhow!("reading answer: {e}"))?;
    Ok(matches!(line.trim(), "y" | "Y"))
}
