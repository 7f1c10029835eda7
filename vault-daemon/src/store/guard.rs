//! A store whose every operation runs inside `catch_unwind`: a storage engine that panics on a
//! damaged page (redb does) gives the call a [`StoreError::Corrupt`] instead of tearing down the
//! request with no audit entry. The service then answers DATA_LOSS with its entry committed,
//! or, when the audit writer's own transaction is what failed, UNAVAILABLE; the daemon stays up.
//!
//! [`PanicSafe::with_fault`] runs a hook first inside the same guard: tests use it to make an
//! operation panic exactly where the engine would.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

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
use crate::store::view::{
    IndexedFuture, ListFuture, RowKey, RowSource, RowsFuture, View, ViewTable,
};
use crate::store::{
    AuthorityState, CheckpointState, SnapshotSummary, Store, StoreError, StoreRead, StoreWrite,
};

/// Called with the operation's name before it runs (tests inject panics with it).
pub type FaultHook = Arc<dyn Fn(&'static str) + Send + Sync>;

/// Any store, with panics turned into errors.
pub struct PanicSafe {
    inner: Arc<dyn Store>,
    fault: Option<FaultHook>,
}

impl PanicSafe {
    /// Guards `inner`.
    pub fn new(inner: Arc<dyn Store>) -> PanicSafe {
        PanicSafe { inner, fault: None }
    }

    /// Guards `inner`, calling `fault` before every operation inside the guard.
    pub fn with_fault(inner: Arc<dyn Store>, fault: FaultHook) -> PanicSafe {
        PanicSafe {
            inner,
            fault: Some(fault),
        }
    }
}

fn guard<T>(
    fault: Option<&FaultHook>,
    what: &'static str,
    operation: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(|| {
        if let Some(fault) = fault {
            fault(what);
        }
        operation()
    }))
    .unwrap_or_else(|_| Err(engine_panicked(what)))
}

fn engine_panicked(what: &'static str) -> StoreError {
    tracing::error!(
        operation = what,
        "the storage engine panicked (a damaged store?); the call fails"
    );
    StoreError::Corrupt(format!(
        "the storage engine failed during {what} (a damaged store?)"
    ))
}

/// A view's rows, each read (its start and its future) inside the guard.
struct GuardedRows<'a> {
    inner: Box<dyn RowSource + 'a>,
    fault: Option<&'a FaultHook>,
}

impl GuardedRows<'_> {
    /// Runs `start` and the read it returns inside the guard, as operation `what`.
    fn guarded<'b, T: Send + 'b>(
        &'b self,
        what: &'static str,
        start: impl FnOnce() -> BoxFuture<'b, Result<T, StoreError>>,
    ) -> BoxFuture<'b, Result<T, StoreError>> {
        let started = catch_unwind(AssertUnwindSafe(|| {
            if let Some(fault) = self.fault {
                fault(what);
            }
            start()
        }));
        match started {
            Ok(read) => Box::pin(async move {
                AssertUnwindSafe(read)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(engine_panicked(what)))
            }),
            Err(_) => Box::pin(std::future::ready(Err(engine_panicked(what)))),
        }
    }
}

impl RowSource for GuardedRows<'_> {
    fn get_many<'b>(&'b self, keys: &'b [RowKey]) -> RowsFuture<'b> {
        let what = keys.first().map_or("view", |(table, _)| table.operation());
        self.guarded(what, || self.inner.get_many(keys))
    }

    fn by_index<'b>(&'b self, key: &'b [u8]) -> IndexedFuture<'b> {
        self.guarded("index_lookup", || self.inner.by_index(key))
    }

    fn list<'b>(&'b self, table: ViewTable) -> ListFuture<'b> {
        self.guarded(table.operation(), || self.inner.list(table))
    }
}

