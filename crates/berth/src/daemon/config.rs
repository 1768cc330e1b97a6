//! The daemon's configuration file (`/etc/berth/daemon.json`, or
//! `--config-file`), read as dockerd reads `/etc/docker/daemon.json`: the
//! keys Docker users know where berth has the setting, berth's own keys
//! (`thin-pool-*`, `trim-interval`) by their flag names; a flag given on
//! the command line and in the file is refused, as are unknown keys, both
//! in dockerd's words. Keys berth knows but cannot honour yet are refused
//! by name with the reason, never accepted and ignored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use berth_core::container::options::ContainerDefaults;
use clap::parser::ValueSource;
use clap::ArgMatches;
use serde_json::{Map, Value};

use super::DaemonArgs;

/// The file read when `--config-file` is not given (a missing one is fine).
pub const DEFAULT_PATH: &str = "/etc/berth/daemon.json";

/// Keys that set a daemon flag: (key, clap id of the flag).
const KEYS: [(&str, &str); 31] = [
    ("data-root", "root"),
    ("hosts", "host"),
    ("tls", "tls"),
    ("tlsverify", "tlsverify"),
    ("tlscacert", "tlscacert"),
    ("tlscert", "tlscert"),
    ("tlskey", "tlskey"),
    ("pidfile", "pidfile"),
    ("log-level", "log_level"),
    ("log-format", "log_format"),
    ("thin-pool-size", "thin_pool_size"),
    ("thin-pool-file", "thin_pool_file"),
    ("thin-pool-device", "thin_pool_device"),
    ("thin-pool-dir", "thin_pool_dir"),
    ("thin-high-water", "thin_high_water"),
    ("thin-default-size", "thin_default_size"),
    ("trim-interval", "trim_interval"),
    ("runtime", "runtime"),
    ("metrics-addr", "metrics_addr"),
    ("web-addr", "web_addr"),
    ("web-admin", "web_admin"),
    ("web-sample-interval", "web_sample_interval"),
    ("log-opts", "log_opt"),
    ("default-ulimits", "default_ulimit"),
    ("bridge", "bridge"),
    ("bip", "bip"),
    ("insecure-registries", "insecure_registry"),
    ("registry-mirrors", "registry_mirror"),
    ("max-concurrent-downloads", "max_concurrent_downloads"),
    ("max-concurrent-uploads", "max_concurrent_uploads"),
    ("max-download-attempts", "max_download_attempts"),
];

/// Keys of dockerd's file that berth knows and refuses, with the reason.
const REFUSED: [(&str, &str); 2] = [
    (
        "default-runtime",
        "use \"runtime\" with the path of an OCI runtime binary",
    ),
    (
        "runtimes",
        "use \"runtime\" with the path of an OCI runtime binary",
    ),
];

/// Keys whose value must be what berth always does.
const FIXED: [(&str, &str, &str); 2] = [
    (
        "live-restore",
        "true",
        "berth always keeps containers running across daemon restarts",
    ),
    (
        "log-driver",
        "\"json-file\"",
        "json-file is berth's only log driver",
    ),
];

/// Reads the file named by `--config-file` (which must exist) or the
/// default one (if it exists) into `args`. `matches` tells which flags
/// were given on the command line.
pub fn apply(args: &mut DaemonArgs, matches: Option<&ArgMatches>) -> Result<Option<PathBuf>> {
    let (path, explicit) = match &args.config_file {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    let Some(map) = read(&path, explicit)? else {
        return Ok(None);
    };
    let in_file = |e: anyhow::Error| {
        e.context(format!(
            "unable to configure the berth daemon with file {}",
            path.display()
        ))
    };
    check_keys(&map).map_err(in_file)?;
    check_conflicts(&map, matches).map_err(in_file)?;
    set_values(args, &map).map_err(in_file)?;
    Ok(Some(path))
}

/// The file's top-level object; `None` when the default file is absent.
fn read(path: &Path, explicit: bool) -> Result<Option<Map<String, Value>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    parse_config(&text).with_context(|| {
        format!(
            "unable to configure the berth daemon with file {}",
            path.display()
        )
    })
}

