//! The stop and reload signals (SIGTERM, SIGINT, SIGHUP), held from the
//! first line of `main` until the daemon has its handlers.
//!
//! Their default action ends the process. Before the daemon's handlers
//! are in place (the runtime, the configuration and the log come first), a
//! stop or a reload sent right after the start would kill it instead of
//! stopping it cleanly or reloading it. Held (blocked), such a signal
//! waits and is delivered when they are released: to the handler in the
//! daemon, to the default action in every other command, as before.
//!
//! Blocking is per thread and inherited: threads started while the
//! signals are held keep them blocked, so they go to the thread that
//! released them (the daemon's main thread, which lives as long as the
//! process). Children start with an empty mask: the standard library
//! resets it in every process it spawns.

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};

fn stop_and_reload() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Blocks them in this thread (and the threads it starts from now on).
pub fn hold() {
    if let Err(e) = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stop_and_reload()), None) {
        eprintln!("berth: cannot hold the stop signals: {e}");
    }
}

/// Unblocks them in this thread: one that came while they were held is
/// delivered now.
pub fn release() {
    if let Err(e) = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&stop_and_reload()), None) {
        eprintln!("berth: cannot release the stop signals: {e}");
    }
}