impl Store for PanicSafe {
    fn reader(&self) -> Result<Box<dyn StoreRead + '_>, StoreError> {
        let fault = self.fault.as_ref();
        let inner = guard(fault, "reader", || self.inner.reader())?;
        Ok(Box::new(Guarded { inner, fault }))
    }

    fn view(&self) -> Result<View<'_>, StoreError> {
        let fault = self.fault.as_ref();
        let view = guard(fault, "view", || self.inner.view())?;
        Ok(view.map_rows(|inner| Box::new(GuardedRows { inner, fault })))
    }

    fn writer(&self) -> Result<Box<dyn StoreWrite + '_>, StoreError> {
        let fault = self.fault.as_ref();
        let inner = guard(fault, "writer", || self.inner.writer())?;
        Ok(Box::new(Guarded { inner, fault }))
    }

    fn sealer(&self) -> &crate::store::sealing::RowSealer {
        self.inner.sealer()
    }

    fn optimistic_writer(
        &self,
        head: u64,
        hash: &[u8; 32],
    ) -> Result<Option<Box<dyn StoreWrite + '_>>, StoreError> {
        let fault = self.fault.as_ref();
        let inner = guard(fault, "writer", || self.inner.optimistic_writer(head, hash))?;
        Ok(inner.map(|inner| Box::new(Guarded { inner, fault }) as Box<dyn StoreWrite + '_>))
    }

    fn recover(&self) -> Result<(), StoreError> {
        guard(self.fault.as_ref(), "recover", || self.inner.recover())
    }

    fn hold_lease(
        &self,
        duty: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        guard(self.fault.as_ref(), "hold_lease", || {
            self.inner.hold_lease(duty, holder, ttl)
        })
    }

    fn release_lease(&self, duty: &str, holder: &str) -> Result<(), StoreError> {
        guard(self.fault.as_ref(), "release_lease", || {
            self.inner.release_lease(duty, holder)
        })
    }

    fn snapshot(
        &self,
        sink: &mut dyn FnMut(&[u8]) -> bool,
        taken_at_ms: i64,
    ) -> Result<SnapshotSummary, StoreError> {
        guard(self.fault.as_ref(), "snapshot", || {
            self.inner.snapshot(sink, taken_at_ms)
        })
    }
}

struct Guarded<'a, T: ?Sized> {
    inner: Box<T>,
    fault: Option<&'a FaultHook>,
}

/// Forwards each listed `&self` method to `self.inner` inside [`guard`], named after it.
macro_rules! guarded {
    ($(fn $name:ident(&self $(, $arg:ident: $type:ty)*) -> $ret:ty;)*) => {
        $(
            fn $name(&self $(, $arg: $type)*) -> Result<$ret, StoreError> {
                guard(self.fault, stringify!($name), || self.inner.$name($($arg),*))
            }
        )*
    };
}

/// Like `guarded!`, for `&mut self` methods.
macro_rules! guarded_mut {
    ($(fn $name:ident(&mut self $(, $arg:ident: $type:ty)*) -> $ret:ty;)*) => {
        $(
            fn $name(&mut self $(, $arg: $type)*) -> Result<$ret, StoreError> {
                let fault = self.fault;
                guard(fault, stringify!($name), || self.inner.$name($($arg),*))
            }
        )*
    };
}

