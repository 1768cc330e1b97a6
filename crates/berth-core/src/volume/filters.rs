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
        Some(key) => Err(VolumeError::InvalidFilter(format!(
            "invalid filter '{key}'"
        ))),
        None => Ok(()),
    }
}

/// `dangling`: Docker accepts exactly `1`/`true` and `0`/`false`; any
/// other value, or both at once, is refused as `invalid filter
/// 'dangling=[v1 v2]'` (Go's slice formatting, brackets included).
pub fn dangling_value(filters: &Filters) -> Result<Option<bool>, VolumeError> {
    let Some(values) = filters.get("dangling") else {
        return Ok(None);
    };
    let truthy = values.iter().any(|v| v == "1" || v == "true");
    let falsy = values.iter().any(|v| v == "0" || v == "false");
    let unknown = values
        .iter()
        .any(|v| !matches!(v.as_str(), "1" | "true" | "0" | "false"));
    if unknown || (truthy && falsy) {
        return Err(VolumeError::InvalidFilter(format!(
            "invalid filter 'dangling=[{}]'",
            values.join(" ")
        )));
    }
    Ok(Some(truthy))
}

/// Prune's `all`: one value, parsed as Go's `strconv.ParseBool`.
pub fn all_value(filters: &Filters) -> Result<bool, VolumeError> {
    let values = match filters.get("all") {
        None => return Ok(false),
        Some(v) if v.len() > 1 => {
            return Err(VolumeError::InvalidFilter(format!(
                "invalid filter 'all=[{}]': only one value is expected",
                v.join(" ")
            )))
        }
        Some(v) => v,
    };
    let value = values.first().map(String::as_str).unwrap_or_default();
    parse_go_bool(value).ok_or_else(|| {
        VolumeError::InvalidFilter(format!(
            "invalid filter 'all': strconv.ParseBool: parsing {value:?}: invalid syntax"
        ))
    })
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The `until` filter as unix seconds: what moby's `GetTimestamp` takes,
/// a Go duration before `now` (`24h`, `1h30m`), a unix time (`1700000000`,
/// with an optional fraction), or an RFC 3339 date-time or date. `None`
/// when there is no `until` filter.
pub fn until_cutoff(filters: &Filters, now: i64) -> Result<Option<i64>, VolumeError> {
    let Some(values) = filters.get("until") else {
        return Ok(None);
    };
    let [value] = values.as_slice() else {
        return Err(VolumeError::InvalidFilter(
            "more than one until filter specified".into(),
        ));
    };
    let invalid = || VolumeError::InvalidFilter(format!("invalid filter 'until={value}'"));
    if let Some(seconds) = go_duration_seconds(value) {
        return Ok(Some(now - seconds));
    }
    if let Ok(unix) = value.parse::<f64>() {
        return Ok(Some(unix as i64));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(Some(t.timestamp()));
    }
    let date = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| invalid())?;
    Ok(date.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()))
}

/// Whole seconds of a Go duration such as `1h30m` or `90s` (`None` if it
/// is not one).
fn go_duration_seconds(text: &str) -> Option<i64> {
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number.parse::<f64>().ok()? * scale;
        rest = next;
    }
    (!text.is_empty()).then_some(total as i64)
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

/// `name` filters as Docker's `Args.Match`: a name passes if it equals a
/// value or an unanchored regular expression of it matches; a value that
/// is not a valid expression only matches exactly (Docker skips it).
pub struct NameFilter(Vec<(String, Option<Regex>)>);

impl NameFilter {
    /// Compiles the `name` values.
    pub fn new(filters: &Filters) -> Result<Self, VolumeError> {
        Ok(Self::for_key(filters, "name"))
    }

    /// Compiles the values of `key` (networks filter `id` the same way).
    pub fn for_key(filters: &Filters, key: &str) -> Self {
        let patterns = filters.get(key).map(Vec::as_slice).unwrap_or_default();
        NameFilter(
            patterns
                .iter()
                .map(|p| (p.clone(), Regex::new(p).ok()))
                .collect(),
        )
    }

