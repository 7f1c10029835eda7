//! The request path's reads, asynchronous and by entity. A call reads its rows — its token and
//! operator, the record, the record's tenant, the blind index, and whatever its body needs of
//! tenants, operators, tokens, jobs, key destructions, change requests, epoch keys, the
//! disposal queue, certificates, corrections and ledger details — through a [`View`], with one
//! repository per entity ([`View::tokens`], [`View::records`], [`View::epoch_keys`], …): point
//! reads by id and whole listings.
//!
//! An engine supplies only a [`RowSource`] (stored bytes by table and key, several keys in one
//! read; [`Immediate`] makes one of a synchronous engine's read transaction); decoding and the
//! authentication of rows live here, once for every engine. On a server
//! database a read awaits its answer on the runtime instead of parking a worker thread in
//! `block_in_place`, as the synchronous [`StoreRead`](super::StoreRead) must.
//!
//! What a server database charges for is statements, so a view reads ahead: the store
//! remembers, per row, which row a view read next (a token's operator, a record's tenant), and
//! the next view that reads the first row fetches the second in the same statement. Nothing is
//! served from memory across views: a row read ahead is as fresh as the row asked for, comes
//! from the same consistent read, and is opened and authenticated like any other.
//!
//! Consistency: the rows of one [`RowSource::get_many`] are one state of the store, and so are
//! a blind index entry and the record it names ([`Records::by_index`]). Separate reads of one
//! view may see separate states on PostgreSQL (on redb a view is one snapshot). What needs one
//! snapshot across many reads, or pages through a large table, stays on the synchronous
//! traits: the audit writer's transaction, the integrity check and checkpoints, backups, the
//! audit log and reports read from it, pages of records (key status counts, rewrap batches)
//! and the disposal run.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

use vault_audit::certificate::DeletionCertificate;

use crate::domain::approval::ChangeRequest;
use crate::domain::correction::Correction;
use crate::domain::handle::Handle;
use crate::domain::lifecycle::{DisposalQueueEntry, EpochKey};
use crate::domain::operator::{Operator, Tenant};
use crate::domain::record::Record;
use crate::domain::rotation::{DestructionRequest, RewrapJob};
use crate::domain::tenant_info::TenantInfo;
use crate::domain::token::TokenRecord;
use crate::store::StoreError;
use crate::store::catalogue::{self, Table};
use crate::store::codec::{decode, decode_sealed, index_key};
use crate::store::rows::RowsRead;
use crate::store::sealing::RowSealer;

/// A table a [`View`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewTable {
    /// Records by handle (text keys).
    Records,
    /// The blind index: tenant ‖ 0x00 ‖ HMAC → handle (binary keys, text values).
    Index,
    /// Tenants by id.
    Tenants,
    /// Operators by id.
    Operators,
    /// Tokens by id.
    Tokens,
    /// Rewrap jobs by tenant.
    Jobs,
    /// Key destruction requests by id.
    Destructions,
    /// Dual-control change requests by id.
    ChangeRequests,
    /// Disposal-epoch keys by `tenant/epoch` ([`epoch_key_id`](crate::store::codec::epoch_key_id)).
    EpochKeys,
    /// Retired records waiting for disposal, by `date/handle`.
    DisposalQueue,
    /// Deletion certificates by handle.
    Certificates,
    /// Correction requests and records by id.
    Corrections,
    /// Ledger details by tenant.
    TenantInfo,
}

impl ViewTable {
    /// The catalogue's table.
    pub fn table(self) -> Table {
        match self {
            ViewTable::Records => catalogue::RECORDS,
            ViewTable::Index => catalogue::INDEX,
            ViewTable::Tenants => catalogue::TENANTS,
            ViewTable::Operators => catalogue::OPERATORS,
            ViewTable::Tokens => catalogue::TOKENS,
            ViewTable::Jobs => catalogue::JOBS,
            ViewTable::Destructions => catalogue::DESTRUCTIONS,
            ViewTable::ChangeRequests => catalogue::CHANGE_REQUESTS,
            ViewTable::EpochKeys => catalogue::EPOCH_KEYS,
            ViewTable::DisposalQueue => catalogue::DISPOSAL_QUEUE,
            ViewTable::Certificates => catalogue::CERTIFICATES,
            ViewTable::Corrections => catalogue::CORRECTIONS,
            ViewTable::TenantInfo => catalogue::TENANT_INFO,
        }
    }

    /// The table's name, shared by every store and bound into its rows' MACs.
    pub fn name(self) -> &'static str {
        self.table().name
    }

    /// Whether the table's keys are text (all but the index).
    pub fn text_keyed(self) -> bool {
        self != ViewTable::Index
    }
}

/// One row to read: its table and key (UTF-8 for text-keyed tables).
pub type RowKey = (ViewTable, Vec<u8>);

