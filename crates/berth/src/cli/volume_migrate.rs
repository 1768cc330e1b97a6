//! `berth volume migrate VOL --to tcp://HOST:PORT`: a volume moved to
//! another berth daemon. The CLI reads the volume's export from its own
//! daemon, compresses it (zstd) and streams it to the target's import,
//! which makes the volume (driver, options, labels) only if the stream is
//! whole: the CLI sends the SHA-256 of the uncompressed tar stream after
//! the body (an HTTP trailer) and the target compares it with what it
//! read before the volume becomes ready. A migration cut short anywhere
//! leaves the source as it was and nothing on the target.
//! With `--move` the source is removed after the target's answer, and
//! only if no container uses it (the daemon refuses otherwise).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::Method;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use berth_core::sys::units::format_size;

use super::volume_archive::byte_bar;
use crate::client::connect::TlsOptions;
use crate::client::{encode, ApiClient};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    pub(super) volume: String,
    /// The berth daemon to move the volume to: tcp://HOST:PORT (mutual
    /// TLS with the files below) or unix:///path.
    #[arg(long)]
    pub(super) to: String,
    /// The volume's name on the target (default: its name here).
    #[arg(long)]
    name: Option<String>,
    /// Remove the volume here once the target has verified its copy (not
    /// done while a container uses it).
    #[arg(long = "move")]
    move_source: bool,
    /// CA of the target's certificate (default: ca.pem in $DOCKER_CERT_PATH or ~/.docker).
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// This client's certificate for the target (default: cert.pem there).
    #[arg(long)]
    tlscert: Option<PathBuf>,
    /// This client's key for the target (default: key.pem there).
    #[arg(long)]
    tlskey: Option<PathBuf>,
    /// Speak plain HTTP to a tcp:// target: no encryption, no
    /// authentication of either side.
    #[arg(long)]
    insecure_plain: bool,
    /// Thin volumes: copy a snapshot while containers keep writing, then
    /// stop the containers that use the volume and send only what changed
    /// (the volume is unavailable only for that last step).
    #[arg(long)]
    pub(super) live: bool,
    /// With --live: do not stop the containers; wait until you have.
    #[arg(long, requires = "live")]
    pub(super) no_stop: bool,
    /// Thin volumes migrated before: replace the target's copy even if it
    /// changed there since (a container wrote to it, or it was mounted
    /// read-write); those changes are lost.
    #[arg(long)]
    pub(super) discard_target_changes: bool,
}

/// What the source daemon says of the volume (`GET /volumes/{name}`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SourceVolume {
    pub(super) driver: String,
    #[serde(default)]
    pub(super) options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    status: Option<serde_json::Value>,
}

impl SourceVolume {
    /// A thin volume made without `size` has the source pool's default
    /// size, which the target's may not share: its actual size is sent.
    fn pin_thin_size(&mut self) {
        let options = self.options.get_or_insert_with(BTreeMap::new);
        if self.driver != "thin" || options.contains_key("size") {
            return;
        }
        let bytes = self.status.as_ref().and_then(|s| s["SizeBytes"].as_u64());
        if let Some(bytes) = bytes.filter(|b| *b > 0) {
            options.insert("size".into(), bytes.to_string());
        }
    }
}

/// Compression level on the wire: zstd's fastest levels keep up with a
/// gigabit link on one core; higher ones would make the CPU the limit.
const WIRE_LEVEL: i32 = 1;
/// How long the progress bar's total is waited for.
const USAGE_WAIT: Duration = Duration::from_secs(3);
/// How long the target may take no data before the migration gives up.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// `berth volume migrate VOLUME --to HOST [--name NEW] [--move]`
pub async fn migrate(source: &ApiClient, a: MigrateArgs) -> Result<i32> {
    let target = ApiClient::new(&a.to, &target_tls(&a))?;
    let new_name = a.name.clone().unwrap_or_else(|| a.volume.clone());
    let mut volume = source_volume(source, &a.volume).await?;
    volume.pin_thin_size();
    keep_anonymity_honest(&mut volume, &a);
    let started = Instant::now();
    let copied = copy(source, &target, &a, &new_name, &volume).await?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "migrated {} to {} as {new_name}: {} in {secs:.1} s ({} on the wire)",
        a.volume,
        a.to,
        format_size(copied.sent.content),
        format_size(copied.sent.wire)
    );
    if a.move_source {
        untouched_since(source, &a.volume, copied.since).await?;
        let path = format!("/volumes/{}", encode(&a.volume));
        if let Err(e) = source.call(Method::DELETE, &path, None).await {
            bail!("the target verified its copy, but the volume here was kept: {e}");
        }
        eprintln!("removed {} here", a.volume);
        if let Some(base) = &copied.base {
            // Nothing is left here to copy from again.
            base.drop_target_base(&target, &new_name).await;
        }
    }
    println!("{new_name}");
    Ok(0)
}

