//! The authorisation matrix: every RPC × every kind of caller against a TLS daemon with client
//! certificates; then the audit log must hold exactly one entry per authenticated call with the
//! right outcome, account for every refused unauthenticated call (its own entry or a counted
//! summary), and the chain must verify.

use std::collections::HashMap;

use secrecy::SecretString;
use tonic::Code;
use vault_client::{Client, pb};
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{approve, export_audit, grant, seal_request, with_id};
use vault_tests::tls_daemon::{ClientCert, TlsDaemon};

const W: &str = "STAFF_WITHHOLDING";

const H: &str = "STAFF_HEALTH_PENSION";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Principal {
    Admin,
    Manager,
    Handler,
    Service,
    Auditor,
    NoToken,
    Expired,
    Revoked,
    Disabled,
    OtherCert,
}

const PRINCIPALS: [Principal; 10] = [
    Principal::Admin,
    Principal::Manager,
    Principal::Handler,
    Principal::Service,
    Principal::Auditor,
    Principal::NoToken,
    Principal::Expired,
    Principal::Revoked,
    Principal::Disabled,
    Principal::OtherCert,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rpc {
    Seal,
    Unseal,
    Lookup,
    Describe,
    Dispose,
    CreateTenant,
    ListTenants,
    CreateOperator,
    ListOperators,
    DisableOperator,
    GrantPurposes,
    RevokePurposes,
    IssueToken,
    RevokeToken,
    ListTokens,
    ListPurposes,
    AuditTail,
    AuditExport,
    AuditVerify,
    AuditCheckpoints,
    AuditPublicKeys,
    RotateAuditKey,
    Backup,
    RotateTenantKeys,
    KeyStatus,
    RequestKeyDestruction,
    ApproveKeyDestruction,
    CancelKeyDestruction,
    ListKeyDestructions,
    BenchBackend,
    Suspend,
    Resume,
    AddPurposes,
    RecordCarryOut,
    Retire,
    Unretire,
    SetAcquisitionDate,
    GetDeletionCertificate,
    RunDisposal,
    RequestCorrection,
    ApproveCorrection,
    RejectCorrection,
    ListCorrections,
    SetTenantInfo,
    UpdateTenantInfo,
    Ledger,
    UsageReport,
    IncidentReport,
    Disclose,
    ListAlerts,
    EnableOperator,
    ListChangeRequests,
    ApproveChangeRequest,
    DenyChangeRequest,
    RequestQuorum,
    WhoAmI,
}

const RPCS: [Rpc; 56] = [
    Rpc::Seal,
    Rpc::Unseal,
    Rpc::Lookup,
    Rpc::Describe,
    Rpc::Dispose,
    Rpc::CreateTenant,
    Rpc::ListTenants,
    Rpc::CreateOperator,
    Rpc::ListOperators,
    Rpc::DisableOperator,
    Rpc::GrantPurposes,
    Rpc::RevokePurposes,
    Rpc::IssueToken,
    Rpc::RevokeToken,
    Rpc::ListTokens,
    Rpc::ListPurposes,
    Rpc::AuditTail,
    Rpc::AuditExport,
    Rpc::AuditVerify,
    Rpc::AuditCheckpoints,
    Rpc::AuditPublicKeys,
    Rpc::RotateAuditKey,
    Rpc::Backup,
    Rpc::RotateTenantKeys,
    Rpc::KeyStatus,
    Rpc::RequestKeyDestruction,
    Rpc::ApproveKeyDestruction,
    Rpc::CancelKeyDestruction,
    Rpc::ListKeyDestructions,
    Rpc::BenchBackend,
    // Adjacent, so a manager's suspension is lifted before the next principal unseals.
    Rpc::Suspend,
    Rpc::Resume,
    // Adjacent too: the manager's retirement is undone by the manager's unretire.
    Rpc::Retire,
    Rpc::Unretire,
    Rpc::SetAcquisitionDate,
    Rpc::AddPurposes,
    Rpc::RecordCarryOut,
    Rpc::GetDeletionCertificate,
    Rpc::RunDisposal,
    Rpc::RequestCorrection,
    Rpc::ApproveCorrection,
    Rpc::RejectCorrection,
    Rpc::ListCorrections,
    Rpc::SetTenantInfo,
    Rpc::UpdateTenantInfo,
    Rpc::Ledger,
    Rpc::UsageReport,
    Rpc::IncidentReport,
    Rpc::Disclose,
    Rpc::ListAlerts,
    Rpc::EnableOperator,
    Rpc::ListChangeRequests,
    Rpc::ApproveChangeRequest,
    Rpc::DenyChangeRequest,
    Rpc::RequestQuorum,
    Rpc::WhoAmI,
];

/// RPCs the matrix leaves out, and why.
const NOT_IN_MATRIX: [(&str, &str); 3] = [
    (
        "Ping",
        "no token and no audit entry: the benchmark's baseline",
    ),
    (
        "SealBatch",
        "a stream whose every item is authorised and audited as a Seal (batch.rs)",
    ),
    (
        "UnsealBatch",
        "a stream whose every item is authorised and audited as an Unseal (batch.rs)",
    ),
];

/// The matrix follows the API: every method of the Locker and Admin services in the compiled
/// descriptor set has a row (or is left out above, with its reason), and every row is a
/// method. A new RPC fails here until its authorisation is written down and tested.
#[test]
fn the_matrix_has_a_row_for_every_rpc_of_the_api() {
    use prost::Message;
    use std::collections::BTreeSet;
    let set = prost_types::FileDescriptorSet::decode(vault_proto::FILE_DESCRIPTOR_SET)
        .expect("the API's descriptor set");
    let api: BTreeSet<String> = set
        .file
        .iter()
        .flat_map(|file| &file.service)
        .filter(|service| matches!(service.name(), "Locker" | "Admin"))
        .flat_map(|service| service.method.iter().map(|m| m.name().to_owned()))
        .collect();
    assert!(api.len() > 50, "{api:?}");
    let rows: BTreeSet<String> = RPCS.iter().map(|rpc| format!("{rpc:?}")).collect();
    assert_eq!(rows.len(), RPCS.len(), "an RPC listed twice");
    let left_out: BTreeSet<String> = NOT_IN_MATRIX
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let missing: Vec<&String> = api
        .iter()
        .filter(|method| !rows.contains(*method) && !left_out.contains(*method))
        .collect();
    assert!(
        missing.is_empty(),
        "RPCs with no row in the authorisation matrix: {missing:?} (add each to Rpc, RPCS, allowed() and call())"
    );
    let stale: Vec<&String> = rows
        .union(&left_out)
        .filter(|name| !api.contains(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "rows for RPCs the API does not have: {stale:?}"
    );
}

/// The roles DESIGN.md allows per RPC (the spec this test holds the daemon to).
fn allowed(rpc: Rpc, principal: Principal) -> bool {
    use Principal::*;
    let roles: &[Principal] = match rpc {
        Rpc::Seal | Rpc::Unseal | Rpc::Lookup | Rpc::RecordCarryOut => &[Handler, Service],
        Rpc::Describe => &[Handler, Service, Manager],
        Rpc::Dispose | Rpc::Suspend | Rpc::Resume | Rpc::Unretire | Rpc::SetAcquisitionDate => {
            &[Manager]
        }
        Rpc::Retire | Rpc::AddPurposes => &[Handler, Service, Manager],
        Rpc::GetDeletionCertificate
        | Rpc::ListCorrections
        | Rpc::Ledger
        | Rpc::UsageReport
        | Rpc::ListAlerts => &[Manager, Auditor, Admin],
        Rpc::IncidentReport => &[Auditor, Admin],
        // 本人開示 is the 管理責任者's decision (第46条②).
        Rpc::Disclose => &[Manager],
        // An unattended backup runs with an auditor's token, which approves nothing.
        Rpc::Backup => &[Admin, Auditor],
        Rpc::RequestCorrection => &[Handler, Service, Manager],
        Rpc::ApproveCorrection | Rpc::RejectCorrection => &[Manager],
        Rpc::CreateTenant
        | Rpc::CreateOperator
        | Rpc::DisableOperator
        | Rpc::GrantPurposes
        | Rpc::RevokePurposes
        | Rpc::IssueToken
        | Rpc::RevokeToken
        | Rpc::RotateAuditKey
        | Rpc::RotateTenantKeys
        | Rpc::RequestKeyDestruction
        | Rpc::ApproveKeyDestruction
        | Rpc::CancelKeyDestruction
        | Rpc::RunDisposal
        | Rpc::SetTenantInfo
        | Rpc::UpdateTenantInfo
        | Rpc::EnableOperator
        | Rpc::ApproveChangeRequest
        | Rpc::DenyChangeRequest
        | Rpc::RequestQuorum
        | Rpc::BenchBackend => &[Admin],
        Rpc::ListTenants
        | Rpc::ListOperators
        | Rpc::ListTokens
        | Rpc::KeyStatus
        | Rpc::ListKeyDestructions
        | Rpc::ListChangeRequests => &[Admin, Auditor],
        Rpc::ListPurposes | Rpc::WhoAmI => &[Admin, Manager, Handler, Service, Auditor],
        Rpc::AuditTail
        | Rpc::AuditExport
        | Rpc::AuditVerify
        | Rpc::AuditCheckpoints
        | Rpc::AuditPublicKeys => &[Admin, Auditor, Manager],
    };
    roles.contains(&principal)
}

/// What an allowed call answers: OK, except approving or cancelling a request id that does not
/// exist, which passes authorisation and then finds nothing.
fn allowed_code(rpc: Rpc) -> Code {
    match rpc {
        Rpc::ApproveKeyDestruction
        | Rpc::CancelKeyDestruction
        | Rpc::ApproveChangeRequest
        | Rpc::DenyChangeRequest
        | Rpc::ApproveCorrection
        | Rpc::RejectCorrection => Code::NotFound,
        _ => Code::Ok,
    }
}

/// Why a caller that does not authenticate is refused, as the audit log says.
fn unauthenticated_reason(principal: Principal) -> String {
    match principal {
        Principal::NoToken => "missing bearer token",
        Principal::Expired => "token has expired",
        Principal::Revoked => "token has been revoked",
        Principal::Disabled => "operator is disabled",
        Principal::OtherCert => {
            "token is bound to a client certificate this connection did not present"
        }
        _ => "",
    }
    .to_owned()
}

fn authenticates(principal: Principal) -> bool {
    !matches!(
        principal,
        Principal::NoToken
            | Principal::Expired
            | Principal::Revoked
            | Principal::Disabled
            | Principal::OtherCert
    )
}

/// Per-call fixtures prepared by the admin before the matrix runs.
struct Fixtures {
    record: String,
    record_number: String,
    dispose_records: HashMap<Principal, String>,
    retire_records: HashMap<Principal, String>,
    correction_records: HashMap<Principal, String>,
    disposed_record: String,
    disposable_operators: HashMap<Principal, String>,
    revocable_tokens: HashMap<Principal, String>,
}

/// Issues a token for `operator`, asked by `admin` and approved by `approver`.
async fn issue(
    admin: &mut Client,
    approver: &mut Client,
    operator: &str,
    ttl: u64,
    fingerprint: &str,
) -> pb::IssueTokenResponse {
    use secrecy::ExposeSecret;
    let (mut issued, token) = vault_tests::rpc::split_token(
        admin,
        approver,
        pb::IssueTokenRequest {
            operator_id: operator.into(),
            ttl_seconds: ttl,
            cert_fingerprint: fingerprint.into(),
        },
    )
    .await;
    // The shares combined: what the operator's holder uses.
    issued.token = token.expose_secret().to_owned();
    issued
}

async fn create_operator(admin: &mut Client, approver: &mut Client, id: &str, role: pb::Role) {
    let created = admin
        .admin
        .create_operator(pb::CreateOperatorRequest {
            operator_id: id.into(),
            role: role as i32,
            display_name: String::new(),
        })
        .await
        .expect("create operator")
        .into_inner();
    approve(approver, created.pending_request).await;
}

async fn call(
    client: &mut Client,
    rpc: Rpc,
    principal: Principal,
    fx: &Fixtures,
    id: &str,
    n: u64,
) -> Result<(), tonic::Status> {
    let tag = format!("{principal:?}").to_lowercase();
    match rpc {
        Rpc::Seal => client
            .locker
            .seal(with_id(
                seal_request("t1", &format!("S-{tag}"), &valid_number(1000 + n), &[W]),
                id,
            ))
            .await
            .map(drop),
        Rpc::Unseal => client
            .locker
            .unseal(with_id(
                pb::UnsealRequest {
                    handle: fx.record.clone(),
                    purpose: W.into(),
                },
                id,
            ))
            .await
            .map(|r| assert_eq!(r.into_inner().number, fx.record_number)),
        Rpc::Lookup => client
            .locker
            .lookup(with_id(
                pb::LookupRequest {
                    tenant: "t1".into(),
                    number: fx.record_number.clone(),
                },
                id,
            ))
            .await
            .map(|r| assert_eq!(r.into_inner().handle, fx.record)),
        Rpc::RecordCarryOut => client
            .locker
            .record_carry_out(with_id(
                pb::CarryOutRequest {
                    purpose: W.into(),
                    count: 1,
                    format: pb::CarryOutFormat::ZipAes256 as i32,
                    file_sha256: "ab".repeat(32),
                },
                id,
            ))
            .await
            .map(drop),
        // Purposes the record carries already: allowed, and the record is left as it was.
        Rpc::AddPurposes => client
            .locker
            .add_purposes(with_id(
                pb::AddPurposesRequest {
                    handle: fx.record.clone(),
                    purposes: vec![W.into()],
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::Describe => client
            .locker
            .describe(with_id(
                pb::DescribeRequest {
                    handle: fx.record.clone(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::Dispose => client
            .locker
            .dispose(with_id(
                pb::DisposeRequest {
                    handle: fx.dispose_records[&principal].clone(),
                    reason: "test".into(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::CreateTenant => client
            .admin
            .create_tenant(with_id(
                pb::CreateTenantRequest {
                    tenant_id: format!("new-{tag}"),
                    name: String::new(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::ListTenants => client
            .admin
            .list_tenants(with_id(pb::ListTenantsRequest {}, id))
            .await
            .map(drop),
        Rpc::CreateOperator => client
            .admin
            .create_operator(with_id(
                pb::CreateOperatorRequest {
                    operator_id: format!("op-{tag}"),
                    role: pb::Role::Handler as i32,
                    display_name: String::new(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::ListOperators => client
            .admin
            .list_operators(with_id(pb::ListOperatorsRequest {}, id))
            .await
            .map(drop),
        Rpc::DisableOperator => client
            .admin
            .disable_operator(with_id(
                pb::DisableOperatorRequest {
                    operator_id: fx.disposable_operators[&principal].clone(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::EnableOperator => client
            .admin
            .enable_operator(with_id(
                pb::DisableOperatorRequest {
                    operator_id: fx.disposable_operators[&principal].clone(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::GrantPurposes | Rpc::RevokePurposes => {
            let request = with_id(
                pb::GrantRequest {
                    operator_id: "hdl2".into(),
                    tenant: "t1".into(),
                    purposes: vec![H.into()],
                },
                id,
            );
            if rpc == Rpc::GrantPurposes {
                client.admin.grant_purposes(request).await.map(drop)
            } else {
                client.admin.revoke_purposes(request).await.map(drop)
            }
        }
        Rpc::IssueToken => client
            .admin
            .issue_token(with_id(
                pb::IssueTokenRequest {
                    operator_id: "hdl2".into(),
                    ttl_seconds: 60,
                    cert_fingerprint: String::new(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::RevokeToken => client
            .admin
            .revoke_token(with_id(
                pb::RevokeTokenRequest {
                    token_id: fx.revocable_tokens[&principal].clone(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::ListTokens => client
            .admin
            .list_tokens(with_id(
                pb::ListTokensRequest {
                    operator_id: String::new(),
                },
                id,
            ))
            .await
            .map(|r| assert!(r.into_inner().tokens.iter().all(|t| t.token_id.len() == 16))),
        Rpc::ListPurposes => client
            .admin
            .list_purposes(with_id(pb::ListPurposesRequest {}, id))
            .await
            .map(drop),
        Rpc::AuditTail => client
            .admin
            .audit_tail(with_id(pb::AuditTailRequest { limit: 5 }, id))
            .await
            .map(drop),
        Rpc::AuditExport => {
            let mut stream = client
                .admin
                .audit_export(with_id(
                    pb::AuditExportRequest {
                        after_seq: 0,
                        ..Default::default()
                    },
                    id,
                ))
                .await?
                .into_inner();
            while stream.message().await?.is_some() {}
            Ok(())
        }
        Rpc::AuditVerify => client
            .admin
            .audit_verify(with_id(pb::AuditVerifyRequest {}, id))
            .await
            .map(|r| assert!(r.into_inner().ok)),
        Rpc::AuditCheckpoints => client
            .admin
            .audit_checkpoints(with_id(pb::AuditCheckpointsRequest { after_seq: 0 }, id))
            .await
            .map(drop),
        Rpc::AuditPublicKeys => client
            .admin
            .audit_public_keys(with_id(pb::AuditPublicKeysRequest {}, id))
            .await
            .map(|r| {
                assert!(
                    r.into_inner()
                        .keys
                        .iter()
                        .all(|k| k.public_key_pem.contains("BEGIN PUBLIC KEY"))
                )
            }),
        Rpc::Backup => {
            let mut stream = client
                .admin
                .backup(with_id(pb::BackupRequest {}, id))
                .await?
                .into_inner();
            while stream.message().await?.is_some() {}
            Ok(())
        }
        Rpc::RotateAuditKey => client
            .admin
            .rotate_audit_key(with_id(pb::RotateAuditKeyRequest {}, id))
            .await
            .map(drop),
        Rpc::RotateTenantKeys => client
            .admin
            .rotate_tenant_keys(with_id(
                pb::RotateTenantKeysRequest {
                    tenant: "t2".into(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::RequestKeyDestruction => client
            .admin
            .request_key_destruction(with_id(
                pb::RequestKeyDestructionRequest {
                    tenant: "t2".into(),
                    version: 1,
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::ApproveKeyDestruction => client
            .admin
            .approve_key_destruction(with_id(
                pb::KeyDestructionIdRequest {
                    id: "00000000000000aa".into(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::CancelKeyDestruction => client
            .admin
            .cancel_key_destruction(with_id(
                pb::KeyDestructionIdRequest {
                    id: "00000000000000aa".into(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::Suspend | Rpc::Resume => {
            let request = with_id(
                pb::SuspendRequest {
                    handle: fx.record.clone(),
                    reason: "本人の求め".into(),
                },
                id,
            );
            if rpc == Rpc::Suspend {
                client.locker.suspend(request).await.map(drop)
            } else {
                client.locker.resume(request).await.map(drop)
            }
        }
        Rpc::Retire => client
            .locker
            .retire(with_id(
                pb::RetireRequest {
                    handle: fx.retire_records[&principal].clone(),
                    // Today: a handler may not date a departure before the record's acquisition.
                    left_on: vault_tests::rpc::jst_date_in(0),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::Unretire => client
            .locker
            .unretire(with_id(
                pb::UnretireRequest {
                    handle: fx.retire_records[&principal].clone(),
                    reason: "再雇用".into(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::SetAcquisitionDate => client
            .locker
            .set_acquisition_date(with_id(
                pb::SetAcquisitionDateRequest {
                    handle: fx.record.clone(),
                    acquired_on: "2019-04-01".into(),
                    reason: "紙の台帳から移行".into(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::GetDeletionCertificate => client
            .locker
            .get_deletion_certificate(with_id(
                pb::CertificateRequest {
                    handle: fx.disposed_record.clone(),
                },
                id,
            ))
            .await
            .map(|r| assert!(!r.into_inner().signature.is_empty())),
        Rpc::RequestCorrection => client
            .locker
            .request_correction(with_id(
                pb::CorrectionRequest {
                    handle: fx.correction_records[&principal].clone(),
                    number: valid_number(900 + n),
                    reason: "誤記".into(),
                    asked_by: "本人".into(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::ApproveCorrection | Rpc::RejectCorrection => {
            let decision = with_id(
                pb::CorrectionDecision {
                    id: "00000000000000aa".into(),
                    note: "確認".into(),
                },
                id,
            );
            if rpc == Rpc::ApproveCorrection {
                client.locker.approve_correction(decision).await.map(drop)
            } else {
                client.locker.reject_correction(decision).await.map(drop)
            }
        }
        Rpc::ListCorrections => client
            .locker
            .list_corrections(with_id(pb::ListCorrectionsRequest::default(), id))
            .await
            .map(drop),
        Rpc::UpdateTenantInfo => client
            .admin
            .update_tenant_info(with_id(
                pb::UpdateTenantInfoRequest {
                    tenant: "t1".into(),
                    handling_area: Some("人事部執務室".into()),
                    ..pb::UpdateTenantInfoRequest::default()
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::SetTenantInfo => client
            .admin
            .set_tenant_info(with_id(
                pb::TenantInfo {
                    tenant: "t1".into(),
                    responsible_department: "人事部".into(),
                    ..pb::TenantInfo::default()
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::Ledger => client
            .admin
            .ledger(with_id(pb::LedgerRequest::default(), id))
            .await
            .map(drop),
        Rpc::UsageReport => client
            .admin
            .usage_report(with_id(
                pb::UsageReportRequest {
                    from_unix: 0,
                    to_unix: 4_000_000_000,
                    tenant: String::new(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::IncidentReport => client
            .admin
            .incident_report(with_id(
                pb::IncidentReportRequest {
                    operator_id: "hdl".into(),
                    from_unix: 0,
                    to_unix: 4_000_000_000,
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::Disclose => client
            .admin
            .disclose(with_id(
                pb::DisclosureRequest {
                    tenant: "t1".into(),
                    subject: Some(pb::disclosure_request::Subject::Handle(fx.record.clone())),
                    reference: format!("R-{tag}"),
                    ..pb::DisclosureRequest::default()
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::ListAlerts => client
            .admin
            .list_alerts(with_id(pb::ListAlertsRequest::default(), id))
            .await
            .map(drop),
        Rpc::RunDisposal => client
            .admin
            .run_disposal(with_id(pb::RunDisposalRequest {}, id))
            .await
            .map(drop),
        Rpc::BenchBackend => client
            .admin
            .bench_backend(with_id(
                pb::BenchBackendRequest {
                    tenant: "t1".into(),
                    count: 10,
                    concurrency: 4,
                },
                id,
            ))
            .await
            .map(|r| assert!(r.into_inner().unwraps_per_second > 0.0)),
        Rpc::ListKeyDestructions => client
            .admin
            .list_key_destructions(with_id(pb::ListKeyDestructionsRequest {}, id))
            .await
            .map(drop),
        Rpc::ListChangeRequests => client
            .admin
            .list_change_requests(with_id(pb::ListChangeRequestsRequest::default(), id))
            .await
            .map(|r| assert_eq!(r.into_inner().quorum, 1)),
        Rpc::ApproveChangeRequest => client
            .admin
            .approve_change_request(with_id(
                pb::ChangeRequestIdRequest {
                    id: "00000000000000aa".into(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::DenyChangeRequest => client
            .admin
            .deny_change_request(with_id(
                pb::DenyChangeRequestRequest {
                    id: "00000000000000aa".into(),
                    reason: "誤申請".into(),
                },
                id,
            ))
            .await
            .map(drop),
        Rpc::WhoAmI => client
            .admin
            .who_am_i(with_id(pb::WhoAmIRequest {}, id))
            .await
            .map(|r| {
                let me = r.into_inner();
                assert_eq!(me.token_id.len(), 16);
                assert!(me.operator.is_some());
            }),
        Rpc::RequestQuorum => client
            .admin
            .request_quorum(with_id(pb::RequestQuorumRequest { approvals: 1 }, id))
            .await
            .map(|r| assert_eq!(r.into_inner().state, "pending")),
        Rpc::KeyStatus => client
            .admin
            .key_status(with_id(
                pb::KeyStatusRequest {
                    tenant: String::new(),
                },
                id,
            ))
            .await
            .map(|r| assert!(!r.into_inner().tenants.is_empty())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_for_every_kind_of_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 250 failed authentications from one address in a second: over the default lockout,
    // which has its own test (abuse_limits.rs). Refusal windows of a second, so the counts
    // of aggregated refusals reach the log while the test waits.
    let tls = TlsDaemon::start(
        dir.path(),
        "[rate_limits]\nfailed_auth_burst = 100000\nrefusal_window_secs = 1\n",
    );
    let fingerprint = |path| vault_client::certificate_fingerprint(path).expect("fingerprint");
    let fp_a = fingerprint(&tls.pki.client_a.0);
    let fp_b = fingerprint(&tls.pki.client_b.0);

    let admin_token = tls.admin_token();
    let mut admin = tls.client(Some(admin_token.clone()), ClientCert::A).await;
    let mut approver = tls.client(Some(tls.approver_token()), ClientCert::A).await;
    for tenant in ["t1", "t2"] {
        admin
            .admin
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: tenant.into(),
                name: String::new(),
            })
            .await
            .expect("create tenant");
    }
    for (id, role) in [
        ("mgr", pb::Role::Manager),
        ("hdl", pb::Role::Handler),
        ("hdl2", pb::Role::Handler),
        ("svc", pb::Role::Service),
        ("aud", pb::Role::Auditor),
        ("gone", pb::Role::Handler),
    ] {
        create_operator(&mut admin, &mut approver, id, role).await;
    }
    for id in ["mgr", "hdl", "svc", "gone"] {
        grant(&mut admin, &mut approver, id, "t1", &[W, H]).await;
    }
    grant(&mut admin, &mut approver, "hdl2", "t1", &[W]).await;

    let mut tokens: HashMap<Principal, SecretString> = HashMap::new();
    tokens.insert(Principal::Admin, admin_token);
    for (principal, operator, fp) in [
        (Principal::Manager, "mgr", ""),
        (Principal::Handler, "hdl", ""),
        (Principal::Service, "svc", fp_a.as_str()), // bound to the certificate this test presents
        (Principal::Auditor, "aud", ""),
        (Principal::Disabled, "gone", ""),
        (Principal::OtherCert, "hdl", fp_b.as_str()), // bound to a certificate not presented
    ] {
        tokens.insert(
            principal,
            SecretString::from(
                issue(&mut admin, &mut approver, operator, 3600, fp)
                    .await
                    .token,
            ),
        );
    }
    let expired = issue(&mut admin, &mut approver, "hdl", 1, "").await;
    tokens.insert(Principal::Expired, SecretString::from(expired.token));
    let revoked = issue(&mut admin, &mut approver, "hdl", 3600, "").await;
    admin
        .admin
        .revoke_token(pb::RevokeTokenRequest {
            token_id: revoked.token_id,
        })
        .await
        .expect("revoke");
    tokens.insert(Principal::Revoked, SecretString::from(revoked.token));
    admin
        .admin
        .disable_operator(pb::DisableOperatorRequest {
            operator_id: "gone".into(),
        })
        .await
        .expect("disable");

    let mut handler = tls
        .client(tokens.get(&Principal::Handler).cloned(), ClientCert::A)
        .await;
    let record_number = valid_number(1);
    let record = handler
        .locker
        .seal(seal_request("t1", "E1", &record_number, &[W, H]))
        .await
        .expect("seal fixture")
        .into_inner()
        .handle;
    let disposed_record = handler
        .locker
        .seal(seal_request("t1", "X1", &valid_number(2), &[W]))
        .await
        .expect("seal certificate fixture")
        .into_inner()
        .handle;
    tls.client(tokens.get(&Principal::Manager).cloned(), ClientCert::A)
        .await
        .locker
        .dispose(pb::DisposeRequest {
            handle: disposed_record.clone(),
            reason: "保存期間経過".into(),
        })
        .await
        .expect("dispose certificate fixture");
    let mut fx = Fixtures {
        record,
        record_number,
        retire_records: HashMap::new(),
        correction_records: HashMap::new(),
        disposed_record,
        dispose_records: HashMap::new(),
        disposable_operators: HashMap::new(),
        revocable_tokens: HashMap::new(),
    };
    for (i, principal) in PRINCIPALS.iter().enumerate() {
        let handle = handler
            .locker
            .seal(seal_request(
                "t1",
                &format!("D{i}"),
                &valid_number(500 + i as u64),
                &[W],
            ))
            .await
            .expect("seal dispose fixture")
            .into_inner()
            .handle;
        fx.dispose_records.insert(*principal, handle);
        let handle = handler
            .locker
            .seal(seal_request(
                "t1",
                &format!("R{i}"),
                &valid_number(700 + i as u64),
                &[W],
            ))
            .await
            .expect("seal retire fixture")
            .into_inner()
            .handle;
        fx.retire_records.insert(*principal, handle);
        let handle = handler
            .locker
            .seal(seal_request(
                "t1",
                &format!("C{i}"),
                &valid_number(800 + i as u64),
                &[W],
            ))
            .await
            .expect("seal correction fixture")
            .into_inner()
            .handle;
        fx.correction_records.insert(*principal, handle);
        let operator = format!("throwaway-{i}");
        create_operator(&mut admin, &mut approver, &operator, pb::Role::Handler).await;
        fx.revocable_tokens.insert(
            *principal,
            issue(&mut admin, &mut approver, &operator, 3600, "")
                .await
                .token_id,
        );
        fx.disposable_operators.insert(*principal, operator);
    }
    // Let the one-second token expire.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    let mut expected: HashMap<String, (Rpc, Principal, Code)> = HashMap::new();
    let mut n = 0;
    for principal in PRINCIPALS {
        let token = tokens.get(&principal).cloned();
        let mut client = tls.client(token, ClientCert::A).await;
        for rpc in RPCS {
            n += 1;
            let id = format!("m-{n}");
            let want = if !authenticates(principal) {
                Code::Unauthenticated
            } else if allowed(rpc, principal) {
                allowed_code(rpc)
            } else {
                Code::PermissionDenied
            };
            let got = match call(&mut client, rpc, principal, &fx, &id, n).await {
                Ok(()) => Code::Ok,
                Err(status) => status.code(),
            };
            assert_eq!(got, want, "{rpc:?} as {principal:?}");
            expected.insert(id, (rpc, principal, want));
        }
    }

    // One audit entry per authenticated call, with the right outcome and code. Calls refused
    // before anyone was identified are audited per address, reason and window: the first on
    // its own, the others as a count; every one of them is accounted for. The chain verifies.
    let mut auditor = tls
        .client(tokens.get(&Principal::Auditor).cloned(), ClientCert::None)
        .await;
    let unauthenticated: HashMap<String, u64> = {
        let mut calls = HashMap::new();
        for (rpc, principal, _) in expected.values() {
            if !authenticates(*principal) {
                let _ = rpc;
                *calls.entry(unauthenticated_reason(*principal)).or_insert(0) += 1;
            }
        }
        calls
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let entries = loop {
        let entries = export_audit(&mut auditor).await;
        let mut accounted: HashMap<String, u64> = HashMap::new();
        for entry in &entries {
            if entry.code != "UNAUTHENTICATED" {
                continue;
            }
            let (count, reason) = match entry.action.as_str() {
                "REFUSAL_SUMMARY" => {
                    let (count, rest) = entry.reason.split_once(' ').expect("count");
                    let reason = rest.rsplit_once("): ").expect("reason").1;
                    (count.parse::<u64>().expect("count"), reason.to_owned())
                }
                _ => (1, entry.reason.clone()),
            };
            *accounted.entry(reason).or_insert(0) += count;
        }
        let done = unauthenticated
            .iter()
            .all(|(reason, calls)| accounted.get(reason) == Some(calls));
        if done {
            break entries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refused calls {unauthenticated:?}, accounted {accounted:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert!(
        entries
            .iter()
            .filter(|e| e.code == "UNAUTHENTICATED")
            .count()
            < 50,
        "aggregated, not one entry per refused call"
    );
    for (id, (rpc, principal, code)) in &expected {
        let matching: Vec<&pb::AuditEntry> =
            entries.iter().filter(|e| &e.request_id == id).collect();
        if !authenticates(*principal) {
            assert!(
                matching.len() <= 1,
                "{rpc:?} as {principal:?}: {matching:?}"
            );
            if let Some(entry) = matching.first() {
                assert_eq!(
                    (entry.outcome.as_str(), entry.code.as_str()),
                    ("DENIED", "UNAUTHENTICATED")
                );
            }
            continue;
        }
        assert_eq!(
            matching.len(),
            1,
            "{rpc:?} as {principal:?}: entries {matching:?}"
        );
        let entry = matching[0];
        let (outcome, code_name) = match code {
            Code::Ok => ("ALLOWED", "OK"),
            Code::Unauthenticated => ("DENIED", "UNAUTHENTICATED"),
            Code::NotFound => ("FAILED", "NOT_FOUND"),
            _ => ("DENIED", "PERMISSION_DENIED"),
        };
        assert_eq!(
            entry.outcome, outcome,
            "{rpc:?} as {principal:?}: {entry:?}"
        );
        assert_eq!(entry.code, code_name, "{rpc:?} as {principal:?}: {entry:?}");
        assert!(!entry.reason.is_empty() || *code == Code::Ok, "{entry:?}");
    }
    // The refusals say why.
    let reason = |principal: Principal| {
        entries
            .iter()
            .find(|e| expected.get(&e.request_id).map(|x| x.1) == Some(principal))
            .map(|e| e.reason.clone())
            .unwrap_or_default()
    };
    for principal in PRINCIPALS.iter().filter(|p| !authenticates(**p)) {
        assert_eq!(reason(*principal), unauthenticated_reason(*principal));
    }
    let verify = auditor
        .admin
        .audit_verify(pb::AuditVerifyRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(verify.ok, "{}", verify.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_denials_by_purpose_tenant_and_state_are_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = TlsDaemon::start(dir.path(), "");
    let mut admin = tls.client(Some(tls.admin_token()), ClientCert::None).await;
    let mut approver = tls
        .client(Some(tls.approver_token()), ClientCert::None)
        .await;
    for tenant in ["t1", "t2"] {
        admin
            .admin
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: tenant.into(),
                name: String::new(),
            })
            .await
            .expect("tenant");
    }
    for (id, role) in [
        ("hdl", pb::Role::Handler),
        ("narrow", pb::Role::Handler),
        ("other", pb::Role::Handler),
        ("mgr", pb::Role::Manager),
        ("aud", pb::Role::Auditor),
    ] {
        create_operator(&mut admin, &mut approver, id, role).await;
    }
    grant(&mut admin, &mut approver, "hdl", "t1", &[W, H]).await;
    grant(&mut admin, &mut approver, "narrow", "t1", &[W]).await;
    grant(&mut admin, &mut approver, "other", "t2", &[W, H]).await;
    grant(&mut admin, &mut approver, "mgr", "t1", &[W]).await;
    let mut client_of = async |id: &str| {
        let token = SecretString::from(issue(&mut admin, &mut approver, id, 3600, "").await.token);
        tls.client(Some(token), ClientCert::None).await
    };
    let mut hdl = client_of("hdl").await;
    let narrow = client_of("narrow").await;
    let other = client_of("other").await;
    let mut mgr = client_of("mgr").await;
    let mut aud = client_of("aud").await;

    let both = hdl
        .locker
        .seal(seal_request("t1", "E1", &valid_number(1), &[W, H]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let only_w = hdl
        .locker
        .seal(seal_request("t1", "E2", &valid_number(2), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let disposed = hdl
        .locker
        .seal(seal_request("t1", "E3", &valid_number(3), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    mgr.locker
        .dispose(pb::DisposeRequest {
            handle: disposed.clone(),
            reason: "退職・保存期間経過".into(),
        })
        .await
        .expect("dispose");

    let cases: [(Client, &str, &str, Code, &str, &str); 4] = [
        (
            narrow.clone(),
            &both,
            H,
            Code::PermissionDenied,
            "d-not-granted",
            "is not granted purpose STAFF_HEALTH_PENSION",
        ),
        (
            hdl.clone(),
            &only_w,
            H,
            Code::PermissionDenied,
            "d-not-permitted",
            "not among the record's permitted purposes",
        ),
        (
            other.clone(),
            &both,
            W,
            // Answered exactly like a handle that does not exist: no oracle for other tenants.
            Code::NotFound,
            "d-other-tenant",
            "no record ",
        ),
        (
            hdl.clone(),
            &disposed,
            W,
            Code::FailedPrecondition,
            "d-disposed",
            "has been disposed",
        ),
    ];
    for (mut client, handle, purpose, code, id, reason) in cases {
        let status = client
            .locker
            .unseal(with_id(
                pb::UnsealRequest {
                    handle: handle.into(),
                    purpose: purpose.into(),
                },
                id,
            ))
            .await
            .expect_err(id);
        assert_eq!(status.code(), code, "{id}: {status:?}");
        assert!(
            status.message().contains(reason),
            "{id}: {}",
            status.message()
        );
    }
    let entries = export_audit(&mut aud).await;
    for (id, outcome, code) in [
        ("d-not-granted", "DENIED", "PERMISSION_DENIED"),
        ("d-not-permitted", "DENIED", "PERMISSION_DENIED"),
        ("d-other-tenant", "DENIED", "NOT_FOUND"),
        ("d-disposed", "FAILED", "FAILED_PRECONDITION"),
    ] {
        let matching: Vec<_> = entries.iter().filter(|e| e.request_id == id).collect();
        assert_eq!(matching.len(), 1, "{id}");
        assert_eq!(
            (matching[0].outcome.as_str(), matching[0].code.as_str()),
            (outcome, code),
            "{id}"
        );
        assert_eq!(matching[0].action, "UNSEAL");
        assert!(!matching[0].reason.is_empty());
    }
}
