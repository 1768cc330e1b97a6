//! Group commit: writes queued while a commit is under way are applied
//! together in one transaction and one durable commit, so concurrent
//! creates and removes from many clients share the fsync of the WAL
//! instead of each paying it; a write that finds nobody committing
//! commits at once on its caller's thread.
//!
//! Each job runs inside its own savepoint: a job that fails is rolled back
//! alone and its caller gets its error; the others still commit. A job's
//! caller is answered only after the commit returned, so an acknowledged
//! write is on disk (`synchronous=FULL`). If the commit itself fails, every
//! job of the batch gets that error and nothing of the batch is applied.
//!
//! Batches run under the store's connection mutex, so statements of other
//! store methods never interleave with one.

use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use super::StoreError;

/// The most jobs one transaction takes; more wait for the next batch.
const MAX_BATCH: usize = 1024;

/// One queued write, type-erased for the queue.
trait Job: Send {
    /// Runs the write inside the open transaction (in a savepoint).
    fn apply(&mut self, conn: &Connection);
    /// Answers the caller once the batch's commit is known.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

/// A write and where its answer goes.
struct TypedJob<T, F> {
    op: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: SyncSender<Result<T, StoreError>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn apply(&mut self, conn: &Connection) {
        let Some(op) = self.op.take() else { return };
        self.outcome = Some(in_savepoint(conn, op));
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let answer = match (self.outcome, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(StoreError::Commit(e)),
            (None, Ok(())) => Err(StoreError::Commit("write was never applied".into())),
        };
        // The caller may have gone (it never does: it blocks on the answer).
        let _ = self.reply.send(answer);
    }
}

/// Runs `op` in a savepoint, rolled back alone if it fails.
fn in_savepoint<T>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run_cached(conn, "SAVEPOINT job")?;
    let outcome = op(conn);
    // A failed statement may have ended the whole transaction (disk full,
    // I/O error): then there is no savepoint left and the commit fails too,
    // which answers every job of the batch with an error.
    if conn.is_autocommit() {
        return outcome;
    }
    let ended = match outcome.is_err() {
        true => run_cached(conn, "ROLLBACK TO job").and_then(|()| run_cached(conn, "RELEASE job")),
        false => run_cached(conn, "RELEASE job"),
    };
    if let Err(e) = ended {
        // The savepoint could not be closed: its changes would ride on the
        // batch's commit while this job is answered with an error. The
        // whole transaction goes instead, and with it the batch.
        let _ = run_cached(conn, "ROLLBACK");
        return Err(e.into());
    }
    outcome
}

/// Jobs waiting for a commit, and whether a commit is under way.
#[derive(Default)]
struct Queue {
    jobs: Vec<Box<dyn Job>>,
    /// A batch is being applied (by a caller or by the thread).
    busy: bool,
    /// The store is closing: the thread drains what is left and ends.
    closing: bool,
}

/// Shared by the callers and the writer thread.
struct Shared {
    conn: Arc<Mutex<Connection>>,
    queue: Mutex<Queue>,
    /// Signalled when jobs are queued and nobody is committing.
    work: Condvar,
}

/// The group commit: a caller that finds nobody committing commits its
/// own write at once, on its own thread (no hand-off: one client pays one
/// fsync and no context switch); callers that arrive meanwhile queue, and
/// the writer thread commits everything queued in one batch.
pub(super) struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer thread over `conn`.
    pub(super) fn start(conn: Arc<Mutex<Connection>>) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            conn,
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn({
                let shared = shared.clone();
                move || run(&shared)
            })
            .map_err(StoreError::Io)?;
        Ok(Writer {
            shared,
            thread: Some(thread),
        })
    }

    /// Applies `op` in a transaction of its own or of a batch, and returns
    /// once that transaction is committed (or failed).
    pub(super) fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        let mut job: Box<dyn Job> = Box::new(TypedJob {
            op: Some(op),
            outcome: None,
            reply,
        });
        let mut queue = self.shared.queue.lock();
        if queue.busy || !queue.jobs.is_empty() {
            queue.jobs.push(job);
            self.shared.work.notify_one();
            drop(queue);
        } else {
            queue.busy = true;
            drop(queue);
            let commit = apply_batch(&self.shared.conn.lock(), std::slice::from_mut(&mut job));
            job.finish(commit);
            self.shared.idle();
        }
        let gone = || StoreError::Commit("the store's writer has stopped".into());
        answer.recv().map_err(|_| gone())?
    }
}