/// The read methods, for snapshots and write transactions alike.
macro_rules! guarded_reads {
    () => {
        guarded! {
            fn record(&self, handle: &Handle) -> Option<Record>;
            fn index_lookup(&self, tenant: &str, index: &[u8; 32]) -> Option<Handle>;
            fn tenant(&self, id: &str) -> Option<Tenant>;
            fn tenants(&self) -> Vec<Tenant>;
            fn operator(&self, id: &str) -> Option<Operator>;
            fn operators(&self) -> Vec<Operator>;
            fn token(&self, id: &str) -> Option<TokenRecord>;
            fn tokens(&self) -> Vec<TokenRecord>;
            fn audit_last(&self) -> Option<(u64, Vec<u8>)>;
            fn audit_after(&self, after: u64, limit: usize) -> Vec<(u64, Vec<u8>)>;
            fn audit_tail(&self, limit: usize) -> Vec<(u64, Vec<u8>)>;
            fn checkpoints_after(&self, after: u64, limit: usize) -> Vec<Checkpoint>;
            fn last_checkpoint(&self) -> Option<Checkpoint>;
            fn audit_keys(&self) -> Vec<AuditKeyRecord>;
            fn records_after(&self, after: Option<&Handle>, limit: usize) -> Vec<Record>;
            fn job(&self, tenant: &str) -> Option<RewrapJob>;
            fn jobs(&self) -> Vec<RewrapJob>;
            fn destructions(&self) -> Vec<DestructionRequest>;
            fn change_request(&self, id: &str) -> Option<ChangeRequest>;
            fn change_requests(&self) -> Vec<ChangeRequest>;
            fn epoch_key(&self, tenant: &str, epoch: u32) -> Option<EpochKey>;
            fn epoch_keys(&self) -> Vec<EpochKey>;
            fn disposal_queue(&self) -> Vec<DisposalQueueEntry>;
            fn certificate(&self, handle: &Handle) -> Option<DeletionCertificate>;
            fn correction(&self, id: &str) -> Option<Correction>;
            fn corrections(&self) -> Vec<Correction>;
            fn tenant_info(&self, tenant: &str) -> Option<TenantInfo>;
            fn authority_digest(&self) -> [u8; 32];
            fn authority_state(&self) -> Option<AuthorityState>;
            fn checkpoint_state(&self) -> Option<CheckpointState>;
        }
    };
}

impl StoreRead for Guarded<'_, dyn StoreRead + '_> {
    guarded_reads!();
}

impl StoreRead for Guarded<'_, dyn StoreWrite + '_> {
    guarded_reads!();
}

impl StoreWrite for Guarded<'_, dyn StoreWrite + '_> {
    guarded_mut! {
        fn put_record(&mut self, record: &Record) -> ();
        fn put_index(&mut self, tenant: &str, index: &[u8; 32], handle: &Handle) -> ();
        fn remove_index(&mut self, tenant: &str, index: &[u8; 32]) -> ();
        fn put_tenant(&mut self, tenant: &Tenant) -> ();
        fn put_operator(&mut self, operator: &Operator) -> ();
        fn put_token(&mut self, token: &TokenRecord) -> ();
        fn append_audit(&mut self, seq: u64, row: &[u8]) -> ();
        fn append_audit_rows(&mut self, rows: &[(u64, Vec<u8>)]) -> ();
        fn put_checkpoint(&mut self, checkpoint: &Checkpoint) -> ();
        fn put_audit_key(&mut self, key: &AuditKeyRecord) -> ();
        fn put_job(&mut self, job: &RewrapJob) -> ();
        fn put_destruction(&mut self, request: &DestructionRequest) -> ();
        fn put_change_request(&mut self, request: &ChangeRequest) -> ();
        fn put_epoch_key(&mut self, key: &EpochKey) -> ();
        fn queue_disposal(&mut self, entry: &DisposalQueueEntry) -> ();
        fn unqueue_disposal(&mut self, dispose_on: &str, handle: &Handle) -> ();
        fn put_certificate(&mut self, certificate: &DeletionCertificate) -> ();
        fn put_correction(&mut self, correction: &Correction) -> ();
        fn remove_correction(&mut self, id: &str) -> ();
        fn put_tenant_info(&mut self, info: &TenantInfo) -> ();
        fn put_authority_state(&mut self, state: &AuthorityState) -> ();
        fn put_checkpoint_state(&mut self, state: &CheckpointState) -> ();
    }

    fn authority_changed(&self) -> bool {
        self.inner.authority_changed()
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let Guarded { inner, fault } = *self;
        guard(fault, "commit", || inner.commit())
    }
}
