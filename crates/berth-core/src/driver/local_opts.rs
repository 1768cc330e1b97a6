//! Create options of the `local` driver: `type`, `device`, `o` (and `size`,
//! refused on this host), validated at create exactly as moby's
//! `validateOpts` does, so a bad option is a 400 before anything is stored.

use super::{DriverError, DriverOptions};

/// Options the local driver knows.
const VALID: [&str; 4] = ["type", "device", "o", "size"];

/// For each option, the options it requires (moby's `mandatoryOpts`),
/// checked in this order so the error is deterministic.
const REQUIRES: [(&str, &[&str]); 3] = [
    ("device", &["type"]),
    ("type", &["device"]),
    ("o", &["device", "type"]),
];

/// A filesystem to mount on the volume's `_data` at first use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMount {
    pub fstype: String,
    pub device: String,
    pub options: String,
}

impl LocalMount {
    /// Whether `o` asks for a loop device, and `o` without that option
    /// (the kernel does not know `loop`; mount(8) handles it in user space).
    pub fn without_loop_option(&self) -> (bool, String) {
        let parts: Vec<&str> = self.options.split(',').filter(|o| !o.is_empty()).collect();
        let wants = parts.contains(&"loop");
        let rest: Vec<&str> = parts.into_iter().filter(|o| *o != "loop").collect();
        (wants, rest.join(","))
    }
}

/// Checks `options`, returning the mount they describe (`None` for a plain
/// folder volume).
pub fn parse(options: &DriverOptions) -> Result<Option<LocalMount>, DriverError> {
    if let Some(key) = options.keys().find(|k| !VALID.contains(&k.as_str())) {
        return Err(DriverError::InvalidOption(format!(
            "invalid option: {key:?}"
        )));
    }
    for (opt, required) in REQUIRES {
        if !options.contains_key(opt) {
            continue;
        }
        if let Some(missing) = required.iter().find(|r| !options.contains_key(**r)) {
            return Err(DriverError::InvalidOption(format!(
                "missing required option: {missing:?}"
            )));
        }
    }
    if let Some(size) = options.get("size") {
        return Err(size_unsupported(size));
    }
    Ok(options.get("type").map(|fstype| LocalMount {
        fstype: fstype.clone(),
        device: options.get("device").cloned().unwrap_or_default(),
        options: options.get("o").cloned().unwrap_or_default(),
    }))
}

/// Docker's local driver caps size with XFS project quotas; this kernel has
/// none, so berth says so and names the driver that does cap size.
fn size_unsupported(size: &str) -> DriverError {
    DriverError::InvalidOption(format!(
        "quota size requested but no quota support: the local driver cannot cap a volume's \
         size on this host (no XFS/ext4 project quotas); use the thin driver for a hard size \
         limit: --driver thin --opt size={size}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::test_options as opts;

    #[test]
    fn empty_is_plain_folder() {
        assert_eq!(parse(&opts(&[])).unwrap(), None);
    }

    #[test]
    fn tmpfs_mount_is_parsed() {
        let m = parse(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=1m"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(m.fstype, "tmpfs");
        assert_eq!(m.options, "size=1m");
    }

    #[test]
    fn bad_combinations_are_refused_with_dockers_words() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("foo", "x")], "invalid option: \"foo\""),
            (&[("type", "tmpfs")], "missing required option: \"device\""),
            (&[("device", "/dev/x")], "missing required option: \"type\""),
            (&[("o", "size=1m")], "missing required option: \"device\""),
        ];
        for (given, want) in cases {
            let err = parse(&opts(given)).unwrap_err().to_string();
            assert_eq!(&err, want);
        }
    }

    #[test]
    fn size_points_to_thin_driver() {
        let err = parse(&opts(&[("size", "10G")])).unwrap_err().to_string();
        assert!(err.contains("thin driver"), "{err}");
    }
}
