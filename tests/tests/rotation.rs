//! Key rotation: under a concurrent unseal load from several clients no unseal fails and every
//! record ends on the new version; a daemon killed with SIGKILL in the middle of the rewrap
//! resumes after a restart and completes, losing nothing.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use vault_client::{Client, pb};
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{operator_token, seal_many, seal_request, unseal_all};
use vault_tests::{Daemon, DaemonOptions, binary_path};

const W: &str = "STAFF_WITHHOLDING";

async fn status(client: &mut Client, tenant: &str) -> pb::TenantKeyStatus {
    client
        .admin
        .key_status(pb::KeyStatusRequest {
            tenant: tenant.into(),
        })
        .await
        .expect("key status")
        .into_inner()
        .tenants
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_concurrent_unseal_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let records = Arc::new(seal_many(&mut handler, "dev", 250, 2000).await);

    let stop = Arc::new(AtomicBool::new(false));
    let mut loads = Vec::new();
    for w in 0..3 {
        let (mut client, stop, records) =
            (handler.clone(), Arc::clone(&stop), Arc::clone(&records));
        loads.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut i = w * 7;
            while !stop.load(Ordering::SeqCst) {
                let (handle, number) = &records[i % records.len()];
                match client
                    .locker
                    .unseal(pb::UnsealRequest {
                        handle: handle.clone(),
                        purpose: W.into(),
                    })
                    .await
                {
                    Ok(response) => {
                        assert_eq!(&response.into_inner().number, number);
                        ok += 1;
                    }
                    Err(status) => failed.push(status),
                }
                i += 3;
            }
            (ok, failed)
        }));
    }

    // The admin rotates with the CLI and follows the rewrap (JSON progress lines).
    let output = Command::new(binary_path("vault-client"))
        .arg("--endpoint")
        .arg(daemon.endpoint())
        .arg("--token-file")
        .arg(daemon.data_dir.join("tokens").join("dev-admin.token"))
        .args(["--output", "json", "keys", "rotate", "--tenant", "dev"])
        .output()
        .expect("vault-client keys rotate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let progress: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json progress line"))
        .collect();
    let last = progress.last().expect("progress");
    assert_eq!(last["finished"], true, "{progress:?}");
    assert_eq!(last["done"], 250);
    assert_eq!(last["total"], 250);
    assert_eq!(last["target_version"], 2);

    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total_ok = 0;
    for load in loads {
        let (ok, failed) = load.await.expect("load");
        assert!(
            failed.is_empty(),
            "unseals failed during rotation: {failed:?}"
        );
        total_ok += ok;
    }
    assert!(total_ok > 0);

    let mut admin = daemon.dev_client("dev-admin").await;
    let keys = status(&mut admin, "dev").await;
    let v1 = keys.versions.iter().find(|v| v.version == 1).expect("v1");
    let v2 = keys.versions.iter().find(|v| v.version == 2).expect("v2");
    assert_eq!((v1.state.as_str(), v1.records), ("decrypt-only", 0));
    assert_eq!((v2.state.as_str(), v2.records), ("active", 250));

    // Every record opens, is found by number (index recomputed), and de-duplication still holds.
    unseal_all(&mut handler, &records).await;
    for (handle, number) in records.iter().step_by(25) {
        let found = handler
            .locker
            .lookup(pb::LookupRequest {
                tenant: "dev".into(),
                number: number.clone(),
            })
            .await
            .expect("lookup")
            .into_inner()
            .handle;
        assert_eq!(&found, handle);
    }
    let again = handler
        .locker
        .seal(seal_request("dev", "R0", &records[0].1, &[W]))
        .await
        .expect("seal")
        .into_inner();
    assert!(again.existing);
    assert_eq!(again.handle, records[0].0);
    // New seals use the new version.
    let fresh = handler
        .locker
        .seal(seal_request("dev", "NEW", &valid_number(9999), &[W]))
        .await
        .expect("seal")
        .into_inner();
    let described = handler
        .locker
        .describe(pb::DescribeRequest {
            handle: fresh.handle,
        })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(described.key_version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_rewrap_resumes_and_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nallow_insecure = true\n[keys]\nrewrap_batch = 5\nrewrap_pause_ms = 150\n",
            data.display()
        ),
    )
    .expect("config");
    let options = DaemonOptions {
        config: Some(config),
        ..DaemonOptions::default()
    };
    let daemon = Daemon::start(&data, options);
    let admin_token =
        vault_client::read_token_file(&data.join("initial-admin.token")).expect("admin token");
    let mut admin = daemon.client(Some(admin_token.clone())).await;
    let mut approver = daemon
        .client(Some(
            vault_client::read_token_file(&data.join("initial-admin2.token")).expect("admin2"),
        ))
        .await;
    admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            name: String::new(),
        })
        .await
        .expect("tenant");
    let token = operator_token(&mut admin, &mut approver, "acme", "h", pb::Role::Handler).await;
    let mut handler = daemon.client(Some(token.clone())).await;
    let records = seal_many(&mut handler, "acme", 80, 3000).await;

    admin
        .admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "acme".into(),
        })
        .await
        .expect("rotate");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = status(&mut admin, "acme").await.job.expect("job");
        if job.done >= 15 {
            assert!(
                job.done < 80,
                "the rewrap finished before the kill; slow it down"
            );
            break;
        }
        assert!(Instant::now() < deadline, "rewrap made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((admin, handler));
    let daemon = daemon.kill_and_restart();

    let mut admin = daemon.client(Some(admin_token)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let job = status(&mut admin, "acme").await.job.expect("job");
        if job.finished_at_unix_ms != 0 {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the rewrap did not resume: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((job.done, job.total), (80, 80));
    let keys = status(&mut admin, "acme").await;
    assert_eq!(
        keys.versions
            .iter()
            .find(|v| v.version == 1)
            .map(|v| v.records),
        Some(0)
    );
    assert_eq!(
        keys.versions
            .iter()
            .find(|v| v.version == 2)
            .map(|v| v.records),
        Some(80)
    );
    let mut handler = daemon.client(Some(token)).await;
    unseal_all(&mut handler, &records).await;
    let verify = admin
        .admin
        .audit_verify(pb::AuditVerifyRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(verify.ok, "{}", verify.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rewrap_progress_counts_seals_that_raced_the_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    seal_many(&mut handler, "dev", 200, 30_000).await;

    // Seals keep arriving while the rotation counts and commits.
    let stop = Arc::new(AtomicBool::new(false));
    let mut sealers = Vec::new();
    for w in 0..8u64 {
        let (mut client, stop) = (handler.clone(), Arc::clone(&stop));
        sealers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                client
                    .locker
                    .seal(seal_request(
                        "dev",
                        &format!("R{w}-{n}"),
                        &valid_number(40_000 + w * 1000 + n),
                        &[W],
                    ))
                    .await
                    .expect("seal during the rotation");
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut admin = daemon.dev_client("dev-admin").await;
    admin
        .admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "dev".into(),
        })
        .await
        .expect("rotate");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for sealer in sealers {
        sealer.await.expect("sealer");
    }
    vault_tests::rpc::wait_for_rewrap(&mut admin, "dev", 1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let job = status(&mut admin, "dev").await.job.expect("job");
        if job.finished_at_unix_ms != 0 || Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Every record under the old version was counted, so done reaches total and never passes it.
    assert_ne!(job.finished_at_unix_ms, 0, "{job:?}");
    assert_eq!(job.done, job.total, "{job:?}");
    assert!(job.total >= 200, "{job:?}");
}
