//! Conversions between wire messages and domain types.

use vault_audit::certificate::DeletionCertificate;
use vault_proto::v1 as pb;

use crate::audit::entry::ChainedEntry;
use crate::domain::approval::{ChangeRequest, ChangeState, GatedChange};
use crate::domain::correction::Correction;
use crate::domain::lifecycle::Suspension;
use crate::domain::lifecycle::{self, Retirement};
use crate::domain::operator::{Operator, Role, Tenant};
use crate::domain::purpose::{Purpose, PurposeCatalogue};
use crate::domain::record::{Record, RecordStatus, SubjectKind};
use crate::domain::token::TokenRecord;
use crate::keys::envelope::FORMAT_EPOCH;
use crate::service::Gated;

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// Wire subject kind → domain (`None` for unspecified or unknown values).
pub fn subject_kind_from_wire(value: i32) -> Option<SubjectKind> {
    match pb::SubjectKind::try_from(value).ok()? {
        pb::SubjectKind::Unspecified => None,
        pb::SubjectKind::Staff => Some(SubjectKind::Staff),
        pb::SubjectKind::NonStaffPayee => Some(SubjectKind::NonStaffPayee),
        pb::SubjectKind::Dependent => Some(SubjectKind::Dependent),
        pb::SubjectKind::EntrustedEmployee => Some(SubjectKind::EntrustedEmployee),
    }
}

/// A subject kind as the wire says it.
pub fn subject_kind_to_wire(kind: SubjectKind) -> pb::SubjectKind {
    match kind {
        SubjectKind::Staff => pb::SubjectKind::Staff,
        SubjectKind::NonStaffPayee => pb::SubjectKind::NonStaffPayee,
        SubjectKind::Dependent => pb::SubjectKind::Dependent,
        SubjectKind::EntrustedEmployee => pb::SubjectKind::EntrustedEmployee,
    }
}

/// Wire role → domain (`None` for unspecified or unknown values).
pub fn role_from_wire(value: i32) -> Option<Role> {
    match pb::Role::try_from(value).ok()? {
        pb::Role::Unspecified => None,
        pb::Role::Admin => Some(Role::Admin),
        pb::Role::Manager => Some(Role::Manager),
        pb::Role::Handler => Some(Role::Handler),
        pb::Role::Service => Some(Role::Service),
        pb::Role::Auditor => Some(Role::Auditor),
    }
}

fn role_to_wire(role: Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role::Admin,
        Role::Manager => pb::Role::Manager,
        Role::Handler => pb::Role::Handler,
        Role::Service => pb::Role::Service,
        Role::Auditor => pb::Role::Auditor,
    }
}

fn suspension_info(s: Suspension) -> pb::Suspension {
    pb::Suspension {
        reason: s.reason,
        suspended_by: s.by,
        suspended_at_unix: secs(s.at_ms),
    }
}

/// A retirement for the wire, with the last day of use of each of the record's purposes.
fn retirement_info(
    r: &Retirement,
    purposes: &[String],
    catalogue: &PurposeCatalogue,
    disposal_epoch: String,
) -> pb::Retirement {
    let left = lifecycle::parse_date("left_on", &r.left_on).ok();
    pb::Retirement {
        left_on: r.left_on.clone(),
        dispose_on: r.dispose_on.clone(),
        retired_by: r.by.clone(),
        retired_at_unix: secs(r.at_ms),
        purposes: purposes
            .iter()
            .map(|code| pb::PurposeRetention {
                purpose: code.clone(),
                usable_until: match (left, catalogue.get(code)) {
                    (Some(left), Some(p)) => lifecycle::format_date(
                        lifecycle::retention_end(left, p.retention_years)
                            .previous_day()
                            .unwrap_or(left),
                    ),
                    _ => String::new(),
                },
            })
            .collect(),
        disposal_epoch,
    }
}

/// A correction record for the wire (never a number).
pub fn correction(c: Correction) -> pb::Correction {
    pb::Correction {
        id: c.id,
        handle: c.handle,
        tenant: c.tenant,
        requested_by: c.requested_by,
        requested_at_unix: secs(c.requested_at_ms),
        reason: c.reason,
        asked_by: c.asked_by,
        state: c.state.as_str().into(),
        decided_by: c.decided_by.unwrap_or_default(),
        decided_at_unix: c.decided_at_ms.map(secs).unwrap_or(0),
        decision_note: c.decision_note,
        change: c.change,
    }
}

/// A deletion certificate for the wire (the tenant's name and details, which are not signed,
/// left empty).
pub fn certificate(c: DeletionCertificate) -> pb::DeletionCertificate {
    pb::DeletionCertificate {
        handle: c.handle,
        tenant: c.tenant,
        subject_ref: c.subject_ref,
        disposed_at_ms: c.disposed_at_ms,
        method: c.method,
        responsible: c.responsible,
        key_version: c.key_version,
        key_id: c.key_id,
        signature: c.signature,
        ..pb::DeletionCertificate::default()
    }
}

