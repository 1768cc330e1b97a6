//! Spare folders for the local driver's creates, made ahead of time.
//!
//! A local volume is two folders, `volumes/<name>/_data`. Making them is two
//! inode allocations, and on a filesystem that has seen many deletions the
//! allocator's search is most of a create's time (ext4 without a journal
//! checks each candidate inode for a recent delete: 40–80 % of the
//! daemon's CPU with 50 clients creating, measured with `perf`). So a
//! thread makes empty pairs `volumes/.spare/<n>/_data` while creates and
//! removes are quiet, and a create renames one into place: one directory
//! entry, no allocation. With none left, a create makes its folders itself.
//!
//! The pool fits the bursts the daemon sees: it starts at [`INITIAL`]
//! spares and grows to twice the largest burst of creates (creates with no
//! quiet of [`QUIET`] between them), up to the daemon's maximum, so a daemon
//! that makes a few volumes never makes a thousand spares.
//!
//! The removed volumes' folders are never reused: a spare was made by this
//! thread and has never held anything. Spares are not synced, as a create's
//! own folders are not (the row is the durable record; start-up makes the
//! folders of a row that lacks them). `.spare` is mode 0700, and start-up
//! empties it (a spare of an earlier run is not trusted to be empty); a
//! filesystem mounted there is left alone and no spares are kept. A taken
//! spare's times are set to now, as a fresh folder's would be. Spares are
//! made only while a tenth of the filesystem's space and inodes is free,
//! so the pool never takes what a user just freed on a full disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// The folder under `volumes/` that spares wait in. No valid volume name.
pub const SPARE_DIR: &str = ".spare";

/// Spares are made only after creates and removes have been quiet this
/// long, so the thread does not compete with a burst of them for the CPU.
const QUIET: Duration = Duration::from_millis(50);

/// Pairs made between two checks for quiet.
const CHUNK: usize = 32;

/// Spares kept before any burst was seen.
const INITIAL: usize = 32;

/// The pool of spares and what its thread needs.
#[derive(Debug)]
pub(super) struct Spares {
    dir: PathBuf,
    /// The most spares the pool grows to.
    max: usize,
    state: Mutex<PoolState>,
    /// Wakes the thread when a spare was taken.
    taken: Condvar,
}

#[derive(Debug)]
struct PoolState {
    /// Names of the spares ready under `dir`.
    ready: Vec<u64>,
    next: u64,
    /// The last create or remove of a local volume.
    last_busy: Instant,
    /// Creates since the last quiet.
    burst: usize,
    /// Spares the pool is kept at now.
    target: usize,
    /// Whether the last failure to make a spare was logged (once, not at
    /// every retry).
    warned: bool,
}

