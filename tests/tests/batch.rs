//! Batch sealing and unsealing through the CLI: results in input order, failures per item
//! without stopping the batch, and one audit entry per item.

use std::collections::HashMap;
use std::process::Command;

use vault_tests::numbers::valid_number;
use vault_tests::rpc::export_audit;
use vault_tests::{Daemon, binary_path};

fn cli(daemon: &Daemon, token: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary_path("vault-client"))
        .arg("--endpoint")
        .arg(daemon.endpoint())
        .arg("--token-file")
        .arg(
            daemon
                .data_dir
                .join("tokens")
                .join(format!("{token}.token")),
        )
        .args(args)
        .output()
        .expect("run vault-client");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
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
