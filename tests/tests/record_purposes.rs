//! Purposes change over a record's life: an employee first registered for withholding later
//! needs 健康保険. Adding a purpose re-seals the number with it bound, needs the grant, is
//! audited; sealing the held number again with other purposes says what differs instead of
//! silently keeping the old record.

use tonic::Code;
use tonic_types::StatusExt;
use vault_client::{Client, pb};
use vault_tests::Daemon;
use vault_tests::cli::vault_cli;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{export_audit, operator_token, seal_request, unseal};

const W: &str = "STAFF_WITHHOLDING";
const H: &str = "STAFF_HEALTH_PENSION";
const P: &str = "STAFF_EMPLOYMENT_INSURANCE";

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

async fn add(
    client: &mut Client,
    handle: &str,
    purposes: &[&str],
) -> Result<pb::RecordInfo, tonic::Status> {
    client
        .locker
        .add_purposes(pb::AddPurposesRequest {
            handle: handle.into(),
            purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn purposes_of(client: &mut Client, handle: &str) -> Vec<String> {
    client
        .locker
        .describe(pb::DescribeRequest {
            handle: handle.into(),
        })
        .await
        .expect("describe")
        .into_inner()
        .purposes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purposes_are_added_with_a_grant_and_a_reseal_says_what_differs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut manager = daemon.dev_client("dev-manager").await;
    let number = valid_number(41);

    let first = handler
        .locker
        .seal(seal_request("dev", "E-41", &number, &[W]))
        .await
        .expect("seal")
        .into_inner();
    assert!(!first.existing && first.purposes_not_on_record.is_empty());
    let handle = first.handle;

    // The same number with more purposes and another subject: the existing record, unchanged,
    // and the answer says what it lacks.
    let again = handler
        .locker
        .seal(seal_request("dev", "E-41-new", &number, &[W, H]))
        .await
        .expect("seal again")
        .into_inner();
    assert_eq!(again.handle, handle);
    assert!(again.existing);
    assert_eq!(again.purposes_not_on_record, vec![H.to_owned()]);
    assert!(again.subject_ref_differs);
    assert!(!again.subject_kind_differs);
    assert_eq!(purposes_of(&mut handler, &handle).await, vec![W.to_owned()]);
    let refused = unseal(&mut handler, &handle, H)
        .await
        .expect_err("not on record");
    assert_eq!(reason(&refused), "PURPOSE_NOT_ON_RECORD");
    // Asking for exactly what is held reports no difference.
    let same = handler
        .locker
        .seal(seal_request("dev", "E-41", &number, &[W]))
        .await
        .expect("seal same")
        .into_inner();
    assert!(same.existing && same.purposes_not_on_record.is_empty() && !same.subject_ref_differs);

    // A handler granted only withholding may not add 健康保険, and nothing changes.
    let (mut admin, mut approver) = (
        daemon.dev_client("dev-admin").await,
        daemon.dev_client("dev-admin2").await,
    );
    let narrow_token = operator_token(
        &mut admin,
        &mut approver,
        "dev",
        "narrow",
        pb::Role::Handler,
    )
    .await;
    let mut narrow = daemon.client(Some(narrow_token)).await;
    let denied = add(&mut narrow, &handle, &[H]).await.expect_err("no grant");
    assert_eq!(
        (denied.code(), reason(&denied).as_str()),
        (Code::PermissionDenied, "PURPOSE_NOT_GRANTED")
    );
    // Admins and auditors never add purposes (they never use numbers).
    let by_admin = add(&mut admin, &handle, &[H]).await.expect_err("admin");
    assert_eq!(by_admin.code(), Code::PermissionDenied);
    let unknown = add(&mut handler, &handle, &["MARKETING"])
        .await
        .expect_err("unknown");
    assert_eq!(reason(&unknown), "PURPOSE_UNKNOWN");
    assert_eq!(purposes_of(&mut handler, &handle).await, vec![W.to_owned()]);

    // Granted: the record carries both, and unseal honours the new one and the old one.
    let record = add(&mut handler, &handle, &[H]).await.expect("add");
    assert_eq!(record.purposes, vec![H.to_owned(), W.to_owned()]);
    assert_eq!(
        unseal(&mut handler, &handle, H).await.expect("unseal H"),
        number
    );
    assert_eq!(
        unseal(&mut handler, &handle, W).await.expect("unseal W"),
        number
    );
    // Already there: no error, no change. The narrow handler may still not touch H.
    let record = add(&mut handler, &handle, &[H, W])
        .await
        .expect("add again");
    assert_eq!(record.purposes, vec![H.to_owned(), W.to_owned()]);
    let still = add(&mut narrow, &handle, &[H])
        .await
        .expect_err("still no grant");
    assert_eq!(reason(&still), "PURPOSE_NOT_GRANTED");

    // Through the CLI, as an operator would.
    let (ok, out, err) = vault_cli(
        &daemon,
        "dev-handler",
        &[
            "--output",
            "json",
            "purposes",
            "add",
            &handle,
            "--purpose",
            P,
        ],
        "",
    );
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(out.trim()).expect("json record");
    assert_eq!(
        shown["purposes"].as_array().map(Vec::len),
        Some(3),
        "{shown}"
    );
    assert_eq!(
        unseal(&mut handler, &handle, P).await.expect("unseal P"),
        number
    );
    // And a seal through the CLI with a purpose the record lacks warns on standard error,
    // standard output staying the handle alone.
    let (ok, out, err) = vault_cli(
        &daemon,
        "dev-handler",
        &[
            "seal",
            "--tenant",
            "dev",
            "--subject",
            "E-41",
            "--kind",
            "staff",
            "--purpose",
            "STAFF_WORKERS_COMP",
        ],
        &number,
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), handle);
    assert!(
        err.contains("lacks purposes STAFF_WORKERS_COMP") && !err.contains(&number),
        "{err}"
    );

    // Suspended, the record takes no new purpose until resumed.
    manager
        .locker
        .suspend(pb::SuspendRequest {
            handle: handle.clone(),
            reason: "本人の求め".into(),
        })
        .await
        .expect("suspend");
    let suspended = add(&mut handler, &handle, &["STAFF_WORKERS_COMP"])
        .await
        .expect_err("suspended");
    assert_eq!(
        (suspended.code(), reason(&suspended).as_str()),
        (Code::FailedPrecondition, "RECORD_SUSPENDED")
    );

    // Every attempt is in the audit log, allowed or denied, and none holds the number.
    let entries = export_audit(&mut admin).await;
    let adds: Vec<&pb::AuditEntry> = entries
        .iter()
        .filter(|e| e.action == "PURPOSES_ADD" && e.handle == handle)
        .collect();
    let allowed: Vec<&str> = adds
        .iter()
        .filter(|e| e.outcome == "ALLOWED")
        .map(|e| e.purpose.as_str())
        .collect();
    assert_eq!(
        allowed,
        vec![H, "STAFF_HEALTH_PENSION,STAFF_WITHHOLDING", P]
    );
    // Refused: the narrow handler twice; failed: the unknown purpose and the suspended record
    // (the admin was refused by role before its handle was read, so its entry names none).
    let count = |outcome: &str| adds.iter().filter(|e| e.outcome == outcome).count();
    assert_eq!((count("DENIED"), count("FAILED")), (2, 2), "{adds:#?}");
    assert!(
        entries.iter().any(|e| e.action == "PURPOSES_ADD"
            && e.operator_id == "dev-admin"
            && e.outcome == "DENIED"),
        "the admin's refusal is audited too"
    );
    let seal_notes: Vec<&str> = entries
        .iter()
        .filter(|e| e.action == "SEAL" && e.handle == handle)
        .map(|e| e.reason.as_str())
        .collect();
    assert!(
        seal_notes
            .iter()
            .any(|r| r.contains("purposes not on the record: STAFF_HEALTH_PENSION")),
        "{seal_notes:?}"
    );
    for entry in &entries {
        let text = format!("{entry:?}");
        assert!(!text.contains(&number), "number in audit entry {text}");
    }
}
