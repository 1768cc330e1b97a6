//! Where a repository lives, parsed from the URL a user gives (restic's
//! forms), and the options a user may give for it. Pure functions,
//! unit-tested here; `backend` reaches the location.
//!
//! - `/srv/backups` or `local:/srv/backups`: a folder on the daemon's host.
//! - `s3:http://127.0.0.1:9000/bucket/prefix`, `s3:https://host/bucket`,
//!   `s3:host/bucket/prefix` (https): an S3-compatible store, path-style.
//! - `sftp:user@host:/path` or `sftp://user@host:port/path`.
//!
//! Credentials never go in the URL (user-info with a password is refused):
//! they travel as secrets and are sealed at rest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BackupError;

/// A parsed repository location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Kind")]
pub enum Location {
    Local {
        path: String,
    },
    S3 {
        endpoint: String,
        bucket: String,
        root: String,
    },
    Sftp {
        user: Option<String>,
        endpoint: String,
        root: String,
    },
}

/// Options a user may set for an S3 repository (`region`, `retry`: the
/// tries after the first, or `off`) or an SFTP one (`key`: ssh's
/// identity file, `known_hosts_strategy`: strict, add or accept, and
/// `command`: the program that speaks SFTP on its standard input and
/// output, restic's `sftp.command`); none of them secret.
const S3_OPTIONS: &[&str] = &["region", "retry"];
const SFTP_OPTIONS: &[&str] = &["key", "known_hosts_strategy", "command"];
/// Options that are secrets: given through the environment or a file,
/// sealed at rest, never shown.
pub const SECRET_OPTIONS: &[&str] = &["access_key_id", "secret_access_key", "session_token"];

fn invalid(url: &str, why: impl Into<String>) -> BackupError {
    BackupError::InvalidUrl {
        url: redacted(url),
        why: why.into(),
    }
}

/// `url` without what comes before an `@` (user-info that may hold a
/// secret), for error messages.
fn redacted(url: &str) -> String {
    match url.rfind('@') {
        Some(at) => format!("<redacted>@{}", &url[at + 1..]),
        None => url.to_string(),
    }
}

/// Parses a repository URL.
pub fn parse_url(url: &str) -> Result<Location, BackupError> {
    if url.chars().any(|c| c.is_control()) {
        return Err(invalid(url, "control characters"));
    }
    if let Some(rest) = url.strip_prefix("s3:") {
        return parse_s3(url, rest);
    }
    if let Some(rest) = url.strip_prefix("sftp:") {
        return parse_sftp(url, rest);
    }
    let path = url.strip_prefix("local:").unwrap_or(url);
    if !path.starts_with('/') {
        return Err(invalid(
            url,
            "a local repository is an absolute path; other kinds start with s3: or sftp:",
        ));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(invalid(url, "'..' in the path"));
    }
    Ok(Location::Local {
        path: path.to_string(),
    })
}

