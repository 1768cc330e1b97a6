//! `berth run|ps|logs|stop|kill|rm|wait`: containers, with the docker CLI's
//! flags and its `run` flow (create → attach → wait → start).

use anyhow::Result;
use clap::Args;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper::{Method, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::io::{ReadHalf, WriteHalf};

use super::format::table;
use super::stream::{body_reader, demux};
use crate::client::{encode, ApiClient};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Assign a name.
    #[arg(long)]
    name: Option<String>,
    /// Set environment variables.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Bind mount a volume (`name:/dst[:ro]`, `/host:/dst`, `/dst`).
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount (`type=volume,src=…,dst=…`).
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Mount volumes from the specified containers.
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short, long)]
    user: Option<String>,
    /// Keep STDIN open.
    #[arg(short, long)]
    interactive: bool,
    /// Network mode (none, host, bridge).
    #[arg(long)]
    network: Option<String>,
    /// Overwrite the default entrypoint of the image.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Set metadata on the container.
    #[arg(short, long = "label")]
    label: Vec<String>,
    /// Runtime to use for this container.
    #[arg(long)]
    runtime: Option<String>,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Filter output based on conditions provided.
    #[arg(short, long = "filter")]
    filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs.
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(short = 't', long = "time")]
    time: Option<i64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container.
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container.
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

fn create_body(a: &RunArgs) -> Value {
    let mut host = json!({"AutoRemove": a.rm, "Binds": a.volume, "VolumesFrom": a.volumes_from,
        "NetworkMode": a.network.clone().unwrap_or_else(|| "default".into())});
    if let Some(runtime) = &a.runtime {
        host["Runtime"] = json!(runtime);
    }
    if !a.mount.is_empty() {
        host["Mounts"] = json!(a.mount.iter().map(|m| mount_json(m)).collect::<Vec<_>>());
    }
    let mut body = json!({
        "Image": a.image, "Env": a.env, "Labels": super::key_values(&a.label),
        "AttachStdin": a.interactive && !a.detach, "AttachStdout": !a.detach, "AttachStderr": !a.detach,
        "OpenStdin": a.interactive, "StdinOnce": a.interactive && !a.detach, "Tty": false,
        "WorkingDir": a.workdir.clone().unwrap_or_default(), "User": a.user.clone().unwrap_or_default(),
        "HostConfig": host,
    });
    if !a.command.is_empty() {
        body["Cmd"] = json!(a.command);
    }
    if let Some(entrypoint) = &a.entrypoint {
        body["Entrypoint"] = json!([entrypoint]);
    }
    body
}

/// `--mount k=v,…` as Docker's `Mount` object.
fn mount_json(spec: &str) -> Value {
    let mut m = Map::new();
    for item in spec.split(',') {
        let (k, v) = item.split_once('=').unwrap_or((item, "true"));
        let key = match k {
            "type" => "Type",
            "source" | "src" => "Source",
            "target" | "dst" | "destination" => "Target",
            "readonly" | "ro" => "ReadOnly",
            other => other,
        };
        let value = if key == "ReadOnly" {
            json!(v != "false" && v != "0")
        } else {
            json!(v)
        };
        m.insert(key.into(), value);
    }
    Value::Object(m)
}

/// `berth run`.
pub async fn run(api: &ApiClient, a: RunArgs) -> Result<i32> {
    let id = create_container(api, &a).await?;
    if a.detach {
        start_container(api, &id).await?;
        println!("{id}");
        return Ok(0);
    }
    let (read_half, write_half) = attach_before_start(api, &id, a.interactive).await?;
    let waiter = open_waiter(api, &id, a.rm).await?;
    start_container(api, &id).await?;
    if a.interactive {
        spawn_stdin_copy(write_half);
    }
    demux(read_half).await?;
    exit_code_of(waiter).await
}

/// The two halves of an attach connection.
type AttachHalves = (ReadHalf<TokioIo<Upgraded>>, WriteHalf<TokioIo<Upgraded>>);

/// Creates the container `berth run` asks for, prints the daemon's
/// warnings, and returns its ID.
async fn create_container(api: &ApiClient, a: &RunArgs) -> Result<String> {
    let query = a
        .name
        .as_deref()
        .map(|n| format!("?name={}", encode(n)))
        .unwrap_or_default();
    let created: Value = api
        .call(
            Method::POST,
            &format!("/containers/create{query}"),
            Some(create_body(a)),
        )
        .await?
        .json()?;
    for warning in created["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", warning.as_str().unwrap_or_default());
    }
    Ok(created["Id"].as_str().unwrap_or_default().to_string())
}

/// `POST /containers/{id}/start`.
async fn start_container(api: &ApiClient, id: &str) -> Result<()> {
    api.call(Method::POST, &format!("/containers/{id}/start"), None)
        .await?;
    Ok(())
}

