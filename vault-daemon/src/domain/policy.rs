//! Which role may call which operation. Deny by default: an action lists the roles allowed and
//! nothing else gets through. Data-level checks (tenant scope, grants, record purposes, record
//! state) follow in the service, which knows the record.

use crate::domain::operator::Role;

/// Declares [`Action`] with the name each variant has in audit entries: one list, from which
/// the enum, [`Action::ALL`], [`Action::as_str`] and [`Action::from_name`] are made, so none of them can miss one.
macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Every audited operation of the locker.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($(#[$doc])* $variant,)*
        }

        impl Action {
            /// Every action, in declaration order.
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];

            /// Name in audit entries.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }

            /// The action named `name` in audit entries (report scans call it per entry).
            pub fn from_name(name: &str) -> Option<Action> {
                match name {
                    $($name => Some(Action::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    /// Store a number.
    Seal => "SEAL",
    /// Get a number back for a purpose.
    Unseal => "UNSEAL",
    /// Find a handle by number.
    Lookup => "LOOKUP",
    /// Read record metadata.
    Describe => "DESCRIBE",
    /// Dispose of a record.
    Dispose => "DISPOSE",
    /// Suspend a record's use.
    Suspend => "SUSPEND",
    /// Resume a record's use.
    Resume => "RESUME",
    /// Numbers unsealed by the caller written to a file that leaves the locker (持出し).
    CarryOut => "CARRY_OUT",
    /// Add purposes to a record (the number re-sealed with them bound).
    PurposesAdd => "PURPOSES_ADD",
    /// Record that the person left (退職).
    Retire => "RETIRE",
    /// Set a migrated record's acquisition date (取得日).
    AcquisitionDate => "ACQUISITION_DATE",
    /// Undo a retirement before the disposal date.
    Unretire => "UNRETIRE",
    /// Read a deletion certificate.
    CertificateRead => "CERTIFICATE_READ",
    /// Run the disposal scheduler now.
    DisposalRun => "DISPOSAL_RUN",
    /// Request a correction of a number.
    CorrectionRequest => "CORRECTION_REQUEST",
    /// Approve a correction.
    CorrectionApprove => "CORRECTION_APPROVE",
    /// Reject a correction.
    CorrectionReject => "CORRECTION_REJECT",
    /// List correction records.
    CorrectionList => "CORRECTION_LIST",
    /// The scheduler purging correction records kept their year.
    CorrectionPurge => "CORRECTION_PURGE",
    /// Set a tenant's ledger details.
    TenantInfoSet => "TENANT_INFO_SET",
    /// Enable a disabled operator.
    OperatorEnable => "OPERATOR_ENABLE",
    /// Read the management ledger.
    LedgerRead => "LEDGER_READ",
    /// Read the usage report.
    UsageReport => "USAGE_REPORT",
    /// Read an incident report.
    IncidentReport => "INCIDENT_REPORT",
    /// Answer a person's disclosure request (本人開示, 規程第45・46条): their record and its
    /// uses, as a signed notice.
    Disclosure => "DISCLOSURE",
    /// A monitoring alert (ログ監視), raised by the daemon.
    Alert => "ALERT",
    /// List alerts.
    AlertList => "ALERT_LIST",
    /// The scheduler disposing of a record at the end of its retention.
    ScheduledDispose => "SCHEDULED_DISPOSE",
    /// The scheduler destroying a disposal-epoch key.
    EpochKeyDestroy => "EPOCH_KEY_DESTROY",
    /// Create a tenant.
    TenantCreate => "TENANT_CREATE",
    /// List tenants.
    TenantList => "TENANT_LIST",
    /// Create an operator.
    OperatorCreate => "OPERATOR_CREATE",
    /// List operators.
    OperatorList => "OPERATOR_LIST",
    /// Disable an operator.
    OperatorDisable => "OPERATOR_DISABLE",
    /// Grant purposes.
    Grant => "GRANT",
    /// Revoke purposes.
    Revoke => "REVOKE",
    /// Issue a token.
    TokenIssue => "TOKEN_ISSUE",
    /// Revoke a token.
    TokenRevoke => "TOKEN_REVOKE",
    /// List tokens (never secrets).
    TokenList => "TOKEN_LIST",
    /// List the purpose catalogue.
    PurposeList => "PURPOSE_LIST",
    /// Read the newest audit entries.
    AuditTail => "AUDIT_TAIL",
    /// Export audit entries.
    AuditExport => "AUDIT_EXPORT",
    /// Verify the audit chain.
    AuditVerify => "AUDIT_VERIFY",
    /// List the audit public keys.
    AuditKeys => "AUDIT_KEYS",
    /// Rotate the audit signing key.
    AuditKeyRotate => "AUDIT_KEY_ROTATE",
    /// Take an online backup (a consistent snapshot of the store).
    Backup => "BACKUP",
    /// Export signed checkpoints.
    AuditCheckpoints => "AUDIT_CHECKPOINTS",
    /// Rotate a tenant's keys.
    KeyRotate => "KEY_ROTATE",
    /// Read key versions and rotation progress.
    KeyStatus => "KEY_STATUS",
    /// A batch of the background rewrap (system).
    KeyRewrap => "KEY_REWRAP",
    /// Ask for a key version's destruction.
    KeyDestroyRequest => "KEY_DESTROY_REQUEST",
    /// Approve a destruction (a second admin).
    KeyDestroyApprove => "KEY_DESTROY_APPROVE",
    /// Cancel a destruction.
    KeyDestroyCancel => "KEY_DESTROY_CANCEL",
    /// List destruction requests.
    KeyDestroyList => "KEY_DESTROY_LIST",
    /// The destruction itself (system, after the waiting period).
    KeyDestroy => "KEY_DESTROY",
    /// Measure the key backend's unwrap rate.
    BenchBackend => "BENCH_BACKEND",
    /// Who the caller is.
    WhoAmI => "WHOAMI",
    /// List dual-control change requests.
    ChangeList => "CHANGE_LIST",
    /// Approve a change request (another admin).
    ChangeApprove => "CHANGE_APPROVE",
    /// Deny (or withdraw) a change request.
    ChangeDeny => "CHANGE_DENY",
    /// Ask for a different number of approvals.
    QuorumChange => "QUORUM_CHANGE",
    /// The count of refused calls of one source, reason and window beyond the first (junk
    /// traffic, rate limits), written when the window closes.
    RefusalSummary => "REFUSAL_SUMMARY",
    /// Break-glass: the holder of the key backend mints an admin token on the host.
    AdminRecover => "ADMIN_RECOVER",
    /// Work the daemon does by itself (first start, dev provisioning).
    System => "SYSTEM",
}

use Role::{Admin, Auditor, Handler, Manager, Service};

impl Action {
    /// The category an allowed call of this action counts under in the 運用状況の記録 (第15条):
    /// acquisition, purpose_change, carry_out, use, disposal, correction, retirement,
    /// suspension, token_issue, alert; `None` for the actions it does not count. Written out
    /// for every action, so a new one is placed (or left out) knowingly.
    pub fn usage_category(self) -> Option<&'static str> {
        match self {
            Action::Seal => Some("acquisition"),
            Action::Unseal => Some("use"),
            Action::Dispose | Action::ScheduledDispose => Some("disposal"),
            Action::Suspend | Action::Resume => Some("suspension"),
            Action::CarryOut => Some("carry_out"),
            Action::PurposesAdd => Some("purpose_change"),
            Action::Retire | Action::Unretire => Some("retirement"),
            Action::CorrectionRequest | Action::CorrectionApprove | Action::CorrectionReject => {
                Some("correction")
            }
            Action::Alert => Some("alert"),
            Action::TokenIssue => Some("token_issue"),
            Action::Lookup
            | Action::Describe
            | Action::AcquisitionDate
            | Action::CertificateRead
            | Action::DisposalRun
            | Action::CorrectionList
            | Action::CorrectionPurge
            | Action::TenantInfoSet
            | Action::OperatorEnable
            | Action::LedgerRead
            | Action::UsageReport
            | Action::IncidentReport
            | Action::Disclosure
            | Action::AlertList
            | Action::EpochKeyDestroy
            | Action::TenantCreate
            | Action::TenantList
            | Action::OperatorCreate
            | Action::OperatorList
            | Action::OperatorDisable
            | Action::Grant
            | Action::Revoke
            | Action::TokenRevoke
            | Action::TokenList
            | Action::PurposeList
            | Action::AuditTail
            | Action::AuditExport
            | Action::AuditVerify
            | Action::AuditKeys
            | Action::AuditKeyRotate
            | Action::Backup
            | Action::AuditCheckpoints
            | Action::KeyRotate
            | Action::KeyStatus
            | Action::KeyRewrap
            | Action::KeyDestroyRequest
            | Action::KeyDestroyApprove
            | Action::KeyDestroyCancel
            | Action::KeyDestroyList
            | Action::KeyDestroy
            | Action::BenchBackend
            | Action::WhoAmI
            | Action::ChangeList
            | Action::ChangeApprove
            | Action::ChangeDeny
            | Action::QuorumChange
            | Action::RefusalSummary
            | Action::AdminRecover
            | Action::System => None,
        }
    }

    /// What a call of this action naming a record was, for the person whose record it is
    /// (本人開示): acquisition, use, lookup, reading, purpose_change, correction, suspension,
    /// retirement, acquisition_date, disposal, disclosure, key_maintenance, or other. Written
    /// out for every action, like [`Action::usage_category`].
    pub fn record_use(self) -> &'static str {
        match self {
            Action::Seal => "acquisition",
            Action::Unseal => "use",
            Action::Lookup => "lookup",
            Action::Describe | Action::CertificateRead => "reading",
            Action::Dispose | Action::ScheduledDispose => "disposal",
            Action::Suspend | Action::Resume => "suspension",
            Action::PurposesAdd => "purpose_change",
            Action::Retire | Action::Unretire => "retirement",
            Action::AcquisitionDate => "acquisition_date",
            Action::CorrectionRequest | Action::CorrectionApprove | Action::CorrectionReject => {
                "correction"
            }
            Action::Disclosure => "disclosure",
            Action::KeyRewrap => "key_maintenance",
            Action::CarryOut
            | Action::DisposalRun
            | Action::CorrectionList
            | Action::CorrectionPurge
            | Action::TenantInfoSet
            | Action::OperatorEnable
            | Action::LedgerRead
            | Action::UsageReport
            | Action::IncidentReport
            | Action::Alert
            | Action::AlertList
            | Action::EpochKeyDestroy
            | Action::TenantCreate
            | Action::TenantList
            | Action::OperatorCreate
            | Action::OperatorList
            | Action::OperatorDisable
            | Action::Grant
            | Action::Revoke
            | Action::TokenIssue
            | Action::TokenRevoke
            | Action::TokenList
            | Action::PurposeList
            | Action::AuditTail
            | Action::AuditExport
            | Action::AuditVerify
            | Action::AuditKeys
            | Action::AuditKeyRotate
            | Action::Backup
            | Action::AuditCheckpoints
            | Action::KeyRotate
            | Action::KeyStatus
            | Action::KeyDestroyRequest
            | Action::KeyDestroyApprove
            | Action::KeyDestroyCancel
            | Action::KeyDestroyList
            | Action::KeyDestroy
            | Action::BenchBackend
            | Action::WhoAmI
            | Action::ChangeList
            | Action::ChangeApprove
            | Action::ChangeDeny
            | Action::QuorumChange
            | Action::RefusalSummary
            | Action::AdminRecover
            | Action::System => "other",
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
    fn every_action_has_its_own_name_and_is_found_by_it() {
        let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        for action in Action::ALL {
            assert_eq!(Action::from_name(action.as_str()), Some(*action));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len(), "two actions share a name");
        assert_eq!(Action::from_name("NOT_AN_ACTION"), None);
    }

    #[test]
    fn the_usage_report_counts_the_record_life_cycle_and_token_issues() {
        assert_eq!(Action::Seal.usage_category(), Some("acquisition"));
        assert_eq!(Action::Unseal.usage_category(), Some("use"));
        assert_eq!(Action::CarryOut.usage_category(), Some("carry_out"));
        assert_eq!(Action::Lookup.usage_category(), None);
        assert_eq!(Action::Disclosure.record_use(), "disclosure");
        assert_eq!(Action::TenantCreate.record_use(), "other");
    }

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
