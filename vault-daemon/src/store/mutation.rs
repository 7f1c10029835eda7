//! State changes, applied by the audit writer inside its transaction.
//!
//! A mutation checks its preconditions against the transaction's current state before writing
//! anything, so a refused mutation leaves no partial write behind and concurrent requests
//! cannot race past each other (two seals of one number, two disposals of one record).

use vault_audit::certificate::DeletionCertificate;
use vault_audit::checkpoint::Checkpoint;

use crate::domain::approval::{Approval, ChangeRequest, approver_refusal};
use crate::domain::audit_key::AuditKeyRecord;
use crate::domain::correction::Correction;
use crate::domain::handle::Handle;
use crate::domain::lifecycle::{DisposalQueueEntry, EpochKey};
use crate::domain::operator::{Grant, KeyState, Operator, Role, Tenant, TenantKeys};
use crate::domain::record::{Record, RecordStatus, SealedNumber, Tombstone};
use crate::domain::rotation::{DestructionRequest, DestructionState, RewrapJob};
use crate::domain::tenant_info::{TenantInfo, TenantInfoPatch};
use crate::domain::token::TokenRecord;
use crate::error::Error;
use crate::store::approvals::{self, ApprovalStep};
use crate::store::corrections::{self, Decision};
use crate::store::{CheckpointState, StoreError, StoreWrite};

/// What a call read of a record or the blind index and decided on: checked again when its
/// entry is committed (see `audit::records`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The record `handle` had the version with this tag (`None`: there was none).
    Record {
        /// The record.
        handle: Handle,
        /// Its tag as read.
        tag: Option<u64>,
        /// The version read: a later version that differs only in key material (a rotation
        /// rewrapped it meanwhile) lets the call stand.
        read: Option<Box<Record>>,
    },
    /// The tenant held no entry under this blind index.
    Unindexed {
        /// The tenant.
        tenant: String,
        /// The blind index looked up.
        index: [u8; 32],
    },
    /// A key destruction request is as read, and the authority rows are what the log names:
    /// checked before its key is destroyed in the backend, which nothing undoes.
    Destruction(Box<DestructionRequest>),
    /// A disposal-epoch key row is as read, and the authority rows are what the log names:
    /// checked before the key is destroyed in the backend.
    EpochKey(Box<EpochKey>),
}

/// A change to an operator.
#[derive(Debug, Clone)]
pub enum OperatorChange {
    /// Disable the operator (its tokens stop working).
    Disable,
    /// Enable a disabled operator again.
    Enable,
    /// Add grants.
    Grant(Vec<Grant>),
    /// Remove grants.
    Revoke(Vec<Grant>),
}

