//! Signals as an operator sends them: SIGHUP under load reloads the log filter and the
//! monitoring thresholds and keeps serving; a file that does not load keeps the old settings;
//! SIGTERM exits non-zero when the final checkpoint cannot be signed.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vault_client::pb;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{export_audit, seal_request, start_from_config, tenant_with_operator};
use vault_tests::{Daemon, DaemonOptions};

fn config_text(data: &Path, level: &str, unseals_per_hour: u32) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nkind = \"sim\"\nallow_insecure = true\n[log]\nlevel = \"{level}\"\n[monitoring.handler]\nunseals_per_hour = {unseals_per_hour}\n",
        data.display()
    )
}

fn send(signal: &str, daemon: &Daemon) {
    let status = Command::new("kill")
        .args([signal, &daemon.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits (up to 10 s) until the daemon's log holds `text`.
async fn wait_for_log(daemon: &Daemon, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_under_load_and_a_bad_file_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = data.with_extension("toml");
    let (mut daemon, mut admin, mut approver) = start_from_config(
        &data,
        &config_text(&data, "info", 1000),
        DaemonOptions {
            // No RUST_LOG: `[log] level` decides, and a reload can change it.
            log: Some(String::new()),
            ..DaemonOptions::default()
        },
    )
    .await;
    let token =
        tenant_with_operator(&mut admin, &mut approver, "t1", "h1", pb::Role::Handler).await;
    let mut handler = daemon.client(Some(token)).await;
    let handle = handler
        .locker
        .seal(seal_request(
            "t1",
            "E1",
            &valid_number(71),
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect("seal")
        .into_inner()
        .handle;

    // Load throughout: unseals one after another until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, calls, errors) = (Arc::clone(&stop), Arc::clone(&calls), Arc::clone(&errors));
        let mut handler = handler.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let result = handler
                    .locker
                    .unseal(pb::UnsealRequest {
                        handle: handle.clone(),
                        purpose: "STAFF_WITHHOLDING".into(),
                    })
                    .await;
                calls.fetch_add(1, Ordering::SeqCst);
                if result.is_err() {
                    errors.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A good file: a lower threshold and a debug filter for the locker.
    std::fs::write(&config, config_text(&data, "info,vault_daemon=debug", 3)).expect("config");
    send("-HUP", &daemon);
    wait_for_log(&daemon, "SIGHUP: monitoring thresholds reloaded").await;
    wait_for_log(&daemon, "SIGHUP: log level reloaded").await;
    // The new threshold is in force: the load crosses it and raises an alert.
    let mut auditor_alerts = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while auditor_alerts == 0 {
        assert!(Instant::now() < deadline, "no alert after the reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
        auditor_alerts = export_audit(&mut admin)
            .await
            .iter()
            .filter(|e| e.action == "ALERT" && e.operator_id == "h1")
            .count();
    }

    // A file that does not load: refused, the settings in force stay, the daemon serves on.
    std::fs::write(&config, "this is [[ not toml").expect("config");
    send("-HUP", &daemon);
    wait_for_log(&daemon, "SIGHUP: reload refused").await;
    let served = calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(calls.load(Ordering::SeqCst) > served, "the load stopped");

    stop.store(true, Ordering::SeqCst);
    load.await.expect("load task");
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "calls failed across the reloads"
    );

    // The per-operator rate limits reload too: one lookup at once, then none for two seconds.
    let limited = format!(
        "{}[rate_limits.handler]\nlookup_per_second = 0.5\nburst_seconds = 2.0\n",
        config_text(&data, "info,vault_daemon=debug", 3)
    );
    std::fs::write(&config, limited).expect("config");
    send("-HUP", &daemon);
    wait_for_log(&daemon, "SIGHUP: rate limits reloaded").await;
    // Said as the configuration says it, not as Rust's Debug of the structs.
    let reloaded = daemon
        .log()
        .lines()
        .filter(|l| l.contains("SIGHUP:") && l.contains("reloaded"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        reloaded.contains("lookup 0.5/s burst 1") && reloaded.contains("unseals_per_hour 3"),
        "{reloaded}"
    );
    for debug in ["RatePolicy", "RoleRates", "Thresholds {", "Some("] {
        assert!(!reloaded.contains(debug), "{debug} in: {reloaded}");
    }
    let lookup = || pb::LookupRequest {
        tenant: "t1".into(),
        number: valid_number(72),
    };
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            handler
                .locker
                .lookup(lookup())
                .await
                .expect_err("not held, or limited")
                .code(),
        );
    }
    assert!(
        codes.contains(&tonic::Code::ResourceExhausted),
        "the reloaded limit is in force: {codes:?}"
    );
    drop((handler, admin));
    let stopped = daemon.stop();
    assert!(stopped.success(), "{stopped:?}\n{}", daemon.log());
    // The debug filter from the reload is in force until the end.
    assert!(
        daemon.log().contains("audit writer drained and stopped"),
        "{}",
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_non_zero_when_the_final_checkpoint_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(
        &data,
        DaemonOptions {
            backend: Some("sim".into()),
            sim_faults: true,
            ..DaemonOptions::default()
        },
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    handler
        .locker
        .seal(seal_request(
            "dev",
            "E1",
            &valid_number(72),
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect("seal");
    drop(handler);
    // The key backend goes away: the final checkpoint cannot be signed.
    std::fs::write(
        data.join("hsm-sim").join(hsm_sim::FAULT_FILE_NAME),
        "unavailable",
    )
    .expect("fault file");
    let stopped = daemon.stop();
    assert!(!stopped.success(), "{stopped:?}");
    let log = daemon.log();
    assert!(
        log.contains("final audit checkpoint failed") && log.contains("unclean stop"),
        "{log}"
    );
}

/// SIGTERM while the daemon is still starting (systemd stops a unit whenever it likes) is
/// caught like any other: the daemon finishes starting, drains, checkpoints and exits 0; the
/// signal's default action never kills it half-way.
#[test]
fn sigterm_during_startup_stops_cleanly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("daemon.log");
    let mut child = Command::new(vault_tests::binary_path("vault-daemon"))
        .args([
            "--dev",
            "--backend",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn vault-daemon");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // The first line comes once the store is open, before the daemon listens.
    let first = lines.next().expect("a line").expect("utf-8");
    assert!(first.starts_with("dev token for"), "{first}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().expect("wait");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(exit.success(), "killed half-way: {exit:?}\n{rest:?}\n{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
}