/// Attaches to the container's output (and stdin when `interactive`)
/// before it starts, so none of its output is missed.
async fn attach_before_start(api: &ApiClient, id: &str, interactive: bool) -> Result<AttachHalves> {
    let stdin = if interactive { "&stdin=1" } else { "" };
    let conn = api
        .upgrade(&format!(
            "/containers/{id}/attach?stream=1&stdout=1&stderr=1{stdin}"
        ))
        .await?;
    Ok(tokio::io::split(TokioIo::new(conn)))
}

/// Opens the wait for the container's end (its removal with `--rm`); the
/// daemon answers with headers at once, so the wait is in place before
/// the start.
async fn open_waiter(api: &ApiClient, id: &str, rm: bool) -> Result<Response<Incoming>> {
    let condition = if rm { "removed" } else { "next-exit" };
    api.open(
        Method::POST,
        &format!("/containers/{id}/wait?condition={condition}"),
        None,
    )
    .await
}

/// Copies this process's stdin into the attach connection in the
/// background, then half-closes it so the container sees EOF.
fn spawn_stdin_copy(mut write_half: WriteHalf<TokioIo<Upgraded>>) {
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut write_half).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut write_half).await;
    });
}

/// The exit code in a wait's result (125, docker's own failure code, when
/// it carries none).
async fn exit_code_of(waiter: Response<Incoming>) -> Result<i32> {
    let result = http_body_util::BodyExt::collect(waiter.into_body())
        .await?
        .to_bytes();
    let result: Value = serde_json::from_slice(&result)?;
    Ok(result["StatusCode"].as_i64().unwrap_or(125) as i32)
}

/// `berth ps`.
pub async fn ps(api: &ApiClient, a: PsArgs) -> Result<i32> {
    let filters = encode(&super::filters_json(&a.filter)?);
    let path = format!("/containers/json?all={}&filters={filters}", u8::from(a.all));
    let list: Vec<Value> = api.call(Method::GET, &path, None).await?.json()?;
    if a.quiet {
        list.iter()
            .for_each(|c| println!("{}", &c["Id"].as_str().unwrap_or_default()[..12]));
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            let name = c["Names"][0]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string();
            vec![
                s("Id")[..12].to_string(),
                s("Image"),
                format!("{:?}", s("Command")),
                s("Status"),
                name,
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "NAMES"],
            &rows
        )
    );
    Ok(0)
}

/// `berth logs`.
pub async fn logs(api: &ApiClient, a: LogsArgs) -> Result<i32> {
    let path = format!(
        "/containers/{}/logs?stdout=1&stderr=1&follow={}&timestamps={}&tail={}",
        encode(&a.container),
        u8::from(a.follow),
        u8::from(a.timestamps),
        encode(&a.tail)
    );
    let resp = api.open(Method::GET, &path, None).await?;
    demux(body_reader(resp.into_body())).await?;
    Ok(0)
}

/// Runs `action` for each container, printing the name on success and the
/// error otherwise (as the docker CLI does for stop/kill/rm).
async fn for_each(
    api: &ApiClient,
    names: &[String],
    method: Method,
    path: impl Fn(&str) -> String,
) -> Result<i32> {
    let mut failed = false;
    for name in names {
        match api.call(method.clone(), &path(&encode(name)), None).await {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

/// `berth stop`.
pub async fn stop(api: &ApiClient, a: StopArgs) -> Result<i32> {
    let t = a.time.map(|t| format!("?t={t}")).unwrap_or_default();
    for_each(api, &a.containers, Method::POST, |c| {
        format!("/containers/{c}/stop{t}")
    })
    .await
}

/// `berth kill`.
pub async fn kill(api: &ApiClient, a: KillArgs) -> Result<i32> {
    let signal = encode(&a.signal);
    for_each(api, &a.containers, Method::POST, |c| {
        format!("/containers/{c}/kill?signal={signal}")
    })
    .await
}

/// `berth rm`.
pub async fn rm(api: &ApiClient, a: RmArgs) -> Result<i32> {
    let q = format!("?force={}&v={}", u8::from(a.force), u8::from(a.volumes));
    for_each(api, &a.containers, Method::DELETE, |c| {
        format!("/containers/{c}{q}")
    })
    .await
}

/// `berth wait`.
pub async fn wait(api: &ApiClient, a: WaitArgs) -> Result<i32> {
    let mut failed = false;
    for name in &a.containers {
        match api
            .call(
                Method::POST,
                &format!("/containers/{}/wait", encode(name)),
                None,
            )
            .await
        {
            Ok(resp) => println!("{}", resp.json::<Value>()?["StatusCode"]),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_sent_as_docker_mount_objects() {
        let m = mount_json("type=volume,src=data,dst=/data,readonly");
        assert_eq!(
            m,
            json!({"Type": "volume", "Source": "data", "Target": "/data", "ReadOnly": true})
        );
    }
}