/// A state change carried with an audit entry.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Nothing to write: the unit carries only its audit entry.
    None,
    /// Nothing to write, but what the call read must still be current where its entry lands
    /// in the log (the audit writer checks it against its record view before applying).
    Expect(Vec<Expected>),
    /// Insert a sealed record and its blind index, unless the tenant holds the number already.
    InsertRecord(Box<Record>),
    /// Delete a record's ciphertext, wrapped key and index entry, keeping a tombstone.
    DisposeRecord {
        /// The record.
        handle: Handle,
        /// Who, when, why.
        tombstone: Tombstone,
        /// The signed deletion certificate to keep.
        certificate: Box<DeletionCertificate>,
    },
    /// Retire a record: replace it by its retired form (rewrapped under the epoch key), queue
    /// it for disposal, and store the epoch key if it is new. Only if the record still holds
    /// exactly the ciphertext that was rewrapped.
    RetireRecord {
        /// The sealed form that was read.
        expected: SealedNumber,
        /// The record, retired.
        updated: Box<Record>,
        /// A newly created epoch key, to store.
        new_epoch_key: Option<EpochKey>,
    },
    /// Undo a retirement: replace the record by its active form (back under the tenant key)
    /// and take it off the disposal queue. Only if it still holds `expected`.
    UnretireRecord {
        /// The sealed form that was read.
        expected: SealedNumber,
        /// The record, active again.
        updated: Box<Record>,
    },
    /// Store a correction request (with its new number, sealed).
    RequestCorrection(Box<Correction>),
    /// Approve or reject a pending correction.
    DecideCorrection(Decision),
    /// Delete correction records kept their year.
    PurgeCorrections(Vec<String>),
    /// Change some or all of a tenant's ledger details (merged with the stored ones here, so
    /// two admins changing different fields at once both keep theirs).
    UpdateTenantInfo(Box<TenantInfoPatch>),
    /// Mark a disposal-epoch key destroyed (after the backend destroyed it).
    DestroyEpochKey {
        /// Tenant id.
        tenant: String,
        /// The epoch.
        epoch: u32,
        /// When.
        now_ms: i64,
    },
    /// Create a tenant.
    CreateTenant(Tenant),
    /// Create an operator.
    CreateOperator(Operator),
    /// Change an operator.
    ChangeOperator {
        /// Operator id.
        id: String,
        /// The change.
        change: OperatorChange,
    },
    /// Store a newly issued token.
    IssueToken(TokenRecord),
    /// Revoke a token.
    RevokeToken(String),
    /// Store a signed checkpoint (unless one for a later entry exists already), with the state
    /// it signs.
    PutCheckpoint(Checkpoint, CheckpointState),
    /// Add an audit signing key version (the next version number).
    AddAuditKey(AuditKeyRecord),
    /// Add a new active key version to a tenant (older ones become decrypt-only) and start the
    /// job that rewraps its records.
    RotateTenantKeys {
        /// Tenant id.
        tenant: String,
        /// The new version.
        keys: TenantKeys,
        /// The rewrap job.
        job: RewrapJob,
    },
    /// Replace a record by its form in a new state (suspended or resumed, its DEK bound to the
    /// new state), only if it still holds exactly `expected`.
    SetRecordState {
        /// The sealed form that was read.
        expected: SealedNumber,
        /// The record in its new state.
        updated: Box<Record>,
    },
    /// Submit, approve or deny a dual-control change request.
    Approval(ApprovalStep),
    /// Create, approve or cancel a key destruction request (the state change is validated
    /// against the stored request).
    ChangeDestruction(DestructionChange),
    /// Mark a tenant key version destroyed (after the backend destroyed it) and close the request.
    FinishDestruction {
        /// Request id.
        id: String,
        /// When.
        now_ms: i64,
    },
    /// Replace records by their rewrapped form, each only if it still holds exactly the
    /// ciphertext that was rewrapped (a record disposed or corrected meanwhile is left alone),
    /// and advance the job.
    RewrapBatch {
        /// Tenant id.
        tenant: String,
        /// (sealed form that was read, rewrapped record).
        records: Vec<(SealedNumber, Record)>,
        /// The job's cursor the batch started from: a batch applies only to the job as it
        /// was read (a daemon that stalled past its lease must not move the job back).
        from: Option<Handle>,
        /// Last handle examined.
        cursor: Option<Handle>,
        /// Whether this batch reached the end.
        finished: bool,
        /// Commit time for the job.
        now_ms: i64,
        /// The exact count of records to rewrap, with the job's first batch.
        total: Option<u64>,
    },
}

/// A change to a destruction request.
#[derive(Debug, Clone)]
pub enum DestructionChange {
    /// A new request (the caller checked the version is unreferenced and not active).
    Create(DestructionRequest),
    /// Another admin approves; the request is approved once the quorum is reached.
    Approve {
        /// Request id.
        id: String,
        /// Approving admin.
        by: String,
        /// Now.
        now_ms: i64,
        /// End of the waiting period, if this approval completes the quorum.
        not_before_ms: i64,
        /// How long a request stays approvable after it was made.
        request_ttl_ms: i64,
    },
    /// Cancel before destruction.
    Cancel {
        /// Request id.
        id: String,
        /// Who.
        by: String,
        /// Now.
        now_ms: i64,
    },
}

