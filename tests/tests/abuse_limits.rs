//! Limits that stop a handler from abusing what its role allows: a retirement cannot become a
//! way to destroy records (other purposes' records, dates before acquisition or long past, a
//! record already due when retired).

use std::path::Path;

use tonic::Code;
use vault_client::{Client, pb};
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{approve, operator_token, seal_request, start_from_config};
use vault_tests::{Daemon, DaemonOptions};

const W: &str = "STAFF_WITHHOLDING";

fn jst_date_in(days: i64) -> String {
    let now = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let jst = now.to_offset(time::UtcOffset::from_hms(9, 0, 0).expect("offset"));
    format!(
        "{:04}-{:02}-{:02}",
        jst.year(),
        u8::from(jst.month()),
        jst.day()
    )
}

async fn retire(
    client: &mut Client,
    handle: &str,
    left_on: &str,
) -> Result<pb::RecordInfo, tonic::Status> {
    client
        .locker
        .retire(pb::RetireRequest {
            handle: handle.into(),
            left_on: left_on.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn seal(handler: &mut Client, subject: &str, seed: u64, purposes: &[&str]) -> String {
    handler
        .locker
        .seal(seal_request("dev", subject, &valid_number(seed), purposes))
        .await
        .expect("seal")
        .into_inner()
        .handle
}

fn set_days(file: &Path, days: u32) {
    std::fs::write(file, days.to_string()).expect("write clock file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retirement_cannot_destroy() {
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
    let mut admin = daemon.dev_client("dev-admin").await;
    let mut approver = daemon.dev_client("dev-admin2").await;
    // A handler holding only PAYEE_FEES on the tenant.
    let created = admin
        .admin
        .create_operator(pb::CreateOperatorRequest {
            operator_id: "fees".into(),
            role: pb::Role::Handler as i32,
            display_name: String::new(),
        })
        .await
        .expect("create")
        .into_inner();
    approve(&mut approver, created.pending_request).await;
    let granted = admin
        .admin
        .grant_purposes(pb::GrantRequest {
            operator_id: "fees".into(),
            tenant: "dev".into(),
            purposes: vec!["PAYEE_FEES".into()],
        })
        .await
        .expect("grant")
        .into_inner();
    approve(&mut approver, granted.pending_request).await;
    let issued = admin
        .admin
        .issue_token(pb::IssueTokenRequest {
            operator_id: "fees".into(),
            ttl_seconds: 3600,
            cert_fingerprint: String::new(),
        })
        .await
        .expect("issue")
        .into_inner();
    approve(&mut approver, issued.pending_request.clone()).await;
    let mut fees = daemon.client(Some(issued.token.into())).await;

    let staff = seal(&mut handler, "E1", 11, &[W]).await;
    // Another purpose's record: refused, whatever the date.
    for left_on in ["1900-01-01", &jst_date_in(0)] {
        let status = retire(&mut fees, &staff, left_on)
            .await
            .expect_err("not its purpose");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains(W), "{status:?}");
    }
    // Its own purposes, but before the record was acquired: refused.
    let status = retire(&mut handler, &staff, "1900-01-01")
        .await
        .expect_err("before acquisition");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("acquisition"), "{status:?}");

    // A hundred days on: more than 31 days back is refused, within them accepted.
    set_days(&clock, 100);
    let status = retire(&mut handler, &staff, &jst_date_in(100 - 40))
        .await
        .expect_err("too far back");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("31 days"), "{status:?}");
    let retired = retire(&mut handler, &staff, &jst_date_in(100 - 10))
        .await
        .expect("recent departure");
    assert_eq!(retired.status, pb::RecordStatus::Retired as i32);

    // A manager may date it as the facts are (that is the manager's approval): the record is
    // due at once and the scheduler disposes of it.
    let old = seal(&mut handler, "E2", 12, &[W]).await;
    let by_manager = retire(&mut manager, &old, "2001-04-01")
        .await
        .expect("manager backdates");
    assert_eq!(by_manager.status, pb::RecordStatus::Retired as i32);
    let report = admin
        .admin
        .run_disposal(pb::RunDisposalRequest {})
        .await
        .expect("disposal")
        .into_inner();
    assert_eq!(report.disposed, 1, "{report:?}");
    let described = manager
        .locker
        .describe(pb::DescribeRequest {
            handle: old.clone(),
        })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(described.status, pb::RecordStatus::Disposed as i32);
    let kept = manager
        .locker
        .describe(pb::DescribeRequest { handle: staff })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(kept.status, pb::RecordStatus::Retired as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_due_when_a_handler_retired_it_waits_for_a_manager() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let purposes = dir.path().join("purposes.toml");
    std::fs::write(
        &purposes,
        "[[purpose]]\ncode = \"STAFF_WITHHOLDING\"\narticle = \"1-④\"\nlabel_ja = \"源泉徴収票\"\nretention_years = 7\n\
         [[purpose]]\ncode = \"EVENT_FEE\"\narticle = \"2-①\"\nlabel_ja = \"謝金\"\nretention_years = 0\n",
    )
    .expect("purposes");
    let (daemon, mut admin, mut approver) = start_from_config(
        &data,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nallow_insecure = true\n[purposes]\nfile = \"{}\"\n",
            data.display(),
            purposes.display()
        ),
        DaemonOptions::default(),
    )
    .await;
    admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "dev".into(),
            name: String::new(),
        })
        .await
        .expect("tenant");
    let token = operator_token(&mut admin, &mut approver, "dev", "h", pb::Role::Handler).await;
    let mut handler = daemon.client(Some(token)).await;
    let granted = admin
        .admin
        .grant_purposes(pb::GrantRequest {
            operator_id: "h".into(),
            tenant: "dev".into(),
            purposes: vec!["EVENT_FEE".into()],
        })
        .await
        .expect("grant")
        .into_inner();
    approve(&mut approver, granted.pending_request).await;
    let manager_token =
        operator_token(&mut admin, &mut approver, "dev", "m", pb::Role::Manager).await;
    let granted = admin
        .admin
        .grant_purposes(pb::GrantRequest {
            operator_id: "m".into(),
            tenant: "dev".into(),
            purposes: vec!["EVENT_FEE".into()],
        })
        .await
        .expect("grant")
        .into_inner();
    approve(&mut approver, granted.pending_request).await;
    let mut manager = daemon.client(Some(manager_token)).await;

    // Retention 0: retired today, the record is due today.
    let handle = seal(&mut handler, "S1", 21, &["EVENT_FEE"]).await;
    let retired = retire(&mut handler, &handle, &jst_date_in(0))
        .await
        .expect("retire");
    assert_eq!(retired.status, pb::RecordStatus::Retired as i32);
    for _ in 0..2 {
        let report = admin
            .admin
            .run_disposal(pb::RunDisposalRequest {})
            .await
            .expect("disposal")
            .into_inner();
        assert_eq!(report.disposed, 0, "held for a manager: {report:?}");
    }
    assert!(daemon.log().contains("not disposed until a manager"));
    let disposed = manager
        .locker
        .dispose(pb::DisposeRequest {
            handle: handle.clone(),
            reason: "保存期間なし・管理者確認".into(),
        })
        .await
        .expect("a manager disposes")
        .into_inner();
    assert_eq!(disposed.status, pb::RecordStatus::Disposed as i32);
}
