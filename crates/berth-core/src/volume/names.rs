//! What a volume name may be, and what makes a volume anonymous.
//!
//! This module is the one place that decides "anonymous": every path that
//! makes a volume without a name (the API, `-v /dst`, image `VOLUME`) goes
//! through [`anonymous_name_and_labels`].

use std::collections::BTreeMap;
use std::sync::OnceLock;

use rand::RngCore;
use regex::Regex;

use super::VolumeError;

/// The label Docker puts on anonymous volumes (value `""`).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Docker's local volume name rule: two characters or more.
const NAME_PATTERN: &str = "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$";

/// Longest name: one file-name component on the host (NAME_MAX). Docker
/// has no such check and fails later with a 500 from mkdir.
pub const MAX_NAME_LEN: usize = 255;

/// Checks a user-given name against the rule.
pub fn validate_name(name: &str) -> Result<(), VolumeError> {
    if name.chars().count() == 1 {
        return Err(VolumeError::NameTooShort(name.to_string()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(VolumeError::NameTooLong(name.to_string()));
    }
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(NAME_PATTERN).expect("static pattern"));
    if re.is_match(name) {
        Ok(())
    } else {
        Err(VolumeError::InvalidName(name.to_string()))
    }
}

/// Checks a snapshot name given to any snapshot verb: a volume name's
/// rules, so it is one file name in the volume's snapshot folder and can
/// never reach another volume's files (`..`, `/`).
pub fn validate_snapshot_name(snap: &str) -> Result<(), VolumeError> {
    match validate_name(snap) {
        Ok(()) => Ok(()),
        Err(_) => Err(VolumeError::InvalidSnapshotName(snap.to_string())),
    }
}

/// A random 64-hex-character ID, as Docker's `stringid.GenerateRandomID`.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Docker's ID of a container or network: 32 random bytes in hex,
/// re-rolled while the short form is all digits (it would read as a
/// number).
pub fn new_object_id() -> String {
    loop {
        let id = random_id();
        if !id[..12].bytes().all(|b| b.is_ascii_digit()) {
            return id;
        }
    }
}

/// A fresh anonymous volume name and `labels` with the anonymous label added.
pub fn anonymous_name_and_labels(
    mut labels: BTreeMap<String, String>,
) -> (String, BTreeMap<String, String>) {
    labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
    (random_id(), labels)
}

/// Whether a volume with these labels is anonymous.
pub fn is_anonymous(labels: &BTreeMap<String, String>) -> bool {
    labels.contains_key(ANONYMOUS_LABEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rule_matches_docker() {
        for ok in ["ab", "a1", "my-vol", "my_vol.2", "A0", &"x".repeat(255)] {
            assert!(validate_name(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "a",
            "-ab",
            ".ab",
            "a/b",
            "..",
            "a b",
            "a:b",
            "ü-vol",
            &"x".repeat(256),
        ] {
            assert!(validate_name(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn anonymous_names_are_hex_and_labelled() {
        let (name, labels) = anonymous_name_and_labels(BTreeMap::new());
        assert_eq!(name.len(), 64);
        assert!(name.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(validate_name(&name).is_ok());
        assert!(is_anonymous(&labels));
        assert_eq!(labels[ANONYMOUS_LABEL], "");
    }
}
