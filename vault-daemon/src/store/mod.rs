//! Persistence behind the [`Store`] trait: records, the blind index, tenants, operators,
//! tokens and the audit chain.
//!
//! Layers, each written once: [`catalogue`] lists the tables; an [`engine::Engine`] (the
//! embedded [`redb`], or [`postgres`] that several daemons share)
//! stores their rows as bytes ([`rows`]) and declares what else it can do (an optimistic
//! writer, leases); [`guard`] turns an engine's panic into an error; [`typed`] gives the rows
//! their types, codecs and MACs; [`engine_store::EngineStore`] is the one [`Store`]. Every engine
//! passes one conformance suite (`vault_tests::store_conformance`), through the guard.
//!
//! Reads take an MVCC snapshot: a call's point reads through [`Store::view`] (asynchronous,
//! by entity), listings and the audit log through [`Store::reader`]; every write goes through the audit writer
//! (`audit::writer`), which applies [`mutation::Mutation`]s and their audit entries in one
//! transaction ([`Store::writer`]).

pub mod approvals;
pub mod audit_segments;
pub mod catalogue;
pub mod codec;
pub mod corrections;
pub mod engine;
pub mod engine_store;
pub mod guard;
pub mod lease;
pub mod mutation;
pub mod postgres;
pub mod redb;
pub mod rows;
pub mod sealing;
pub mod snapshot;
pub mod typed;
pub mod view;

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
use crate::error::Error;

/// Version of the stored layout; a store written with another version is refused at open.
/// Version 3: authenticated rows (`sealing`), record state bound to the DEK, linked checkpoints.
pub const SCHEMA_VERSION: u32 = 3;

/// Refuses a store whose stored schema version (4 bytes, big-endian) is not this build's.
pub fn check_schema_version(stored: &[u8]) -> Result<(), StoreError> {
    let found = <[u8; 4]>::try_from(stored)
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("schema version".into()))?;
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(StoreError::Schema {
            found,
            expected: SCHEMA_VERSION,
        })
    }
}

/// Failures of the store itself (not of the request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be read or written.
    #[error("store I/O failed: {0}")]
    Io(String),
    /// A stored value does not decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A row fails its authentication: edited, forged, or moved to another key or table.
    #[error("stored row {table}/{key} fails its integrity check (edited, forged or moved)")]
    Tampered {
        /// Table of the row.
        table: String,
        /// The row's key (an id, never a secret).
        key: String,
    },
    /// The key backend could not authenticate a row in time: fail closed.
    #[error("cannot authenticate stored rows: {0}")]
    Unauthenticated(String),
    /// The store's audit chain ends before an entry this daemon has itself committed: the
    /// database lost commits (a failover to a standby that was behind) or was rolled back.
    #[error(
        "the store's audit chain ends at entry {found}, but this daemon committed entry {committed}: the database lost commits (a failover to a standby that was behind?) or was rolled back"
    )]
    Behind {
        /// The store's last entry.
        found: u64,
        /// The last entry this daemon committed.
        committed: u64,
    },
    /// The audit log is not the one this daemon verified: an entry fails its hash or MAC, does
    /// not follow the one before, or an entry this daemon verified was replaced.
    #[error("the audit log was rewritten: {0}")]
    Rewritten(String),
    /// An optimistic write transaction found the chain head moved (another daemon appended):
    /// the writer applies the batch again under the lock. Never reaches a caller.
    #[error("the audit chain head moved since this daemon's last commit")]
    HeadMoved,
    /// The store was written by another schema version.
    #[error("store schema version {found} is not supported (expected {expected})")]
    Schema {
        /// Version found in the store.
        found: u32,
        /// Version this build writes.
        expected: u32,
    },
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Error {
        match error {
            StoreError::Io(_) | StoreError::HeadMoved => {
                Error::Unavailable(format!("{error}; nothing was released"))
            }
            StoreError::Corrupt(_)
            | StoreError::Tampered { .. }
            | StoreError::Behind { .. }
            | StoreError::Rewritten(_) => {
                Error::Integrity(format!("{error}; nothing was released"))
            }
            StoreError::Unauthenticated(_) => {
                Error::Unavailable(format!("{error}; nothing was released"))
            }
            StoreError::Schema { .. } => Error::Internal(error.to_string()),
        }
    }
}

/// The authority state as of an audit entry: the digest of every authority row (operators,
/// tokens, tenants, audit keys, destruction requests, epoch keys, tenant details) at the
/// commit that ended with entry `seq`. Written, authenticated, with every commit that changes
/// an authority row; checkpoints sign the digest too. A row restored from an older copy of the
/// store changes the digest, and no authenticated state names the restored one as current.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthorityState {
    /// Last audit entry of the commit.
    pub seq: u64,
    /// Its chain hash.
    pub hash: [u8; 32],
    /// [`StoreRead::authority_digest`] after the commit.
    pub digest: [u8; 32],
}

