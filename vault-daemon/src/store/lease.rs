//! Leases on the cluster's background duties (checkpoints, rewrap and key destruction,
//! disposal): one daemon at a time does each, and the lease moves to another daemon when its
//! holder stops renewing it (killed, stopped, cut off). On a store only one process can open,
//! every lease is always held.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::store::Store;

/// How long a lease lasts without renewal; duties renew it every round (≤ 1 s apart).
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// The checkpointer's duty.
pub const CHECKPOINTS: &str = "checkpoints";
/// Rewrap jobs and due key destructions.
pub const REWRAP: &str = "rewrap";
/// The disposal scheduler.
pub const DISPOSAL: &str = "disposal";

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
