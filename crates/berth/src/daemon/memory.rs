//! The daemon's own memory: few allocator arenas, and freed memory given
//! back to the system, so resident memory stays small when idle and falls
//! again after bulk work (a prune of 100,000 volumes frees their rows).
//!
//! glibc's malloc gives each thread that allocates concurrently an arena
//! of its own, up to eight per core, and keeps freed memory in them; a
//! daemon whose blocking pool has run many threads holds on to all of it.

use std::time::Duration;

/// Arenas glibc may create; two match this daemon's two kinds of threads
/// (async workers, blocking pool) without making them contend.
const ARENAS: libc::c_int = 2;

/// How often freed memory is handed back.
const RELEASE_EVERY: Duration = Duration::from_secs(30);

/// Caps glibc's arenas. Call early: arenas made before stay.
pub fn limit_arenas() {
    // SAFETY: mallopt only sets an allocator parameter, under the main
    // arena's lock.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Releases freed memory every [`RELEASE_EVERY`], off the async workers.
pub fn spawn_periodic_release() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(RELEASE_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let _ = tokio::task::spawn_blocking(berth_core::sys::release_free_memory).await;
        }
    });
}