/// The state a checkpoint signs, in the clear: the authority digest at its entry, and the
/// records state the log vouched for there (the entry that last named the records digest, and
/// that digest). The checkpoint signs a digest of both (`audit::integrity::checkpoint_state`),
/// so start-up learns from this row, checked against the signature, what the records were at
/// the checkpoint even when later entries changed the authority rows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointState {
    /// The checkpoint's entry.
    pub seq: u64,
    /// The authority digest there.
    pub authority: [u8; 32],
    /// The records state there: the entry that named it, and the records digest.
    pub records: Option<(u64, [u8; 32])>,
}

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// Its header.
    pub header: snapshot::SnapshotHeader,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 of the whole snapshot.
    pub digest: [u8; 32],
}

/// A store: snapshots to read, transactions to write.
pub trait Store: Send + Sync + 'static {
    /// A consistent read-only snapshot.
    fn reader(&self) -> Result<Box<dyn StoreRead + '_>, StoreError>;
    /// A consistent snapshot for one call's point reads, awaited rather than blocked on
    /// ([`view`]); its snapshot is taken no later than its first read.
    fn view(&self) -> Result<view::View<'_>, StoreError>;
    /// What authenticates this store's rows and its audit log (the log key).
    fn sealer(&self) -> &sealing::RowSealer;
    /// A write transaction. Only the audit writer calls this.
    fn writer(&self) -> Result<Box<dyn StoreWrite + '_>, StoreError>;
    /// A write transaction that assumes the audit chain still ends at entry `head` (the last
    /// this writer committed) and checks it only when it first talks to the store, failing
    /// with [`StoreError::HeadMoved`] otherwise — also when that entry no longer has the hash
    /// `hash`; `None` where the engine offers no such thing (a store one process writes needs
    /// none).
    fn optimistic_writer(
        &self,
        head: u64,
        hash: &[u8; 32],
    ) -> Result<Option<Box<dyn StoreWrite + '_>>, StoreError>;
    /// Makes the store usable again after an I/O error (reopens it, reconnects); the audit
    /// writer calls it before it retries.
    fn recover(&self) -> Result<(), StoreError>;
    /// Takes or renews the lease on a cluster duty (checkpoints, rewrap, disposal) for
    /// `holder` for `ttl`; `false` while another holder's lease runs. On an engine without
    /// leases (one only one process can open, redb) the one daemon holds every duty.
    fn hold_lease(
        &self,
        duty: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;
    /// Gives up `holder`'s lease on `duty` at once (a lease held only across one call, such
    /// as the creation of an epoch key); a lease held by another holder stays.
    fn release_lease(&self, duty: &str, holder: &str) -> Result<(), StoreError>;
    /// Writes every row, from one read transaction, in the snapshot format to `sink` (an
    /// online backup); `false` from the sink stops it.
    fn snapshot(
        &self,
        sink: &mut dyn FnMut(&[u8]) -> bool,
        taken_at_ms: i64,
    ) -> Result<SnapshotSummary, StoreError>;
}

