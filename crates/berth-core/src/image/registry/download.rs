//! One blob's download for a pull: streamed to a file while its size and
//! digest are checked, resumed where it stopped when the transfer breaks
//! (a `Range` request, after dockerd's count-down), synced once whole.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::manifest::Descriptor;
use super::progress::{layer, LayerState, Progress};
use super::RegistryError;

/// How often a layer's download bar moves.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// A blob to download: what it is, where it comes from, where it goes.
pub(super) struct BlobTarget<'a> {
    pub desc: &'a Descriptor,
    pub url: &'a str,
    pub file: &'a Path,
}

/// A download's bytes so far, kept across attempts: the file, their
/// running digest and their count.
struct Partial {
    out: tokio::fs::File,
    hasher: Sha256,
    got: u64,
}

/// Streams a blob to `file`, refusing more bytes than its descriptor
/// says, fewer, or other bytes than its digest names; the file is synced
/// (it is kept as the layer's blob). A transfer that breaks is resumed
/// where it stopped (a `Range` request; from the start when the registry
/// answers with the whole blob), up to `attempts` tries in all, after
/// dockerd's count-down ("Retrying in 5 seconds", 10, 15…).
pub(super) async fn download(
    client: &oci_client::Client,
    repo: &oci_client::Reference,
    target: &BlobTarget<'_>,
    progress: &Progress,
    attempts: usize,
) -> Result<(), RegistryError> {
    let (desc, file) = (target.desc, target.file);
    let total = u64::try_from(desc.size)
        .map_err(|_| RegistryError::Protocol(format!("negative size for {}", desc.digest)))?;
    let io = |e: std::io::Error| RegistryError::Image(crate::image::ImageError::io(file, e));
    let mut part = Partial {
        out: tokio::fs::File::create(file).await.map_err(io)?,
        hasher: Sha256::new(),
        got: 0,
    };
    let mut attempt = 1;
    loop {
        match fetch_into(client, repo, target, total, &mut part, progress).await {
            Ok(()) => break,
            Err(RegistryError::Unreachable(why) | RegistryError::Server(why))
                if attempt < attempts =>
            {
                tracing::info!(blob = %desc.digest, attempt, error = %why, "download broke; retrying");
                count_down(progress, &desc.digest, 5 * attempt as u64).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
    layer(progress, &desc.digest, LayerState::VerifyingChecksum);
    let actual = format!("sha256:{}", hex::encode(part.hasher.finalize()));
    if actual != desc.digest {
        return Err(verification_failed(&desc.digest));
    }
    part.out.sync_all().await.map_err(io)?;
    layer(progress, &desc.digest, LayerState::DownloadComplete);
    Ok(())
}

/// One attempt: the blob (or its rest) appended to `part`.
async fn fetch_into(
    client: &oci_client::Client,
    repo: &oci_client::Reference,
    target: &BlobTarget<'_>,
    total: u64,
    part: &mut Partial,
    progress: &Progress,
) -> Result<(), RegistryError> {
    let digest = target.desc.digest.as_str();
    let oci = |e| RegistryError::from_oci(e, "Get", target.url);
    let io = |e: std::io::Error| RegistryError::Image(crate::image::ImageError::io(target.file, e));
    let mut stream = if part.got == 0 {
        client.pull_blob_stream(repo, digest).await.map_err(oci)?
    } else {
        match client
            .pull_blob_stream_partial(repo, digest, part.got, None)
            .await
            .map_err(oci)?
        {
            oci_client::client::BlobResponse::Partial(rest) => rest,
            oci_client::client::BlobResponse::Full(whole) => {
                part.out.set_len(0).await.map_err(io)?;
                part.out
                    .seek(std::io::SeekFrom::Start(0))
                    .await
                    .map_err(io)?;
                (part.hasher, part.got) = (Sha256::new(), 0);
                whole
            }
        }
    };
    let mut last = Instant::now() - PROGRESS_EVERY;
    while let Some(chunk) = stream.stream.next().await {
        let chunk = chunk.map_err(|e| stream_error(&e, digest))?;
        part.got += chunk.len() as u64;
        if part.got > total {
            return Err(RegistryError::Verification(format!(
                "blob {digest} is larger than the {total} bytes its manifest says"
            )));
        }
        part.hasher.update(&chunk);
        part.out.write_all(&chunk).await.map_err(io)?;
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            let current = part.got;
            layer(progress, digest, LayerState::Downloading { current, total });
        }
    }
    if part.got != total {
        return Err(RegistryError::Unreachable(format!(
            "downloading {digest}: unexpected EOF after {} of {total} bytes",
            part.got
        )));
    }
    Ok(())
}

/// dockerd's count-down before a retry, one line a second (`digest`: the
/// id the layer's lines carry).
pub(super) async fn count_down(progress: &Progress, digest: &str, seconds: u64) {
    for left in (1..=seconds).rev() {
        layer(progress, digest, LayerState::Retrying(left));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A failure while a blob streams: the client's own digest check (it
/// verifies what it streams) in dockerd's words, else a broken transfer.
fn stream_error(error: &std::io::Error, digest: &str) -> RegistryError {
    let mismatch = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<oci_client::errors::DigestError>())
        .is_some_and(|e| matches!(e, oci_client::errors::DigestError::VerificationError { .. }));
    if mismatch {
        return verification_failed(digest);
    }
    RegistryError::Unreachable(format!("downloading {digest}: {error}"))
}

fn verification_failed(digest: &str) -> RegistryError {
    RegistryError::Verification(format!(
        "filesystem layer verification failed for digest {digest}"
    ))
}
