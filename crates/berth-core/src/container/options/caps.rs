//! Capabilities: `--cap-add`, `--cap-drop` and `--privileged`, with
//! Docker's rules (moby `oci/caps`): names upper-cased and given a `CAP_`
//! prefix, `ALL` on either side, an unknown name refused at create.

use super::OptionsError;

/// Docker's default set, in Docker's order.
pub const DEFAULTS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability Linux defines, in bit order (bit = index).
pub const KNOWN: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `chown` → `CAP_CHOWN`; `all` → `ALL`; an unknown name is an error
/// worded as Docker's (`unknown capability: "CAP_FOO"`).
pub fn normalize(names: &[String]) -> Result<Vec<String>, String> {
    names
        .iter()
        .map(|name| {
            let upper = name.to_ascii_uppercase();
            if upper == "ALL" {
                return Ok(upper);
            }
            let full = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            if KNOWN.contains(&full.as_str()) {
                Ok(full)
            } else {
                Err(format!("unknown capability: {full:?}"))
            }
        })
        .collect()
}

/// Checks `CapAdd` and `CapDrop` at create (Docker: 400).
pub fn validate(add: &[String], drop: &[String]) -> Result<(), OptionsError> {
    normalize(add).map_err(|e| OptionsError::Invalid(format!("invalid CapAdd: {e}")))?;
    normalize(drop).map_err(|e| OptionsError::Invalid(format!("invalid CapDrop: {e}")))?;
    Ok(())
}

/// The container's capability set (moby `TweakCapabilities`): privileged
/// or `ALL` added → everything the daemon holds (minus drops); `ALL`
/// dropped → exactly the adds; otherwise the defaults minus drops, plus
/// the adds.
pub fn effective(add: &[String], drop: &[String], privileged: bool) -> Vec<String> {
    let add = normalize(add).unwrap_or_default();
    let drop = normalize(drop).unwrap_or_default();
    if privileged {
        return daemon_capabilities();
    }
    let without_drops = |caps: Vec<String>| -> Vec<String> {
        caps.into_iter().filter(|c| !drop.contains(c)).collect()
    };
    if add.iter().any(|c| c == "ALL") {
        return without_drops(daemon_capabilities());
    }
    if drop.iter().any(|c| c == "ALL") {
        return add;
    }
    let mut caps = without_drops(DEFAULTS.iter().map(|c| c.to_string()).collect());
    for cap in add {
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    caps
}

/// The daemon's own effective capabilities (what "all" can mean), from
/// `/proc/self/status`; every known one if that cannot be read.
pub fn daemon_capabilities() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    from_mask(mask.unwrap_or(u64::MAX))
}

/// Capability names of the bits set in `mask`.
fn from_mask(mask: u64) -> Vec<String> {
    KNOWN
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_normalised_and_unknown_ones_refused() {
        assert_eq!(
            normalize(&v(&["chown", "Cap_Kill", "all"])).unwrap(),
            v(&["CAP_CHOWN", "CAP_KILL", "ALL"])
        );
        let err = validate(&v(&["foo"]), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid CapAdd: unknown capability: \"CAP_FOO\""
        );
        let err = validate(&[], &v(&["bar"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid CapDrop: unknown capability: \"CAP_BAR\""
        );
    }

    #[test]
    fn sets_follow_dockers_rules() {
        assert_eq!(effective(&[], &[], false).len(), 14);
        let caps = effective(&v(&["SYS_ADMIN"]), &v(&["CHOWN"]), false);
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(caps.len(), 14);
        assert_eq!(
            effective(&v(&["NET_ADMIN"]), &v(&["ALL"]), false),
            v(&["CAP_NET_ADMIN"])
        );
        let all = effective(&v(&["ALL"]), &v(&["MKNOD"]), false);
        assert!(!all.contains(&"CAP_MKNOD".to_string()));
        assert!(all.len() > 14);
        assert_eq!(effective(&[], &v(&["ALL"]), true), daemon_capabilities());
    }

    #[test]
    fn masks_map_to_names_in_bit_order() {
        assert_eq!(from_mask(0b101), v(&["CAP_CHOWN", "CAP_DAC_READ_SEARCH"]));
        assert_eq!(from_mask(u64::MAX).len(), KNOWN.len());
    }
}
