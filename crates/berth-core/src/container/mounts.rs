//! Mount requests: `-v`/`Binds` (`name:/dst[:opts]`, `/dst` anonymous,
//! `/host:/dst[:opts]`) and `--mount`/`HostConfig.Mounts` (`type=volume|
//! bind|tmpfs` with their options), both parsed into one [`MountSpec`],
//! with Docker's checks and messages.

use std::collections::BTreeMap;

use serde_json::Value;

use super::model::Recursion;
use super::ContainerError;

/// Where a mount's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BindSource {
    /// A host path.
    Host(String),
    /// A named volume.
    Volume(String),
    /// A new anonymous volume.
    #[default]
    Anonymous,
    /// A fresh tmpfs.
    Tmpfs,
}

/// One requested mount.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindSpec {
    pub source: BindSource,
    pub destination: String,
    pub readonly: bool,
    pub nocopy: bool,
    /// The mode string as given (shown as `Mode` by inspect).
    pub mode: String,
    /// `-v /host:…` makes a missing host folder; `--mount type=bind`
    /// refuses one.
    pub create_host_path: bool,
    /// Volume driver and its options, labels for a volume created here.
    pub volume_driver: Option<String>,
    pub volume_options: BTreeMap<String, String>,
    pub volume_labels: BTreeMap<String, String>,
    /// A folder inside the volume to mount instead of its root.
    pub subpath: Option<String>,
    /// tmpfs mount options (`size=…`, `mode=…`).
    pub tmpfs_options: Vec<String>,
    pub propagation: String,
    pub recursion: Recursion,
}

const MODES: [&str; 15] = [
    "ro",
    "rw",
    "ro-non-recursive",
    "ro-force-recursive",
    "rro",
    "nocopy",
    "z",
    "Z",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "delegated",
];

/// Parses one `-v` entry.
pub fn parse_bind(spec: &str) -> Result<BindSpec, ContainerError> {
    let invalid = |why: &str| {
        ContainerError::InvalidConfig(format!("invalid volume specification: '{spec}': {why}"))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, mode) = match parts.as_slice() {
        [dst] => (BindSource::Anonymous, *dst, ""),
        [src, dst] => (source_of(src), *dst, ""),
        [src, dst, mode] => (source_of(src), *dst, *mode),
        _ => return Err(invalid("too many colons")),
    };
    if !destination.starts_with('/') {
        return Err(invalid(
            "invalid mount config: the mount destination must be an absolute path",
        ));
    }
    if destination == "/" {
        return Err(invalid("invalid mount config: the destination cannot be /"));
    }
    let flags: Vec<&str> = mode.split(',').filter(|m| !m.is_empty()).collect();
    if let Some(bad) = flags.iter().find(|f| !MODES.contains(f)) {
        return Err(invalid(&format!("invalid mode: {bad}")));
    }
    if flags.contains(&"ro") && flags.contains(&"rw") {
        return Err(invalid("invalid mode: ro and rw together"));
    }
    if let BindSource::Volume(name) = &source {
        crate::volume::names::validate_name(name).map_err(|e| invalid(&e.to_string()))?;
    }
    let recursion = Recursion {
        non_recursive: false,
        readonly_non_recursive: flags.contains(&"ro-non-recursive"),
        readonly_force_recursive: flags.contains(&"ro-force-recursive") || flags.contains(&"rro"),
    };
    if recursion != Recursion::default() && !matches!(source, BindSource::Host(_)) {
        return Err(invalid(&format!(
            "mount mode {mode:?} requires a bind mount"
        )));
    }
    if flags.iter().filter(|f| PROPAGATIONS.contains(f)).count() > 1 {
        return Err(invalid(&format!("invalid mode: {mode}")));
    }
    let spec = BindSpec {
        create_host_path: matches!(source, BindSource::Host(_)),
        propagation: propagation_of(&flags).unwrap_or("rprivate").to_string(),
        source,
        destination: clean(destination),
        // `rro` and the `ro-…` modes are read-only modes themselves.
        readonly: flags.contains(&"ro") || recursion != Recursion::default(),
        nocopy: flags.contains(&"nocopy"),
        mode: mode.to_string(),
        recursion,
        ..Default::default()
    };
    check_recursion(&spec).map_err(|e| invalid(&e.to_string()))?;
    Ok(spec)
}

/// The propagation mode among `-v` flags (the last one given).
fn propagation_of<'a>(flags: &[&'a str]) -> Option<&'a str> {
    flags
        .iter()
        .rev()
        .copied()
        .find(|f| PROPAGATIONS.contains(f))
}

/// Linux mount propagation modes.
const PROPAGATIONS: [&str; 6] = [
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];

