//! The embedded store on redb: one file (`locker.redb`, mode 0600) in the data directory,
//! copy-on-write B-trees, MVCC snapshots for reads and fsync on every commit.
//!
//! Opening is two steps: [`RedbDatabase::open`] checks the file and its schema and gives access
//! to the metadata (where the state MAC key's reference lives); [`RedbDatabase::authenticated`]
//! then makes the store over this engine, which only keeps the catalogue's rows as bytes: the
//! file's tables keep the types they always had (text keys, integer keys for the audit chain,
//! checkpoints and audit keys, text values in the blind index), converted at this edge.
//!
//! The audit log is not in the file: its entries go to append-only
//! [segments](super::audit_segments) beside it, so a commit that changes no state costs one
//! `fdatasync` of its entries and no B-tree commit. A commit that does change state keeps both
//! atomic by committing its entries with the state, in the file's `audit_pending` table, before
//! it appends them to a segment: after a crash, entries found there but not in a segment are
//! appended again before anything else is written ([`RedbDatabase::open`], and the next write
//! transaction after an append that failed). Pending entries are dropped once a segment holding
//! them is on disk.

use std::fs::{self, File, OpenOptions};
use std::ops::Bound;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};

use crate::store::StoreError;
use crate::store::audit_segments::{AUDIT_DIR, AppendGuard, AuditSegments};
use crate::store::catalogue::{self, KeyKind, RECOVERY_RESERVE_KEY, SCHEMA_KEY, Table};
use crate::store::engine::Engine;
use crate::store::engine_store::EngineStore;
use crate::store::guard::FaultHook;
use crate::store::rows::{Row, RowsRead, RowsWrite};
use crate::store::sealing::RowSealer;
use crate::store::snapshot::SnapshotRow;
use crate::store::view::{Immediate, RowSource};

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
/// Where file schema 3 kept the audit rows, by sequence number (moved into segments when such
/// a store is first opened).
pub const LEGACY_AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// The entries of commits that changed state, until a segment holding them is on disk.
pub const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_pending");
/// Signed checkpoints by the sequence number they cover.
pub const CHECKPOINTS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_checkpoints");
/// Audit signing keys by version.
pub const AUDIT_KEYS: TableDefinition<u32, &[u8]> = TableDefinition::new("audit_keys");
/// Retired records by disposal date: `YYYY-MM-DD/handle` → queue entry.
pub const DISPOSAL_QUEUE: TableDefinition<&str, &[u8]> = TableDefinition::new("disposal_queue");
/// The file's schema: the rows of [`SCHEMA_VERSION`](crate::store::SCHEMA_VERSION), the audit
/// log in segment files. Version 3 (the log in the file) is migrated when opened.
pub const FILE_SCHEMA_VERSION: u32 = 4;
/// The file schema whose log is in the file itself.
const LEGACY_FILE_SCHEMA_VERSION: u32 = 3;
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
    log: AuditSegments,
}

/// The database file, opened and schema-checked, before rows can be authenticated.
#[derive(Debug)]
pub struct RedbDatabase {
    db: Database,
    path: Option<PathBuf>,
    cache_bytes: usize,
    log: AuditSegments,
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
        let log = match initialise(&db)? {
            Layout::Segments => AuditSegments::open(data_dir)?,
            Layout::InFile => migrate_log(&db, data_dir)?,
        };
        catch_up(&db, &log)?;
        Ok(RedbDatabase {
            db,
            path: Some(path),
            cache_bytes,
            log,
        })
    }

    /// A new, empty store held in memory only (redb's in-memory backend), lost when dropped:
    /// the store of unit tests, and one more implementation the conformance suite runs on.
    pub fn in_memory() -> Result<RedbDatabase, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(io)?;
        initialise(&db)?;
        Ok(RedbDatabase {
            db,
            path: None,
            cache_bytes: DEFAULT_CACHE_BYTES,
            log: AuditSegments::in_memory(),
        })
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
        let operators = txn.open_table(OPERATORS).map_err(io)?;
        Ok(self.log.is_empty() && operators.is_empty().map_err(io)?)
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
        let mut log = Vec::new();
        let mut rows_out = RedbWriteRows::new(&database.db, &database.log)?;
        for row in rows {
            let table = Table::named(&row.table).ok_or_else(|| {
                StoreError::Corrupt(format!("snapshot names an unknown table {}", row.table))
            })?;
            if table == catalogue::AUDIT {
                log.push((seq_of(&row.key)?, row.value.clone()));
            } else if !catalogue::is_engine_row(table, &row.key) {
                rows_out.put(table, &row.key, &row.value)?;
            }
        }
        // A new place nobody reads yet: the entries go straight into segments, on disk before
        // the state is committed.
        for chunk in log.chunks(4096) {
            database.log.append(chunk, false)?;
        }
        database.log.sync()?;
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
            log: self.log,
        };
        EngineStore::with_fault(Box::new(engine), sealer, fault)
    }
}

