//! `berth pool ls|trim`: the storage pools of berth's drivers.

use anyhow::Result;
use clap::Subcommand;
use hyper::Method;
use serde_json::Value;

use super::format::{pretty_json, table};
use crate::client::ApiClient;

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Show each pool: size, allocation, virtual size, overcommit.
    Ls {
        /// Print the pools as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Return freed space to the host now (fstrim of pools and mounted volumes).
    Trim,
}

/// The columns of `berth pool ls`.
const LS_HEADERS: [&str; 6] = [
    "DRIVER",
    "SIZE",
    "ALLOCATED",
    "VIRTUAL",
    "OVERCOMMIT",
    "VOLUMES",
];

/// Runs one pool subcommand.
pub async fn run(api: &ApiClient, cmd: PoolCommand) -> Result<i32> {
    match cmd {
        PoolCommand::Ls { json } => ls(api, json).await?,
        PoolCommand::Trim => trim(api).await?,
    }
    Ok(0)
}

/// `berth pool ls [--json]`.
async fn ls(api: &ApiClient, json: bool) -> Result<()> {
    let pools: Vec<Value> = api
        .call(Method::GET, "/berth/v1/pools", None)
        .await?
        .json()?;
    if json {
        println!("{}", pretty_json(&Value::Array(pools)));
        return Ok(());
    }
    print!("{}", table(&LS_HEADERS, &pool_rows(&pools)));
    Ok(())
}

/// One `pool ls` table row per pool.
fn pool_rows(pools: &[Value]) -> Vec<Vec<String>> {
    pools
        .iter()
        .map(|p| {
            vec![
                p["Driver"].as_str().unwrap_or_default().to_string(),
                gib(&p["Size"]),
                gib(&p["Allocated"]),
                gib(&p["VirtualSize"]),
                format!("{}x", p["Overcommit"]),
                p["Volumes"].to_string(),
            ]
        })
        .collect()
}

/// A byte count as GiB with two decimals (0 when not a number).
fn gib(bytes: &Value) -> String {
    format!(
        "{:.2}GiB",
        bytes.as_f64().unwrap_or(0.0) / (1u64 << 30) as f64
    )
}

/// `berth pool trim`.
async fn trim(api: &ApiClient) -> Result<()> {
    let out: Value = api
        .call(Method::POST, "/berth/v1/pools/trim", None)
        .await?
        .json()?;
    println!("Trimmed: {} bytes", out["Trimmed"]);
    Ok(())
}
