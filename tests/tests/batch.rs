//! Batch sealing and unsealing through the CLI: results in input order, failures per item
//! without stopping the batch, and one audit entry per item.

use std::collections::HashMap;

use vault_tests::Daemon;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::export_audit;

fn cli(daemon: &Daemon, token: &str, args: &[&str]) -> (bool, String, String) {
    vault_tests::cli::vault_cli(daemon, token, args, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_seal_and_unseal_keep_order_and_report_failures_per_item() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut rows = vec!["subject_ref,number".to_owned()];
    let mut expected: Vec<Option<String>> = Vec::new();
    for i in 0..150u64 {
        match i {
            40 => {
                rows.push("E40,123456789019".into()); // check digit wrong
                expected.push(None);
            }
            90 => {
                rows.push(format!("{},{}", valid_number(7), valid_number(90))); // number as subject ref
                expected.push(None);
            }
            _ => {
                let number = valid_number(5000 + i);
                rows.push(format!("E{i},{number}"));
                expected.push(Some(number));
            }
        }
    }
    let csv = dir.path().join("migration.csv");
    std::fs::write(&csv, rows.join("\n")).expect("csv");
    let (ok, stdout, stderr) = cli(
        &daemon,
        "dev-handler",
        &[
            "seal",
            "--batch",
            csv.to_str().expect("utf8"),
            "--tenant",
            "dev",
            "--kind",
            "staff",
            "--purpose",
            "STAFF_WITHHOLDING",
        ],
    );
    assert!(!ok, "a batch with failed items exits non-zero");
    assert!(stderr.contains("2 items of the batch failed"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 150);
    let mut handles = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.splitn(4, ',').collect();
        match &expected[i] {
            Some(_) => {
                assert_eq!(fields[0], format!("E{i}"), "line {i} out of order: {line}");
                assert!(fields[1].starts_with("mnh_"), "{line}");
                handles.push(fields[1].to_owned());
            }
            None => {
                assert_eq!(
                    fields[0], "",
                    "a refused row's subject is not echoed: {line}"
                );
                assert!(fields[3].starts_with("INVALID_ARGUMENT"), "{line}");
                assert!(
                    !line.contains(&valid_number(7)) && !line.contains("123456789019"),
                    "a number in the output: {line}"
                );
                handles.push("mnh_00000000000000000000000000000000".to_owned()); // unknown handle
            }
        }
    }
    assert!(
        !stdout.contains(&valid_number(5001)),
        "seal output never contains numbers"
    );

    let list = dir.path().join("handles.txt");
    std::fs::write(&list, handles.join("\n")).expect("handles");
    let (ok, stdout, _) = cli(
        &daemon,
        "dev-handler",
        &[
            "unseal",
            "--batch",
            list.to_str().expect("utf8"),
            "--purpose",
            "STAFF_WITHHOLDING",
        ],
    );
    assert!(!ok);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 150);
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.splitn(3, ',').collect();
        assert_eq!(fields[0], handles[i], "line {i} out of order");
        match &expected[i] {
            Some(number) => assert_eq!(fields[1], number, "line {i}"),
            None => assert!(fields[2].starts_with("NOT_FOUND"), "{line}"),
        }
    }

    // One audit entry per item, each with the outcome of its item.
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    let mut by_action: HashMap<(&str, &str), usize> = HashMap::new();
    for e in entries.iter().filter(|e| e.request_id.contains('.')) {
        *by_action
            .entry((e.action.as_str(), e.outcome.as_str()))
            .or_default() += 1;
    }
    assert_eq!(by_action.get(&("SEAL", "ALLOWED")), Some(&148));
    assert_eq!(by_action.get(&("SEAL", "FAILED")), Some(&2));
    assert_eq!(by_action.get(&("UNSEAL", "ALLOWED")), Some(&148));
    assert_eq!(by_action.get(&("UNSEAL", "FAILED")), Some(&2));
}

/// A batch stream authenticates once and re-checks its token every second: a token revoked
/// mid-batch stops the batch (each later item refused and audited), and nothing is released
/// after the re-check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_mid_batch_stops_the_batch() {
    use futures::StreamExt;
    use secrecy::ExposeSecret;
    use vault_client::pb;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut admin = daemon.dev_client("dev-admin").await;
    let mut approver = daemon.dev_client("dev-admin2").await;
    let token = vault_tests::rpc::operator_token(
        &mut admin,
        &mut approver,
        "dev",
        "batcher",
        pb::Role::Handler,
    )
    .await;
    let token_id = token
        .expose_secret()
        .split('_')
        .nth(1)
        .expect("token id")
        .to_owned();
    let mut handler = daemon.client(Some(token)).await;
    let records = vault_tests::rpc::seal_many(&mut handler, "dev", 3, 880).await;

    let (send, requests) = tokio::sync::mpsc::unbounded_channel::<pb::UnsealRequest>();
    let item = |i: usize| pb::UnsealRequest {
        handle: records[i % records.len()].0.clone(),
        purpose: "STAFF_WITHHOLDING".into(),
    };
    send.send(item(0)).expect("send");
    let mut results = handler
        .locker
        .unseal_batch(tokio_stream::wrappers::UnboundedReceiverStream::new(
            requests,
        ))
        .await
        .expect("open batch")
        .into_inner();
    let first = results.next().await.expect("result").expect("item");
    assert!(first.error.is_none(), "{first:?}");
    assert_eq!(first.number, records[0].1);

    admin
        .admin
        .revoke_token(pb::RevokeTokenRequest { token_id })
        .await
        .expect("revoke");
    tokio::time::sleep(
        vault_daemon::service::SESSION_RECHECK + std::time::Duration::from_millis(300),
    )
    .await;
    for i in 1..4 {
        send.send(item(i)).expect("send");
        let result = results.next().await.expect("result").expect("item");
        let error = result.error.expect("refused after revocation");
        assert_eq!(error.code, "UNAUTHENTICATED", "{}", error.message);
        assert!(result.number.is_empty());
    }
    drop(send);
    assert!(results.next().await.is_none());

    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    let unseals: Vec<_> = entries
        .iter()
        .filter(|e| {
            e.action == "UNSEAL" && e.operator_id == "batcher" && e.request_id.contains('.')
        })
        .map(|e| e.outcome.as_str())
        .collect();
    // The first refusal has its own entry; the other two, refused for the same reason from
    // the same address within the window, are counted into one summary entry, written at the
    // latest when the daemon stops.
    assert_eq!(unseals, ["ALLOWED", "DENIED"]);
    drop((auditor, admin, approver));
    assert!(daemon.stop().success());
    daemon.start_in_place();
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    let summary = entries
        .iter()
        .find(|e| e.action == "REFUSAL_SUMMARY" && e.operator_id == "batcher")
        .expect("summary of the refused items");
    assert!(
        summary.reason.starts_with("2 further calls refused") && summary.reason.contains("revoked"),
        "{}",
        summary.reason
    );
}
