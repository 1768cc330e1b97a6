//! `--security-opt`, the namespace modes (`--pid`, `--ipc`, `--uts`,
//! `--userns`, `--cgroupns`) and the log driver, with Docker's values and
//! wording (moby `daemon/daemon_unix.go parseSecurityOpt`,
//! `api/types/container/hostconfig.go`, `daemon/logger/factory.go`).

use std::collections::BTreeMap;

use super::{unsupported, OptionsError};
use crate::container::logrotate::{parse_log_opts, Rotation};

/// What `--security-opt` asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOptions {
    pub no_new_privileges: bool,
    /// `seccomp=unconfined`: no filter.
    pub seccomp_unconfined: bool,
    /// `writable-cgroups`: /sys/fs/cgroup mounted read-write.
    pub writable_cgroups: bool,
}

impl SecurityOptions {
    pub fn parse(opts: &[String]) -> Result<Self, OptionsError> {
        let mut out = SecurityOptions::default();
        for opt in opts {
            out.apply(opt)?;
        }
        Ok(out)
    }

    fn apply(&mut self, opt: &str) -> Result<(), OptionsError> {
        match opt {
            "no-new-privileges" => self.no_new_privileges = true,
            "writable-cgroups" => self.writable_cgroups = true,
            "disable" => {} // SELinux labelling off: this host has no SELinux
            _ => {
                let (key, value) = opt
                    .split_once('=')
                    .or_else(|| opt.split_once(':'))
                    .ok_or_else(|| invalid(1, opt))?;
                self.apply_pair(opt, key, value)?;
            }
        }
        Ok(())
    }

    fn apply_pair(&mut self, opt: &str, key: &str, value: &str) -> Result<(), OptionsError> {
        match key {
            "no-new-privileges" => {
                self.no_new_privileges = parse_bool(value).ok_or_else(|| invalid(2, opt))?
            }
            "writable-cgroups" => {
                self.writable_cgroups = parse_bool(value).ok_or_else(|| invalid(2, opt))?
            }
            "seccomp" => match value {
                "unconfined" => self.seccomp_unconfined = true,
                "builtin" => self.seccomp_unconfined = false,
                _ => {
                    return Err(unsupported(
                        "custom seccomp profiles",
                        "use seccomp=unconfined or the built-in profile",
                    ))
                }
            },
            "apparmor" if value == "unconfined" || !apparmor_enabled() => {}
            "apparmor" => {
                return Err(unsupported(
                    "AppArmor profiles",
                    "berth does not load AppArmor profiles",
                ))
            }
            "label" if !selinux_enabled() => {}
            "label" => {
                return Err(unsupported(
                    "SELinux labels",
                    "berth does not label containers",
                ))
            }
            _ => return Err(invalid(2, opt)),
        }
        Ok(())
    }
}

/// Docker's wording (the number says which check failed).
fn invalid(which: u8, opt: &str) -> OptionsError {
    OptionsError::Invalid(format!("invalid --security-opt {which}: {opt:?}"))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// `--pid` (and any mode that may name another container).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NamespaceMode {
    /// A namespace of its own.
    #[default]
    Private,
    /// The host's.
    Host,
    /// Another container's (name or ID as given).
    Container(String),
}

/// `--ipc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IpcMode {
    /// Its own namespace and /dev/shm (`private`, `shareable`, default).
    #[default]
    Private,
    /// Its own namespace and no /dev/shm.
    None,
    /// The host's namespace and /dev/shm.
    Host,
}

/// The namespace modes, checked.
pub struct Modes {
    pub pid: NamespaceMode,
    pub ipc: IpcMode,
    pub uts_host: bool,
    pub cgroupns_private: bool,
}

impl Modes {
    pub fn parse(
        pid: &str,
        ipc: &str,
        uts: &str,
        userns: &str,
        cgroupns: &str,
    ) -> Result<Self, OptionsError> {
        let bad = |what: &str, v: &str| OptionsError::Invalid(format!("invalid {what} mode: {v}"));
        let pid = match pid {
            "" => NamespaceMode::Private,
            "host" => NamespaceMode::Host,
            other => match other.strip_prefix("container:") {
                Some(c) if !c.is_empty() => NamespaceMode::Container(c.to_string()),
                _ => return Err(bad("PID", other)),
            },
        };
        let ipc = match ipc {
            "" | "private" | "shareable" => IpcMode::Private,
            "none" => IpcMode::None,
            "host" => IpcMode::Host,
            other if other.starts_with("container:") => {
                return Err(unsupported(
                    "--ipc container:…",
                    "sharing another container's IPC namespace is not implemented yet",
                ))
            }
            other => return Err(bad("IPC", other)),
        };
        let uts_host = match uts {
            "" => false,
            "host" => true,
            other => return Err(bad("UTS", other)),
        };
        if !matches!(userns, "" | "host") {
            return Err(unsupported(
                "--userns",
                "berth does not remap user namespaces",
            ));
        }
        let cgroupns_private = match cgroupns {
            "private" => true,
            // Docker's default on cgroup v1 hosts such as these is `host`.
            "" | "host" => false,
            other => {
                return Err(OptionsError::Invalid(format!(
                    "invalid cgroup namespace mode: {other}"
                )))
            }
        };
        Ok(Modes {
            pid,
            ipc,
            uts_host,
            cgroupns_private,
        })
    }
}

