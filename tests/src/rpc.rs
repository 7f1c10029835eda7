//! Calling the API with request ids, and reading the audit log back.

use vault_client::{Client, pb};

/// Wraps a message in a request carrying `x-request-id`.
pub fn with_id<T>(message: T, request_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "x-request-id",
        request_id.parse().expect("ascii request id"),
    );
    request
}

/// Every audit entry, in order, via `AuditExport` with `client` (an auditor or admin).
pub async fn export_audit(client: &mut Client) -> Vec<pb::AuditEntry> {
    let mut stream = client
        .admin
        .audit_export(pb::AuditExportRequest { after_seq: 0 })
        .await
        .expect("audit export")
        .into_inner();
    let mut entries = Vec::new();
    while let Some(entry) = stream.message().await.expect("export stream") {
        entries.push(entry);
    }
    entries
}

/// A seal request for the dev tenant.
pub fn seal_request(
    tenant: &str,
    subject: &str,
    number: &str,
    purposes: &[&str],
) -> pb::SealRequest {
    pb::SealRequest {
        tenant: tenant.into(),
        subject_ref: subject.into(),
        subject_kind: pb::SubjectKind::Staff as i32,
        purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
        number: number.into(),
        verification: Some(pb::IdentityVerification {
            number_check: "MNC".into(),
            identity_check: "MNC".into(),
            agent_authority: String::new(),
        }),
    }
}
