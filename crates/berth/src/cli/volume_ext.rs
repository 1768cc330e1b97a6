//! `berth volume snapshot|clone|resize|rename|update`: berth's own volume
//! verbs, through the `/berth/v1` API.

use anyhow::{bail, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use super::format::{human_size, table};
use crate::client::{encode, ApiClient};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a consistent snapshot of a volume.
    Create {
        volume: String,
        name: Option<String>,
    },
    /// List a volume's snapshots.
    Ls { volume: String },
    /// Delete a snapshot.
    Rm { volume: String, name: String },
    /// Bring a volume back to a snapshot (the volume must not be mounted).
    Restore { volume: String, name: String },
}

#[derive(Debug, Args)]
pub struct CloneArgs {
    source: String,
    target: String,
}

#[derive(Debug, Args)]
pub struct ResizeArgs {
    volume: String,
    /// New size, e.g. 20G (growing only).
    size: String,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    volume: String,
    new_name: String,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    volume: String,
    /// Add or replace a label (key=value).
    #[arg(long = "label-add", value_name = "KEY=VALUE")]
    label_add: Vec<String>,
    /// Remove a label by key.
    #[arg(long = "label-rm", value_name = "KEY")]
    label_rm: Vec<String>,
}

fn base(volume: &str) -> String {
    format!("/berth/v1/volumes/{}", encode(volume))
}

/// `berth volume snapshot …`
pub async fn snapshot(api: &ApiClient, cmd: SnapshotCommand) -> Result<i32> {
    match cmd {
        SnapshotCommand::Create { volume, name } => {
            let body = json!({"Name": name});
            let made: Value = api
                .call(
                    Method::POST,
                    &format!("{}/snapshots", base(&volume)),
                    Some(body),
                )
                .await?
                .json()?;
            println!("{}", made["Name"].as_str().unwrap_or_default());
        }
        SnapshotCommand::Ls { volume } => {
            let list: Vec<Value> = api
                .call(Method::GET, &format!("{}/snapshots", base(&volume)), None)
                .await?
                .json()?;
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                    vec![
                        text("Name"),
                        text("CreatedAt"),
                        human_size(s["Allocated"].as_f64().unwrap_or(0.0)),
                    ]
                })
                .collect();
            print!("{}", table(&["SNAPSHOT", "CREATED", "ALLOCATED"], &rows));
        }
        SnapshotCommand::Rm { volume, name } => {
            api.call(
                Method::DELETE,
                &format!("{}/snapshots/{}", base(&volume), encode(&name)),
                None,
            )
            .await?;
            println!("{name}");
        }
        SnapshotCommand::Restore { volume, name } => {
            let path = format!("{}/snapshots/{}/restore", base(&volume), encode(&name));
            api.call(Method::POST, &path, None).await?;
            println!("{volume}");
        }
    }
    Ok(0)
}

/// `berth volume clone SRC DST`: a progress bar on stderr while a local
/// volume is copied (none when stderr is not a terminal).
pub async fn clone(api: &ApiClient, a: CloneArgs) -> Result<i32> {
    let body = Bytes::from(serde_json::to_vec(&json!({"Target": a.target}))?);
    let path = format!("{}/clone?progress=1", base(&a.source));
    let resp = api
        .open(Method::POST, &path, Some((body, "application/json")))
        .await?;
    let result =
        super::progress::follow(resp, format!("cloning {} to {}", a.source, a.target)).await?;
    match result["Name"].as_str() {
        Some(name) => println!("{name}"),
        None => bail!("the daemon ended the clone without a result"),
    }
    Ok(0)
}

/// `berth volume resize VOL SIZE`
pub async fn resize(api: &ApiClient, a: ResizeArgs) -> Result<i32> {
    let body = json!({"Size": a.size});
    api.call(
        Method::POST,
        &format!("{}/resize", base(&a.volume)),
        Some(body),
    )
    .await?;
    println!("{}", a.volume);
    Ok(0)
}

/// `berth volume rename OLD NEW`
pub async fn rename(api: &ApiClient, a: RenameArgs) -> Result<i32> {
    let body = json!({"Name": a.new_name});
    api.call(
        Method::POST,
        &format!("{}/rename", base(&a.volume)),
        Some(body),
    )
    .await?;
    println!("{}", a.new_name);
    Ok(0)
}

/// `berth volume update --label-add K=V --label-rm K VOL`
pub async fn update(api: &ApiClient, a: UpdateArgs) -> Result<i32> {
    let mut add = serde_json::Map::new();
    for pair in &a.label_add {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        add.insert(key.to_string(), Value::String(value.to_string()));
    }
    let body = json!({"Add": add, "Remove": a.label_rm});
    api.call(
        Method::POST,
        &format!("{}/labels", base(&a.volume)),
        Some(body),
    )
    .await?;
    println!("{}", a.volume);
    Ok(0)
}
