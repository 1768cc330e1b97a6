//! Output formatting as the docker CLI does it: aligned tables (Go's
//! tabwriter with minwidth 10, padding 3), `json` lines, a small subset of
//! Go templates (`{{.Field}}`, `{{json .}}`, `table` prefix), human sizes.

use serde_json::{Map, Value};

pub use berth_core::sys::units::{human_size, human_size_with_precision};

/// Renders rows as docker's tabwriter: every column but the last padded to
/// max(10, widest + 3).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths = vec![0usize; cols];
    let all_rows = std::iter::once(header.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .chain(rows.iter().cloned())
        .collect::<Vec<_>>();
    for row in &all_rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &all_rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == cols {
                line.push_str(cell);
            } else {
                let width = (widths[i] + 3).max(10);
                line.push_str(&format!("{cell:<width$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Applies a `--format` value to one object: `json` prints it as one line,
/// otherwise `{{.Field}}` and `{{json .}}` / `{{json .Field}}` are expanded.
pub fn template(format: &str, object: &Map<String, Value>) -> String {
    if format == "json" {
        return Value::Object(object.clone()).to_string();
    }
    let format = format.strip_prefix("table ").unwrap_or(format);
    let mut out = String::new();
    let mut rest = format;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&expand(rest[start + 2..start + end].trim(), object));
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out.replace("\\t", "\t").replace("\\n", "\n")
}

fn expand(action: &str, object: &Map<String, Value>) -> String {
    let (json, path) = match action.strip_prefix("json ") {
        Some(p) => (true, p.trim()),
        None => (false, action),
    };
    let value = if path == "." {
        Value::Object(object.clone())
    } else {
        let key = path.trim_start_matches('.');
        key.split('.')
            .try_fold(Value::Object(object.clone()), |v, k| v.get(k).cloned())
            .unwrap_or(Value::Null)
    };
    match (json, value) {
        (true, v) => v.to_string(),
        (false, Value::String(s)) => s,
        (false, Value::Null) => "<no value>".to_string(),
        (false, Value::Object(m)) => go_map(&m),
        (false, v) => v.to_string(),
    }
}

/// Go's `%v` of a map: `map[k:v k2:v2]`.
fn go_map(m: &Map<String, Value>) -> String {
    let items: Vec<String> = m
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}:{s}"),
            other => format!("{k}:{other}"),
        })
        .collect();
    format!("map[{}]", items.join(" "))
}

/// docker's `units.HumanDuration` (what "2 hours ago" is made of).
pub fn human_duration(seconds: i64) -> String {
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    match () {
        _ if seconds < 1 => "Less than a second".into(),
        _ if seconds == 1 => "1 second".into(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// Pretty JSON with four-space indents (the docker CLI's inspect output).
pub fn pretty_json(value: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value.serialize(&mut ser).expect("in-memory JSON");
    String::from_utf8(buf).expect("JSON is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_docker_spacing() {
        let out = table(
            &["DRIVER", "VOLUME NAME"],
            &[vec!["local".into(), "v1".into()]],
        );
        assert_eq!(out, "DRIVER    VOLUME NAME\nlocal     v1\n");
    }

    #[test]
    fn durations_match_go_units() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (14 * 86400, "2 weeks"),
            (60 * 86400, "2 months"),
            (2 * 365 * 86400, "2 years"),
        ];
        for (seconds, text) in cases {
            assert_eq!(human_duration(seconds), text, "{seconds} s");
        }
    }

    #[test]
    fn templates_expand_fields_and_json() {
        let obj: Map<String, Value> =
            serde_json::from_str(r#"{"Name":"v","Labels":{"a":"b"}}"#).unwrap();
        assert_eq!(template("{{.Name}}", &obj), "v");
        assert_eq!(template("{{json .Labels}}", &obj), r#"{"a":"b"}"#);
        assert_eq!(template("{{.Labels}}", &obj), "map[a:b]");
        assert_eq!(template("json", &obj), r#"{"Name":"v","Labels":{"a":"b"}}"#);
    }
}
