//! A storage engine as the store sees it: transactions of rows ([`RowsRead`], [`RowsWrite`]),
//! a view's [`RowSource`], and the abilities only some engines have, declared rather than
//! assumed (an optimistic writer, leases of cluster duties).

use std::time::Duration;

use crate::store::StoreError;
use crate::store::rows::{RowsRead, RowsWrite};
use crate::store::view::RowSource;

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
