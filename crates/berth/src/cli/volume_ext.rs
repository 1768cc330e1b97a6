//! `berth volume snapshot|clone|resize`: berth's own volume verbs, through
//! the `/berth/v1` API.

use anyhow::Result;
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

/// `berth volume clone SRC DST`
pub async fn clone(api: &ApiClient, a: CloneArgs) -> Result<i32> {
    let body = json!({"Target": a.target});
    let made: Value = api
        .call(
            Method::POST,
            &format!("{}/clone", base(&a.source)),
            Some(body),
        )
        .await?
        .json()?;
    println!("{}", made["Name"].as_str().unwrap_or_default());
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
