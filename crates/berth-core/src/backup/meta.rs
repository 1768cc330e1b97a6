//! What a backup records about its volume, and how a backup is shown.
//!
//! Each snapshot carries the tags `berth` and `volume=<name>` (so restic's
//! `--tag` filters find a volume's backups) plus the user's own, the
//! volume's name as its label, and a small JSON document in its
//! description: driver, options (the size cap among them), labels, and
//! how the content was made consistent. Restore recreates the volume
//! from that document.

use std::collections::BTreeMap;

use rustic_core::repofile::SnapshotFile;
use serde::{Deserialize, Serialize};

use crate::volume::{Consistency, Volume};

/// The tag every berth backup carries.
pub const BERTH_TAG: &str = "berth";
/// The tag naming the volume: `volume=<name>`.
pub const VOLUME_TAG_PREFIX: &str = "volume=";
/// The tag of a backup that lacks entries of its volume it could not read.
pub const INCOMPLETE_TAG: &str = "berth-incomplete";

/// The volume a backup was taken of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupMeta {
    /// Always "berth-volume/1": what this document is.
    pub format: String,
    pub volume: String,
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub consistency: Consistency,
    /// Containers stopped for the backup (and started again after it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_containers: Vec<String>,
}

const FORMAT: &str = "berth-volume/1";

impl BackupMeta {
    pub fn of(volume: &Volume, consistency: Consistency, stopped: Vec<String>) -> Self {
        let consistency = match consistency {
            Consistency::Unmounted if !stopped.is_empty() => Consistency::Stopped,
            other => other,
        };
        BackupMeta {
            stopped_containers: stopped,
            format: FORMAT.to_string(),
            volume: volume.name.clone(),
            driver: volume.driver.clone(),
            options: volume.options.clone(),
            labels: volume.labels.clone(),
            consistency,
        }
    }

    /// The document in a snapshot's description, if it holds one.
    pub fn from_snapshot(snap: &SnapshotFile) -> Option<Self> {
        let meta: BackupMeta = serde_json::from_str(snap.description.as_deref()?).ok()?;
        (meta.format == FORMAT).then_some(meta)
    }
}

/// One backup, as `berth volume backups` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupEntry {
    pub repo: String,
    /// The snapshot's full ID.
    pub id: String,
    /// The first 8 hex digits (what restic shows).
    pub short_id: String,
    /// RFC 3339.
    pub time: String,
    /// `None` for a snapshot berth did not make.
    pub volume: Option<String>,
    pub driver: Option<String>,
    /// The user's tags (not `berth` or `volume=`).
    pub tags: Vec<String>,
    pub paths: Vec<String>,
    /// Bytes this backup added to the repository (before compression).
    pub data_added: Option<u64>,
    /// Bytes this backup added, packed (compressed, encrypted).
    pub data_added_packed: Option<u64>,
    /// Bytes of file content the backup covered.
    pub total_size: Option<u64>,
    pub files: Option<u64>,
    pub consistency: Option<Consistency>,
    /// Containers stopped for the backup.
    pub stopped_containers: Vec<String>,
    /// It lacks entries of the volume it could not read.
    pub incomplete: bool,
}

impl BackupEntry {
    pub fn of(repo: &str, snap: &SnapshotFile) -> Self {
        let meta = BackupMeta::from_snapshot(snap);
        let summary = snap.summary.as_ref();
        let id = snap.id.to_hex().to_string();
        BackupEntry {
            repo: repo.to_string(),
            short_id: id[..8].to_string(),
            id,
            time: snap.time.timestamp().to_string(),
            volume: meta.as_ref().map(|m| m.volume.clone()),
            driver: meta.as_ref().map(|m| m.driver.clone()),
            tags: user_tags(snap),
            paths: snap.paths.iter().cloned().collect(),
            data_added: summary.map(|s| s.data_added),
            data_added_packed: summary.map(|s| s.data_added_packed),
            total_size: summary.map(|s| s.total_bytes_processed),
            files: summary.map(|s| s.total_files_processed),
            consistency: meta.as_ref().map(|m| m.consistency),
            stopped_containers: meta.map(|m| m.stopped_containers).unwrap_or_default(),
            incomplete: snap.tags.contains(INCOMPLETE_TAG),
        }
    }
}

/// The volume name a snapshot is tagged with.
pub fn volume_of(snap: &SnapshotFile) -> Option<&str> {
    snap.tags
        .iter()
        .find_map(|t| t.strip_prefix(VOLUME_TAG_PREFIX))
}

fn user_tags(snap: &SnapshotFile) -> Vec<String> {
    snap.tags
        .iter()
        .filter(|t| ![BERTH_TAG, INCOMPLETE_TAG].contains(&t.as_str()))
        .filter(|t| !t.starts_with(VOLUME_TAG_PREFIX))
        .cloned()
        .collect()
}

/// The longest tag, in bytes (every list of backups carries the tags).
pub const MAX_TAG_LEN: usize = 255;
/// The most tags one backup may carry.
pub const MAX_TAGS: usize = 64;

/// A user's tags: at most [`MAX_TAGS`], each as [`check_tag`] wants.
pub fn check_tags(tags: &[String]) -> Result<(), String> {
    if tags.len() > MAX_TAGS {
        return Err(format!("a backup carries at most {MAX_TAGS} tags"));
    }
    tags.iter().try_for_each(|t| check_tag(t))
}

/// A user's tag is one restic tag: no commas (they separate tags), no
/// control characters, and not one of berth's own.
pub fn check_tag(tag: &str) -> Result<(), String> {
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("a tag is at most {MAX_TAG_LEN} bytes"));
    }
    if tag.is_empty() || tag.contains(',') || tag.chars().any(char::is_control) {
        return Err(format!(
            "invalid tag {tag:?}: no commas or control characters"
        ));
    }
    if tag == BERTH_TAG || tag == INCOMPLETE_TAG || tag.starts_with(VOLUME_TAG_PREFIX) {
        return Err(format!("tag {tag:?} is berth's own"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked() {
        assert!(check_tag("nightly").is_ok());
        for bad in ["", "a,b", "berth", "volume=x", "a\nb"] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
        let many = |n: usize| vec!["t".to_string(); n];
        assert!(check_tags(&many(MAX_TAGS)).is_ok());
        assert!(check_tags(&many(MAX_TAGS + 1))
            .unwrap_err()
            .contains("at most"));
        assert!(check_tags(&["x".repeat(MAX_TAG_LEN + 1)]).is_err());
    }
}
