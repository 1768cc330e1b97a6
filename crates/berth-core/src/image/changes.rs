//! `docker import --change` lines: a small Dockerfile subset applied to a
//! new image's config (moby allows CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
//! ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR; berth takes all but ONBUILD).

use std::collections::BTreeMap;

use serde_json::Value;

use super::config::RunConfig;
use super::ImageError;

/// Applies every change line to `config`, or fails on the first bad one
/// without having changed anything.
pub fn apply(config: &RunConfig, lines: &[String]) -> Result<RunConfig, ImageError> {
    let mut out = config.clone();
    for line in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        apply_one(&mut out, line)?;
    }
    Ok(out)
}

/// A line without the argument its instruction needs, in moby's words
/// (`ENV requires at least one argument`).
fn missing_argument(line: &str) -> ImageError {
    let instr = line.split_whitespace().next().unwrap_or(line);
    ImageError::InvalidChange(format!(
        "{} requires at least one argument",
        instr.to_ascii_uppercase()
    ))
}

fn bad(line: &str, why: &str) -> ImageError {
    ImageError::InvalidChange(format!("{line}: {why}"))
}

fn apply_one(config: &mut RunConfig, line: &str) -> Result<(), ImageError> {
    let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(exec_or_shell(line, rest)?),
        "ENTRYPOINT" => config.entrypoint = Some(exec_or_shell(line, rest)?),
        "ENV" => set_env(config, &key_values(line, rest)?),
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(key_values(line, rest)?);
        }
        "WORKDIR" if !rest.is_empty() => config.working_dir = Some(rest.to_string()),
        "USER" if !rest.is_empty() => config.user = Some(rest.to_string()),
        "STOPSIGNAL" if !rest.is_empty() => config.stop_signal = Some(rest.to_string()),
        "VOLUME" => {
            let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
            for path in json_or_words(line, rest)? {
                volumes.insert(path, Value::Object(Default::default()));
            }
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for port in json_or_words(line, rest)? {
                let port = if port.contains('/') {
                    port
                } else {
                    format!("{port}/tcp")
                };
                ports.insert(port, Value::Object(Default::default()));
            }
        }
        "WORKDIR" | "USER" | "STOPSIGNAL" => return Err(missing_argument(line)),
        other => {
            // moby names the instruction in lower case.
            return Err(ImageError::InvalidChange(format!(
                "{} is not a valid change command",
                other.to_ascii_lowercase()
            )));
        }
    }
    Ok(())
}

/// `["a","b"]` (exec form) or `a b` (shell form → `/bin/sh -c "a b"`).
fn exec_or_shell(line: &str, rest: &str) -> Result<Vec<String>, ImageError> {
    if rest.starts_with('[') {
        return serde_json::from_str(rest).map_err(|e| bad(line, &format!("bad JSON array: {e}")));
    }
    if rest.is_empty() {
        return Err(missing_argument(line));
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
}

/// A JSON array or whitespace-separated words.
fn json_or_words(line: &str, rest: &str) -> Result<Vec<String>, ImageError> {
    let words: Vec<String> = if rest.starts_with('[') {
        serde_json::from_str(rest).map_err(|e| bad(line, &format!("bad JSON array: {e}")))?
    } else {
        rest.split_whitespace().map(str::to_string).collect()
    };
    if words.is_empty() {
        return Err(missing_argument(line));
    }
    Ok(words)
}

/// `k=v k2="v 2"` or the legacy `k v w` (one pair, value is the rest).
fn key_values(line: &str, rest: &str) -> Result<Vec<(String, String)>, ImageError> {
    let words = split_quoted(rest).map_err(|why| bad(line, why))?;
    if words.is_empty() {
        return Err(missing_argument(line));
    }
    if !words[0].contains('=') {
        let (key, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        return Ok(vec![(key.to_string(), value.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(bad(line, "expects key=value pairs")),
        })
        .collect()
}

/// Splits on whitespace, honouring double quotes and backslash escapes.
fn split_quoted(s: &str) -> Result<Vec<String>, &'static str> {
    let (mut words, mut cur, mut quoted, mut escaped, mut any) =
        (Vec::new(), String::new(), false, false, false);
    for c in s.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote");
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

fn set_env(config: &mut RunConfig, pairs: &[(String, String)]) {
    let env = config.env.get_or_insert_with(Vec::new);
    for (key, value) in pairs {
        let entry = format!("{key}={value}");
        match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> Result<RunConfig, ImageError> {
        let lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        apply(&RunConfig::default(), &lines)
    }

    #[test]
    fn dockerfile_forms_are_understood() {
        let c = run(&[
            r#"CMD ["echo", "hi"]"#,
            "ENTRYPOINT /bin/app --flag",
            r#"ENV A=1 B="two words""#,
            "ENV LEGACY some value",
            "ENV A=3",
            "WORKDIR /work",
            "USER 1000:1000",
            r#"VOLUME ["/data", "/logs"]"#,
            "VOLUME /more",
            "EXPOSE 80 53/udp",
            "LABEL team=db",
        ])
        .unwrap();
        assert_eq!(c.cmd.unwrap(), ["echo", "hi"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/bin/app --flag"]);
        assert_eq!(c.env.unwrap(), ["A=3", "B=two words", "LEGACY=some value"]);
        assert_eq!(c.working_dir.as_deref(), Some("/work"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        let volumes: Vec<_> = c.volumes.unwrap().into_keys().collect();
        assert_eq!(volumes, ["/data", "/logs", "/more"]);
        assert!(c.exposed_ports.unwrap().contains_key("53/udp"));
        assert_eq!(c.labels.unwrap()["team"], "db");
    }

    #[test]
    fn bad_changes_are_refused() {
        for bad in [
            "RUN echo hi",
            "FROM busybox",
            "CMD [unclosed",
            "WORKDIR",
            "ENV",
            r#"LABEL a="x"#,
            "ONBUILD RUN x",
        ] {
            assert!(run(&[bad]).is_err(), "{bad} must be refused");
        }
        let text = |line: &str| run(&[line]).unwrap_err().to_string();
        assert_eq!(text("FROM x"), "from is not a valid change command");
        assert_eq!(text("env"), "ENV requires at least one argument");
    }
}
