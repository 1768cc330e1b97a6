//! Whether a backup holds everything its source held. rustic skips an
//! entry it cannot read (logging a warning) and still writes the
//! snapshot, as restic does; berth counts the entries of the source
//! itself and says how many the snapshot lacks, naming the ones it cannot
//! open, so a backup with holes is never reported as whole (restic exits
//! 3 for this; so does `berth volume backup`).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// At most this many unreadable paths are named in a warning.
const NAMED: usize = 10;

/// What a walk of a backup's source found.
#[derive(Debug, Default, PartialEq)]
pub(super) struct SourceCount {
    /// Files, links and other entries that are not folders, as rustic
    /// counts them (`total_files_processed`), on the source's filesystem.
    pub entries: u64,
    /// Paths under the source (relative) that could not be opened or
    /// listed, in walk order.
    pub unreadable: Vec<String>,
}

/// Counts the non-folder entries under `root` that rustic would back up
/// (folders on another filesystem are skipped, as `one_file_system`
/// does); with `open_files`, also tries to open each regular file.
pub(super) fn count_source(root: &Path, open_files: bool) -> std::io::Result<SourceCount> {
    let device = std::fs::symlink_metadata(root)?.dev();
    let mut out = SourceCount::default();
    let mut folders: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(_) => {
                out.unreadable.push(relative(root, &folder));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                out.unreadable.push(relative(root, &path));
                continue;
            };
            if kind.is_dir() {
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.dev() == device) {
                    folders.push(path);
                }
                continue;
            }
            out.entries += 1;
            if open_files && kind.is_file() && File::open(&path).is_err() {
                out.unreadable.push(relative(root, &path));
            }
        }
    }
    Ok(out)
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    format!("/{}", rel.display())
}

/// The warning for a backup of `root` whose snapshot holds `backed_up`
/// entries, if it lacks any; walks `root` (again, naming what cannot be
/// opened, only when something is missing).
pub(super) fn missing_warning(root: &Path, backed_up: u64) -> Option<String> {
    let counted = count_source(root, false).ok()?;
    if counted.entries <= backed_up && counted.unreadable.is_empty() {
        return None;
    }
    let named = count_source(root, true)
        .map(|c| c.unreadable)
        .unwrap_or_default();
    Some(describe(counted.entries, backed_up, &named))
}

fn describe(entries: u64, backed_up: u64, unreadable: &[String]) -> String {
    let mut text = match entries.checked_sub(backed_up) {
        Some(missing) if missing > 0 => format!(
            "the backup is incomplete: {missing} of {entries} files, links and other \
             entries of the volume are not in it (they could not be read, or changed \
             during the backup)"
        ),
        _ => "the backup may be incomplete: parts of the volume could not be read".to_string(),
    };
    if !unreadable.is_empty() {
        let named = crate::error::some_of(unreadable, NAMED);
        text.push_str(&format!("; unreadable: {named}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_entry_but_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"x").unwrap();
        std::fs::write(root.join("g"), b"y").unwrap();
        std::os::unix::fs::symlink("g", root.join("a/link")).unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("dangling")).unwrap();
        let counted = count_source(root, true).unwrap();
        assert_eq!(counted.entries, 4);
        assert!(counted.unreadable.is_empty());
        assert_eq!(missing_warning(root, 4), None);
    }

    #[test]
    fn a_snapshot_with_fewer_entries_is_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        std::fs::write(dir.path().join("g"), b"x").unwrap();
        let warning = missing_warning(dir.path(), 1).unwrap();
        assert!(warning.contains("1 of 2 files"), "{warning}");
    }

    #[test]
    fn the_warning_names_at_most_ten_paths() {
        let names: Vec<String> = (0..12).map(|i| format!("/f{i}")).collect();
        let text = describe(20, 8, &names);
        assert!(text.contains("12 of 20"), "{text}");
        assert!(text.contains("/f9") && !text.contains("/f10,"), "{text}");
        assert!(text.ends_with("and 2 more"), "{text}");
        let text = describe(5, 5, &names[..1]);
        assert!(text.starts_with("the backup may be incomplete"), "{text}");
    }
}
