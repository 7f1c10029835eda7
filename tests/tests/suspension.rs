//! Suspension at the person's request (規程 第49条): only a manager suspends or resumes, with a
//! reason; while suspended, unseal fails FAILED_PRECONDITION; a rotation still rewraps the
//! record; everything is audited.

use tonic::Code;
use vault_client::pb;
use vault_tests::Daemon;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{export_audit, seal_request, wait_for_rewrap};

const W: &str = "STAFF_WITHHOLDING";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_blocks_unseal_until_resumed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut manager = daemon.dev_client("dev-manager").await;
    let number = valid_number(4900);
    let handle = handler
        .locker
        .seal(seal_request("dev", "E49", &number, &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let request = |reason: &str| pb::SuspendRequest {
        handle: handle.clone(),
        reason: reason.into(),
    };

    let denied = handler
        .locker
        .suspend(request("handler tries"))
        .await
        .expect_err("handlers cannot suspend");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let missing = manager
        .locker
        .suspend(request(" "))
        .await
        .expect_err("a reason is required");
    assert_eq!(missing.code(), Code::InvalidArgument);

    let suspended = manager
        .locker
        .suspend(request("本人からの利用停止請求"))
        .await
        .expect("suspend")
        .into_inner();
    assert_eq!(suspended.status, pb::RecordStatus::Suspended as i32);
    let s = suspended.suspension.expect("suspension");
    assert_eq!(
        (s.reason.as_str(), s.suspended_by.as_str()),
        ("本人からの利用停止請求", "dev-manager")
    );
    let again = manager
        .locker
        .suspend(request("twice"))
        .await
        .expect_err("already suspended");
    assert_eq!(again.code(), Code::FailedPrecondition);

    let refused = handler
        .locker
        .unseal(pb::UnsealRequest {
            handle: handle.clone(),
            purpose: W.into(),
        })
        .await
        .expect_err("suspended");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("suspended"),
        "{}",
        refused.message()
    );
    assert!(!refused.message().contains(&number));

    // A rotation still moves the suspended record to the new key.
    let mut admin = daemon.dev_client("dev-admin").await;
    admin
        .admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "dev".into(),
        })
        .await
        .expect("rotate");
    wait_for_rewrap(&mut admin, "dev", 1).await;

    let resumed = manager
        .locker
        .resume(request("請求の取下げ"))
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(resumed.status, pb::RecordStatus::Active as i32);
    assert_eq!(resumed.key_version, 2);
    let back = handler
        .locker
        .unseal(pb::UnsealRequest {
            handle: handle.clone(),
            purpose: W.into(),
        })
        .await
        .expect("unseal after resume")
        .into_inner()
        .number;
    assert_eq!(back, number);

    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    let has = |action: &str, outcome: &str| {
        entries
            .iter()
            .any(|e| e.action == action && e.outcome == outcome && e.handle == handle)
    };
    assert!(has("SUSPEND", "ALLOWED") && has("RESUME", "ALLOWED"));
    // The handler's attempt is refused on its role, before the request is read: no handle.
    assert!(
        entries.iter().any(|e| e.action == "SUSPEND"
            && e.outcome == "DENIED"
            && e.operator_id == "dev-handler")
    );
    assert!(has("UNSEAL", "FAILED") && has("UNSEAL", "ALLOWED"));
}
