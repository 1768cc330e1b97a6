//! `berth system df`, `berth version`, `berth info`.

use anyhow::Result;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;

use super::format::{human_duration, human_size, human_size_with_precision, table};
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

/// (name, size, refcount) of each volume; -1 sizes are left out of sums,
/// as docker does.
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

/// docker's RECLAIMABLE cell: the size, with its share of `total` when
/// `total` is positive.
fn reclaimable_cell(reclaimable: i64, total: i64) -> String {
    if total > 0 {
        let pct = (reclaimable as f64 / total as f64 * 100.0) as i64;
        format!("{} ({pct}%)", human_size(reclaimable as f64))
    } else {
        human_size(reclaimable as f64)
    }
}

fn summary_row(kind: &str, total: usize, active: usize, size: i64, reclaim: String) -> Vec<String> {
    vec![
        kind.into(),
        total.to_string(),
        active.to_string(),
        human_size(size as f64),
        reclaim,
    ]
}

/// Images: active ones are used by a container; what they hold beyond
/// shared layers is not reclaimable (the docker CLI's arithmetic).
fn images_row(images: &[Value], layers_size: i64) -> Vec<String> {
    let used: i64 = (images.iter())
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) != 0)
        .filter_map(|i| Some(i["Size"].as_i64()? - i["SharedSize"].as_i64()?))
        .sum();
    let active = (images.iter())
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .count();
    let reclaim = reclaimable_cell(layers_size - used, layers_size);
    summary_row("Images", images.len(), active, layers_size, reclaim)
}

fn containers_row(containers: &[Value]) -> Vec<String> {
    let running = |c: &Value| c["State"] == "running";
    let size_rw = |c: &Value| c["SizeRw"].as_i64().unwrap_or(0);
    let size: i64 = containers.iter().map(size_rw).sum();
    let idle: i64 = containers.iter().filter(|c| !running(c)).map(size_rw).sum();
    let active = containers.iter().filter(|c| running(c)).count();
    summary_row(
        "Containers",
        containers.len(),
        active,
        size,
        reclaimable_cell(idle, size),
    )
}

fn volumes_row(usage: &[(String, i64, i64)]) -> Vec<String> {
    let active = usage.iter().filter(|(_, _, refs)| *refs > 0).count();
    let known = usage.iter().filter(|(_, size, _)| *size != -1);
    let used: i64 = known.clone().map(|(_, size, _)| size).sum();
    let reclaimable: i64 = known
        .filter(|(_, _, refs)| *refs == 0)
        .map(|(_, s, _)| s)
        .sum();
    summary_row(
        "Local Volumes",
        usage.len(),
        active,
        used,
        reclaimable_cell(reclaimable, used),
    )
}

fn list(du: &Value, key: &str) -> Vec<Value> {
    du[key].as_array().cloned().unwrap_or_default()
}

async fn df(api: &ApiClient, a: DfArgs) -> Result<i32> {
    let du: Value = api.call(Method::GET, "/system/df", None).await?.json()?;
    let (images, containers) = (list(&du, "Images"), list(&du, "Containers"));
    let usage = volume_usage(&list(&du, "Volumes"));
    if a.verbose {
        print_verbose(&images, &containers, &usage);
        return Ok(0);
    }
    let rows = vec![
        images_row(&images, du["LayersSize"].as_i64().unwrap_or(0)),
        containers_row(&containers),
        volumes_row(&usage),
        summary_row("Build Cache", 0, 0, 0, "0B".into()),
    ];
    print!(
        "{}",
        table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
    );
    Ok(0)
}

/// `system df -v`: one table per kind, as the docker CLI prints them.
fn print_verbose(images: &[Value], containers: &[Value], volumes: &[(String, i64, i64)]) {
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<Vec<String>> = images.iter().map(|i| image_row(i, now)).collect();
    println!("Images space usage:\n");
    let head = [
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED",
        "SIZE",
        "SHARED SIZE",
    ];
    print!(
        "{}",
        table(&[&head[..], &["UNIQUE SIZE", "CONTAINERS"]].concat(), &rows)
    );
    let rows: Vec<Vec<String>> = containers.iter().map(|c| container_row(c, now)).collect();
    println!("\nContainers space usage:\n");
    let head = ["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE"];
    print!(
        "{}",
        table(
            &[&head[..], &["CREATED", "STATUS", "NAMES"]].concat(),
            &rows
        )
    );
    let rows: Vec<Vec<String>> = (volumes.iter())
        .map(|(name, size, refs)| vec![name.clone(), refs.to_string(), human_size(*size as f64)])
        .collect();
    println!("\nLocal Volumes space usage:\n");
    print!("{}", table(&["VOLUME NAME", "LINKS", "SIZE"], &rows));
    println!("\nBuild cache usage: 0B\n");
}

fn image_row(i: &Value, now: i64) -> Vec<String> {
    let first_tag = i["RepoTags"][0].as_str().unwrap_or("<none>:<none>");
    let (repo, tag) = first_tag.rsplit_once(':').unwrap_or((first_tag, "<none>"));
    let id = i["Id"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("sha256:");
    let (size, shared) = (
        i["Size"].as_i64().unwrap_or(0),
        i["SharedSize"].as_i64().unwrap_or(0),
    );
    vec![
        repo.into(),
        tag.into(),
        id.chars().take(12).collect(),
        format!(
            "{} ago",
            human_duration(now - i["Created"].as_i64().unwrap_or(now))
        ),
        human_size_with_precision(size as f64, 3),
        human_size_with_precision(shared as f64, 3),
        human_size((size - shared) as f64),
        i["Containers"].as_i64().unwrap_or(0).to_string(),
    ]
}

fn container_row(c: &Value, now: i64) -> Vec<String> {
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    let command: String = text("Command");
    let command = if command.chars().count() > 20 {
        command.chars().take(19).chain(['…']).collect()
    } else {
        command
    };
    let volumes = (c["Mounts"].as_array().into_iter().flatten())
        .filter(|m| m["Type"] == "volume")
        .count();
    vec![
        text("Id").chars().take(12).collect(),
        text("Image"),
        format!("\"{command}\""),
        volumes.to_string(),
        human_size_with_precision(c["SizeRw"].as_f64().unwrap_or(0.0), 3),
        format!(
            "{} ago",
            human_duration(now - c["Created"].as_i64().unwrap_or(now))
        ),
        text("Status"),
        c["Names"][0]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
    ]
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