fn parse_s3(url: &str, rest: &str) -> Result<Location, BackupError> {
    let (scheme, rest) = match rest.split_once("://") {
        Some((s @ ("http" | "https"), r)) => (s, r),
        Some((other, _)) => return Err(invalid(url, format!("unknown scheme {other}"))),
        None => ("https", rest),
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || host.contains('@') {
        return Err(invalid(
            url,
            "give the host as host[:port], with no credentials",
        ));
    }
    let mut parts = path.splitn(2, '/');
    let bucket = parts.next().unwrap_or("");
    if bucket.is_empty() {
        return Err(invalid(
            url,
            "no bucket: s3:http://host:port/bucket[/prefix]",
        ));
    }
    let prefix = parts.next().unwrap_or("").trim_matches('/');
    Ok(Location::S3 {
        endpoint: format!("{scheme}://{host}"),
        bucket: bucket.to_string(),
        root: format!("/{prefix}"),
    })
}

fn parse_sftp(url: &str, rest: &str) -> Result<Location, BackupError> {
    let (authority, root) = if let Some(r) = rest.strip_prefix("//") {
        let (auth, path) = r.split_once('/').unwrap_or((r, ""));
        (auth, format!("/{path}"))
    } else {
        // The host ends at the first ':' after the user (a user part with
        // a ':' of its own holds a password, refused below).
        let host_from = rest.find('@').map_or(0, |at| at + 1);
        let colon = rest[host_from..]
            .find(':')
            .ok_or_else(|| invalid(url, "sftp:user@host:/path"))?;
        let (auth, path) = rest.split_at(host_from + colon);
        (auth, path[1..].to_string())
    };
    let (user, endpoint) = match authority.split_once('@') {
        Some((u, _)) if u.contains(':') => {
            return Err(invalid(url, "no password in the URL; use a key"))
        }
        Some((u, h)) => (Some(u.to_string()), h.to_string()),
        None => (None, authority.to_string()),
    };
    if endpoint.is_empty() || root.is_empty() {
        return Err(invalid(url, "sftp:user@host:/path"));
    }
    // ssh would read either as an option (-oProxyCommand=… runs a command).
    let host = endpoint.trim_start_matches('[');
    if host.starts_with('-') || user.as_deref().is_some_and(|u| u.starts_with('-')) {
        return Err(invalid(url, "a user or host may not start with '-'"));
    }
    Ok(Location::Sftp {
        user,
        endpoint,
        root,
    })
}

/// Checks user-given options: only known keys, secrets kept apart.
pub fn check_options(
    location: &Location,
    plain: &BTreeMap<String, String>,
    secret: &BTreeMap<String, String>,
) -> Result<(), BackupError> {
    let bad = |why: String| BackupError::InvalidRequest(why);
    if matches!(location, Location::Local { .. }) && !(plain.is_empty() && secret.is_empty()) {
        return Err(bad("a local repository takes no options".into()));
    }
    let options = match location {
        Location::S3 { .. } => S3_OPTIONS,
        _ => SFTP_OPTIONS,
    };
    if let Some(k) = plain.keys().find(|k| !options.contains(&k.as_str())) {
        let known = options.join(", ");
        return Err(bad(format!(
            "unknown repository option {k:?} (known: {known})"
        )));
    }
    if let Some(k) = secret
        .keys()
        .find(|k| !SECRET_OPTIONS.contains(&k.as_str()))
    {
        return Err(bad(format!("unknown repository secret {k:?}")));
    }
    if let Some(v) = plain.get("known_hosts_strategy") {
        if !["strict", "add", "accept"].contains(&v.as_str()) {
            return Err(bad(format!(
                "known_hosts_strategy {v:?}: strict, add or accept"
            )));
        }
    }
    let has = |k: &str| secret.get(k).is_some_and(|v| !v.is_empty());
    if matches!(location, Location::S3 { .. })
        && !(has("access_key_id") && has("secret_access_key"))
    {
        return Err(bad(
            "an S3 repository needs its keys (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into(),
        ));
    }
    Ok(())
}

/// Refuses a local repository at or under `root` (the daemon's): its
/// folders would be taken for volumes, or mixed with berth's own files.
pub fn refuse_inside(location: &Location, root: &Path) -> Result<(), BackupError> {
    let Location::Local { path } = location else {
        return Ok(());
    };
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    // Both readings of `..`: the kernel's (after symlinks) and the text's
    // (a missing folder before `..` is made by the backend, then left).
    let given = Path::new(path);
    if resolved(given).starts_with(&root) || resolved(&lexical(given)).starts_with(&root) {
        return Err(BackupError::InvalidRequest(format!(
            "repository {path} is inside the daemon's root {}: choose a folder outside it",
            root.display()
        )));
    }
    Ok(())
}

/// `path` with its longest existing part resolved (symlinks, `..`).
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while existing.canonicalize().is_err() {
        match existing.file_name() {
            Some(name) => rest.push(name.to_os_string()),
            None => break,
        }
        if !existing.pop() {
            break;
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    out.extend(rest.iter().rev());
    out
}

/// `path` with `.` and `..` taken away by the text alone.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A local repository berth made is its owner's alone (0700, as restic
/// makes its own): its key files would let anyone who reads them guess
/// the password offline.
pub fn make_private(location: &Location) {
    if let Location::Local { path } = location {
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        if let Err(e) = std::fs::set_permissions(path, private) {
            tracing::warn!(repository = %path, error = %e, "could not make the repository private");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths() {
        for url in ["/srv/b", "local:/srv/b"] {
            assert_eq!(
                parse_url(url).unwrap(),
                Location::Local {
                    path: "/srv/b".into()
                }
            );
        }
        for bad in ["srv/b", "local:b", "/srv/../etc", "", "/a\nb", "ftp://x/y"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn s3_forms() {
        let l = parse_url("s3:http://127.0.0.1:9000/bucket/some/prefix/").unwrap();
        assert_eq!(
            l,
            Location::S3 {
                endpoint: "http://127.0.0.1:9000".into(),
                bucket: "bucket".into(),
                root: "/some/prefix".into()
            }
        );
        let l = parse_url("s3:s3.example.com/b").unwrap();
        assert_eq!(
            l,
            Location::S3 {
                endpoint: "https://s3.example.com".into(),
                bucket: "b".into(),
                root: "/".into()
            }
        );
        for bad in [
            "s3:http://h:1",
            "s3:http://k:s@h/b",
            "s3:ftp://h/b",
            "s3:/b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sftp_forms() {
        assert_eq!(
            parse_url("sftp:me@host:/srv/r").unwrap(),
            Location::Sftp {
                user: Some("me".into()),
                endpoint: "host".into(),
                root: "/srv/r".into()
            }
        );
        assert_eq!(
            parse_url("sftp://host:2222/srv/r").unwrap(),
            Location::Sftp {
                user: None,
                endpoint: "host:2222".into(),
                root: "/srv/r".into()
            }
        );
        assert!(parse_url("sftp:me:pw@host:/r").is_err());
        assert!(parse_url("sftp:-oProxyCommand=x:/r").is_err());
        assert!(parse_url("sftp:-x@h:/r").is_err());
        assert!(parse_url("sftp:[-oProxyCommand=x]:/r").is_err());
        assert!(parse_url("sftp:host").is_err());
    }

    #[test]
    fn options_are_checked_and_secrets_kept_apart() {
        let s3 = parse_url("s3:http://h:9/b").unwrap();
        let plain = BTreeMap::from([("region".to_string(), "eu-west-1".to_string())]);
        let mut secret = BTreeMap::from([("secret_access_key".to_string(), "k".to_string())]);
        assert!(check_options(&s3, &plain, &secret).is_err(), "both keys");
        secret.insert("access_key_id".into(), "id".into());
        check_options(&s3, &plain, &secret).unwrap();
        let unknown = BTreeMap::from([("colour".to_string(), "red".to_string())]);
        assert!(check_options(&s3, &unknown, &BTreeMap::new()).is_err());
        let command = BTreeMap::from([("command".to_string(), "x".to_string())]);
        assert!(
            check_options(&s3, &command, &secret).is_err(),
            "an SFTP option"
        );
        let sftp = parse_url("sftp:h:/r").unwrap();
        check_options(&sftp, &command, &BTreeMap::new()).unwrap();
        let strategy = BTreeMap::from([("known_hosts_strategy".to_string(), "maybe".to_string())]);
        assert!(check_options(&sftp, &strategy, &BTreeMap::new()).is_err());
        assert!(check_options(&s3, &BTreeMap::new(), &plain).is_err());
        let local = parse_url("/r").unwrap();
        assert!(check_options(&local, &plain, &BTreeMap::new()).is_err());
    }

    #[test]
    fn repositories_inside_the_root_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("volumes")).unwrap();
        let local = |p: String| Location::Local { path: p };
        for inside in [
            r.display().to_string(),
            r.join("volumes").display().to_string(),
            r.join("backup/new/deeper").display().to_string(),
            format!(
                "{}/../{}/volumes",
                r.display(),
                r.file_name().unwrap().to_string_lossy()
            ),
            format!("/nonexistent-berth-test/..{}/x", r.display()),
        ] {
            assert!(
                refuse_inside(&local(inside.clone()), r).is_err(),
                "{inside}"
            );
        }
        let outside = tempfile::tempdir().unwrap();
        let ok = outside.path().join("repo").display().to_string();
        assert!(refuse_inside(&local(ok), r).is_ok());
        std::os::unix::fs::symlink(r, outside.path().join("link")).unwrap();
        let via_link = outside.path().join("link/volumes/x").display().to_string();
        assert!(refuse_inside(&local(via_link), r).is_err());
    }
}
