//! The store conformance suite (`vault_tests::store_conformance`) on the embedded redb store;
//! the PostgreSQL store of the cluster will run the same suite.

use std::sync::Arc;

use vault_daemon::store::Store;
use vault_daemon::store::redb::RedbDatabase;
use vault_tests::store_conformance::{run, test_sealer};

#[test]
fn redb_meets_the_store_contract() {
    let mut dirs = Vec::new();
    run(&mut || {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbDatabase::open(dir.path())
            .expect("open redb")
            .authenticated(test_sealer());
        dirs.push(dir);
        Arc::new(store) as Arc<dyn Store>
    });
}
