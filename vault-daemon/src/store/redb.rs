//! The embedded store on redb: one file (`locker.redb`, mode 0600) in the data directory,
//! copy-on-write B-trees, MVCC snapshots for reads and fsync on every commit.
//!
//! Opening is two steps: [`RedbDatabase::open`] checks the file and its schema and gives access
//! to the metadata (where the state MAC key's reference lives); [`RedbDatabase::authenticated`]
//! then makes the [`RedbStore`], which seals and opens every authority row with a
//! [`RowSealer`]. Records are authenticated by their associated data instead, audit entries by
//! the hash chain, checkpoints by their signatures.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle, WriteTransaction,
};

use vault_audit::certificate::DeletionCertificate;
use vault_audit::checkpoint::Checkpoint;

use crate::domain::approval::ChangeRequest;
use crate::domain::audit_key::AuditKeyRecord;
use crate::domain::correction::Correction;
use crate::domain::handle::Handle;
use crate::domain::lifecycle::{DisposalQueueEntry, EpochKey};
use crate::domain::operator::{Operator, Tenant};
use crate::domain::record::Record;
use crate::domain::rotation::{DestructionRequest, RewrapJob};
use crate::domain::tenant_info::TenantInfo;
use crate::domain::token::TokenRecord;
pub use crate::store::codec::index_key;
use crate::store::codec::{
    decode, decode_sealed, digest_row, disposal_key, encode, encode_sealed, epoch_key_id,
};
use crate::store::sealing::RowSealer;
use crate::store::snapshot::{SnapshotHeader, SnapshotRow, SnapshotWriter};
use crate::store::view::{
    IndexedFuture, IndexedRow, ListFuture, ReadAhead, RowKey, RowSource, RowsFuture, StoredRow,
    View, ViewTable, text_key,
};
use crate::store::{
    AuthorityState, CheckpointState, SCHEMA_VERSION, SnapshotSummary, Store, StoreError, StoreRead,
    StoreWrite,
};

/// File name of the database in the data directory.
pub const DB_FILE_NAME: &str = "locker.redb";

/// Store metadata (schema version).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Records by handle.
pub const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Blind index: tenant ‖ 0x00 ‖ HMAC → handle.
pub const INDEX: TableDefinition<&[u8], &str> = TableDefinition::new("blind_index");
/// Tenants by id.
pub const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// Operators by id.
pub const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("operators");
/// Tokens by id (hashes only).
pub const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// Audit rows by sequence number.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Signed checkpoints by the sequence number they cover.
pub const CHECKPOINTS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_checkpoints");
/// Rewrap jobs by tenant.
pub const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("rewrap_jobs");
/// Key destruction requests by id.
pub const DESTRUCTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("key_destructions");
/// Audit signing keys by version.
pub const AUDIT_KEYS: TableDefinition<u32, &[u8]> = TableDefinition::new("audit_keys");
/// Disposal-epoch keys: `tenant/epoch` → epoch key.
pub const EPOCH_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("epoch_keys");
/// Retired records by disposal date: `YYYY-MM-DD/handle` → queue entry.
pub const DISPOSAL_QUEUE: TableDefinition<&str, &[u8]> = TableDefinition::new("disposal_queue");
/// Correction requests and records: id → correction.
pub const CORRECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("corrections");
/// Ledger details: tenant → details.
pub const TENANT_INFO: TableDefinition<&str, &[u8]> = TableDefinition::new("tenant_info");
/// Deletion certificates: handle → certificate.
pub const CERTIFICATES: TableDefinition<&str, &[u8]> = TableDefinition::new("certificates");
/// Dual-control change requests (id → [`ChangeRequest`], authenticated).
pub const CHANGE_REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("change_requests");
/// The authority state (`authority` → [`AuthorityState`], authenticated).
pub const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("authority_state");
const STATE_KEY: &str = "authority";
const CHECKPOINT_STATE_KEY: &str = "checkpoint";
/// The text-keyed authority tables, in digest order (audit keys, keyed by version, come last).
const AUTHORITY_TABLES: [TableDefinition<&str, &[u8]>; 7] = [
    TENANTS,
    OPERATORS,
    TOKENS,
    DESTRUCTIONS,
    EPOCH_KEYS,
    TENANT_INFO,
    CHANGE_REQUESTS,
];

