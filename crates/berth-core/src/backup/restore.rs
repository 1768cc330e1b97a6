//! `berth volume restore`: a backup's content into a new volume (made
//! with the driver, options and labels the backup recorded) or into an
//! empty one, all or nothing, with import's guarantees (staged in the
//! volume, moved into place only when whole; a crash during the move is
//! finished at start-up). A new volume is made by import's `import_new`:
//! a `creating` row until whole, so a failure or a crash leaves none.
//!
//! Snapshots that restic made (no berth record) restore too, into a
//! volume the request names, made with the default driver.

use std::path::Path;
use std::sync::Arc;

use rustic_core::repofile::SnapshotFile;
use rustic_core::{LocalDestination, LsOptions, RestoreOptions};

use super::meta::{volume_of, BackupMeta};
use super::run::{with_progress, Progress};
use super::{BackupError, BackupService};
use crate::driver::DriverError;
use crate::volume::{CreateRequest, Volume, VolumeError};

/// The driver and options a restore recreates a volume with: a thin
/// volume's size cap, filesystem and root owner and mode; nothing of a
/// local volume's (its `type`, `device` and `o` name this host's devices
/// and folders: a backup, perhaps from another host or altered, must not
/// bind a host path); any other driver becomes the default one.
fn restorable(meta: &BackupMeta) -> (String, crate::driver::DriverOptions) {
    const THIN_KEYS: [&str; 5] = ["size", "fs", "uid", "gid", "mode"];
    match meta.driver.as_str() {
        "thin" => {
            let mut options = meta.options.clone();
            options.retain(|k, _| THIN_KEYS.contains(&k.as_str()));
            ("thin".to_string(), options)
        }
        other => {
            if other != "local" || !meta.options.is_empty() {
                tracing::warn!(driver = other, options = ?meta.options.keys().collect::<Vec<_>>(),
                    "restoring into a plain local volume: the backup's driver options are not reused");
            }
            (String::new(), Default::default())
        }
    }
}

/// Go's `os.FileMode` bits restic stores, as Unix permission bits.
fn unix_mode_of_go(go: u32) -> u32 {
    const GO_SETUID: u32 = 1 << 23;
    const GO_SETGID: u32 = 1 << 22;
    const GO_STICKY: u32 = 1 << 20;
    let mut mode = go & 0o777;
    for (go_bit, unix_bit) in [
        (GO_SETUID, 0o4000),
        (GO_SETGID, 0o2000),
        (GO_STICKY, 0o1000),
    ] {
        if go & go_bit != 0 {
            mode |= unix_bit;
        }
    }
    mode
}

/// The folder inside the snapshot that holds the volume: the one path a
/// berth backup (or a one-path restic backup) recorded, else the root.
fn content_path(snap: &SnapshotFile) -> String {
    let mut paths = snap.paths.iter();
    match (paths.next(), paths.next()) {
        (Some(only), None) => only.clone(),
        _ => "/".to_string(),
    }
}

