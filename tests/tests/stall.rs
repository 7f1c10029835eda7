//! A stalled daemon (SIGSTOP for 10 s, then SIGCONT) under 32 calls in flight: clients give up
//! on their own deadlines meanwhile, and resetting those streams must not make the server close
//! the whole connection (h2's reset-flood guard answered GOAWAY ENHANCE_YOUR_CALM
//! `too_many_resets`, failing every other call on it). Each call ends on its own deadline and
//! nothing else; afterwards the same TCP connection serves again (the client's channel would
//! reconnect silently, so the test looks at the socket itself).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tonic::Code;
use vault_client::pb;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::seal_request;
use vault_tests::{Daemon, DaemonOptions};

fn signal(daemon: &Daemon, name: &str) {
    let status = Command::new("kill")
        .args([name, &daemon.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// The client ports of the established TCP connections to `port` on loopback, from the
/// kernel's table: which connections exist, whatever the client library says.
fn connections_to(port: u16) -> Vec<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let mut peers: Vec<u16> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            let remote_port = u16::from_str_radix(remote.rsplit(':').next()?, 16).ok()?;
            // 01: ESTABLISHED.
            (local_port == port && *state == "01").then_some(remote_port)
        })
        .collect();
    peers.sort_unstable();
    peers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ten_second_stall_under_load_keeps_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut daemon = Daemon::start(
        &dir.path().join("data"),
        DaemonOptions {
            backend: Some("sim".into()),
            ..DaemonOptions::default()
        },
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    let handle = handler
        .locker
        .seal(seal_request(
            "dev",
            "S1",
            &valid_number(91),
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect("seal")
        .into_inner()
        .handle;

    // 32 callers on one channel, each call with a 1 s deadline of its own.
    let stop = Arc::new(AtomicBool::new(false));
    let resumed = Arc::new(AtomicBool::new(false));
    let ok_after_resume = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for _ in 0..32 {
        let mut client = handler.clone();
        let (stop, resumed, ok_after_resume) = (
            Arc::clone(&stop),
            Arc::clone(&resumed),
            Arc::clone(&ok_after_resume),
        );
        let handle = handle.clone();
        callers.push(tokio::spawn(async move {
            let mut broken = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let mut request = tonic::Request::new(pb::UnsealRequest {
                    handle: handle.clone(),
                    purpose: "STAFF_WITHHOLDING".into(),
                });
                request.set_timeout(Duration::from_secs(1));
                match client.locker.unseal(request).await {
                    Ok(_) if resumed.load(Ordering::SeqCst) => {
                        ok_after_resume.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    // Its own deadline, passed while the daemon was stopped: expected.
                    Err(status)
                        if !resumed.load(Ordering::SeqCst)
                            && matches!(
                                status.code(),
                                Code::Cancelled | Code::DeadlineExceeded
                            ) =>
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    // Anything else (the connection closed under it, any refusal) is the bug.
                    Err(status) => {
                        broken.push(format!("{:?}: {}", status.code(), status.message()));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            broken
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let port: u16 = daemon
        .endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let before = connections_to(port);
    assert_eq!(before.len(), 1, "one channel, one connection: {before:?}");
    signal(&daemon, "-STOP");
    tokio::time::sleep(Duration::from_secs(10)).await;
    signal(&daemon, "-CONT");
    resumed.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let after = connections_to(port);
    let mut broken = Vec::new();
    for caller in callers {
        broken.extend(caller.await.expect("caller"));
    }
    assert_eq!(
        after, before,
        "the connection the calls ran on was closed and another opened"
    );
    assert!(
        broken.is_empty(),
        "the server closed the connection: {} calls failed with it, e.g. {}",
        broken.len(),
        broken[0]
    );
    assert!(
        ok_after_resume.load(Ordering::SeqCst) > 0,
        "no call succeeded after the stall"
    );
    drop(handler);
    assert!(daemon.stop().success());
}