/// Record metadata for the wire; never the number.
pub fn record_info(record: Record, catalogue: &PurposeCatalogue) -> pb::RecordInfo {
    let mut suspension = None;
    let mut retirement = None;
    let epoch = record
        .sealed
        .as_ref()
        .filter(|s| s.format == FORMAT_EPOCH)
        .map(|s| lifecycle::epoch_label(s.key_version));
    let key_version = record
        .sealed
        .as_ref()
        .filter(|s| s.format != FORMAT_EPOCH)
        .map_or(0, |s| s.key_version);
    let (status, tombstone) = match record.status {
        RecordStatus::Retired(r) => {
            retirement = Some(retirement_info(
                &r,
                &record.purposes,
                catalogue,
                epoch.unwrap_or_default(),
            ));
            suspension = r.suspension.map(suspension_info);
            (pb::RecordStatus::Retired, None)
        }
        RecordStatus::Active => (pb::RecordStatus::Active, None),
        RecordStatus::Suspended(s) => {
            suspension = Some(suspension_info(s));
            (pb::RecordStatus::Suspended, None)
        }
        RecordStatus::Disposed(t) => (
            pb::RecordStatus::Disposed,
            Some(pb::Tombstone {
                disposed_at_unix: secs(t.disposed_at_ms),
                disposed_by: t.disposed_by,
                reason: t.reason,
            }),
        ),
    };
    pb::RecordInfo {
        handle: record.handle.to_string(),
        tenant: record.tenant,
        subject_ref: record.subject_ref,
        subject_kind: subject_kind_to_wire(record.subject_kind) as i32,
        purposes: record.purposes,
        verification: Some(pb::IdentityVerification {
            number_check: record.verification.number_check.unwrap_or_default(),
            identity_check: record.verification.identity_check.unwrap_or_default(),
            agent_authority: record.verification.agent_authority.unwrap_or_default(),
        }),
        acquired_at_unix: secs(record.acquired_at_ms),
        acquired_by: record.acquired_by,
        status: status as i32,
        key_version,
        tombstone,
        suspension,
        retirement,
    }
}

/// Tenant for the wire (no key references).
pub fn tenant(tenant: Tenant) -> pb::Tenant {
    pb::Tenant {
        key_version: tenant.active_keys().map(|k| k.version).unwrap_or(0),
        tenant_id: tenant.id,
        name: tenant.name,
        created_at_unix: secs(tenant.created_at_ms),
    }
}

/// Operator for the wire.
pub fn operator(operator: Operator) -> pb::Operator {
    pb::Operator {
        operator_id: operator.id,
        role: role_to_wire(operator.role) as i32,
        display_name: operator.display_name,
        disabled: operator.disabled,
        grants: operator
            .grants
            .into_iter()
            .map(|g| pb::Grant {
                tenant: g.tenant,
                purpose: g.purpose,
            })
            .collect(),
        created_at_unix: secs(operator.created_at_ms),
        pending_request: None,
    }
}

/// An operator that a held call returned, with its change request.
pub fn gated_operator(gated: Gated<Operator>, now_ms: i64) -> pb::Operator {
    pb::Operator {
        pending_request: gated.request.map(|r| change_request(r, now_ms)),
        ..operator(gated.value)
    }
}

/// A dual-control change request for the wire (a held token appears by id only).
pub fn change_request(request: ChangeRequest, now_ms: i64) -> pb::ChangeRequest {
    let mut out = pb::ChangeRequest {
        kind: request.change.kind().into(),
        summary: request.change.summary(&request.requested_by),
        operator_id: request.change.operator_id().unwrap_or_default().into(),
        state: request.state_name(now_ms).into(),
        requested_at_unix: secs(request.requested_at_ms),
        expires_at_unix: secs(request.expires_at_ms),
        required: request.required,
        quorum: match request.change {
            GatedChange::SetQuorum(quorum) => quorum,
            _ => 0,
        },
        approved_by: request.approvals.into_iter().map(|a| a.by).collect(),
        id: request.id,
        requested_by: request.requested_by,
        ..pb::ChangeRequest::default()
    };
    match request.state {
        ChangeState::Pending => {}
        ChangeState::Applied { at_ms } => out.decided_at_unix = secs(at_ms),
        ChangeState::Denied { by, reason, at_ms } => {
            out.denied_by = by;
            out.reason = reason;
            out.decided_at_unix = secs(at_ms);
        }
    }
    out
}

/// Token metadata for the wire; never the hash or the secret.
pub fn token_info(token: TokenRecord) -> pb::TokenInfo {
    pb::TokenInfo {
        token_id: token.id,
        operator_id: token.operator_id,
        issued_at_unix: secs(token.issued_at_ms),
        expires_at_unix: secs(token.expires_at_ms),
        revoked: token.revoked,
        cert_fingerprint: token.cert_fingerprint.unwrap_or_default(),
    }
}

