//! The json-file log format Docker uses: one JSON object per line,
//! `{"log":"…","stream":"stdout","time":"<RFC 3339, nanoseconds trimmed>"}`.
//! The shim writes it; the daemon reads it for `logs` and `attach`.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    #[serde(default)]
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

/// Go's `time.RFC3339Nano` of now in UTC: nanoseconds with trailing zeros
/// trimmed.
pub fn now_rfc3339_nano() -> String {
    format_rfc3339_nano(chrono::Utc::now())
}

/// Go's `time.RFC3339Nano` for a UTC time.
pub fn format_rfc3339_nano(t: chrono::DateTime<chrono::Utc>) -> String {
    let nanos = t.timestamp_subsec_nanos();
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

/// Appends entries to a json-file log.
pub struct LogWriter {
    file: File,
}

impl LogWriter {
    /// Opens (creating, mode 0640) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        Ok(LogWriter { file })
    }

    /// Writes one entry (one line of output, newline included if it had one).
    pub fn write(&mut self, stream: Stream, text: &[u8]) -> std::io::Result<()> {
        let entry = LogEntry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream,
            time: now_rfc3339_nano(),
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }
}

/// Reads a json-file log incrementally from a byte offset.
pub struct LogReader {
    reader: Option<BufReader<File>>,
    path: std::path::PathBuf,
    offset: u64,
}

impl LogReader {
    /// A reader starting at the beginning (`from_end` = false) or at the
    /// current end of the file. A missing file reads as empty until it
    /// appears.
    pub fn open(path: &Path, from_end: bool) -> Self {
        let offset = if from_end {
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        } else {
            0
        };
        LogReader {
            reader: None,
            path: path.to_path_buf(),
            offset,
        }
    }

    /// Every complete entry written since the last call.
    pub fn read_new(&mut self) -> std::io::Result<Vec<LogEntry>> {
        if self.reader.is_none() {
            match File::open(&self.path) {
                Ok(mut f) => {
                    f.seek(SeekFrom::Start(self.offset))?;
                    self.reader = Some(BufReader::new(f));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        let reader = self.reader.as_mut().expect("opened above");
        let mut out = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            if !line.ends_with('\n') {
                // A line still being written: read it again next time.
                reader.seek(SeekFrom::Current(-(n as i64)))?;
                break;
            }
            self.offset += n as u64;
            if let Ok(entry) = serde_json::from_str::<LogEntry>(&line) {
                out.push(entry);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_incremental_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut reader = LogReader::open(&path, false);
        assert!(reader.read_new().unwrap().is_empty());
        let mut writer = LogWriter::open(&path).unwrap();
        writer.write(Stream::Stdout, b"hi\n").unwrap();
        writer.write(Stream::Stderr, b"oops").unwrap();
        let got = reader.read_new().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].log, "hi\n");
        assert_eq!(got[1].stream, Stream::Stderr);
        assert!(reader.read_new().unwrap().is_empty());
        writer.write(Stream::Stdout, b"more\n").unwrap();
        assert_eq!(reader.read_new().unwrap()[0].log, "more\n");
        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(
            raw.starts_with(r#"{"log":"hi\n","stream":"stdout","time":""#),
            "{raw}"
        );
    }

    #[test]
    fn times_trim_trailing_zeros() {
        use chrono::TimeZone;
        let t = chrono::Utc
            .timestamp_opt(1_700_000_000, 120_000_000)
            .unwrap();
        assert_eq!(format_rfc3339_nano(t), "2023-11-14T22:13:20.12Z");
        let whole = chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        assert_eq!(format_rfc3339_nano(whole), "2023-11-14T22:13:20Z");
    }
}