/// The file's text as a JSON object (an empty file is an empty one).
pub fn parse_config(text: &str) -> Result<Option<Map<String, Value>>> {
    if text.trim().is_empty() {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_str::<Value>(text)? {
        Value::Object(map) => Ok(Some(map)),
        _ => bail!("the configuration must be a JSON object"),
    }
}

/// Unknown keys (all of them, sorted, in dockerd's words), then keys berth
/// refuses, then fixed keys with another value.
fn check_keys(map: &Map<String, Value>) -> Result<()> {
    let known = |k: &str| {
        KEYS.iter().any(|(name, _)| *name == k)
            || REFUSED.iter().any(|(name, _)| *name == k)
            || FIXED.iter().any(|(name, _, _)| *name == k)
    };
    let unknown: BTreeSet<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !known(k))
        .collect();
    if !unknown.is_empty() {
        let list: Vec<&str> = unknown.into_iter().collect();
        bail!(
            "the following directives don't match any configuration option: {}",
            list.join(", ")
        );
    }
    for (name, why) in REFUSED {
        if map.get(name).is_some_and(|v| !is_empty(v)) {
            bail!("{name:?} is not supported: {why}");
        }
    }
    for (name, wanted, why) in FIXED {
        if let Some(value) = map.get(name) {
            if serde_json::to_string(value).ok().as_deref() != Some(wanted) {
                bail!("{name:?} can only be {wanted}: {why}");
            }
        }
    }
    Ok(())
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

/// Keys also given as flags on the command line, in dockerd's words.
fn check_conflicts(map: &Map<String, Value>, matches: Option<&ArgMatches>) -> Result<()> {
    let Some(matches) = matches else {
        return Ok(());
    };
    let mut both = Vec::new();
    for (name, id) in KEYS.iter().filter(|(name, _)| map.contains_key(*name)) {
        if matches.value_source(id) == Some(ValueSource::CommandLine) {
            let flag = matches
                .get_raw(id)
                .map(|v| v.map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            let file = plain(&map[*name]);
            both.push(format!("{name}: (from flag: {flag}, from file: {file})"));
        }
    }
    if both.is_empty() {
        return Ok(());
    }
    bail!(
        "the following directives are specified both as a flag and in the configuration file: {}",
        both.join(", ")
    )
}

/// A value as dockerd prints it in that message (strings unquoted).
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Copies the file's values into the flags they stand for.
fn set_values(args: &mut DaemonArgs, map: &Map<String, Value>) -> Result<()> {
    for (name, _) in KEYS.iter() {
        if let Some(value) = map.get(*name) {
            set_one(args, name, value)?;
        }
    }
    Ok(())
}

/// `"log-opts": {"max-size": "10m"}` as `--log-opt key=value` flags.
fn log_opts(value: &Value) -> Result<Vec<String>> {
    let map = value
        .as_object()
        .context("\"log-opts\" must be an object of strings, such as {\"max-size\": \"10m\"}")?;
    map.iter()
        .map(|(key, v)| {
            let v = v
                .as_str()
                .with_context(|| format!("\"log-opts\": {key:?} must be a string, not {v}"))?;
            Ok(format!("{key}={v}"))
        })
        .collect()
}

/// dockerd's `"default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024,
/// "Hard": 2048}}` as `--default-ulimit nofile=1024:2048` flags.
fn default_ulimits(value: &Value) -> Result<Vec<String>> {
    let shape = "\"default-ulimits\" must map names to {\"Name\": …, \"Soft\": …, \"Hard\": …}";
    let map = value.as_object().context(shape)?;
    map.iter()
        .map(|(key, limit)| {
            let name = limit["Name"].as_str().unwrap_or(key);
            let (Some(soft), Some(hard)) = (limit["Soft"].as_i64(), limit["Hard"].as_i64()) else {
                bail!("{shape}; {key:?} is {limit}");
            };
            Ok(format!("{name}={soft}:{hard}"))
        })
        .collect()
}

/// A list of strings (`"insecure-registries": ["host:5000"]`).
fn strings(name: &str, value: &Value) -> Result<Vec<String>> {
    let items = value
        .as_array()
        .with_context(|| format!("{name:?} must be a list of strings, not {value}"))?;
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_string)
                .with_context(|| format!("{name:?} must be a list of strings, not {value}"))
        })
        .collect()
}

/// A `HOST:PORT` key's value.
fn socket_addr(name: &str, text: &str) -> Result<std::net::SocketAddr> {
    text.parse()
        .with_context(|| format!("{name:?} must be HOST:PORT such as 127.0.0.1:9323, not {text:?}"))
}

