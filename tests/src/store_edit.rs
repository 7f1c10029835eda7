//! The attacker's tool: edits a stopped daemon's store with redb directly, as someone who can
//! write the data directory but cannot use the key backend would. Rows are read and written as
//! raw bytes; authenticated rows (`0x02` ‖ tag ‖ postcard body) can have their body changed
//! with the old tag kept, be moved under another key, or be forged without a valid tag. The
//! audit log is in segment files beside the store file: [`audit_rows`] reads it and
//! [`rewrite_audit`] writes it anew, frames and all, as someone with the files would.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use vault_daemon::store::audit_segments::{AUDIT_DIR, AuditSegments};
use vault_daemon::store::redb::{DB_FILE_NAME, PENDING};

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

/// The audit log of a stopped daemon's store: the segments, then any entry committed with
/// state that a crash kept out of them.
pub fn audit_rows(data_dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let segments = AuditSegments::open(data_dir).expect("open the audit segments");
    let head = segments.published();
    let mut rows = segments.read(1, head).expect("read the audit segments");
    rows.extend(
        rows_u64(data_dir, PENDING)
            .into_iter()
            .filter(|(seq, _)| *seq > head),
    );
    rows
}

/// Rewrites the audit log with `edit` applied to its rows: the segment files are written anew
/// with valid frames and the entries kept with state are dropped, so nothing but the log's
/// own MACs and chain can tell.
pub fn rewrite_audit(data_dir: &Path, edit: impl FnOnce(&mut Vec<(u64, Vec<u8>)>)) {
    let mut rows = audit_rows(data_dir);
    edit(&mut rows);
    std::fs::remove_dir_all(data_dir.join(AUDIT_DIR)).expect("remove the segments");
    AuditSegments::create(data_dir, &rows).expect("write the segments");
    self::edit(data_dir, |txn| {
        txn.delete_table(PENDING).expect("drop pending");
        txn.open_table(PENDING).expect("pending");
    });
}

/// Copies the store of a stopped daemon (its file and its audit segments) into `to`, a new
/// directory: a copy of the store as a file backup takes it.
pub fn save_store(data_dir: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    std::fs::copy(data_dir.join(DB_FILE_NAME), to.join(DB_FILE_NAME)).expect("copy the file");
    crate::rpc::copy_dir(&data_dir.join(AUDIT_DIR), &to.join(AUDIT_DIR));
}

/// Puts a store saved by [`save_store`] back in place of the one in `data_dir`.
pub fn put_back_store(saved: &Path, data_dir: &Path) {
    std::fs::copy(saved.join(DB_FILE_NAME), data_dir.join(DB_FILE_NAME))
        .expect("put the file back");
    std::fs::remove_dir_all(data_dir.join(AUDIT_DIR)).expect("remove the segments");
    crate::rpc::copy_dir(&saved.join(AUDIT_DIR), &data_dir.join(AUDIT_DIR));
}
