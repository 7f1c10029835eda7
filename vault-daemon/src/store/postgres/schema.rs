//! Schema migrations of the PostgreSQL store, versioned in the repository
//! (`vault-daemon/migrations/postgres/`) and applied at start under an advisory lock, so
//! daemons starting together apply each migration once. A database migrated by a newer build
//! is refused: this build would not know what its rows mean.

use deadpool_postgres::Client;

use crate::store::StoreError;

/// Every migration, in order: (version, SQL).
const MIGRATIONS: [(u32, &str); 1] = [(
    1,
    include_str!("../../../migrations/postgres/0001_tables.sql"),
)];

/// The newest schema version this build knows.
pub const LATEST: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Advisory lock key of migrations ("MNLmigr").
const MIGRATION_LOCK: i64 = 0x004d_4e4c_6d69_6772;

fn io(error: tokio_postgres::Error) -> StoreError {
    super::io(error)
}

/// Applies the migrations this database lacks; returns the version it is at.
pub async fn migrate(client: &mut Client) -> Result<u32, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(io)?;
    let outcome = apply(client).await;
    // Unlocked whatever happened; a connection that fails here takes its lock with it.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    outcome
}

async fn apply(client: &mut Client) -> Result<u32, StoreError> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS locker;
             CREATE TABLE IF NOT EXISTS locker.schema_migrations (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await
        .map_err(io)?;
    let found: Option<i32> = client
        .query_one("SELECT max(version) FROM locker.schema_migrations", &[])
        .await
        .map_err(io)?
        .get(0);
    let found = found.map_or(0, |v| v.max(0) as u32);
    if found > LATEST {
        return Err(StoreError::Schema {
            found,
            expected: LATEST,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        let txn = client.transaction().await.map_err(io)?;
        txn.batch_execute(sql).await.map_err(io)?;
        txn.execute(
            "INSERT INTO locker.schema_migrations (version) VALUES ($1)",
            &[&(*version as i32)],
        )
        .await
        .map_err(io)?;
        txn.commit().await.map_err(io)?;
        tracing::info!(version, "PostgreSQL store migrated");
    }
    Ok(LATEST.max(found))
}
