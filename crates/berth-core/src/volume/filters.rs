//! Filters for volume list and prune, with Docker's semantics: values of one
//! key are ORed (`name`, `driver`), label filters are ANDed, and an unknown
//! key is refused.

use std::collections::BTreeMap;

use regex::Regex;

use super::VolumeError;

/// Filter arguments: key → values (the decoded `filters` query parameter).
pub type Filters = BTreeMap<String, Vec<String>>;

/// Keys `volume ls` accepts.
pub const LIST_KEYS: &[&str] = &["dangling", "driver", "label", "name"];
/// Keys `volume prune` accepts.
pub const PRUNE_KEYS: &[&str] = &["label", "label!", "all"];

/// Refuses keys outside `allowed` with Docker's wording.
pub fn check_keys(filters: &Filters, allowed: &[&str]) -> Result<(), VolumeError> {
    match filters.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(VolumeError::InvalidFilter(format!("invalid filter '{key}'"))),
        None => Ok(()),
    }
}

/// The single boolean value of `key`, if given. Docker's rule: `true`/`1`
/// and `false`/`0` (any case); anything else is an invalid filter.
pub fn bool_value(filters: &Filters, key: &str) -> Result<Option<bool>, VolumeError> {
    let Some(values) = filters.get(key) else {
        return Ok(None);
    };
    let mut result = None;
    for value in values {
        let parsed = match value.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(VolumeError::InvalidFilter(format!(
                    "invalid filter '{key}={value}'"
                )))
            }
        };
        if result.is_some_and(|r| r != parsed) {
            return Err(VolumeError::InvalidFilter(format!(
                "invalid filter '{key}': conflicting values"
            )));
        }
        result = Some(parsed);
    }
    Ok(result)
}

/// Whether every `key` filter (`k` or `k=v`) matches `labels` (AND).
/// No filter for `key` matches everything.
pub fn labels_match(filters: &Filters, key: &str, labels: &BTreeMap<String, String>) -> bool {
    filters
        .get(key)
        .is_none_or(|wanted| wanted.iter().all(|w| label_matches(w, labels)))
}

/// Whether no `label!` filter matches `labels`.
pub fn labels_excluded(filters: &Filters, labels: &BTreeMap<String, String>) -> bool {
    filters
        .get("label!")
        .is_some_and(|unwanted| unwanted.iter().any(|u| label_matches(u, labels)))
}

fn label_matches(filter: &str, labels: &BTreeMap<String, String>) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

/// Compiled `name` filters: a name matches if any unanchored pattern does.
pub struct NameFilter(Vec<Regex>);

impl NameFilter {
    /// Compiles the `name` values; a bad pattern is an invalid filter.
    pub fn new(filters: &Filters) -> Result<Self, VolumeError> {
        let patterns = filters.get("name").map(Vec::as_slice).unwrap_or_default();
        let compiled = patterns
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| {
                    VolumeError::InvalidFilter(format!("invalid filter 'name={p}': {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(NameFilter(compiled))
    }

    /// Whether `name` passes.
    pub fn matches(&self, name: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|re| re.is_match(name))
    }
}

/// Whether `value` is one of the values of `key` (or `key` is absent).
pub fn exact_match(filters: &Filters, key: &str, value: &str) -> bool {
    filters
        .get(key)
        .is_none_or(|values| values.iter().any(|v| v == value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(pairs: &[(&str, &str)]) -> Filters {
        let mut f = Filters::new();
        for (k, v) in pairs {
            f.entry(k.to_string()).or_default().push(v.to_string());
        }
        f
    }

    #[test]
    fn labels_are_anded_and_support_values() {
        let labels: BTreeMap<_, _> = [("a".into(), "1".into()), ("b".into(), "".into())].into();
        assert!(labels_match(&filters(&[("label", "a"), ("label", "b")]), "label", &labels));
        assert!(labels_match(&filters(&[("label", "a=1")]), "label", &labels));
        assert!(!labels_match(&filters(&[("label", "a=2")]), "label", &labels));
        assert!(!labels_match(&filters(&[("label", "a"), ("label", "c")]), "label", &labels));
        assert!(labels_excluded(&filters(&[("label!", "b")]), &labels));
        assert!(!labels_excluded(&filters(&[("label!", "c")]), &labels));
    }

    #[test]
    fn bools_follow_docker() {
        assert_eq!(bool_value(&filters(&[("dangling", "TRUE")]), "dangling").unwrap(), Some(true));
        assert_eq!(bool_value(&filters(&[("dangling", "0")]), "dangling").unwrap(), Some(false));
        assert!(bool_value(&filters(&[("dangling", "yes")]), "dangling").is_err());
        assert_eq!(bool_value(&Filters::new(), "dangling").unwrap(), None);
    }

    #[test]
    fn names_are_unanchored_regexes() {
        let f = NameFilter::new(&filters(&[("name", "^app"), ("name", "db")])).unwrap();
        assert!(f.matches("app1") && f.matches("mydb2") && !f.matches("web"));
        assert!(NameFilter::new(&filters(&[("name", "(")])).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = check_keys(&filters(&[("colour", "x")]), LIST_KEYS).unwrap_err();
        assert_eq!(err.to_string(), "invalid filter 'colour'");
    }
}
