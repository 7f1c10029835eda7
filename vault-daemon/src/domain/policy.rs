//! Which role may call which operation. Deny by default: an action lists the roles allowed and
//! nothing else gets through. Data-level checks (tenant scope, grants, record purposes, record
//! state) follow in the service, which knows the record.

use crate::domain::operator::Role;

/// Every audited operation of the locker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Store a number.
    Seal,
    /// Get a number back for a purpose.
    Unseal,
    /// Find a handle by number.
    Lookup,
    /// Read record metadata.
    Describe,
    /// Dispose of a record.
    Dispose,
    /// Suspend a record's use.
    Suspend,
    /// Resume a record's use.
    Resume,
    /// Numbers unsealed by the caller written to a file that leaves the locker (持出し).
    CarryOut,
    /// Add purposes to a record (the number re-sealed with them bound).
    PurposesAdd,
    /// Record that the person left (退職).
    Retire,
    /// Set a migrated record's acquisition date (取得日).
    AcquisitionDate,
    /// Undo a retirement before the disposal date.
    Unretire,
    /// Read a deletion certificate.
    CertificateRead,
    /// Run the disposal scheduler now.
    DisposalRun,
    /// Request a correction of a number.
    CorrectionRequest,
    /// Approve a correction.
    CorrectionApprove,
    /// Reject a correction.
    CorrectionReject,
    /// List correction records.
    CorrectionList,
    /// The scheduler purging correction records kept their year.
    CorrectionPurge,
    /// Set a tenant's ledger details.
    TenantInfoSet,
    /// Enable a disabled operator.
    OperatorEnable,
    /// Read the management ledger.
    LedgerRead,
    /// Read the usage report.
    UsageReport,
    /// Read an incident report.
    IncidentReport,
    /// Answer a person's disclosure request (本人開示, 規程第45・46条): their record and its
    /// uses, as a signed notice.
    Disclosure,
    /// A monitoring alert (ログ監視), raised by the daemon.
    Alert,
    /// List alerts.
    AlertList,
    /// The scheduler disposing of a record at the end of its retention.
    ScheduledDispose,
    /// The scheduler destroying a disposal-epoch key.
    EpochKeyDestroy,
    /// Create a tenant.
    TenantCreate,
    /// List tenants.
    TenantList,
    /// Create an operator.
    OperatorCreate,
    /// List operators.
    OperatorList,
    /// Disable an operator.
    OperatorDisable,
    /// Grant purposes.
    Grant,
    /// Revoke purposes.
    Revoke,
    /// Issue a token.
    TokenIssue,
    /// Revoke a token.
    TokenRevoke,
    /// List tokens (never secrets).
    TokenList,
    /// List the purpose catalogue.
    PurposeList,
    /// Read the newest audit entries.
    AuditTail,
    /// Export audit entries.
    AuditExport,
    /// Verify the audit chain.
    AuditVerify,
    /// List the audit public keys.
    AuditKeys,
    /// Rotate the audit signing key.
    AuditKeyRotate,
    /// Take an online backup (a consistent snapshot of the store).
    Backup,
    /// Export signed checkpoints.
    AuditCheckpoints,
    /// Rotate a tenant's keys.
    KeyRotate,
    /// Read key versions and rotation progress.
    KeyStatus,
    /// A batch of the background rewrap (system).
    KeyRewrap,
    /// Ask for a key version's destruction.
    KeyDestroyRequest,
    /// Approve a destruction (a second admin).
    KeyDestroyApprove,
    /// Cancel a destruction.
    KeyDestroyCancel,
    /// List destruction requests.
    KeyDestroyList,
    /// The destruction itself (system, after the waiting period).
    KeyDestroy,
    /// Measure the key backend's unwrap rate.
    BenchBackend,
    /// Who the caller is.
    WhoAmI,
    /// List dual-control change requests.
    ChangeList,
    /// Approve a change request (another admin).
    ChangeApprove,
    /// Deny (or withdraw) a change request.
    ChangeDeny,
    /// Ask for a different number of approvals.
    QuorumChange,
    /// The count of refused calls of one source, reason and window beyond the first (junk
    /// traffic, rate limits), written when the window closes.
    RefusalSummary,
    /// Break-glass: the holder of the key backend mints an admin token on the host.
    AdminRecover,
    /// Work the daemon does by itself (first start, dev provisioning).
    System,
}

