//! `-v`/`Binds` specifications: `name:/dst[:opts]`, `/dst` (anonymous
//! volume), `/host:/dst[:opts]` (bind), with Docker's checks.

use super::ContainerError;

/// What a `-v` entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindSource {
    /// A host path.
    Host(String),
    /// A named volume.
    Volume(String),
    /// A new anonymous volume.
    Anonymous,
}

/// One parsed `-v` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindSpec {
    pub source: BindSource,
    pub destination: String,
    pub readonly: bool,
    pub nocopy: bool,
    /// The mode string as given (shown as `Mode` by inspect).
    pub mode: String,
}

const MODES: [&str; 12] = [
    "ro",
    "rw",
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
    Ok(BindSpec {
        source,
        destination: clean(destination),
        readonly: flags.contains(&"ro"),
        nocopy: flags.contains(&"nocopy"),
        mode: mode.to_string(),
    })
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
