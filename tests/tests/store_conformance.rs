//! The store conformance suite (`vault_tests::store_conformance`) on every store: the embedded
//! redb store (on disk and in memory) and the cluster's PostgreSQL store (a real PostgreSQL 15,
//! a fresh database per check).

use std::sync::Arc;

use vault_daemon::store::guard::FaultHook;
use vault_daemon::store::postgres::{PgDatabase, PgOptions};
use vault_daemon::store::redb::RedbDatabase;
use vault_daemon::store::{Store, StoreError};
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

/// Every store runs behind the panic guard, which wraps the engine's few byte operations: an
/// engine that panics (as redb does on a damaged page) on any table, in a read, a write or the
/// commit, gives an error naming what failed, and the store serves on.
#[test]
fn an_engine_panic_is_an_error_on_every_path() {
    let armed = Arc::new(std::sync::Mutex::new(None::<&'static str>));
    let trigger = Arc::clone(&armed);
    let fault: FaultHook = Arc::new(move |what| {
        if *trigger.lock().expect("lock") == Some(what) {
            panic!("injected: damaged page under {what}");
        }
    });
    let store = RedbDatabase::in_memory()
        .expect("a store in memory")
        .authenticated_with_fault(test_sealer(), Some(fault));
    let arm = |what| *armed.lock().expect("lock") = what;
    let corrupt = |result: Result<(), StoreError>, what: &str| match result {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(what), "{message}")
        }
        other => panic!("{what}: {other:?}"),
    };
    arm(Some("operators"));
    let reader = store.reader().expect("reader");
    corrupt(reader.operators().map(drop), "operators");
    corrupt(reader.operator("clerk").map(drop), "operators");
    drop(reader);
    let mut txn = store.writer().expect("writer");
    corrupt(txn.authority_digest().map(drop), "operators");
    arm(Some("corrections"));
    corrupt(txn.remove_correction("c1"), "corrections");
    arm(Some("audit"));
    corrupt(txn.append_audit(1, b"entry"), "audit");
    arm(Some("commit"));
    corrupt(txn.commit(), "commit");
    arm(Some("reader"));
    corrupt(store.reader().map(drop), "reader");
    arm(None);
    let reader = store.reader().expect("serves on");
    assert_eq!(reader.operators().expect("reads"), Vec::new());
    assert_eq!(
        reader
            .audit_last()
            .expect("the failed commit wrote nothing"),
        None
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
