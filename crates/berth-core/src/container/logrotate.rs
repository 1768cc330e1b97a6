//! json-file log rotation, as Docker's json-file driver does it:
//! `--log-opt max-size=10m max-file=3 compress=true`. When a write would
//! take the log past `max-size`, the log becomes `<log>.1` (the older ones
//! move up one number, the oldest beyond `max-file` is deleted; with
//! `max-file=1` the log is emptied instead), and with `compress` the
//! rotated file is gzipped (`<log>.1.gz`). Readers (`docker logs`) read
//! the rotated files oldest first, then the live one.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::volume::filters::parse_go_bool;

/// The rotation of one container's log; `max_size` 0 means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_size: u64,
    pub max_file: u32,
    pub compress: bool,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: 0,
            max_file: 1,
            compress: false,
        }
    }
}

/// Reads `--log-opt`s of the json-file driver with Docker's checks and
/// words; options Docker has and berth does not (attributes) are refused.
pub fn parse_log_opts(opts: &BTreeMap<String, String>) -> Result<Rotation, String> {
    let mut rotation = Rotation::default();
    for (key, value) in opts {
        match key.as_str() {
            "max-size" => rotation.max_size = parse_max_size(value)?,
            "max-file" => rotation.max_file = parse_max_file(value)?,
            "compress" => {
                rotation.compress = parse_go_bool(value).ok_or_else(|| {
                    format!("strconv.ParseBool: parsing {value:?}: invalid syntax")
                })?
            }
            "labels" | "labels-regex" | "env" | "env-regex" | "tag" => {
                return Err(format!(
                    "--log-opt {key} is not supported: log attributes are not implemented yet"
                ))
            }
            other => {
                return Err(format!(
                    "unknown log opt '{other}' for json-file log driver"
                ))
            }
        }
    }
    if rotation.compress && (rotation.max_file < 2 || rotation.max_size == 0) {
        return Err(
            "compress cannot be true when max-file is less than 2 or max-size is not set".into(),
        );
    }
    Ok(rotation)
}

fn parse_max_size(value: &str) -> Result<u64, String> {
    match parse_human_size(value) {
        Some(0) => Err("max-size must be a positive number".into()),
        Some(size) => Ok(size),
        None => Err(format!("invalid size: '{value}'")),
    }
}

fn parse_max_file(value: &str) -> Result<u32, String> {
    let n: i64 = value
        .parse()
        .map_err(|_| format!("strconv.Atoi: parsing {value:?}: invalid syntax"))?;
    if n < 1 {
        return Err("max-file cannot be less than 1".into());
    }
    u32::try_from(n).map_err(|_| format!("max-file {n} is too large"))
}

/// Docker's `units.FromHumanSize`: decimal units (`1k` = 1000, `10m`,
/// `1.5g`, an optional `b`), a plain number is bytes.
pub fn parse_human_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let number: f64 = number.parse().ok()?;
    // go-units: an optional `i` and `b` after the prefix (`1KiB` = 1000).
    let prefix = unit.trim().trim_end_matches('b').trim_end_matches('i');
    let factor: f64 = match prefix {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "p" => 1e15,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `<log>.N`, or `<log>.N.gz` when compressed.
fn numbered(log: &Path, n: u32, gz: bool) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{n}"));
    if gz {
        name.push(".gz");
    }
    PathBuf::from(name)
}

/// Rotates `log` (closed by the caller): the files move up one number, the
/// one past `max_file - 1` is deleted, the log becomes `.1` (gzipped with
/// `compress`); with `max_file` 1 the log is emptied. Only the files that
/// exist are touched, so a huge `max-file` costs nothing.
pub fn rotate(log: &Path, rotation: &Rotation) -> std::io::Result<()> {
    if rotation.max_file <= 1 {
        return std::fs::File::create(log).map(|_| ());
    }
    let last = rotation.max_file - 1;
    let mut rotated = rotated_files(log);
    rotated.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    for (n, file) in rotated {
        if n >= last {
            std::fs::remove_file(&file)?;
        } else {
            std::fs::rename(&file, numbered(log, n + 1, is_gz(&file)))?;
        }
    }
    let first = numbered(log, 1, false);
    std::fs::rename(log, &first)?;
    if rotation.compress {
        gzip_in_place(&first)?;
    }
    Ok(())
}

/// `file` → `file.gz`: written under a temporary name and renamed when
/// whole, then the original removed (a reader that sees both takes the
/// original: [`log_files`]).
fn gzip_in_place(file: &Path) -> std::io::Result<()> {
    let named = |suffix: &str| {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (partial, target) = (named(".gz.tmp"), named(".gz"));
    let mut input = std::fs::File::open(file)?;
    let output = {
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true).mode(0o640);
        options.open(&partial)?
    };
    let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
    std::io::copy(&mut input, &mut encoder)?;
    encoder.finish()?.sync_all()?;
    std::fs::rename(&partial, &target)?;
    std::fs::remove_file(file)
}

