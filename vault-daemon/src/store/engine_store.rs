//! [`EngineStore`], the one [`Store`]: any [`Engine`] behind the panic guard, its rows typed
//! and authenticated once ([`Typed`]), its optional abilities asked for, not assumed.

use std::sync::Arc;
use std::time::Duration;

use crate::store::engine::Engine;
use crate::store::guard::{FaultHook, PanicSafe};
use crate::store::sealing::RowSealer;
use crate::store::typed::Typed;
use crate::store::view::{ReadAhead, View};
use crate::store::{SnapshotSummary, Store, StoreError, StoreRead, StoreWrite, snapshot};

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
