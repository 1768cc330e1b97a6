//! Teardowns under way: a container's exit is told to waiters before its
//! network is taken down (that can take long), so whoever next needs what
//! it held — an address, a host port, an empty network to remove — waits
//! for the teardowns in flight first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// The count of teardowns in flight.
#[derive(Debug, Default)]
pub struct Teardowns {
    running: Mutex<usize>,
    done: Condvar,
}

/// One teardown in flight, until dropped.
#[derive(Debug)]
pub struct TeardownGuard(Arc<Teardowns>);

impl Teardowns {
    /// Counts a teardown from now until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> TeardownGuard {
        *self.running.lock() += 1;
        TeardownGuard(Arc::clone(self))
    }

    /// Waits until none is in flight, at most `limit`. Returns whether
    /// none is.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut running = self.running.lock();
        while *running > 0 {
            if self.done.wait_until(&mut running, deadline).timed_out() {
                return *running == 0;
            }
        }
        true
    }
}

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        let mut running = self.0.running.lock();
        *running -= 1;
        if *running == 0 {
            self.0.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_wake_when_the_last_teardown_ends() {
        let t = Arc::new(Teardowns::default());
        assert!(t.wait_idle(Duration::ZERO));
        let first = t.begin();
        let second = t.begin();
        assert!(!t.wait_idle(Duration::from_millis(20)));
        let waiter = {
            let t = Arc::clone(&t);
            std::thread::spawn(move || t.wait_idle(Duration::from_secs(10)))
        };
        drop(first);
        std::thread::sleep(Duration::from_millis(20));
        drop(second);
        assert!(waiter.join().unwrap());
    }
}