/// Every table keyed by text with byte values (all but the index, audit, checkpoints and
/// audit keys): what a snapshot copies as is.
const TEXT_KEYED_TABLES: [TableDefinition<&str, &[u8]>; 14] = [
    META,
    RECORDS,
    TENANTS,
    OPERATORS,
    TOKENS,
    JOBS,
    DESTRUCTIONS,
    EPOCH_KEYS,
    DISPOSAL_QUEUE,
    CORRECTIONS,
    TENANT_INFO,
    CERTIFICATES,
    CHANGE_REQUESTS,
    // Keep in step with `initialise`: a table missing here would be missing from backups.
    STATE,
];

fn is_authority(definition: TableDefinition<&str, &[u8]>) -> bool {
    AUTHORITY_TABLES
        .iter()
        .any(|table| table.name() == definition.name())
}

const SCHEMA_KEY: &str = "schema_version";
const RESERVE_KEY: &str = "recovery_reserve";
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

/// The redb store: every read and write of an authority row goes through its sealer.
///
/// After an I/O error (a full disk, say) redb refuses every later transaction until the
/// database is closed and opened again; [`Store::recover`] does that, so the locker serves again
/// once the cause is gone, without a restart.
#[derive(Debug)]
pub struct RedbStore {
    /// `None` between closing the failed handle and opening the file again.
    db: std::sync::RwLock<Option<Arc<Database>>>,
    /// `None`: held in memory ([`RedbDatabase::in_memory`]), nothing to reopen.
    path: Option<PathBuf>,
    cache_bytes: usize,
    sealer: Arc<RowSealer>,
    read_ahead: ReadAhead,
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
        let txn = database.db.begin_write().map_err(io)?;
        for row in rows {
            let unknown =
                || StoreError::Corrupt(format!("snapshot names an unknown table {}", row.table));
            let text_key = || {
                std::str::from_utf8(&row.key)
                    .map_err(|_| StoreError::Corrupt(format!("a key of {} is not text", row.table)))
            };
            if let Some(definition) = TEXT_KEYED_TABLES.iter().find(|t| t.name() == row.table) {
                txn.open_table(*definition)
                    .map_err(io)?
                    .insert(text_key()?, row.value.as_slice())
                    .map_err(io)?;
            } else if row.table == INDEX.name() {
                let handle = std::str::from_utf8(&row.value)
                    .map_err(|_| StoreError::Corrupt("an index entry is not text".into()))?;
                txn.open_table(INDEX)
                    .map_err(io)?
                    .insert(row.key.as_slice(), handle)
                    .map_err(io)?;
            } else if row.table == AUDIT.name() || row.table == CHECKPOINTS.name() {
                let key = <[u8; 8]>::try_from(row.key.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| unknown())?;
                let definition = if row.table == AUDIT.name() {
                    AUDIT
                } else {
                    CHECKPOINTS
                };
                txn.open_table(definition)
                    .map_err(io)?
                    .insert(key, row.value.as_slice())
                    .map_err(io)?;
            } else if row.table == AUDIT_KEYS.name() {
                let key = <[u8; 4]>::try_from(row.key.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| unknown())?;
                txn.open_table(AUDIT_KEYS)
                    .map_err(io)?
                    .insert(key, row.value.as_slice())
                    .map_err(io)?;
            } else {
                return Err(unknown());
            }
        }
        txn.commit().map_err(io)?;
        Ok(database)
    }

    /// The store, authenticating authority rows with `sealer`.
    pub fn authenticated(self, sealer: Arc<RowSealer>) -> RedbStore {
        RedbStore {
            db: std::sync::RwLock::new(Some(Arc::new(self.db))),
            path: self.path,
            cache_bytes: self.cache_bytes,
            sealer,
            read_ahead: ReadAhead::default(),
        }
    }

    fn initialise(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(io)?;
        {
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
                Some(bytes) => {
                    let found = <[u8; 4]>::try_from(bytes.as_slice())
                        .map(u32::from_be_bytes)
                        .map_err(|_| StoreError::Corrupt("schema version".into()))?;
                    if found != SCHEMA_VERSION {
                        return Err(StoreError::Schema {
                            found,
                            expected: SCHEMA_VERSION,
                        });
                    }
                }
            }
            txn.open_table(RECORDS).map_err(io)?;
            txn.open_table(INDEX).map_err(io)?;
            txn.open_table(TENANTS).map_err(io)?;
            txn.open_table(OPERATORS).map_err(io)?;
            txn.open_table(TOKENS).map_err(io)?;
            txn.open_table(AUDIT).map_err(io)?;
            txn.open_table(CHECKPOINTS).map_err(io)?;
            txn.open_table(AUDIT_KEYS).map_err(io)?;
            txn.open_table(JOBS).map_err(io)?;
            txn.open_table(DESTRUCTIONS).map_err(io)?;
            txn.open_table(EPOCH_KEYS).map_err(io)?;
            txn.open_table(DISPOSAL_QUEUE).map_err(io)?;
            txn.open_table(CERTIFICATES).map_err(io)?;
            txn.open_table(CORRECTIONS).map_err(io)?;
            txn.open_table(TENANT_INFO).map_err(io)?;
            txn.open_table(CHANGE_REQUESTS).map_err(io)?;
            txn.open_table(STATE).map_err(io)?;
        }
        txn.commit().map_err(io)
    }
}