/// What a mutation did.
#[derive(Debug, Clone)]
pub enum MutationOutcome {
    /// Done, nothing to report.
    Done,
    /// A record was inserted under this handle.
    Inserted(Handle),
    /// The tenant already held the number: the existing record's handle.
    Existing(Handle),
    /// The record after the change.
    Record(Box<Record>),
    /// The operator after the change.
    Operator(Box<Operator>),
    /// The token after the change.
    Token(TokenRecord),
    /// The destruction request after the change.
    Destruction(Box<DestructionRequest>),
    /// The correction after the change.
    Correction(Box<Correction>),
    /// The change request after the step.
    ChangeRequest(Box<ChangeRequest>),
    /// A tenant's ledger details after the change.
    TenantInfo(Box<TenantInfo>),
}

type Applied = Result<Result<MutationOutcome, Error>, StoreError>;

impl Mutation {
    /// Applies the mutation. The outer error is a storage failure (the whole transaction is
    /// abandoned); the inner one refuses this mutation alone, having written nothing.
    pub fn apply(self, txn: &mut dyn StoreWrite) -> Applied {
        match self {
            Mutation::None | Mutation::Expect(_) => Ok(Ok(MutationOutcome::Done)),
            Mutation::InsertRecord(record) => insert_record(txn, *record),
            Mutation::DisposeRecord {
                handle,
                tombstone,
                certificate,
            } => dispose(txn, &handle, tombstone, &certificate),
            Mutation::RetireRecord {
                expected,
                updated,
                new_epoch_key,
            } => retire(txn, &expected, *updated, new_epoch_key),
            Mutation::UnretireRecord { expected, updated } => unretire(txn, &expected, *updated),
            Mutation::RequestCorrection(correction) => corrections::request(txn, *correction),
            Mutation::DecideCorrection(decision) => corrections::decide(txn, decision),
            Mutation::PurgeCorrections(ids) => corrections::purge(txn, &ids),
            Mutation::UpdateTenantInfo(patch) => {
                if txn.tenant(&patch.tenant)?.is_none() {
                    return Ok(Err(Error::NotFound(format!("no tenant {}", patch.tenant))));
                }
                let info = patch.apply(txn.tenant_info(&patch.tenant)?);
                txn.put_tenant_info(&info)?;
                Ok(Ok(MutationOutcome::TenantInfo(Box::new(info))))
            }
            Mutation::DestroyEpochKey {
                tenant,
                epoch,
                now_ms,
            } => match txn.epoch_key(&tenant, epoch)? {
                Some(mut key) => {
                    key.destroyed_at_ms = Some(now_ms);
                    txn.put_epoch_key(&key)?;
                    Ok(Ok(MutationOutcome::Done))
                }
                None => Ok(Err(Error::NotFound(format!(
                    "no epoch key {tenant}/{epoch}"
                )))),
            },
            Mutation::CreateTenant(tenant) => {
                if txn.tenant(&tenant.id)?.is_some() {
                    return Ok(Err(Error::AlreadyExists(format!(
                        "tenant {} exists already",
                        tenant.id
                    ))));
                }
                txn.put_tenant(&tenant)?;
                Ok(Ok(MutationOutcome::Done))
            }
            Mutation::CreateOperator(operator) => {
                if txn.operator(&operator.id)?.is_some() {
                    return Ok(Err(Error::AlreadyExists(format!(
                        "operator {} exists already",
                        operator.id
                    ))));
                }
                txn.put_operator(&operator)?;
                Ok(Ok(MutationOutcome::Operator(Box::new(operator))))
            }
            Mutation::ChangeOperator { id, change } => change_operator(txn, &id, change),
            Mutation::IssueToken(token) => {
                match txn.operator(&token.operator_id)? {
                    None => {
                        return Ok(Err(Error::NotFound(format!(
                            "no operator {}",
                            token.operator_id
                        ))));
                    }
                    Some(op) if op.disabled => {
                        return Ok(Err(Error::FailedPrecondition(format!(
                            "operator {} is disabled",
                            op.id
                        ))));
                    }
                    Some(_) => {}
                }
                txn.put_token(&token)?;
                Ok(Ok(MutationOutcome::Token(token)))
            }
            Mutation::PutCheckpoint(checkpoint, state) => {
                // Only the direct successor of the newest checkpoint: numbered, linked, ahead.
                let last = txn.last_checkpoint()?;
                if !checkpoint.follows(last.as_ref()) {
                    return Ok(Err(Error::Integrity(format!(
                        "checkpoint {} does not follow the newest stored checkpoint",
                        checkpoint.number
                    ))));
                }
                txn.put_checkpoint(&checkpoint)?;
                txn.put_checkpoint_state(&state)?;
                Ok(Ok(MutationOutcome::Done))
            }
            Mutation::AddAuditKey(key) => {
                let next = txn.audit_keys()?.last().map_or(1, |k| k.version + 1);
                if key.version != next {
                    return Ok(Err(Error::AlreadyExists(format!(
                        "audit key version {} exists already",
                        key.version
                    ))));
                }
                txn.put_audit_key(&key)?;
                Ok(Ok(MutationOutcome::Done))
            }
            Mutation::RotateTenantKeys { tenant, keys, job } => rotate(txn, &tenant, keys, job),
            Mutation::RewrapBatch {
                tenant,
                records,
                from,
                cursor,
                finished,
                now_ms,
                total,
            } => {
                let Some(job) = txn.job(&tenant)? else {
                    return Ok(Err(Error::NotFound(format!(
                        "no rewrap job for tenant {tenant}"
                    ))));
                };
                if !job.running() || job.cursor != from {
                    return Ok(Err(Error::FailedPrecondition(format!(
                        "the rewrap job of tenant {tenant} moved on since this batch read it; the batch is dropped"
                    ))));
                }
                rewrap(txn, &tenant, records, cursor, finished, now_ms, total)
            }
            Mutation::SetRecordState { expected, updated } => set_state(txn, &expected, *updated),
            Mutation::Approval(step) => approvals::apply(txn, step),
            Mutation::ChangeDestruction(change) => change_destruction(txn, change),
            Mutation::FinishDestruction { id, now_ms } => finish_destruction(txn, &id, now_ms),
            Mutation::RevokeToken(id) => match txn.token(&id)? {
                None => Ok(Err(Error::NotFound(format!("no token {id}")))),
                Some(mut token) => {
                    token.revoked = true;
                    txn.put_token(&token)?;
                    Ok(Ok(MutationOutcome::Token(token)))
                }
            },
        }
    }
}

