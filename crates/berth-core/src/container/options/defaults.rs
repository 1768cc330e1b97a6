//! The daemon's defaults for every container (`daemon.json` `log-opts`
//! and `default-ulimits`, or `--log-opt`/`--default-ulimit` on the daemon),
//! applied as dockerd applies them: log options are merged into a
//! container's `LogConfig` at create (its own keys win; `docker inspect`
//! shows the merged set), default ulimits are added at each start for the
//! names the container does not set itself.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::resources::{check_ulimit, Ulimit};
use crate::container::logrotate::parse_log_opts;

/// What every container gets unless it says otherwise.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerDefaults {
    /// json-file options (`max-size`, `max-file`, `compress`).
    pub log_opts: BTreeMap<String, String>,
    pub ulimits: Vec<Ulimit>,
}

impl ContainerDefaults {
    /// Reads `key=value` log options and `name=soft[:hard]` ulimits, with
    /// the checks a container's own get.
    pub fn parse(log_opts: &[String], ulimits: &[String]) -> Result<Self, String> {
        let mut opts = BTreeMap::new();
        for pair in log_opts {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("invalid log option {pair:?}: use key=value"))?;
            opts.insert(key.to_string(), value.to_string());
        }
        parse_log_opts(&opts)?;
        let ulimits = ulimits
            .iter()
            .map(|text| parse_ulimit(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ContainerDefaults {
            log_opts: opts,
            ulimits,
        })
    }

    /// Merges the default log options into a `HostConfig`'s `LogConfig`
    /// (the `extra` fields) when it uses json-file, the default driver.
    pub fn merge_log_config(&self, host_extra: &mut Map<String, Value>) {
        let entry = host_extra
            .entry("LogConfig")
            .or_insert_with(|| json!({"Type": "", "Config": {}}));
        if !entry.is_object() {
            *entry = json!({"Type": "", "Config": {}});
        }
        let kind = entry["Type"].as_str().unwrap_or_default();
        if !(kind.is_empty() || kind == "json-file") {
            return;
        }
        entry["Type"] = json!("json-file");
        if !entry["Config"].is_object() {
            entry["Config"] = json!({});
        }
        if let Some(config) = entry["Config"].as_object_mut() {
            for (key, value) in &self.log_opts {
                config.entry(key.clone()).or_insert_with(|| json!(value));
            }
        }
    }

    /// A container's ulimits with the defaults it does not set added.
    pub fn merge_ulimits(&self, own: Option<Vec<Ulimit>>) -> Option<Vec<Ulimit>> {
        if self.ulimits.is_empty() {
            return own;
        }
        let mut merged = own.unwrap_or_default();
        for default in &self.ulimits {
            if !merged.iter().any(|u| u.name == default.name) {
                merged.push(default.clone());
            }
        }
        Some(merged)
    }
}

/// Docker's `units.ParseUlimit`: `name=soft[:hard]` (hard = soft when
/// absent), checked as `--ulimit` is.
pub fn parse_ulimit(text: &str) -> Result<Ulimit, String> {
    let (name, limits) = text
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {text}"))?;
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let number = |n: &str| {
        n.parse::<i64>()
            .map_err(|_| format!("invalid ulimit value {n:?} in {text}"))
    };
    let ulimit = Ulimit {
        name: name.to_string(),
        soft: number(soft)?,
        hard: number(hard)?,
    };
    check_ulimit(&ulimit).map_err(|e| e.to_string())?;
    Ok(ulimit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ContainerDefaults {
        ContainerDefaults::parse(
            &["max-size=1m".into(), "max-file=3".into()],
            &["nofile=1024:2048".into(), "nproc=512".into()],
        )
        .unwrap()
    }

    #[test]
    fn parse_checks_like_a_containers_own() {
        let d = defaults();
        assert_eq!(d.log_opts["max-size"], "1m");
        assert_eq!(
            d.ulimits[1],
            Ulimit {
                name: "nproc".into(),
                soft: 512,
                hard: 512
            }
        );
        let bad = |opts: &[&str], ulimits: &[&str]| {
            let opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
            let ulimits: Vec<String> = ulimits.iter().map(|s| s.to_string()).collect();
            ContainerDefaults::parse(&opts, &ulimits).unwrap_err()
        };
        assert!(bad(&["max-size"], &[]).contains("key=value"));
        assert!(bad(&["max-size=lots"], &[]).contains("invalid size"));
        assert!(bad(&["colour=blue"], &[]).contains("unknown log opt 'colour'"));
        assert!(bad(&[], &["nofile"]).contains("invalid ulimit argument"));
        assert!(bad(&[], &["bogus=1"]).contains("invalid ulimit type: bogus"));
        assert!(bad(&[], &["nofile=10:5"]).contains("soft limit"));
        assert!(bad(&[], &["nofile=x"]).contains("invalid ulimit value"));
        assert!(bad(&[], &["nofile=-1"]).contains("cannot be unlimited"));
        assert!(bad(&[], &["nofile=1:2000000000"]).contains("fs.nr_open"));
    }

    #[test]
    fn log_options_merge_into_json_file_only_and_the_containers_win() {
        let d = defaults();
        let mut extra = Map::new();
        d.merge_log_config(&mut extra);
        assert_eq!(
            extra["LogConfig"],
            json!({"Type": "json-file", "Config": {"max-file": "3", "max-size": "1m"}})
        );
        let mut own: Map<String, Value> = serde_json::from_value(
            json!({"LogConfig": {"Type": "", "Config": {"max-size": "5m"}}}),
        )
        .unwrap();
        d.merge_log_config(&mut own);
        assert_eq!(
            own["LogConfig"]["Config"],
            json!({"max-size": "5m", "max-file": "3"})
        );
        let mut other: Map<String, Value> =
            serde_json::from_value(json!({"LogConfig": {"Type": "none", "Config": null}})).unwrap();
        d.merge_log_config(&mut other);
        assert_eq!(other["LogConfig"], json!({"Type": "none", "Config": null}));
    }

    #[test]
    fn default_ulimits_fill_in_the_names_a_container_leaves_unset() {
        let d = defaults();
        let own = vec![Ulimit {
            name: "nofile".into(),
            soft: 10,
            hard: 20,
        }];
        let merged = d.merge_ulimits(Some(own)).unwrap();
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].soft, 10);
        assert_eq!(merged[1].name, "nproc");
        assert_eq!(ContainerDefaults::default().merge_ulimits(None), None);
    }
}