impl RedbStore {
    /// Path of the database file (`None` for a store in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The open database, unless it is being reopened.
    fn database(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Io("the store is being reopened after an error".into()))
    }
}

impl Store for RedbStore {
    fn sealer(&self) -> &RowSealer {
        &self.sealer
    }

    fn reader(&self) -> Result<Box<dyn StoreRead + '_>, StoreError> {
        Ok(Box::new(RedbRead {
            txn: self.database()?.begin_read().map_err(io)?,
            sealer: &self.sealer,
        }))
    }

    fn view(&self) -> Result<View<'_>, StoreError> {
        let txn = self.database()?.begin_read().map_err(io)?;
        Ok(View::new(
            Box::new(RedbRows { txn }),
            &self.sealer,
            &self.read_ahead,
        ))
    }

    fn writer(&self) -> Result<Box<dyn StoreWrite + '_>, StoreError> {
        Ok(Box::new(RedbWrite {
            txn: self.database()?.begin_write().map_err(io)?,
            sealer: &self.sealer,
            authority_changed: false,
        }))
    }

    /// Closes the database and opens the file again, then commits a [`RECOVERY_RESERVE`]
    /// row: the store counts as recovered only when a commit of that size goes through (a
    /// small one can slip into pages redb already holds while the disk is still full). The
    /// file stays locked while a transaction on the old handle lives; then this fails and is
    /// tried again later.
    fn snapshot(
        &self,
        sink: &mut dyn FnMut(&[u8]) -> bool,
        taken_at_ms: i64,
    ) -> Result<SnapshotSummary, StoreError> {
        let reader = RedbRead {
            txn: self.database()?.begin_read().map_err(io)?,
            sealer: &self.sealer,
        };
        let header = SnapshotHeader::of(&reader, taken_at_ms)?;
        let txn = &reader.txn;
        let mut writer = SnapshotWriter::start(sink, &header)?;
        for definition in TEXT_KEYED_TABLES {
            let table = txn.open_table(definition).map_err(io)?;
            for item in table.iter().map_err(io)? {
                let (key, value) = item.map_err(io)?;
                // The recovery reserve is padding, not data.
                if definition.name() == META.name() && key.value() == RESERVE_KEY {
                    continue;
                }
                writer.row(definition.name(), key.value().as_bytes(), value.value())?;
            }
        }
        let index = txn.open_table(INDEX).map_err(io)?;
        for item in index.iter().map_err(io)? {
            let (key, value) = item.map_err(io)?;
            writer.row(INDEX.name(), key.value(), value.value().as_bytes())?;
        }
        for definition in [AUDIT, CHECKPOINTS] {
            let table = txn.open_table(definition).map_err(io)?;
            for item in table.iter().map_err(io)? {
                let (key, value) = item.map_err(io)?;
                writer.row(definition.name(), &key.value().to_be_bytes(), value.value())?;
            }
        }
        let keys = txn.open_table(AUDIT_KEYS).map_err(io)?;
        for item in keys.iter().map_err(io)? {
            let (key, value) = item.map_err(io)?;
            writer.row(AUDIT_KEYS.name(), &key.value().to_be_bytes(), value.value())?;
        }
        let (rows, bytes, digest) = writer.finish()?;
        Ok(SnapshotSummary {
            header,
            rows,
            bytes,
            digest,
        })
    }

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
                .insert(RESERVE_KEY, vec![0x5a; RECOVERY_RESERVE].as_slice())
                .map_err(io)?;
            txn.commit().map_err(io)
        })();
        *slot = Some(Arc::new(database));
        reserved
    }
}