/// Purpose for the wire.
pub fn purpose(purpose: Purpose) -> pb::Purpose {
    pb::Purpose {
        code: purpose.code,
        article: purpose.article,
        label_ja: purpose.label_ja,
        retention_years: purpose.retention_years,
    }
}

/// Audit entry for the wire, with its chain hashes.
pub fn audit_entry(chained: ChainedEntry) -> pb::AuditEntry {
    let e = chained.entry;
    pb::AuditEntry {
        format: chained.format.tag().into(),
        canonical: match chained.format {
            vault_audit::entry::EntryFormat::V2 => Vec::new(),
            _ => chained.canonical,
        },
        seq: e.seq,
        time_unix_ms: e.time_ms,
        operator_id: e.operator,
        role: e.role,
        tenant: e.tenant,
        action: e.action,
        handle: e.handle,
        purpose: e.purpose,
        outcome: e.outcome,
        code: e.code,
        reason: e.reason,
        request_id: e.request_id,
        peer: e.peer,
        token_id: e.token_id,
        state: e.state,
        hash: hex::encode(chained.hash),
        prev_hash: hex::encode(chained.prev_hash),
    }
}

/// Anchor statement for the wire.
pub fn anchor_statement(s: vault_audit::statement::AnchorStatement) -> pb::AuditAnchorStatement {
    pb::AuditAnchorStatement {
        checkpoint: s.checkpoint,
        checkpoint_hash: s.checkpoint_hash,
        counter: s.counter,
        time_unix_ms: s.time_ms,
        key_version: s.key_version,
        key_id: s.key_id,
        signature: s.signature,
    }
}

/// Checkpoint for the wire.
pub fn checkpoint(c: vault_audit::checkpoint::Checkpoint) -> pb::AuditCheckpoint {
    pb::AuditCheckpoint {
        seq: c.seq,
        chain_hash: c.chain_hash,
        time_unix_ms: c.time_ms,
        key_version: c.key_version,
        key_id: c.key_id,
        signature: c.signature,
        number: c.number,
        prev: c.prev,
        state: c.state,
    }
}

/// Audit public key for the wire (PEM; never the backend reference).
pub fn audit_key(key: crate::domain::audit_key::AuditKeyRecord) -> pb::AuditPublicKey {
    pb::AuditPublicKey {
        version: key.version,
        key_id: hex::encode(key.key_id),
        public_key_pem: vault_audit::checkpoint::public_key_pem(&key.public_point),
        created_at_unix: secs(key.created_at_ms),
        endorsement: hex::encode(&key.endorsement),
        public_point: hex::encode(&key.public_point),
    }
}

/// Rewrap job for the wire.
pub fn rewrap_job(job: crate::domain::rotation::RewrapJob) -> pb::RewrapJob {
    pb::RewrapJob {
        tenant: job.tenant,
        target_version: job.target_version,
        total: job.total,
        done: job.done,
        started_at_unix_ms: job.started_at_ms,
        finished_at_unix_ms: job.finished_at_ms.unwrap_or(0),
        requested_by: job.requested_by,
    }
}

/// Key status for the wire.
pub fn key_status(status: crate::service::rotation::TenantKeyStatus) -> pb::TenantKeyStatus {
    pb::TenantKeyStatus {
        tenant: status.tenant,
        versions: status
            .versions
            .into_iter()
            .map(|v| pb::KeyVersion {
                version: v.version,
                state: if v.destroy_not_before_ms.is_some() {
                    "scheduled-for-destruction".into()
                } else {
                    v.state.as_str().into()
                },
                records: v.records,
            })
            .collect(),
        job: status.job.map(rewrap_job),
    }
}

/// Destruction request for the wire.
pub fn destruction(r: crate::domain::rotation::DestructionRequest) -> pb::KeyDestruction {
    use crate::domain::rotation::DestructionState;
    let mut out = pb::KeyDestruction {
        id: r.id,
        tenant: r.tenant,
        version: r.version,
        requested_by: r.requested_by,
        requested_at_unix: secs(r.requested_at_ms),
        ..pb::KeyDestruction::default()
    };
    match r.state {
        DestructionState::Pending => out.state = "pending".into(),
        DestructionState::Approving { approvals } => {
            out.state = "pending".into();
            let names: Vec<String> = approvals.into_iter().map(|a| a.by).collect();
            out.approved_by = names.join(",");
        }
        DestructionState::Approved {
            by, not_before_ms, ..
        } => {
            out.state = "approved".into();
            out.approved_by = by;
            out.not_before_unix = secs(not_before_ms);
        }
        DestructionState::Cancelled { by, .. } => {
            out.state = "cancelled".into();
            out.cancelled_by = by;
        }
        DestructionState::Done { at_ms } => {
            out.state = "done".into();
            out.done_at_unix = secs(at_ms);
        }
    }
    out
}
