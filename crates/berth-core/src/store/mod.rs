//! The metadata store: one SQLite file (`<root>/berth.db`) in WAL mode with
//! durable commits (`synchronous=FULL`), so a transaction that returned is on
//! disk even if the daemon is killed the next instant.
//!
//! Every metadata change is one transaction. The connection sits behind a
//! mutex that is held only for the duration of one statement group, never
//! across driver I/O. Volume creates and removes go through the group
//! commit [`writer`], which shares one durable commit among every write
//! queued at that moment; volume rows are also held in memory
//! ([`volume_index`]) so inspect and list run no query.

mod backup_repos;
mod containers;
mod endpoints;
mod images;
mod networks;
mod renames;
mod schema;
mod tombstones;
mod volume_index;
mod volumes;
mod writer;

use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use rusqlite::Connection;

pub use endpoints::EndpointInsert;
pub use images::ImageRecord;
pub use tombstones::Tombstone;
pub use volumes::{VolumeRecord, VolumeState};

/// Errors from the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("metadata database schema version {found} is newer than this berth understands ({known}); refusing to touch it")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("metadata database file: {0}")]
    Io(std::io::Error),
    #[error("metadata database: corrupt row for volume {name:?}: {detail}")]
    CorruptRow { name: String, detail: String },
    /// A group commit failed (the message of the SQLite error, shared by
    /// every write of the batch).
    #[error("metadata database commit: {0}")]
    Commit(String),
}

/// Handle to the metadata database.
#[derive(Debug)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    writer: writer::Writer,
    volumes: volume_index::VolumeIndex,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, sets durability
    /// pragmas and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private(path)?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The page cache SQLite keeps per connection: the working set is
        // small (rows are also held in the volume index), the default 2 MiB
        // only adds to the daemon's resident memory.
        conn.pragma_update(None, "cache_size", -512)?;
        schema::migrate(&mut conn)?;
        Self::over(conn)
    }

    /// Opens a private in-memory database (unit tests of pure logic).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;
        Self::over(conn)
    }

    /// The store over a migrated connection: its index loaded, its writer
    /// started.
    fn over(conn: Connection) -> Result<Self, StoreError> {
        // Room for every statement the hot paths run (rusqlite keeps 16).
        conn.set_prepared_statement_cache_capacity(64);
        let records = volumes::load_volumes(&conn)?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(Store {
            writer: writer::Writer::start(conn.clone())?,
            volumes: volume_index::VolumeIndex::from_records(records),
            conn,
        })
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half transaction
        // behind (rusqlite rolls back on drop), so a lock without poisoning
        // is right.
        self.conn.lock()
    }
}

/// Makes the database file 0600 before SQLite opens it (SQLite gives its
/// `-wal` and `-shm` files the database file's mode): rows hold containers'
/// environment values.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(StoreError::Io)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(StoreError::Io)
}
