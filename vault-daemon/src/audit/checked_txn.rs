//! The writer's transaction, with every record and blind-index read checked against the
//! [`RecordView`], the authority rows checked against the digest the log names before the
//! transaction first reads or writes one, and every record and index write noted for the log.
//!
//! The writer verifies the log up to the head it commits on, so the view (plus what this
//! transaction wrote) is exactly what the store must hold: a record that reads otherwise, or
//! an index entry the view holds that the store lacks, is tampering, and the whole commit
//! fails with [`StoreError::Tampered`]. The writes are handed to the writer per call, to be
//! named in that call's entry.
//!
//! Authority rows: a commit that changes one names the digest of all of them after it, hashed
//! from the transaction's tables. A row put back a moment before (a revoked token, a change
//! request already applied) would be hashed in with the change and so made current by the
//! log itself; the periodic check would then agree with it. So the first read or write of an
//! authority row in a transaction hashes the tables as they stand and requires the digest the
//! log names at that head. Only calls that touch authority rows pay for it (admin changes,
//! approvals, a retirement's first epoch key, checkpoints with a new audit key); seals and
//! unseals do not.

use std::collections::BTreeMap;

use vault_audit::certificate::DeletionCertificate;
use vault_audit::checkpoint::Checkpoint;
use vault_audit::state::RowChange;

use crate::audit::records::{RecordView, Suspect, index_tampered, record_tampered};
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
use crate::store::mutation::Expected;
use crate::store::{AuthorityState, CheckpointState, StoreError, StoreRead, StoreWrite};

/// A write transaction checked against `view`.
pub struct CheckedTxn<'a> {
    inner: Box<dyn StoreWrite + 'a>,
    view: &'a RecordView,
    /// Tags of the records this transaction wrote.
    written: BTreeMap<Handle, u64>,
    /// Index entries this transaction added (true) or removed (false), by fingerprint.
    indexed: BTreeMap<u64, bool>,
    /// Every change of the transaction, in order.
    changes: Vec<RowChange>,
    /// How many of them [`CheckedTxn::changes_since_last`] named already.
    named: usize,
    /// The last blind-index fingerprint computed (a seal looks its index up, then writes it).
    last_fingerprint: std::cell::RefCell<Option<(String, [u8; 32], u64)>>,
    /// The authority digest the log names at this transaction's head, with the entry that
    /// named it; `None` once the tables were found to hash to it.
    authority_expected: std::cell::Cell<Option<([u8; 32], u64)>>,
}

