//! A read-only view of folders stacked as overlay lower layers (top
//! first), mounted for one operation under `<root>/views/` and unmounted
//! and removed when dropped: a stopped container's root for an export, an
//! image's root for a diff. Never inside a container's folder (a remove
//! walks that folder), and swept at start-up ([`sweep`]) after a crash.

use std::path::{Path, PathBuf};

use crate::sys::mount;

/// A read-only overlay of folders (top first), unmounted and removed on
/// drop.
pub(super) struct ReadOnlyView {
    target: PathBuf,
}

impl ReadOnlyView {
    /// Mounts `lowers` at a fresh `<views>/<purpose>-<random>` folder.
    pub(super) fn mount(views: &Path, purpose: &str, lowers: &[PathBuf]) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(views)?;
        let random = crate::volume::names::random_id();
        let target = views.join(format!("{purpose}-{}", &random[..12]));
        std::fs::create_dir_all(&target)?;
        let view = ReadOnlyView { target };
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        // An overlay needs two lower folders at least without an upper.
        let mut lower = lower;
        if lower.len() == 1 {
            let empty = view.target.with_extension("empty");
            std::fs::create_dir_all(&empty)?;
            lower.push(empty.display().to_string());
        }
        let options = format!("ro,lowerdir={}", lower.join(":"));
        mount::mount("overlay", &view.target, "overlay", &options)?;
        Ok(view)
    }

    /// Where the view is mounted.
    pub(super) fn root(&self) -> &Path {
        &self.target
    }
}

impl Drop for ReadOnlyView {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %self.target.display(), error = %e, "could not unmount an export view");
        }
        let _ = std::fs::remove_dir(&self.target);
        let _ = std::fs::remove_dir(self.target.with_extension("empty"));
    }
}

/// `<root>/views`, beside `<root>/containers`.
pub(super) fn views_dir(containers_dir: &Path) -> PathBuf {
    containers_dir.with_file_name("views")
}

/// Start-up: views a crash left mounted are detached and their folders
/// removed. Returns how many there were.
pub(super) fn sweep(views: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(views) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        if std::fs::remove_dir(&path).is_ok() {
            n += 1;
        }
    }
    n
}
