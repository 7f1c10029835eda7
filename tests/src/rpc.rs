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
        .audit_export(pb::AuditExportRequest {
            after_seq: 0,
            ..Default::default()
        })
        .await
        .expect("audit export")
        .into_inner();
    let mut entries = Vec::new();
    while let Some(entry) = stream.message().await.expect("export stream") {
        entries.push(entry);
    }
    entries
}

/// A record of `count` numbers carried out for `purpose` as an encrypted ZIP whose SHA-256 is
/// `sha256_hex`.
pub fn carry_out_request(purpose: &str, count: u64, sha256_hex: &str) -> pb::CarryOutRequest {
    pb::CarryOutRequest {
        purpose: purpose.into(),
        count,
        format: pb::CarryOutFormat::ZipAes256 as i32,
        file_sha256: sha256_hex.into(),
    }
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

/// Seals `count` distinct numbers in `tenant` (subject refs `R0`…); returns (handle, number).
pub async fn seal_many(
    handler: &mut Client,
    tenant: &str,
    count: u64,
    base: u64,
) -> Vec<(String, String)> {
    let mut records = Vec::new();
    for i in 0..count {
        let number = crate::numbers::valid_number(base + i);
        let handle = handler
            .locker
            .seal(seal_request(
                tenant,
                &format!("R{i}"),
                &number,
                &["STAFF_WITHHOLDING"],
            ))
            .await
            .expect("seal")
            .into_inner()
            .handle;
        records.push((handle, number));
    }
    records
}

/// Unseals every record for `STAFF_WITHHOLDING` and checks the number.
pub async fn unseal_all(handler: &mut Client, records: &[(String, String)]) {
    for (handle, number) in records {
        let back = handler
            .locker
            .unseal(pb::UnsealRequest {
                handle: handle.clone(),
                purpose: "STAFF_WITHHOLDING".into(),
            })
            .await
            .expect("unseal")
            .into_inner()
            .number;
        assert_eq!(&back, number);
    }
}

/// Approves, as `approver`, the change request a held call returned, and checks it applied;
/// returns the answer (with a token's second share when it applied one).
pub async fn approve(approver: &mut Client, held: Option<pb::ChangeRequest>) -> pb::ChangeRequest {
    let held = held.expect("the call was held for approval (dual control)");
    let decided = approver
        .admin
        .approve_change_request(pb::ChangeRequestIdRequest { id: held.id })
        .await
        .expect("approve the change request")
        .into_inner();
    assert_eq!(decided.state, "applied", "{decided:?}");
    decided
}

/// A token for another operator as its holder gets it: `admin` asks for it (`request`),
/// `approver` applies it, and the two shares are combined. Returns the issue answer (with
/// share 1, not a token) and the combined token.
pub async fn split_token(
    admin: &mut Client,
    approver: &mut Client,
    request: pb::IssueTokenRequest,
) -> (pb::IssueTokenResponse, secrecy::SecretString) {
    let issued = admin
        .admin
        .issue_token(request)
        .await
        .expect("issue token")
        .into_inner();
    assert!(issued.token.is_empty(), "no whole token for the requester");
    let applied = approve(approver, issued.pending_request.clone()).await;
    let token = vault_client::combine_token_shares(
        &issued.token_share.clone().into(),
        &applied.token_share.into(),
    )
    .expect("combine the shares");
    (issued, token)
}

/// Grants `purposes` on `tenant` to `operator`: asked by `admin`, approved by `approver`.
pub async fn grant(
    admin: &mut Client,
    approver: &mut Client,
    operator: &str,
    tenant: &str,
    purposes: &[&str],
) {
    let granted = admin
        .admin
        .grant_purposes(pb::GrantRequest {
            operator_id: operator.into(),
            tenant: tenant.into(),
            purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
        })
        .await
        .expect("grant")
        .into_inner();
    approve(approver, granted.pending_request).await;
}

/// Today's date in JST moved by `days`, as `YYYY-MM-DD` (the form retirement dates take).
pub fn jst_date_in(days: i64) -> String {
    let now = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let jst = now.to_offset(time::UtcOffset::from_hms(9, 0, 0).expect("offset"));
    format!(
        "{:04}-{:02}-{:02}",
        jst.year(),
        u8::from(jst.month()),
        jst.day()
    )
}

/// Creates operator `id` with `role` (handlers get `STAFF_WITHHOLDING` on `tenant`) and
/// returns a one-hour token for it: each step asked by `admin` and approved by `approver`.
pub async fn operator_token(
    admin: &mut Client,
    approver: &mut Client,
    tenant: &str,
    id: &str,
    role: pb::Role,
) -> secrecy::SecretString {
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
    if matches!(role, pb::Role::Handler | pb::Role::Service) {
        grant(admin, approver, id, tenant, &["STAFF_WITHHOLDING"]).await;
    }
    let (_, token) = split_token(
        admin,
        approver,
        pb::IssueTokenRequest {
            operator_id: id.into(),
            ttl_seconds: 3600,
            cert_fingerprint: String::new(),
        },
    )
    .await;
    token
}

/// Waits (up to 20 s) until the daemon's Locker health is `want`.
pub async fn wait_for_health(
    daemon: &crate::Daemon,
    want: tonic_health::pb::health_check_response::ServingStatus,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = tonic_health::pb::health_check_response::ServingStatus::try_from(
            health_of(daemon).await,
        )
        .expect("a serving status");
        if status == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health stayed {status:?}, wanted {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The daemon's Locker health now (a `ServingStatus` value).
pub async fn health_of(daemon: &crate::Daemon) -> i32 {
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(daemon.client(None).await.channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "mynumber.locker.v1.Locker".into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
}

/// Copies a directory tree (a data directory, for backup and tamper tests).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Waits (up to 30 s) until no record of `tenant` is under key version `version` any more.
pub async fn wait_for_rewrap(client: &mut Client, tenant: &str, version: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = client
            .admin
            .key_status(pb::KeyStatusRequest {
                tenant: tenant.into(),
            })
            .await
            .expect("key status")
            .into_inner();
        let done = status
            .tenants
            .iter()
            .flat_map(|t| &t.versions)
            .any(|v| v.version == version && v.records == 0);
        if done {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "records of {tenant} still under key version {version}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Starts a daemon from the config `text` (written beside `data`, which it must name as its
/// data directory, with a loopback `listen`) and returns it with clients of its two first
/// admins (the second approves the first's change requests).
pub async fn start_from_config(
    data: &std::path::Path,
    text: &str,
    options: crate::DaemonOptions,
) -> (crate::Daemon, Client, Client) {
    let config = data.with_extension("toml");
    std::fs::write(&config, text).expect("write config");
    let daemon = crate::Daemon::start(
        data,
        crate::DaemonOptions {
            config: Some(config),
            ..options
        },
    );
    let token = vault_client::read_token_file(&data.join("initial-admin.token"))
        .expect("first admin token");
    let admin = daemon.client(Some(token)).await;
    let second = vault_client::read_token_file(&data.join("initial-admin2.token"))
        .expect("second admin token");
    let approver = daemon.client(Some(second)).await;
    (daemon, admin, approver)
}

/// Creates tenant `tenant` and returns the token of a new operator `id` with `role` on it.
pub async fn tenant_with_operator(
    admin: &mut Client,
    approver: &mut Client,
    tenant: &str,
    id: &str,
    role: pb::Role,
) -> secrecy::SecretString {
    admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: tenant.into(),
            name: String::new(),
        })
        .await
        .expect("create tenant");
    operator_token(admin, approver, tenant, id, role).await
}

/// The number of `handle` for `purpose`, as `client` gets it (or the refusal).
pub async fn unseal(
    client: &mut Client,
    handle: &str,
    purpose: &str,
) -> Result<String, tonic::Status> {
    client
        .locker
        .unseal(pb::UnsealRequest {
            handle: handle.into(),
            purpose: purpose.into(),
        })
        .await
        .map(|r| r.into_inner().number)
}

/// Asks the daemon to verify its whole audit log (`AuditVerify`, as `auditor`); panics with
/// the daemon's message unless the log is intact.
pub async fn assert_log_verifies(auditor: &mut Client) {
    let report = auditor
        .admin
        .audit_verify(pb::AuditVerifyRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(report.ok, "{}", report.message);
}
