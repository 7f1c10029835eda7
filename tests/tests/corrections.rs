//! Corrections (訂正, 規程第47・48条): requested with the new number, decided by a manager who
//! is not the requester; on approval the same handle holds the new number and the old one is
//! gone; the correction record (never a number) is purged a year after its decision.

use tonic::Code;
use vault_client::{Client, pb};
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{export_audit, operator_token, seal_request, unseal};
use vault_tests::{Daemon, DaemonOptions};

const W: &str = "STAFF_WITHHOLDING";

async fn request(
    client: &mut Client,
    handle: &str,
    number: &str,
) -> Result<pb::Correction, tonic::Status> {
    client
        .locker
        .request_correction(pb::CorrectionRequest {
            handle: handle.into(),
            number: number.into(),
            reason: "番号の誤記".into(),
            asked_by: "本人".into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn decide(
    client: &mut Client,
    id: &str,
    approve: bool,
) -> Result<pb::Correction, tonic::Status> {
    let decision = pb::CorrectionDecision {
        id: id.into(),
        note: "本人確認済み".into(),
    };
    if approve {
        client.locker.approve_correction(decision).await
    } else {
        client.locker.reject_correction(decision).await
    }
    .map(|r| r.into_inner())
}

async fn lookup(client: &mut Client, number: &str) -> Result<String, Code> {
    client
        .locker
        .lookup(pb::LookupRequest {
            tenant: "dev".into(),
            number: number.into(),
        })
        .await
        .map(|r| r.into_inner().handle)
        .map_err(|s| s.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrections_need_a_second_operator_and_are_purged_after_a_year() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = dir.path().join("clock-days");
    std::fs::write(&clock, "0").expect("clock");
    let daemon = Daemon::start(
        &dir.path().join("data"),
        DaemonOptions {
            lifecycle_clock_file: Some(clock.clone()),
            ..DaemonOptions::default()
        },
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut manager = daemon.dev_client("dev-manager").await;
    let mut admin = daemon.dev_client("dev-admin").await;
    let mut approver = daemon.dev_client("dev-admin2").await;
    let second = operator_token(
        &mut admin,
        &mut approver,
        "dev",
        "manager-2",
        pb::Role::Manager,
    )
    .await;
    vault_tests::rpc::grant(&mut admin, &mut approver, "manager-2", "dev", &[W]).await;
    let mut manager2 = daemon.client(Some(second)).await;

    let (a, b, c, d) = (
        valid_number(61),
        valid_number(62),
        valid_number(63),
        valid_number(64),
    );
    let seal = |n: &str, s: &str| seal_request("dev", s, n, &[W]);
    let first = handler
        .locker
        .seal(seal(&a, "E61"))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let other = handler
        .locker
        .seal(seal(&c, "E63"))
        .await
        .expect("seal")
        .into_inner()
        .handle;

    // Bad input changes nothing.
    let bad = request(&mut handler, &first, "123456789019")
        .await
        .expect_err("check digit");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(!bad.message().contains("123456789019"));
    let same = request(&mut handler, &first, &a)
        .await
        .expect_err("same number");
    assert_eq!(same.code(), Code::InvalidArgument);
    let taken = request(&mut handler, &first, &c)
        .await
        .expect_err("number of another record");
    assert_eq!(taken.code(), Code::AlreadyExists);

    // A handler's request, approved by a manager.
    let pending = request(&mut handler, &first, &b).await.expect("request");
    assert_eq!(pending.state, "pending");
    assert_eq!(
        unseal(&mut handler, &first, W).await.expect("unseal"),
        a,
        "nothing changes while pending"
    );
    let denied = decide(&mut handler, &pending.id, true)
        .await
        .expect_err("handlers do not decide");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let approved = decide(&mut manager, &pending.id, true)
        .await
        .expect("approve");
    assert_eq!(approved.state, "approved");
    assert_eq!(approved.decided_by, "dev-manager");
    assert_eq!(
        unseal(&mut handler, &first, W).await.expect("unseal"),
        b,
        "same handle, new number"
    );
    assert_eq!(
        lookup(&mut handler, &a).await,
        Err(Code::NotFound),
        "old number gone"
    );
    assert_eq!(lookup(&mut handler, &b).await, Ok(first.clone()));
    let again = decide(&mut manager2, &pending.id, false)
        .await
        .expect_err("decided already");
    assert_eq!(again.code(), Code::FailedPrecondition);

    // A manager's own request: not theirs to decide; another manager rejects it.
    let own = request(&mut manager, &other, &d)
        .await
        .expect("manager requests");
    let refused = decide(&mut manager, &own.id, true)
        .await
        .expect_err("own request");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let rejected = decide(&mut manager2, &own.id, false).await.expect("reject");
    assert_eq!(rejected.state, "rejected");
    assert_eq!(
        unseal(&mut handler, &other, W).await.expect("unseal"),
        c,
        "a rejected correction changes nothing"
    );
    assert_eq!(lookup(&mut handler, &d).await, Err(Code::NotFound));

    // The records say who, when, why and what changed; never a number.
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let list = auditor
        .locker
        .list_corrections(pb::ListCorrectionsRequest {
            tenant: String::new(),
        })
        .await
        .expect("list")
        .into_inner()
        .corrections;
    assert_eq!(list.len(), 2);
    let text = format!("{list:?}");
    for n in [&a, &b, &c, &d] {
        assert!(
            !text.contains(n.as_str()),
            "a number in the correction records"
        );
    }

    // One year after the decisions, the scheduler purges them.
    std::fs::write(&clock, "364").expect("clock");
    let report = admin
        .admin
        .run_disposal(pb::RunDisposalRequest {})
        .await
        .expect("run")
        .into_inner();
    assert_eq!(report.corrections_purged, 0, "kept for a full year");
    std::fs::write(&clock, "366").expect("clock");
    let report = admin
        .admin
        .run_disposal(pb::RunDisposalRequest {})
        .await
        .expect("run")
        .into_inner();
    assert_eq!(report.corrections_purged, 2);
    let list = auditor
        .locker
        .list_corrections(pb::ListCorrectionsRequest {
            tenant: String::new(),
        })
        .await
        .expect("list")
        .into_inner()
        .corrections;
    assert!(list.is_empty());

    // Every step audited, with its outcome; no number anywhere in the log.
    let entries = export_audit(&mut auditor).await;
    let count = |action: &str, outcome: &str| {
        entries
            .iter()
            .filter(|e| e.action == action && e.outcome == outcome)
            .count()
    };
    assert_eq!(count("CORRECTION_REQUEST", "ALLOWED"), 2);
    assert_eq!(count("CORRECTION_APPROVE", "ALLOWED"), 1);
    assert_eq!(count("CORRECTION_REJECT", "ALLOWED"), 1);
    assert_eq!(count("CORRECTION_APPROVE", "DENIED"), 2);
    assert_eq!(count("CORRECTION_PURGE", "ALLOWED"), 1);
    let log = format!("{entries:?}");
    for n in [&a, &b, &c, &d] {
        assert!(!log.contains(n.as_str()), "a number in the audit log");
    }
}

/// A pending correction's new number is sealed under the key version active when it was
/// requested: that version cannot be scheduled for destruction until the correction is decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_correction_keeps_its_key_version_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut manager = daemon.dev_client("dev-manager").await;
    let mut admin = daemon.dev_client("dev-admin").await;
    let handle = handler
        .locker
        .seal(seal_request("dev", "E71", &valid_number(71), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let pending = request(&mut handler, &handle, &valid_number(72))
        .await
        .expect("request");
    admin
        .admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "dev".into(),
        })
        .await
        .expect("rotate");
    vault_tests::rpc::wait_for_rewrap(&mut admin, "dev", 1).await;
    let destroy = pb::RequestKeyDestructionRequest {
        tenant: "dev".into(),
        version: 1,
    };
    let refused = admin
        .admin
        .request_key_destruction(destroy.clone())
        .await
        .expect_err("a pending correction still needs version 1");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("pending correction"),
        "{}",
        refused.message()
    );
    decide(&mut manager, &pending.id, false)
        .await
        .expect("reject");
    admin
        .admin
        .request_key_destruction(destroy)
        .await
        .expect("decided: version 1 may go");
}

/// While a rotation is half done, records not yet rewrapped are indexed under the old MAC key:
/// a correction to the number of such a record is still refused (every live version is tried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_to_a_number_held_under_the_old_index_key_is_refused() {
    use vault_tests::tls_daemon::{ClientCert, TlsDaemon};
    let dir = tempfile::tempdir().expect("tempdir");
    // One record rewrapped a minute: the others stay under version 1 for the whole test.
    let tls = TlsDaemon::start(
        dir.path(),
        "\n[keys]\nrewrap_batch = 1\nrewrap_pause_ms = 60000\n",
    );
    let mut admin = tls.client(Some(tls.admin_token()), ClientCert::None).await;
    let mut approver = tls
        .client(Some(tls.approver_token()), ClientCert::None)
        .await;
    admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "t1".into(),
            name: String::new(),
        })
        .await
        .expect("tenant");
    let token = operator_token(&mut admin, &mut approver, "t1", "hr", pb::Role::Handler).await;
    let mut handler = tls.client(Some(token), ClientCert::None).await;
    let numbers: Vec<String> = (0..3).map(|i| valid_number(81 + i)).collect();
    let mut handles = Vec::new();
    for (i, n) in numbers.iter().enumerate() {
        handles.push(
            handler
                .locker
                .seal(seal_request("t1", &format!("E8{i}"), n, &[W]))
                .await
                .expect("seal")
                .into_inner()
                .handle,
        );
    }
    admin
        .admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "t1".into(),
        })
        .await
        .expect("rotate");
    for (i, handle) in handles.iter().enumerate() {
        for (j, number) in numbers.iter().enumerate() {
            if i == j {
                continue;
            }
            let refused = request(&mut handler, handle, number)
                .await
                .expect_err("the tenant holds that number");
            assert_eq!(refused.code(), Code::AlreadyExists, "{i} -> {j}");
        }
    }
}