/// Where a store's audit log is.
#[derive(Debug, PartialEq, Eq)]
enum Layout {
    /// In segment files (file schema 4).
    Segments,
    /// In the file's `audit` table (file schema 3): to be moved.
    InFile,
}

/// Writes the file schema into a new store and creates every table (so a read never meets a
/// missing one); refuses a store of a schema this build cannot read.
fn initialise(db: &Database) -> Result<Layout, StoreError> {
    let txn = db.begin_write().map_err(io)?;
    let layout = {
        let mut meta = txn.open_table(META).map_err(io)?;
        let found = meta
            .get(SCHEMA_KEY)
            .map_err(io)?
            .map(|v| v.value().to_vec());
        match found {
            None => {
                meta.insert(SCHEMA_KEY, FILE_SCHEMA_VERSION.to_be_bytes().as_slice())
                    .map_err(io)?;
                Layout::Segments
            }
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("schema version".into()))?;
                match found {
                    FILE_SCHEMA_VERSION => Layout::Segments,
                    LEGACY_FILE_SCHEMA_VERSION => Layout::InFile,
                    found => {
                        return Err(StoreError::Schema {
                            found,
                            expected: FILE_SCHEMA_VERSION,
                        });
                    }
                }
            }
        }
    };
    for table in catalogue::SNAPSHOT_ORDER {
        match table.key {
            _ if table == catalogue::AUDIT => drop(txn.open_table(PENDING).map_err(io)?),
            KeyKind::Text => drop(txn.open_table(text_table(table)).map_err(io)?),
            KeyKind::Bytes => drop(txn.open_table(INDEX).map_err(io)?),
            KeyKind::U64 => drop(
                txn.open_table(TableDefinition::<u64, &[u8]>::new(table.name))
                    .map_err(io)?,
            ),
            KeyKind::U32 => drop(
                txn.open_table(TableDefinition::<u32, &[u8]>::new(table.name))
                    .map_err(io)?,
            ),
        }
    }
    txn.commit().map_err(io)?;
    Ok(layout)
}

/// Moves the audit rows of a file-schema-3 store into segments, then drops them from the file
/// and records schema 4 in one commit. Cut off before that commit, the store is still schema 3
/// and the segments written so far are written again.
fn migrate_log(db: &Database, data_dir: &Path) -> Result<AuditSegments, StoreError> {
    let rows: Vec<(u64, Vec<u8>)> = {
        let txn = db.begin_read().map_err(io)?;
        match txn.open_table(LEGACY_AUDIT) {
            Ok(table) => table
                .iter()
                .map_err(io)?
                .map(|row| {
                    row.map(|(k, v)| (k.value(), v.value().to_vec()))
                        .map_err(io)
                })
                .collect::<Result<_, _>>()?,
            Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
            Err(error) => return Err(io(error)),
        }
    };
    let dir = data_dir.join(AUDIT_DIR);
    if dir.exists() {
        tracing::warn!(dir = %dir.display(), "an earlier move of the audit log into segments was cut off: writing them again");
        fs::remove_dir_all(&dir).map_err(io)?;
    }
    let log = AuditSegments::create(data_dir, &rows)?;
    let txn = db.begin_write().map_err(io)?;
    txn.delete_table(LEGACY_AUDIT).map_err(io)?;
    txn.open_table(META)
        .map_err(io)?
        .insert(SCHEMA_KEY, FILE_SCHEMA_VERSION.to_be_bytes().as_slice())
        .map_err(io)?;
    txn.commit().map_err(io)?;
    tracing::info!(
        entries = rows.len(),
        "store file schema 3 → 4: the audit log moved into segment files"
    );
    Ok(log)
}

/// Appends the entries a commit made durable with its state but did not get into a segment
/// (a crash, an I/O error between the two), before anything else is written.
fn catch_up(db: &Database, log: &AuditSegments) -> Result<(), StoreError> {
    let _append = log.appender();
    let txn = db.begin_read().map_err(io)?;
    let behind = pending_after(&txn.open_table(PENDING).map_err(io)?, log.published())?;
    if !behind.is_empty() {
        log.append(&behind, true)?;
    }
    Ok(())
}

