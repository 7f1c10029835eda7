//! The embedded store on redb: one file (`locker.redb`, mode 0600) in the data directory,
//! copy-on-write B-trees, MVCC snapshots for reads and fsync on every commit.
//!
//! Opening is two steps: [`RedbDatabase::open`] checks the file and its schema and gives access
//! to the metadata (where the state MAC key's reference lives); [`RedbDatabase::authenticated`]
//! then makes the store over this engine, which only keeps the catalogue's rows as bytes: the
//! file's tables keep the types they always had (text keys, integer keys for the audit chain,
//! checkpoints and audit keys, text values in the blind index), converted at this edge.

use std::fs::{self, OpenOptions};
use std::ops::Bound;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};

use crate::store::catalogue::{KeyKind, RECOVERY_RESERVE_KEY, Table};
use crate::store::engine::Engine;
use crate::store::engine_store::EngineStore;
use crate::store::guard::FaultHook;
use crate::store::rows::{Row, RowsRead, RowsWrite};
use crate::store::sealing::RowSealer;
use crate::store::snapshot::SnapshotRow;
use crate::store::view::{Immediate, RowSource};
use crate::store::{SCHEMA_VERSION, StoreError};

/// File name of the database in the data directory.
pub const DB_FILE_NAME: &str = "locker.redb";

// The file's tables that are not text-keyed byte rows, and those the tests edit; every other
// table is `text_table` of its catalogue entry.

/// Store metadata (schema version).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Records by handle.
pub const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Blind index: tenant ‖ 0x00 ‖ HMAC → handle.
pub const INDEX: TableDefinition<&[u8], &str> = TableDefinition::new("blind_index");
/// Operators by id.
pub const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("operators");
/// Tokens by id (hashes only).
pub const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// Audit rows by sequence number.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Signed checkpoints by the sequence number they cover.
pub const CHECKPOINTS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_checkpoints");
/// Audit signing keys by version.
pub const AUDIT_KEYS: TableDefinition<u32, &[u8]> = TableDefinition::new("audit_keys");
/// Retired records by disposal date: `YYYY-MM-DD/handle` → queue entry.
pub const DISPOSAL_QUEUE: TableDefinition<&str, &[u8]> = TableDefinition::new("disposal_queue");
const SCHEMA_KEY: &str = "schema_version";
/// Bytes a recovery commit writes to show the store can take commits again: 1 MiB.
pub const RECOVERY_RESERVE: usize = 1 << 20;
/// Page cache of the store unless configured: 64 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

fn io(error: impl std::fmt::Display) -> StoreError {
    StoreError::Io(error.to_string())
}

/// An error opening or checking the file: redb says "corrupted" when the file is damaged.
fn damaged(path: &Path, error: impl std::fmt::Display) -> StoreError {
    let text = error.to_string();
    if text.to_lowercase().contains("corrupt") {
        StoreError::Corrupt(format!(
            "{} is damaged ({text}); restore a backup",
            path.display()
        ))
    } else {
        StoreError::Io(text)
    }
}

/// The redb engine.
///
/// After an I/O error (a full disk, say) redb refuses every later transaction until the
/// database is closed and opened again; [`Engine::recover`] does that, so the locker serves
/// again once the cause is gone, without a restart.
#[derive(Debug)]
struct RedbEngine {
    /// `None` between closing the failed handle and opening the file again.
    db: std::sync::RwLock<Option<Arc<Database>>>,
    /// `None`: held in memory ([`RedbDatabase::in_memory`]), nothing to reopen.
    path: Option<PathBuf>,
    cache_bytes: usize,
}

/// The database file, opened and schema-checked, before rows can be authenticated.
#[derive(Debug)]
pub struct RedbDatabase {
    db: Database,
    path: Option<PathBuf>,
    cache_bytes: usize,
}

fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|error| damaged(path, error))
}

impl RedbDatabase {
    /// Opens or creates the store in `data_dir` with the default page cache, creating the file
    /// 0600 and checking the schema version.
    pub fn open(data_dir: &Path) -> Result<RedbDatabase, StoreError> {
        RedbDatabase::open_with_cache(data_dir, DEFAULT_CACHE_BYTES)
    }