/// What a copy did.
struct Copied {
    sent: Sent,
    /// Events of the volume after this time (ns) mean it may have changed
    /// after the copy read it (`--move` then keeps it).
    since: i64,
    /// A block copy's outcome (the base snapshot both sides keep).
    base: Option<super::volume_migrate_blocks::Done>,
}

/// Copies the volume: thin ones by blocks, others as a tar stream.
async fn copy(
    source: &ApiClient,
    target: &ApiClient,
    a: &MigrateArgs,
    new_name: &str,
    volume: &SourceVolume,
) -> Result<Copied> {
    if volume.driver == "thin" {
        let done = super::volume_migrate_blocks::run(source, target, a, new_name, volume).await?;
        return Ok(Copied {
            sent: done.sent,
            since: done.final_since,
            base: Some(done),
        });
    }
    if a.live {
        bail!(
            "--live copies by blocks, which only thin volumes have: {} is a {} volume",
            a.volume,
            volume.driver
        );
    }
    let since = super::volume_migrate_blocks::now_nanos()?;
    target_name_free(target, &a.to, new_name).await?;
    let paths = Transfer {
        from: format!("/berth/v1/volumes/{}/export", encode(&a.volume)),
        to: import_path(new_name, volume)?,
        what: a.volume.clone(),
    };
    let sent = send(source, target, a, paths).await?;
    Ok(Copied {
        sent,
        since,
        base: None,
    })
}

/// An anonymous volume given a name there is no longer anonymous (a plain
/// `volume prune` takes anonymous volumes no container uses, and on the
/// target none does); one that keeps its id-name keeps the label, with a
/// warning.
fn keep_anonymity_honest(volume: &mut SourceVolume, a: &MigrateArgs) {
    let label = berth_core::volume::names::ANONYMOUS_LABEL;
    let labels = volume.labels.get_or_insert_with(BTreeMap::new);
    if !labels.contains_key(label) {
        return;
    }
    if a.name.is_some() {
        labels.remove(label);
    } else {
        eprintln!(
            "warning: {} is an anonymous volume: on the target no container uses it, and \
             `volume prune` there would remove it (give it a name with --name)",
            a.volume
        );
    }
}

/// Refuses early, before any data moves, when the name is taken there.
async fn target_name_free(target: &ApiClient, to: &str, name: &str) -> Result<()> {
    let path = format!("/volumes/{}", encode(name));
    let resp = target
        .send(Method::GET, &path, None)
        .await
        .with_context(|| format!("reaching the target {to}"))?;
    match resp.status.as_u16() {
        404 => Ok(()),
        200 => {
            bail!("a volume named {name} already exists on {to}: remove it there, or give --name")
        }
        other => bail!("the target {to} answered {other} for volume {name}"),
    }
}

/// Refuses --move when the source volume saw anything since the migration
/// began but its export (a container mounting it, an import, a rename
/// swapping another volume into the name): data may have changed after
/// it was read.
async fn untouched_since(source: &ApiClient, name: &str, since: i64) -> Result<()> {
    let filters = serde_json::json!({"type": ["volume"], "volume": [name]}).to_string();
    let until = chrono::Utc::now().timestamp() + 1;
    let path = format!(
        "/events?since={}&until={until}&filters={}",
        since / 1_000_000_000,
        encode(&filters)
    );
    let resp = source.call(Method::GET, &path, None).await?;
    let touched: Vec<String> = String::from_utf8_lossy(&resp.body)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        // `since` is in seconds: events earlier in that second are not ours.
        .filter(|e| e["timeNano"].as_i64().is_some_and(|t| t >= since))
        .filter_map(|e| e["Action"].as_str().map(str::to_string))
        // Reading it and taking snapshots of it change nothing.
        .filter(|action| action != "export" && action != "snapshot")
        .collect();
    if !touched.is_empty() {
        bail!(
            "the target verified its copy, but the volume here was kept: it saw {} while it was \
             being copied, so the copy may be older than it",
            touched.join(", ")
        );
    }
    Ok(())
}

