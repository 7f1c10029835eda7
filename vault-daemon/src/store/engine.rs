//! A storage engine as the store sees it — transactions of rows ([`RowsRead`], [`RowsWrite`]),
//! a view's [`RowSource`], and the abilities only some engines have, declared rather than
//! assumed (an optimistic writer, leases of cluster duties) — and [`EngineStore`], the one
//! [`Store`]: every engine behind the panic guard, its rows typed and authenticated once.

use std::sync::Arc;
use std::time::Duration;

use crate::store::guard::{FaultHook, PanicSafe};
use crate::store::rows::{RowsRead, RowsWrite};
use crate::store::sealing::RowSealer;
use crate::store::typed::Typed;
use crate::store::view::{ReadAhead, RowSource, View};
use crate::store::{SnapshotSummary, Store, StoreError, StoreRead, StoreWrite, snapshot};

/// Leases of the cluster duties (checkpoints, rewrap, disposal): one holder at a time, until
/// it stops renewing. An engine that several daemons share has them.
pub trait Leases: Send + Sync {
    /// Takes or renews the lease on `duty` for `holder` for `ttl`; `false` while another
    /// holder's lease runs.
    fn hold(&self, duty: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Gives the lease up (at shutdown), so another daemon takes the duty at once.
    fn release(&self, duty: &str, holder: &str) -> Result<(), StoreError>;
}

/// A storage engine: bytes in the catalogue's tables, nothing typed.
pub trait Engine: Send + Sync + 'static {
    /// A read transaction: one consistent state of the store.
    fn read(&self) -> Result<Box<dyn RowsRead + '_>, StoreError>;
    /// The writer's transaction (on a shared engine, holding the audit chain's head).
    fn write(&self) -> Result<Box<dyn RowsWrite + '_>, StoreError>;
    /// A view's rows, read asynchronously.
    fn rows(&self) -> Result<Box<dyn RowSource + '_>, StoreError>;
    /// Optional: a writer that sends nothing before its first read or its commit, which
    /// assert the chain head is still `head` with hash `hash` ([`StoreError::HeadMoved`] if
    /// not). `None`: not offered.
    fn optimistic_write(
        &self,
        _head: u64,
        _hash: &[u8; 32],
    ) -> Result<Option<Box<dyn RowsWrite + '_>>, StoreError> {
        Ok(None)
    }
    /// Serves again after an I/O error once the cause is gone (redb reopens its file).
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Optional: leases of cluster duties. `None`: the store has one daemon, which holds
    /// every duty.
    fn leases(&self) -> Option<&dyn Leases> {
        None
    }
}

/// The store over an engine: rows typed and authenticated with the sealer, every engine call
/// inside the panic guard.
pub struct EngineStore {
    engine: PanicSafe,
    sealer: Arc<RowSealer>,
    read_ahead: ReadAhead,
}

impl std::fmt::Debug for EngineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineStore").finish_non_exhaustive()
    }
}

impl EngineStore {
    /// The store over `engine`, authenticating rows with `sealer`.
    pub fn new(engine: Box<dyn Engine>, sealer: Arc<RowSealer>) -> EngineStore {
        EngineStore::with_fault(engine, sealer, None)
    }

    /// Like [`EngineStore::new`], calling `fault` inside the guard before every engine call
    /// (tests make the engine panic exactly where a damaged one would).
    pub fn with_fault(
        engine: Box<dyn Engine>,
        sealer: Arc<RowSealer>,
        fault: Option<FaultHook>,
    ) -> EngineStore {
        EngineStore {
            engine: PanicSafe::new(engine, fault),
            sealer,
            read_ahead: ReadAhead::default(),
        }
    }
}

impl Store for EngineStore {
    fn reader(&self) -> Result<Box<dyn StoreRead + '_>, StoreError> {
        Ok(Box::new(Typed::new(self.engine.read()?, &self.sealer)))
    }

    fn view(&self) -> Result<View<'_>, StoreError> {
        Ok(View::new(
            self.engine.rows()?,
            &self.sealer,
            &self.read_ahead,
        ))
    }

    fn sealer(&self) -> &RowSealer {
        &self.sealer
    }

    fn writer(&self) -> Result<Box<dyn StoreWrite + '_>, StoreError> {
        Ok(Box::new(Typed::new(self.engine.write()?, &self.sealer)))
    }

    fn optimistic_writer(
        &self,
        head: u64,
        hash: &[u8; 32],
    ) -> Result<Option<Box<dyn StoreWrite + '_>>, StoreError> {
        Ok(self
            .engine
            .optimistic_write(head, hash)?
            .map(|rows| Box::new(Typed::new(rows, &self.sealer)) as Box<dyn StoreWrite + '_>))
    }

    fn recover(&self) -> Result<(), StoreError> {
        self.engine.recover()
    }

    fn hold_lease(&self, duty: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        match self.engine.leases() {
            Some(leases) => leases.hold(duty, holder, ttl),
            None => Ok(true),
        }
    }

    fn release_lease(&self, duty: &str, holder: &str) -> Result<(), StoreError> {
        match self.engine.leases() {
            Some(leases) => leases.release(duty, holder),
            None => Ok(()),
        }
    }

    fn snapshot(
        &self,
        sink: &mut dyn FnMut(&[u8]) -> bool,
        taken_at_ms: i64,
    ) -> Result<SnapshotSummary, StoreError> {
        snapshot::write(
            &Typed::new(self.engine.read()?, &self.sealer),
            sink,
            taken_at_ms,
        )
    }
}