    /// Like [`RedbDatabase::open`] with a page cache of `cache_bytes` (redb's own default, 1 GiB,
    /// would dominate the daemon's memory).
    pub fn open_with_cache(
        data_dir: &Path,
        cache_bytes: usize,
    ) -> Result<RedbDatabase, StoreError> {
        let path = data_dir.join(DB_FILE_NAME);
        // Create the file ourselves so it is never, even briefly, readable by others.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let mode = fs::metadata(&path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io)?;
            tracing::warn!(path = %path.display(), "store file was accessible to others; reset to 0600");
        }
        let db = open_database(&path, cache_bytes)?;
        let store = RedbDatabase {
            db,
            path: Some(path),
            cache_bytes,
        };
        store.initialise()?;
        Ok(store)
    }

    /// A new, empty store held in memory only (redb's in-memory backend), lost when dropped:
    /// the store of unit tests, and one more implementation the conformance suite runs on.
    pub fn in_memory() -> Result<RedbDatabase, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(io)?;
        let store = RedbDatabase {
            db,
            path: None,
            cache_bytes: DEFAULT_CACHE_BYTES,
        };
        store.initialise()?;
        Ok(store)
    }

    /// Path of the database file (`None` for a store in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Which store, for messages: its file, or that it is held in memory.
    pub fn describe(&self) -> String {
        self.path.as_ref().map_or_else(
            || "a store in memory".into(),
            |path| path.display().to_string(),
        )
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(META).map_err(io)?;
        Ok(table.get(key).map_err(io)?.map(|v| v.value().to_vec()))
    }

    /// Sets a metadata value (committed at once).
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(io)?;
        txn.open_table(META)
            .map_err(io)?
            .insert(key, value)
            .map_err(io)?;
        txn.commit().map_err(io)
    }

    /// Whether the store holds no audit entry and no operator: a store never used.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let audit = txn.open_table(AUDIT).map_err(io)?;
        let operators = txn.open_table(OPERATORS).map_err(io)?;
        Ok(audit.is_empty().map_err(io)? && operators.is_empty().map_err(io)?)
    }

    /// Runs redb's own consistency check of the file (every page and checksum). `false`: the
    /// file is damaged (redb repairs what it can on open; what it cannot stays refused).
    pub fn check_integrity(&mut self) -> Result<bool, StoreError> {
        let path = self.path.clone().unwrap_or_default();
        self.db
            .check_integrity()
            .map_err(|error| damaged(&path, error))
    }

    /// Writes the rows of a snapshot into a new store in `data_dir` (which must hold none) in
    /// one transaction. Nothing is verified here: the caller verifies the result before it
    /// puts it in place.
    pub fn create_from_rows(
        data_dir: &Path,
        cache_bytes: usize,
        rows: &[SnapshotRow],
    ) -> Result<RedbDatabase, StoreError> {
        let path = data_dir.join(DB_FILE_NAME);
        if path.exists() {
            return Err(StoreError::Io(format!(
                "{} exists already; a restore writes only into a new place",
                path.display()
            )));
        }
        let database = RedbDatabase::open_with_cache(data_dir, cache_bytes)?;
        let mut rows_out = RedbWriteRows {
            txn: database.db.begin_write().map_err(io)?,
        };
        for row in rows {
            let table = Table::named(&row.table).ok_or_else(|| {
                StoreError::Corrupt(format!("snapshot names an unknown table {}", row.table))
            })?;
            rows_out.put(table, &row.key, &row.value)?;
        }
        Box::new(rows_out).commit()?;
        Ok(database)
    }

    /// The store, authenticating authority rows with `sealer`.
    pub fn authenticated(self, sealer: Arc<RowSealer>) -> EngineStore {
        self.authenticated_with_fault(sealer, None)
    }

    /// Like [`RedbDatabase::authenticated`], calling `fault` before every engine call (tests).
    pub fn authenticated_with_fault(
        self,
        sealer: Arc<RowSealer>,
        fault: Option<FaultHook>,
    ) -> EngineStore {
        let engine = RedbEngine {
            db: std::sync::RwLock::new(Some(Arc::new(self.db))),
            path: self.path,
            cache_bytes: self.cache_bytes,
        };
        EngineStore::with_fault(Box::new(engine), sealer, fault)
    }

    fn initialise(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(io)?;
        check_schema(&txn)?;
        let rows = RedbWriteRows { txn };
        // Opening a table in a write transaction creates it: every table exists from the
        // start, so a read never meets a missing one.
        for table in crate::store::catalogue::SNAPSHOT_ORDER {
            rows.scan(table, None, Some(0), false)?;
        }
        Box::new(rows).commit()
    }
}

