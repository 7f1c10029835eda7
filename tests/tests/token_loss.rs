//! Token loss mid-load on SoftHSM: the token's storage disappears while clients unseal. No
//! number is released without the token, every call is audited, health turns NOT_SERVING; when
//! the token is back, unseal works again without restarting the daemon.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use vault_client::pb;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{export_audit, seal_request, with_id};
use vault_tests::{Daemon, DaemonOptions};

const W: &str = "STAFF_WITHHOLDING";

async fn wait_for_health(daemon: &Daemon, want: ServingStatus) {
    let mut health = HealthClient::new(daemon.client(None).await.channel);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: "mynumber.locker.v1.Locker".into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status();
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {status:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn softhsm_token_loss_mid_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(
        &dir.path().join("data"),
        DaemonOptions {
            backend: Some("softhsm".into()),
            ..DaemonOptions::default()
        },
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut records = Vec::new();
    for i in 0..8 {
        let number = valid_number(600 + i);
        let handle = handler
            .locker
            .seal(seal_request("dev", &format!("T{i}"), &number, &[W]))
            .await
            .expect("seal")
            .into_inner()
            .handle;
        records.push((handle, number));
    }
    let records = Arc::new(records);
    wait_for_health(&daemon, ServingStatus::Serving).await;

    // Four clients unseal in a loop, each call with its own request id.
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (mut client, stop, counter, records) = (
            handler.clone(),
            Arc::clone(&stop),
            Arc::clone(&counter),
            Arc::clone(&records),
        );
        workers.push(tokio::spawn(async move {
            let mut outcomes: Vec<(String, Result<(), Code>)> = Vec::new();
            let mut i = w;
            while !stop.load(Ordering::SeqCst) {
                let (handle, number) = &records[i % records.len()];
                let id = format!("tl-{}", counter.fetch_add(1, Ordering::SeqCst));
                let result = client
                    .locker
                    .unseal(with_id(
                        pb::UnsealRequest {
                            handle: handle.clone(),
                            purpose: W.into(),
                        },
                        &id,
                    ))
                    .await;
                let outcome = match result {
                    Ok(response) => {
                        assert_eq!(
                            &response.into_inner().number,
                            number,
                            "a wrong number was released"
                        );
                        Ok(())
                    }
                    Err(status) => Err(status.code()),
                };
                outcomes.push((id, outcome));
                i += 4;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let tokens = daemon.data_dir.join("softhsm").join("tokens");
    let gone = daemon.data_dir.join("softhsm").join("tokens.gone");
    std::fs::rename(&tokens, &gone).expect("take the token away");
    wait_for_health(&daemon, ServingStatus::NotServing).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut probe = handler.clone();
    let status = probe
        .locker
        .unseal(pb::UnsealRequest {
            handle: records[0].0.clone(),
            purpose: W.into(),
        })
        .await
        .expect_err("no token, no number");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    std::fs::rename(&gone, &tokens).expect("give the token back");
    wait_for_health(&daemon, ServingStatus::Serving).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.expect("worker"));
    }
    let ok = outcomes.iter().filter(|(_, o)| o.is_ok()).count();
    let unavailable = outcomes
        .iter()
        .filter(|(_, o)| *o == Err(Code::Unavailable))
        .count();
    assert_eq!(
        ok + unavailable,
        outcomes.len(),
        "only OK or UNAVAILABLE expected: {:?}",
        outcomes
            .iter()
            .filter(|(_, o)| o.is_err() && *o != Err(Code::Unavailable))
            .collect::<Vec<_>>()
    );
    assert!(unavailable > 0, "the outage was not observed by the load");
    assert!(ok > 0);

    // Back without a restart.
    let (handle, number) = &records[3];
    let back = handler
        .locker
        .unseal(pb::UnsealRequest {
            handle: handle.clone(),
            purpose: W.into(),
        })
        .await
        .expect("unseal after the token is back")
        .into_inner()
        .number;
    assert_eq!(back, *number);

    // Every call of the load is in the audit log exactly once, with its outcome.
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    for (id, outcome) in &outcomes {
        let matching: Vec<_> = entries.iter().filter(|e| &e.request_id == id).collect();
        assert_eq!(matching.len(), 1, "{id}");
        let expected = if outcome.is_ok() { "OK" } else { "UNAVAILABLE" };
        assert_eq!(matching[0].code, expected, "{id}");
    }
}