struct RedbRead<'a> {
    txn: ReadTransaction,
    sealer: &'a RowSealer,
}

struct RedbWrite<'a> {
    txn: WriteTransaction,
    sealer: &'a RowSealer,
    authority_changed: bool,
}

/// A [`View`]'s rows: one redb snapshot, read in place (a page-cache lookup, nothing to wait
/// for).
struct RedbRows {
    txn: ReadTransaction,
}

impl RedbRows {
    fn get_now(&self, table: ViewTable, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !table.text_keyed() {
            let index = self.txn.open_table(INDEX).map_err(io)?;
            return Ok(index
                .get(key)
                .map_err(io)?
                .map(|handle| handle.value().as_bytes().to_vec()));
        }
        let rows = self.txn.open_table(view_definition(table)?).map_err(io)?;
        Ok(rows
            .get(text_key(table, key)?)
            .map_err(io)?
            .map(|value| value.value().to_vec()))
    }

    fn list_now(&self, table: ViewTable) -> Result<Vec<StoredRow>, StoreError> {
        let rows = self.txn.open_table(view_definition(table)?).map_err(io)?;
        let mut out = Vec::new();
        for item in rows.iter().map_err(io)? {
            let (key, value) = item.map_err(io)?;
            out.push((key.value().as_bytes().to_vec(), value.value().to_vec()));
        }
        Ok(out)
    }

    fn by_index_now(&self, key: &[u8]) -> Result<Option<IndexedRow>, StoreError> {
        let Some(handle) = self.get_now(ViewTable::Index, key)? else {
            return Ok(None);
        };
        let record = match std::str::from_utf8(&handle) {
            Ok(_) => self.get_now(ViewTable::Records, &handle)?,
            Err(_) => None,
        };
        Ok(Some((handle, record)))
    }
}

/// The text-keyed table a view reads.
fn view_definition(
    table: ViewTable,
) -> Result<TableDefinition<'static, &'static str, &'static [u8]>, StoreError> {
    Ok(match table {
        ViewTable::Records => RECORDS,
        ViewTable::Tenants => TENANTS,
        ViewTable::Operators => OPERATORS,
        ViewTable::Tokens => TOKENS,
        ViewTable::Jobs => JOBS,
        ViewTable::Destructions => DESTRUCTIONS,
        ViewTable::ChangeRequests => CHANGE_REQUESTS,
        ViewTable::EpochKeys => EPOCH_KEYS,
        ViewTable::DisposalQueue => DISPOSAL_QUEUE,
        ViewTable::Certificates => CERTIFICATES,
        ViewTable::Corrections => CORRECTIONS,
        ViewTable::TenantInfo => TENANT_INFO,
        ViewTable::Index => {
            return Err(StoreError::Corrupt(
                "the blind index is not a text-keyed table".into(),
            ));
        }
    })
}

