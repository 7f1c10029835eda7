//! Key rotation state: the rewrap job that moves a tenant's records from older key versions to
//! the active one. Kept in the store, so a restarted daemon resumes where it stopped.

use serde::{Deserialize, Serialize};

use crate::domain::handle::Handle;

/// Progress of rewrapping one tenant's records onto `target_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapJob {
    /// Tenant id.
    pub tenant: String,
    /// The key version records are moved to.
    pub target_version: u32,
    /// Last handle examined (records are visited in handle order).
    pub cursor: Option<Handle>,
    /// Records under older versions when the job started.
    pub total: u64,
    /// Records rewrapped so far.
    pub done: u64,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// Set when every record has been visited.
    pub finished_at_ms: Option<i64>,
    /// Admin who rotated.
    pub requested_by: String,
}

impl RewrapJob {
    /// Whether the job still has records to visit.
    pub fn running(&self) -> bool {
        self.finished_at_ms.is_none()
    }
}