/// The target's TLS: always verified for tcp://, unless plain HTTP is
/// asked for by name.
fn target_tls(a: &MigrateArgs) -> TlsOptions {
    TlsOptions {
        tls: false,
        verify: a.to.starts_with("tcp://") && !a.insecure_plain,
        cacert: a.tlscacert.clone(),
        cert: a.tlscert.clone(),
        key: a.tlskey.clone(),
    }
}

/// The source volume's record, refused when its data is not berth's to
/// move (a local volume mounted from a device, a share or tmpfs).
async fn source_volume(source: &ApiClient, name: &str) -> Result<SourceVolume> {
    let volume: SourceVolume = source
        .call(Method::GET, &format!("/volumes/{}", encode(name)), None)
        .await?
        .json()?;
    let options = volume.options.clone().unwrap_or_default();
    if berth_core::driver::data_outside_berth(&volume.driver, &options) {
        bail!(
            "volume {name} is mounted from a device, a share or tmpfs (options type, device, o): \
             its data is not in berth's folder; copy it with the tool of that storage"
        );
    }
    Ok(volume)
}

/// Bytes a migration moved: content (tar or block stream), and
/// compressed on the wire.
#[derive(Default, Clone, Copy)]
pub(super) struct Sent {
    pub(super) content: u64,
    pub(super) wire: u64,
    /// Data a block stream carried (its content less record heads).
    pub(super) data: u64,
}

impl std::ops::AddAssign for Sent {
    fn add_assign(&mut self, other: Sent) {
        self.content += other.content;
        self.wire += other.wire;
        self.data += other.data;
    }
}

/// Where one stream goes: read from the source's `from`, posted to the
/// target's `to`; `what` names it in messages.
pub(super) struct Transfer {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) what: String,
}