impl Spares {
    /// Empties `volumes/.spare` (made 0700 if missing) and starts the
    /// thread that keeps spares in it, at most `max`. The thread ends when
    /// the pool is dropped. `None` if the folder cannot be made (creates
    /// then make their own folders).
    pub(super) fn start(volumes_dir: &Path, max: usize) -> Option<Arc<Self>> {
        let dir = volumes_dir.join(SPARE_DIR);
        if let Err(e) = reset_dir(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "no spare volume folders");
            return None;
        }
        let spares = Arc::new(Spares {
            dir,
            max,
            state: Mutex::new(PoolState {
                ready: Vec::new(),
                next: 0,
                last_busy: Instant::now() - QUIET,
                burst: 0,
                target: INITIAL.min(max),
                warned: false,
            }),
            taken: Condvar::new(),
        });
        let weak = Arc::downgrade(&spares);
        let spawned = std::thread::Builder::new()
            .name("volume-spares".into())
            .spawn(move || refill(&weak));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the spare volume folder thread");
        }
        Some(spares)
    }

    /// Renames a spare to `to` (a volume's folder, with its `_data`).
    /// `false`, nothing changed, if there is no spare or `to` exists.
    pub(super) fn take_into(&self, to: &Path) -> bool {
        let mut state = self.state.lock();
        if state.last_busy.elapsed() >= QUIET {
            state.burst = 0;
        }
        state.last_busy = Instant::now();
        state.burst += 1;
        state.target = state.target.max((2 * state.burst).min(self.max));
        while let Some(id) = state.ready.pop() {
            match super::rename_noreplace(&self.dir.join(id.to_string()), to) {
                Ok(()) => {
                    drop(state);
                    self.taken.notify_one();
                    touch_now(to);
                    touch_now(&to.join("_data"));
                    return true;
                }
                // A spare deleted behind the pool's back: forgotten, and
                // the next one tried.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        state.ready.push(id);
                    }
                    return false;
                }
            }
        }
        false
    }

    /// Notes a remove: spares wait until removes are quiet too.
    pub(super) fn busy(&self) {
        self.state.lock().last_busy = Instant::now();
    }

    /// How many spares are ready.
    #[cfg(test)]
    pub(super) fn ready(&self) -> usize {
        self.state.lock().ready.len()
    }

    /// Makes up to [`CHUNK`] spares if volumes are quiet and the pool is
    /// short. Returns whether the pool is full (or cannot be filled).
    fn fill_some(&self) -> bool {
        for _ in 0..CHUNK {
            let id = {
                let mut state = self.state.lock();
                if state.ready.len() >= state.target || state.last_busy.elapsed() < QUIET {
                    return state.ready.len() >= state.target;
                }
                state.next += 1;
                state.next
            };
            if let Err(e) =
                room_left(&self.dir).and_then(|()| make_pair(&self.dir.join(id.to_string())))
            {
                let mut state = self.state.lock();
                if !std::mem::replace(&mut state.warned, true) {
                    tracing::warn!(error = %e, "not making spare volume folders for now");
                }
                return true;
            }
            let mut state = self.state.lock();
            state.warned = false;
            state.ready.push(id);
        }
        false
    }
}

/// The thread: fill while volumes are quiet, then sleep until a take.
fn refill(pool: &Weak<Spares>) {
    while let Some(spares) = pool.upgrade() {
        if spares.fill_some() {
            let mut state = spares.state.lock();
            spares.taken.wait_for(&mut state, Duration::from_secs(1));
        } else {
            std::thread::sleep(QUIET / 4);
        }
    }
}

/// `dir` empty, mode 0700, made if missing. Refused if a filesystem is
/// mounted on it (its files are not the pool's to delete).
fn reset_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if crate::sys::mount::is_mounted(dir) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ResourceBusy,
            "a filesystem is mounted there; left alone",
        ));
    }
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            crate::sys::remove_tree::remove_tree_same_fs(dir)?;
        }
        Ok(_) => std::fs::remove_file(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Whether a tenth of the filesystem's space and inodes is still free (a
/// filesystem that reports no inode count, such as btrfs, is judged by
/// its space).
fn room_left(dir: &Path) -> std::io::Result<()> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    let space = (stat.blocks_available() as u64, stat.blocks() as u64);
    let inodes = (stat.files_available() as u64, stat.files() as u64);
    if nearly_full(space) || nearly_full(inodes) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "less than a tenth of the filesystem is free",
        ));
    }
    Ok(())
}

/// `(free, total)` with less than a tenth free; a total of 0 (not
/// reported) is never full.
fn nearly_full((free, total): (u64, u64)) -> bool {
    total > 0 && free.saturating_mul(10) < total
}

/// Sets `path`'s access and modification times to now (a spare was made
/// earlier; a volume's folders carry its create time, as Docker's do).
fn touch_now(path: &Path) {
    use nix::sys::{stat, time::TimeSpec};
    let now = TimeSpec::UTIME_NOW;
    let flags = stat::UtimensatFlags::NoFollowSymlink;
    // The folder is there (just renamed into place); a failure only leaves
    // the spare's older times.
    let _ = stat::utimensat(None, path, &now, &now, flags);
}

