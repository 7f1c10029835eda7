//! The end of a record's life on a test clock (規程第32・36条): retire → describe shows the
//! disposal date; before it, unseal works for purposes whose retention runs and is refused for
//! those whose retention ended; on the date the scheduler disposes of the record (unseal
//! FAILED_PRECONDITION, lookup NOT_FOUND), its deletion certificate verifies offline, and once
//! the month's epoch key is destroyed a copy of the store taken before the disposal cannot
//! reveal the number either. Re-hire (unretire) before the date brings the record back.

use std::path::Path;
use std::process::Command;

use tonic::Code;
use vault_client::pb;
use vault_tests::cli::vault_cli;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{export_audit, jst_date_in, seal_request, unseal};
use vault_tests::{Daemon, DaemonOptions, binary_path, store_edit};

const W: &str = "STAFF_WITHHOLDING"; // 7 years
const H: &str = "STAFF_HEALTH_PENSION"; // 2 years

fn set_days(file: &Path, days: u32) {
    std::fs::write(file, days.to_string()).expect("write clock file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_dispose_certify_and_shred() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = dir.path().join("clock-days");
    set_days(&clock, 0);
    let mut daemon = Daemon::start(
        &dir.path().join("data"),
        DaemonOptions {
            lifecycle_clock_file: Some(clock.clone()),
            ..DaemonOptions::default()
        },
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = valid_number(4242);
    let handle = handler
        .locker
        .seal(seal_request("dev", "E4242", &number, &[W, H]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let left_on = jst_date_in(0);
    let retired = handler
        .locker
        .retire(pb::RetireRequest {
            handle: handle.clone(),
            left_on: left_on.clone(),
        })
        .await
        .expect("retire")
        .into_inner();
    assert_eq!(retired.status, pb::RecordStatus::Retired as i32);
    let retirement = retired.retirement.expect("retirement shown");
    let year: i32 = left_on[..4].parse().expect("year");
    let expected_dispose_on = format!("{}{}", year + 7, &left_on[4..]);
    // 29 February plus 7 years is 28 February.
    let expected_dispose_on = expected_dispose_on.replace("-02-29", "-02-28");
    assert_eq!(retirement.left_on, left_on);
    assert_eq!(retirement.dispose_on, expected_dispose_on);
    assert!(!retirement.disposal_epoch.is_empty());
    let health_until = retirement
        .purposes
        .iter()
        .find(|p| p.purpose == H)
        .expect("health purpose listed")
        .usable_until
        .clone();
    assert!(
        health_until.starts_with(&(year + 2).to_string()),
        "{health_until}"
    );

    // Retired: still usable for both purposes while their retention runs.
    assert_eq!(
        unseal(&mut handler, &handle, W).await.expect("withholding"),
        number
    );
    assert_eq!(
        unseal(&mut handler, &handle, H).await.expect("health"),
        number
    );

    // Three years on: the 2-year retention of health insurance has ended, withholding's 7 has not.
    set_days(&clock, 3 * 366);
    let refused = unseal(&mut handler, &handle, H)
        .await
        .expect_err("retention ended");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(!refused.message().contains(&number));
    assert_eq!(
        unseal(&mut handler, &handle, W).await.expect("withholding"),
        number
    );

    // A backup of the store, taken before the disposal.
    assert!(daemon.stop().success());
    let backup = dir.path().join("backup");
    vault_tests::store_edit::save_store(&daemon.data_dir, &backup);
    daemon.start_in_place();

    // Past the disposal date and its month: the scheduler disposes and destroys the epoch key.
    set_days(&clock, 7 * 366 + 40);
    let mut admin = daemon.dev_client("dev-admin").await;
    let report = admin
        .admin
        .run_disposal(pb::RunDisposalRequest {})
        .await
        .expect("run disposal")
        .into_inner();
    // The schedule's own first run after the restart may have come first; either way the
    // record is disposed of exactly once and its epoch key destroyed exactly once (below).
    assert!(report.disposed <= 1, "{report:?}");
    let mut manager = daemon.dev_client("dev-manager").await;
    let record = manager
        .locker
        .describe(pb::DescribeRequest {
            handle: handle.clone(),
        })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(record.status, pb::RecordStatus::Disposed as i32);
    assert_eq!(
        record.tombstone.expect("tombstone").disposed_by,
        "scheduler"
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    let refused = unseal(&mut handler, &handle, W)
        .await
        .expect_err("disposed");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let missing = handler
        .locker
        .lookup(pb::LookupRequest {
            tenant: "dev".into(),
            number: number.clone(),
        })
        .await
        .expect_err("index entry gone");
    assert_eq!(missing.code(), Code::NotFound);

    // The certificate, exported and verified offline with the audit public key.
    let (ok, cert, err) = vault_cli(
        &daemon,
        "dev-manager",
        &["certificate", "export", &handle],
        "",
    );
    assert!(ok, "{err}");
    assert!(!cert.contains(&number));
    let cert_file = dir.path().join("cert.json");
    std::fs::write(&cert_file, &cert).expect("cert");
    let (ok, pem, err) = vault_cli(&daemon, "dev-auditor", &["audit", "public-key"], "");
    assert!(ok, "{err}");
    let pem_file = dir.path().join("audit.pem");
    std::fs::write(&pem_file, &pem).expect("pem");
    let verify = |file: &Path| {
        Command::new(binary_path("vault-client"))
            .args(["certificate", "verify"])
            .arg(file)
            .arg("--public-key")
            .arg(&pem_file)
            .output()
            .expect("verify")
    };
    let verified = verify(&cert_file);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let forged = dir.path().join("forged.json");
    std::fs::write(&forged, cert.replace("scheduler", "someone")).expect("forged");
    assert!(
        !verify(&forged).status.success(),
        "an edited certificate must not verify"
    );

    // Every step audited; the disposal and the key destruction by the scheduler.
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    for action in ["SCHEDULED_DISPOSE", "EPOCH_KEY_DESTROY"] {
        let count = entries
            .iter()
            .filter(|e| e.action == action && e.outcome == "ALLOWED")
            .count();
        assert_eq!(count, 1, "{action} entries");
    }
    for action in [
        "RETIRE",
        "SCHEDULED_DISPOSE",
        "EPOCH_KEY_DESTROY",
        "DISPOSAL_RUN",
        "CERTIFICATE_READ",
    ] {
        assert!(
            entries
                .iter()
                .any(|e| e.action == action && e.outcome == "ALLOWED"),
            "no {action} entry"
        );
    }
    for e in &entries {
        assert!(
            !format!("{e:?}").contains(&number),
            "a number in the audit log"
        );
    }

    // The backup from before the disposal, with today's key backend and a clock within the
    // retention: the record is there, but its epoch key is gone.
    assert!(daemon.stop().success());
    vault_tests::store_edit::put_back_store(&backup, &daemon.data_dir);
    // The anchor refuses an older store until it is accepted on purpose (docs/SECURITY.md).
    vault_tests::daemon::reanchor(&daemon.data_dir, daemon.options());
    set_days(&clock, 3 * 366);
    daemon.start_in_place();
    let mut handler = daemon.dev_client("dev-handler").await;
    let refused = unseal(&mut handler, &handle, W)
        .await
        .expect_err("a destroyed epoch key must not open a backup");
    assert!(
        matches!(refused.code(), Code::FailedPrecondition | Code::DataLoss),
        "{refused:?}"
    );
    assert!(!refused.message().contains(&number));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehire_before_the_date_brings_the_record_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = dir.path().join("clock-days");
    set_days(&clock, 0);
    let daemon = Daemon::start(
        &dir.path().join("data"),
        DaemonOptions {
            lifecycle_clock_file: Some(clock.clone()),
            ..DaemonOptions::default()
        },
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut manager = daemon.dev_client("dev-manager").await;
    let number = valid_number(4343);
    let handle = handler
        .locker
        .seal(seal_request("dev", "E4343", &number, &[H]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let bad = handler
        .locker
        .retire(pb::RetireRequest {
            handle: handle.clone(),
            left_on: "2026-02-30".into(),
        })
        .await
        .expect_err("no such day");
    assert_eq!(bad.code(), Code::InvalidArgument);
    handler
        .locker
        .retire(pb::RetireRequest {
            handle: handle.clone(),
            left_on: jst_date_in(0),
        })
        .await
        .expect("retire");
    let denied = handler
        .locker
        .unretire(pb::UnretireRequest {
            handle: handle.clone(),
            reason: "再雇用".into(),
        })
        .await
        .expect_err("handlers cannot unretire");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let record = manager
        .locker
        .unretire(pb::UnretireRequest {
            handle: handle.clone(),
            reason: "再雇用".into(),
        })
        .await
        .expect("unretire")
        .into_inner();
    assert_eq!(record.status, pb::RecordStatus::Active as i32);
    assert!(record.retirement.is_none());
    assert!(record.key_version >= 1, "back under the tenant key");

    // Years later nothing is disposed of: it is no longer retired.
    set_days(&clock, 3 * 366);
    let mut admin = daemon.dev_client("dev-admin").await;
    let report = admin
        .admin
        .run_disposal(pb::RunDisposalRequest {})
        .await
        .expect("run")
        .into_inner();
    assert_eq!(report.disposed, 0);
    assert_eq!(
        unseal(&mut handler, &handle, H)
            .await
            .expect("active again"),
        number
    );

    // Retired again with an old leaving date: only a manager may date it so (a handler may
    // not destroy through a retirement); due at once, disposed by the next run.
    manager
        .locker
        .retire(pb::RetireRequest {
            handle: handle.clone(),
            left_on: jst_date_in(-3 * 365),
        })
        .await
        .expect("retire with a past date");
    let report = admin
        .admin
        .run_disposal(pb::RunDisposalRequest {})
        .await
        .expect("run")
        .into_inner();
    assert_eq!(report.disposed, 1);
    let record = manager
        .locker
        .describe(pb::DescribeRequest {
            handle: handle.clone(),
        })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(record.status, pb::RecordStatus::Disposed as i32);
    assert_eq!(
        record.tombstone.expect("tombstone").disposed_by,
        "scheduler"
    );
}

/// With `[lifecycle] epoch_months = 12` (what a TPM needs), every record due in a year shares
/// one epoch key, labelled by the year's first month, and the key outlives the first disposals
/// of its year.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yearly_epochs_share_one_key_per_year() {
    use vault_tests::tls_daemon::{ClientCert, TlsDaemon};
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = TlsDaemon::start(dir.path(), "\n[lifecycle]\nepoch_months = 12\n");
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
    let token =
        vault_tests::rpc::operator_token(&mut admin, &mut approver, "t1", "hr", pb::Role::Handler)
            .await;
    let mut handler = tls.client(Some(token), ClientCert::None).await;
    // Departures eight years back are dated by a manager (a handler may not backdate).
    let manager_token =
        vault_tests::rpc::operator_token(&mut admin, &mut approver, "t1", "hrm", pb::Role::Manager)
            .await;
    vault_tests::rpc::grant(&mut admin, &mut approver, "hrm", "t1", &[W]).await;
    let mut manager = tls.client(Some(manager_token), ClientCert::None).await;
    let year = &jst_date_in(0)[..4];
    let mut epochs = Vec::new();
    for (i, left_on) in [jst_date_in(0), jst_date_in(-8 * 365)].iter().enumerate() {
        let handle = handler
            .locker
            .seal(seal_request(
                "t1",
                &format!("Y{i}"),
                &valid_number(4400 + i as u64),
                &[W],
            ))
            .await
            .expect("seal")
            .into_inner()
            .handle;
        let record = manager
            .locker
            .retire(pb::RetireRequest {
                handle,
                left_on: left_on.clone(),
            })
            .await
            .expect("retire")
            .into_inner();
        epochs.push(record.retirement.expect("retirement").disposal_epoch);
    }
    let disposal_year: i32 = year.parse::<i32>().expect("year") + 7;
    assert_eq!(
        epochs[0],
        format!("{disposal_year}-01"),
        "due in 7 years: that year's key"
    );
    assert_eq!(
        epochs[1],
        format!("{year}-01"),
        "already due: this year's key"
    );
    let report = admin
        .admin
        .run_disposal(pb::RunDisposalRequest {})
        .await
        .expect("run")
        .into_inner();
    assert_eq!(report.disposed, 1);
    assert!(
        report.epoch_keys_destroyed.is_empty(),
        "this year's key lives until the year is over: {report:?}"
    );
}

/// A record migrated from paper: sealed today, its number acquired years ago. A handler cannot
/// record a departure before the day it was sealed; once a manager sets the acquisition date
/// (取得日, audited with the reason), describe shows it in Japan's time and the handler's
/// retirement goes back to it. Dates before the first numbers or in the future are refused,
/// and a handler cannot set it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_records_acquisition_date_is_set_by_a_manager_and_bounds_retirement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let handle = handler
        .locker
        .seal(seal_request("dev", "E-MIG", &valid_number(5151), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let left_on = jst_date_in(-10);
    let (ok, _, stderr) = vault_cli(
        &daemon,
        "dev-handler",
        &["retire", &handle, "--left-on", &left_on],
        "",
    );
    assert!(
        !ok && stderr.contains("precedes the record's acquisition"),
        "{stderr}"
    );
    for (date, why) in [
        ("2015-10-04", "precedes the first individual numbers"),
        (jst_date_in(2).as_str(), "is in the future"),
    ] {
        let (ok, _, stderr) = vault_cli(
            &daemon,
            "dev-manager",
            &[
                "acquired",
                &handle,
                "--on",
                date,
                "--reason",
                "紙の台帳から移行",
            ],
            "",
        );
        assert!(!ok && stderr.contains(why), "{date}: {stderr}");
    }
    let (ok, _, stderr) = vault_cli(
        &daemon,
        "dev-handler",
        &[
            "acquired",
            &handle,
            "--on",
            "2019-04-01",
            "--reason",
            "移行",
        ],
        "",
    );
    assert!(!ok && stderr.contains("PERMISSION_DENIED"), "{stderr}");
    let (ok, out, stderr) = vault_cli(
        &daemon,
        "dev-manager",
        &[
            "--output",
            "json",
            "acquired",
            &handle,
            "--on",
            "2019-04-01",
            "--reason",
            "紙の台帳から移行",
        ],
        "",
    );
    assert!(ok, "{stderr}");
    let record: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        record["acquired_at"], "2019-04-01T00:00:00+09:00",
        "the day in Japan: {record}"
    );
    let (ok, _, stderr) = vault_cli(
        &daemon,
        "dev-handler",
        &["retire", &handle, "--left-on", &left_on],
        "",
    );
    assert!(
        ok,
        "the departure goes back to the acquisition date now: {stderr}"
    );
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    let set = entries
        .iter()
        .find(|e| e.action == "ACQUISITION_DATE" && e.outcome == "ALLOWED")
        .expect("audited");
    assert_eq!(set.operator_id, "dev-manager");
    assert!(
        set.reason.contains("2019-04-01") && set.reason.contains("紙の台帳から移行"),
        "{}",
        set.reason
    );
}

/// The disposal queue is the scheduler's to-do list, not authenticated. Its entry for a retired
/// record deleted from the store (at rest), the record's month then ends: the epoch key that
/// seals the record must not be destroyed on the queue's word, or the record would be gone
/// with no disposal, no certificate and no audit entry of it. The key stays while a record row,
/// checked against the log, is sealed under it; the record is still there, retired, for a
/// manager to dispose of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_key_outlives_a_lost_queue_entry_of_a_record_it_seals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = dir.path().join("clock-days");
    set_days(&clock, 0);
    let mut daemon = Daemon::start(
        &dir.path().join("data"),
        DaemonOptions {
            lifecycle_clock_file: Some(clock.clone()),
            ..DaemonOptions::default()
        },
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = valid_number(4343);
    let handle = handler
        .locker
        .seal(seal_request("dev", "E4343", &number, &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let retirement = handler
        .locker
        .retire(pb::RetireRequest {
            handle: handle.clone(),
            left_on: jst_date_in(0),
        })
        .await
        .expect("retire")
        .into_inner()
        .retirement
        .expect("retirement");
    drop(handler);
    assert!(daemon.stop().success());
    let queued = format!("{}/{handle}", retirement.dispose_on);
    store_edit::edit(&daemon.data_dir, |txn| {
        let mut queue = txn
            .open_table(vault_daemon::store::redb::DISPOSAL_QUEUE)
            .expect("queue");
        assert!(
            queue.remove(queued.as_str()).expect("remove").is_some(),
            "{queued} was queued"
        );
    });
    daemon.start_in_place();

    // Past the record's disposal date and its month.
    set_days(&clock, 7 * 366 + 40);
    let mut admin = daemon.dev_client("dev-admin").await;
    let report = admin
        .admin
        .run_disposal(pb::RunDisposalRequest {})
        .await
        .expect("run disposal")
        .into_inner();
    assert!(
        report.epoch_keys_destroyed.is_empty(),
        "destroyed while a record is sealed under it: {report:?}"
    );
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    assert!(
        !entries.iter().any(|e| e.action == "EPOCH_KEY_DESTROY"),
        "{entries:?}"
    );
    // Still there, retired: a manager finds it.
    let mut manager = daemon.dev_client("dev-manager").await;
    let record = manager
        .locker
        .describe(pb::DescribeRequest {
            handle: handle.clone(),
        })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(record.status, pb::RecordStatus::Retired as i32);
}
