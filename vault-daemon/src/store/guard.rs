//! An engine whose every call runs inside `catch_unwind`: a storage engine that panics on a
//! damaged page (redb does) gives the call a [`StoreError::Corrupt`] instead of tearing down the
//! request with no audit entry. The service then answers DATA_LOSS with its entry committed,
//! or, when the audit writer's own transaction is what failed, UNAVAILABLE; the daemon stays up.
//! It wraps the engine's few byte operations, so every typed read and write above is covered.
//!
//! A fault hook ([`EngineStore::with_fault`](super::engine_store::EngineStore::with_fault)) runs
//! first inside the same guard, with the table a row operation touches or the operation's name
//! (`reader`, `writer`, `commit`, …): tests use it to make an operation panic exactly where the
//! engine would.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::store::StoreError;
use crate::store::catalogue::Table;
use crate::store::engine::{Engine, Leases};
use crate::store::rows::{Row, RowsRead, RowsWrite};
use crate::store::view::{IndexedFuture, ListFuture, RowKey, RowSource, RowsFuture, ViewTable};

/// Called with the table or operation before it runs (tests inject panics with it).
pub type FaultHook = Arc<dyn Fn(&'static str) + Send + Sync>;

/// Any engine, with panics turned into errors.
pub struct PanicSafe {
    inner: Box<dyn Engine>,
    fault: Option<FaultHook>,
}

impl PanicSafe {
    /// Guards `inner`, calling `fault` (if any) before every operation inside the guard.
    pub fn new(inner: Box<dyn Engine>, fault: Option<FaultHook>) -> PanicSafe {
        PanicSafe { inner, fault }
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
        let what = keys.first().map_or("view", |(table, _)| table.name());
        self.guarded(what, || self.inner.get_many(keys))
    }

    fn by_index<'b>(&'b self, key: &'b [u8]) -> IndexedFuture<'b> {
        self.guarded("blind_index", || self.inner.by_index(key))
    }

    fn list<'b>(&'b self, table: ViewTable) -> ListFuture<'b> {
        self.guarded(table.name(), || self.inner.list(table))
    }
}

impl Engine for PanicSafe {
    fn read(&self) -> Result<Box<dyn RowsRead + '_>, StoreError> {
        let fault = self.fault.as_ref();
        let inner = guard(fault, "reader", || self.inner.read())?;
        Ok(Box::new(Guarded { inner, fault }))
    }

    fn write(&self) -> Result<Box<dyn RowsWrite + '_>, StoreError> {
        let fault = self.fault.as_ref();
        let inner = guard(fault, "writer", || self.inner.write())?;
        Ok(Box::new(Guarded { inner, fault }))
    }

    fn rows(&self) -> Result<Box<dyn RowSource + '_>, StoreError> {
        let fault = self.fault.as_ref();
        let inner = guard(fault, "view", || self.inner.rows())?;
        Ok(Box::new(GuardedRows { inner, fault }))
    }

    fn optimistic_write(
        &self,
        head: u64,
        hash: &[u8; 32],
    ) -> Result<Option<Box<dyn RowsWrite + '_>>, StoreError> {
        let fault = self.fault.as_ref();
        let inner = guard(fault, "writer", || self.inner.optimistic_write(head, hash))?;
        Ok(inner.map(|inner| Box::new(Guarded { inner, fault }) as Box<dyn RowsWrite + '_>))
    }

    fn recover(&self) -> Result<(), StoreError> {
        guard(self.fault.as_ref(), "recover", || self.inner.recover())
    }

    fn leases(&self) -> Option<&dyn Leases> {
        self.inner.leases().map(|_| self as &dyn Leases)
    }
}

impl Leases for PanicSafe {
    fn hold(&self, duty: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        guard(self.fault.as_ref(), "hold_lease", || {
            self.inner
                .leases()
                .map_or(Ok(true), |leases| leases.hold(duty, holder, ttl))
        })
    }

    fn release(&self, duty: &str, holder: &str) -> Result<(), StoreError> {
        guard(self.fault.as_ref(), "release_lease", || {
            self.inner
                .leases()
                .map_or(Ok(()), |leases| leases.release(duty, holder))
        })
    }
}

/// A transaction of the engine, each operation inside the guard.
struct Guarded<'a, T: ?Sized> {
    inner: Box<T>,
    fault: Option<&'a FaultHook>,
}

impl<T: RowsRead + ?Sized> RowsRead for Guarded<'_, T> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        guard(self.fault, table.name, || self.inner.get(table, key))
    }

    fn scan(
        &self,
        table: Table,
        after: Option<&[u8]>,
        limit: Option<usize>,
        descending: bool,
    ) -> Result<Vec<Row>, StoreError> {
        guard(self.fault, table.name, || {
            self.inner.scan(table, after, limit, descending)
        })
    }

    fn last(&self, table: Table) -> Result<Option<Row>, StoreError> {
        guard(self.fault, table.name, || self.inner.last(table))
    }
}

impl<T: RowsWrite + ?Sized> RowsWrite for Guarded<'_, T> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let inner = &mut self.inner;
        guard(self.fault, table.name, || inner.put(table, key, value))
    }

    fn append_audit(&mut self, seq: u64, row: &[u8]) -> Result<(), StoreError> {
        let inner = &mut self.inner;
        guard(self.fault, "audit", || inner.append_audit(seq, row))
    }

    fn append_audit_rows(&mut self, rows: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let inner = &mut self.inner;
        guard(self.fault, "audit", || inner.append_audit_rows(rows))
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        let inner = &mut self.inner;
        guard(self.fault, table.name, || inner.delete(table, key))
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let Guarded { inner, fault } = *self;
        guard(fault, "commit", || inner.commit())
    }
}
