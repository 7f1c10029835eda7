//! Limits that stop a handler from abusing what its role allows: a retirement cannot become a
//! way to destroy records (other purposes' records, dates before acquisition or long past, a
//! record already due when retired).

use std::path::Path;

use tonic::Code;
use vault_client::{Client, pb};
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{
    approve, grant, jst_date_in, operator_token, seal_request, start_from_config,
    tenant_with_operator,
};
use vault_tests::{Daemon, DaemonOptions};

const W: &str = "STAFF_WITHHOLDING";

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
    vault_tests::rpc::grant(&mut admin, &mut approver, "fees", "dev", &["PAYEE_FEES"]).await;
    let (_, token) = vault_tests::rpc::split_token(
        &mut admin,
        &mut approver,
        pb::IssueTokenRequest {
            operator_id: "fees".into(),
            ttl_seconds: 3600,
            cert_fingerprint: String::new(),
        },
    )
    .await;
    let mut fees = daemon.client(Some(token)).await;

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
    vault_tests::rpc::grant(&mut admin, &mut approver, "h", "dev", &["EVENT_FEE"]).await;
    let manager_token =
        operator_token(&mut admin, &mut approver, "dev", "m", pb::Role::Manager).await;
    vault_tests::rpc::grant(&mut admin, &mut approver, "m", "dev", &["EVENT_FEE"]).await;
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

fn config_daemon_text(data: &Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nallow_insecure = true\n{extra}",
        data.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_lookups_hit_the_rate_limit_and_raise_alerts() {
    use tonic_types::StatusExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // The default limits of a config daemon: a handler may look up 5 numbers a second, 300 at
    // once; 200 numbers not held within an hour raise an alert.
    let (daemon, mut admin, mut approver) = start_from_config(
        &data,
        &config_daemon_text(&data, ""),
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
    let token = operator_token(
        &mut admin,
        &mut approver,
        "dev",
        "prober",
        pb::Role::Handler,
    )
    .await;
    let mut prober = daemon.client(Some(token)).await;

    // "Does this office hold this number?", for number after number.
    let mut refused = None;
    let mut answered = 0u64;
    for seed in 0..2_000u64 {
        match prober
            .locker
            .lookup(pb::LookupRequest {
                tenant: "dev".into(),
                number: valid_number(900_000 + seed),
            })
            .await
        {
            Err(status) if status.code() == Code::ResourceExhausted => {
                refused = Some(status);
                break;
            }
            Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
            Ok(_) => panic!("no number is held"),
        }
        answered += 1;
    }
    let status = refused.expect("the loop is stopped by the rate limit");
    assert!(
        (290..=320).contains(&answered),
        "burst of about 300: {answered}"
    );
    let details = status.get_error_details();
    let retry = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("retry info");
    assert!(retry <= std::time::Duration::from_millis(250), "{retry:?}");
    assert_eq!(
        details.error_info().expect("error info").reason,
        "RATE_LIMITED"
    );
    // Another hundred attempts at full speed: only what the bucket refilled meanwhile (5 a
    // second) passes; the refusals are counted rather than committed one by one.
    let mut still_refused = 0;
    for seed in 0..100u64 {
        let status = prober
            .locker
            .lookup(pb::LookupRequest {
                tenant: "dev".into(),
                number: valid_number(950_000 + seed),
            })
            .await
            .expect_err("not held, or limited");
        match status.code() {
            Code::ResourceExhausted => still_refused += 1,
            code => assert_eq!(code, Code::NotFound),
        }
    }
    assert!(still_refused >= 80, "{still_refused}");
    // After the retry delay, a call passes again.
    tokio::time::sleep(retry + std::time::Duration::from_millis(300)).await;
    let status = prober
        .locker
        .lookup(pb::LookupRequest {
            tenant: "dev".into(),
            number: valid_number(990_001),
        })
        .await
        .expect_err("not held");
    assert_eq!(status.code(), Code::NotFound);

    let alerts = admin
        .admin
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .expect("alerts")
        .into_inner()
        .alerts;
    let reasons: Vec<&str> = alerts.iter().map(|a| a.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("lookup_misses_per_hour")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("rate_limited")),
        "{reasons:?}"
    );
    let entries = vault_tests::rpc::export_audit(&mut admin).await;
    let limited = entries
        .iter()
        .filter(|e| e.code == "RESOURCE_EXHAUSTED")
        .count();
    assert!(
        (1..=3).contains(&limited),
        "101 refusals, aggregated: {limited}"
    );
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junk_token_flood_costs_a_few_entries_and_the_daemon_keeps_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut daemon, mut admin, _approver) = start_from_config(
        &data,
        &config_daemon_text(&data, ""),
        DaemonOptions::default(),
    )
    .await;
    let before = vault_tests::rpc::export_audit(&mut admin).await.len();
    let junk = format!("mnt_{}_{}", "0123456789abcdef", "ab".repeat(32));
    let flood = daemon.client(Some(junk.into())).await;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let mut client = flood.clone();
        tasks.spawn(async move {
            let mut codes = std::collections::HashMap::new();
            for _ in 0..1_250 {
                let code = client
                    .admin
                    .list_purposes(pb::ListPurposesRequest {})
                    .await
                    .expect_err("junk")
                    .code();
                *codes.entry(code as i32).or_insert(0u32) += 1;
            }
            let _ = worker;
            codes
        });
    }
    let mut codes = std::collections::HashMap::new();
    while let Some(result) = tasks.join_next().await {
        for (code, n) in result.expect("worker") {
            *codes.entry(code).or_insert(0u32) += n;
        }
    }
    assert_eq!(codes.values().sum::<u32>(), 20_000);
    // The first 60 (and the one a second the bucket refills) are told the token is wrong, the
    // rest that the address is locked out.
    let told = codes
        .get(&(Code::Unauthenticated as i32))
        .copied()
        .unwrap_or(0);
    assert!((60..=90).contains(&told), "{codes:?}");
    // The daemon answers: the lockout lifts as the bucket refills.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    admin
        .admin
        .list_purposes(pb::ListPurposesRequest {})
        .await
        .expect("an admin is served again");
    // Stopping flushes the last counts; every junk call is accounted for in a few entries.
    assert!(daemon.stop().success());
    daemon.start_in_place();
    let mut admin = daemon
        .client(Some(
            vault_client::read_token_file(&data.join("initial-admin.token")).expect("token"),
        ))
        .await;
    let entries = vault_tests::rpc::export_audit(&mut admin).await;
    let junk_entries: Vec<&pb::AuditEntry> = entries[before..]
        .iter()
        .filter(|e| e.outcome == "DENIED")
        .collect();
    assert!(junk_entries.len() <= 12, "{}", junk_entries.len());
    let accounted: u64 = junk_entries
        .iter()
        .map(|e| match e.action.as_str() {
            "REFUSAL_SUMMARY" => e
                .reason
                .split_once(' ')
                .and_then(|(n, _)| n.parse().ok())
                .expect("count"),
            _ => 1,
        })
        .sum();
    assert_eq!(accounted, 20_000);
    assert!(junk_entries.iter().all(|e| e.peer.starts_with("127.0.0.1")));
}