/// The answer to one read of several rows: each row's stored bytes, if its key is there, in
/// the order asked.
pub type RowsFuture<'a> = BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, StoreError>>;

/// A blind index entry as stored (the handle's bytes) with the stored record it names, if any.
pub type IndexedRow = (Vec<u8>, Option<Vec<u8>>);

/// The answer to a blind index read: the entry under the index key and the record it names,
/// both as of one state of the store.
pub type IndexedFuture<'a> = BoxFuture<'a, Result<Option<IndexedRow>, StoreError>>;

/// A stored row as (key, stored bytes).
pub type StoredRow = (Vec<u8>, Vec<u8>);

/// The answer to a listing: every row of a table, in key order.
pub type ListFuture<'a> = BoxFuture<'a, Result<Vec<StoredRow>, StoreError>>;

/// Stored rows by key: all a store implements for a [`View`].
pub trait RowSource: Send + Sync {
    /// The rows under `keys`, all from one state of the store (one statement, one snapshot).
    fn get_many<'a>(&'a self, keys: &'a [RowKey]) -> RowsFuture<'a>;
    /// Every row of the text-keyed `table`, in key order, from one state of the store.
    fn list<'a>(&'a self, table: ViewTable) -> ListFuture<'a>;
    /// The blind index entry under `key` and the record it names, from one state.
    fn by_index<'a>(&'a self, key: &'a [u8]) -> IndexedFuture<'a>;
}

/// The rows of a synchronous engine's read transaction (redb's snapshot) as a [`RowSource`]:
/// every read answered at once, all from that one snapshot.
pub struct Immediate<R>(pub R);

impl<R: RowsRead> Immediate<R> {
    fn by_index_now(&self, key: &[u8]) -> Result<Option<IndexedRow>, StoreError> {
        let Some(handle) = self.0.get(catalogue::INDEX, key)? else {
            return Ok(None);
        };
        let record = match std::str::from_utf8(&handle) {
            Ok(_) => self.0.get(catalogue::RECORDS, &handle)?,
            Err(_) => None,
        };
        Ok(Some((handle, record)))
    }
}

impl<R: RowsRead + Send + Sync> RowSource for Immediate<R> {
    fn get_many<'a>(&'a self, keys: &'a [RowKey]) -> RowsFuture<'a> {
        let rows = keys
            .iter()
            .map(|(table, key)| self.0.get(table.table(), key))
            .collect();
        Box::pin(std::future::ready(rows))
    }

    fn list<'a>(&'a self, table: ViewTable) -> ListFuture<'a> {
        Box::pin(std::future::ready(self.0.scan(
            table.table(),
            None,
            None,
            false,
        )))
    }

    fn by_index<'a>(&'a self, key: &'a [u8]) -> IndexedFuture<'a> {
        Box::pin(std::future::ready(self.by_index_now(key)))
    }
}

/// Rows remembered, across views, as read after another row at most; past it the memory is
/// cleared (it only saves statements, it decides nothing).
const READ_AHEAD_CAPACITY: usize = 100_000;

/// Which row a view read after which (a token's operator, a record's tenant): a hint for the
/// next view's reads, never a value.
#[derive(Debug, Default)]
pub struct ReadAhead {
    next: Mutex<HashMap<RowKey, RowKey>>,
}

impl ReadAhead {
    fn after(&self, row: &RowKey) -> Option<RowKey> {
        self.next
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(row)
            .cloned()
    }

    fn learn(&self, row: RowKey, next: RowKey) {
        let mut map = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= READ_AHEAD_CAPACITY {
            map.clear();
        }
        map.insert(row, next);
    }
}

/// The reads of one call, through per-entity repositories.
pub struct View<'s> {
    rows: Box<dyn RowSource + 's>,
    sealer: &'s RowSealer,
    read_ahead: &'s ReadAhead,
    /// Rows read ahead and not asked for yet.
    fetched: Mutex<HashMap<RowKey, Option<Vec<u8>>>>,
    /// The row this view read last, to learn what follows it.
    last: Mutex<Option<RowKey>>,
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").finish_non_exhaustive()
    }
}

