//! Key rotation state: the rewrap job that moves a tenant's records from older key versions to
//! the active one. Kept in the store, so a restarted daemon resumes where it stopped.

use serde::{Deserialize, Serialize};

use crate::domain::approval::Approval;
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
    /// Records under older versions when the job started: estimated by the rotation, then
    /// counted exactly by the job's first batch (after the new version is active, so no seal
    /// can add to it any more); `done` never exceeds it.
    pub total: u64,
    /// Records rewrapped so far.
    pub done: u64,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// Set when every record has been visited.
    pub finished_at_ms: Option<i64>,
    /// Admin who rotated.
    pub requested_by: String,
    /// Whether `total` is the exact count (set with the first batch).
    pub counted: bool,
}

impl RewrapJob {
    /// Whether the job still has records to visit.
    pub fn running(&self) -> bool {
        self.finished_at_ms.is_none()
    }
}

/// Where a destruction request is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DestructionState {
    /// Waiting for a second admin.
    Pending,
    /// Approved; the key is destroyed once the waiting period is over.
    Approved {
        /// The approving admin (never the requester).
        by: String,
        /// Milliseconds since the Unix epoch.
        at_ms: i64,
        /// Not destroyed before this time.
        not_before_ms: i64,
    },
    /// Cancelled before destruction.
    Cancelled {
        /// Who cancelled.
        by: String,
        /// Milliseconds since the Unix epoch.
        at_ms: i64,
    },
    /// The key was destroyed in the backend.
    Done {
        /// Milliseconds since the Unix epoch.
        at_ms: i64,
    },
    /// Approved by some but not yet all of the admins the quorum asks for. (Last, so that
    /// rows stored before it existed still decode.)
    Approving {
        /// The approvals so far.
        approvals: Vec<Approval>,
    },
}

/// A request to destroy one key version of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestructionRequest {
    /// Request id (16 hex digits).
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// Key version to destroy.
    pub version: u32,
    /// Requesting admin.
    pub requested_by: String,
    /// Milliseconds since the Unix epoch.
    pub requested_at_ms: i64,
    /// State.
    pub state: DestructionState,
}

impl DestructionRequest {
    /// Whether the request can still lead to destruction.
    pub fn open(&self) -> bool {
        matches!(
            self.state,
            DestructionState::Pending
                | DestructionState::Approving { .. }
                | DestructionState::Approved { .. }
        )
    }
}
