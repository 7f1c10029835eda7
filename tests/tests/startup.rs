//! Startup: a bad configuration stops the daemon with a clear message and exit code 2 before
//! it listens; a first start on an empty store creates the first admin with a 0600 token file
//! whose path, not content, is logged.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use secrecy::ExposeSecret;
use vault_client::pb;
use vault_tests::{Daemon, DaemonOptions, binary_path};

fn run_with_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    let output = Command::new(binary_path("vault-daemon"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run daemon");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_configurations_are_refused_with_specific_messages() {
    let data = "[store]\ndata_dir = \"/tmp/never-created-by-this-test\"\n";
    let cases = [
        ("this is [[ not toml", "invalid config"),
        (
            &format!("{data}[server]\nlisten = \"127.0.0.1:0\"\ncolor = \"blue\"\n") as &str,
            "unknown field `color`",
        ),
        (
            &format!("{data}[backend]\nkind = \"quantum\"\n"),
            "unknown variant `quantum`",
        ),
        (
            &format!(
                "{data}[backend]\nallow_insecure = true\n[server]\nlisten = \"0.0.0.0:50051\"\n"
            ),
            "plaintext is only allowed on loopback",
        ),
        (data, "insecure"),
        (
            &format!("{data}[backend]\nallow_insecure = true\ntimeout_ms = 0\n"),
            "backend.timeout_ms",
        ),
        (
            &format!(
                "{data}[backend]\nkind = \"tpm\"\n[backend.tpm]\ntcti = \"device:/dev/tpmrm0\"\n"
            ),
            "[backend.tpm] needs auth_file",
        ),
        (
            &format!(
                "{data}[backend]\nallow_insecure = true\n[audit]\ncheckpoint_every = 18446744073709551615\n"
            ),
            "audit.checkpoint_every must be between 1 and 100000",
        ),
        (
            &format!(
                "{data}[backend]\nallow_insecure = true\n[audit]\ncheckpoint_interval_secs = 86400\n"
            ),
            "audit.checkpoint_interval_secs must be between 1 and 3600",
        ),
        (
            &format!(
                "{data}[backend]\nallow_insecure = true\n[tokens]\nmax_ttl_secs = 18446744073709551615\n"
            ),
            "tokens.max_ttl_secs must be at most 31536000",
        ),
        (
            &format!("{data}[backend]\nallow_insecure = true\n[keys]\ndestroy_wait_secs = 0\n"),
            "keys.destroy_wait_secs must be at least 86400",
        ),
        (
            &format!("{data}[backend]\nallow_insecure = true\n[keys]\ndestroy_wait_secs = 86399\n"),
            "keys.destroy_wait_secs must be at least 86400",
        ),
        (
            &format!("{data}[backend]\nallow_insecure = true\n[approvals]\nrequest_ttl_secs = 0\n"),
            "approvals.request_ttl_secs must be between 1 and 2592000",
        ),
        (
            &format!(
                "{data}[backend]\nallow_insecure = true\n[rate_limits.handler]\nlookup_per_second = -1.0\n"
            ),
            "rate_limits.handler.lookup_per_second must be between 0 and 1000000",
        ),
        (
            &format!("{data}[backend]\nallow_insecure = true\n[server]\nmax_connections = 0\n"),
            "server.max_connections must be between 1 and 100000",
        ),
        (
            &format!(
                "{data}backend = \"postgres\"\nurl = \"postgresql://locker@192.0.2.10:5432/locker\"\n[backend]\nallow_insecure = true\n"
            ),
            "store.url reaches 192.0.2.10 over the network but store.tls_ca is not set",
        ),
    ];
    for (text, expected) in cases {
        let (code, stderr) = run_with_config(text);
        assert_eq!(code, 2, "{text:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{text:?}: expected {expected:?} in {stderr}"
        );
    }
    assert!(!std::path::Path::new("/tmp/never-created-by-this-test").exists());

    let output = Command::new(binary_path("vault-daemon"))
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config FILE, or --dev"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_creates_the_first_admins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nallow_insecure = true\n",
            data.display()
        ),
    )
    .expect("write config");
    let daemon = Daemon::start(
        &data,
        DaemonOptions {
            config: Some(config),
            ..DaemonOptions::default()
        },
    );
    let token_file = data.join("initial-admin.token");
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(&data)
            .expect("data dir")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(data.join("locker.redb"))
            .expect("store")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let token = vault_client::read_token_file(&token_file).expect("read token");
    let log = daemon.log();
    assert!(log.contains("initial-admin.token"), "{log}");
    assert!(!log.contains(token.expose_secret()));

    let mut admin = daemon.client(Some(token)).await;
    let operators = admin
        .admin
        .list_operators(pb::ListOperatorsRequest {})
        .await
        .expect("admin works")
        .into_inner()
        .operators;
    // Two admins, so that dual control can work from the first request on.
    let ids: Vec<&str> = operators.iter().map(|o| o.operator_id.as_str()).collect();
    assert_eq!(ids, ["admin", "admin2"]);
    assert!(operators.iter().all(|o| o.role == pb::Role::Admin as i32));
    let second = data.join("initial-admin2.token");
    assert_eq!(
        std::fs::metadata(&second)
            .expect("second token file")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(log.contains("initial-admin2.token"), "{log}");
    // Not a second time: a restart does not create another admin or token file.
    std::fs::remove_file(&token_file).expect("remove token file");
    drop(admin);
    let daemon = daemon.restart();
    assert!(!token_file.exists());
    drop(daemon);
}