/// Streams the source's `paths.from` into the target's `paths.to`.
pub(super) async fn send(
    source: &ApiClient,
    target: &ApiClient,
    a: &MigrateArgs,
    paths: Transfer,
) -> Result<Sent> {
    let resp = source.open(Method::GET, &paths.from, None).await?;
    // The bar's total: what a block stream says it carries, else the
    // volume's size if `system df` answers soon (volumes never measured
    // can make it slow).
    let announced = resp
        .headers()
        .get("berth-blocks-data")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let total = match announced {
        Some(bytes) => Some(bytes),
        None => tokio::time::timeout(USAGE_WAIT, usage_size(source, &a.volume))
            .await
            .ok()
            .flatten(),
    };
    // The connection's task holds the body, and a dead link never drains
    // it: the compressing thread is told to stop instead of left waiting,
    // on the target and on the source alike.
    let stop = CancellationToken::new();
    let input = tokio_util::io::SyncIoBridge::new(source_reader(resp, &stop));
    let bar = byte_bar(total, format!("migrating {}", paths.what))?;
    let content = Arc::new(AtomicU64::new(0));
    let wire = Arc::new(AtomicU64::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let pump = {
        let writer = FrameWriter {
            tx,
            stop: stop.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let (bar, content) = (bar.clone(), content.clone());
        tokio::task::spawn_blocking(move || compress(input, writer, &bar, &content))
    };
    let body_sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let frames = tokio_stream_of(rx, wire.clone(), body_sent.clone());
    let body = http_body_util::StreamBody::new(frames).boxed();
    let headers = [
        ("Content-Type", "application/zstd"),
        ("Trailer", "Berth-Content-Digest"),
    ];
    let upload = target.send_stream(Method::POST, &paths.to, body, &headers);
    let answer = watch_stall(upload, &wire, &body_sent).await;
    bar.finish_and_clear();
    stop.cancel();
    let pumped = pump.await.context("the compressing thread")?;
    let (digest, resp) = match (pumped, answer) {
        // A source that failed says why; the target only saw a broken body.
        (Err(e), _) if !is_upload_end(&e) => {
            return Err(e.context(format!("reading {}", paths.what)))
        }
        (_, Err(e)) => return Err(e.context(format!("sending {} to {}", paths.what, a.to))),
        (Err(e), Ok(_)) => return Err(e),
        (Ok(digest), Ok(resp)) => (digest, resp),
    };
    verified(&digest, &resp, &a.to)?;
    let content = content.load(Ordering::Relaxed);
    Ok(Sent {
        content,
        wire: wire.load(Ordering::Relaxed),
        data: announced.unwrap_or(content),
    })
}

/// The export's body as a reader that ends when `stop` is cancelled (the
/// sends that follow then fail, so nothing cut short is ever sent as if
/// whole).
fn source_reader(
    resp: hyper::Response<hyper::body::Incoming>,
    stop: &CancellationToken,
) -> impl tokio::io::AsyncRead + Unpin {
    use futures_util::{StreamExt, TryStreamExt};
    let data = resp
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other)
        .take_until(Box::pin(stop.clone().cancelled_owned()));
    tokio_util::io::StreamReader::new(data)
}

/// Whether a compressing error only says the upload ended (the target's
/// answer then says why).
fn is_upload_end(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// The target made the volume (201) and says it checked the digest sent
/// (it echoes it): an older daemon, or anything between, that ignored the
/// trailer cannot pass for a verified copy.
fn verified(sent: &str, resp: &hyper::Response<hyper::body::Incoming>, to: &str) -> Result<()> {
    let echoed = resp
        .headers()
        .get("berth-content-digest")
        .and_then(|v| v.to_str().ok());
    if resp.status() != hyper::StatusCode::CREATED || echoed != Some(sent) {
        bail!(
            "the target {to} answered {} without confirming the content digest: it did not \
             verify the copy (an older berth?); nothing here was removed",
            resp.status()
        );
    }
    Ok(())
}

/// The target's import path: make the volume, refuse an existing one.
fn import_path(name: &str, volume: &SourceVolume) -> Result<String> {
    let opts = serde_json::to_string(&volume.options.clone().unwrap_or_default())?;
    let labels = serde_json::to_string(&volume.labels.clone().unwrap_or_default())?;
    Ok(format!(
        "/berth/v1/volumes/{}/import?create=1&exclusive=1&driver={}&opts={}&labels={}",
        encode(name),
        encode(&volume.driver),
        encode(&opts),
        encode(&labels)
    ))
}

/// The volume's size as `system df` measures it, for the progress bar
/// (none when the daemon cannot say).
async fn usage_size(source: &ApiClient, name: &str) -> Option<u64> {
    let resp = source
        .call(Method::GET, "/system/df?type=volume", None)
        .await
        .ok()?;
    let df: serde_json::Value = resp.json().ok()?;
    let volumes = df.get("Volumes")?.as_array()?;
    let found = volumes.iter().find(|v| v["Name"] == name)?;
    found["UsageData"]["Size"]
        .as_i64()
        .and_then(|s| u64::try_from(s).ok())
}

type FrameResult = std::result::Result<Frame<Bytes>, std::io::Error>;

/// Reads the tar stream, hashes and compresses it into frames for the
/// request body, and ends with the digest as a trailer. An error is sent
/// down the body too, so the target sees the stream broken, never ended.
fn compress(
    mut input: impl Read,
    writer: FrameWriter,
    bar: &indicatif::ProgressBar,
    content: &AtomicU64,
) -> Result<String> {
    let mut hasher = sha2::Sha256::new();
    let frames = writer.clone();
    let result = (|| -> std::io::Result<()> {
        let mut encoder = zstd::stream::write::Encoder::new(writer, WIRE_LEVEL)?;
        encoder.include_checksum(true)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            encoder.write_all(&buf[..n])?;
            content.fetch_add(n as u64, Ordering::Relaxed);
            bar.inc(n as u64);
        }
        encoder.finish()?.flush()
    })();
    if let Err(e) = result {
        let _ = frames.send(Err(std::io::Error::new(e.kind(), e.to_string())));
        return Err(e.into());
    }
    let digest = berth_core::archive::digest::format_digest(hasher.finalize().as_slice());
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("berth-content-digest", digest.parse()?);
    frames
        .send(Ok(Frame::trailers(trailers)))
        .context("the upload ended before the digest was sent")?;
    Ok(digest)
}

/// A writer whose writes become data frames of the request body; each
/// waits for room in the channel, or for `stop`.
#[derive(Clone)]
struct FrameWriter {
    tx: tokio::sync::mpsc::Sender<FrameResult>,
    stop: CancellationToken,
    runtime: tokio::runtime::Handle,
}

impl FrameWriter {
    fn send(&self, frame: FrameResult) -> std::io::Result<()> {
        let ended = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload ended");
        self.runtime.block_on(async {
            tokio::select! {
                sent = self.tx.send(frame) => sent.map_err(|_| ended()),
                () = self.stop.cancelled() => Err(ended()),
            }
        })
    }
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.send(Ok(Frame::data(Bytes::copy_from_slice(buf))))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The frames as a stream, counting the data bytes the connection takes
/// and noting when it took the trailers (the whole body).
fn tokio_stream_of(
    rx: tokio::sync::mpsc::Receiver<FrameResult>,
    wire: Arc<AtomicU64>,
    body_sent: Arc<std::sync::atomic::AtomicBool>,
) -> impl futures_util::Stream<Item = FrameResult> + Send + Sync {
    futures_util::stream::unfold(rx, move |mut rx| {
        let (wire, body_sent) = (wire.clone(), body_sent.clone());
        async move {
            let item = rx.recv().await?;
            match item.as_ref().map(|f| f.data_ref()) {
                Ok(Some(data)) => {
                    wire.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Ok(None) => body_sent.store(true, Ordering::Relaxed),
                Err(_) => {}
            }
            Some((item, rx))
        }
    })
}

/// Runs the upload, failing it when the connection takes no data for
/// [`STALL_LIMIT`] while the body is still being sent (a link that went
/// down sends no error of its own). Once the whole body is sent the
/// target may take long to sync; TCP keep-alive watches the link then.
async fn watch_stall<T>(
    upload: impl std::future::Future<Output = Result<T>>,
    wire: &AtomicU64,
    body_sent: &std::sync::atomic::AtomicBool,
) -> Result<T> {
    tokio::pin!(upload);
    let mut seen = wire.load(Ordering::Relaxed);
    let mut still_since = Instant::now();
    loop {
        tokio::select! {
            answer = &mut upload => return answer,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = wire.load(Ordering::Relaxed);
        if body_sent.load(Ordering::Relaxed) {
            return upload.await;
        }
        if now != seen {
            (seen, still_since) = (now, Instant::now());
        } else if still_since.elapsed() > STALL_LIMIT {
            bail!(
                "the target took no data for {} s: giving up",
                STALL_LIMIT.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_import_path_carries_driver_options_and_labels() {
        let volume = SourceVolume {
            driver: "thin".into(),
            options: Some(BTreeMap::from([("size".into(), "1G".into())])),
            labels: None,
            status: None,
        };
        let path = import_path("new one", &volume).unwrap();
        assert!(
            path.starts_with("/berth/v1/volumes/new+one/import?create=1&exclusive=1&driver=thin")
        );
        assert!(path.contains("opts=%7B%22size%22%3A%221G%22%7D"), "{path}");
        assert!(path.ends_with("labels=%7B%7D"), "{path}");
    }

    #[test]
    fn a_thin_volume_without_a_size_is_sent_with_its_own() {
        let thin = |options: BTreeMap<String, String>| SourceVolume {
            driver: "thin".into(),
            options: Some(options),
            labels: None,
            status: Some(serde_json::json!({"SizeBytes": 1073741824u64})),
        };
        let mut unsized_one = thin(BTreeMap::new());
        unsized_one.pin_thin_size();
        assert_eq!(unsized_one.options.unwrap()["size"], "1073741824");
        let mut sized = thin(BTreeMap::from([("size".into(), "2G".into())]));
        sized.pin_thin_size();
        assert_eq!(sized.options.unwrap()["size"], "2G");
        let mut local = SourceVolume {
            driver: "local".into(),
            ..thin(BTreeMap::new())
        };
        local.pin_thin_size();
        assert!(local.options.unwrap().is_empty());
    }
}
