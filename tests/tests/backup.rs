//! Online backup and verified restore: a snapshot taken while 32 seals are in flight, restored
//! into a new data directory (with the same key backend), holds every seal acknowledged before
//! the backup began, and its audit log verifies offline against the pinned first key; a
//! damaged or tampered snapshot is refused and leaves nothing behind.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vault_client::pb;
use vault_daemon::store::snapshot;
use vault_tests::cli::vault_cli_ok;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{copy_dir, seal_request};
use vault_tests::{Daemon, DaemonOptions};

fn sim() -> DaemonOptions {
    DaemonOptions {
        backend: Some("sim".into()),
        ..DaemonOptions::default()
    }
}

/// `vault-daemon --dev --backend sim --data-dir DIR --restore-from FILE`: (success, output).
fn restore(data: &Path, snapshot: &Path) -> (bool, String) {
    let output = std::process::Command::new(vault_tests::binary_path("vault-daemon"))
        .args(["--dev", "--backend", "sim", "--data-dir"])
        .arg(data)
        .arg("--restore-from")
        .arg(snapshot)
        .output()
        .expect("run vault-daemon --restore-from");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// A new data directory with the same (simulated) key backend as `original`.
fn new_data_dir(original: &Path, at: &Path) {
    std::fs::create_dir_all(at).expect("mkdir");
    copy_dir(&original.join("hsm-sim"), &at.join("hsm-sim"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_verified_and_a_tampered_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("data");
    let mut daemon = Daemon::start(&original, sim());
    let mut handler = daemon.dev_client("dev-handler").await;

    // Seals acknowledged before the backup begins.
    let mut before = Vec::new();
    for i in 0..40u64 {
        let number = valid_number(7000 + i);
        let handle = handler
            .locker
            .seal(seal_request(
                "dev",
                &format!("B{i}"),
                &number,
                &["STAFF_WITHHOLDING"],
            ))
            .await
            .expect("seal")
            .into_inner()
            .handle;
        before.push((handle, number));
    }

    // 32 sealers keep going while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let mut sealers = Vec::new();
    for worker in 0..32u64 {
        let mut handler = handler.clone();
        let stop = Arc::clone(&stop);
        sealers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let number = valid_number(100_000 + worker * 10_000 + n);
                handler
                    .locker
                    .seal(seal_request(
                        "dev",
                        &format!("L{worker}-{n}"),
                        &number,
                        &["STAFF_WITHHOLDING"],
                    ))
                    .await
                    .expect("seal under load");
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let backup = dir.path().join("locker.snapshot");
    let written = vault_cli_ok(
        &daemon,
        "dev-admin",
        &["backup", "--out", backup.to_str().expect("utf8")],
    );
    assert!(written.contains("backup written"), "{written}");
    stop.store(true, Ordering::SeqCst);
    let mut during = 0;
    for sealer in sealers {
        during += sealer.await.expect("sealer");
    }
    assert!(during > 0, "no seal ran during the backup");
    drop(handler);
    let fingerprint = vault_cli_ok(&daemon, "dev-auditor", &["audit", "public-key"]);
    let pin = fingerprint
        .lines()
        .find_map(|l| l.strip_prefix("# fingerprint (pin this): "))
        .expect("fingerprint")
        .trim()
        .to_owned();
    assert!(daemon.stop().success());

    // Restore into a new data directory with the same key backend, and start there.
    let restored = dir.path().join("restored");
    new_data_dir(&original, &restored);
    let (ok, said) = restore(&restored, &backup);
    assert!(ok && said.contains("re-anchored"), "{said}");
    let daemon = Daemon::start(&restored, sim());
    let mut handler = daemon.dev_client("dev-handler").await;
    for (handle, number) in &before {
        let released = handler
            .locker
            .unseal(pb::UnsealRequest {
                handle: handle.clone(),
                purpose: "STAFF_WITHHOLDING".into(),
            })
            .await
            .expect("a seal acknowledged before the backup")
            .into_inner()
            .number;
        assert_eq!(&released, number);
    }
    drop(handler);
    let export = dir.path().join("restored-audit.jsonl");
    vault_cli_ok(
        &daemon,
        "dev-auditor",
        &["audit", "export", "--out", export.to_str().expect("utf8")],
    );
    let verified = vault_cli_ok(
        &daemon,
        "dev-auditor",
        &[
            "audit",
            "verify",
            "--offline",
            export.to_str().expect("utf8"),
            "--pin",
            &pin,
        ],
    );
    assert!(verified.starts_with("OK"), "{verified}");
    let entries = std::fs::read_to_string(&export).expect("export");
    assert!(
        entries.contains("\"action\":\"BACKUP\"")
            && entries.contains("\"action\":\"ANCHOR_RESET\""),
        "the backup and the restore's re-anchoring are in the log"
    );
    drop(daemon);

    // A damaged snapshot: refused by its framing, nothing written.
    let bytes = std::fs::read(&backup).expect("snapshot");
    let damaged = dir.path().join("damaged.snapshot");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&damaged, &flipped).expect("write");
    let target = dir.path().join("restore-damaged");
    new_data_dir(&original, &target);
    let (ok, said) = restore(&target, &damaged);
    assert!(!ok && said.contains("damaged"), "{said}");
    assert!(!target.join("locker.redb").exists());

    // A tampered snapshot with its framing redone: an audit entry edited. Refused by the
    // verification before anything is put in place.
    let (header, mut rows) = snapshot::read(&bytes).expect("read snapshot");
    let audit_row = rows
        .iter_mut()
        .find(|row| row.table == "audit" && row.key == 5u64.to_be_bytes())
        .expect("audit entry 5");
    let last = audit_row.value.len() - 1;
    audit_row.value[last] ^= 0x01;
    let mut tampered = Vec::new();
    {
        let mut sink = |b: &[u8]| {
            tampered.extend_from_slice(b);
            true
        };
        let mut writer = snapshot::SnapshotWriter::start(&mut sink, &header).expect("start");
        for row in &rows {
            writer.row(&row.table, &row.key, &row.value).expect("row");
        }
        writer.finish().expect("finish");
    }
    let tampered_file = dir.path().join("tampered.snapshot");
    std::fs::write(&tampered_file, &tampered).expect("write");
    let target = dir.path().join("restore-tampered");
    new_data_dir(&original, &target);
    let (ok, said) = restore(&target, &tampered_file);
    assert!(!ok, "a tampered snapshot was restored: {said}");
    assert!(!target.join("locker.redb").exists(), "{said}");
    assert!(!target.join(".restore").exists(), "{said}");
}
