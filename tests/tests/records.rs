//! Seal → unseal → lookup round trips, de-duplication, input validation and persistence across
//! a restart, against a real daemon on a loopback port.

use tonic::Code;
use vault_client::pb;
use vault_tests::Daemon;
use vault_tests::numbers::{DESIGN_VALID, valid_number};
use vault_tests::rpc::{approve, seal_request};

const WITHHOLDING: &str = "STAFF_WITHHOLDING";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_unseal_lookup_and_dedupe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;

    let sealed = handler
        .locker
        .seal(seal_request("dev", "E001", "123456789018", &[WITHHOLDING]))
        .await
        .expect("seal")
        .into_inner();
    assert!(sealed.handle.starts_with("mnh_"));
    assert!(!sealed.existing);

    let number = handler
        .locker
        .unseal(pb::UnsealRequest {
            handle: sealed.handle.clone(),
            purpose: WITHHOLDING.into(),
        })
        .await
        .expect("unseal")
        .into_inner()
        .number;
    assert_eq!(number, "123456789018");

    let found = handler
        .locker
        .lookup(pb::LookupRequest {
            tenant: "dev".into(),
            number: "1234 5678 9018".into(),
        })
        .await
        .expect("lookup")
        .into_inner();
    assert_eq!(found.handle, sealed.handle);

    // The same number again (in another form): the existing handle, not a second record.
    let again = handler
        .locker
        .seal(seal_request(
            "dev",
            "E001-bis",
            "１２３４-５６７８-９０１８",
            &[WITHHOLDING],
        ))
        .await
        .expect("seal again")
        .into_inner();
    assert_eq!(again.handle, sealed.handle);
    assert!(again.existing);

    // A number the tenant does not hold.
    let missing = handler
        .locker
        .lookup(pb::LookupRequest {
            tenant: "dev".into(),
            number: "983205673214".into(),
        })
        .await
        .expect_err("not held");
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_digit_forms_accepted_and_bad_numbers_rejected_without_echo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;

    let mut accepted = Vec::new();
    for (i, number) in DESIGN_VALID.iter().enumerate() {
        let full_width: String = number
            .chars()
            .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).expect("digit"))
            .collect();
        let hyphenated = format!("{}-{}-{}", &number[..4], &number[4..8], &number[8..]);
        for form in [number.to_string(), full_width, hyphenated] {
            let sealed = handler
                .locker
                .seal(seal_request("dev", &format!("S{i}"), &form, &[WITHHOLDING]))
                .await
                .unwrap_or_else(|e| panic!("form {form:?} refused: {e}"))
                .into_inner();
            accepted.push((number, sealed.handle));
        }
    }
    // Every form of one number lands on one record.
    for chunk in accepted.chunks(3) {
        assert!(chunk.iter().all(|(_, h)| *h == chunk[0].1), "{chunk:?}");
    }

    for bad in [
        "123456789019",
        "12345678901",
        "1234567890123",
        "12345678901a",
        "abcdefghijkl",
    ] {
        let status = handler
            .locker
            .seal(seal_request("dev", "BAD", bad, &[WITHHOLDING]))
            .await
            .expect_err(bad);
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}: {status:?}");
        let digits: String = bad.chars().filter(char::is_ascii_digit).collect();
        assert!(
            digits.is_empty() || !status.message().contains(&digits[..digits.len().min(8)]),
            "{bad}: message echoes the input: {}",
            status.message()
        );
        let lookup = handler
            .locker
            .lookup(pb::LookupRequest {
                tenant: "dev".into(),
                number: bad.into(),
            })
            .await
            .expect_err(bad);
        assert_eq!(lookup.code(), Code::InvalidArgument);
    }

    // Other bad inputs: unknown purpose, malformed handle, a number smuggled into subject_ref.
    let status = handler
        .locker
        .seal(seal_request("dev", "E9", &valid_number(1), &["MARKETING"]))
        .await
        .expect_err("unknown purpose");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("unknown purpose code MARKETING"));
    let status = handler
        .locker
        .seal(seal_request(
            "dev",
            "emp 983205673214",
            &valid_number(2),
            &[WITHHOLDING],
        ))
        .await
        .expect_err("number in subject_ref");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(!status.message().contains("98320567"));
    // Nor disguised: digits around it, other separators, invisible characters between groups.
    for smuggled in [
        "E001-983205673214",
        "983205673214 1",
        "9832/0567/3214",
        "9832\u{200B}0567\u{200B}3214",
    ] {
        let status = handler
            .locker
            .seal(seal_request(
                "dev",
                smuggled,
                &valid_number(2),
                &[WITHHOLDING],
            ))
            .await
            .expect_err(smuggled);
        assert_eq!(status.code(), Code::InvalidArgument, "{smuggled:?}");
        assert!(!status.message().contains("0567"), "{smuggled:?}");
    }
    // No existence oracle: a tenant that does not exist answers like one without a grant.
    let unknown = handler
        .locker
        .lookup(pb::LookupRequest {
            tenant: "no-such-tenant".into(),
            number: valid_number(2),
        })
        .await
        .expect_err("unknown tenant");
    assert_eq!(unknown.code(), Code::PermissionDenied, "{unknown:?}");
    assert!(
        unknown
            .message()
            .contains("has no grant on tenant no-such-tenant"),
        "{unknown:?}"
    );
    let status = handler
        .locker
        .unseal(pb::UnsealRequest {
            handle: "mnh_not-a-handle".into(),
            purpose: WITHHOLDING.into(),
        })
        .await
        .expect_err("bad handle");
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut request = seal_request("dev", "E1", &valid_number(3), &[WITHHOLDING]);
    request.subject_ref = "x".repeat(200 * 1024);
    let status = handler.locker.seal(request).await.expect_err("oversized");
    // The code gRPC clients expect for a message over the limit (tonic itself says OUT_OF_RANGE).
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // Nothing was sealed.
    let status = handler
        .locker
        .lookup(pb::LookupRequest {
            tenant: "dev".into(),
            number: valid_number(3),
        })
        .await
        .expect_err("not sealed");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_records_operators_tokens_and_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut admin = daemon.dev_client("dev-admin").await;
    let mut approver = daemon.dev_client("dev-admin2").await;
    let created = admin
        .admin
        .create_operator(pb::CreateOperatorRequest {
            operator_id: "payroll".into(),
            role: pb::Role::Service as i32,
            display_name: "payroll system".into(),
        })
        .await
        .expect("create operator")
        .into_inner();
    approve(&mut approver, created.pending_request).await;
    let granted = admin
        .admin
        .grant_purposes(pb::GrantRequest {
            operator_id: "payroll".into(),
            tenant: "dev".into(),
            purposes: vec![WITHHOLDING.into()],
        })
        .await
        .expect("grant")
        .into_inner();
    approve(&mut approver, granted.pending_request).await;
    let (_, token) = vault_tests::rpc::split_token(
        &mut admin,
        &mut approver,
        pb::IssueTokenRequest {
            operator_id: "payroll".into(),
            ttl_seconds: 3600,
            cert_fingerprint: String::new(),
        },
    )
    .await;
    let mut payroll = daemon.client(Some(token.clone())).await;
    let handles: Vec<String> = {
        let mut handles = Vec::new();
        for i in 0..5 {
            handles.push(
                payroll
                    .locker
                    .seal(seal_request(
                        "dev",
                        &format!("P{i}"),
                        &valid_number(100 + i),
                        &[WITHHOLDING],
                    ))
                    .await
                    .expect("seal")
                    .into_inner()
                    .handle,
            );
        }
        handles
    };
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let before = auditor
        .admin
        .audit_verify(pb::AuditVerifyRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(before.ok);

    let daemon = daemon.restart();
    let mut payroll = daemon.client(Some(token)).await;
    for (i, handle) in handles.iter().enumerate() {
        let number = payroll
            .locker
            .unseal(pb::UnsealRequest {
                handle: handle.clone(),
                purpose: WITHHOLDING.into(),
            })
            .await
            .expect("unseal after restart")
            .into_inner()
            .number;
        assert_eq!(number, valid_number(100 + i as u64));
    }
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let after = auditor
        .admin
        .audit_verify(pb::AuditVerifyRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(after.ok, "{}", after.message);
    // The chain continued from where it was: more entries, and the old head is still inside.
    assert!(after.entries_checked > before.entries_checked);
    let entries = vault_tests::rpc::export_audit(&mut auditor).await;
    assert!(entries.iter().any(|e| e.hash == before.head_hash));
    // The dev tokens written at the first start are still valid (not re-issued).
    assert_eq!(
        daemon
            .banner
            .iter()
            .filter(|l| l.starts_with("dev token"))
            .count(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_entries_name_the_token_that_authenticated_the_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let handle = handler
        .locker
        .seal(vault_tests::rpc::with_id(
            seal_request("dev", "T1", &valid_number(61), &[WITHHOLDING]),
            "tid-seal",
        ))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    handler
        .locker
        .unseal(vault_tests::rpc::with_id(
            pb::UnsealRequest {
                handle,
                purpose: WITHHOLDING.into(),
            },
            "tid-unseal",
        ))
        .await
        .expect("unseal");
    // The token's public id: `mnt_<id>_<secret>`.
    let text = std::fs::read_to_string(daemon.data_dir.join("tokens/dev-handler.token"))
        .expect("token file");
    let id = text.trim().split('_').nth(1).expect("token id").to_owned();
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = vault_tests::rpc::export_audit(&mut auditor).await;
    for request in ["tid-seal", "tid-unseal"] {
        let entry = entries
            .iter()
            .find(|e| e.request_id == request)
            .expect("audited");
        assert_eq!(entry.token_id, id, "{request}");
        assert!(
            !format!("{entry:?}").contains(text.trim()),
            "the secret leaked"
        );
    }
}