/// Log drivers Docker has built in, which berth does not (yet).
const DOCKER_LOG_DRIVERS: [&str; 9] = [
    "awslogs", "fluentd", "gcplogs", "gelf", "journald", "local", "splunk", "syslog", "none",
];

/// `--log-driver`/`--log-opt`: json-file, whose rotation options
/// (`max-size`, `max-file`, `compress`) are checked and returned; Docker's
/// other drivers are refused by name, unknown ones with Docker's plugin
/// wording.
pub fn check_log_config(
    config: Option<(&String, &Option<BTreeMap<String, String>>)>,
) -> Result<Rotation, OptionsError> {
    let Some((kind, opts)) = config else {
        return Ok(Rotation::default());
    };
    match kind.as_str() {
        "" | "json-file" => {}
        known if DOCKER_LOG_DRIVERS.contains(&known) => {
            return Err(unsupported(
                &format!("the {known} log driver"),
                "json-file is the only one",
            ))
        }
        unknown => {
            return Err(OptionsError::Invalid(format!(
                "error looking up logging plugin {unknown}: plugin {unknown:?} not found"
            )))
        }
    }
    // json-file: its rotation, checked.
    parse_log_opts(&opts.clone().unwrap_or_default()).map_err(OptionsError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<SecurityOptions, OptionsError> {
        SecurityOptions::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn security_options_follow_docker() {
        let o = opts(&[
            "no-new-privileges",
            "seccomp=unconfined",
            "label=disable",
            "apparmor=unconfined",
        ])
        .unwrap();
        assert!(o.no_new_privileges && o.seccomp_unconfined);
        assert!(
            !opts(&["no-new-privileges=false"])
                .unwrap()
                .no_new_privileges
        );
        assert!(opts(&["no-new-privileges:true"]).unwrap().no_new_privileges);
        assert_eq!(
            opts(&["bogus"]).unwrap_err().to_string(),
            "invalid --security-opt 1: \"bogus\""
        );
        assert_eq!(
            opts(&["foo=bar"]).unwrap_err().to_string(),
            "invalid --security-opt 2: \"foo=bar\""
        );
        assert_eq!(
            opts(&["systempaths=unconfined"]).unwrap_err().to_string(),
            "invalid --security-opt 2: \"systempaths=unconfined\""
        );
        assert!(opts(&["no-new-privileges=maybe"]).is_err());
        assert!(opts(&["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]).is_err());
    }

    #[test]
    fn namespace_modes_follow_docker() {
        let m = Modes::parse("host", "none", "host", "host", "private").unwrap();
        assert_eq!(m.pid, NamespaceMode::Host);
        assert_eq!(m.ipc, IpcMode::None);
        assert!(m.uts_host && m.cgroupns_private);
        let m = Modes::parse("container:db", "", "", "", "").unwrap();
        assert_eq!(m.pid, NamespaceMode::Container("db".into()));
        assert_eq!(
            Modes::parse("bogus", "", "", "", "")
                .err()
                .unwrap()
                .to_string(),
            "invalid PID mode: bogus"
        );
        assert_eq!(
            Modes::parse("", "weird", "", "", "")
                .err()
                .unwrap()
                .to_string(),
            "invalid IPC mode: weird"
        );
        assert!(Modes::parse("container:", "", "", "", "").is_err());
        assert!(Modes::parse("", "", "", "remap", "").is_err());
    }

    #[test]
    fn log_drivers_follow_docker() {
        let none = None;
        assert!(check_log_config(Some((&"json-file".to_string(), &none))).is_ok());
        let err = check_log_config(Some((&"foo".to_string(), &none))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error looking up logging plugin foo: plugin \"foo\" not found"
        );
        let rotation = Some(BTreeMap::from([("max-size".to_string(), "1m".to_string())]));
        assert!(check_log_config(Some((&"json-file".to_string(), &rotation))).is_ok());
        let tag = Some(BTreeMap::from([("tag".to_string(), "x".to_string())]));
        assert!(check_log_config(Some((&"json-file".to_string(), &tag))).is_err());
        let bogus = Some(BTreeMap::from([("nope".to_string(), "1".to_string())]));
        let err = check_log_config(Some((&"".to_string(), &bogus))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown log opt 'nope' for json-file log driver"
        );
    }
}