/// The log's files, oldest first: rotated ones by descending number,
/// then the live one.
pub fn log_files(log: &Path) -> Vec<PathBuf> {
    let mut rotated = rotated_files(log);
    rotated.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    files.push(log.to_path_buf());
    files
}

/// The rotated files of `log` with their numbers, one per number: while
/// one is being compressed both forms exist, and the plain one is whole.
fn rotated_files(log: &Path) -> Vec<(u32, PathBuf)> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return rotated;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let (number, gz) = match rest.strip_suffix(".gz") {
            Some(number) => (number, true),
            None => (rest, false),
        };
        let Ok(n) = number.parse::<u32>() else {
            continue;
        };
        if gz && rotated.iter().any(|(m, p)| *m == n && !is_gz(p)) {
            continue;
        }
        rotated.retain(|(m, _)| *m != n);
        rotated.push((n, entry.path()));
    }
    rotated
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The rotated files of `log`, oldest first, opened at once; `None` when
/// a rotation moved them while they were being opened (the caller tries
/// again): what is read from the handles is then one consistent set.
pub fn open_rotated(log: &Path) -> std::io::Result<Option<Vec<(std::fs::File, bool)>>> {
    use std::os::unix::fs::MetadataExt;
    let names: Vec<PathBuf> = log_files(log).into_iter().filter(|f| f != log).collect();
    let mut opened = Vec::new();
    for name in &names {
        match std::fs::File::open(name) {
            Ok(file) => opened.push((file, is_gz(name))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    let again: Vec<PathBuf> = log_files(log).into_iter().filter(|f| f != log).collect();
    let same_files = again == names
        && names.iter().zip(&opened).all(|(name, (file, _))| {
            match (std::fs::metadata(name), file.metadata()) {
                (Ok(a), Ok(b)) => a.ino() == b.ino(),
                _ => false,
            }
        });
    Ok(same_files.then_some(opened))
}

/// The bytes of an opened log file, gunzipped when `gz`.
pub fn read_opened(file: std::fs::File, gz: bool) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if gz {
        flate2::read::GzDecoder::new(file).read_to_end(&mut bytes)?;
    } else {
        std::io::BufReader::new(file).read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_parse_with_dockers_units_and_words() {
        let r = parse_log_opts(&opts(&[
            ("max-size", "1m"),
            ("max-file", "3"),
            ("compress", "true"),
        ]));
        assert_eq!(
            r.unwrap(),
            Rotation {
                max_size: 1_000_000,
                max_file: 3,
                compress: true
            }
        );
        assert_eq!(parse_human_size("10k"), Some(10_000));
        assert_eq!(parse_human_size("1.5MB"), Some(1_500_000));
        assert_eq!(parse_human_size("42"), Some(42));
        assert_eq!(parse_human_size("1x"), None);
        let bad = |k: &str, v: &str| parse_log_opts(&opts(&[(k, v)])).unwrap_err();
        assert_eq!(bad("max-file", "0"), "max-file cannot be less than 1");
        assert_eq!(bad("max-size", "0"), "max-size must be a positive number");
        assert_eq!(parse_human_size("1KiB"), Some(1000));
        assert!(parse_log_opts(&opts(&[("max-file", "4294967295"), ("max-size", "1k")])).is_ok());
        let compress = parse_log_opts(&opts(&[("compress", "true"), ("max-size", "1k")]));
        assert!(compress.unwrap_err().starts_with("compress cannot be true"));
        assert_eq!(bad("max-size", "lots"), "invalid size: 'lots'");
        assert_eq!(
            bad("nope", "1"),
            "unknown log opt 'nope' for json-file log driver"
        );
        assert!(bad("compress", "maybe").contains("ParseBool"));
    }

    #[test]
    fn rotation_keeps_max_file_files_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c-json.log");
        let rotation = Rotation {
            max_size: 10,
            max_file: 3,
            compress: true,
        };
        for round in 0..5 {
            std::fs::write(&log, format!("round {round}\n")).unwrap();
            rotate(&log, &rotation).unwrap();
        }
        std::fs::write(&log, "live\n").unwrap();
        let files = log_files(&log);
        assert_eq!(files.len(), 3, "{files:?}");
        let text: Vec<String> = files
            .iter()
            .map(|f| {
                let bytes = read_opened(std::fs::File::open(f).unwrap(), is_gz(f)).unwrap();
                String::from_utf8(bytes).unwrap()
            })
            .collect();
        assert_eq!(text, ["round 3\n", "round 4\n", "live\n"]);
        // While .1 is being compressed both forms exist: read once.
        let plain = numbered(&log, 1, false);
        std::fs::write(&plain, "round 4\n").unwrap();
        assert_eq!(log_files(&log).len(), 3);
        assert!(log_files(&log).contains(&plain));
        std::fs::remove_file(&plain).unwrap();
        let single = Rotation {
            max_file: 1,
            ..rotation
        };
        rotate(&log, &single).unwrap();
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
    }
}
