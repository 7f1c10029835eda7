//! Connections an attacker opens and leaves: idle sockets and stalled TLS handshakes are
//! closed after their timeouts, a cap bounds how many are open at once, and the daemon keeps
//! serving real clients meanwhile.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use vault_client::pb;
use vault_tests::DaemonOptions;
use vault_tests::pki::Pki;
use vault_tests::rpc::start_from_config;

/// When the daemon closed each of `sockets` (a read saw the end or an error), measured from
/// `start`, or `None` for those still open at `start + limit`. Each is watched by its own task.
async fn closing_times(
    sockets: Vec<TcpStream>,
    start: Instant,
    limit: Duration,
) -> Vec<Option<Duration>> {
    let mut tasks = tokio::task::JoinSet::new();
    for mut socket in sockets {
        tasks.spawn(async move {
            let mut buf = [0u8; 256];
            let deadline = tokio::time::Instant::from_std(start + limit);
            loop {
                match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
                    Err(_) => return None,
                    Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
                    Ok(Ok(_)) => {}
                }
            }
        });
    }
    let mut times = Vec::new();
    while let Some(time) = tasks.join_next().await {
        times.push(time.expect("watcher"));
    }
    times
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

fn plaintext_config(data: &Path, server: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n[store]\ndata_dir = \"{}\"\n[backend]\nallow_insecure = true\n",
        data.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (daemon, _admin, _approver) = start_from_config(
        &data,
        &plaintext_config(&data, "idle_timeout_secs = 2\nmax_connections = 20"),
        DaemonOptions::default(),
    )
    .await;
    let baseline = open_fds(daemon.pid());

    // 200 sockets that never say anything. Beyond the cap they are closed at once; the ones let
    // in are closed once idle for 2 s.
    let start = Instant::now();
    let mut sockets = Vec::new();
    for _ in 0..200 {
        sockets.push(TcpStream::connect(daemon.addr).await.expect("connect"));
    }
    let times = closing_times(sockets, start, Duration::from_secs(8)).await;
    assert!(
        times.iter().all(Option::is_some),
        "a socket stayed open past the idle timeout"
    );
    let at_once = times
        .iter()
        .flatten()
        .filter(|t| **t < Duration::from_millis(1500))
        .count();
    let when_idle = times.len() - at_once;
    // The admin's own connection holds one place, so at most 19 of these were let in.
    assert!(when_idle <= 19, "{when_idle} held past the cap");
    assert!(when_idle >= 10, "{when_idle}: the cap let in what it could");
    assert!(
        times.iter().flatten().all(|t| *t < Duration::from_secs(5)),
        "{times:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        open_fds(daemon.pid()) <= baseline + 2,
        "descriptors back to where they were"
    );

    // A real client is served (a new connection: the old one was idle too).
    let token = vault_client::read_token_file(&data.join("initial-admin.token")).expect("token");
    let mut fresh = daemon.client(Some(token)).await;
    fresh
        .admin
        .list_purposes(pb::ListPurposesRequest {})
        .await
        .expect("served after the flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_tls_handshakes_are_closed_while_clients_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::create(dir.path());
    let data = dir.path().join("data");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_handshake_timeout_secs = 1\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n[store]\ndata_dir = \"{}\"\n[backend]\nallow_insecure = true\n",
        pki.server.0.display(),
        pki.server.1.display(),
        data.display()
    );
    let config_file = dir.path().join("locker.toml");
    std::fs::write(&config_file, config).expect("config");
    let daemon = vault_tests::Daemon::start(
        &data,
        DaemonOptions {
            config: Some(config_file),
            ..DaemonOptions::default()
        },
    );
    // 300 connections that never start their handshake.
    let start = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..300 {
        stalled.push(TcpStream::connect(daemon.addr).await.expect("connect"));
    }
    // Meanwhile a client completes its own and is served.
    let token = vault_client::read_token_file(&data.join("initial-admin.token")).expect("token");
    let mut client_config =
        vault_client::ClientConfig::new(format!("https://{}", daemon.addr), Some(token));
    client_config.ca = Some(pki.ca.clone());
    let mut client = vault_client::Client::connect(&client_config)
        .await
        .expect("TLS client connects while handshakes stall");
    client
        .admin
        .list_purposes(pb::ListPurposesRequest {})
        .await
        .expect("served");
    let times = closing_times(stalled, start, Duration::from_secs(6)).await;
    assert!(
        times
            .iter()
            .all(|t| t.is_some_and(|t| t < Duration::from_secs(4))),
        "stalled handshakes closed after the 1 s timeout: {times:?}"
    );
}