fn insert_record(txn: &mut dyn StoreWrite, record: Record) -> Applied {
    let Some(index) = record.blind_index else {
        return Ok(Err(Error::Internal("record without blind index".into())));
    };
    if let Some(existing) = txn.index_lookup(&record.tenant, &index)? {
        return Ok(Ok(MutationOutcome::Existing(existing)));
    }
    if txn.record(&record.handle)?.is_some() {
        return Ok(Err(Error::Internal("handle collision".into())));
    }
    txn.put_record(&record)?;
    txn.put_index(&record.tenant, &index, &record.handle)?;
    Ok(Ok(MutationOutcome::Inserted(record.handle)))
}

fn dispose(
    txn: &mut dyn StoreWrite,
    handle: &Handle,
    tombstone: Tombstone,
    certificate: &DeletionCertificate,
) -> Applied {
    let Some(mut record) = txn.record(handle)? else {
        return Ok(Err(Error::NotFound(format!("no record {handle}"))));
    };
    match &record.status {
        RecordStatus::Disposed(_) => {
            return Ok(Err(Error::FailedPrecondition(format!(
                "record {handle} is already disposed"
            ))));
        }
        RecordStatus::Retired(retirement) => {
            txn.unqueue_disposal(&retirement.dispose_on, handle)?;
        }
        RecordStatus::Active | RecordStatus::Suspended(_) => {}
    }
    txn.put_certificate(certificate)?;
    if let Some(index) = record.blind_index.take() {
        txn.remove_index(&record.tenant, &index)?;
    }
    record.sealed = None;
    record.status = RecordStatus::Disposed(tombstone);
    txn.put_record(&record)?;
    Ok(Ok(MutationOutcome::Record(Box::new(record))))
}

