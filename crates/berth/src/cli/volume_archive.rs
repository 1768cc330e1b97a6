//! `berth volume export|import`: a volume's contents as a tar archive and
//! back (as `podman volume export|import`), with progress on stderr.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt;

use super::stream::body_reader;
use crate::client::{encode, ApiClient};

#[derive(Debug, Args)]
pub struct ExportArgs {
    volume: String,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    volume: String,
    /// The archive: a tar file (plain, gzip or zstd), or "-" for standard
    /// input.
    source: String,
    /// Make the volume first when it does not exist (removed again if the
    /// import fails).
    #[arg(long)]
    create: bool,
    /// The driver of a volume made by --create.
    #[arg(short = 'd', long, requires = "create")]
    driver: Option<String>,
    /// A driver option of a volume made by --create (key=value).
    #[arg(short = 'o', long = "opt", requires = "create")]
    opts: Vec<String>,
    /// A label of a volume made by --create (key=value).
    #[arg(long = "label", requires = "create")]
    labels: Vec<String>,
}

impl ImportArgs {
    /// The import's path with the query `--create` adds.
    fn path(&self) -> Result<String> {
        let mut path = format!("/berth/v1/volumes/{}/import", encode(&self.volume));
        if self.create {
            let opts = serde_json::to_string(&super::key_values(&self.opts))?;
            let labels = serde_json::to_string(&super::key_values(&self.labels))?;
            let driver = self.driver.as_deref().unwrap_or_default();
            path += &format!(
                "?create=1&driver={}&opts={}&labels={}",
                encode(driver),
                encode(&opts),
                encode(&labels)
            );
        }
        Ok(path)
    }
}

/// A bar of `total` bytes (a spinner of bytes when the total is unknown),
/// drawn on stderr only when it is a terminal.
pub(super) fn byte_bar(total: Option<u64>, message: String) -> Result<ProgressBar> {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg} {spinner} {binary_bytes} ({binary_bytes_per_sec})",
        ),
    };
    bar.set_style(ProgressStyle::with_template(template)?.progress_chars("=> "));
    bar.set_message(message);
    Ok(bar)
}

/// `berth volume export VOLUME [-o FILE]`
pub async fn export(api: &ApiClient, a: ExportArgs) -> Result<i32> {
    use std::io::IsTerminal;
    if a.output.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to write a tar archive to a terminal: use -o FILE or redirect the output");
    }
    let path = format!("/berth/v1/volumes/{}/export", encode(&a.volume));
    let resp = api.open(Method::GET, &path, None).await?;
    let bar = byte_bar(None, format!("exporting {}", a.volume))?;
    let mut input = bar.wrap_async_read(body_reader(resp.into_body()));
    let copied = match &a.output {
        Some(file) => write_file_whole(&mut input, file).await,
        None => copy_large(&mut input, tokio::io::stdout())
            .await
            .map_err(Into::into),
    };
    bar.finish_and_clear();
    copied.with_context(|| format!("exporting volume {}", a.volume))?;
    Ok(0)
}

/// Copies `input` into a temporary file beside `file`, syncs it and renames
/// it over `file`: a failed or interrupted export never replaces (or
/// truncates) the archive `file` held before, and never passes for whole.
/// The temporary file has a random name and is made new (`O_EXCL`, never
/// through a symlink, mode 0600, which the archive keeps), so whoever else
/// can write to that folder cannot make the export write elsewhere, and no
/// one else can read the volume's data from it.
async fn write_file_whole(
    input: &mut (impl tokio::io::AsyncRead + Unpin),
    file: &PathBuf,
) -> Result<u64> {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let suffix = &berth_core::volume::names::random_id()[..16];
    let tmp = file.with_file_name(format!(".{name}.{suffix}.partial"));
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let result = async {
        let n = copy_large(input, &mut out).await?;
        out.sync_all().await?;
        tokio::fs::rename(&tmp, file).await?;
        sync_parent(file).await?;
        Ok::<u64, std::io::Error>(n)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    Ok(result?)
}

/// fsync of `file`'s folder, so the rename that placed it is durable.
async fn sync_parent(file: &std::path::Path) -> std::io::Result<()> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tokio::fs::File::open(parent).await?.sync_all().await
}

/// Copies `input` to `out` in large writes: tokio's files and stdout hand
/// every write to a blocking thread, so 8 KiB writes cost more than the
/// data (a 1 GiB export took 4.5 s instead of about 1 s).
async fn copy_large(
    input: &mut (impl tokio::io::AsyncRead + Unpin),
    out: impl tokio::io::AsyncWrite + Unpin,
) -> std::io::Result<u64> {
    const BUFFER: usize = 1 << 20;
    let mut reader = tokio::io::BufReader::with_capacity(BUFFER, input);
    let mut writer = tokio::io::BufWriter::with_capacity(BUFFER, out);
    let n = tokio::io::copy_buf(&mut reader, &mut writer).await?;
    writer.flush().await?;
    Ok(n)
}

/// `berth volume import VOLUME FILE|-`
pub async fn import(api: &ApiClient, a: ImportArgs) -> Result<i32> {
    let path = a.path()?;
    let message = format!("importing into {}", a.volume);
    let resp = if a.source == "-" {
        let bar = byte_bar(None, message)?;
        let input = bar.wrap_async_read(tokio::io::stdin());
        let resp = api
            .upload(Method::POST, &path, input, "application/x-tar")
            .await;
        bar.finish_and_clear();
        resp?
    } else {
        let file = tokio::fs::File::open(&a.source)
            .await
            .with_context(|| format!("opening {}", a.source))?;
        let bar = byte_bar(Some(file.metadata().await?.len()), message)?;
        let input = bar.wrap_async_read(file);
        let resp = api
            .upload(Method::POST, &path, input, "application/x-tar")
            .await;
        bar.finish_and_clear();
        resp?
    };
    drop(resp);
    Ok(0)
}