impl Shared {
    /// Ends a batch: the thread is woken if jobs queued meanwhile.
    fn idle(&self) {
        let mut queue = self.queue.lock();
        queue.busy = false;
        if !queue.jobs.is_empty() || queue.closing {
            self.work.notify_one();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.queue.lock().closing = true;
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: whenever jobs are queued and nobody is committing,
/// take them all, apply them in one transaction, commit once, answer.
fn run(shared: &Shared) {
    loop {
        let mut batch = {
            let mut queue = shared.queue.lock();
            while queue.busy || (queue.jobs.is_empty() && !queue.closing) {
                shared.work.wait(&mut queue);
            }
            if queue.jobs.is_empty() {
                return;
            }
            queue.busy = true;
            let take = queue.jobs.len().min(MAX_BATCH);
            queue.jobs.drain(..take).collect::<Vec<_>>()
        };
        let commit = apply_batch(&shared.conn.lock(), &mut batch);
        for job in batch {
            job.finish(commit.clone());
        }
        shared.idle();
    }
}

fn apply_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), String> {
    run_cached(conn, "BEGIN IMMEDIATE").map_err(|e| e.to_string())?;
    for job in batch.iter_mut() {
        if conn.is_autocommit() {
            // An error (disk full, I/O) rolled the whole transaction back:
            // the jobs not applied yet must not run outside it (a savepoint
            // there would open and commit a transaction of its own).
            break;
        }
        // A job that panics is a job that failed: the whole transaction is
        // rolled back (the batch fails) and the writer goes on; an unwound
        // batch would leave the transaction open and the writer busy.
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.apply(conn)));
        if applied.is_err() {
            let _ = run_cached(conn, "ROLLBACK");
        }
    }
    if conn.is_autocommit() {
        // Every job is answered with an error: nothing of the batch stands.
        return Err("the transaction was rolled back by an error".into());
    }
    run_cached(conn, "COMMIT").map_err(|e| {
        let _ = run_cached(conn, "ROLLBACK");
        e.to_string()
    })
}

/// Runs one statement through the connection's statement cache (these run
/// for every write: parsing them each time shows in profiles).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (Writer, Arc<Mutex<Connection>>) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY) STRICT")
            .unwrap();
        let conn = Arc::new(Mutex::new(conn));
        (Writer::start(conn.clone()).unwrap(), conn)
    }

    fn insert(w: &Writer, key: &'static str) -> Result<usize, StoreError> {
        w.write(move |c| Ok(c.execute("INSERT INTO t (k) VALUES (?1)", [key])?))
    }

    fn count(conn: &Mutex<Connection>) -> i64 {
        conn.lock()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_failed_job_is_rolled_back_alone() {
        let (w, conn) = writer();
        assert_eq!(insert(&w, "a").unwrap(), 1);
        assert!(insert(&w, "a").is_err());
        assert_eq!(insert(&w, "b").unwrap(), 1);
        assert_eq!(count(&conn), 2);
    }

    #[test]
    fn a_batch_whose_transaction_is_rolled_back_commits_nothing() {
        let (w, conn) = writer();
        let w = Arc::new(w);
        // Hold the connection so the first write blocks with the writer
        // busy and the next two queue into one batch, in order.
        let held = conn.lock();
        let spawn = |key: &'static str, rollback: bool| {
            let w = w.clone();
            std::thread::spawn(move || {
                w.write(move |c| {
                    if rollback {
                        // What SQLite does on a full disk: the whole
                        // transaction is gone, and the job fails.
                        c.execute_batch("ROLLBACK")?;
                        return Err(StoreError::Commit("disk full".into()));
                    }
                    Ok(c.execute("INSERT INTO t (k) VALUES (?1)", [key])?)
                })
            })
        };
        // Waits until the writer is busy with `n` jobs queued behind it.
        let queued = |n: usize| {
            while !{
                let queue = w.shared.queue.lock();
                queue.busy && queue.jobs.len() == n
            } {
                std::thread::yield_now();
            }
        };
        let first = spawn("first", false);
        queued(0);
        let failing = spawn("unused", true);
        queued(1);
        let after = spawn("after", false);
        queued(2);
        drop(held);
        assert!(first.join().unwrap().is_ok());
        assert!(failing.join().unwrap().is_err());
        assert!(after.join().unwrap().is_err(), "reported failed");
        let keys: Vec<String> = {
            let c = conn.lock();
            let mut stmt = c.prepare("SELECT k FROM t ORDER BY k").unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            rows.map(Result::unwrap).collect()
        };
        assert_eq!(keys, ["first"], "and so it must not be committed");
    }

    #[test]
    fn a_job_that_panics_fails_its_batch_and_the_writer_goes_on() {
        let (w, conn) = writer();
        let panicked = w.write(|_| -> Result<(), StoreError> { panic!("a bug in a job") });
        assert!(panicked.is_err());
        assert_eq!(insert(&w, "next").unwrap(), 1, "later writes still commit");
        assert_eq!(count(&conn), 1);
    }

    #[test]
    fn concurrent_writers_all_land() {
        let (w, conn) = writer();
        let w = Arc::new(w);
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for j in 0..50 {
                        let key = format!("{i}-{j}");
                        w.write(move |c| Ok(c.execute("INSERT INTO t (k) VALUES (?1)", [key])?))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(count(&conn), 800);
    }
}
