//! Key destruction: refused while any record uses the version (or it is active); needs a second
//! admin (the requester approving is refused); can be cancelled in the waiting period; after
//! destruction, a copy of the store taken before the rewrap cannot unseal its records any more —
//! crypto-shredding reaches backups.

use std::time::{Duration, Instant};

use tonic::Code;
use vault_client::{Client, pb};
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{copy_dir, export_audit, operator_token, seal_request, wait_for_rewrap};
use vault_tests::tls_daemon::{ClientCert, TlsDaemon};

const W: &str = "STAFF_WITHHOLDING";

async fn versions(client: &mut Client) -> Vec<pb::KeyVersion> {
    client
        .admin
        .key_status(pb::KeyStatusRequest {
            tenant: "t1".into(),
        })
        .await
        .expect("status")
        .into_inner()
        .tenants
        .remove(0)
        .versions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destruction_needs_two_admins_waits_and_shreds_backups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tls = TlsDaemon::start(
        dir.path(),
        // A slow rewrap (5 batches, 0.7 s apart) keeps version 1 referenced for seconds.
        "[keys]\ndestroy_wait_secs = 2\nallow_short_destroy_wait = true\nrewrap_batch = 2\nrewrap_pause_ms = 700\n",
    );
    let admin1_token = tls.admin_token();
    let mut admin1 = tls
        .client(Some(admin1_token.clone()), ClientCert::None)
        .await;
    admin1
        .admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "t1".into(),
            name: String::new(),
        })
        .await
        .expect("tenant");
    let admin2_token = tls.approver_token();
    let mut approver = tls
        .client(Some(admin2_token.clone()), ClientCert::None)
        .await;
    let handler_token =
        operator_token(&mut admin1, &mut approver, "t1", "h", pb::Role::Handler).await;
    let mut handler = tls
        .client(Some(handler_token.clone()), ClientCert::None)
        .await;
    let mut records = Vec::new();
    for i in 0..10 {
        let number = valid_number(4000 + i);
        let handle = handler
            .locker
            .seal(seal_request("t1", &format!("D{i}"), &number, &[W]))
            .await
            .expect("seal")
            .into_inner()
            .handle;
        records.push((handle, number));
    }

    // A backup of the store, taken before the rotation.
    drop((admin1, approver, handler));
    assert!(tls.daemon.stop().success());
    let backup_store = dir.path().join("backup");
    vault_tests::store_edit::save_store(&tls.daemon.data_dir, &backup_store);
    tls.daemon.start_in_place();
    let mut admin1 = tls.client(Some(admin1_token), ClientCert::None).await;
    let mut admin2 = tls.client(Some(admin2_token), ClientCert::None).await;

    let request = |tenant: &str, version: u32| pb::RequestKeyDestructionRequest {
        tenant: tenant.into(),
        version,
    };
    let refused = admin1
        .admin
        .request_key_destruction(request("t1", 1))
        .await
        .expect_err("active");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    admin1
        .admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "t1".into(),
        })
        .await
        .expect("rotate");
    // While records still use version 1, it cannot be destroyed.
    let refused = admin1
        .admin
        .request_key_destruction(request("t1", 1))
        .await
        .expect_err("referenced");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("still protects"),
        "{}",
        refused.message()
    );
    wait_for_rewrap(&mut admin1, "t1", 1).await;
    let refused = admin1
        .admin
        .request_key_destruction(request("t1", 2))
        .await
        .expect_err("active version");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // The requester cannot approve; another admin can cancel.
    let first = admin1
        .admin
        .request_key_destruction(request("t1", 1))
        .await
        .expect("request")
        .into_inner();
    assert_eq!(first.state, "pending");
    let same = admin1
        .admin
        .approve_key_destruction(pb::KeyDestructionIdRequest {
            id: first.id.clone(),
        })
        .await
        .expect_err("same admin");
    assert_eq!(same.code(), Code::PermissionDenied);
    assert!(
        same.message().contains("another admin"),
        "{}",
        same.message()
    );
    let cancelled = admin2
        .admin
        .cancel_key_destruction(pb::KeyDestructionIdRequest {
            id: first.id.clone(),
        })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(
        (cancelled.state.as_str(), cancelled.cancelled_by.as_str()),
        ("cancelled", "admin2")
    );
    let late = admin2
        .admin
        .approve_key_destruction(pb::KeyDestructionIdRequest {
            id: first.id.clone(),
        })
        .await
        .expect_err("cancelled");
    assert_eq!(late.code(), Code::FailedPrecondition);

    // Approved by a second admin: scheduled, then destroyed after the waiting period.
    let second = admin1
        .admin
        .request_key_destruction(request("t1", 1))
        .await
        .expect("request")
        .into_inner();
    let approved = admin2
        .admin
        .approve_key_destruction(pb::KeyDestructionIdRequest {
            id: second.id.clone(),
        })
        .await
        .expect("approve")
        .into_inner();
    assert_eq!(
        (approved.state.as_str(), approved.approved_by.as_str()),
        ("approved", "admin2")
    );
    assert_eq!(
        versions(&mut admin1)
            .await
            .iter()
            .find(|v| v.version == 1)
            .map(|v| v.state.clone())
            .as_deref(),
        Some("scheduled-for-destruction")
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while versions(&mut admin1)
        .await
        .iter()
        .find(|v| v.version == 1)
        .map(|v| v.state.clone())
        .as_deref()
        != Some("destroyed")
    {
        assert!(
            Instant::now() < deadline,
            "the key was not destroyed after the waiting period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = admin1
        .admin
        .list_key_destructions(pb::ListKeyDestructionsRequest {})
        .await
        .expect("list")
        .into_inner()
        .requests;
    assert!(
        list.iter()
            .any(|r| r.id == first.id && r.state == "cancelled")
    );
    assert!(list.iter().any(|r| r.id == second.id && r.state == "done"));

    // The live records are on version 2 and open.
    let mut handler = tls
        .client(Some(handler_token.clone()), ClientCert::None)
        .await;
    for (handle, number) in &records {
        let back = handler
            .locker
            .unseal(pb::UnsealRequest {
                handle: handle.clone(),
                purpose: W.into(),
            })
            .await
            .expect("unseal")
            .into_inner()
            .number;
        assert_eq!(&back, number);
    }
    let audit = export_audit(&mut admin1).await;
    for action in [
        "KEY_DESTROY_REQUEST",
        "KEY_DESTROY_APPROVE",
        "KEY_DESTROY_CANCEL",
        "KEY_DESTROY",
    ] {
        assert!(
            audit
                .iter()
                .any(|e| e.action == action && e.outcome == "ALLOWED"),
            "{action} not audited"
        );
    }
    assert!(
        audit
            .iter()
            .any(|e| e.action == "KEY_DESTROY_APPROVE" && e.outcome == "DENIED")
    );

    // The backup from before the rotation, with today's key backend: nothing opens.
    drop((admin1, admin2, handler));
    assert!(tls.daemon.stop().success());
    let restored = dir.path().join("restored");
    copy_dir(&tls.daemon.data_dir, &restored);
    vault_tests::store_edit::put_back_store(&backup_store, &restored);
    // The anchor refuses an older store until it is accepted on purpose (docs/SECURITY.md).
    tls.reanchor_on(&restored);
    let backup_daemon = tls.start_on(&restored);
    let mut config = vault_client::ClientConfig::new(
        format!("https://{}", backup_daemon.addr),
        Some(handler_token),
    );
    config.ca = Some(tls.pki.ca.clone());
    let mut handler = Client::connect(&config)
        .await
        .expect("connect to the restored backup");
    for (handle, number) in &records {
        let status = handler
            .locker
            .unseal(pb::UnsealRequest {
                handle: handle.clone(),
                purpose: W.into(),
            })
            .await
            .expect_err("a destroyed key must not open a backup");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(
            status.message().contains("destroyed"),
            "{}",
            status.message()
        );
        assert!(!status.message().contains(number.as_str()));
    }
}
