//! Fail closed: with the key backend unavailable or stuck, unseal returns UNAVAILABLE, releases
//! nothing, is still audited, never hangs, and health turns NOT_SERVING; when the backend is
//! back, calls work again without restarting the daemon.

use std::time::{Duration, Instant};

use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use vault_client::pb;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{export_audit, seal_request, wait_for_health, with_id};
use vault_tests::{Daemon, DaemonOptions};

const W: &str = "STAFF_WITHHOLDING";

fn set_fault(daemon: &Daemon, fault: &str) {
    let path = daemon
        .data_dir
        .join("hsm-sim")
        .join(hsm_sim::FAULT_FILE_NAME);
    if fault.is_empty() {
        std::fs::remove_file(path).expect("clear fault");
    } else {
        std::fs::write(path, fault).expect("set fault");
    }
}

/// A sim daemon whose token reads its fault from the control file.
fn start_with_fault_file(data_dir: &std::path::Path) -> Daemon {
    Daemon::start(
        data_dir,
        DaemonOptions {
            backend: Some("sim".into()),
            sim_faults: true,
            ..DaemonOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_backend_releases_nothing_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start_with_fault_file(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = valid_number(77);
    let handle = handler
        .locker
        .seal(seal_request("dev", "F1", &number, &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    wait_for_health(&daemon, ServingStatus::Serving).await;

    set_fault(&daemon, "unavailable");
    let status = handler
        .locker
        .unseal(with_id(
            pb::UnsealRequest {
                handle: handle.clone(),
                purpose: W.into(),
            },
            "fc-unseal",
        ))
        .await
        .expect_err("backend down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(!status.message().contains(&number));
    let status = handler
        .locker
        .seal(with_id(
            seal_request("dev", "F2", &valid_number(78), &[W]),
            "fc-seal",
        ))
        .await
        .expect_err("backend down");
    assert_eq!(status.code(), Code::Unavailable);
    wait_for_health(&daemon, ServingStatus::NotServing).await;

    set_fault(&daemon, "");
    wait_for_health(&daemon, ServingStatus::Serving).await;
    let back = handler
        .locker
        .unseal(pb::UnsealRequest {
            handle,
            purpose: W.into(),
        })
        .await
        .expect("unseal after recovery")
        .into_inner()
        .number;
    assert_eq!(back, number);

    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    for id in ["fc-unseal", "fc-seal"] {
        let matching: Vec<_> = entries.iter().filter(|e| e.request_id == id).collect();
        assert_eq!(matching.len(), 1, "{id}");
        assert_eq!(
            (matching[0].outcome.as_str(), matching[0].code.as_str()),
            ("FAILED", "UNAVAILABLE")
        );
    }
    // Nothing about the failed seal was stored.
    let status = handler
        .locker
        .lookup(pb::LookupRequest {
            tenant: "dev".into(),
            number: valid_number(78),
        })
        .await
        .expect_err("not stored");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_backend_times_out_instead_of_hanging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start_with_fault_file(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let handle = handler
        .locker
        .seal(seal_request("dev", "S1", &valid_number(80), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;

    // The dev backend timeout is 2 s; the token now takes 4 s per operation.
    set_fault(&daemon, "delay 4000");
    let started = Instant::now();
    let status = handler
        .locker
        .unseal(with_id(
            pb::UnsealRequest {
                handle: handle.clone(),
                purpose: W.into(),
            },
            "fc-stuck",
        ))
        .await
        .expect_err("stuck backend");
    let waited = started.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("did not answer"),
        "{}",
        status.message()
    );
    assert!(
        waited < Duration::from_millis(3800),
        "waited {waited:?}: the call hung on the backend"
    );
    set_fault(&daemon, "");

    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    let entry = entries
        .iter()
        .find(|e| e.request_id == "fc-stuck")
        .expect("audited");
    assert_eq!(
        (entry.outcome.as_str(), entry.code.as_str()),
        ("FAILED", "UNAVAILABLE")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_deadline_answers_deadline_exceeded_and_is_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A backend slower than the server's deadline (1 s), under its own timeout (10 s).
    let (daemon, mut admin, mut approver) = vault_tests::rpc::start_from_config(
        &data,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nrequest_timeout_secs = 1\n[store]\ndata_dir = \"{}\"\n[backend]\nkind = \"sim\"\nallow_insecure = true\nsim_fault_control_file = true\ntimeout_ms = 10000\n",
            data.display()
        ),
        DaemonOptions::default(),
    )
    .await;
    let token = vault_tests::rpc::tenant_with_operator(
        &mut admin,
        &mut approver,
        "t1",
        "h1",
        pb::Role::Handler,
    )
    .await;
    let mut handler = daemon.client(Some(token)).await;
    let handle = handler
        .locker
        .seal(seal_request("t1", "S1", &valid_number(81), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;

    set_fault(&daemon, "delay 3000");
    let started = Instant::now();
    let status = handler
        .locker
        .unseal(with_id(
            pb::UnsealRequest {
                handle,
                purpose: W.into(),
            },
            "fc-deadline",
        ))
        .await
        .expect_err("past the deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    set_fault(&daemon, "");

    let entries = export_audit(&mut admin).await;
    let entry = entries
        .iter()
        .find(|e| e.request_id == "fc-deadline")
        .expect("the interrupted call is audited");
    assert_eq!(
        (
            entry.action.as_str(),
            entry.outcome.as_str(),
            entry.code.as_str()
        ),
        ("UNSEAL", "FAILED", "DEADLINE_EXCEEDED")
    );
}
