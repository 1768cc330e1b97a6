//! `--device`, `--device-cgroup-rule` and the host devices of a
//! privileged container (moby `oci/devices_linux.go`, containerd
//! `HostDevices`): device nodes the runtime creates in the container, and
//! the device-cgroup rules that let the container use them.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use super::OptionsError;

/// One `HostConfig.Devices` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    pub path_on_host: String,
    #[serde(default)]
    pub path_in_container: String,
    #[serde(default)]
    pub cgroup_permissions: String,
}

impl DeviceMapping {
    /// Checks the entry at create (the CLI's checks, for API clients too)
    /// and fills Docker's defaults (container path = host path, `rwm`).
    pub fn checked(mut self) -> Result<Self, OptionsError> {
        if self.path_on_host.is_empty() {
            return Err(OptionsError::Invalid("device: empty PathOnHost".into()));
        }
        if self.path_in_container.is_empty() {
            self.path_in_container = self.path_on_host.clone();
        }
        if !self.path_in_container.starts_with('/') {
            return Err(OptionsError::Invalid(format!(
                "{} is not an absolute path",
                self.path_in_container
            )));
        }
        if self.cgroup_permissions.is_empty() {
            self.cgroup_permissions = "rwm".into();
        }
        if !valid_access(&self.cgroup_permissions) {
            return Err(OptionsError::Invalid(format!(
                "bad mode specified: {}",
                self.cgroup_permissions
            )));
        }
        Ok(self)
    }
}

/// `r`, `w`, `m`, each at most once, at least one.
fn valid_access(mode: &str) -> bool {
    !mode.is_empty()
        && mode.len() <= 3
        && mode.chars().all(|c| "rwm".contains(c))
        && mode
            .chars()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == mode.len()
}

/// A device node for the spec's `linux.devices`, with its cgroup rule.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecDevice {
    pub node: Value,
    pub rule: Value,
}

/// The device at `host` (symlinks resolved), or every device below it
/// when it is a folder, placed at `container` (Docker's `DevicesFromPath`).
/// Failing to find any is Docker's start error.
pub fn resolve(mapping: &DeviceMapping) -> Result<Vec<SpecDevice>, OptionsError> {
    let fail = |detail: String| {
        OptionsError::Start(format!(
            "error gathering device information while adding custom device {:?}: {detail}",
            mapping.path_on_host
        ))
    };
    let resolved = std::fs::canonicalize(&mapping.path_on_host).map_err(|e| fail(os_text(&e)))?;
    let access = &mapping.cgroup_permissions;
    if let Some(dev) = device_at(&resolved, &mapping.path_in_container, access) {
        return Ok(vec![dev]);
    }
    if !resolved.is_dir() {
        return Err(fail("not a device node".into()));
    }
    let mut found = Vec::new();
    walk(&resolved, &mut |path| {
        let rel = path.strip_prefix(&resolved).unwrap_or(path);
        let inside = Path::new(&mapping.path_in_container).join(rel);
        if let Some(dev) = device_at(path, &inside.to_string_lossy(), access) {
            found.push(dev);
        }
    });
    if found.is_empty() {
        return Err(fail("not a device node".into()));
    }
    Ok(found)
}

/// Every device node under the host's `/dev` (a privileged container's),
/// skipping what containerd skips.
pub fn host_devices() -> Vec<SpecDevice> {
    const SKIP_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
    let mut found = Vec::new();
    walk_filtered(Path::new("/dev"), &SKIP_DIRS, &mut |path| {
        if path.file_name().is_some_and(|n| n == "console") {
            return;
        }
        if let Some(dev) = device_at(path, &path.to_string_lossy(), "rwm") {
            if dev.node["type"] != "p" {
                found.push(dev);
            }
        }
    });
    found
}

/// The device node at `path` (not following a symlink), if it is one.
fn device_at(path: &Path, inside: &str, access: &str) -> Option<SpecDevice> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let kind = if meta.file_type().is_block_device() {
        "b"
    } else if meta.file_type().is_char_device() {
        "c"
    } else if meta.file_type().is_fifo() {
        "p"
    } else {
        return None;
    };
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    Some(SpecDevice {
        node: json!({
            "path": inside, "type": kind, "major": major, "minor": minor,
            "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid(),
        }),
        rule: json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": access}),
    })
}

fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    walk_filtered(dir, &[], visit)
}

/// Visits every entry below `dir` without following symlinks, skipping
/// folders named in `skip` (errors are skipped too, as Docker does).
fn walk_filtered(dir: &Path, skip: &[&str], visit: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                let name = entry.file_name();
                if !skip.iter().any(|s| name == *s) {
                    walk_filtered(&path, skip, visit);
                }
            }
            Ok(_) => visit(&path),
            Err(_) => {}
        }
    }
}

/// An I/O error as Go prints it (`no such file or directory`).
fn os_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

/// A `--device-cgroup-rule` (`c 1:3 rwm`, `b *:* m`) as a spec rule.
pub fn parse_cgroup_rule(rule: &str) -> Result<Value, OptionsError> {
    let bad = || OptionsError::Invalid(format!("invalid device cgroup rule format: '{rule}'"));
    let parts: Vec<&str> = rule.split(' ').collect();
    let [kind, numbers, access] = parts.as_slice() else {
        return Err(bad());
    };
    if !["a", "b", "c"].contains(kind) || !valid_access(access) {
        return Err(bad());
    }
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |s: &str| -> Result<i64, OptionsError> {
        if s == "*" {
            Ok(-1)
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (major, minor) = (number(major)?, number(minor)?);
    Ok(json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": access}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host: &str, inside: &str, perms: &str) -> DeviceMapping {
        DeviceMapping {
            path_on_host: host.into(),
            path_in_container: inside.into(),
            cgroup_permissions: perms.into(),
        }
    }

    #[test]
    fn mappings_get_dockers_defaults_and_checks() {
        let m = mapping("/dev/null", "", "").checked().unwrap();
        assert_eq!(
            (m.path_in_container.as_str(), m.cgroup_permissions.as_str()),
            ("/dev/null", "rwm")
        );
        assert!(mapping("/dev/null", "rel", "").checked().is_err());
        assert!(mapping("/dev/null", "/x", "rwx").checked().is_err());
        assert!(mapping("/dev/null", "/x", "rr").checked().is_err());
        assert!(mapping("", "/x", "r").checked().is_err());
    }

    #[test]
    fn devices_resolve_with_numbers_and_rules() {
        let devs = resolve(&mapping("/dev/null", "/dev/mynull", "rw")).unwrap();
        assert_eq!(devs[0].node["path"], "/dev/mynull");
        assert_eq!(
            (
                devs[0].node["major"].as_u64(),
                devs[0].node["minor"].as_u64()
            ),
            (Some(1), Some(3))
        );
        assert_eq!(devs[0].rule["access"], "rw");
        let err = resolve(&mapping("/dev/nope-berth", "/dev/x", "rwm")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error gathering device information while adding custom device \"/dev/nope-berth\": no such file or directory"
        );
        let err = resolve(&mapping("/etc/hostname", "/x", "rwm")).unwrap_err();
        assert!(err.to_string().ends_with("not a device node"), "{err}");
    }

    #[test]
    fn host_devices_include_null_but_not_pts() {
        let devs = host_devices();
        assert!(devs.iter().any(|d| d.node["path"] == "/dev/null"));
        assert!(!devs
            .iter()
            .any(|d| d.node["path"].as_str().unwrap().starts_with("/dev/pts/")));
    }

    #[test]
    fn cgroup_rules_parse_like_dockers() {
        assert_eq!(parse_cgroup_rule("c 1:3 rwm").unwrap()["minor"], 3);
        assert_eq!(parse_cgroup_rule("b *:* m").unwrap()["major"], -1);
        assert_eq!(parse_cgroup_rule("a *:* rwm").unwrap()["type"], "a");
        for bad in ["a", "c 1:3", "x 1:3 r", "c 1-3 r", "c 1:3 rwx", "c :3 r"] {
            assert!(parse_cgroup_rule(bad).is_err(), "{bad}");
        }
    }
}
