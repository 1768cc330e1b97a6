//! Following a daemon operation that answers with JSON progress lines
//! (clone, backup, restore): a byte progress bar on stderr (hidden when
//! stderr is not a terminal), then the operation's result.

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::stream::body_reader;

/// Reads the progress lines of `resp` with a bar labelled `message`;
/// returns the final line's `aux` (the result), or the daemon's error.
pub async fn follow(
    resp: hyper::Response<hyper::body::Incoming>,
    message: String,
) -> Result<Value> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {eta}")?
            .progress_chars("=> "),
    );
    bar.set_message(message);
    let mut lines = BufReader::new(body_reader(resp.into_body())).lines();
    let mut result = None;
    while let Some(line) = lines.next_line().await? {
        let message: Value = serde_json::from_str(&line)?;
        if let Some(error) = message["error"].as_str() {
            bar.abandon();
            bail!("Error response from daemon: {error}");
        }
        let detail = &message["progressDetail"];
        if let (Some(current), Some(total)) = (detail["current"].as_u64(), detail["total"].as_u64())
        {
            bar.set_length(total.max(current));
            bar.set_position(current);
        }
        if !message["aux"].is_null() {
            result = Some(message["aux"].clone());
        }
    }
    bar.finish_and_clear();
    match result {
        Some(value) => Ok(value),
        None => bail!("the daemon ended the operation without a result"),
    }
}
