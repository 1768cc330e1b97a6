//! A read-only view of folders stacked as overlay lower layers (top
//! first), mounted for one operation beside a container's own folders
//! and unmounted and removed when dropped: a stopped container's root
//! for an export, an image's root for a diff.

use std::path::{Path, PathBuf};

use crate::sys::mount;

/// A read-only overlay of folders (top first), unmounted and removed on
/// drop.
pub(super) struct ReadOnlyView {
    target: PathBuf,
}

impl ReadOnlyView {
    /// Mounts `lowers` at a fresh `<parent>/<purpose>-<random>` folder.
    pub(super) fn mount(parent: &Path, purpose: &str, lowers: &[PathBuf]) -> std::io::Result<Self> {
        let random = crate::volume::names::random_id();
        let target = parent.join(format!("{purpose}-{}", &random[..12]));
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
