//! Reading Docker's multiplexed stream (8-byte frame headers) into the
//! CLI's stdout and stderr.

use std::io::Write;

use anyhow::{bail, Result};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Copies frames from `input` to stdout (stream 1) and stderr (stream 2)
/// until EOF.
pub async fn demux<R: AsyncRead + Unpin>(mut input: R) -> Result<()> {
    let mut header = [0u8; 8];
    loop {
        match input.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut payload = vec![0u8; len];
        input.read_exact(&mut payload).await?;
        match header[0] {
            0 | 1 => {
                let mut out = std::io::stdout().lock();
                out.write_all(&payload)?;
                out.flush()?;
            }
            2 => {
                let mut err = std::io::stderr().lock();
                err.write_all(&payload)?;
                err.flush()?;
            }
            3 => bail!(
                "error from daemon in stream: {}",
                String::from_utf8_lossy(&payload)
            ),
            other => bail!("Unrecognized input header: {other}"),
        }
    }
}

/// A response body as an `AsyncRead`.
pub fn body_reader(body: hyper::body::Incoming) -> impl AsyncRead + Unpin {
    use futures_util::TryStreamExt;
    use http_body_util::BodyExt;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    tokio_util::io::StreamReader::new(stream)
}
