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
        self.reason = error.to_string();
    }
}
