//! A stalled daemon (SIGSTOP for 10 s, then SIGCONT) under 32 calls in flight: clients give up
//! on their own deadlines meanwhile, and resetting those streams must not make the server close
//! the whole connection (h2's reset-flood guard answered GOAWAY ENHANCE_YOUR_CALM
//! `too_many_resets`, failing every other call on it). Each call ends on its own; afterwards
//! the same channel serves again.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

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
                    Err(status) => {
                        let text = format!("{status:?}");
                        if text.contains("GOAWAY")
                            || text.contains("ENHANCE_YOUR_CALM")
                            || text.contains("too_many")
                        {
                            broken.push(text);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            broken
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&daemon, "-STOP");
    tokio::time::sleep(Duration::from_secs(10)).await;
    signal(&daemon, "-CONT");
    resumed.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut broken = Vec::new();
    for caller in callers {
        broken.extend(caller.await.expect("caller"));
    }
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
