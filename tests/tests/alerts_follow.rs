//! `vault-client alerts --follow` is left running by whoever watches the locker: it must ride
//! out a daemon restart and show the alerts raised after it, not exit on the first lost
//! connection.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use vault_client::{Client, pb};
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{operator_token, seal_request, start_from_config};
use vault_tests::{DaemonOptions, binary_path};

/// Unseals one record four times: over a threshold of three an hour, one alert.
async fn burst(handler: &mut Client, number: &str, subject: &str) {
    let handle = handler
        .locker
        .seal(seal_request("t1", subject, number, &["STAFF_WITHHOLDING"]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    for _ in 0..4 {
        handler
            .locker
            .unseal(pb::UnsealRequest {
                handle: handle.clone(),
                purpose: "STAFF_WITHHOLDING".into(),
            })
            .await
            .expect("unseal");
    }
}

fn next_alert(lines: &mpsc::Receiver<String>, operator: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        let alert: serde_json::Value = serde_json::from_str(&line).expect("a JSON alert");
        if alert["operator"] == operator {
            return alert;
        }
    }
    panic!("no alert of {operator} reached the follower");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_follow_rides_out_a_daemon_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A fixed port, so the daemon comes back where the follower looks.
    let port = vault_tests::free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\ndata_dir = \"{}\"\n[backend]\nkind = \"sim\"\nallow_insecure = true\n[monitoring.handler]\nunseals_per_hour = 3\ndistinct_subjects_per_hour = 0\n",
        data.display()
    );
    let (daemon, mut admin, mut approver) =
        start_from_config(&data, &config, DaemonOptions::default()).await;
    admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "t1".into(),
            name: String::new(),
        })
        .await
        .expect("tenant");
    let first = operator_token(
        &mut admin,
        &mut approver,
        "t1",
        "clerk-a",
        pb::Role::Handler,
    )
    .await;
    let second = operator_token(
        &mut admin,
        &mut approver,
        "t1",
        "clerk-b",
        pb::Role::Handler,
    )
    .await;

    let mut follower = Command::new(binary_path("vault-client"))
        .args(["--endpoint", &format!("http://127.0.0.1:{port}")])
        .arg("--token-file")
        .arg(data.join("initial-admin.token"))
        .args(["--output", "json", "alerts", "--follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vault-client alerts --follow");
    let (send, lines) = mpsc::channel();
    let stdout = follower.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });

    let mut clerk_a = daemon.client(Some(first)).await;
    burst(&mut clerk_a, &valid_number(5501), "A-1").await;
    let alert = next_alert(&lines, "clerk-a");
    assert!(
        alert["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unseals_per_hour"))
    );

    // The daemon goes away for a while and comes back on the same address.
    let mut daemon = daemon;
    let status = daemon.stop();
    assert!(status.success());
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        follower.try_wait().expect("poll follower").is_none(),
        "the follower exited when the daemon stopped"
    );
    daemon.start_in_place();

    let mut clerk_b = daemon.client(Some(second)).await;
    burst(&mut clerk_b, &valid_number(5502), "B-1").await;
    let alert = next_alert(&lines, "clerk-b");
    assert!(
        alert["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unseals_per_hour"))
    );
    assert!(follower.try_wait().expect("poll follower").is_none());
    let _ = follower.kill();
    let output = follower.wait_with_output().expect("follower output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("lost the daemon") && stderr.contains("reconnected"),
        "{stderr}"
    );
}