impl RowSource for RedbRows {
    fn list<'a>(&'a self, table: ViewTable) -> ListFuture<'a> {
        Box::pin(std::future::ready(self.list_now(table)))
    }

    fn get_many<'a>(&'a self, keys: &'a [RowKey]) -> RowsFuture<'a> {
        let rows = keys
            .iter()
            .map(|(table, key)| self.get_now(*table, key))
            .collect();
        Box::pin(std::future::ready(rows))
    }

    fn by_index<'a>(&'a self, key: &'a [u8]) -> IndexedFuture<'a> {
        Box::pin(std::future::ready(self.by_index_now(key)))
    }
}

/// A row that authenticates itself otherwise (records: their associated data).
fn get_decoded<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    what: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key).map_err(io)? {
        Some(value) => decode(what, value.value()).map(Some),
        None => Ok(None),
    }
}

/// An authenticated row of `definition` by its key.
fn get_sealed<T: serde::de::DeserializeOwned>(
    sealer: &RowSealer,
    definition: TableDefinition<&'static str, &'static [u8]>,
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key).map_err(io)? {
        Some(value) => {
            decode_sealed(sealer, definition.name(), key.as_bytes(), value.value()).map(Some)
        }
        None => Ok(None),
    }
}

/// Every authenticated row of `definition`, in key order.
fn all_sealed<T: serde::de::DeserializeOwned>(
    sealer: &RowSealer,
    definition: TableDefinition<&'static str, &'static [u8]>,
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for item in table.iter().map_err(io)? {
        let (key, value) = item.map_err(io)?;
        out.push(decode_sealed(
            sealer,
            definition.name(),
            key.value().as_bytes(),
            value.value(),
        )?);
    }
    Ok(out)
}

impl RedbWrite<'_> {
    /// Seals `value` and stores it under `key` in `definition`.
    fn put_sealed<T: serde::Serialize>(
        &mut self,
        definition: TableDefinition<&'static str, &'static [u8]>,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let row = encode_sealed(self.sealer, definition.name(), key.as_bytes(), value)?;
        self.txn
            .open_table(definition)
            .map_err(io)?
            .insert(key, row.as_slice())
            .map_err(io)?;
        self.authority_changed |= is_authority(definition);
        Ok(())
    }
}

fn rows<'a>(
    iter: impl Iterator<
        Item = Result<
            (
                redb::AccessGuard<'a, u64>,
                redb::AccessGuard<'a, &'static [u8]>,
            ),
            redb::StorageError,
        >,
    >,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    iter.map(|item| {
        item.map(|(k, v)| (k.value(), v.value().to_vec()))
            .map_err(io)
    })
    .collect()
}

