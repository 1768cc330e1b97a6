//! Create options of the `thin` driver: `size` (required unless the daemon
//! has a default), `fs` (ext4 or xfs), `uid`, `gid`, `mode` of the root
//! folder. Checked at create, before anything is stored.

use crate::driver::{DriverError, DriverOptions};
use crate::sys::units::parse_size;

/// Smallest volume: enough for a filesystem's own metadata.
pub const MIN_SIZE: u64 = 16 << 20;

/// A thin volume's parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinOptions {
    pub size: u64,
    pub fs: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: Option<u32>,
}

fn invalid(msg: String) -> DriverError {
    DriverError::InvalidOption(msg)
}

/// Parses and checks `options`; `default_size` applies when `size` is absent.
pub fn parse(
    options: &DriverOptions,
    default_size: Option<u64>,
) -> Result<ThinOptions, DriverError> {
    const KNOWN: [&str; 5] = ["size", "fs", "uid", "gid", "mode"];
    if let Some(key) = options.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(format!(
            "invalid option: {key:?} (the thin driver takes size, fs, uid, gid, mode)"
        )));
    }
    let size = match options.get("size") {
        Some(s) => parse_size(s)
            .ok_or_else(|| invalid(format!("invalid size: {s:?} (use a size such as 10G)")))?,
        None => default_size
            .ok_or_else(|| invalid("the thin driver needs a size: -o size=10G".into()))?,
    };
    if size < MIN_SIZE {
        return Err(invalid(format!(
            "size {size} is too small: a thin volume needs at least 16M"
        )));
    }
    let fs = options.get("fs").cloned().unwrap_or_else(|| "ext4".into());
    if fs != "ext4" && fs != "xfs" {
        return Err(invalid(format!("invalid fs: {fs:?} (ext4 or xfs)")));
    }
    let number = |key: &str| -> Result<u32, DriverError> {
        options.get(key).map_or(Ok(0), |v| {
            v.parse()
                .map_err(|_| invalid(format!("invalid {key}: {v:?}")))
        })
    };
    let mode = options
        .get("mode")
        .map(|m| {
            u32::from_str_radix(m, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| invalid(format!("invalid mode: {m:?} (octal, e.g. 0755)")))
        })
        .transpose()?;
    Ok(ThinOptions {
        size,
        fs,
        uid: number("uid")?,
        gid: number("gid")?,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::test_options as opts;

    #[test]
    fn options_parse_and_refuse() {
        let o = parse(
            &opts(&[("size", "1G"), ("uid", "1000"), ("mode", "0750")]),
            None,
        )
        .unwrap();
        assert_eq!(
            (o.size, o.fs.as_str(), o.uid, o.mode),
            (1 << 30, "ext4", 1000, Some(0o750))
        );
        assert_eq!(parse(&opts(&[]), Some(1 << 30)).unwrap().size, 1 << 30);
        for bad in [
            vec![],
            vec![("size", "1X")],
            vec![("size", "1M")],
            vec![("size", "1G"), ("fs", "ntfs")],
            vec![("size", "1G"), ("colour", "x")],
            vec![("size", "1G"), ("mode", "999")],
        ] {
            assert!(parse(&opts(&bad), None).is_err(), "{bad:?}");
        }
    }
}
