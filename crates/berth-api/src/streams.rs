//! Output streams of containers: Docker's multiplexed framing, the attach
//! connection (HTTP upgrade) and the logs body, all fed from the
//! container's json-file log, so nothing written between start and attach
//! is lost and a daemon restart does not cut a log.

use std::time::Duration;

use berth_core::container::detach_keys::{DetachScanner, Scanned};
use berth_core::container::jsonlog::{LogEntry, LogReader, Stream};
use berth_core::container::Lifecycle;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// How often a followed log is checked for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(10);

/// One multiplexed frame: `[stream, 0, 0, 0, len (u32 BE)]` + payload.
pub fn frame(stream: Stream, payload: &[u8]) -> Bytes {
    let kind = match stream {
        Stream::Stdout => 1u8,
        Stream::Stderr => 2u8,
    };
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A channel's receiver as a body stream (chunks sent by a blocking task
/// or a sampling loop).
pub fn receiver_stream<T>(mut rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Which streams a client asked for, and how to print entries.
#[derive(Debug, Clone, Copy)]
pub struct StreamFilter {
    pub stdout: bool,
    pub stderr: bool,
    pub timestamps: bool,
    /// A TTY container's output: raw bytes, no frames (as Docker sends it).
    pub raw: bool,
}

impl StreamFilter {
    /// The frame for `entry`, or `None` if its stream was not asked for.
    pub fn render(&self, entry: &LogEntry) -> Option<Bytes> {
        let wanted = match entry.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        if !wanted {
            return None;
        }
        let text = if self.timestamps {
            format!("{} {}", timestamp_nanos(&entry.time), entry.log)
        } else {
            entry.log.clone()
        };
        if self.raw {
            return Some(Bytes::from(text));
        }
        Some(frame(entry.stream, text.as_bytes()))
    }
}

/// `2006-01-02T15:04:05.000000000Z07:00`: always nine digits.
fn timestamp_nanos(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%S%.9fZ")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// Follows `reader` into `tx` until the container has exited more times
/// than `exits_at_start` (or is removed) and the log is drained, or the
/// receiver goes away.
pub async fn follow(
    mut reader: LogReader,
    filter: StreamFilter,
    mut lifecycle: watch::Receiver<Lifecycle>,
    exits_at_start: u64,
    tx: mpsc::Sender<Bytes>,
) {
    loop {
        let finished = {
            let l = lifecycle.borrow_and_update();
            l.exits > exits_at_start || l.removed
        };
        let entries = reader.read_new().unwrap_or_default();
        for entry in &entries {
            if let Some(frame) = filter.render(entry) {
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
        }
        if finished && entries.is_empty() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            _ = lifecycle.changed() => {}
        }
    }
}

/// The container's stdin FIFO with what the attach needs to close it at
/// the right moment.
pub struct StdinPipe {
    pub fifo: tokio::net::unix::pipe::Sender,
    pub lifecycle: watch::Receiver<Lifecycle>,
    pub exits_at_start: u64,
    /// A TTY container's detach keys: typed, they end the attach.
    pub detach_keys: Option<Vec<u8>>,
}

/// Serves an attach connection: output frames out; stdin (if given) into
/// the container's FIFO. The client's half-close of its side ends only
/// the stdin copy, not the output; the detach keys end the attach.
pub async fn serve_attach<IO>(io: IO, mut frames: mpsc::Receiver<Bytes>, stdin: Option<StdinPipe>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read_half, mut write_half) = tokio::io::split(io);
    let (detach_tx, detach_rx) = tokio::sync::oneshot::channel::<()>();
    let stdin_task = stdin.map(|pipe| tokio::spawn(copy_stdin(read_half, pipe, detach_tx)));
    let detached = detach_keys_typed(detach_rx);
    tokio::pin!(detached);
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(frame) => if write_half.write_all(&frame).await.is_err() { break },
                None => break,
            },
            _ = &mut detached => break,
        }
    }
    let _ = write_half.shutdown().await;
    if let Some(task) = stdin_task {
        task.abort();
    }
}

/// Resolves only when the detach keys were typed (a dropped sender, the
/// end of stdin, never resolves it).
pub async fn detach_keys_typed(rx: tokio::sync::oneshot::Receiver<()>) {
    if rx.await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The client's bytes into the FIFO (through the detach-key scanner for a
/// TTY container); at the client's end of input the FIFO is held until the
/// container has opened its end (a FIFO drops buffered data when no end
/// is open), and closing it then, the last writer, gives the container EOF.
async fn copy_stdin<R: AsyncRead + Unpin>(
    mut client: R,
    mut pipe: StdinPipe,
    detach: tokio::sync::oneshot::Sender<()>,
) {
    let mut scanner = pipe.detach_keys.take().map(DetachScanner::new);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (bytes, detaching) = match scanner.as_mut().map(|s| s.feed(&buf[..n])) {
            None => (buf[..n].to_vec(), false),
            Some(Scanned::Forward(bytes)) => (bytes, false),
            Some(Scanned::Detach(bytes)) => (bytes, true),
        };
        if pipe.fifo.write_all(&bytes).await.is_err() {
            break;
        }
        if detaching {
            let _ = detach.send(());
            return;
        }
    }
    tracing::debug!("attach stdin closed by the client");
    let started = pipe.exits_at_start;
    let _ = pipe
        .lifecycle
        .wait_for(|l| l.running || l.exits > started)
        .await;
}

/// All entries of a finished log, honouring `tail` (-1 = all), `since`
/// and `until` (unix seconds, 0 = unbounded).
/// and a reader that goes on right after them (for `-f`).
pub fn history_then_follow(
    path: &std::path::Path,
    tail: i64,
    since: f64,
    until: f64,
) -> (Vec<LogEntry>, LogReader) {
    let (all, reader) = match berth_core::container::jsonlog::read_all_then_follow(path) {
        Ok(read) => read,
        Err(_) => (Vec::new(), LogReader::open(path, true)),
    };
    (window(all, tail, since, until), reader)
}

/// The entries within `since`/`until`, the last `tail` of them.
fn window(all: Vec<LogEntry>, tail: i64, since: f64, until: f64) -> Vec<LogEntry> {
    let entries: Vec<LogEntry> = all
        .into_iter()
        .filter(|e| {
            let t = entry_seconds(e);
            t >= since && (until <= 0.0 || t <= until)
        })
        .collect();
    if tail < 0 || tail as usize >= entries.len() {
        entries
    } else {
        entries[entries.len() - tail as usize..].to_vec()
    }
}

fn entry_seconds(e: &LogEntry) -> f64 {
    chrono::DateTime::parse_from_rfc3339(&e.time)
        .map(|t| t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_dockers_header() {
        let f = frame(Stream::Stderr, b"hi\n");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
    }

    #[test]
    fn timestamps_have_nine_digits() {
        assert_eq!(
            timestamp_nanos("2024-01-02T03:04:05.12Z"),
            "2024-01-02T03:04:05.120000000Z"
        );
    }
}