/// Reads, from a snapshot or from inside a write transaction.
pub trait StoreRead {
    /// The record with this handle.
    fn record(&self, handle: &Handle) -> Result<Option<Record>, StoreError>;
    /// The handle whose number has this blind index in `tenant`.
    fn index_lookup(&self, tenant: &str, index: &[u8; 32]) -> Result<Option<Handle>, StoreError>;
    /// A tenant.
    fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError>;
    /// Every tenant, by id.
    fn tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// An operator.
    fn operator(&self, id: &str) -> Result<Option<Operator>, StoreError>;
    /// Every operator, by id.
    fn operators(&self) -> Result<Vec<Operator>, StoreError>;
    /// A token.
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every token, by id.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// The last audit row and its key.
    fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;
    /// Up to `limit` audit rows with key greater than `after`, in key order.
    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// The last `limit` audit rows, in key order.
    fn audit_tail(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// Up to `limit` checkpoints with sequence number greater than `after`, in order.
    fn checkpoints_after(&self, after: u64, limit: usize) -> Result<Vec<Checkpoint>, StoreError>;
    /// The newest checkpoint.
    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;
    /// Every audit signing key version, oldest first.
    fn audit_keys(&self) -> Result<Vec<AuditKeyRecord>, StoreError>;
    /// SHA-256 over every authority row as stored (tables in a fixed order, rows in key order):
    /// what [`AuthorityState`] and checkpoints record.
    fn authority_digest(&self) -> Result<[u8; 32], StoreError>;
    /// The authority state of the newest commit that changed an authority row.
    fn authority_state(&self) -> Result<Option<AuthorityState>, StoreError>;
    /// The state the newest checkpoint signs, stored with it.
    fn checkpoint_state(&self) -> Result<Option<CheckpointState>, StoreError>;
    /// Up to `limit` records with handle greater than `after` (all tenants), in handle order.
    fn records_after(
        &self,
        after: Option<&Handle>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;
    /// The rewrap job of a tenant.
    fn job(&self, tenant: &str) -> Result<Option<RewrapJob>, StoreError>;
    /// Every rewrap job.
    fn jobs(&self) -> Result<Vec<RewrapJob>, StoreError>;
    /// Every key destruction request, by id.
    fn destructions(&self) -> Result<Vec<DestructionRequest>, StoreError>;
    /// A dual-control change request.
    fn change_request(&self, id: &str) -> Result<Option<ChangeRequest>, StoreError>;
    /// Every dual-control change request, by id.
    fn change_requests(&self) -> Result<Vec<ChangeRequest>, StoreError>;
    /// A tenant's disposal-epoch key.
    fn epoch_key(&self, tenant: &str, epoch: u32) -> Result<Option<EpochKey>, StoreError>;
    /// Every disposal-epoch key.
    fn epoch_keys(&self) -> Result<Vec<EpochKey>, StoreError>;
    /// Retired records waiting for disposal, earliest date first.
    fn disposal_queue(&self) -> Result<Vec<DisposalQueueEntry>, StoreError>;
    /// The deletion certificate of a disposed record.
    fn certificate(&self, handle: &Handle) -> Result<Option<DeletionCertificate>, StoreError>;
    /// A correction by id.
    fn correction(&self, id: &str) -> Result<Option<Correction>, StoreError>;
    /// Every correction record still kept.
    fn corrections(&self) -> Result<Vec<Correction>, StoreError>;
    /// A tenant's ledger details.
    fn tenant_info(&self, tenant: &str) -> Result<Option<TenantInfo>, StoreError>;
}

/// A write transaction. Nothing is visible to readers before [`StoreWrite::commit`].
pub trait StoreWrite: StoreRead {
    /// Inserts or replaces a record.
    fn put_record(&mut self, record: &Record) -> Result<(), StoreError>;
    /// Points a blind index at a handle.
    fn put_index(
        &mut self,
        tenant: &str,
        index: &[u8; 32],
        handle: &Handle,
    ) -> Result<(), StoreError>;
    /// Removes a blind index entry.
    fn remove_index(&mut self, tenant: &str, index: &[u8; 32]) -> Result<(), StoreError>;
    /// Inserts or replaces a tenant.
    fn put_tenant(&mut self, tenant: &Tenant) -> Result<(), StoreError>;
    /// Inserts or replaces an operator.
    fn put_operator(&mut self, operator: &Operator) -> Result<(), StoreError>;
    /// Inserts or replaces a token.
    fn put_token(&mut self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Appends an audit row under `seq`.
    fn append_audit(&mut self, seq: u64, row: &[u8]) -> Result<(), StoreError>;
    /// Appends audit entries in order, as [`StoreWrite::append_audit`] each: one call for a
    /// group commit's entries, so an engine opens its audit table once per commit.
    fn append_audit_rows(&mut self, rows: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        rows.iter()
            .try_for_each(|(seq, row)| self.append_audit(*seq, row))
    }
    /// Stores a checkpoint.
    fn put_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// Stores an audit signing key version.
    fn put_audit_key(&mut self, key: &AuditKeyRecord) -> Result<(), StoreError>;
    /// Stores a tenant's rewrap job.
    fn put_job(&mut self, job: &RewrapJob) -> Result<(), StoreError>;
    /// Stores a key destruction request.
    fn put_destruction(&mut self, request: &DestructionRequest) -> Result<(), StoreError>;
    /// Insert or replace a dual-control change request.
    fn put_change_request(&mut self, request: &ChangeRequest) -> Result<(), StoreError>;
    /// Insert or replace a disposal-epoch key.
    fn put_epoch_key(&mut self, key: &EpochKey) -> Result<(), StoreError>;
    /// Queue a retired record for disposal.
    fn queue_disposal(&mut self, entry: &DisposalQueueEntry) -> Result<(), StoreError>;
    /// Take a record off the disposal queue.
    fn unqueue_disposal(&mut self, dispose_on: &str, handle: &Handle) -> Result<(), StoreError>;
    /// Store a deletion certificate.
    fn put_certificate(&mut self, certificate: &DeletionCertificate) -> Result<(), StoreError>;
    /// Insert or replace a correction.
    fn put_correction(&mut self, correction: &Correction) -> Result<(), StoreError>;
    /// Delete a correction record.
    fn remove_correction(&mut self, id: &str) -> Result<(), StoreError>;
    /// Insert or replace a tenant's ledger details.
    fn put_tenant_info(&mut self, info: &TenantInfo) -> Result<(), StoreError>;
    /// Whether this transaction wrote or removed an authority row.
    fn authority_changed(&self) -> bool;
    /// Records the authority state after this transaction's changes.
    fn put_authority_state(&mut self, state: &AuthorityState) -> Result<(), StoreError>;
    /// Stores the state a checkpoint signs (with the checkpoint).
    fn put_checkpoint_state(&mut self, state: &CheckpointState) -> Result<(), StoreError>;
    /// Commits durably (fsync) everything written in this transaction.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}