fn mount_error(kind: &str, why: &str) -> ContainerError {
    ContainerError::InvalidConfig(format!("invalid mount config for type \"{kind}\": {why}"))
}

fn absolute(kind: &str, path: &str) -> Result<(), ContainerError> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(mount_error(
            kind,
            &format!("invalid mount path: '{path}' mount path must be absolute"),
        ))
    }
}

/// Parses one `HostConfig.Mounts` entry (Docker's `Mount` object).
pub fn parse_api_mount(m: &Value) -> Result<BindSpec, ContainerError> {
    let kind = m["Type"].as_str().unwrap_or_default();
    let target = m["Target"].as_str().unwrap_or_default();
    let source = m["Source"].as_str().unwrap_or_default();
    check_target(kind, target)?;
    let mut spec = BindSpec {
        destination: clean(target),
        readonly: m["ReadOnly"].as_bool().unwrap_or(false),
        ..Default::default()
    };
    match kind {
        "bind" => {
            forbid_fields(m, kind, &["VolumeOptions", "TmpfsOptions"])?;
            bind_options(&mut spec, source, &m["BindOptions"])?;
        }
        "volume" => {
            forbid_fields(m, kind, &["BindOptions", "TmpfsOptions"])?;
            volume_options(&mut spec, source, &m["VolumeOptions"])?;
        }
        "tmpfs" => {
            forbid_fields(m, kind, &["BindOptions", "VolumeOptions"])?;
            if !source.is_empty() {
                return Err(mount_error(kind, "field Source must not be specified"));
            }
            spec.source = BindSource::Tmpfs;
            spec.tmpfs_options = tmpfs_options(&m["TmpfsOptions"]);
        }
        _ => return Err(mount_error(kind, "mount type unknown")),
    }
    spec.mode = if spec.readonly {
        "ro".into()
    } else {
        String::new()
    };
    Ok(spec)
}

/// Docker checks the target before the type, so even an unknown type
/// with a bad target reports the target.
fn check_target(kind: &str, target: &str) -> Result<(), ContainerError> {
    if target.is_empty() {
        return Err(mount_error(kind, "field Target must not be empty"));
    }
    absolute(kind, target)
}

/// Refuses the option objects of the other mount types, in the order
/// given (the first one present is the one reported).
fn forbid_fields(m: &Value, kind: &str, fields: &[&str]) -> Result<(), ContainerError> {
    match fields
        .iter()
        .find(|field| m.get(**field).is_some_and(|v| !v.is_null()))
    {
        Some(field) => Err(mount_error(
            kind,
            &format!("field {field} must not be specified"),
        )),
        None => Ok(()),
    }
}

/// `type=bind`: an absolute host path that must already exist (unlike
/// `-v`), with its propagation (default `rprivate`).
fn bind_options(spec: &mut BindSpec, source: &str, opts: &Value) -> Result<(), ContainerError> {
    if source.is_empty() {
        return Err(mount_error("bind", "field Source must not be empty"));
    }
    absolute("bind", source)?;
    if !std::path::Path::new(source).exists() {
        return Err(mount_error(
            "bind",
            &format!("bind source path does not exist: {source}"),
        ));
    }
    spec.source = BindSource::Host(clean(source));
    spec.propagation = match opts["Propagation"].as_str().unwrap_or_default() {
        "" => "rprivate".to_string(),
        p if PROPAGATIONS.contains(&p) => p.to_string(),
        p => {
            return Err(mount_error(
                "bind",
                &format!("invalid propagation mode: {p}"),
            ))
        }
    };
    let flag = |name: &str| opts[name].as_bool().unwrap_or(false);
    spec.recursion = Recursion {
        non_recursive: flag("NonRecursive"),
        readonly_non_recursive: flag("ReadOnlyNonRecursive"),
        readonly_force_recursive: flag("ReadOnlyForceRecursive"),
    };
    check_recursion(spec)
}

/// Docker's rules for the read-only recursion flags.
fn check_recursion(spec: &BindSpec) -> Result<(), ContainerError> {
    let r = spec.recursion;
    let fail = |why: &str| Err(mount_error("bind", why));
    if r.readonly_non_recursive && !spec.readonly {
        return fail("must also set ReadOnly when ReadOnlyNonRecursive is true");
    }
    if r.readonly_force_recursive && !spec.readonly {
        return fail("must also set ReadOnly when ReadOnlyForceRecursive is true");
    }
    if r.readonly_non_recursive && r.readonly_force_recursive {
        return fail("cannot set both ReadOnlyNonRecursive and ReadOnlyForceRecursive");
    }
    if r.readonly_force_recursive && spec.propagation != "rprivate" {
        return fail("ReadOnlyForceRecursive requires Propagation to be rprivate");
    }
    Ok(())
}