/// The pending entries after `seq`.
fn pending_after(
    table: &impl ReadableTable<u64, &'static [u8]>,
    seq: u64,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    table
        .range((Bound::Excluded(seq), Bound::Unbounded))
        .map_err(io)?
        .map(|row| {
            row.map(|(k, v)| (k.value(), v.value().to_vec()))
                .map_err(io)
        })
        .collect()
}

/// The sequence number of an audit key (8 bytes, big-endian).
fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    int_key_of::<8>(catalogue::AUDIT, key).map(u64::from_be_bytes)
}

/// Whether `data_dir` holds a store (its file, or any audit segment).
pub fn store_exists(data_dir: &Path) -> bool {
    let dir = data_dir.join(AUDIT_DIR);
    data_dir.join(DB_FILE_NAME).exists()
        || fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Moves the store in `from` (its segments, then its file, which marks a store) into `to`,
/// which holds none; both on one file system.
pub fn move_store(from: &Path, to: &Path) -> Result<(), StoreError> {
    let target = to.join(AUDIT_DIR);
    if target.exists() {
        fs::remove_dir(&target).map_err(io)?;
    }
    fs::rename(from.join(AUDIT_DIR), &target).map_err(io)?;
    fs::rename(from.join(DB_FILE_NAME), to.join(DB_FILE_NAME)).map_err(io)?;
    File::open(to).and_then(|dir| dir.sync_all()).map_err(io)
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

impl RedbEngine {
    /// A snapshot of the file and the log up to what was published when it began.
    fn snapshot(&self) -> Result<RedbReadRows<'_>, StoreError> {
        let database = self.database()?;
        let lock = self.log.snapshot_lock();
        let txn = database.begin_read().map_err(io)?;
        Ok(RedbReadRows {
            txn,
            log: &self.log,
            published: lock.published(),
        })
    }
}

impl Engine for RedbEngine {
    fn read(&self) -> Result<Box<dyn RowsRead + '_>, StoreError> {
        Ok(Box::new(self.snapshot()?))
    }

    fn write(&self) -> Result<Box<dyn RowsWrite + '_>, StoreError> {
        let database = self.database()?;
        let rows = RedbWriteRows::new(&database, &self.log)?;
        // Entries a failed append left only with their state go into the segment first (the
        // mark spares every other group commit the look at the pending table).
        if self.log.take_behind() {
            let owed = rows
                .txn
                .open_table(PENDING)
                .map_err(io)
                .and_then(|pending| pending_after(&pending, self.log.published()))
                .and_then(|owed| self.log.append(&owed, true));
            if let Err(error) = owed {
                self.log.mark_behind();
                return Err(error);
            }
        }
        Ok(Box::new(rows))
    }

    fn rows(&self) -> Result<Box<dyn RowSource + '_>, StoreError> {
        Ok(Box::new(Immediate(self.snapshot()?)))
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
            txn.commit().map_err(io)?;
            self.log.reserve(RECOVERY_RESERVE as u64)
        })();
        *slot = Some(Arc::new(database));
        reserved
    }
}

/// A redb read snapshot as rows.
struct RedbReadRows<'a> {
    txn: ReadTransaction,
    log: &'a AuditSegments,
    /// The last entry in a segment when the snapshot began.
    published: u64,
}

/// A redb write transaction as rows, holding the right to append to the log.
struct RedbWriteRows<'a> {
    txn: WriteTransaction,
    log: &'a AuditSegments,
    _append: AppendGuard<'a>,
    /// Entries appended in this transaction, for the log at commit.
    appended: Vec<(u64, Vec<u8>)>,
    /// Whether a row of the file was written (then the entries are committed with it).
    state_changed: bool,
}

impl<'a> RedbWriteRows<'a> {
    fn new(db: &Database, log: &'a AuditSegments) -> Result<RedbWriteRows<'a>, StoreError> {
        let append = log.appender();
        Ok(RedbWriteRows {
            txn: db.begin_write().map_err(io)?,
            log,
            _append: append,
            appended: Vec::new(),
            state_changed: false,
        })
    }
}

/// The audit log as one transaction sees it: the segments up to what was published when it
/// began, then entries committed with state but not yet in a segment (from its snapshot),
/// then a writer's own appended entries.
struct LogRows<'t> {
    segments: &'t AuditSegments,
    published: u64,
    pending: Vec<(u64, Vec<u8>)>,
    appended: &'t [(u64, Vec<u8>)],
}

