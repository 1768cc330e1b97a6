//! Finding a plugin by name as Docker does (moby `pkg/plugins/discovery.go`):
//! a socket `NAME.sock` or `NAME/NAME.sock` in the socket folder
//! (`/run/docker/plugins`), else `NAME.spec` (one line, a URL) or
//! `NAME.json` (`{"Name", "Addr"}`) in the spec folders
//! (`/etc/docker/plugins`, `/usr/lib/docker/plugins`). Folders are
//! configurable, so tests use their own.

use std::path::{Path, PathBuf};

use super::http::Addr;

/// Where plugins are looked for.
#[derive(Debug, Clone)]
pub struct PluginDirs {
    pub sockets: PathBuf,
    pub specs: Vec<PathBuf>,
    /// The socket berth itself serves its drivers on as a plugin
    /// (`--serve-volume-plugin`): never used as a plugin, or a volume
    /// would be made twice, once by each side of berth.
    pub own: Option<PathBuf>,
}

impl Default for PluginDirs {
    fn default() -> Self {
        PluginDirs {
            sockets: PathBuf::from("/run/docker/plugins"),
            specs: vec![
                PathBuf::from("/etc/docker/plugins"),
                PathBuf::from("/usr/lib/docker/plugins"),
            ],
            own: None,
        }
    }
}

/// A plugin name is one file name (it is joined to folders).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The address of plugin `name`, if it is found.
pub fn find(dirs: &PluginDirs, name: &str) -> Result<Option<Addr>, String> {
    if !valid_name(name) {
        return Ok(None);
    }
    let found = find_anywhere(dirs, name)?;
    if let Some(Addr::Unix(socket)) = &found {
        if dirs.is_own(socket) {
            return Err(format!(
                "{} is berth's own volume plugin: use its drivers (local, thin) directly",
                socket.display()
            ));
        }
    }
    Ok(found)
}

impl PluginDirs {
    /// Whether `socket` is the one berth serves its own plugin on.
    fn is_own(&self, socket: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let identity = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        match &self.own {
            Some(own) => identity(own).is_some() && identity(own) == identity(socket),
            None => false,
        }
    }
}

fn find_anywhere(dirs: &PluginDirs, name: &str) -> Result<Option<Addr>, String> {
    for socket in [
        dirs.sockets.join(format!("{name}.sock")),
        dirs.sockets.join(name).join(format!("{name}.sock")),
    ] {
        if is_socket(&socket) {
            return Ok(Some(Addr::Unix(socket)));
        }
    }
    for dir in &dirs.specs {
        let spec = dir.join(format!("{name}.spec"));
        if let Ok(text) = std::fs::read_to_string(&spec) {
            return parse_url(text.trim())
                .map(Some)
                .map_err(|e| format!("{}: {e}", spec.display()));
        }
        let json = dir.join(format!("{name}.json"));
        if let Ok(text) = std::fs::read_to_string(&json) {
            return parse_json_spec(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", json.display()));
        }
    }
    Ok(None)
}

/// The names of every plugin the folders hold (sockets, specs), sorted.
pub fn all_names(dirs: &PluginDirs) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    let entries = |dir: &Path| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (file, path) in entries(&dirs.sockets) {
        let nested = path.join(format!("{file}.sock"));
        let name = match file.strip_suffix(".sock") {
            Some(stem) if is_socket(&path) && !dirs.is_own(&path) => stem.to_string(),
            _ if is_socket(&nested) && !dirs.is_own(&nested) => file,
            _ => continue,
        };
        names.insert(name);
    }
    for dir in &dirs.specs {
        for (file, _) in entries(dir) {
            if let Some(stem) = file
                .strip_suffix(".spec")
                .or_else(|| file.strip_suffix(".json"))
            {
                names.insert(stem.to_string());
            }
        }
    }
    // A spec naming berth's own socket is no plugin either.
    let own =
        |n: &String| matches!(find_anywhere(dirs, n), Ok(Some(Addr::Unix(s))) if dirs.is_own(&s));
    names
        .into_iter()
        .filter(|n| valid_name(n) && !own(n))
        .collect()
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// `unix:///path` or `tcp://host:port` (Docker's spec file content).
pub fn parse_url(url: &str) -> Result<Addr, String> {
    if let Some(path) = url.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(format!("{url}: a unix address needs an absolute path"));
        }
        return Ok(Addr::Unix(PathBuf::from(path)));
    }
    if let Some(host) = url.strip_prefix("tcp://") {
        let host = host.trim_end_matches('/');
        if host
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(format!("{url}: expected tcp://HOST:PORT"));
        }
        return Ok(Addr::Tcp(host.to_string()));
    }
    Err(format!("{url}: unsupported address (unix:// or tcp://)"))
}

fn parse_json_spec(text: &str) -> Result<Addr, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Spec {
        addr: String,
    }
    let spec: Spec = serde_json::from_str(text).map_err(|e| e.to_string())?;
    parse_url(&spec.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_names() {
        assert_eq!(
            parse_url("unix:///run/p.sock"),
            Ok(Addr::Unix("/run/p.sock".into()))
        );
        assert_eq!(
            parse_url("tcp://127.0.0.1:8080"),
            Ok(Addr::Tcp("127.0.0.1:8080".into()))
        );
        assert!(parse_url("tcp://nohost").is_err());
        assert!(parse_url("unix://rel").is_err());
        assert!(parse_url("http://x").is_err());
        assert!(valid_name("my-plugin.v2") && !valid_name("../x") && !valid_name("a/b"));
    }

    #[test]
    fn sockets_come_before_specs_and_json_specs_work() {
        let dir = tempfile::tempdir().unwrap();
        let mut dirs = PluginDirs {
            sockets: dir.path().join("run"),
            specs: vec![dir.path().join("etc")],
            own: None,
        };
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("run/p2")).unwrap();
        assert_eq!(find(&dirs, "p1"), Ok(None));
        std::fs::write(
            dir.path().join("etc/p1.json"),
            r#"{"Name":"p1","Addr":"tcp://127.0.0.1:9"}"#,
        )
        .unwrap();
        assert_eq!(find(&dirs, "p1"), Ok(Some(Addr::Tcp("127.0.0.1:9".into()))));
        let sock = dir.path().join("run/p2/p2.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::fs::write(dir.path().join("etc/p2.spec"), "tcp://127.0.0.1:9\n").unwrap();
        assert_eq!(find(&dirs, "p2"), Ok(Some(Addr::Unix(sock.clone()))));
        assert_eq!(find(&dirs, "../p2"), Ok(None));
        assert_eq!(all_names(&dirs), ["p1", "p2"]);
        // berth's own plugin socket is never a plugin, under any name.
        dirs.own = Some(sock);
        assert!(find(&dirs, "p2").unwrap_err().contains("berth's own"));
        assert_eq!(all_names(&dirs), ["p1"]);
        std::fs::remove_file(dir.path().join("etc/p2.spec")).unwrap();
        assert_eq!(all_names(&dirs), ["p1"]);
        let own = format!("unix://{}/run/p2/../p2/p2.sock\n", dir.path().display());
        std::fs::write(dir.path().join("etc/loop.spec"), own).unwrap();
        assert_eq!(all_names(&dirs), ["p1"], "a spec naming berth's own socket");
    }
}