fn volume_options(spec: &mut BindSpec, source: &str, opts: &Value) -> Result<(), ContainerError> {
    spec.source = if source.is_empty() {
        BindSource::Anonymous
    } else {
        crate::volume::names::validate_name(source)
            .map_err(|e| mount_error("volume", &e.to_string()))?;
        BindSource::Volume(source.to_string())
    };
    spec.nocopy = opts["NoCopy"].as_bool().unwrap_or(false);
    let pairs = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    spec.volume_labels = pairs(&opts["Labels"]);
    spec.volume_driver = opts["DriverConfig"]["Name"]
        .as_str()
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    spec.volume_options = pairs(&opts["DriverConfig"]["Options"]);
    if let Some(sub) = opts["Subpath"].as_str().filter(|s| !s.is_empty()) {
        if spec.source == BindSource::Anonymous {
            return Err(mount_error(
                "volume",
                "subpath is not allowed on an anonymous volume",
            ));
        }
        spec.subpath = Some(sub.to_string());
    }
    Ok(())
}

/// One `HostConfig.Tmpfs` entry (`--tmpfs /run:rw,size=64m`): a tmpfs at
/// `target` with Docker's defaults (`noexec,nosuid,nodev`) and the given
/// options merged over them (moby's `MergeTmpfsOptions`).
pub fn parse_tmpfs_entry(target: &str, data: &str) -> Result<BindSpec, ContainerError> {
    check_target("tmpfs", target)?;
    let mut options: Vec<String> = ["noexec", "nosuid", "nodev"].map(String::from).to_vec();
    options.extend(
        data.split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string),
    );
    let merged = merge_tmpfs_options(&options).map_err(ContainerError::InvalidConfig)?;
    let readonly = merged.iter().any(|o| o == "ro");
    Ok(BindSpec {
        destination: clean(target),
        source: BindSource::Tmpfs,
        tmpfs_options: merged
            .into_iter()
            .filter(|o| o != "ro" && o != "rw")
            .collect(),
        readonly,
        mode: if readonly { "ro".into() } else { String::new() },
        ..Default::default()
    })
}

/// Flag options of a mount, by what they set (a later one wins over an
/// earlier one of the same key); propagation modes share one key.
const MOUNT_FLAGS: &[(&str, &str)] = &[
    ("ro", "rdonly"),
    ("rw", "rdonly"),
    ("nosuid", "nosuid"),
    ("suid", "nosuid"),
    ("nodev", "nodev"),
    ("dev", "nodev"),
    ("noexec", "noexec"),
    ("exec", "noexec"),
    ("sync", "sync"),
    ("async", "sync"),
    ("dirsync", "dirsync"),
    ("mand", "mand"),
    ("nomand", "mand"),
    ("noatime", "noatime"),
    ("atime", "noatime"),
    ("nodiratime", "nodiratime"),
    ("diratime", "nodiratime"),
    ("relatime", "relatime"),
    ("norelatime", "relatime"),
    ("strictatime", "strictatime"),
    ("nostrictatime", "strictatime"),
    ("private", "propagation"),
    ("rprivate", "propagation"),
    ("shared", "propagation"),
    ("rshared", "propagation"),
    ("slave", "propagation"),
    ("rslave", "propagation"),
    ("unbindable", "propagation"),
    ("runbindable", "propagation"),
];

/// The data options a tmpfs takes.
const TMPFS_DATA: &[&str] = &[
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

/// moby's `MergeTmpfsOptions`: later options win over earlier ones of the
/// same kind; an unknown option is refused.
pub fn merge_tmpfs_options(options: &[String]) -> Result<Vec<String>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for option in options.iter().rev() {
        if option == "defaults" {
            continue;
        }
        let key = match MOUNT_FLAGS.iter().find(|(name, _)| name == option) {
            Some((_, key)) => key.to_string(),
            None => {
                let name = option.split('=').next().unwrap_or_default();
                if !option.contains('=') || !TMPFS_DATA.contains(&name) {
                    return Err(format!("invalid tmpfs option {name:?}"));
                }
                format!("data:{name}")
            }
        };
        if seen.insert(key) {
            out.insert(0, option.clone());
        }
    }
    Ok(out)
}

/// Docker's tmpfs defaults (`nosuid,nodev,noexec`) with size and mode.
fn tmpfs_options(opts: &Value) -> Vec<String> {
    let mut out = vec![
        "nosuid".to_string(),
        "nodev".to_string(),
        "noexec".to_string(),
    ];
    if let Some(size) = opts["SizeBytes"].as_i64().filter(|s| *s > 0) {
        out.push(format!("size={size}"));
    }
    if let Some(mode) = opts["Mode"].as_u64().filter(|m| *m > 0) {
        out.push(format!("mode={mode:o}"));
    }
    out
}