fn audit_row(seq: u64, row: Vec<u8>) -> Row {
    (seq.to_be_bytes().to_vec(), row)
}

impl LogRows<'_> {
    fn tail(&self) -> impl DoubleEndedIterator<Item = &(u64, Vec<u8>)> {
        self.pending.iter().chain(self.appended.iter())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let seq = seq_of(key)?;
        if seq <= self.published {
            return Ok(self.segments.read(seq, seq)?.pop().map(|(_, row)| row));
        }
        Ok(self
            .tail()
            .find(|(s, _)| *s == seq)
            .map(|(_, row)| row.clone()))
    }

    fn scan(
        &self,
        after: Option<&[u8]>,
        limit: Option<usize>,
        descending: bool,
    ) -> Result<Vec<Row>, StoreError> {
        let after = after.map(seq_of).transpose()?;
        let limit = limit.unwrap_or(usize::MAX);
        let mut rows = Vec::new();
        if limit == 0 {
            return Ok(rows);
        }
        let tail_row = |(seq, row): &(u64, Vec<u8>)| audit_row(*seq, row.clone());
        if descending {
            let below = after.unwrap_or(u64::MAX);
            rows.extend(
                self.tail()
                    .rev()
                    .filter(|(seq, _)| *seq < below)
                    .take(limit)
                    .map(tail_row),
            );
            let top = self.published.min(below.saturating_sub(1));
            let wanted = (limit - rows.len()) as u64;
            if wanted > 0 && top >= 1 {
                let from = top.saturating_sub(wanted - 1).max(1);
                let read = self.segments.read(from, top)?;
                rows.extend(read.into_iter().rev().map(|(seq, row)| audit_row(seq, row)));
            }
        } else {
            let from = after.map_or(1, |seq| seq.saturating_add(1)).max(1);
            if from <= self.published {
                let to = self.published.min(from.saturating_add(limit as u64 - 1));
                let read = self.segments.read(from, to)?;
                rows.extend(read.into_iter().map(|(seq, row)| audit_row(seq, row)));
            }
            let wanted = limit - rows.len();
            rows.extend(
                self.tail()
                    .filter(|(seq, _)| *seq >= from)
                    .take(wanted)
                    .map(tail_row),
            );
        }
        Ok(rows)
    }
}

impl RedbReadRows<'_> {
    fn log_rows(&self) -> Result<LogRows<'_>, StoreError> {
        let pending = pending_after(&self.txn.open_table(PENDING).map_err(io)?, self.published)?;
        Ok(LogRows {
            segments: self.log,
            published: self.published,
            pending,
            appended: &[],
        })
    }
}

impl RedbWriteRows<'_> {
    fn log_rows(&self) -> Result<LogRows<'_>, StoreError> {
        // The writer caught up when it began: every pending entry is in a segment.
        Ok(LogRows {
            segments: self.log,
            published: self.log.published(),
            pending: Vec::new(),
            appended: &self.appended,
        })
    }

    /// The sequence number the next appended entry must have.
    fn next_seq(&self) -> u64 {
        self.appended
            .last()
            .map_or_else(|| self.log.published(), |(seq, _)| *seq)
            + 1
    }
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
                if table == catalogue::AUDIT {
                    return self.log_rows()?.get(key);
                }
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
                if table == catalogue::AUDIT {
                    return Ok(self.log_rows()?.scan(None, Some(1), true)?.pop());
                }
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
                if table == catalogue::AUDIT {
                    return self.log_rows()?.scan(after, limit, descending);
                }
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