/// The read methods, shared by snapshots and write transactions: both open tables that
/// implement `ReadableTable`, but of different types, hence a macro rather than a generic.
macro_rules! impl_store_read {
    ($type:ty) => {
        impl StoreRead for $type {
            fn record(&self, handle: &Handle) -> Result<Option<Record>, StoreError> {
                let table = self.txn.open_table(RECORDS).map_err(io)?;
                get_decoded(&table, handle.as_str(), "record")
            }

            fn index_lookup(
                &self,
                tenant: &str,
                index: &[u8; 32],
            ) -> Result<Option<Handle>, StoreError> {
                let table = self.txn.open_table(INDEX).map_err(io)?;
                let key = index_key(tenant, index);
                match table.get(key.as_slice()).map_err(io)? {
                    Some(handle) => Handle::parse(handle.value())
                        .map(Some)
                        .map_err(|_| StoreError::Corrupt("blind index entry".into())),
                    None => Ok(None),
                }
            }

            fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
                let table = self.txn.open_table(TENANTS).map_err(io)?;
                get_sealed(self.sealer, TENANTS, &table, id)
            }

            fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
                let table = self.txn.open_table(TENANTS).map_err(io)?;
                all_sealed(self.sealer, TENANTS, &table)
            }

            fn operator(&self, id: &str) -> Result<Option<Operator>, StoreError> {
                let table = self.txn.open_table(OPERATORS).map_err(io)?;
                get_sealed(self.sealer, OPERATORS, &table, id)
            }

            fn operators(&self) -> Result<Vec<Operator>, StoreError> {
                let table = self.txn.open_table(OPERATORS).map_err(io)?;
                all_sealed(self.sealer, OPERATORS, &table)
            }

            fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
                let table = self.txn.open_table(TOKENS).map_err(io)?;
                get_sealed(self.sealer, TOKENS, &table, id)
            }

            fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
                let table = self.txn.open_table(TOKENS).map_err(io)?;
                all_sealed(self.sealer, TOKENS, &table)
            }

            fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
                let table = self.txn.open_table(AUDIT).map_err(io)?;
                Ok(table
                    .last()
                    .map_err(io)?
                    .map(|(k, v)| (k.value(), v.value().to_vec())))
            }

            fn audit_after(
                &self,
                after: u64,
                limit: usize,
            ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
                let table = self.txn.open_table(AUDIT).map_err(io)?;
                let start = after.saturating_add(1);
                rows(table.range(start..).map_err(io)?.take(limit))
            }

            fn audit_tail(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
                let table = self.txn.open_table(AUDIT).map_err(io)?;
                let mut out = rows(table.iter().map_err(io)?.rev().take(limit))?;
                out.reverse();
                Ok(out)
            }

            fn checkpoints_after(
                &self,
                after: u64,
                limit: usize,
            ) -> Result<Vec<Checkpoint>, StoreError> {
                let table = self.txn.open_table(CHECKPOINTS).map_err(io)?;
                rows(
                    table
                        .range(after.saturating_add(1)..)
                        .map_err(io)?
                        .take(limit),
                )?
                .iter()
                .map(|(_, bytes)| decode("checkpoint", bytes))
                .collect()
            }

            fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
                let table = self.txn.open_table(CHECKPOINTS).map_err(io)?;
                match table.last().map_err(io)? {
                    Some((_, bytes)) => decode("checkpoint", bytes.value()).map(Some),
                    None => Ok(None),
                }
            }

            fn records_after(
                &self,
                after: Option<&Handle>,
                limit: usize,
            ) -> Result<Vec<Record>, StoreError> {
                let table = self.txn.open_table(RECORDS).map_err(io)?;
                let range = match after {
                    Some(handle) => table.range(handle.as_str()..).map_err(io)?,
                    None => table.iter().map_err(io)?,
                };
                let mut out = Vec::with_capacity(limit);
                for item in range {
                    let (key, value) = item.map_err(io)?;
                    if after.is_some_and(|h| h.as_str() == key.value()) {
                        continue;
                    }
                    out.push(decode("record", value.value())?);
                    if out.len() == limit {
                        break;
                    }
                }
                Ok(out)
            }

            fn job(&self, tenant: &str) -> Result<Option<RewrapJob>, StoreError> {
                let table = self.txn.open_table(JOBS).map_err(io)?;
                get_sealed(self.sealer, JOBS, &table, tenant)
            }

            fn jobs(&self) -> Result<Vec<RewrapJob>, StoreError> {
                let table = self.txn.open_table(JOBS).map_err(io)?;
                all_sealed(self.sealer, JOBS, &table)
            }

            fn destructions(&self) -> Result<Vec<DestructionRequest>, StoreError> {
                let table = self.txn.open_table(DESTRUCTIONS).map_err(io)?;
                all_sealed(self.sealer, DESTRUCTIONS, &table)
            }

            fn change_request(&self, id: &str) -> Result<Option<ChangeRequest>, StoreError> {
                let table = self.txn.open_table(CHANGE_REQUESTS).map_err(io)?;
                get_sealed(self.sealer, CHANGE_REQUESTS, &table, id)
            }

            fn change_requests(&self) -> Result<Vec<ChangeRequest>, StoreError> {
                let table = self.txn.open_table(CHANGE_REQUESTS).map_err(io)?;
                all_sealed(self.sealer, CHANGE_REQUESTS, &table)
            }

            fn epoch_key(&self, tenant: &str, epoch: u32) -> Result<Option<EpochKey>, StoreError> {
                let table = self.txn.open_table(EPOCH_KEYS).map_err(io)?;
                get_sealed(
                    self.sealer,
                    EPOCH_KEYS,
                    &table,
                    &epoch_key_id(tenant, epoch),
                )
            }

            fn epoch_keys(&self) -> Result<Vec<EpochKey>, StoreError> {
                let table = self.txn.open_table(EPOCH_KEYS).map_err(io)?;
                all_sealed(self.sealer, EPOCH_KEYS, &table)
            }

            fn disposal_queue(&self) -> Result<Vec<DisposalQueueEntry>, StoreError> {
                let table = self.txn.open_table(DISPOSAL_QUEUE).map_err(io)?;
                all_sealed(self.sealer, DISPOSAL_QUEUE, &table)
            }

            fn certificate(
                &self,
                handle: &Handle,
            ) -> Result<Option<DeletionCertificate>, StoreError> {
                let table = self.txn.open_table(CERTIFICATES).map_err(io)?;
                get_sealed(self.sealer, CERTIFICATES, &table, handle.as_str())
            }

            fn correction(&self, id: &str) -> Result<Option<Correction>, StoreError> {
                let table = self.txn.open_table(CORRECTIONS).map_err(io)?;
                get_sealed(self.sealer, CORRECTIONS, &table, id)
            }

            fn corrections(&self) -> Result<Vec<Correction>, StoreError> {
                let table = self.txn.open_table(CORRECTIONS).map_err(io)?;
                all_sealed(self.sealer, CORRECTIONS, &table)
            }

            fn tenant_info(&self, tenant: &str) -> Result<Option<TenantInfo>, StoreError> {
                let table = self.txn.open_table(TENANT_INFO).map_err(io)?;
                get_sealed(self.sealer, TENANT_INFO, &table, tenant)
            }

            fn authority_digest(&self) -> Result<[u8; 32], StoreError> {
                let mut context = ring::digest::Context::new(&ring::digest::SHA256);
                for definition in AUTHORITY_TABLES {
                    let table = self.txn.open_table(definition).map_err(io)?;
                    for item in table.iter().map_err(io)? {
                        let (key, value) = item.map_err(io)?;
                        digest_row(
                            &mut context,
                            definition.name(),
                            key.value().as_bytes(),
                            value.value(),
                        );
                    }
                }
                let table = self.txn.open_table(AUDIT_KEYS).map_err(io)?;
                for item in table.iter().map_err(io)? {
                    let (version, value) = item.map_err(io)?;
                    digest_row(
                        &mut context,
                        AUDIT_KEYS.name(),
                        &version.value().to_be_bytes(),
                        value.value(),
                    );
                }
                let mut out = [0u8; 32];
                out.copy_from_slice(context.finish().as_ref());
                Ok(out)
            }

            fn authority_state(&self) -> Result<Option<AuthorityState>, StoreError> {
                let table = self.txn.open_table(STATE).map_err(io)?;
                get_sealed(self.sealer, STATE, &table, STATE_KEY)
            }

            fn checkpoint_state(&self) -> Result<Option<CheckpointState>, StoreError> {
                let table = self.txn.open_table(STATE).map_err(io)?;
                get_sealed(self.sealer, STATE, &table, CHECKPOINT_STATE_KEY)
            }

            fn audit_keys(&self) -> Result<Vec<AuditKeyRecord>, StoreError> {
                let table = self.txn.open_table(AUDIT_KEYS).map_err(io)?;
                let mut out = Vec::new();
                for item in table.iter().map_err(io)? {
                    let (version, value) = item.map_err(io)?;
                    out.push(decode_sealed(
                        self.sealer,
                        AUDIT_KEYS.name(),
                        &version.value().to_be_bytes(),
                        value.value(),
                    )?);
                }
                Ok(out)
            }
        }
    };
}