impl BackupService {
    /// Restores `snapshot` (an ID, a prefix of one, or `latest`) of
    /// repository `repo` into volume `target`, or into a new volume named
    /// as the backed-up one; see the module docs.
    pub fn restore(
        &self,
        repo: &str,
        snapshot: &str,
        target: Option<&str>,
        progress: Arc<Progress>,
    ) -> Result<Volume, BackupError> {
        let (_guard, _, opened) = self.open_repo(repo, &progress)?;
        let snap = opened
            .get_snapshot_from_str(snapshot, |_| true)
            .map_err(|_| BackupError::NoSuchSnapshot {
                repo: repo.to_string(),
                snapshot: snapshot.to_string(),
            })?;
        let meta = BackupMeta::from_snapshot(&snap);
        let name = match (target, &meta) {
            (Some(t), _) => t.to_string(),
            (None, Some(m)) => m.volume.clone(),
            (None, None) => {
                return Err(BackupError::NotAVolumeBackup {
                    repo: repo.to_string(),
                    snapshot: snapshot.to_string(),
                })
            }
        };
        let exists = match self.volumes.get(&name) {
            Ok(_) => true,
            Err(VolumeError::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        let indexed = opened
            .to_indexed()
            .map_err(|e| BackupError::repository(repo, &e))?;
        progress.start();
        // A panic of the library (it unwraps I/O errors while writing) is
        // caught inside the fill, so the clean-up still runs.
        let fill = |dest: &Path| {
            with_progress(repo, &progress, || {
                restore_tree(&indexed, repo, &snap, dest)
            })
        };
        match exists {
            true => self.fill_volume(&name, fill)?,
            false => self.restore_new(&name, meta.as_ref(), fill)?,
        }
        let from = snap.id.to_hex().to_string();
        let source = volume_of(&snap).unwrap_or("");
        self.publish(
            "restore",
            &name,
            &[("repo", repo), ("snapshot", &from), ("from", source)],
        );
        Ok(self.volumes.get(&name)?)
    }

    /// Restores into a new volume made as the backup recorded it (or with
    /// the defaults) by import's `import_new`: a `creating` row until it
    /// is whole and synced, so a failure or a crash leaves no volume.
    fn restore_new(
        &self,
        name: &str,
        meta: Option<&BackupMeta>,
        fill: impl FnOnce(&Path) -> Result<(), BackupError>,
    ) -> Result<(), BackupError> {
        let (driver, options) = meta.map(restorable).unwrap_or_default();
        let request = CreateRequest {
            name: Some(name.to_string()),
            driver,
            options,
            labels: meta.map(|m| m.labels.clone()).unwrap_or_default(),
        };
        let mut failure = None;
        let result = self
            .volumes
            .import_new(request, |root| carry(name, &mut failure, fill(root)));
        settle(result.map(|_| ()), failure)
    }

    /// Import's staging for content from the repository: `fill` restores
    /// into the staging folder; the volume must hold nothing else.
    fn fill_volume(
        &self,
        name: &str,
        fill: impl FnOnce(&Path) -> Result<(), BackupError>,
    ) -> Result<(), BackupError> {
        let mut failure = None;
        let result = self.volumes.import_with(name, |staging| {
            let outcome = refuse_if_not_empty(name, staging).and_then(|()| fill(staging));
            carry(name, &mut failure, outcome).map(|()| true)
        });
        settle(result, failure)
    }
}

/// A restore's own error through the volume service's fill callback:
/// kept in `failure` and passed on as a volume error (whose text it is).
fn carry(
    name: &str,
    failure: &mut Option<BackupError>,
    outcome: Result<(), BackupError>,
) -> Result<(), VolumeError> {
    outcome.map_err(|e| {
        let message = e.to_string();
        *failure = Some(e);
        VolumeError::driver("restore", name, DriverError::Unsupported(message))
    })
}

/// The restore's own error if it failed, else the service's.
fn settle(
    result: Result<(), VolumeError>,
    failure: Option<BackupError>,
) -> Result<(), BackupError> {
    match (result, failure) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
    }
}

fn io_error(name: &str, what: &str, e: std::io::Error) -> BackupError {
    VolumeError::driver("restore", name, DriverError::io(what.to_string(), e)).into()
}

/// Refuses a volume that holds anything besides the staging folder.
fn refuse_if_not_empty(name: &str, staging: &Path) -> Result<(), BackupError> {
    let root = staging.parent().unwrap_or(staging);
    let io = |e| io_error(name, "reading the volume", e);
    for entry in std::fs::read_dir(root).map_err(io)? {
        if entry.map_err(io)?.path() != staging {
            return Err(BackupError::TargetNotEmpty(name.to_string()));
        }
    }
    Ok(())
}

/// Restores the snapshot's content folder into `staging`, then gives
/// `staging` that folder's own owner and mode (rustic leaves the
/// destination's root as it is).
fn restore_tree(
    repo: &rustic_core::Repository<rustic_core::IndexedFullStatus>,
    name: &str,
    snap: &SnapshotFile,
    staging: &Path,
) -> Result<(), BackupError> {
    let err = |e: Box<rustic_core::RusticError>| BackupError::repository(name, &e);
    let node = repo
        .node_from_snapshot_and_path(snap, &content_path(snap))
        .map_err(err)?;
    let ls = repo.ls(&node, &LsOptions::default()).map_err(err)?;
    refuse_hostile_names(name, ls.clone())?;
    let dest = LocalDestination::new(&staging.to_string_lossy(), false, false).map_err(err)?;
    let mut options = RestoreOptions::default().numeric_id(true);
    // Holes stay holes (a sparse file is not made dense).
    options.sparse = serde_json::from_str("\"ByContent\"").ok();
    let plan = repo
        .prepare_restore(&options, ls.clone(), &dest, false)
        .map_err(err)?;
    repo.restore(plan, &options, ls, &dest).map_err(err)?;
    let io = |e| io_error(name, "setting the volume root's owner and mode", e);
    if let Some(mode) = node.meta.mode {
        let perms = std::os::unix::fs::PermissionsExt::from_mode(unix_mode_of_go(mode));
        std::fs::set_permissions(staging, perms).map_err(io)?;
    }
    let uid = node.meta.uid.map(nix::unistd::Uid::from_raw);
    let gid = node.meta.gid.map(nix::unistd::Gid::from_raw);
    nix::unistd::chown(staging, uid, gid).map_err(|e| io(e.into()))?;
    Ok(())
}

/// Refuses a snapshot whose tree could write outside the target: the
/// library joins each stored name onto the destination unchecked, so a
/// name that is `..`, absolute, or holds a `/` (which could pass through a
/// symlink of the same tree) would escape the volume; so could two entries
/// of one path (a symlink and a folder). Every name must be one plain path
/// component, every path unique.
fn refuse_hostile_names(
    repo: &str,
    items: impl Iterator<
        Item = rustic_core::RusticResult<(std::path::PathBuf, rustic_core::repofile::Node)>,
    >,
) -> Result<(), BackupError> {
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let (path, node) = item.map_err(|e| BackupError::repository(repo, &e))?;
        let name = node.name();
        if !is_plain_name(&name) || !is_plain_path(&path) || !seen.insert(path.clone()) {
            return Err(BackupError::HostileSnapshot {
                repo: repo.to_string(),
                path: path.display().to_string(),
            });
        }
    }
    Ok(())
}