use Role::{Admin, Auditor, Handler, Manager, Service};

impl Action {
    /// Name in audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Seal => "SEAL",
            Action::Unseal => "UNSEAL",
            Action::Lookup => "LOOKUP",
            Action::Describe => "DESCRIBE",
            Action::Dispose => "DISPOSE",
            Action::Suspend => "SUSPEND",
            Action::Resume => "RESUME",
            Action::PurposesAdd => "PURPOSES_ADD",
            Action::CarryOut => "CARRY_OUT",
            Action::Retire => "RETIRE",
            Action::AcquisitionDate => "ACQUISITION_DATE",
            Action::Unretire => "UNRETIRE",
            Action::CertificateRead => "CERTIFICATE_READ",
            Action::DisposalRun => "DISPOSAL_RUN",
            Action::CorrectionRequest => "CORRECTION_REQUEST",
            Action::CorrectionApprove => "CORRECTION_APPROVE",
            Action::CorrectionReject => "CORRECTION_REJECT",
            Action::CorrectionList => "CORRECTION_LIST",
            Action::CorrectionPurge => "CORRECTION_PURGE",
            Action::TenantInfoSet => "TENANT_INFO_SET",
            Action::OperatorEnable => "OPERATOR_ENABLE",
            Action::LedgerRead => "LEDGER_READ",
            Action::UsageReport => "USAGE_REPORT",
            Action::IncidentReport => "INCIDENT_REPORT",
            Action::Disclosure => "DISCLOSURE",
            Action::Alert => "ALERT",
            Action::AlertList => "ALERT_LIST",
            Action::ScheduledDispose => "SCHEDULED_DISPOSE",
            Action::EpochKeyDestroy => "EPOCH_KEY_DESTROY",
            Action::TenantCreate => "TENANT_CREATE",
            Action::TenantList => "TENANT_LIST",
            Action::OperatorCreate => "OPERATOR_CREATE",
            Action::OperatorList => "OPERATOR_LIST",
            Action::OperatorDisable => "OPERATOR_DISABLE",
            Action::Grant => "GRANT",
            Action::Revoke => "REVOKE",
            Action::TokenIssue => "TOKEN_ISSUE",
            Action::TokenRevoke => "TOKEN_REVOKE",
            Action::TokenList => "TOKEN_LIST",
            Action::PurposeList => "PURPOSE_LIST",
            Action::AuditTail => "AUDIT_TAIL",
            Action::AuditExport => "AUDIT_EXPORT",
            Action::AuditVerify => "AUDIT_VERIFY",
            Action::AuditKeys => "AUDIT_KEYS",
            Action::AuditKeyRotate => "AUDIT_KEY_ROTATE",
            Action::Backup => "BACKUP",
            Action::AuditCheckpoints => "AUDIT_CHECKPOINTS",
            Action::KeyRotate => "KEY_ROTATE",
            Action::KeyStatus => "KEY_STATUS",
            Action::KeyRewrap => "KEY_REWRAP",
            Action::KeyDestroyRequest => "KEY_DESTROY_REQUEST",
            Action::KeyDestroyApprove => "KEY_DESTROY_APPROVE",
            Action::KeyDestroyCancel => "KEY_DESTROY_CANCEL",
            Action::KeyDestroyList => "KEY_DESTROY_LIST",
            Action::KeyDestroy => "KEY_DESTROY",
            Action::BenchBackend => "BENCH_BACKEND",
            Action::WhoAmI => "WHOAMI",
            Action::ChangeList => "CHANGE_LIST",
            Action::ChangeApprove => "CHANGE_APPROVE",
            Action::ChangeDeny => "CHANGE_DENY",
            Action::QuorumChange => "QUORUM_CHANGE",
            Action::AdminRecover => "ADMIN_RECOVER",
            Action::RefusalSummary => "REFUSAL_SUMMARY",
            Action::System => "SYSTEM",
        }
    }

    /// The roles that may call this action at all.
    pub fn allowed_roles(self) -> &'static [Role] {
        match self {
            Action::Seal | Action::Unseal | Action::Lookup | Action::CarryOut => {
                &[Handler, Service]
            }
            Action::Describe => &[Handler, Service, Manager],
            Action::Dispose
            | Action::Suspend
            | Action::Resume
            | Action::Unretire
            | Action::AcquisitionDate => &[Manager],
            Action::Retire | Action::PurposesAdd => &[Handler, Service, Manager],
            Action::CorrectionRequest => &[Handler, Service, Manager],
            Action::CorrectionApprove | Action::CorrectionReject => &[Manager],
            Action::CorrectionList
            | Action::LedgerRead
            | Action::UsageReport
            | Action::AlertList => &[Manager, Auditor, Admin],
            Action::IncidentReport => &[Auditor, Admin],
            // The 特定個人情報管理責任者 decides what is disclosed (第46条②).
            Action::Disclosure => &[Manager],
            Action::TenantInfoSet | Action::OperatorEnable => &[Admin],
            Action::CertificateRead => &[Manager, Auditor, Admin],
            // Read-only, and sealed rows only: an unattended backup needs no token that can
            // approve changes.
            Action::Backup => &[Admin, Auditor],
            Action::TenantCreate
            | Action::OperatorCreate
            | Action::OperatorDisable
            | Action::Grant
            | Action::Revoke
            | Action::TokenIssue
            | Action::TokenRevoke
            | Action::AuditKeyRotate
            | Action::KeyRotate
            | Action::KeyDestroyRequest
            | Action::KeyDestroyApprove
            | Action::KeyDestroyCancel
            | Action::DisposalRun
            | Action::BenchBackend
            | Action::ChangeApprove
            | Action::ChangeDeny
            | Action::QuorumChange => &[Admin],
            Action::TenantList
            | Action::OperatorList
            | Action::TokenList
            | Action::KeyStatus
            | Action::KeyDestroyList
            | Action::ChangeList => &[Admin, Auditor],
            Action::PurposeList | Action::WhoAmI => &[Admin, Manager, Handler, Service, Auditor],
            Action::AuditTail
            | Action::AuditExport
            | Action::AuditVerify
            | Action::AuditKeys
            | Action::AuditCheckpoints => &[Admin, Auditor, Manager],
            Action::System
            | Action::AdminRecover
            | Action::RefusalSummary
            | Action::KeyRewrap
            | Action::KeyDestroy
            | Action::ScheduledDispose
            | Action::EpochKeyDestroy
            | Action::CorrectionPurge
            | Action::Alert => &[],
        }
    }

    /// Whether `role` may call this action.
    pub fn permits(self, role: Role) -> bool {
        self.allowed_roles().contains(&role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_and_auditor_never_unseal() {
        for role in [Admin, Auditor, Manager] {
            assert!(!Action::Unseal.permits(role), "{role:?}");
            assert!(!Action::Lookup.permits(role), "{role:?}");
        }
        assert!(Action::Unseal.permits(Handler));
        assert!(Action::Unseal.permits(Service));
    }

    #[test]
    fn only_managers_dispose_and_only_admins_administer() {
        assert_eq!(Action::Dispose.allowed_roles(), &[Manager]);
        assert_eq!(Action::TokenIssue.allowed_roles(), &[Admin]);
        assert!(Action::System.allowed_roles().is_empty());
    }
}