impl<'s> View<'s> {
    /// A view over `rows`, opening authenticated rows with `sealer`, reading ahead what
    /// `read_ahead` remembers.
    pub fn new(
        rows: Box<dyn RowSource + 's>,
        sealer: &'s RowSealer,
        read_ahead: &'s ReadAhead,
    ) -> View<'s> {
        View {
            rows,
            sealer,
            read_ahead,
            fetched: Mutex::new(HashMap::new()),
            last: Mutex::new(None),
        }
    }

    /// The same view with its rows read through `wrap` (a guard around the store's reads).
    pub fn map_rows(
        self,
        wrap: impl FnOnce(Box<dyn RowSource + 's>) -> Box<dyn RowSource + 's>,
    ) -> View<'s> {
        View {
            rows: wrap(self.rows),
            ..self
        }
    }

    /// Records and the blind index.
    pub fn records(&self) -> Records<'_, 's> {
        Records { view: self }
    }

    /// Tenants.
    pub fn tenants(&self) -> Authenticated<'_, 's, Tenant> {
        self.authenticated(ViewTable::Tenants)
    }

    /// Operators.
    pub fn operators(&self) -> Authenticated<'_, 's, Operator> {
        self.authenticated(ViewTable::Operators)
    }

    /// Tokens (their hashes).
    pub fn tokens(&self) -> Authenticated<'_, 's, TokenRecord> {
        self.authenticated(ViewTable::Tokens)
    }

    /// Rewrap jobs, by tenant.
    pub fn jobs(&self) -> Authenticated<'_, 's, RewrapJob> {
        self.authenticated(ViewTable::Jobs)
    }

    /// Key destruction requests.
    pub fn destructions(&self) -> Authenticated<'_, 's, DestructionRequest> {
        self.authenticated(ViewTable::Destructions)
    }

    /// Dual-control change requests.
    pub fn change_requests(&self) -> Authenticated<'_, 's, ChangeRequest> {
        self.authenticated(ViewTable::ChangeRequests)
    }

    /// Disposal-epoch keys, by [`epoch_key_id`](crate::store::codec::epoch_key_id).
    pub fn epoch_keys(&self) -> Authenticated<'_, 's, EpochKey> {
        self.authenticated(ViewTable::EpochKeys)
    }

    /// The disposal queue, earliest date first.
    pub fn disposal_queue(&self) -> Authenticated<'_, 's, DisposalQueueEntry> {
        self.authenticated(ViewTable::DisposalQueue)
    }

    /// Deletion certificates, by handle.
    pub fn certificates(&self) -> Authenticated<'_, 's, DeletionCertificate> {
        self.authenticated(ViewTable::Certificates)
    }

    /// Correction requests and records.
    pub fn corrections(&self) -> Authenticated<'_, 's, Correction> {
        self.authenticated(ViewTable::Corrections)
    }

    /// Ledger details, by tenant.
    pub fn tenant_info(&self) -> Authenticated<'_, 's, TenantInfo> {
        self.authenticated(ViewTable::TenantInfo)
    }

    fn authenticated<T>(&self, table: ViewTable) -> Authenticated<'_, 's, T> {
        Authenticated {
            view: self,
            table,
            entity: std::marker::PhantomData,
        }
    }

    /// The stored bytes under `key` in `table`: read ahead by an earlier read of this view,
    /// or read now together with the row that followed it last time.
    async fn row(&self, table: ViewTable, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let wanted: RowKey = (table, key.to_vec());
        let previous = self
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(wanted.clone());
        let ahead = self
            .fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&wanted);
        if let Some(found) = ahead {
            return Ok(found);
        }
        if let Some(previous) = previous.filter(|previous| *previous != wanted) {
            self.read_ahead.learn(previous, wanted.clone());
        }
        let next = self
            .read_ahead
            .after(&wanted)
            .filter(|next| *next != wanted);
        let keys: Vec<RowKey> = std::iter::once(wanted).chain(next).collect();
        let mut answers = self.rows.get_many(&keys).await?.into_iter();
        let found = answers.next().flatten();
        if let (Some(next), Some(answer)) = (keys.into_iter().nth(1), answers.next()) {
            self.fetched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(next, answer);
        }
        Ok(found)
    }
}

/// The repository of an entity kept in authenticated rows (tenants, operators, tokens): a row
/// is returned only once its MAC holds for this table and key.
pub struct Authenticated<'v, 's, T> {
    view: &'v View<'s>,
    table: ViewTable,
    entity: std::marker::PhantomData<fn() -> T>,
}