    /// Whether `name` passes.
    pub fn matches(&self, name: &str) -> bool {
        self.0.is_empty()
            || self
                .0
                .iter()
                .any(|(p, re)| p == name || re.as_ref().is_some_and(|re| re.is_match(name)))
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
        assert!(labels_match(
            &filters(&[("label", "a"), ("label", "b")]),
            "label",
            &labels
        ));
        assert!(labels_match(
            &filters(&[("label", "a=1")]),
            "label",
            &labels
        ));
        assert!(!labels_match(
            &filters(&[("label", "a=2")]),
            "label",
            &labels
        ));
        assert!(!labels_match(
            &filters(&[("label", "a"), ("label", "c")]),
            "label",
            &labels
        ));
        assert!(labels_excluded(&filters(&[("label!", "b")]), &labels));
        assert!(!labels_excluded(&filters(&[("label!", "c")]), &labels));
    }

    #[test]
    fn dangling_follows_docker() {
        assert_eq!(
            dangling_value(&filters(&[("dangling", "true")])).unwrap(),
            Some(true)
        );
        assert_eq!(
            dangling_value(&filters(&[("dangling", "0")])).unwrap(),
            Some(false)
        );
        let err = dangling_value(&filters(&[("dangling", "TRUE")])).unwrap_err();
        assert_eq!(err.to_string(), "invalid filter 'dangling=[TRUE]'");
        let both = filters(&[("dangling", "1"), ("dangling", "false")]);
        assert!(dangling_value(&both).is_err());
        assert_eq!(dangling_value(&Filters::new()).unwrap(), None);
    }

    #[test]
    fn all_follows_go_parse_bool() {
        assert!(all_value(&filters(&[("all", "T")])).unwrap());
        assert!(!all_value(&filters(&[("all", "False")])).unwrap());
        assert!(!all_value(&Filters::new()).unwrap());
        let err = all_value(&filters(&[("all", "x")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid filter 'all': strconv.ParseBool: parsing \"x\": invalid syntax"
        );
        let two = filters(&[("all", "false"), ("all", "true")]);
        assert_eq!(
            all_value(&two).unwrap_err().to_string(),
            "invalid filter 'all=[false true]': only one value is expected"
        );
    }

    #[test]
    fn names_are_unanchored_regexes() {
        let f = NameFilter::new(&filters(&[("name", "^app"), ("name", "db")])).unwrap();
        assert!(f.matches("app1") && f.matches("mydb2") && !f.matches("web"));
        let bad = NameFilter::new(&filters(&[("name", "(")])).unwrap();
        assert!(
            !bad.matches("app1"),
            "an invalid pattern matches only itself"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = check_keys(&filters(&[("colour", "x")]), LIST_KEYS).unwrap_err();
        assert_eq!(err.to_string(), "invalid filter 'colour'");
    }

    #[test]
    fn until_takes_durations_unix_times_and_dates() {
        let f = |v: &str| Filters::from([("until".to_string(), vec![v.to_string()])]);
        let now = 1_800_000_000;
        assert_eq!(until_cutoff(&f("24h"), now).unwrap(), Some(now - 86_400));
        assert_eq!(until_cutoff(&f("1h30m"), now).unwrap(), Some(now - 5_400));
        assert_eq!(
            until_cutoff(&f("1700000000.5"), now).unwrap(),
            Some(1_700_000_000)
        );
        assert_eq!(
            until_cutoff(&f("2026-01-02T00:00:00Z"), now).unwrap(),
            Some(1_767_312_000)
        );
        assert_eq!(
            until_cutoff(&f("2026-01-02"), now).unwrap(),
            Some(1_767_312_000)
        );
        assert!(until_cutoff(&f("yesterday"), now).is_err());
        assert!(until_cutoff(&f("10x"), now).is_err());
        assert_eq!(until_cutoff(&Filters::new(), now).unwrap(), None);
    }
}