/// The record as stored, if it still holds exactly `expected` (else a conflict: a concurrent
/// change came first, and the caller should read again).
fn unchanged(
    txn: &dyn StoreWrite,
    handle: &Handle,
    expected: &SealedNumber,
) -> Result<Option<Record>, StoreError> {
    Ok(txn
        .record(handle)?
        .filter(|current| current.sealed.as_ref() == Some(expected)))
}

fn conflict(handle: &Handle) -> Error {
    Error::Aborted(format!(
        "record {handle} changed while this request ran; try again"
    ))
}

fn retire(
    txn: &mut dyn StoreWrite,
    expected: &SealedNumber,
    updated: Record,
    new_epoch_key: Option<EpochKey>,
) -> Applied {
    let Some(current) = unchanged(txn, &updated.handle, expected)? else {
        return Ok(Err(conflict(&updated.handle)));
    };
    if !matches!(current.status, RecordStatus::Active) {
        return Ok(Err(Error::FailedPrecondition(format!(
            "record {} is not active",
            updated.handle
        ))));
    }
    let RecordStatus::Retired(retirement) = &updated.status else {
        return Ok(Err(Error::Internal("retire without a retirement".into())));
    };
    if let Some(key) = new_epoch_key {
        if txn.epoch_key(&key.tenant, key.epoch)?.is_some() {
            return Ok(Err(conflict(&updated.handle)));
        }
        txn.put_epoch_key(&key)?;
    }
    let Some(epoch) = updated.sealed.as_ref().map(|s| s.key_version) else {
        return Ok(Err(Error::Internal("retire without a ciphertext".into())));
    };
    txn.queue_disposal(&DisposalQueueEntry {
        dispose_on: retirement.dispose_on.clone(),
        handle: updated.handle.to_string(),
        tenant: updated.tenant.clone(),
        epoch,
    })?;
    txn.put_record(&updated)?;
    Ok(Ok(MutationOutcome::Record(Box::new(updated))))
}

fn unretire(txn: &mut dyn StoreWrite, expected: &SealedNumber, updated: Record) -> Applied {
    let Some(current) = unchanged(txn, &updated.handle, expected)? else {
        return Ok(Err(conflict(&updated.handle)));
    };
    let RecordStatus::Retired(retirement) = &current.status else {
        return Ok(Err(Error::FailedPrecondition(format!(
            "record {} is not retired",
            updated.handle
        ))));
    };
    txn.unqueue_disposal(&retirement.dispose_on, &updated.handle)?;
    txn.put_record(&updated)?;
    Ok(Ok(MutationOutcome::Record(Box::new(updated))))
}

fn change_operator(txn: &mut dyn StoreWrite, id: &str, change: OperatorChange) -> Applied {
    let Some(mut operator) = txn.operator(id)? else {
        return Ok(Err(Error::NotFound(format!("no operator {id}"))));
    };
    match change {
        OperatorChange::Disable => {
            if operator.role == Role::Admin
                && !operator.disabled
                && let Some(refusal) = approvals::admins_left_refusal(txn, id)?
            {
                return Ok(Err(refusal));
            }
            operator.disabled = true;
        }
        OperatorChange::Enable => operator.disabled = false,
        OperatorChange::Grant(grants) => {
            if matches!(operator.role, Role::Admin | Role::Auditor) {
                return Ok(Err(Error::FailedPrecondition(format!(
                    "operator {id} is an {}: grants apply to handlers, services and managers",
                    operator.role.as_str()
                ))));
            }
            for grant in &grants {
                if txn.tenant(&grant.tenant)?.is_none() {
                    return Ok(Err(Error::NotFound(format!("no tenant {}", grant.tenant))));
                }
            }
            operator.grants.extend(grants);
            operator.grants.sort();
            operator.grants.dedup();
        }
        OperatorChange::Revoke(grants) => operator.grants.retain(|g| !grants.contains(g)),
    }
    txn.put_operator(&operator)?;
    Ok(Ok(MutationOutcome::Operator(Box::new(operator))))
}