/// The code and, for RESOURCE_EXHAUSTED, the reason and retry delay of a refusal.
fn limited(status: &tonic::Status) -> Option<(String, std::time::Duration)> {
    use tonic_types::StatusExt;
    if status.code() != Code::ResourceExhausted {
        return None;
    }
    let details = status.get_error_details();
    let reason = details.error_info().expect("error info").reason.clone();
    let retry = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("retry info");
    Some((reason, retry))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_about_existence_draws_from_the_lookup_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A lookup budget of 5 at once, one more a second.
    let (daemon, mut admin, mut approver) = start_from_config(
        &data,
        &config_daemon_text(
            &data,
            "[rate_limits.handler]\nlookup_per_second = 1.0\nburst_seconds = 5.0\n",
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
    let mut probers = Vec::new();
    for id in ["sealer", "corrector"] {
        let token = operator_token(&mut admin, &mut approver, "dev", id, pb::Role::Handler).await;
        probers.push(daemon.client(Some(token)).await);
    }
    let mut corrector = probers.pop().expect("corrector");
    let mut sealer = probers.pop().expect("sealer");

    // Seal as an oracle: "already held" answers are lookups.
    let held = valid_number(700_001);
    sealer
        .locker
        .seal(seal_request("dev", "E-1", &held, &[W]))
        .await
        .expect("first seal");
    let mut answered = 0;
    let refusal = loop {
        match sealer
            .locker
            .seal(seal_request("dev", "E-1", &held, &[W]))
            .await
        {
            Ok(response) => {
                assert!(response.into_inner().existing);
                answered += 1;
                assert!(answered <= 6, "the budget of 5 does not stop the probe");
            }
            Err(status) => break status,
        }
    };
    assert!((5..=6).contains(&answered), "{answered}");
    let (reason, retry) = limited(&refusal).expect("RESOURCE_EXHAUSTED");
    assert_eq!(reason, "RATE_LIMITED");
    assert!(retry <= std::time::Duration::from_secs(2), "{retry:?}");
    // While the budget is spent, a seal of a number not held is refused alike: the refusal
    // itself says nothing about the number.
    let fresh = sealer
        .locker
        .seal(seal_request("dev", "E-2", &valid_number(700_002), &[W]))
        .await
        .expect_err("budget spent");
    assert!(limited(&fresh).is_some(), "{fresh:?}");

    // RequestCorrection as an oracle: one pending correction, then numbers probed.
    let own = corrector
        .locker
        .seal(seal_request("dev", "E-3", &valid_number(700_003), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let correct = |number: String| {
        let mut client = corrector.clone();
        let handle = own.clone();
        async move {
            client
                .locker
                .request_correction(pb::CorrectionRequest {
                    handle,
                    number,
                    reason: "番号の誤記".into(),
                    asked_by: "本人".into(),
                })
                .await
        }
    };
    correct(valid_number(700_004)).await.expect("a correction");
    let mut codes = Vec::new();
    for seed in 0..10u64 {
        // Every other probe is a number the tenant holds.
        let number = if seed % 2 == 0 {
            held.clone()
        } else {
            valid_number(710_000 + seed)
        };
        let status = correct(number)
            .await
            .expect_err("one correction is pending");
        codes.push(status.code());
        if let Some((reason, _)) = limited(&status) {
            assert_eq!(reason, "RATE_LIMITED");
        }
    }
    // Held or not, the same answer, then the budget (5, the first correction included) ends it.
    let refused = codes
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    assert!(
        codes[..4].iter().all(|c| *c == Code::FailedPrecondition),
        "{codes:?}"
    );
    assert!(refused >= 5, "{codes:?}");
    assert!(!codes.contains(&Code::AlreadyExists), "{codes:?}");
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_passes_through_a_flooded_shared_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A small failure budget, so the flood empties it at once.
    let (daemon, mut admin, _approver) = start_from_config(
        &data,
        &config_daemon_text(
            &data,
            "[rate_limits]\nfailed_auth_per_second = 1.0\nfailed_auth_burst = 5\n",
        ),
        DaemonOptions::default(),
    )
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = tokio::task::JoinSet::new();
    for worker in 0..2u8 {
        // Junk from the same address (127.0.0.1) as the admin: wrong secrets for made-up ids.
        let junk = format!("mnt_{:016x}_{}", worker, "ab".repeat(32));
        let mut client = daemon.client(Some(junk.into())).await;
        let stop = stop.clone();
        flood.spawn(async move {
            let mut codes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = client
                    .admin
                    .list_purposes(pb::ListPurposesRequest {})
                    .await
                    .expect_err("junk");
                codes.push(status.code());
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            codes
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut served = 0;
    for _ in 0..30 {
        if admin
            .admin
            .list_purposes(pb::ListPurposesRequest {})
            .await
            .is_ok()
        {
            served += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut junk_codes = Vec::new();
    while let Some(codes) = flood.join_next().await {
        junk_codes.extend(codes.expect("flood"));
    }
    assert!(
        served >= 29,
        "a valid token through a flooded address: {served} of 30"
    );
    // The flood was about 40 calls a second, and was locked out.
    assert!(junk_codes.len() >= 30, "{}", junk_codes.len());
    assert!(
        junk_codes.contains(&Code::ResourceExhausted),
        "{junk_codes:?}"
    );
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managers_disclosures_draw_from_a_lookup_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A manager may answer three disclosures at once, then one every ten seconds.
    let (daemon, mut admin, mut approver) = start_from_config(
        &data,
        &config_daemon_text(
            &data,
            "[rate_limits.manager]\nlookup_per_second = 0.1\nburst_seconds = 30.0\n",
        ),
        DaemonOptions::default(),
    )
    .await;
    let manager_token =
        tenant_with_operator(&mut admin, &mut approver, "dev", "mgr", pb::Role::Manager).await;
    grant(&mut admin, &mut approver, "mgr", "dev", &[W]).await;
    let mut manager = daemon.client(Some(manager_token)).await;
    // Probing numbers through disclosures: whether each is held is an answer, so the budget
    // runs out however they are asked.
    let mut answered = 0;
    let refusal = loop {
        let asked = manager
            .admin
            .disclose(pb::DisclosureRequest {
                tenant: "dev".into(),
                subject: Some(pb::disclosure_request::Subject::Number(valid_number(
                    800_000 + answered,
                ))),
                reference: format!("probe-{answered}"),
                ..pb::DisclosureRequest::default()
            })
            .await;
        match asked {
            Ok(answer) => {
                assert!(!answer.into_inner().held);
                answered += 1;
                assert!(answered <= 4, "the budget of 3 does not stop the probe");
            }
            Err(status) => break status,
        }
    };
    assert!((3..=4).contains(&answered), "{answered}");
    let (reason, retry) = limited(&refusal).expect("RESOURCE_EXHAUSTED");
    assert_eq!(reason, "RATE_LIMITED");
    assert!(retry <= std::time::Duration::from_secs(11), "{retry:?}");
}
