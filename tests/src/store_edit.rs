//! The attacker's tool: edits a stopped daemon's store with redb directly, as someone who can
//! write the data directory but cannot use the key backend would. Rows are read and written as
//! raw bytes; authenticated rows (`0x02` ‖ tag ‖ postcard body) can have their body changed
//! with the old tag kept, be moved under another key, or be forged without a valid tag.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use vault_daemon::store::redb::DB_FILE_NAME;

/// Opens the store file of `data_dir` (the daemon must be stopped).
pub fn open(data_dir: &Path) -> Database {
    Database::open(data_dir.join(DB_FILE_NAME)).expect("open the store file")
}

/// The raw row of `key` in a text-keyed table.
pub fn get(data_dir: &Path, table: TableDefinition<&str, &[u8]>, key: &str) -> Option<Vec<u8>> {
    let db = open(data_dir);
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(table).expect("table");
    table
        .get(key)
        .expect("get")
        .map(|value| value.value().to_vec())
}

/// Writes a raw row.
pub fn put(data_dir: &Path, table: TableDefinition<&str, &[u8]>, key: &str, row: &[u8]) {
    let db = open(data_dir);
    let txn = db.begin_write().expect("write");
    txn.open_table(table)
        .expect("table")
        .insert(key, row)
        .expect("insert");
    txn.commit().expect("commit");
}

/// Splits an authenticated row into its tag and its postcard body.
pub fn split(row: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(row.first(), Some(&2), "an authenticated row");
    (row[1..33].to_vec(), row[33..].to_vec())
}

/// An authenticated row's value.
pub fn decode<T: DeserializeOwned>(row: &[u8]) -> T {
    postcard::from_bytes(&split(row).1).expect("decode body")
}

/// `value` under the tag of another row: an edit that keeps the old tag.
pub fn with_tag<T: Serialize>(tag: &[u8], value: &T) -> Vec<u8> {
    let mut out = vec![2u8];
    out.extend_from_slice(tag);
    out.extend(postcard::to_allocvec(value).expect("encode"));
    out
}

/// `value` in place of the authenticated row `row`, its tag kept: an edit of the body.
pub fn edited<T: Serialize>(row: &[u8], value: &T) -> Vec<u8> {
    with_tag(&split(row).0, value)
}

/// `value` as a forged authenticated row: a tag the attacker made up.
pub fn forged<T: Serialize>(value: &T) -> Vec<u8> {
    with_tag(&[0x5a; 32], value)
}

/// Runs `edit` on a write transaction of the store and commits.
pub fn edit(data_dir: &Path, edit: impl FnOnce(&redb::WriteTransaction)) {
    let db = open(data_dir);
    let txn = db.begin_write().expect("write");
    edit(&txn);
    txn.commit().expect("commit");
}

/// Every row of a u64-keyed table.
pub fn rows_u64(data_dir: &Path, table: TableDefinition<u64, &[u8]>) -> Vec<(u64, Vec<u8>)> {
    let db = open(data_dir);
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(table).expect("table");
    table
        .iter()
        .expect("iter")
        .map(|row| {
            let (k, v) = row.expect("row");
            (k.value(), v.value().to_vec())
        })
        .collect()
}