/// Writes the schema version into a new store; refuses a store of another version.
fn check_schema(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(io)?;
    let found = meta
        .get(SCHEMA_KEY)
        .map_err(io)?
        .map(|v| v.value().to_vec());
    match found {
        None => {
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes().as_slice())
                .map_err(io)?;
        }
        Some(bytes) => crate::store::check_schema_version(&bytes)?,
    }
    Ok(())
}

impl RedbEngine {
    /// The open database, unless it is being reopened.
    fn database(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Io("the store is being reopened after an error".into()))
    }
}

impl Engine for RedbEngine {
    fn read(&self) -> Result<Box<dyn RowsRead + '_>, StoreError> {
        Ok(Box::new(RedbReadRows {
            txn: self.database()?.begin_read().map_err(io)?,
        }))
    }

    fn write(&self) -> Result<Box<dyn RowsWrite + '_>, StoreError> {
        Ok(Box::new(RedbWriteRows {
            txn: self.database()?.begin_write().map_err(io)?,
        }))
    }

    fn rows(&self) -> Result<Box<dyn RowSource + '_>, StoreError> {
        Ok(Box::new(Immediate(RedbReadRows {
            txn: self.database()?.begin_read().map_err(io)?,
        })))
    }

    /// Closes the database and opens the file again, then commits a [`RECOVERY_RESERVE`]
    /// row: the store counts as recovered only when a commit of that size goes through (a
    /// small one can slip into pages redb already holds while the disk is still full). The
    /// file stays locked while a transaction on the old handle lives; then this fails and is
    /// tried again later.
    fn recover(&self) -> Result<(), StoreError> {
        // A store in memory has no file to reopen (and would be empty if reopened).
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        drop(slot.take());
        let database = open_database(path, self.cache_bytes)?;
        let reserved = (|| {
            let txn = database.begin_write().map_err(io)?;
            txn.open_table(META)
                .map_err(io)?
                .insert(
                    RECOVERY_RESERVE_KEY,
                    vec![0x5a; RECOVERY_RESERVE].as_slice(),
                )
                .map_err(io)?;
            txn.commit().map_err(io)
        })();
        *slot = Some(Arc::new(database));
        reserved
    }
}

/// A redb read snapshot as rows.
struct RedbReadRows {
    txn: ReadTransaction,
}

/// A redb write transaction as rows.
struct RedbWriteRows {
    txn: WriteTransaction,
}

/// A key of a text-keyed table.
fn text_key_of(table: Table, key: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(key)
        .map_err(|_| StoreError::Corrupt(format!("a key of {} is not text", table.name)))
}

/// A key of an integer-keyed table (`N` bytes, big-endian).
fn int_key_of<const N: usize>(table: Table, key: &[u8]) -> Result<[u8; N], StoreError> {
    <[u8; N]>::try_from(key)
        .map_err(|_| StoreError::Corrupt(format!("a key of {} has the wrong length", table.name)))
}

/// The index's values are text in the file.
fn index_value(value: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(value).map_err(|_| StoreError::Corrupt("an index entry is not text".into()))
}

/// The file's table of a catalogue table keyed by text.
pub fn text_table(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name)
}

/// Collects up to `limit` rows of a range, from its end if `descending`.
fn collect_rows<I, K, V>(
    range: I,
    limit: Option<usize>,
    descending: bool,
    key: impl Fn(&K) -> Vec<u8>,
    value: impl Fn(&V) -> Vec<u8>,
) -> Result<Vec<Row>, StoreError>
where
    I: DoubleEndedIterator<Item = Result<(K, V), redb::StorageError>>,
{
    let limit = limit.unwrap_or(usize::MAX);
    let row = |item: Result<(K, V), redb::StorageError>| {
        item.map(|(k, v)| (key(&k), value(&v))).map_err(io)
    };
    if descending {
        range.rev().take(limit).map(row).collect()
    } else {
        range.take(limit).map(row).collect()
    }
}

