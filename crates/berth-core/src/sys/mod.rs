//! Thin wrappers over Linux facilities: mounts and the mount table,
//! on-disk usage of a folder, and symlink-safe paths inside a root.

pub mod copy;
pub mod extents;
pub mod inroot;
pub mod loopdev;
pub mod mount;
pub mod mountinfo;
pub mod process;
pub mod reflink;
pub mod remove_tree;
pub mod terminal;
pub mod units;
pub mod usage;
pub mod xattr;
pub mod xfs_handle;

/// `syncfs(2)` on the filesystem holding `path`: everything written to it
/// is on disk when this returns (what an operation acknowledges as done).
pub fn sync_filesystem(path: &std::path::Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(path)?;
    // SAFETY: syncfs on an open descriptor.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Hands memory the allocator holds free back to the system: every whole
/// free page of every glibc arena, not only the top of the heap (after bulk
/// work such as a prune, and periodically in the daemon).
pub fn release_free_memory() {
    // SAFETY: malloc_trim takes each arena's lock; it only returns pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Hash tables keep their capacity after removals: one that held 100,000
/// volumes during a bulk operation would hold their memory for good.
/// These shrink once most of that capacity is empty (a quarter used or
/// less), so shrinking is rare and its cost is paid back by the removals.
pub trait ShrinkWhenSparse {
    fn shrink_when_sparse(&mut self);
}

/// Below this capacity a table is left alone.
const SHRINK_ABOVE: usize = 1024;

impl<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher> ShrinkWhenSparse
    for std::collections::HashMap<K, V, S>
{
    fn shrink_when_sparse(&mut self) {
        if self.capacity() > SHRINK_ABOVE && self.len() * 4 < self.capacity() {
            self.shrink_to_fit();
        }
    }
}

impl<K: Eq + std::hash::Hash, S: std::hash::BuildHasher> ShrinkWhenSparse
    for std::collections::HashSet<K, S>
{
    fn shrink_when_sparse(&mut self) {
        if self.capacity() > SHRINK_ABOVE && self.len() * 4 < self.capacity() {
            self.shrink_to_fit();
        }
    }
}
