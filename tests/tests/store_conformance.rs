//! The store conformance suite (`vault_tests::store_conformance`) on every store: the embedded
//! redb store (on disk and in memory) and the cluster's PostgreSQL store (a real PostgreSQL 15,
//! a fresh database per check).

use std::sync::Arc;

use vault_daemon::store::Store;
use vault_daemon::store::postgres::{PgDatabase, PgOptions};
use vault_daemon::store::redb::RedbDatabase;
use vault_tests::postgres::{Postgres, runtime};
use vault_tests::store_conformance::{run, test_sealer};

#[test]
fn redb_meets_the_store_contract() {
    let mut dirs = Vec::new();
    run(
        &mut || {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = RedbDatabase::open(dir.path())
                .expect("open redb")
                .authenticated(test_sealer());
            dirs.push(dir);
            Arc::new(store) as Arc<dyn Store>
        },
        &runtime(),
    );
}

#[test]
fn the_in_memory_store_meets_the_store_contract() {
    run(
        &mut || {
            let store = RedbDatabase::in_memory()
                .expect("a store in memory")
                .authenticated(test_sealer());
            Arc::new(store) as Arc<dyn Store>
        },
        &runtime(),
    );
}

#[test]
fn postgres_meets_the_store_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let runtime = runtime();
    let mut databases = 0;
    run(
        &mut || {
            databases += 1;
            let name = format!("conformance_{databases}");
            postgres.create_database(&name);
            let database = runtime
                .block_on(PgDatabase::open(PgOptions::new(postgres.url_of(&name))))
                .expect("open the PostgreSQL store");
            Arc::new(database.authenticated(test_sealer())) as Arc<dyn Store>
        },
        &runtime,
    );
}

#[test]
fn postgres_refuses_a_database_migrated_by_a_newer_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    postgres.create_database("newer");
    let runtime = runtime();
    let options = || PgOptions::new(postgres.url_of("newer"));
    runtime
        .block_on(PgDatabase::open(options()))
        .expect("a new database is migrated");
    // Opening again applies nothing twice.
    runtime
        .block_on(PgDatabase::open(options()))
        .expect("an up-to-date database opens");
    assert_eq!(
        postgres.sql("newer", "SELECT count(*) FROM locker.schema_migrations"),
        vault_daemon::store::postgres::schema::LATEST.to_string()
    );
    postgres.sql(
        "newer",
        "INSERT INTO locker.schema_migrations (version) VALUES (99)",
    );
    let refused = runtime.block_on(PgDatabase::open(options()));
    match refused {
        Err(vault_daemon::store::StoreError::Schema { found, expected }) => {
            assert_eq!(
                (found, expected),
                (99, vault_daemon::store::postgres::schema::LATEST)
            );
        }
        other => panic!("a newer schema was not refused: {other:?}"),
    }
}