/// Rows of one open table after `after` (in scan order), as [`RowsRead::scan`] asks.
macro_rules! scan_table {
    ($table:expr, $k:ty, $after:expr, $limit:expr, $descending:expr, $key:expr, $value:expr) => {{
        let range = match ($after, $descending) {
            (None, _) => $table.iter(),
            (Some(after), false) => $table.range::<$k>((Bound::Excluded(after), Bound::Unbounded)),
            (Some(after), true) => $table.range::<$k>((Bound::Unbounded, Bound::Excluded(after))),
        }
        .map_err(io)?;
        collect_rows(range, $limit, $descending, $key, $value)
    }};
}

/// The row reads, shared by snapshots and write transactions: both open tables that implement
/// `ReadableTable`, but of different types, hence a macro rather than a generic.
macro_rules! impl_rows_read {
    ($type:ty) => {
        impl RowsRead for $type {
            fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                let found = match table.key {
                    KeyKind::Text => self
                        .txn
                        .open_table(text_table(table))
                        .map_err(io)?
                        .get(text_key_of(table, key)?)
                        .map_err(io)?
                        .map(|v| v.value().to_vec()),
                    KeyKind::Bytes => self
                        .txn
                        .open_table(INDEX)
                        .map_err(io)?
                        .get(key)
                        .map_err(io)?
                        .map(|v| v.value().as_bytes().to_vec()),
                    KeyKind::U64 => self
                        .txn
                        .open_table(TableDefinition::<u64, &[u8]>::new(table.name))
                        .map_err(io)?
                        .get(u64::from_be_bytes(int_key_of(table, key)?))
                        .map_err(io)?
                        .map(|v| v.value().to_vec()),
                    KeyKind::U32 => self
                        .txn
                        .open_table(TableDefinition::<u32, &[u8]>::new(table.name))
                        .map_err(io)?
                        .get(u32::from_be_bytes(int_key_of(table, key)?))
                        .map_err(io)?
                        .map(|v| v.value().to_vec()),
                };
                Ok(found)
            }

            /// The audit chain's and the checkpoints' last row straight from the B-tree (the
            /// writer asks for the head on every group commit).
            fn last(&self, table: Table) -> Result<Option<Row>, StoreError> {
                if table.key != KeyKind::U64 {
                    return Ok(self.scan(table, None, Some(1), true)?.pop());
                }
                let rows = self
                    .txn
                    .open_table(TableDefinition::<u64, &[u8]>::new(table.name))
                    .map_err(io)?;
                Ok(rows
                    .last()
                    .map_err(io)?
                    .map(|(k, v)| (k.value().to_be_bytes().to_vec(), v.value().to_vec())))
            }

            fn scan(
                &self,
                table: Table,
                after: Option<&[u8]>,
                limit: Option<usize>,
                descending: bool,
            ) -> Result<Vec<Row>, StoreError> {
                match table.key {
                    KeyKind::Text => {
                        let rows = self.txn.open_table(text_table(table)).map_err(io)?;
                        let after = after.map(|key| text_key_of(table, key)).transpose()?;
                        scan_table!(
                            rows,
                            &str,
                            after,
                            limit,
                            descending,
                            |k: &redb::AccessGuard<'_, &str>| k.value().as_bytes().to_vec(),
                            |v: &redb::AccessGuard<'_, &[u8]>| v.value().to_vec()
                        )
                    }
                    KeyKind::Bytes => {
                        let rows = self.txn.open_table(INDEX).map_err(io)?;
                        scan_table!(
                            rows,
                            &[u8],
                            after,
                            limit,
                            descending,
                            |k: &redb::AccessGuard<'_, &[u8]>| k.value().to_vec(),
                            |v: &redb::AccessGuard<'_, &str>| v.value().as_bytes().to_vec()
                        )
                    }
                    KeyKind::U64 => {
                        let rows = self
                            .txn
                            .open_table(TableDefinition::<u64, &[u8]>::new(table.name))
                            .map_err(io)?;
                        let after = after
                            .map(|key| int_key_of(table, key).map(u64::from_be_bytes))
                            .transpose()?;
                        scan_table!(
                            rows,
                            u64,
                            after,
                            limit,
                            descending,
                            |k: &redb::AccessGuard<'_, u64>| k.value().to_be_bytes().to_vec(),
                            |v: &redb::AccessGuard<'_, &[u8]>| v.value().to_vec()
                        )
                    }
                    KeyKind::U32 => {
                        let rows = self
                            .txn
                            .open_table(TableDefinition::<u32, &[u8]>::new(table.name))
                            .map_err(io)?;
                        let after = after
                            .map(|key| int_key_of(table, key).map(u32::from_be_bytes))
                            .transpose()?;
                        scan_table!(
                            rows,
                            u32,
                            after,
                            limit,
                            descending,
                            |k: &redb::AccessGuard<'_, u32>| k.value().to_be_bytes().to_vec(),
                            |v: &redb::AccessGuard<'_, &[u8]>| v.value().to_vec()
                        )
                    }
                }
            }
        }
    };
}

