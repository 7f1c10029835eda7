//! Corrections of a stored number (訂正, 規程第47・48条): requested by one operator, decided by a
//! manager who is someone else; on approval the same handle holds the new number and the old
//! one is gone. The correction record says who, when, why and what changed — never a number —
//! and is kept one year after the decision, then purged.

use serde::{Deserialize, Serialize};

use crate::domain::record::SealedNumber;

/// Days a decided correction record is kept.
pub const KEEP_DAYS: i64 = 365;

/// Where a correction stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CorrectionState {
    /// Waiting for a manager.
    Pending,
    /// Applied: the record holds the new number.
    Approved,
    /// Refused: the record is unchanged.
    Rejected,
}

impl CorrectionState {
    /// Lowercase name for the wire and the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            CorrectionState::Pending => "pending",
            CorrectionState::Approved => "approved",
            CorrectionState::Rejected => "rejected",
        }
    }
}

/// The new number while a correction waits: sealed for the record's handle under the tenant's
/// active key, with its blind index. Dropped at the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingNumber {
    /// The record's ciphertext when the correction was requested (approval needs it unchanged).
    pub replaces: SealedNumber,
    /// The new number, sealed.
    pub sealed: SealedNumber,
    /// Its blind index.
    pub blind_index: [u8; 32],
}

/// A correction request and, once decided, its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    /// 16 hex digits.
    pub id: String,
    /// The record.
    pub handle: String,
    /// Its tenant.
    pub tenant: String,
    /// Operator who requested it.
    pub requested_by: String,
    /// When, ms since the Unix epoch (lifecycle clock).
    pub requested_at_ms: i64,
    /// Why.
    pub reason: String,
    /// Who asked for it (本人, 代理人, the office itself...).
    pub asked_by: String,
    /// Where it stands.
    pub state: CorrectionState,
    /// The manager who decided.
    pub decided_by: Option<String>,
    /// When, ms since the Unix epoch (lifecycle clock).
    pub decided_at_ms: Option<i64>,
    /// The manager's note.
    pub decision_note: String,
    /// What changed, in words (never the number).
    pub change: String,
    /// The new number while pending.
    pub pending: Option<PendingNumber>,
}

impl Correction {
    /// Whether the record may be purged at `now_ms`: decided more than [`KEEP_DAYS`] ago.
    pub fn purgeable(&self, now_ms: i64) -> bool {
        self.decided_at_ms
            .is_some_and(|at| now_ms - at >= KEEP_DAYS * 86_400_000)
    }
}
