//! No leaks: a session with the daemon at TRACE log level — seals, unseals, lookups, bad
//! inputs, token issue — then the daemon's logs, the audit export and the CLI's stderr are
//! searched for every sealed number's digits and every token. None may appear.

use secrecy::ExposeSecret;
use vault_client::pb;
use vault_tests::cli::vault_cli;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{export_audit, seal_request};
use vault_tests::{Daemon, DaemonOptions};

const W: &str = "STAFF_WITHHOLDING";

/// Runs the CLI with `stdin`, returning (success, stdout, stderr).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_and_tokens_never_reach_logs_audit_or_cli_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(
        &dir.path().join("data"),
        DaemonOptions {
            log: Some("trace".into()),
            ..DaemonOptions::default()
        },
    );
    let mut secrets: Vec<String> = Vec::new();
    for operator in ["dev-admin", "dev-manager", "dev-handler", "dev-auditor"] {
        secrets.push(daemon.dev_token(operator).expose_secret().to_owned());
    }
    // With a PKCS#11 backend, its PIN must not leak either.
    if let Ok(pin) = std::fs::read_to_string(daemon.data_dir.join("softhsm").join("user.pin")) {
        secrets.push(pin.trim().to_owned());
    }
    let mut numbers: Vec<String> = (0..6).map(|i| valid_number(300 + i)).collect();
    numbers.push("123456789019".into()); // a rejected number must not leak either

    // Through the API.
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut handles = Vec::new();
    for (i, number) in numbers[..3].iter().enumerate() {
        let handle = handler
            .locker
            .seal(seal_request("dev", &format!("L{i}"), number, &[W]))
            .await
            .expect("seal")
            .into_inner()
            .handle;
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
        handler
            .locker
            .lookup(pb::LookupRequest {
                tenant: "dev".into(),
                number: number.clone(),
            })
            .await
            .expect("lookup");
        handles.push(handle);
    }
    let status = handler
        .locker
        .seal(seal_request("dev", "BAD", &numbers[6], &[W]))
        .await
        .expect_err("bad check digit");
    assert!(!status.message().contains(&numbers[6]));
    let mut admin = daemon.dev_client("dev-admin").await;
    let mut approver = daemon.dev_client("dev-admin2").await;
    let (issued, token) = vault_tests::rpc::split_token(
        &mut admin,
        &mut approver,
        pb::IssueTokenRequest {
            operator_id: "dev-handler".into(),
            ttl_seconds: 60,
            cert_fingerprint: String::new(),
        },
    )
    .await;
    secrets.push(secrecy::ExposeSecret::expose_secret(&token).to_owned());
    // Neither share leaks either (their secret halves are what matter).
    secrets.push(
        issued
            .token_share
            .rsplit('_')
            .next()
            .expect("share secret")
            .to_owned(),
    );
    // A wrong token that looks right: refused, and not logged either.
    let forged = format!("mnt_{}_{}", issued.token_id, "5a".repeat(32));
    let mut forged_client = daemon.client(Some(forged.clone().into())).await;
    forged_client
        .admin
        .list_purposes(pb::ListPurposesRequest {})
        .await
        .expect_err("forged");
    secrets.push(forged);

    // Through the CLI: successes and failures, numbers on stdin in several forms.
    let mut cli_stderr = String::new();
    for (i, number) in numbers[3..6].iter().enumerate() {
        let hyphenated = format!("{}-{}-{}", &number[..4], &number[4..8], &number[8..]);
        let (ok, stdout, stderr) = vault_cli(
            &daemon,
            "dev-handler",
            &[
                "seal",
                "--tenant",
                "dev",
                "--subject",
                &format!("C{i}"),
                "--kind",
                "staff",
                "--purpose",
                W,
            ],
            &hyphenated,
        );
        assert!(ok, "{stderr}");
        let handle = stdout.trim().to_owned();
        assert!(handle.starts_with("mnh_"));
        cli_stderr += &stderr;
        let (ok, stdout, stderr) = vault_cli(
            &daemon,
            "dev-handler",
            &["unseal", &handle, "--purpose", W],
            "",
        );
        assert!(ok, "{stderr}");
        assert_eq!(stdout.trim(), number);
        cli_stderr += &stderr;
        // Denied: wrong purpose, admin role, unknown tenant, malformed number.
        for (token, args, input) in [
            (
                "dev-handler",
                vec!["unseal", handle.as_str(), "--purpose", "PAYEE_FEES"],
                String::new(),
            ),
            (
                "dev-admin",
                vec!["unseal", handle.as_str(), "--purpose", W],
                String::new(),
            ),
            (
                "dev-handler",
                vec!["lookup", "--tenant", "nope"],
                number.clone(),
            ),
            (
                "dev-handler",
                vec![
                    "seal",
                    "--tenant",
                    "dev",
                    "--subject",
                    "X",
                    "--kind",
                    "staff",
                    "--purpose",
                    W,
                ],
                format!("{number}9"),
            ),
            (
                "dev-handler",
                vec![
                    "seal",
                    "--tenant",
                    "dev",
                    "--subject",
                    number.as_str(),
                    "--kind",
                    "staff",
                    "--purpose",
                    W,
                ],
                valid_number(999),
            ),
        ] {
            let (ok, _, stderr) = vault_cli(&daemon, token, &args, &input);
            assert!(!ok, "{args:?} should fail");
            assert!(stderr.starts_with("error: "), "{stderr}");
            cli_stderr += &stderr;
        }
    }
    numbers.push(valid_number(999));

    // The life cycle: a correction carries a new number on the wire; retirement, disposal,
    // certificates and reports handle records whose numbers must not surface anywhere.
    let corrected = valid_number(1300);
    let mut manager = daemon.dev_client("dev-manager").await;
    let correction = handler
        .locker
        .request_correction(pb::CorrectionRequest {
            handle: handles[0].clone(),
            number: corrected.clone(),
            reason: "誤記".into(),
            asked_by: "本人".into(),
        })
        .await
        .expect("request correction")
        .into_inner();
    manager
        .locker
        .approve_correction(pb::CorrectionDecision {
            id: correction.id,
            note: String::new(),
        })
        .await
        .expect("approve");
    let taken = handler
        .locker
        .request_correction(pb::CorrectionRequest {
            handle: handles[1].clone(),
            number: numbers[2].clone(),
            reason: "誤記".into(),
            asked_by: "本人".into(),
        })
        .await
        .expect_err("number of another record");
    assert!(!taken.message().contains(&numbers[2]));
    numbers.push(corrected);
    // A departure years back: dated by a manager (handlers may not backdate).
    manager
        .locker
        .retire(pb::RetireRequest {
            handle: handles[1].clone(),
            left_on: "2018-01-31".into(),
        })
        .await
        .expect("retire");
    admin
        .admin
        .run_disposal(pb::RunDisposalRequest {})
        .await
        .expect("disposal");
    let mut lifecycle_output = String::new();
    for (token, args) in [
        (
            "dev-manager",
            vec!["certificate", "show", handles[1].as_str()],
        ),
        ("dev-auditor", vec!["ledger", "--format", "csv"]),
        (
            "dev-auditor",
            vec![
                "report",
                "usage",
                "--from",
                "2020-01-01",
                "--to",
                "2099-12-31",
            ],
        ),
        (
            "dev-auditor",
            vec![
                "report",
                "incident",
                "--operator",
                "dev-handler",
                "--from",
                "2020-01-01",
                "--to",
                "2099-12-31",
            ],
        ),
        ("dev-auditor", vec!["correct", "list"]),
    ] {
        let (ok, stdout, stderr) = vault_cli(&daemon, token, &args, "");
        assert!(ok, "{args:?}: {stderr}");
        lifecycle_output += &stdout;
        lifecycle_output += &stderr;
    }

    let mut auditor = daemon.dev_client("dev-auditor").await;
    let audit: String = export_audit(&mut auditor)
        .await
        .iter()
        .map(|e| format!("{e:?}\n"))
        .collect();
    drop((handler, admin, auditor, manager, forged_client));
    let mut daemon = daemon;
    assert!(daemon.stop().success());
    let log = daemon.log();
    assert!(log.contains("TRACE"), "the session really ran at TRACE");

    for (name, text) in [
        ("daemon log", &log),
        ("audit export", &audit),
        ("CLI stderr", &cli_stderr),
        ("lifecycle CLI output", &lifecycle_output),
    ] {
        assert!(!text.is_empty(), "{name} is empty: nothing was checked");
        for number in &numbers {
            assert!(!text.contains(number.as_str()), "{name} contains a number");
            assert!(
                !text.contains(&number[..8]),
                "{name} contains a number's first 8 digits"
            );
        }
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{name} contains a token");
            let secret_part = secret.rsplit('_').next().unwrap_or_default();
            assert!(
                !text.contains(secret_part),
                "{name} contains a token's secret part"
            );
        }
    }
}