#[test]
fn dev_backends_name_the_missing_package() {
    for (backend, package) in [("softhsm", "softhsm2"), ("tpm", "swtpm")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = Command::new(binary_path("vault-daemon"))
            .args([
                "--dev",
                "--backend",
                backend,
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .env("PATH", "") // as if the tools were not installed
            .output()
            .expect("run daemon");
        assert_eq!(output.status.code(), Some(2), "{backend}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("install the Debian package {package}")),
            "{backend}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_tpm_daemon_restarts_after_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = vault_tests::Daemon::start(
        &dir.path().join("data"),
        vault_tests::DaemonOptions {
            backend: Some("tpm".into()),
            ..Default::default()
        },
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = vault_tests::numbers::valid_number(81);
    let handle = handler
        .locker
        .seal(vault_tests::rpc::seal_request(
            "dev",
            "E1",
            &number,
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    drop(handler);
    // SIGKILL leaves the daemon's swtpm running with the state locked; the next start stops it.
    let mut daemon = daemon.kill_and_restart();
    let mut handler = daemon.dev_client("dev-handler").await;
    let released = handler
        .locker
        .unseal(vault_client::pb::UnsealRequest {
            handle,
            purpose: "STAFF_WITHHOLDING".into(),
        })
        .await
        .expect("unseal after the restart")
        .into_inner()
        .number;
    assert_eq!(released, number);
    assert!(
        daemon.log().contains("stopping an swtpm left over"),
        "{}",
        daemon.log()
    );
    drop(handler);
    assert!(daemon.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_dumps_no_core_and_cannot_be_dumped() {
    use std::os::unix::process::ExitStatusExt;
    // The daemon inherits unlimited core dumps from here (CI runs as root, which may raise the
    // hard limit): only its own hardening brings them to 0.
    rustix::process::setrlimit(
        rustix::process::Resource::Core,
        rustix::process::Rlimit {
            current: None,
            maximum: None,
        },
    )
    .expect("raise the core limit (needs root)");
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = vault_tests::Daemon::start_dev(&dir.path().join("data"));
    let pid = daemon.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit line");
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );
    // A crash leaves no core: SIGABRT ends it without dumping.
    let status = std::process::Command::new("kill")
        .args(["-ABRT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut daemon = daemon;
    let ended = daemon.wait_exit();
    assert_eq!(ended.signal(), Some(6), "{ended:?}");
    assert!(!ended.core_dumped(), "the daemon dumped core");
}

/// Every log line as one JSON object, with `--log-format json` and with `[log] format`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(
        &dir.path().join("dev"),
        DaemonOptions {
            args: vec!["--log-format".into(), "json".into()],
            ..DaemonOptions::default()
        },
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = vault_tests::numbers::valid_number(77);
    let handle = handler
        .locker
        .seal(vault_tests::rpc::seal_request(
            "dev",
            "J1",
            &number,
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    drop(handle);
    let check = |log: &str| {
        let mut lines = 0;
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(value["timestamp"].is_string(), "{line}");
            assert!(value["level"].is_string(), "{line}");
            assert!(value["fields"]["message"].is_string(), "{line}");
            lines += 1;
        }
        assert!(lines >= 2, "{log}");
    };
    check(&daemon.log());
    assert!(daemon.log().contains("\"listening\""));
    assert!(!daemon.log().contains(&number));
    // Standard output holds JSON only too: each line an object whose message is the text.
    assert!(!daemon.banner.is_empty());
    for line in &daemon.banner {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout not JSON ({e}): {line}"));
        assert!(value["message"].is_string(), "{line}");
    }

    let data = dir.path().join("config");
    let config = data.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nallow_insecure = true\n[log]\nformat = \"json\"\n",
            data.display()
        ),
    )
    .expect("config");
    let from_config = Daemon::start(
        &data,
        DaemonOptions {
            config: Some(config),
            ..DaemonOptions::default()
        },
    );
    check(&from_config.log());
}

/// A store of another schema version is refused with both versions named, and left as it was:
/// a newer one (a downgrade of the binary) must not be written by code that does not know it,
/// an older one needs its upgrade path, never a silent reinterpretation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_another_schema_version_is_refused_untouched() {
    use vault_daemon::store::redb::{FILE_SCHEMA_VERSION, META};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut daemon = Daemon::start_dev(&data);
    assert!(daemon.stop().success());
    // 3 is not among them: a store of file schema 3 is migrated (see below).
    for other in [FILE_SCHEMA_VERSION + 1, FILE_SCHEMA_VERSION - 2] {
        vault_tests::store_edit::put(&data, META, "schema_version", &other.to_be_bytes());
        let audit_before = vault_tests::store_edit::audit_rows(&data).len();
        let refused = Daemon::try_start(&data, daemon.options().clone())
            .err()
            .expect("another schema version is refused");
        assert!(
            refused.contains(&format!(
                "store schema version {other} is not supported (expected {FILE_SCHEMA_VERSION})"
            )),
            "{refused}"
        );
        // Nothing was written to it: the version is still the other one, no entry was added.
        assert_eq!(
            vault_tests::store_edit::get(&data, META, "schema_version"),
            Some(other.to_be_bytes().to_vec())
        );
        assert_eq!(
            vault_tests::store_edit::audit_rows(&data).len(),
            audit_before
        );
    }
    vault_tests::store_edit::put(
        &data,
        META,
        "schema_version",
        &FILE_SCHEMA_VERSION.to_be_bytes(),
    );
    daemon.start_in_place();
}

/// A store written before the audit log moved into segment files (file schema 3: the entries
/// in the redb file's `audit` table) is migrated at its first start: every entry moves into
/// segments, the chain and the anchor still verify, the record unseals, and the log goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_file_schema_3_is_migrated_at_its_first_start() {
    use vault_daemon::store::audit_segments::AUDIT_DIR;
    use vault_daemon::store::redb::{LEGACY_AUDIT, META, PENDING};
    use vault_tests::numbers::valid_number;
    use vault_tests::rpc::{seal_request, unseal};
    use vault_tests::store_edit;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut daemon = Daemon::start_dev(&data);
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = valid_number(31);
    let handle = handler
        .locker
        .seal(seal_request("dev", "M1", &number, &["STAFF_WITHHOLDING"]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    drop(handler);
    assert!(daemon.stop().success());

    // The same store as the previous release laid it out.
    let entries = store_edit::audit_rows(&data);
    std::fs::remove_dir_all(data.join(AUDIT_DIR)).expect("remove segments");
    store_edit::edit(&data, |txn| {
        let mut audit = txn.open_table(LEGACY_AUDIT).expect("audit");
        for (seq, row) in &entries {
            audit.insert(*seq, row.as_slice()).expect("insert");
        }
        txn.delete_table(PENDING).expect("pending");
    });
    store_edit::put(&data, META, "schema_version", &3u32.to_be_bytes());

    daemon.start_in_place();
    assert!(
        daemon
            .log()
            .contains("store file schema 3 → 4: the audit log moved into segment files"),
        "{}",
        daemon.log()
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    let released = unseal(&mut handler, &handle, "STAFF_WITHHOLDING")
        .await
        .expect("unseal after the migration");
    assert_eq!(released, number);
    let mut auditor = daemon.dev_client("dev-auditor").await;
    vault_tests::rpc::assert_log_verifies(&mut auditor).await;
    drop((handler, auditor));
    assert!(daemon.stop().success());
    let after = store_edit::audit_rows(&data);
    assert!(after.len() > entries.len(), "the log went on");
    assert_eq!(
        &after[..entries.len()],
        entries.as_slice(),
        "nothing moved changed"
    );
}