fn rotate(txn: &mut dyn StoreWrite, tenant_id: &str, keys: TenantKeys, job: RewrapJob) -> Applied {
    let Some(mut tenant) = txn.tenant(tenant_id)? else {
        return Ok(Err(Error::NotFound(format!("no tenant {tenant_id}"))));
    };
    if txn.job(tenant_id)?.is_some_and(|j| j.running()) {
        return Ok(Err(Error::FailedPrecondition(format!(
            "tenant {tenant_id} is still being rewrapped; rotate again when the running job has finished"
        ))));
    }
    let expected = tenant.keys.last().map_or(1, |k| k.version + 1);
    if keys.version != expected {
        return Ok(Err(Error::AlreadyExists(format!(
            "key version {} exists already",
            keys.version
        ))));
    }
    for old in tenant
        .keys
        .iter_mut()
        .filter(|k| k.state == KeyState::Active)
    {
        old.state = KeyState::DecryptOnly;
    }
    tenant.keys.push(keys);
    txn.put_tenant(&tenant)?;
    txn.put_job(&job)?;
    Ok(Ok(MutationOutcome::Done))
}

fn rewrap(
    txn: &mut dyn StoreWrite,
    tenant: &str,
    records: Vec<(SealedNumber, Record)>,
    cursor: Option<Handle>,
    finished: bool,
    now_ms: i64,
    total: Option<u64>,
) -> Applied {
    let Some(mut job) = txn.job(tenant)? else {
        return Ok(Err(Error::NotFound(format!(
            "no rewrap job for tenant {tenant}"
        ))));
    };
    let mut applied = 0;
    for (expected, record) in records {
        let Some(current) = txn.record(&record.handle)? else {
            continue;
        };
        // Exactly the ciphertext that was read: a record disposed or corrected meanwhile is
        // left alone; a suspended one is rewrapped like an active one.
        if current.sealed.as_ref() != Some(&expected) {
            continue;
        }
        if current.blind_index != record.blind_index {
            if let Some(old) = current.blind_index {
                txn.remove_index(tenant, &old)?;
            }
            if let Some(new) = record.blind_index {
                txn.put_index(tenant, &new, &record.handle)?;
            }
        }
        // Only the key material moves: a status changed meanwhile (suspended, resumed) stays.
        // A retired record keeps its epoch key and only moves its index: not counted as one
        // of the records to rewrap.
        let moved = record.sealed != current.sealed;
        let mut merged = current;
        merged.sealed = record.sealed;
        merged.blind_index = record.blind_index;
        txn.put_record(&merged)?;
        if moved {
            applied += 1;
        }
    }
    if let Some(total) = total {
        job.total = total;
        job.counted = true;
    }
    job.done += applied;
    job.cursor = cursor;
    if finished {
        job.finished_at_ms = Some(now_ms);
    }
    txn.put_job(&job)?;
    Ok(Ok(MutationOutcome::Done))
}

