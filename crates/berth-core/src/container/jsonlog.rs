//! The json-file log format Docker uses: one JSON object per line,
//! `{"log":"…","stream":"stdout","time":"<RFC 3339, nanoseconds trimmed>"}`.
//! The shim writes it; the daemon reads it for `logs` and `attach`.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::logrotate::Rotation;

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

/// Whether `entry` comes after the entry of time `last` (entry times only
/// grow, see [`LogWriter`]; anything else was returned already).
fn is_after(last: Option<&str>, entry: &LogEntry) -> bool {
    match (last.and_then(parse_time), parse_time(&entry.time)) {
        (Some(last), Some(t)) => t > last,
        _ => true,
    }
}

fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text).ok()
}

/// Appends entries to a json-file log, rotating it as asked.
pub struct LogWriter {
    path: std::path::PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
    /// The last entry's time: entries get strictly increasing times, so a
    /// reader can tell the entries after a given one by time alone.
    last: Option<chrono::DateTime<chrono::Utc>>,
}

impl LogWriter {
    /// Opens (creating, mode 0640) `path` for appending, without rotation.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_rotating(path, Rotation::default())
    }

    /// Opens `path` for appending; writes rotate it by `rotation`.
    pub fn open_rotating(path: &Path, rotation: Rotation) -> std::io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
            last: None,
        })
    }

    /// Writes one entry (one line of output, newline included if it had
    /// one), rotating first when it would take the log past `max-size`.
    pub fn write(&mut self, stream: Stream, text: &[u8]) -> std::io::Result<()> {
        let mut now = chrono::Utc::now();
        if let Some(last) = self.last.filter(|last| now <= *last) {
            now = last + chrono::Duration::nanoseconds(1);
        }
        self.last = Some(now);
        let entry = LogEntry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream,
            time: format_rfc3339_nano(now),
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        let max = self.rotation.max_size;
        if max > 0 && self.size > 0 && self.size + line.len() as u64 > max {
            super::logrotate::rotate(&self.path, &self.rotation)?;
            self.file = open_append(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Every entry of a log, rotated files first (oldest first, gzipped ones
/// unpacked), then the live one; lines cut short are skipped.
pub fn read_all(path: &Path) -> std::io::Result<Vec<LogEntry>> {
    read_all_then_follow(path).map(|(entries, _)| entries)
}

/// [`read_all`], and a reader positioned right after the last entry read
/// from the live log, so following it loses and repeats nothing.
pub fn read_all_then_follow(path: &Path) -> std::io::Result<(Vec<LogEntry>, LogReader)> {
    // The live log is opened first and the rotated files after it: a
    // rotation in between shows as a changed set, and the set is read again.
    for _ in 0..20 {
        let mut live = LogReader::open(path, false);
        live.open_file()?;
        let Some(rotated) = super::logrotate::open_rotated(path)? else {
            continue;
        };
        if live.rotated_away() {
            continue;
        }
        let mut out = Vec::new();
        for (file, gz) in rotated {
            out.extend(parse_lines(&super::logrotate::read_opened(file, gz)?));
        }
        // Before the live log is read: if it rotates while it is read, its
        // catch-up must go on after the rotated entries already in `out`,
        // not from the first entry of every file (seen: 11 entries sent
        // twice by `logs -f` through 1 KiB rotations).
        if let Some(last) = out.last() {
            live.last_time = Some(last.time.clone());
        }
        out.extend(live.read_new()?);
        // The live log may have had nothing new: the reader must still go
        // on after the last rotated entry, or a later catch-up repeats them.
        if let Some(last) = out.last() {
            live.last_time = Some(last.time.clone());
        }
        return Ok((out, live));
    }
    Err(std::io::Error::other(
        "the log kept rotating while it was read",
    ))
}

/// The complete entries of a log file's bytes.
fn parse_lines(bytes: &[u8]) -> Vec<LogEntry> {
    String::from_utf8_lossy(bytes)
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .filter_map(|line| serde_json::from_str::<LogEntry>(line).ok())
        .collect()
}

/// Reads a json-file log incrementally from a byte offset, following it
/// across rotations.
pub struct LogReader {
    reader: Option<BufReader<File>>,
    path: std::path::PathBuf,
    offset: u64,
    /// Time of the last entry returned (or of opening, from the end): a
    /// follower that falls behind by more than one rotation goes on from
    /// the first entry after it, in whichever file that now is.
    last_time: Option<String>,
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
            last_time: from_end.then(now_rfc3339_nano),
        }
    }

    /// After a rotation: every entry newer than the last one returned, from
    /// all the log's files; then this reader follows the live log on from
    /// its end.
    fn catch_up_after_rotation(&mut self) -> std::io::Result<Vec<LogEntry>> {
        let (all, live) = read_all_then_follow(&self.path)?;
        let newer: Vec<LogEntry> = all
            .into_iter()
            .filter(|e| is_after(self.last_time.as_deref(), e))
            .collect();
        let last_time = newer
            .last()
            .map(|e| e.time.clone())
            .or(self.last_time.take());
        *self = live;
        self.last_time = last_time;
        Ok(newer)
    }

    /// Whether the live log is no longer the file being read (it was
    /// rotated: renamed away, or emptied with `max-file=1`).
    fn rotated_away(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(reader) = &self.reader else {
            return false;
        };
        let (Ok(open), Ok(live)) = (reader.get_ref().metadata(), std::fs::metadata(&self.path))
        else {
            return false;
        };
        open.ino() != live.ino() || open.dev() != live.dev() || live.len() < self.offset
    }

    /// Opens the live log (a missing one stays closed, read as empty).
    fn open_file(&mut self) -> std::io::Result<()> {
        if self.reader.is_some() {
            return Ok(());
        }
        match File::open(&self.path) {
            Ok(mut f) => {
                f.seek(SeekFrom::Start(self.offset))?;
                self.reader = Some(BufReader::new(f));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every complete entry written since the last call.
    pub fn read_new(&mut self) -> std::io::Result<Vec<LogEntry>> {
        let had_file = self.reader.is_some();
        self.open_file()?;
        if !had_file && self.reader.is_some() && self.last_time.is_some() {
            // The live log appeared since the last call (it was missing
            // mid-rotation, or not made yet): it may have rotated meanwhile.
            return self.catch_up_after_rotation();
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                if self.rotated_away() {
                    // Read to its end: go on from the first entry after the
                    // last one returned, in the rotated files or the live
                    // log (on an error, the next call tries again).
                    if let Ok(newer) = self.catch_up_after_rotation() {
                        out.extend(newer);
                    }
                }
                break;
            }
            if !line.ends_with('\n') {
                // A line still being written: read it again next time.
                reader.seek(SeekFrom::Current(-(n as i64)))?;
                break;
            }
            self.offset += n as u64;
            if let Ok(entry) = serde_json::from_str::<LogEntry>(&line) {
                if is_after(self.last_time.as_deref(), &entry) {
                    self.last_time = Some(entry.time.clone());
                    out.push(entry);
                }
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
    fn following_from_a_just_rotated_log_loses_and_repeats_nothing() {
        use super::super::logrotate::{rotate, Rotation};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let rotation = Rotation {
            max_size: 200,
            max_file: 50,
            compress: false,
        };
        let number = |e: &LogEntry| e.log.trim().parse::<usize>().unwrap();
        let mut writer = LogWriter::open(&path).unwrap();
        for n in 0..5 {
            writer
                .write(Stream::Stdout, format!("{n}\n").as_bytes())
                .unwrap();
        }
        // Rotated, the new live log not yet made: the history is all
        // rotated, and the follower has no live file yet.
        rotate(&path, &rotation).unwrap();
        let (history, mut reader) = read_all_then_follow(&path).unwrap();
        let mut seen: Vec<usize> = history.iter().map(number).collect();
        let mut writer = LogWriter::open_rotating(&path, rotation).unwrap();
        for n in 5..45 {
            writer
                .write(Stream::Stdout, format!("{n}\n").as_bytes())
                .unwrap();
        }
        assert!(super::super::logrotate::log_files(&path).len() > 3);
        for _ in 0..3 {
            seen.extend(reader.read_new().unwrap().iter().map(number));
        }
        assert_eq!(seen, (0..45).collect::<Vec<_>>());
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
