//! The records of the handling rules on a seeded data set: the 管理台帳, the usage report and
//! the incident report have the counts the audit log has, parse as CSV and JSON, and contain
//! no number. And ログ監視: a burst of unseals over the threshold raises exactly one alert and,
//! when configured, suspends the operator, whose next unseal is refused and audited.

use std::collections::{BTreeMap, BTreeSet};

use tonic::Code;
use vault_client::pb;
use vault_tests::Daemon;
use vault_tests::cli::vault_cli_ok;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{approve, carry_out_request, export_audit, operator_token, seal_request};
use vault_tests::tls_daemon::{ClientCert, TlsDaemon};

const W: &str = "STAFF_WITHHOLDING";
const H: &str = "STAFF_HEALTH_PENSION";

fn today_jst() -> String {
    let now =
        time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(9, 0, 0).expect("jst"));
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().expect("csv header").clone();
    reader
        .records()
        .map(|r| {
            let r = r.expect("csv row");
            header
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_usage_and_incident_reports_match_the_audit_log_and_hold_no_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut manager = daemon.dev_client("dev-manager").await;
    let numbers: Vec<String> = (0..5).map(|i| valid_number(3100 + i)).collect();
    let mut handles = Vec::new();
    for (i, number) in numbers.iter().enumerate() {
        let purposes: &[&str] = if i % 2 == 0 { &[W, H] } else { &[W] };
        let handle = handler
            .locker
            .seal(seal_request("dev", &format!("E31{i}"), number, purposes))
            .await
            .expect("seal")
            .into_inner()
            .handle;
        handles.push(handle);
    }
    let unseal = |h: &str, p: &str| pb::UnsealRequest {
        handle: h.into(),
        purpose: p.into(),
    };
    for i in 0..7 {
        handler
            .locker
            .unseal(unseal(&handles[i % 5], W))
            .await
            .expect("unseal W");
    }
    for i in [0, 2, 4] {
        handler
            .locker
            .unseal(unseal(&handles[i], H))
            .await
            .expect("unseal H");
    }
    let denied = handler
        .locker
        .unseal(unseal(&handles[1], H))
        .await
        .expect_err("purpose not permitted by the record");
    assert_eq!(denied.code(), Code::PermissionDenied);
    manager
        .locker
        .suspend(pb::SuspendRequest {
            handle: handles[1].clone(),
            reason: "本人の求め".into(),
        })
        .await
        .expect("suspend");
    manager
        .locker
        .dispose(pb::DisposeRequest {
            handle: handles[2].clone(),
            reason: "保存期間経過".into(),
        })
        .await
        .expect("dispose");
    handler
        .locker
        .retire(pb::RetireRequest {
            handle: handles[3].clone(),
            left_on: today_jst(),
        })
        .await
        .expect("retire");
    vault_cli_ok(
        &daemon,
        "dev-admin",
        &[
            "tenant",
            "info",
            "dev",
            "--file-kind",
            "給与・社会保険",
            "--file-name",
            "従業員個人番号ファイル",
            "--responsible-person",
            "事務取扱責任者 山田",
            "--responsible-department",
            "人事部",
            "--management-area",
            "サーバ室A",
            "--handling-area",
            "人事部執務室",
        ],
    );

    // 管理台帳.
    let ledger: serde_json::Value = serde_json::from_str(&vault_cli_ok(
        &daemon,
        "dev-auditor",
        &["ledger", "--tenant", "dev", "--format", "json"],
    ))
    .expect("ledger JSON");
    let page = &ledger["ledger"][0];
    assert_eq!(page["tenant"], "dev");
    assert_eq!(page["records"]["active"], 2);
    assert_eq!(page["records"]["suspended"], 1);
    assert_eq!(page["records"]["retired"], 1);
    assert_eq!(page["records"]["disposed"], 1);
    assert_ne!(page["last_disposal"], "");
    assert_eq!(page["responsible_department"], "人事部");
    assert_eq!(page["management_area"], "サーバ室A");
    let purposes: Vec<&str> = page["purposes"]
        .as_array()
        .expect("purposes")
        .iter()
        .map(|p| p["code"].as_str().expect("code"))
        .collect();
    assert!(
        purposes.contains(&W) && purposes.contains(&H),
        "{purposes:?}"
    );
    let access = page["access"].as_array().expect("access");
    assert!(
        access
            .iter()
            .any(|a| a["operator_id"] == "dev-handler" && a["role"] == "handler")
    );
    let ledger_csv = vault_cli_ok(&daemon, "dev-auditor", &["ledger", "--format", "csv"]);
    let rows = csv_rows(&ledger_csv);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["disposed"], "1");
    let ledger_table = vault_cli_ok(&daemon, "dev-manager", &["ledger"]);
    // For a terminal: a block per tenant, no line wider than a screen (East Asian characters
    // take two columns).
    let widest = ledger_table
        .lines()
        .map(|l| {
            l.chars()
                .map(|c| if c.is_ascii() { 1 } else { 2 })
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    assert!(widest <= 100, "a {widest}-column line in\n{ledger_table}");
    for expected in [
        "== dev",
        "人事部",
        "disposed 1",
        "STAFF_WITHHOLDING",
        "dev-handler",
    ] {
        assert!(
            ledger_table.contains(expected),
            "{expected} missing from\n{ledger_table}"
        );
    }

    // 運用状況の記録, checked against the audit log itself.
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    let today = today_jst();
    let usage: serde_json::Value = serde_json::from_str(&vault_cli_ok(
        &daemon,
        "dev-auditor",
        &[
            "report", "usage", "--from", &today, "--to", &today, "--tenant", "dev", "--format",
            "json",
        ],
    ))
    .expect("usage JSON");
    let mut reported: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for row in usage["rows"].as_array().expect("rows") {
        *reported
            .entry((
                row["category"].as_str().expect("category").into(),
                row["purpose"].as_str().expect("purpose").into(),
                row["operator"].as_str().expect("operator").into(),
            ))
            .or_default() += row["count"].as_u64().expect("count");
    }
    let count = |action: &str, outcome: &str, purpose: Option<&str>| {
        entries
            .iter()
            .filter(|e| e.tenant == "dev" && e.action == action && e.outcome == outcome)
            .filter(|e| purpose.is_none_or(|p| e.purpose == p))
            .count() as u64
    };
    let get = |category: &str, purpose: &str, operator: &str| {
        reported
            .get(&(category.into(), purpose.into(), operator.into()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        get("acquisition", "", "dev-handler"),
        count("SEAL", "ALLOWED", None)
    );
    assert_eq!(get("acquisition", "", "dev-handler"), 5);
    assert_eq!(
        get("use", W, "dev-handler"),
        count("UNSEAL", "ALLOWED", Some(W))
    );
    assert_eq!(get("use", W, "dev-handler"), 7);
    assert_eq!(get("use", H, "dev-handler"), 3);
    assert_eq!(get("disposal", "", "dev-manager"), 1);
    assert_eq!(get("suspension", "", "dev-manager"), 1);
    assert_eq!(get("retirement", "", "dev-handler"), 1);
    let denials: u64 = reported
        .iter()
        .filter(|(k, _)| k.0 == "denial")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        denials,
        entries
            .iter()
            .filter(|e| e.tenant == "dev" && e.outcome == "DENIED")
            .count() as u64
    );
    assert!(denials >= 1);
    let usage_csv = vault_cli_ok(
        &daemon,
        "dev-manager",
        &[
            "report", "usage", "--from", &today, "--to", &today, "--format", "csv",
        ],
    );
    let rows = csv_rows(&usage_csv);
    assert!(
        rows.iter()
            .any(|r| r["category"] == "use" && r["purpose"] == W && r["count"] == "7")
    );

    // 漏えい等: what dev-handler's unseals touched.
    let incident: serde_json::Value = serde_json::from_str(&vault_cli_ok(
        &daemon,
        "dev-auditor",
        &[
            "report",
            "incident",
            "--operator",
            "dev-handler",
            "--from",
            &today,
            "--to",
            &today,
            "--format",
            "json",
        ],
    ))
    .expect("incident JSON");
    let unsealed: BTreeSet<&str> = entries
        .iter()
        .filter(|e| {
            e.operator_id == "dev-handler" && e.action == "UNSEAL" && e.outcome == "ALLOWED"
        })
        .map(|e| e.handle.as_str())
        .collect();
    assert_eq!(incident["unseals"], 10);
    assert_eq!(incident["subjects"], unsealed.len() as u64);
    let listed: BTreeSet<&str> = incident["handles"]
        .as_array()
        .expect("handles")
        .iter()
        .map(|h| h.as_str().expect("handle"))
        .collect();
    assert_eq!(listed, unsealed);
    assert_eq!(incident["denied"], 1);
    let incident_csv = vault_cli_ok(
        &daemon,
        "dev-auditor",
        &[
            "report",
            "incident",
            "--operator",
            "dev-handler",
            "--from",
            &today,
            "--to",
            &today,
            "--format",
            "csv",
        ],
    );
    assert_eq!(csv_rows(&incident_csv).len(), unsealed.len());

    // None of them holds a number, in any form.
    for text in [
        &ledger.to_string(),
        &ledger_csv,
        &ledger_table,
        &usage.to_string(),
        &usage_csv,
        &incident.to_string(),
        &incident_csv,
    ] {
        for number in &numbers {
            assert!(!text.contains(number.as_str()), "a number in a report");
        }
    }
    // Reports are audited; a handler may not read them.
    assert!(
        export_audit(&mut auditor)
            .await
            .iter()
            .any(|e| e.action == "LEDGER_READ")
    );
    let refused = handler
        .admin
        .ledger(pb::LedgerRequest::default())
        .await
        .expect_err("handlers do not read the ledger");
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_threshold_raises_one_alert_and_suspends_the_operator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = TlsDaemon::start(
        dir.path(),
        "\n[monitoring]\nauto_suspend = true\n[monitoring.handler]\nunseals_per_hour = 5\ndistinct_subjects_per_hour = 0\n",
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
    let token = operator_token(&mut admin, &mut approver, "t1", "burst", pb::Role::Handler).await;
    let mut handler = tls.client(Some(token), ClientCert::None).await;
    let number = valid_number(3300);
    let handle = handler
        .locker
        .seal(seal_request("t1", "E1", &number, &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let unseal = || pb::UnsealRequest {
        handle: handle.clone(),
        purpose: W.into(),
    };
    // Five within the threshold, the sixth crosses it: released, then the alert suspends.
    for _ in 0..6 {
        let got = handler
            .locker
            .unseal(unseal())
            .await
            .expect("within the burst");
        assert_eq!(got.into_inner().number, number);
    }
    for _ in 0..3 {
        let refused = handler
            .locker
            .unseal(unseal())
            .await
            .expect_err("suspended");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert!(refused.message().contains("disabled"));
    }

    let entries = export_audit(&mut admin).await;
    let alerts: Vec<_> = entries.iter().filter(|e| e.action == "ALERT").collect();
    assert_eq!(alerts.len(), 1, "exactly one alert: {alerts:?}");
    assert_eq!(alerts[0].operator_id, "burst");
    assert!(alerts[0].reason.contains("unseals_per_hour"));
    assert!(alerts[0].reason.contains("suspended"));
    let unseals: Vec<&str> = entries
        .iter()
        .filter(|e| e.action == "UNSEAL" && e.operator_id == "burst")
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(
        unseals,
        ["ALLOWED"; 6]
            .iter()
            .copied()
            // The first refusal of the suspended operator has its own entry; the next two,
            // same reason, same address, same window, are counted into one summary.
            .chain(["DENIED"; 1])
            .collect::<Vec<_>>()
    );
    let listed = admin
        .admin
        .list_alerts(pb::ListAlertsRequest { after_seq: 0 })
        .await
        .expect("alerts")
        .into_inner()
        .alerts;
    assert_eq!(listed.len(), 1);
    // A manager sees the alerts of the operators of their tenants, and only those.
    for (tenant, manager, expected) in [("t1", "mgr-t1", 1), ("t2", "mgr-t2", 0)] {
        if tenant == "t2" {
            admin
                .admin
                .create_tenant(pb::CreateTenantRequest {
                    tenant_id: "t2".into(),
                    name: String::new(),
                })
                .await
                .expect("tenant");
        }
        let token = operator_token(
            &mut admin,
            &mut approver,
            tenant,
            manager,
            pb::Role::Manager,
        )
        .await;
        vault_tests::rpc::grant(&mut admin, &mut approver, manager, tenant, &[W]).await;
        let mut client = tls.client(Some(token), ClientCert::None).await;
        let seen = client
            .admin
            .list_alerts(pb::ListAlertsRequest { after_seq: 0 })
            .await
            .expect("alerts")
            .into_inner()
            .alerts;
        assert_eq!(seen.len(), expected, "{manager}");
    }
    // An admin lifts the suspension, a second approves; the operator works again.
    let enabled = admin
        .admin
        .enable_operator(pb::DisableOperatorRequest {
            operator_id: "burst".into(),
        })
        .await
        .expect("enable")
        .into_inner();
    assert!(enabled.disabled, "held until approved");
    approve(&mut approver, enabled.pending_request).await;
    let back = handler
        .locker
        .unseal(unseal())
        .await
        .expect("enabled again");
    assert_eq!(back.into_inner().number, number);
    assert!(!format!("{entries:?}").contains(&number));
    assert!(tls.daemon.log().contains("log monitor alert"));
    assert!(!tls.daemon.log().contains(&number));
}

/// `SetTenantInfo` replaces every detail (what it always did); `UpdateTenantInfo` changes only
/// those sent. Both go through the same merge inside the writer's transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_replaces_all_details_and_update_only_those_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut admin = daemon.dev_client("dev-admin").await;
    let set = admin
        .admin
        .set_tenant_info(pb::TenantInfo {
            tenant: "dev".into(),
            file_kind: "給与".into(),
            responsible_person: "山田".into(),
            ..pb::TenantInfo::default()
        })
        .await
        .expect("set")
        .into_inner();
    assert_eq!(
        (set.file_kind.as_str(), set.responsible_person.as_str()),
        ("給与", "山田")
    );
    let updated = admin
        .admin
        .update_tenant_info(pb::UpdateTenantInfoRequest {
            tenant: "dev".into(),
            handling_area: Some("人事部執務室".into()),
            ..pb::UpdateTenantInfoRequest::default()
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(
        (updated.file_kind.as_str(), updated.handling_area.as_str()),
        ("給与", "人事部執務室")
    );
    let replaced = admin
        .admin
        .set_tenant_info(pb::TenantInfo {
            tenant: "dev".into(),
            responsible_person: "鈴木".into(),
            ..pb::TenantInfo::default()
        })
        .await
        .expect("set again")
        .into_inner();
    assert_eq!(
        (
            replaced.file_kind.as_str(),
            replaced.responsible_person.as_str(),
            replaced.handling_area.as_str()
        ),
        ("", "鈴木", "")
    );
    let nothing = admin
        .admin
        .update_tenant_info(pb::UpdateTenantInfoRequest {
            tenant: "dev".into(),
            ..pb::UpdateTenantInfoRequest::default()
        })
        .await
        .expect_err("an update of nothing");
    assert_eq!(nothing.code(), Code::InvalidArgument);
}

/// The entries of a filtered export, or the daemon's refusal.
async fn filtered_export(
    client: &mut vault_client::Client,
    actions: &[&str],
    from_unix_ms: i64,
    to_unix_ms: i64,
) -> Result<Vec<pb::AuditEntry>, tonic::Status> {
    let mut stream = client
        .admin
        .audit_export(pb::AuditExportRequest {
            after_seq: 0,
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            from_unix_ms,
            to_unix_ms,
        })
        .await?
        .into_inner();
    let mut entries = Vec::new();
    while let Some(entry) = stream.message().await? {
        entries.push(entry);
    }
    Ok(entries)
}

/// An export narrowed to some actions or a period (what the console's carry-out record and
/// certificate list ask for) sends exactly those entries of the whole log, and a filter that
/// names no action or an empty period is refused as invalid; the export's own entry says
/// how it was filtered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_export_sends_only_the_actions_and_period_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    for i in 0..3 {
        let handle = handler
            .locker
            .seal(seal_request(
                "dev",
                &format!("F{i}"),
                &valid_number(9300 + i),
                &[W],
            ))
            .await
            .expect("seal")
            .into_inner()
            .handle;
        handler
            .locker
            .unseal(pb::UnsealRequest {
                handle,
                purpose: W.into(),
            })
            .await
            .expect("unseal");
    }
    handler
        .locker
        .record_carry_out(carry_out_request(W, 3, &"d4".repeat(32)))
        .await
        .expect("carry-out");
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let everything = export_audit(&mut auditor).await;

    let carried = filtered_export(&mut auditor, &["CARRY_OUT"], 0, 0)
        .await
        .expect("filtered export");
    assert_eq!(carried.len(), 1, "{carried:?}");
    assert!(carried[0].reason.contains("carried out 3 numbers"));
    let both = filtered_export(&mut auditor, &["SEAL", "UNSEAL"], 0, 0)
        .await
        .expect("filtered export");
    let expected: Vec<u64> = everything
        .iter()
        .filter(|e| e.action == "SEAL" || e.action == "UNSEAL")
        .map(|e| e.seq)
        .collect();
    assert_eq!(both.iter().map(|e| e.seq).collect::<Vec<_>>(), expected);
    assert_eq!(expected.len(), 6);

    // A period: up to (not including) the second seal's time, and from it on.
    let second_seal = everything
        .iter()
        .filter(|e| e.action == "SEAL")
        .nth(1)
        .expect("second seal")
        .time_unix_ms;
    let before = filtered_export(&mut auditor, &[], 0, second_seal)
        .await
        .expect("export before");
    assert!(!before.is_empty());
    assert!(before.iter().all(|e| e.time_unix_ms < second_seal));
    let after = filtered_export(&mut auditor, &["SEAL"], second_seal, 0)
        .await
        .expect("export after");
    assert!(after.iter().all(|e| e.time_unix_ms >= second_seal));
    // Exactly the entries before it (every entry since is later still).
    assert_eq!(
        before.iter().map(|e| e.seq).collect::<Vec<_>>(),
        everything
            .iter()
            .filter(|e| e.time_unix_ms < second_seal)
            .map(|e| e.seq)
            .collect::<Vec<_>>()
    );
    assert!(!after.is_empty());

    // Bad filters: refused as invalid, nothing sent.
    for (actions, from, to) in [
        (vec!["NOT_AN_ACTION"], 0, 0),
        (vec![], second_seal, second_seal),
        (vec![], -5, 0),
    ] {
        let refused = filtered_export(&mut auditor, &actions, from, to)
            .await
            .expect_err("a bad filter");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    }

    // The CLI's carry-out record reads the same filtered export.
    let today = today_jst();
    let csv = vault_cli_ok(
        &daemon,
        "dev-auditor",
        &[
            "report",
            "carry-outs",
            "--from",
            &today,
            "--to",
            &today,
            "--format",
            "csv",
        ],
    );
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 1, "{csv}");
    assert!(
        csv.starts_with("seq,time,operator,tenant,purpose,outcome,record"),
        "{csv}"
    );
    assert!(
        csv.contains("dev-handler") && csv.contains("carried out 3 numbers"),
        "{csv}"
    );
    let json: serde_json::Value = serde_json::from_str(&vault_cli_ok(
        &daemon,
        "dev-auditor",
        &[
            "report",
            "carry-outs",
            "--from",
            &today,
            "--to",
            &today,
            "--format",
            "json",
        ],
    ))
    .expect("json");
    assert_eq!(json["carry_outs"][0]["purpose"], W);
    for i in 0..3 {
        assert!(!csv.contains(valid_number(9300 + i).as_str()));
    }

    // The export's own entry names its filter.
    let log = export_audit(&mut auditor).await;
    assert!(
        log.iter()
            .any(|e| e.action == "AUDIT_EXPORT"
                && e.reason.contains("filtered: actions [CARRY_OUT]")),
        "no export entry names its filter"
    );
}