fn change_destruction(txn: &mut dyn StoreWrite, change: DestructionChange) -> Applied {
    let find = |txn: &dyn StoreWrite, id: &str| -> Result<Option<DestructionRequest>, StoreError> {
        Ok(txn.destructions()?.into_iter().find(|r| r.id == id))
    };
    let request = match change {
        DestructionChange::Create(request) => {
            let open = txn
                .destructions()?
                .into_iter()
                .any(|r| r.open() && r.tenant == request.tenant && r.version == request.version);
            if open {
                return Ok(Err(Error::AlreadyExists(format!(
                    "a destruction of key version {} of tenant {} is already requested",
                    request.version, request.tenant
                ))));
            }
            request
        }
        DestructionChange::Approve {
            id,
            by,
            now_ms,
            not_before_ms,
            request_ttl_ms,
        } => {
            let Some(mut request) = find(txn, &id)? else {
                return Ok(Err(Error::NotFound(format!("no destruction request {id}"))));
            };
            let mut approvals = match &request.state {
                DestructionState::Pending => Vec::new(),
                DestructionState::Approving { approvals } => approvals.clone(),
                _ => {
                    return Ok(Err(Error::FailedPrecondition(format!(
                        "destruction request {id} is not pending"
                    ))));
                }
            };
            if now_ms >= request.requested_at_ms.saturating_add(request_ttl_ms) {
                return Ok(Err(Error::FailedPrecondition(format!(
                    "destruction request {id} expired; cancel it and ask again"
                ))));
            }
            let Some(approver) = txn.operator(&by)? else {
                return Ok(Err(Error::PermissionDenied(format!("no operator {by}"))));
            };
            if let Some(refusal) = approver_refusal(
                &approver,
                &request.requested_by,
                request.requested_at_ms,
                &approvals,
            ) {
                return Ok(Err(Error::PermissionDenied(format!(
                    "destruction request {id}: {refusal}"
                ))));
            }
            approvals.push(Approval { by, at_ms: now_ms });
            request.state = if approvals.len() as u64 >= u64::from(approvals::quorum(txn)?) {
                let names: Vec<&str> = approvals.iter().map(|a| a.by.as_str()).collect();
                DestructionState::Approved {
                    by: names.join(","),
                    at_ms: now_ms,
                    not_before_ms,
                }
            } else {
                DestructionState::Approving { approvals }
            };
            request
        }
        DestructionChange::Cancel { id, by, now_ms } => {
            let Some(mut request) = find(txn, &id)? else {
                return Ok(Err(Error::NotFound(format!("no destruction request {id}"))));
            };
            if !request.open() {
                return Ok(Err(Error::FailedPrecondition(format!(
                    "destruction request {id} is already done or cancelled"
                ))));
            }
            request.state = DestructionState::Cancelled { by, at_ms: now_ms };
            request
        }
    };
    txn.put_destruction(&request)?;
    Ok(Ok(MutationOutcome::Destruction(Box::new(request))))
}

fn finish_destruction(txn: &mut dyn StoreWrite, id: &str, now_ms: i64) -> Applied {
    let Some(mut request) = txn.destructions()?.into_iter().find(|r| r.id == id) else {
        return Ok(Err(Error::NotFound(format!("no destruction request {id}"))));
    };
    if !matches!(request.state, DestructionState::Approved { .. }) {
        return Ok(Err(Error::FailedPrecondition(format!(
            "destruction request {id} is not approved"
        ))));
    }
    let Some(mut tenant) = txn.tenant(&request.tenant)? else {
        return Ok(Err(Error::NotFound(format!(
            "no tenant {}",
            request.tenant
        ))));
    };
    for keys in tenant
        .keys
        .iter_mut()
        .filter(|k| k.version == request.version)
    {
        keys.state = KeyState::Destroyed;
    }
    txn.put_tenant(&tenant)?;
    request.state = DestructionState::Done { at_ms: now_ms };
    txn.put_destruction(&request)?;
    Ok(Ok(MutationOutcome::Destruction(Box::new(request))))
}

fn set_state(txn: &mut dyn StoreWrite, expected: &SealedNumber, updated: Record) -> Applied {
    let Some(current) = unchanged(txn, &updated.handle, expected)? else {
        return Ok(Err(conflict(&updated.handle)));
    };
    // The transition was checked against the status the request read; the ciphertext being
    // unchanged shows the status is unchanged too (they change together).
    let _ = current;
    txn.put_record(&updated)?;
    Ok(Ok(MutationOutcome::Record(Box::new(updated))))
}