impl_store_read!(RedbRead<'_>);
impl_store_read!(RedbWrite<'_>);

impl StoreWrite for RedbWrite<'_> {
    fn put_record(&mut self, record: &Record) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(RECORDS).map_err(io)?;
        table
            .insert(record.handle.as_str(), encode(record)?.as_slice())
            .map_err(io)?;
        Ok(())
    }

    fn put_index(
        &mut self,
        tenant: &str,
        index: &[u8; 32],
        handle: &Handle,
    ) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(INDEX).map_err(io)?;
        table
            .insert(index_key(tenant, index).as_slice(), handle.as_str())
            .map_err(io)?;
        Ok(())
    }

    fn remove_index(&mut self, tenant: &str, index: &[u8; 32]) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(INDEX).map_err(io)?;
        table
            .remove(index_key(tenant, index).as_slice())
            .map_err(io)?;
        Ok(())
    }

    fn put_tenant(&mut self, tenant: &Tenant) -> Result<(), StoreError> {
        self.put_sealed(TENANTS, tenant.id.as_str(), tenant)
    }

    fn put_operator(&mut self, operator: &Operator) -> Result<(), StoreError> {
        self.put_sealed(OPERATORS, operator.id.as_str(), operator)
    }

    fn put_token(&mut self, token: &TokenRecord) -> Result<(), StoreError> {
        self.put_sealed(TOKENS, token.id.as_str(), token)
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

    fn put_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(CHECKPOINTS).map_err(io)?;
        table
            .insert(checkpoint.seq, encode(checkpoint)?.as_slice())
            .map_err(io)?;
        Ok(())
    }

    fn put_job(&mut self, job: &RewrapJob) -> Result<(), StoreError> {
        self.put_sealed(JOBS, job.tenant.as_str(), job)
    }

    fn put_destruction(&mut self, request: &DestructionRequest) -> Result<(), StoreError> {
        self.put_sealed(DESTRUCTIONS, request.id.as_str(), request)
    }

    fn put_change_request(&mut self, request: &ChangeRequest) -> Result<(), StoreError> {
        self.put_sealed(CHANGE_REQUESTS, request.id.as_str(), request)
    }

    fn put_epoch_key(&mut self, key: &EpochKey) -> Result<(), StoreError> {
        self.put_sealed(EPOCH_KEYS, &epoch_key_id(&key.tenant, key.epoch), key)
    }

    fn queue_disposal(&mut self, entry: &DisposalQueueEntry) -> Result<(), StoreError> {
        let key = disposal_key(&entry.dispose_on, &entry.handle);
        self.put_sealed(DISPOSAL_QUEUE, &key, entry)
    }

    fn unqueue_disposal(&mut self, dispose_on: &str, handle: &Handle) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(DISPOSAL_QUEUE).map_err(io)?;
        table
            .remove(disposal_key(dispose_on, handle.as_str()).as_str())
            .map_err(io)?;
        Ok(())
    }

    fn put_certificate(&mut self, certificate: &DeletionCertificate) -> Result<(), StoreError> {
        self.put_sealed(CERTIFICATES, certificate.handle.as_str(), certificate)
    }

    fn put_correction(&mut self, correction: &Correction) -> Result<(), StoreError> {
        self.put_sealed(CORRECTIONS, correction.id.as_str(), correction)
    }

    fn put_tenant_info(&mut self, info: &TenantInfo) -> Result<(), StoreError> {
        self.put_sealed(TENANT_INFO, info.tenant.as_str(), info)
    }

    fn remove_correction(&mut self, id: &str) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(CORRECTIONS).map_err(io)?;
        table.remove(id).map_err(io)?;
        Ok(())
    }

    fn put_audit_key(&mut self, key: &AuditKeyRecord) -> Result<(), StoreError> {
        let row = encode_sealed(
            self.sealer,
            AUDIT_KEYS.name(),
            &key.version.to_be_bytes(),
            key,
        )?;
        let mut table = self.txn.open_table(AUDIT_KEYS).map_err(io)?;
        table.insert(key.version, row.as_slice()).map_err(io)?;
        self.authority_changed = true;
        Ok(())
    }

    fn authority_changed(&self) -> bool {
        self.authority_changed
    }

    fn put_authority_state(&mut self, state: &AuthorityState) -> Result<(), StoreError> {
        self.put_sealed(STATE, STATE_KEY, state)
    }

    fn put_checkpoint_state(&mut self, state: &CheckpointState) -> Result<(), StoreError> {
        self.put_sealed(STATE, CHECKPOINT_STATE_KEY, state)
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
