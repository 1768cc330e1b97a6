//! `berth system df`, `berth version`, `berth info`.

use anyhow::Result;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;

use super::format::{human_size, table};
use crate::client::ApiClient;

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show disk usage.
    Df(DfArgs),
    /// Show system-wide information.
    Info,
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show detailed information on space usage.
    #[arg(short, long)]
    verbose: bool,
}

/// Runs one system subcommand; returns the exit code.
pub async fn run(api: &ApiClient, cmd: SystemCommand) -> Result<i32> {
    match cmd {
        SystemCommand::Df(a) => df(api, a).await,
        SystemCommand::Info => info(api).await,
    }
}

/// (size, refcount) of each volume, -1 sizes left out of sums as docker does.
fn volume_usage(volumes: &[Value]) -> Vec<(String, i64, i64)> {
    volumes
        .iter()
        .map(|v| {
            let usage = &v["UsageData"];
            (
                v["Name"].as_str().unwrap_or_default().to_string(),
                usage["Size"].as_i64().unwrap_or(-1),
                usage["RefCount"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn volumes_row(usage: &[(String, i64, i64)]) -> Vec<String> {
    let active = usage.iter().filter(|(_, _, refs)| *refs > 0).count();
    let known = usage.iter().filter(|(_, size, _)| *size != -1);
    let used: i64 = known.clone().map(|(_, size, _)| size).sum();
    let reclaimable: i64 = known
        .filter(|(_, _, refs)| *refs == 0)
        .map(|(_, s, _)| s)
        .sum();
    let reclaim = if used > 0 {
        let pct = (reclaimable as f64 / used as f64 * 100.0) as i64;
        format!("{} ({pct}%)", human_size(reclaimable as f64))
    } else {
        human_size(reclaimable as f64)
    };
    vec![
        "Local Volumes".into(),
        usage.len().to_string(),
        active.to_string(),
        human_size(used as f64),
        reclaim,
    ]
}

async fn df(api: &ApiClient, a: DfArgs) -> Result<i32> {
    let du: Value = api.call(Method::GET, "/system/df", None).await?.json()?;
    let volumes = du["Volumes"].as_array().cloned().unwrap_or_default();
    let usage = volume_usage(&volumes);
    if !a.verbose {
        let empty = |kind: &str| {
            vec![
                kind.into(),
                "0".into(),
                "0".into(),
                "0B".into(),
                "0B".into(),
            ]
        };
        let rows = vec![
            empty("Images"),
            empty("Containers"),
            volumes_row(&usage),
            empty("Build Cache"),
        ];
        print!(
            "{}",
            table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
        );
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = usage
        .iter()
        .map(|(name, size, refs)| vec![name.clone(), refs.to_string(), human_size(*size as f64)])
        .collect();
    println!("Local Volumes space usage:\n");
    print!("{}", table(&["VOLUME NAME", "LINKS", "SIZE"], &rows));
    Ok(0)
}

/// `berth version`.
pub async fn version(api: &ApiClient) -> Result<i32> {
    println!(
        "Client:\n Version:      {}\n OS/Arch:      linux/{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    let v: Value = api.call(Method::GET, "/version", None).await?.json()?;
    println!(
        "\nServer: {}",
        v["Platform"]["Name"].as_str().unwrap_or_default()
    );
    for (label, key) in [
        ("Version", "Version"),
        ("API version", "ApiVersion"),
        ("Minimum API version", "MinAPIVersion"),
        ("Kernel", "KernelVersion"),
    ] {
        println!(
            " {:<21}{}",
            format!("{label}:"),
            v[key].as_str().unwrap_or_default()
        );
    }
    Ok(0)
}

/// `berth info`.
pub async fn info(api: &ApiClient) -> Result<i32> {
    let i: Value = api.call(Method::GET, "/info", None).await?.json()?;
    let s = |k: &str| {
        i[k].as_str()
            .map(str::to_string)
            .unwrap_or_else(|| i[k].to_string())
    };
    println!("Server:");
    for (label, key) in [
        ("Server Version", "ServerVersion"),
        ("Storage Driver", "Driver"),
        ("Logging Driver", "LoggingDriver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("Architecture", "Architecture"),
        ("CPUs", "NCPU"),
        ("Total Memory", "MemTotal"),
        ("Name", "Name"),
        ("ID", "ID"),
        ("Root Dir", "DockerRootDir"),
    ] {
        println!(" {label}: {}", s(key));
    }
    let volumes = i["Plugins"]["Volume"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = volumes.iter().filter_map(Value::as_str).collect();
    println!(" Volume plugins: {}", names.join(" "));
    Ok(0)
}