impl_rows_read!(RedbReadRows<'_>);
impl_rows_read!(RedbWriteRows<'_>);

impl RowsWrite for RedbWriteRows<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if table == catalogue::AUDIT {
            return Err(StoreError::Corrupt(
                "audit entries are appended, never put".into(),
            ));
        }
        self.state_changed = true;
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
        let next = self.next_seq();
        if seq != next {
            return Err(StoreError::Corrupt(if seq < next {
                format!("audit entry {seq} exists already")
            } else {
                format!("audit entry {seq} does not follow entry {}", next - 1)
            }));
        }
        self.appended.push((seq, row.to_vec()));
        Ok(())
    }

    fn append_audit_rows(&mut self, rows: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        self.appended.reserve(rows.len());
        rows.iter()
            .try_for_each(|(seq, row)| self.append_audit(*seq, row))
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        if table == catalogue::AUDIT {
            return Err(StoreError::Corrupt(
                "the audit log is append-only: no entry is deleted".into(),
            ));
        }
        self.state_changed = true;
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

    /// A commit that changed no row of the file (an unseal's entry, a refusal) writes its
    /// entries to the segment, `fdatasync`s it and commits nothing else. One that did commits
    /// its entries with the state first (durable there), then appends them; if that append
    /// fails the entries are still durable and go into the segment before the next write.
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let RedbWriteRows {
            txn,
            log,
            _append,
            appended,
            state_changed,
        } = *self;
        if appended.is_empty() {
            return txn.commit().map_err(io);
        }
        if !state_changed {
            drop(txn);
            return log.append(&appended, true);
        }
        let bytes: u64 = appended.iter().map(|(_, row)| row.len() as u64 + 16).sum();
        log.reserve(bytes)?;
        {
            let synced = log.synced();
            let mut pending = txn.open_table(PENDING).map_err(io)?;
            let done: Vec<u64> = pending
                .range(..=synced)
                .map_err(io)?
                .map(|row| row.map(|(k, _)| k.value()).map_err(io))
                .collect::<Result<_, _>>()?;
            for seq in done {
                pending.remove(seq).map_err(io)?;
            }
            for (seq, row) in &appended {
                pending.insert(*seq, row.as_slice()).map_err(io)?;
            }
        }
        txn.commit().map_err(io)?;
        if let Err(error) = log.append(&appended, false) {
            log.mark_behind();
            tracing::warn!(%error, "committed entries not yet in an audit segment: appended before the next write");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(data_dir: &Path) -> RedbEngine {
        let database = RedbDatabase::open(data_dir).expect("open");
        RedbEngine {
            db: std::sync::RwLock::new(Some(Arc::new(database.db))),
            path: database.path,
            cache_bytes: database.cache_bytes,
            log: database.log,
        }
    }

    fn entry(seq: u64) -> Vec<u8> {
        format!("entry {seq}").into_bytes()
    }

    /// Commits entries `from..=to`, with a state row if `state`.
    fn commit(engine: &RedbEngine, from: u64, to: u64, state: bool) {
        let mut txn = engine.write().expect("write");
        if state {
            txn.put(catalogue::RECORDS, format!("r{to}").as_bytes(), b"record")
                .expect("put");
        }
        let rows: Vec<_> = (from..=to).map(|seq| (seq, entry(seq))).collect();
        txn.append_audit_rows(&rows).expect("append");
        txn.commit().expect("commit");
    }

    fn log_of(engine: &RedbEngine) -> Vec<(u64, Vec<u8>)> {
        engine
            .read()
            .expect("read")
            .scan(catalogue::AUDIT, None, None, false)
            .expect("scan")
            .into_iter()
            .map(|(key, row)| (seq_of(&key).expect("seq"), row))
            .collect()
    }

    fn expected(from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
        (from..=to).map(|seq| (seq, entry(seq))).collect()
    }

    fn pending(engine: &RedbEngine) -> Vec<u64> {
        let txn = engine.database().expect("db").begin_read().expect("read");
        let table = txn.open_table(PENDING).expect("pending");
        table
            .iter()
            .expect("iter")
            .map(|row| row.expect("row").0.value())
            .collect()
    }

    #[test]
    fn a_commit_without_state_leaves_the_file_alone_and_its_entries_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine(dir.path());
        commit(&engine, 1, 3, true);
        let file = dir.path().join(DB_FILE_NAME);
        let before = fs::read(&file).expect("read");
        commit(&engine, 4, 9, false);
        assert_eq!(fs::read(&file).expect("read"), before, "no redb commit");
        drop(engine);
        let engine = self::engine(dir.path());
        assert_eq!(log_of(&engine), expected(1, 9));
        // Reads by key and from the end agree.
        let reader = engine.read().expect("read");
        assert_eq!(
            reader
                .get(catalogue::AUDIT, &5u64.to_be_bytes())
                .expect("get"),
            Some(entry(5))
        );
        let tail = reader
            .scan(catalogue::AUDIT, Some(&8u64.to_be_bytes()), Some(3), true)
            .expect("scan");
        let seqs: Vec<u64> = tail.iter().map(|(k, _)| seq_of(k).expect("seq")).collect();
        assert_eq!(seqs, vec![7, 6, 5]);
        assert_eq!(
            reader.last(catalogue::AUDIT).expect("last"),
            Some((9u64.to_be_bytes().to_vec(), entry(9)))
        );
    }

    #[test]
    fn entries_committed_with_state_survive_a_lost_segment_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine(dir.path());
        commit(&engine, 1, 2, false);
        let segment = engine.log.files().pop().expect("segment");
        let synced_length = {
            let bytes = fs::read(&segment).expect("read");
            bytes.iter().rposition(|b| *b != 0).expect("data") + 1
        };
        commit(&engine, 3, 5, true);
        assert_eq!(pending(&engine), vec![3, 4, 5]);
        drop(engine);
        // The crash came after the state's commit, before the segment's bytes reached the
        // disk: they are gone from the file.
        let file = OpenOptions::new().write(true).open(&segment).expect("open");
        let length = file.metadata().expect("meta").len();
        file.set_len(synced_length as u64).expect("cut");
        file.set_len(length).expect("zeros");
        drop(file);
        let engine = self::engine(dir.path());
        assert_eq!(log_of(&engine), expected(1, 5), "caught up from the file");
        commit(&engine, 6, 6, false);
        commit(&engine, 7, 7, true);
        assert_eq!(
            pending(&engine),
            vec![7],
            "entries on disk in a segment are dropped"
        );
        drop(engine);
        assert_eq!(log_of(&self::engine(dir.path())), expected(1, 7));
    }

    #[test]
    fn a_snapshot_sees_the_log_as_it_was_when_it_began() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine(dir.path());
        commit(&engine, 1, 2, true);
        let before = engine.read().expect("read");
        commit(&engine, 3, 4, false);
        commit(&engine, 5, 5, true);
        let seqs = |rows: Vec<Row>| -> Vec<u64> {
            rows.iter().map(|(k, _)| seq_of(k).expect("seq")).collect()
        };
        assert_eq!(
            seqs(
                before
                    .scan(catalogue::AUDIT, None, None, false)
                    .expect("scan")
            ),
            vec![1, 2]
        );
        assert_eq!(before.get(catalogue::RECORDS, b"r5").expect("get"), None);
        assert_eq!(
            before
                .get(catalogue::AUDIT, &3u64.to_be_bytes())
                .expect("get"),
            None
        );
        let after = engine.read().expect("read");
        assert_eq!(
            seqs(
                after
                    .scan(catalogue::AUDIT, None, None, false)
                    .expect("scan")
            ),
            vec![1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn an_entry_out_of_order_is_refused_and_nothing_is_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine(dir.path());
        commit(&engine, 1, 2, true);
        let mut txn = engine.write().expect("write");
        for seq in [2, 4] {
            let refused = txn.append_audit(seq, &entry(seq)).expect_err("refused");
            assert!(matches!(refused, StoreError::Corrupt(_)), "{refused}");
        }
        let refused = txn
            .delete(catalogue::AUDIT, &1u64.to_be_bytes())
            .expect_err("append-only");
        assert!(refused.to_string().contains("append-only"), "{refused}");
        drop(txn);
        assert_eq!(log_of(&engine), expected(1, 2));
    }

    #[test]
    fn a_store_of_file_schema_3_has_its_log_moved_into_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = Database::create(dir.path().join(DB_FILE_NAME)).expect("create");
            let txn = db.begin_write().expect("write");
            txn.open_table(META)
                .expect("meta")
                .insert(SCHEMA_KEY, 3u32.to_be_bytes().as_slice())
                .expect("schema");
            let mut audit = txn.open_table(LEGACY_AUDIT).expect("audit");
            for seq in 1..=4u64 {
                audit.insert(seq, entry(seq).as_slice()).expect("insert");
            }
            drop(audit);
            txn.commit().expect("commit");
        }
        // A move cut off before: its half-written segments are written again.
        AuditSegments::create(dir.path(), &expected(1, 2)).expect("partial");
        let engine = engine(dir.path());
        assert_eq!(log_of(&engine), expected(1, 4));
        commit(&engine, 5, 5, false);
        let txn = engine.database().expect("db").begin_read().expect("read");
        assert!(matches!(
            txn.open_table(LEGACY_AUDIT),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
        let schema = txn
            .open_table(META)
            .expect("meta")
            .get(SCHEMA_KEY)
            .expect("get")
            .expect("schema")
            .value()
            .to_vec();
        assert_eq!(schema, FILE_SCHEMA_VERSION.to_be_bytes());
        drop(txn);
        drop(engine);
        assert_eq!(log_of(&self::engine(dir.path())), expected(1, 5));
    }
}
