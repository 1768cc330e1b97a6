//! Schema migrations, versioned with `PRAGMA user_version`.
//!
//! Migrations are append-only: never edit one that has shipped; add the next.
//! Each runs in its own transaction together with the version bump, so a
//! crash mid-migration leaves the previous version intact.

use rusqlite::Connection;

use super::StoreError;

/// Ordered migrations; index + 1 is the version each one produces.
const MIGRATIONS: &[&str] = &[
    // 1: volumes and everything hanging off them.
    r#"
    CREATE TABLE volumes (
        name       TEXT PRIMARY KEY NOT NULL,
        driver     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing'))
    ) STRICT;
    CREATE TABLE volume_labels (
        volume TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (volume, key)
    ) STRICT;
    CREATE TABLE volume_options (
        volume TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (volume, key)
    ) STRICT;
    -- Holders (containers) of a volume. No cascade: a held volume must not
    -- disappear, and the database enforces that too.
    CREATE TABLE volume_refs (
        volume TEXT NOT NULL REFERENCES volumes(name),
        holder TEXT NOT NULL,
        PRIMARY KEY (volume, holder)
    ) STRICT;
    -- Active driver mounts by mount id, so the refcount survives restarts.
    CREATE TABLE volume_mounts (
        volume   TEXT NOT NULL REFERENCES volumes(name),
        mount_id TEXT NOT NULL,
        PRIMARY KEY (volume, mount_id)
    ) STRICT;
    "#,
    // 2: images and their layers.
    r#"
    CREATE TABLE images (
        id         TEXT PRIMARY KEY NOT NULL,   -- sha256:<hex> of config
        config     BLOB NOT NULL,               -- the exact config bytes
        created_at INTEGER NOT NULL,
        size       INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE layers (
        diff_id TEXT PRIMARY KEY NOT NULL,
        size    INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        diff_id  TEXT NOT NULL REFERENCES layers(diff_id),
        PRIMARY KEY (image_id, position)
    ) STRICT;
    CREATE TABLE image_tags (
        reference TEXT PRIMARY KEY NOT NULL,
        image_id  TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    ) STRICT;
    "#,
    // 3: containers.
    r#"
    CREATE TABLE containers (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL UNIQUE,
        image_id    TEXT NOT NULL REFERENCES images(id),
        created     TEXT NOT NULL,
        config      TEXT NOT NULL,
        host_config TEXT NOT NULL,
        path        TEXT NOT NULL,
        args        TEXT NOT NULL,
        mounts      TEXT NOT NULL,
        state       TEXT NOT NULL,
        status      TEXT NOT NULL
    ) STRICT;
    "#,
    // 4: volumes already given their first container's image content
    // (copy-up is one-shot; see ARCHITECTURE.md).
    r#"
    CREATE TABLE volume_populated (
        volume TEXT PRIMARY KEY NOT NULL REFERENCES volumes(name) ON DELETE CASCADE
    ) STRICT;
    "#,
    // 5: the rename journal: a row while a volume's storage moves, so a
    // crash part way is finished or undone at start-up.
    r#"
    CREATE TABLE volume_renames (
        volume TEXT PRIMARY KEY NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
        target TEXT NOT NULL UNIQUE
    ) STRICT;
    "#,
    // 6: networks (the record as JSON; the name unique).
    r#"
    CREATE TABLE networks (
        id     TEXT PRIMARY KEY NOT NULL,
        name   TEXT NOT NULL UNIQUE,
        record TEXT NOT NULL
    ) STRICT;
    "#,
    // 7: the networks a container is configured for (Docker's
    // `EndpointsConfig`, JSON), and endpoints: a row per network a
    // container is set up on, holding its address leases (unique per
    // network) and what netavark was told, so teardown and start-up repair
    // can undo exactly that. Neither key cascades: the database refuses to
    // delete a container or a network that still has an endpoint.
    r#"
    ALTER TABLE containers ADD COLUMN networks TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE endpoints (
        container_id TEXT NOT NULL REFERENCES containers(id),
        network_id   TEXT NOT NULL REFERENCES networks(id),
        endpoint_id  TEXT NOT NULL UNIQUE,
        ipv4         TEXT,
        ipv6         TEXT,
        record       TEXT NOT NULL,
        PRIMARY KEY (container_id, network_id),
        UNIQUE (network_id, ipv4),
        UNIQUE (network_id, ipv6)
    ) STRICT;
    "#,
    // 8: the registry digests images were pulled or pushed by (Docker's
    // `RepoDigests`: `repo@sha256:<manifest digest>`), moved like tags.
    r#"
    CREATE TABLE image_digests (
        reference TEXT PRIMARY KEY NOT NULL,
        image_id  TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    ) STRICT;
    "#,
    // 9: a volume's uid, unique for the life of one volume (a name can be
    // reused, a uid never): a remove moves the storage aside under the
    // uid before it commits, so start-up knows which row it belonged to.
    r#"
    ALTER TABLE volumes ADD COLUMN uid TEXT;
    UPDATE volumes SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL;
    CREATE UNIQUE INDEX volumes_uid ON volumes(uid);
    "#,
    // 10: backup repositories: what is not secret as JSON, the secrets
    // (password, object-store keys) sealed with the daemon's key.
    r#"
    CREATE TABLE backup_repos (
        name    TEXT PRIMARY KEY NOT NULL,
        record  TEXT NOT NULL,
        sealed  BLOB NOT NULL
    ) STRICT;
    "#,
    // 11: backup schedules, one per volume: the schedule and its last
    // result as JSON.
    r#"
    CREATE TABLE backup_schedules (
        volume  TEXT PRIMARY KEY NOT NULL,
        record  TEXT NOT NULL
    ) STRICT;
    "#,
    // 12: removes committed while their storage's move to the trash may
    // not be durable yet (store/tombstones.rs).
    r#"
    CREATE TABLE volume_tombstones (
        uid     TEXT PRIMARY KEY NOT NULL,
        name    TEXT NOT NULL,
        driver  TEXT NOT NULL
    ) STRICT;
    "#,
];

/// The newest schema version this build knows.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`CURRENT_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > CURRENT_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: CURRENT_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied metadata schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_is_idempotent_and_versions() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, CURRENT_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", CURRENT_VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }
}
