//! Crash points for the crash tests: `BERTH_CRASH_AT=<point>` in the
//! daemon's environment makes it kill itself with SIGKILL the first time it
//! reaches that point, so a test can stop it between two steps of an
//! operation exactly, rather than at a random instant. Unset (production),
//! a point costs one load of a cached value.
//!
//! Points are named `<operation>-<step just done>`, e.g.
//! `volume-create-committed`; ARCHITECTURE.md lists them with the state a
//! crash there leaves and how start-up settles it.

use std::sync::OnceLock;

/// The environment variable naming the point to die at.
pub const ENV: &str = "BERTH_CRASH_AT";

fn chosen() -> Option<&'static str> {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    CHOSEN
        .get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// Dies here (SIGKILL, as a power cut or the OOM killer would) if `point`
/// is the chosen one.
pub fn hit(point: &str) {
    if chosen() == Some(point) {
        tracing::error!(point, "crash point reached: killing the daemon");
        // SAFETY: raising a signal at ourselves has no memory effects.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}