fn set_one(args: &mut DaemonArgs, name: &str, value: &Value) -> Result<()> {
    let text = || -> Result<String> {
        value
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{name:?} must be a string, not {value}"))
    };
    let number = || -> Result<u64> {
        value
            .as_u64()
            .with_context(|| format!("{name:?} must be a whole number, not {value}"))
    };
    let boolean = || -> Result<bool> {
        value
            .as_bool()
            .with_context(|| format!("{name:?} must be true or false, not {value}"))
    };
    match name {
        "data-root" => args.root = text()?.into(),
        "hosts" => args.host = hosts(value)?,
        "tls" => args.tls = Some(boolean()?),
        "tlsverify" => args.tlsverify = Some(boolean()?),
        "tlscacert" => args.tlscacert = Some(text()?.into()),
        "tlscert" => args.tlscert = Some(text()?.into()),
        "tlskey" => args.tlskey = Some(text()?.into()),
        "pidfile" => args.pidfile = text()?.into(),
        "log-level" => args.log_level = text()?,
        "log-format" => args.log_format = text()?,
        "thin-pool-size" => args.thin_pool_size = text()?,
        "thin-pool-file" => args.thin_pool_file = Some(text()?.into()),
        "thin-pool-device" => args.thin_pool_device = Some(text()?.into()),
        "thin-pool-dir" => args.thin_pool_dir = Some(text()?.into()),
        "thin-high-water" => {
            args.thin_high_water =
                u8::try_from(number()?).context("\"thin-high-water\" is a percentage")?
        }
        "thin-default-size" => args.thin_default_size = Some(text()?),
        "trim-interval" => args.trim_interval = number()?,
        "runtime" => args.runtime = Some(text()?),
        "bridge" => args.bridge = Some(text()?),
        "bip" => args.bip = Some(text()?),
        "insecure-registries" => args.insecure_registry = strings(name, value)?,
        "registry-mirrors" => args.registry_mirror = strings(name, value)?,
        "max-concurrent-downloads" => args.max_concurrent_downloads = number()? as usize,
        "max-concurrent-uploads" => args.max_concurrent_uploads = number()? as usize,
        "max-download-attempts" => args.max_download_attempts = number()? as usize,
        "metrics-addr" => args.metrics_addr = Some(socket_addr(name, &text()?)?),
        "web-addr" => args.web_addr = Some(socket_addr(name, &text()?)?),
        "web-admin" => args.web_admin = boolean()?,
        "log-opts" => {
            args.log_opt = log_opts(value)?;
            ContainerDefaults::parse(&args.log_opt, &[]).map_err(anyhow::Error::msg)?;
        }
        "default-ulimits" => {
            args.default_ulimit = default_ulimits(value)?;
            ContainerDefaults::parse(&[], &args.default_ulimit).map_err(anyhow::Error::msg)?;
        }
        "web-sample-interval" => {
            args.web_sample_interval = number()?;
            if args.web_sample_interval == 0 {
                bail!("\"web-sample-interval\" must be at least 1 second");
            }
        }
        _ => unreachable!("KEYS and set_one list the same keys"),
    }
    Ok(())
}

/// `"hosts": ["unix:///run/berth.sock", "tcp://0.0.0.0:2376"]`: at least one.
fn hosts(value: &Value) -> Result<Vec<String>> {
    let hosts = strings("hosts", value)?;
    if hosts.is_empty() {
        bail!("\"hosts\" must name at least one address");
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn unknown_keys_are_listed_like_dockerd() {
        let err = check_keys(&map(json!({"zeta": 1, "alpha": 2, "log-level": "info"})));
        assert_eq!(
            err.unwrap_err().to_string(),
            "the following directives don't match any configuration option: alpha, zeta"
        );
    }

    #[test]
    fn refused_and_fixed_keys_say_why() {
        let runtimes = check_keys(&map(json!({"runtimes": {"crun": {}}})))
            .unwrap_err()
            .to_string();
        assert!(runtimes.contains("use \"runtime\""), "{runtimes}");
        assert!(check_keys(&map(json!({"tlsverify": true, "registry-mirrors": []}))).is_ok());
        assert!(check_keys(&map(
            json!({"live-restore": true, "log-driver": "json-file"})
        ))
        .is_ok());
        let lr = check_keys(&map(json!({"live-restore": false})))
            .unwrap_err()
            .to_string();
        assert!(lr.contains("can only be true"), "{lr}");
    }

    #[test]
    fn hosts_take_a_list() {
        assert_eq!(
            hosts(&json!(["unix:///x.sock", "tcp://127.0.0.1:2376"])).unwrap(),
            ["unix:///x.sock", "tcp://127.0.0.1:2376"]
        );
        assert!(hosts(&json!([])).is_err());
        assert!(hosts(&json!("unix:///a")).is_err());
        assert!(hosts(&json!([1])).is_err());
    }

    #[test]
    fn files_parse() {
        assert!(parse_config("").unwrap().unwrap().is_empty());
        assert!(parse_config("[1]").is_err());
        assert!(parse_config("{\"a\":").is_err());
    }
}