impl<'a> CheckedTxn<'a> {
    /// `inner`, checked against `view`, its authority rows against `authority` (the digest the
    /// log names at the transaction's head, and the entry that named it).
    pub fn new(
        inner: Box<dyn StoreWrite + 'a>,
        view: &'a RecordView,
        authority: ([u8; 32], u64),
    ) -> CheckedTxn<'a> {
        CheckedTxn {
            inner,
            view,
            written: BTreeMap::new(),
            indexed: BTreeMap::new(),
            changes: Vec::new(),
            named: 0,
            last_fingerprint: std::cell::RefCell::new(None),
            authority_expected: std::cell::Cell::new(Some(authority)),
        }
    }

    /// Before the first read or write of an authority row: the tables must hash to the digest
    /// the log names (no row of them put back or edited since). Once per transaction.
    fn check_authority(&self) -> Result<(), StoreError> {
        let Some((digest, changed_at)) = self.authority_expected.get() else {
            return Ok(());
        };
        if self.inner.authority_digest()? != digest {
            return Err(crate::audit::authority::tampered(changed_at));
        }
        self.authority_expected.set(None);
        Ok(())
    }

    fn fingerprint(&self, tenant: &str, index: &[u8; 32]) -> u64 {
        let mut last = self.last_fingerprint.borrow_mut();
        if let Some((t, i, fingerprint)) = last.as_ref()
            && t == tenant
            && i == index
        {
            return *fingerprint;
        }
        let fingerprint = self.view.tagger().index_fingerprint(tenant, index);
        match last.as_mut() {
            Some((t, i, f)) => {
                t.clear();
                t.push_str(tenant);
                (*i, *f) = (*index, fingerprint);
            }
            None => *last = Some((tenant.to_owned(), *index, fingerprint)),
        }
        fingerprint
    }

    /// Where the changes made since the last call of this (one call's, named in its entry)
    /// lie in the list [`CheckedTxn::take_all_changes`] returns.
    pub fn changes_since_last(&mut self) -> std::ops::Range<usize> {
        let since = self.named..self.changes.len();
        self.named = self.changes.len();
        since
    }

    /// Every change of the transaction, in order, taken out of it (before it is committed).
    pub fn take_all_changes(&mut self) -> Vec<RowChange> {
        self.named = 0;
        std::mem::take(&mut self.changes)
    }

    fn current_tag(&self, handle: &Handle) -> Option<u64> {
        self.written
            .get(handle)
            .copied()
            .or_else(|| self.view.tag(handle))
    }

    fn index_present(&self, fingerprint: u64) -> bool {
        self.indexed
            .get(&fingerprint)
            .copied()
            .unwrap_or_else(|| self.view.indexed(fingerprint))
    }

    fn check_record(&self, handle: &Handle, read: Option<&Record>) -> Result<(), StoreError> {
        let tag = read.map(|r| self.view.tagger().tag(r)).transpose()?;
        if tag != self.current_tag(handle) {
            self.view.suspect(Suspect::Record(handle.clone()));
            return Err(record_tampered(handle));
        }
        Ok(())
    }

    /// Checks what a call read outside the transaction against what is current now, at the
    /// place of its entry in the log: `Err(Aborted)` when the row changed since the read (the
    /// call raced a change; nothing is released), [`StoreError::Tampered`] when the store no
    /// longer holds what the log names.
    pub fn expect(&self, expected: &[Expected]) -> Result<Result<(), Error>, StoreError> {
        for expectation in expected {
            match expectation {
                Expected::Record { handle, tag, read } => {
                    if *tag == self.current_tag(handle) {
                        continue;
                    }
                    // The row as it is now must be current; then the call merely raced, and
                    // stands if only the record's key material moved meanwhile.
                    let current = self.record(handle)?;
                    if let (Some(read), Some(current)) = (read, &current)
                        && read.decides_alike(current)
                    {
                        continue;
                    }
                    return Ok(Err(Error::Aborted(format!(
                        "record {handle} changed while this request ran; nothing was released; try again"
                    ))));
                }
                Expected::Unindexed { tenant, index } => {
                    let fingerprint = self.fingerprint(tenant, index);
                    if !self.index_present(fingerprint) {
                        continue;
                    }
                    self.index_lookup(tenant, index)?;
                    return Ok(Err(Error::Aborted(
                        "the number was sealed while this request ran; try again".into(),
                    )));
                }
                // Reading the row checks the authority tables against the log first.
                Expected::Destruction(read) => {
                    let current = self.destructions()?.into_iter().find(|r| r.id == read.id);
                    if current.as_ref() != Some(read.as_ref()) {
                        return Ok(Err(Error::Aborted(format!(
                            "key destruction request {} changed meanwhile; not destroyed now",
                            read.id
                        ))));
                    }
                }
                Expected::EpochKey(read) => {
                    if self.epoch_key(&read.tenant, read.epoch)?.as_ref() != Some(read.as_ref()) {
                        return Ok(Err(Error::Aborted(format!(
                            "the disposal-epoch key of {}/{} changed meanwhile; not destroyed now",
                            read.tenant, read.epoch
                        ))));
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    fn note(&mut self, change: RowChange) {
        self.changes.push(change);
    }
}

/// Forwards each listed `&self` method to `self.inner`.
macro_rules! forward {
    ($(fn $name:ident(&self $(, $arg:ident: $type:ty)*) -> $ret:ty;)*) => {
        $(
            fn $name(&self $(, $arg: $type)*) -> Result<$ret, StoreError> {
                self.inner.$name($($arg),*)
            }
        )*
    };
}

/// Like `forward!`, for reads of authority rows: the tables are checked first.
macro_rules! forward_authority {
    ($(fn $name:ident(&self $(, $arg:ident: $type:ty)*) -> $ret:ty;)*) => {
        $(
            fn $name(&self $(, $arg: $type)*) -> Result<$ret, StoreError> {
                self.check_authority()?;
                self.inner.$name($($arg),*)
            }
        )*
    };
}

/// Like `forward_mut!`, for writes of authority rows: the tables are checked first.
macro_rules! forward_authority_mut {
    ($(fn $name:ident(&mut self $(, $arg:ident: $type:ty)*) -> $ret:ty;)*) => {
        $(
            fn $name(&mut self $(, $arg: $type)*) -> Result<$ret, StoreError> {
                self.check_authority()?;
                self.inner.$name($($arg),*)
            }
        )*
    };
}

/// Like `forward!`, for `&mut self` methods.
macro_rules! forward_mut {
    ($(fn $name:ident(&mut self $(, $arg:ident: $type:ty)*) -> $ret:ty;)*) => {
        $(
            fn $name(&mut self $(, $arg: $type)*) -> Result<$ret, StoreError> {
                self.inner.$name($($arg),*)
            }
        )*
    };
}

impl StoreRead for CheckedTxn<'_> {
    fn record(&self, handle: &Handle) -> Result<Option<Record>, StoreError> {
        let read = self.inner.record(handle)?;
        self.check_record(handle, read.as_ref())?;
        Ok(read)
    }

    fn index_lookup(&self, tenant: &str, index: &[u8; 32]) -> Result<Option<Handle>, StoreError> {
        let fingerprint = self.fingerprint(tenant, index);
        // The view names every entry the log added: one it lacks is absent, whatever the
        // store holds (a planted entry decides nothing), and needs no read.
        if !self.index_present(fingerprint) {
            return Ok(None);
        }
        let found = self.inner.index_lookup(tenant, index)?;
        if found.is_none() {
            self.view.suspect(Suspect::Index {
                tenant: tenant.to_owned(),
                index: *index,
            });
            return Err(index_tampered(tenant));
        }
        Ok(found)
    }

    fn records_after(
        &self,
        after: Option<&Handle>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let page = self.inner.records_after(after, limit)?;
        for record in &page {
            self.check_record(&record.handle, Some(record))?;
        }
        Ok(page)
    }

    forward_authority! {
        fn tenant(&self, id: &str) -> Option<Tenant>;
        fn tenants(&self) -> Vec<Tenant>;
        fn operator(&self, id: &str) -> Option<Operator>;
        fn operators(&self) -> Vec<Operator>;
        fn token(&self, id: &str) -> Option<TokenRecord>;
        fn tokens(&self) -> Vec<TokenRecord>;
        fn audit_keys(&self) -> Vec<AuditKeyRecord>;
        fn destructions(&self) -> Vec<DestructionRequest>;
        fn change_request(&self, id: &str) -> Option<ChangeRequest>;
        fn change_requests(&self) -> Vec<ChangeRequest>;
        fn epoch_key(&self, tenant: &str, epoch: u32) -> Option<EpochKey>;
        fn epoch_keys(&self) -> Vec<EpochKey>;
        fn tenant_info(&self, tenant: &str) -> Option<TenantInfo>;
    }

    forward! {
        fn audit_last(&self) -> Option<(u64, Vec<u8>)>;
        fn audit_after(&self, after: u64, limit: usize) -> Vec<(u64, Vec<u8>)>;
        fn audit_tail(&self, limit: usize) -> Vec<(u64, Vec<u8>)>;
        fn checkpoints_after(&self, after: u64, limit: usize) -> Vec<Checkpoint>;
        fn last_checkpoint(&self) -> Option<Checkpoint>;
        fn job(&self, tenant: &str) -> Option<RewrapJob>;
        fn jobs(&self) -> Vec<RewrapJob>;
        fn disposal_queue(&self) -> Vec<DisposalQueueEntry>;
        fn certificate(&self, handle: &Handle) -> Option<DeletionCertificate>;
        fn correction(&self, id: &str) -> Option<Correction>;
        fn corrections(&self) -> Vec<Correction>;
        fn authority_digest(&self) -> [u8; 32];
        fn authority_state(&self) -> Option<AuthorityState>;
        fn checkpoint_state(&self) -> Option<CheckpointState>;
    }
}

impl StoreWrite for CheckedTxn<'_> {
    fn put_record(&mut self, record: &Record) -> Result<(), StoreError> {
        self.inner.put_record(record)?;
        let tag = self.view.tagger().tag(record)?;
        self.written.insert(record.handle.clone(), tag);
        self.note(RowChange::Record {
            handle: record.handle.to_string(),
            tag,
        });
        Ok(())
    }

    fn put_index(
        &mut self,
        tenant: &str,
        index: &[u8; 32],
        handle: &Handle,
    ) -> Result<(), StoreError> {
        self.inner.put_index(tenant, index, handle)?;
        let fingerprint = self.fingerprint(tenant, index);
        self.indexed.insert(fingerprint, true);
        self.note(RowChange::IndexAdded(fingerprint));
        Ok(())
    }

    fn remove_index(&mut self, tenant: &str, index: &[u8; 32]) -> Result<(), StoreError> {
        self.inner.remove_index(tenant, index)?;
        let fingerprint = self.fingerprint(tenant, index);
        self.indexed.insert(fingerprint, false);
        self.note(RowChange::IndexRemoved(fingerprint));
        Ok(())
    }

    forward_authority_mut! {
        fn put_tenant(&mut self, tenant: &Tenant) -> ();
        fn put_operator(&mut self, operator: &Operator) -> ();
        fn put_token(&mut self, token: &TokenRecord) -> ();
        fn put_audit_key(&mut self, key: &AuditKeyRecord) -> ();
        fn put_destruction(&mut self, request: &DestructionRequest) -> ();
        fn put_change_request(&mut self, request: &ChangeRequest) -> ();
        fn put_epoch_key(&mut self, key: &EpochKey) -> ();
        fn put_tenant_info(&mut self, info: &TenantInfo) -> ();
    }

    forward_mut! {
        fn append_audit(&mut self, seq: u64, row: &[u8]) -> ();
        fn append_audit_rows(&mut self, rows: &[(u64, Vec<u8>)]) -> ();
        fn put_checkpoint(&mut self, checkpoint: &Checkpoint) -> ();
        fn put_job(&mut self, job: &RewrapJob) -> ();
        fn queue_disposal(&mut self, entry: &DisposalQueueEntry) -> ();
        fn unqueue_disposal(&mut self, dispose_on: &str, handle: &Handle) -> ();
        fn put_certificate(&mut self, certificate: &DeletionCertificate) -> ();
        fn put_correction(&mut self, correction: &Correction) -> ();
        fn remove_correction(&mut self, id: &str) -> ();
        fn put_authority_state(&mut self, state: &AuthorityState) -> ();
        fn put_checkpoint_state(&mut self, state: &CheckpointState) -> ();
    }

    fn authority_changed(&self) -> bool {
        self.inner.authority_changed()
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.inner.commit()
    }
}