impl<T: serde::de::DeserializeOwned> Authenticated<'_, '_, T> {
    /// The entity with this id.
    pub async fn get(&self, id: &str) -> Result<Option<T>, StoreError> {
        let key = id.as_bytes();
        match self.view.row(self.table, key).await? {
            Some(value) => {
                decode_sealed(self.view.sealer, self.table.name(), key, &value).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Every entity, in key order.
    pub async fn list(&self) -> Result<Vec<T>, StoreError> {
        self.view
            .rows
            .list(self.table)
            .await?
            .iter()
            .map(|(key, value)| decode_sealed(self.view.sealer, self.table.name(), key, value))
            .collect()
    }
}

/// The repository of records, which authenticate themselves by their associated data, and of
/// the blind index, which the record it names must confirm.
pub struct Records<'v, 's> {
    view: &'v View<'s>,
}

impl Records<'_, '_> {
    /// The record with this handle.
    pub async fn get(&self, handle: &Handle) -> Result<Option<Record>, StoreError> {
        match self
            .view
            .row(ViewTable::Records, handle.as_str().as_bytes())
            .await?
        {
            Some(value) => decode("record", &value).map(Some),
            None => Ok(None),
        }
    }

    /// The handle the blind index gives for `index` in `tenant`, with the record stored under
    /// it (`None` if there is none), both from one state of the store.
    pub async fn by_index(
        &self,
        tenant: &str,
        index: &[u8; 32],
    ) -> Result<Option<(Handle, Option<Record>)>, StoreError> {
        let key = index_key(tenant, index);
        let Some((handle, record)) = self.view.rows.by_index(&key).await? else {
            return Ok(None);
        };
        let handle = std::str::from_utf8(&handle)
            .ok()
            .and_then(|text| Handle::parse(text).ok())
            .ok_or_else(|| StoreError::Corrupt("blind index entry".into()))?;
        let record = match record {
            Some(value) => Some(decode("record", &value)?),
            None => None,
        };
        Ok(Some((handle, record)))
    }
}

/// The key of a text-keyed table as text; views only ever pass ids and handles.
pub fn text_key(table: ViewTable, key: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(key)
        .map_err(|_| StoreError::Corrupt(format!("a {} key that is not text", table.name())))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::domain::operator::Role;
    use crate::store::Store;
    use crate::store::engine_store::EngineStore;
    use crate::store::redb::RedbDatabase;
    use crate::store::sealing::RowAuthenticator;

    struct SoftwareMac;

    impl RowAuthenticator for SoftwareMac {
        fn tag(&self, message: &[u8]) -> Result<[u8; 32], StoreError> {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"unit tests only");
            let mut out = [0u8; 32];
            out.copy_from_slice(ring::hmac::sign(&key, message).as_ref());
            Ok(out)
        }
    }

    fn store_in_memory() -> EngineStore {
        RedbDatabase::in_memory()
            .expect("in memory")
            .authenticated(Arc::new(RowSealer::new(Arc::new(SoftwareMac))))
    }

    /// Counts the reads that reach the store.
    struct Counted<'a> {
        inner: Box<dyn RowSource + 'a>,
        reads: &'a AtomicUsize,
    }

    impl RowSource for Counted<'_> {
        fn get_many<'b>(&'b self, keys: &'b [RowKey]) -> RowsFuture<'b> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.get_many(keys)
        }

        fn by_index<'b>(&'b self, key: &'b [u8]) -> IndexedFuture<'b> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.by_index(key)
        }

        fn list<'b>(&'b self, table: ViewTable) -> ListFuture<'b> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.list(table)
        }
    }

    fn operator(id: &str) -> Operator {
        Operator {
            id: id.into(),
            role: Role::Handler,
            display_name: id.into(),
            disabled: false,
            grants: Vec::new(),
            created_at_ms: 1,
        }
    }

    fn token(id: &str, operator: &str) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            hash: [1; 32],
            operator_id: operator.into(),
            issued_at_ms: 1,
            expires_at_ms: 2,
            revoked: false,
            cert_fingerprint: None,
        }
    }

    /// Reads a token and its operator through a counted view; returns the reads it took.
    async fn authenticate(store: &EngineStore, id: &str) -> (Operator, usize) {
        let reads = AtomicUsize::new(0);
        let view = store.view().expect("view").map_rows(|inner| {
            Box::new(Counted {
                inner,
                reads: &reads,
            })
        });
        let token = view.tokens().get(id).await.expect("read").expect("token");
        let operator = view
            .operators()
            .get(&token.operator_id)
            .await
            .expect("read")
            .expect("operator");
        drop(view);
        (operator, reads.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_token_and_its_operator_take_one_read_once_learned() {
        let store = store_in_memory();
        let mut txn = store.writer().expect("writer");
        txn.put_operator(&operator("clerk")).expect("put");
        txn.put_operator(&operator("other")).expect("put");
        txn.put_token(&token("t1", "clerk")).expect("put");
        txn.commit().expect("commit");

        assert_eq!(authenticate(&store, "t1").await, (operator("clerk"), 2));
        assert_eq!(authenticate(&store, "t1").await, (operator("clerk"), 1));
        // The token now names another operator: the row read ahead goes unused, the right one
        // is read, and learned.
        let mut txn = store.writer().expect("writer");
        txn.put_token(&token("t1", "other")).expect("put");
        txn.commit().expect("commit");
        assert_eq!(authenticate(&store, "t1").await, (operator("other"), 2));
        assert_eq!(authenticate(&store, "t1").await, (operator("other"), 1));
    }
}