fn source_of(src: &str) -> BindSource {
    if src.starts_with('/') {
        BindSource::Host(clean(src))
    } else {
        BindSource::Volume(src.to_string())
    }
}

/// Lexically cleans an absolute path (`//a/./b/` → `/a/b`).
pub fn clean(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_options_merge_like_moby() {
        let o =
            |v: &[&str]| merge_tmpfs_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            o(&["noexec", "nosuid", "nodev", "exec", "size=1m", "size=2m"]).unwrap(),
            vec!["nosuid", "nodev", "exec", "size=2m"]
        );
        assert_eq!(o(&["bogus"]).unwrap_err(), "invalid tmpfs option \"bogus\"");
        let t = parse_tmpfs_entry("/run", "ro,size=64m").unwrap();
        assert!(t.readonly);
        assert_eq!(
            t.tmpfs_options,
            vec!["noexec", "nosuid", "nodev", "size=64m"]
        );
        assert!(parse_tmpfs_entry("run", "").is_err());
    }

    #[test]
    fn bind_modes_set_recursion_and_propagation() {
        let rro = parse_bind("/h:/c:rro").unwrap();
        assert!(rro.readonly && rro.recursion.readonly_force_recursive);
        assert_eq!(rro.propagation, "rprivate");
        let top = parse_bind("/h:/c:ro-non-recursive").unwrap();
        assert!(top.readonly && top.recursion.readonly_non_recursive);
        let slave = parse_bind("/h:/c:ro,rslave").unwrap();
        assert!(slave.readonly && slave.recursion == Recursion::default());
        assert_eq!(slave.propagation, "rslave");
        assert!(parse_bind("/h:/c:shared,slave").is_err());
        assert!(parse_bind("vol:/c:rro").is_err());
        // Forced recursion needs private propagation.
        assert!(parse_bind("/h:/c:rro,rshared").is_err());
    }

    #[test]
    fn forms_are_understood() {
        let anon = parse_bind("/data").unwrap();
        assert_eq!(anon.source, BindSource::Anonymous);
        let named = parse_bind("db:/var/lib/db:ro").unwrap();
        assert_eq!(named.source, BindSource::Volume("db".into()));
        assert!(named.readonly);
        let host = parse_bind("/srv//x/:/x:rw,z").unwrap();
        assert_eq!(host.source, BindSource::Host("/srv/x".into()));
        assert!(!host.readonly);
        assert!(parse_bind("db:/x:nocopy").unwrap().nocopy);
    }

    #[test]
    fn api_mounts_are_understood() {
        let v = parse_api_mount(&serde_json::json!({
            "Type": "volume", "Source": "data", "Target": "/d", "ReadOnly": true,
            "VolumeOptions": {"NoCopy": true, "Labels": {"a": "b"}, "Subpath": "sub",
                              "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}
        }))
        .unwrap();
        assert_eq!(v.source, BindSource::Volume("data".into()));
        assert!(v.readonly && v.nocopy);
        assert_eq!(v.subpath.as_deref(), Some("sub"));
        assert_eq!(v.volume_options["type"], "tmpfs");
        let t = parse_api_mount(&serde_json::json!({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 448}})).unwrap();
        assert_eq!(
            t.tmpfs_options,
            ["nosuid", "nodev", "noexec", "size=1048576", "mode=700"]
        );
    }

    #[test]
    fn bad_api_mounts_use_dockers_words() {
        let cases = [
            (
                serde_json::json!({"Type": "bind", "Source": "/nonexistent-berth-x", "Target": "/x"}),
                "bind source path does not exist: /nonexistent-berth-x",
            ),
            (
                serde_json::json!({"Type": "bind", "Target": "/x"}),
                "field Source must not be empty",
            ),
            (
                serde_json::json!({"Type": "volume", "Source": "v", "Target": "rel"}),
                "invalid mount path: 'rel' mount path must be absolute",
            ),
            (
                serde_json::json!({"Type": "tmpfs", "Source": "x", "Target": "/t"}),
                "field Source must not be specified",
            ),
            (
                serde_json::json!({"Type": "volume", "Target": "/t", "VolumeOptions": {"Subpath": "s"}}),
                "subpath is not allowed on an anonymous volume",
            ),
            (
                serde_json::json!({"Type": "bogus", "Target": "/t"}),
                "mount type unknown",
            ),
        ];
        for (mount, want) in cases {
            let err = parse_api_mount(&mount).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "db:relative",
            "a:b:c:d",
            "/h:/c:bogus",
            "/h:/c:ro,rw",
            "a/b:/c",
            "/h:/",
        ] {
            assert!(parse_bind(bad).is_err(), "{bad}");
        }
    }
}
