//! Audit entries as the daemon writes them: the shared format of `vault-audit`, plus how a
//! call's outcome is recorded in its entry.

pub use vault_audit::entry::{AuditEntry, ChainedEntry, GENESIS_HASH, chain_hash};

use crate::error::{Error, Outcome};

/// Recording a call's outcome in its entry.
pub trait EntryOutcome {
    /// Marks the entry as successful, with a note of what was done.
    fn allow(&mut self, reason: impl Into<String>);
    /// Marks the entry with the error the call ends with.
    fn fail(&mut self, error: &Error);
    /// Marks the entry of a call whose caller gave up before it was committed.
    fn abandon(&mut self);
}

/// The note that the result of `entry` (committed as entry `seq`) never reached its caller.
pub fn undelivered(entry: &AuditEntry, seq: u64) -> AuditEntry {
    AuditEntry {
        operator: entry.operator.clone(),
        role: entry.role.clone(),
        tenant: entry.tenant.clone(),
        action: entry.action.clone(),
        handle: entry.handle.clone(),
        purpose: entry.purpose.clone(),
        outcome: Outcome::Undelivered.as_str().into(),
        code: "CANCELLED".into(),
        reason: format!(
            "the result of entry {seq} never reached the caller (it had gone): nothing was delivered"
        ),
        request_id: entry.request_id.clone(),
        peer: entry.peer.clone(),
        ..AuditEntry::default()
    }
}

impl EntryOutcome for AuditEntry {
    fn allow(&mut self, reason: impl Into<String>) {
        self.outcome = Outcome::Allowed.as_str().into();
        self.code = "OK".into();
        self.reason = reason.into();
    }

    fn fail(&mut self, error: &Error) {
        self.outcome = error.outcome().as_str().into();
        self.code = error.code_name().into();
        self.reason = error.audit_reason();
    }

    fn abandon(&mut self) {
        self.outcome = Outcome::Abandoned.as_str().into();
        self.code = "DEADLINE_EXCEEDED".into();
        self.reason =
            "the caller gave up before this call was committed: nothing was applied or released"
                .into();
    }
}
