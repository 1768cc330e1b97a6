//! Group commit: one writer thread applies queued write jobs in one
//! transaction and one durable commit, so concurrent creates and removes
//! from many clients share the fsync of the WAL instead of each paying it.
//!
//! Each job runs inside its own savepoint: a job that fails is rolled back
//! alone and its caller gets its error; the others still commit. A job's
//! caller is answered only after the commit returned, so an acknowledged
//! write is on disk (`synchronous=FULL`). If the commit itself fails, every
//! job of the batch gets that error and nothing of the batch is applied.
//!
//! The thread shares the store's connection mutex, so statements of other
//! store methods never interleave with a batch.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
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
    conn.execute_batch("SAVEPOINT job")?;
    let outcome = op(conn);
    let end = match outcome {
        Ok(_) => "RELEASE job",
        Err(_) => "ROLLBACK TO job; RELEASE job",
    };
    // A failed statement may have ended the whole transaction (disk full,
    // I/O error): then there is no savepoint left and the commit fails too,
    // which answers every job of the batch with an error.
    if !conn.is_autocommit() {
        conn.execute_batch(end)?;
    }
    outcome
}

/// The queue and the thread that drains it.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: Option<Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for dyn Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Writer {
    /// Starts the writer thread over `conn`.
    pub(super) fn start(conn: Arc<Mutex<Connection>>) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(&conn, &queue))
            .map_err(StoreError::Io)?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues `op` and blocks until its batch is committed (or failed).
    pub(super) fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Box::new(TypedJob {
            op: Some(op),
            outcome: None,
            reply,
        });
        let gone = || StoreError::Commit("the store's writer has stopped".into());
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        jobs.send(job).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has answered every job.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: take what is queued, apply it in one transaction,
/// commit once, answer everyone.
fn run(conn: &Mutex<Connection>, queue: &Receiver<Box<dyn Job>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = {
            let conn = conn.lock();
            apply_batch(&conn, &mut batch)
        };
        for job in batch {
            job.finish(commit.clone());
        }
    }
}

fn apply_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), String> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| e.to_string())?;
    for job in batch.iter_mut() {
        job.apply(conn);
    }
    if conn.is_autocommit() {
        return Err("the transaction was rolled back by an error".into());
    }
    conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        e.to_string()
    })
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