/// One path component, not `.` or `..`, no `/`, no NUL.
fn is_plain_name(name: &std::ffi::OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    !bytes.is_empty()
        && name != "."
        && name != ".."
        && !bytes.contains(&b'/')
        && !bytes.contains(&0)
}

/// A relative path of plain components only.
fn is_plain_path(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, std::path::Component::Normal(n) if is_plain_name(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_specific_options_are_not_restored() {
        let meta = |driver: &str, opts: &[(&str, &str)]| BackupMeta {
            format: "berth-volume/1".into(),
            volume: "v".into(),
            driver: driver.into(),
            options: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            labels: Default::default(),
            consistency: crate::volume::Consistency::Unmounted,
            stopped_containers: vec![],
        };
        let bind = meta(
            "local",
            &[("type", "none"), ("o", "bind"), ("device", "/etc")],
        );
        assert_eq!(restorable(&bind), (String::new(), Default::default()));
        let thin = meta("thin", &[("size", "1G"), ("fs", "xfs"), ("colour", "red")]);
        let (driver, options) = restorable(&thin);
        assert_eq!(driver, "thin");
        assert_eq!(options.keys().collect::<Vec<_>>(), ["fs", "size"]);
        assert_eq!(restorable(&meta("nfs-plugin", &[("addr", "x")])).0, "");
    }

    #[test]
    fn only_plain_names_are_restored() {
        use std::ffi::OsStr;
        for good in ["a", "f\u{e9}", ".hidden", "a b", "..."] {
            assert!(is_plain_name(OsStr::new(good)), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "/etc", "a\0b"] {
            assert!(!is_plain_name(OsStr::new(bad)), "{bad:?}");
        }
        assert!(is_plain_path(Path::new("a/b/c")));
        for bad in ["../x", "/etc/x", "a/../../x", "./a"] {
            assert!(!is_plain_path(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn go_modes_become_unix_modes() {
        assert_eq!(unix_mode_of_go(0o755 | (1 << 31)), 0o755); // a folder
        assert_eq!(unix_mode_of_go(0o777 | (1 << 20) | (1 << 31)), 0o1777);
        assert_eq!(unix_mode_of_go(0o755 | (1 << 23)), 0o4755);
        assert_eq!(unix_mode_of_go(0o750 | (1 << 22)), 0o2750);
    }
}
