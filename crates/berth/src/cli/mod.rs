//! CLI command groups, each a client of the daemon's API, with the docker
//! CLI's flags and output formats.

pub mod backup;
pub mod container;
pub mod docs;
pub mod format;
pub mod image;
pub mod pool;
pub mod progress;
pub mod stream;
pub mod system;
pub mod tls;
pub mod volume;
pub mod volume_archive;
mod volume_ext;
mod volume_migrate;
mod volume_migrate_blocks;

use std::collections::BTreeMap;

use anyhow::{bail, Result};

/// Parses repeated `key=value` flags (`--label`, `--opt`) into a map; a
/// bare `key` means an empty value, as docker does for labels.
pub fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (item.clone(), String::new()),
        })
        .collect()
}

/// Parses `--filter key=value` flags into Docker's filters JSON
/// (`{"key":{"value":true}}`, what the docker CLI sends).
pub fn filters_json(items: &[String]) -> Result<String> {
    let mut map: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            bail!("bad format of filter (expected name=value)");
        };
        map.entry(k.trim().to_lowercase())
            .or_default()
            .insert(v.to_string(), true);
    }
    Ok(serde_json::to_string(&map)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_sent_in_the_clis_encoding() {
        let json = filters_json(&["label=a=b".into(), "dangling=true".into()]).unwrap();
        assert_eq!(json, r#"{"dangling":{"true":true},"label":{"a=b":true}}"#);
        assert!(filters_json(&["nokey".into()]).is_err());
    }

    #[test]
    fn key_values_allow_bare_keys() {
        let kv = key_values(&["a=1".into(), "b".into(), "o=size=1m".into()]);
        assert_eq!(kv["a"], "1");
        assert_eq!(kv["b"], "");
        assert_eq!(kv["o"], "size=1m");
    }
}
