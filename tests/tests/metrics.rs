//! The Prometheus endpoint: on its own listener, the families operators graph and alert on,
//! and never a number, a token or a subject in it.

use std::io::{Read, Write};

use vault_client::pb;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::seal_request;
use vault_tests::{Daemon, DaemonOptions};

fn scrape(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to metrics");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_commits_backend_and_refusals_without_secrets() {
    use secrecy::ExposeSecret;
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(
        &dir.path().join("data"),
        DaemonOptions {
            args: vec!["--metrics-listen".into(), "127.0.0.1:0".into()],
            ..DaemonOptions::default()
        },
    );
    let addr = daemon
        .banner
        .iter()
        .find_map(|line| line.strip_prefix("metrics listening on "))
        .expect("the metrics address is printed")
        .to_owned();
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = valid_number(4711);
    let subject = "EMP-SECRET-SUBJECT";
    let handle = handler
        .locker
        .seal(seal_request(
            "dev",
            subject,
            &number,
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    for _ in 0..3 {
        handler
            .locker
            .unseal(pb::UnsealRequest {
                handle: handle.clone(),
                purpose: "STAFF_WITHHOLDING".into(),
            })
            .await
            .expect("unseal");
    }
    let mut junk = daemon
        .client(Some("mnt_0123456789abcdef_00".to_owned().into()))
        .await;
    let _ = junk
        .locker
        .unseal(pb::UnsealRequest {
            handle: handle.clone(),
            purpose: "STAFF_WITHHOLDING".into(),
        })
        .await
        .expect_err("junk");

    let text = scrape(&addr);
    for expected in [
        r#"locker_calls_total{rpc="Unseal",code="OK"} 3"#,
        r#"locker_calls_total{rpc="Seal",code="OK"} 1"#,
        r#"locker_calls_total{rpc="Unseal",code="UNAUTHENTICATED"} 1"#,
        "locker_call_duration_seconds_bucket{",
        "locker_audit_commit_duration_seconds_count",
        "locker_audit_commit_batch_size_bucket",
        "locker_audit_writer_queue_depth",
        r#"locker_key_backend_duration_seconds_count{op="unwrap"}"#,
        "locker_serving 1",
        r#"locker_refused_calls_total{reason="TOKEN_MALFORMED"} 1"#,
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    let token = daemon.dev_token("dev-handler");
    for secret in [
        number.as_str(),
        subject,
        handle.as_str(),
        token.expose_secret(),
    ] {
        assert!(!text.contains(secret), "a secret in the metrics");
    }
}
