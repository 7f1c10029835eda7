//! Leases on the cluster's background duties (checkpoints, rewrap and key destruction,
//! disposal): one daemon at a time does each, and the lease moves to another daemon when its
//! holder stops renewing it (killed, stopped, cut off). On a store only one process can open,
//! every lease is always held.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::store::Store;

/// How long a lease lasts without renewal; duties renew it every round (≤ 1 s apart).
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// The checkpointer's duty.
pub const CHECKPOINTS: &str = "checkpoints";
/// Rewrap jobs and due key destructions.
pub const REWRAP: &str = "rewrap";
/// The disposal scheduler.
pub const DISPOSAL: &str = "disposal";
/// Provisioning a store at start (first audit key, first operators), held by one of the
/// daemons starting together on a new database.
pub const PROVISIONING: &str = "provisioning";
/// The creation of disposal-epoch keys: held from the read that finds a month's key missing
/// to the commit that stores the new one, so two daemons never create two keys for a month.
pub const EPOCH_KEYS: &str = "epoch-keys";

/// This process's name as a lease holder: its pid and a random suffix (a pid comes back).
pub fn holder_id() -> &'static str {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER.get_or_init(|| {
        let mut suffix = [0u8; 6];
        // A fixed suffix only makes two restarts of one pid look alike; never a safety issue.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix);
        format!("pid{}-{}", std::process::id(), hex::encode(suffix))
    })
}

/// Whether this daemon may do the duty now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Held; `gained` on the first round after another daemon held it (or none did): what
    /// this daemon remembers of the duty's progress may be stale.
    Held {
        /// Newly held.
        gained: bool,
    },
    /// Another daemon holds it, or the store cannot say (then nobody here acts).
    Elsewhere,
}

/// One duty's lease as this daemon sees it.
pub struct DutyLease {
    store: Arc<dyn Store>,
    duty: &'static str,
    holder: String,
    held: AtomicBool,
}

impl DutyLease {
    /// The lease on `duty` for this process.
    pub fn new(store: Arc<dyn Store>, duty: &'static str) -> DutyLease {
        DutyLease {
            store,
            duty,
            holder: holder_id().to_owned(),
            held: AtomicBool::new(false),
        }
    }

    /// Takes or renews the lease.
    pub fn check(&self) -> LeaseState {
        let held = match self.store.hold_lease(self.duty, &self.holder, LEASE_TTL) {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(duty = self.duty, %error, "cannot renew the duty's lease; pausing it");
                false
            }
        };
        let was = self.held.swap(held, Ordering::SeqCst);
        match (held, was) {
            (true, false) => {
                tracing::info!(duty = self.duty, holder = %self.holder, "this daemon now holds the duty's lease");
                LeaseState::Held { gained: true }
            }
            (true, true) => LeaseState::Held { gained: false },
            (false, true) => {
                tracing::info!(duty = self.duty, "the duty's lease moved to another daemon");
                LeaseState::Elsewhere
            }
            (false, false) => LeaseState::Elsewhere,
        }
    }
}

/// A lease held across one call (see [`EPOCH_KEYS`]) and given up when dropped.
pub struct CallLease {
    store: Arc<dyn Store>,
    duty: &'static str,
}

impl std::fmt::Debug for CallLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLease")
            .field("duty", &self.duty)
            .finish()
    }
}

impl CallLease {
    /// Takes the lease on `duty`, waiting at most `wait` for another daemon to give it up
    /// (or for its lease to run out, if it died holding it); `None` if it is still held
    /// elsewhere then.
    pub async fn take(
        store: Arc<dyn Store>,
        duty: &'static str,
        wait: Duration,
    ) -> Result<Option<CallLease>, crate::store::StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            if store.hold_lease(duty, holder_id(), LEASE_TTL)? {
                return Ok(Some(CallLease { store, duty }));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for CallLease {
    fn drop(&mut self) {
        // If this fails the lease runs out by itself after LEASE_TTL.
        if let Err(error) = self.store.release_lease(self.duty, holder_id()) {
            tracing::warn!(duty = self.duty, %error, "cannot give up the lease; it runs out by itself");
        }
    }
}