/// `<pair>/_data`, both made here; nothing left if the second fails.
fn make_pair(pair: &Path) -> std::io::Result<()> {
    std::fs::create_dir(pair)?;
    if let Err(e) = std::fs::create_dir(pair.join("_data")) {
        let _ = std::fs::remove_dir(pair);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(spares: &Spares, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while spares.ready() < n {
            assert!(Instant::now() < deadline, "only {} spares", spares.ready());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn spares_are_made_taken_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::start(dir.path(), 4).unwrap();
        wait_for(&spares, 4);
        assert_eq!(
            std::fs::read_dir(dir.path().join(SPARE_DIR))
                .unwrap()
                .count(),
            4
        );
        let to = dir.path().join("v");
        assert!(spares.take_into(&to));
        assert!(to.join("_data").is_dir());
        assert_eq!(std::fs::read_dir(to.join("_data")).unwrap().count(), 0);
        // A name that exists is never replaced, and the spare is kept.
        std::fs::write(to.join("_data/f"), b"x").unwrap();
        assert!(!spares.take_into(&to));
        assert!(to.join("_data/f").is_file());
        wait_for(&spares, 4);
        assert_eq!(
            std::fs::read_dir(dir.path().join(SPARE_DIR))
                .unwrap()
                .count(),
            4
        );
    }

    #[test]
    fn the_pool_grows_to_twice_the_largest_burst() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::start(dir.path(), 200).unwrap();
        wait_for(&spares, INITIAL);
        std::thread::sleep(QUIET * 2);
        assert_eq!(spares.ready(), INITIAL, "no burst yet: the initial pool");
        for i in 0..60 {
            spares.take_into(&dir.path().join(format!("v{i}")));
        }
        assert_eq!(spares.state.lock().target, 120);
        wait_for(&spares, 120);
        for i in 60..200 {
            spares.take_into(&dir.path().join(format!("v{i}")));
        }
        assert_eq!(spares.state.lock().target, 200, "at most the maximum");
    }

    #[test]
    fn nearly_full_is_under_a_tenth_free() {
        assert!(nearly_full((9, 100)));
        assert!(!nearly_full((10, 100)));
        assert!(!nearly_full((0, 0)), "btrfs reports no inode count");
        assert!(!nearly_full((u64::MAX, u64::MAX)));
    }

    #[test]
    fn a_taken_spare_has_the_times_of_now() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::start(dir.path(), 2).unwrap();
        wait_for(&spares, 2);
        let before = std::time::SystemTime::now() + Duration::from_millis(1100);
        std::thread::sleep(Duration::from_millis(1200));
        let to = dir.path().join("v");
        assert!(spares.take_into(&to));
        for path in [to.clone(), to.join("_data")] {
            let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
            assert!(
                modified >= before,
                "{} keeps the spare's time",
                path.display()
            );
        }
    }

    #[test]
    fn spares_deleted_by_hand_are_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::start(dir.path(), 4).unwrap();
        wait_for(&spares, 4);
        for entry in std::fs::read_dir(dir.path().join(SPARE_DIR)).unwrap() {
            std::fs::remove_dir_all(entry.unwrap().path()).unwrap();
        }
        assert!(!spares.take_into(&dir.path().join("v")));
        wait_for(&spares, 4);
        // One of them deleted: a take uses the next.
        let spare_dir = dir.path().join(SPARE_DIR);
        let first = std::fs::read_dir(&spare_dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        std::fs::remove_dir_all(first.path()).unwrap();
        assert!(spares.take_into(&dir.path().join("v")));
        assert!(spares.take_into(&dir.path().join("w")));
        assert_eq!(spares.ready(), 1);
    }

    #[test]
    fn start_empties_what_an_earlier_run_left() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(SPARE_DIR).join("7/_data");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("planted"), b"x").unwrap();
        let spares = Spares::start(dir.path(), 2).unwrap();
        assert!(!old.exists());
        wait_for(&spares, 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SPARE_DIR))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn the_thread_ends_with_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::start(dir.path(), 1).unwrap();
        wait_for(&spares, 1);
        let weak = Arc::downgrade(&spares);
        drop(spares);
        let deadline = Instant::now() + Duration::from_secs(5);
        while weak.upgrade().is_some() {
            assert!(Instant::now() < deadline, "the thread still holds the pool");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
