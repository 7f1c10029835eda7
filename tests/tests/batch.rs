//! Batch sealing and unsealing through the CLI: results in input order, failures per item
//! without stopping the batch, and one audit entry per item.

use std::collections::HashMap;

use vault_tests::Daemon;
use vault_tests::cli::vault_cli;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::export_audit;

/// Parses CLI CSV output (a header row, then records) into rows of cells.
fn csv_rows(stdout: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(stdout.trim_start_matches('\u{feff}').as_bytes());
    let header = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.expect("csv record").iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
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
    let (ok, stdout, stderr) = vault_cli(
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
        "",
    );
    assert!(!ok, "a batch with failed items exits non-zero");
    assert!(stderr.contains("2 items of the batch failed"), "{stderr}");
    let (header, lines) = csv_rows(&stdout);
    assert_eq!(
        header,
        [
            "row",
            "subject_ref",
            "handle",
            "existing",
            "purposes_not_on_record",
            "error"
        ]
    );
    assert_eq!(lines.len(), 150);
    let mut handles = Vec::new();
    for (i, fields) in lines.iter().enumerate() {
        // The header is line 1 of the file: row i is on line i + 2.
        assert_eq!(fields[0], (i + 2).to_string(), "row {i}: {fields:?}");
        match &expected[i] {
            Some(_) => {
                assert_eq!(
                    fields[1],
                    format!("E{i}"),
                    "line {i} out of order: {fields:?}"
                );
                assert!(fields[2].starts_with("mnh_"), "{fields:?}");
                handles.push(fields[2].clone());
            }
            None => {
                assert!(fields[5].starts_with("INVALID_ARGUMENT"), "{fields:?}");
                let line = fields.join(",");
                assert!(
                    !line.contains(&valid_number(7)) && !line.contains("123456789019"),
                    "a number in the output: {line}"
                );
                handles.push("mnh_00000000000000000000000000000000".to_owned()); // unknown handle
            }
        }
    }
    // A refused row names its subject (to find it), unless the subject may hold a number.
    assert_eq!(lines[40][1], "E40");
    assert!(lines[90][1].starts_with("(withheld"), "{:?}", lines[90]);
    assert!(
        !stdout.contains(&valid_number(5001)),
        "seal output never contains numbers"
    );

    let list = dir.path().join("handles.txt");
    std::fs::write(&list, handles.join("\n")).expect("handles");
    let (ok, stdout, _) = vault_cli(
        &daemon,
        "dev-handler",
        &[
            "unseal",
            "--batch",
            list.to_str().expect("utf8"),
            "--purpose",
            "STAFF_WITHHOLDING",
        ],
        "",
    );
    assert!(!ok);
    let (header, lines) = csv_rows(&stdout);
    assert_eq!(
        header,
        [
            "row",
            "handle",
            "subject_ref",
            "subject_kind",
            "number",
            "error"
        ]
    );
    assert_eq!(lines.len(), 150);
    for (i, fields) in lines.iter().enumerate() {
        assert_eq!(
            fields[0],
            (i + 1).to_string(),
            "no header in the handle list"
        );
        assert_eq!(fields[1], handles[i], "line {i} out of order");
        match &expected[i] {
            Some(number) => assert_eq!(
                fields[2..5],
                [format!("E{i}"), "staff".into(), number.clone()],
                "line {i}: whose number, and the number"
            ),
            None => {
                assert_eq!(fields[2..5], ["", "", ""], "{fields:?}");
                assert!(fields[5].starts_with("NOT_FOUND"), "{fields:?}");
            }
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

/// Files as offices write them: Excel's "CSV UTF-8" with a BOM and a Japanese header in any
/// column order, results back for Excel, and the seal output fed straight to an unseal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn japanese_headers_bom_and_excel_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let numbers: Vec<String> = (0..3).map(|i| valid_number(7100 + i)).collect();
    let csv = dir.path().join("社員.csv");
    std::fs::write(
        &csv,
        format!(
            "\u{feff}個人番号,社員番号\r\n{},社員-001\r\n123456789019,社員-002\r\n{},\"山田, 太郎\"\r\n",
            numbers[0], numbers[2]
        ),
    )
    .expect("csv");
    let (ok, stdout, stderr) = vault_cli(
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
            "--excel",
        ],
        "",
    );
    assert!(!ok, "one row fails: {stderr}");
    assert!(
        stdout.starts_with('\u{feff}'),
        "Excel output starts with a BOM"
    );
    assert!(stdout.contains("\r\n"), "and ends lines with CRLF");
    let (_, rows) = csv_rows(&stdout);
    assert_eq!(
        rows.len(),
        2 + 1,
        "the header was not sealed as a row: {rows:?}"
    );
    assert_eq!(
        (rows[0][0].as_str(), rows[0][1].as_str()),
        ("2", "社員-001"),
        "{stdout}"
    );
    assert!(rows[0][2].starts_with("mnh_"));
    // The failed row: its line in the file and its subject, to be found and fixed.
    assert_eq!(
        (rows[1][0].as_str(), rows[1][1].as_str()),
        ("3", "社員-002")
    );
    assert!(rows[1][5].contains("INVALID_ARGUMENT"), "{:?}", rows[1]);
    assert_eq!(rows[2][1], "山田, 太郎");

    // The seal output (BOM, header, handle column) is a valid unseal list.
    let results = dir.path().join("results.csv");
    std::fs::write(&results, &stdout).expect("results");
    let (_ok, out, err) = vault_cli(
        &daemon,
        "dev-handler",
        &[
            "unseal",
            "--batch",
            results.to_str().expect("utf8"),
            "--purpose",
            "STAFF_WITHHOLDING",
        ],
        "",
    );
    let (header, unsealed) = csv_rows(&out);
    // The file's own columns stay beside the locker's; its stale `row`, `subject_ref` and
    // `error` give way to the locker's.
    assert_eq!(
        header,
        [
            "row",
            "handle",
            "existing",
            "purposes_not_on_record",
            "subject_ref",
            "subject_kind",
            "number",
            "error"
        ]
    );
    assert_eq!(unsealed[2][4], "山田, 太郎");
    let got: Vec<&str> = unsealed.iter().map(|r| r[6].as_str()).collect();
    assert_eq!(
        got,
        vec![numbers[0].as_str(), "", numbers[2].as_str()],
        "{err}"
    );

    // Shift_JIS, as Japanese Excel saves plain "CSV": read as such, and said so.
    let sjis = dir.path().join("sjis.csv");
    let mut bytes =
        b"\x8e\xd0\x88\xf5\x94\xd4\x8d\x86,\x8c\xc2\x90\x6c\x94\xd4\x8d\x86\r\n".to_vec(); // 社員番号,個人番号
    bytes.extend_from_slice(format!("E-9,{}\r\n", valid_number(7199)).as_bytes());
    std::fs::write(&sjis, bytes).expect("sjis");
    let seal_args = |file: &std::path::Path| {
        vec![
            "seal".to_owned(),
            "--batch".to_owned(),
            file.to_str().expect("utf8").to_owned(),
            "--tenant".to_owned(),
            "dev".to_owned(),
            "--kind".to_owned(),
            "staff".to_owned(),
            "--purpose".to_owned(),
            "STAFF_WITHHOLDING".to_owned(),
        ]
    };
    let args = seal_args(&sjis);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = vault_cli(&daemon, "dev-handler", &args, "");
    assert!(ok && err.contains("Shift_JIS"), "{err}");
    let (_, rows) = csv_rows(&out);
    assert_eq!(
        (rows.len(), rows[0][0].as_str(), rows[0][1].as_str()),
        (1, "2", "E-9")
    );
    // Bytes that are neither UTF-8 nor Shift_JIS are refused before anything is sealed.
    let garbage = dir.path().join("garbage.csv");
    std::fs::write(&garbage, b"\xff\xfe\x00\x81\x00garbage\n").expect("garbage");
    let args = seal_args(&garbage);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = vault_cli(&daemon, "dev-handler", &args, "");
    assert!(!ok && err.contains("neither UTF-8 nor Shift_JIS"), "{err}");
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