impl_rows_read!(RedbReadRows);
impl_rows_read!(RedbWriteRows);

impl RowsWrite for RedbWriteRows {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        match table.key {
            KeyKind::Text => {
                self.txn
                    .open_table(text_table(table))
                    .map_err(io)?
                    .insert(text_key_of(table, key)?, value)
                    .map_err(io)?;
            }
            KeyKind::Bytes => {
                self.txn
                    .open_table(INDEX)
                    .map_err(io)?
                    .insert(key, index_value(value)?)
                    .map_err(io)?;
            }
            KeyKind::U64 => {
                self.txn
                    .open_table(TableDefinition::<u64, &[u8]>::new(table.name))
                    .map_err(io)?
                    .insert(u64::from_be_bytes(int_key_of(table, key)?), value)
                    .map_err(io)?;
            }
            KeyKind::U32 => {
                self.txn
                    .open_table(TableDefinition::<u32, &[u8]>::new(table.name))
                    .map_err(io)?
                    .insert(u32::from_be_bytes(int_key_of(table, key)?), value)
                    .map_err(io)?;
            }
        }
        Ok(())
    }

    fn append_audit(&mut self, seq: u64, row: &[u8]) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(AUDIT).map_err(io)?;
        append_to(&mut table, seq, row)
    }

    fn append_audit_rows(&mut self, rows: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        // Opening a table costs redb a lookup and a decode of its definition, and closing it a
        // write of its root: once per commit, not once per entry.
        let mut table = self.txn.open_table(AUDIT).map_err(io)?;
        rows.iter()
            .try_for_each(|(seq, row)| append_to(&mut table, *seq, row))
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        match table.key {
            KeyKind::Text => {
                self.txn
                    .open_table(text_table(table))
                    .map_err(io)?
                    .remove(text_key_of(table, key)?)
                    .map_err(io)?;
            }
            KeyKind::Bytes => {
                self.txn
                    .open_table(INDEX)
                    .map_err(io)?
                    .remove(key)
                    .map_err(io)?;
            }
            KeyKind::U64 => {
                self.txn
                    .open_table(TableDefinition::<u64, &[u8]>::new(table.name))
                    .map_err(io)?
                    .remove(u64::from_be_bytes(int_key_of(table, key)?))
                    .map_err(io)?;
            }
            KeyKind::U32 => {
                self.txn
                    .open_table(TableDefinition::<u32, &[u8]>::new(table.name))
                    .map_err(io)?
                    .remove(u32::from_be_bytes(int_key_of(table, key)?))
                    .map_err(io)?;
            }
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.txn.commit().map_err(io)
    }
}

/// Appends one audit row to the open audit table; an entry under `seq` already is corruption.
fn append_to(
    table: &mut redb::Table<'_, u64, &'static [u8]>,
    seq: u64,
    row: &[u8],
) -> Result<(), StoreError> {
    if table.get(seq).map_err(io)?.is_some() {
        return Err(StoreError::Corrupt(format!(
            "audit entry {seq} exists already"
        )));
    }
    table.insert(seq, row).map_err(io)?;
    Ok(())
}
