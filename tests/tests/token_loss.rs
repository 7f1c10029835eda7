//! Token loss mid-load, on SoftHSM (the token's storage disappears) and on a TPM (the swtpm is
//! killed): no number is released without the token, every call is audited, health turns
//! NOT_SERVING; when the token is back, unseal works again without restarting the daemon.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use vault_client::{Client, pb};
use vault_daemon::devkit::swtpm::Swtpm;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{export_audit, operator_token, seal_request, wait_for_health, with_id};
use vault_tests::{Daemon, DaemonOptions};

const W: &str = "STAFF_WITHHOLDING";

/// Seals records, runs an unseal load, calls `lose`, checks the outage, calls `restore`,
/// checks recovery and the audit log.
async fn exercise_token_loss(
    daemon: &Daemon,
    handler: Client,
    mut auditor: Client,
    lose: impl FnOnce(),
    restore: impl FnOnce(),
) {
    let mut handler = handler;
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
    wait_for_health(daemon, ServingStatus::Serving).await;

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

    lose();
    wait_for_health(daemon, ServingStatus::NotServing).await;
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

    restore();
    wait_for_health(daemon, ServingStatus::Serving).await;
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
    let entries = export_audit(&mut auditor).await;
    for (id, outcome) in &outcomes {
        let matching: Vec<_> = entries.iter().filter(|e| &e.request_id == id).collect();
        assert_eq!(matching.len(), 1, "{id}");
        let expected = if outcome.is_ok() { "OK" } else { "UNAVAILABLE" };
        assert_eq!(matching[0].code, expected, "{id}");
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
    let tokens = daemon.data_dir.join("softhsm").join("tokens");
    let gone = daemon.data_dir.join("softhsm").join("tokens.gone");
    let handler = daemon.dev_client("dev-handler").await;
    let auditor = daemon.dev_client("dev-auditor").await;
    exercise_token_loss(
        &daemon,
        handler,
        auditor,
        || std::fs::rename(&tokens, &gone).expect("take the token away"),
        || std::fs::rename(&gone, &tokens).expect("give the token back"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tpm_loss_mid_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("tpm-state");
    let tpm = std::sync::Mutex::new(Some(
        Swtpm::start(&state, None).expect("swtpm is required (Debian package swtpm)"),
    ));
    let port = tpm
        .lock()
        .expect("lock")
        .as_ref()
        .map(|t| t.port)
        .expect("started");
    let data = dir.path().join("data");
    let auth = vault_daemon::devkit::swtpm::auth_file(&dir.path().join("auth")).expect("auth");
    let (daemon, mut admin, mut approver) = vault_tests::rpc::start_from_config(
        &data,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nkind = \"tpm\"\ntimeout_ms = 1500\n[backend.tpm]\ntcti = \"swtpm:host=127.0.0.1,port={port}\"\nauth_file = \"{}\"\n",
            data.display(),
            auth.display()
        ),
        DaemonOptions::default(),
    )
    .await;
    let handler_token = vault_tests::rpc::tenant_with_operator(
        &mut admin,
        &mut approver,
        "dev",
        "handler",
        pb::Role::Handler,
    )
    .await;
    let auditor_token = operator_token(
        &mut admin,
        &mut approver,
        "dev",
        "auditor",
        pb::Role::Auditor,
    )
    .await;
    let handler = daemon.client(Some(handler_token)).await;
    let auditor = daemon.client(Some(auditor_token)).await;
    exercise_token_loss(
        &daemon,
        handler,
        auditor,
        || {
            if let Some(mut running) = tpm.lock().expect("lock").take() {
                running.kill();
            }
        },
        || {
            *tpm.lock().expect("lock") =
                Some(Swtpm::start(&state, Some(port)).expect("restart swtpm"));
        },
    )
    .await;
}
