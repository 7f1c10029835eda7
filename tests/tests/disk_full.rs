//! A full disk: the daemon's data directory on a small tmpfs (CI runs as root, so the test
//! mounts one; it never skips). Once the disk is full, calls fail UNAVAILABLE and health says
//! NOT_SERVING; once space is freed, the same daemon serves again within seconds, nothing
//! acknowledged is lost, and the audit chain verifies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use vault_client::pb;
use vault_tests::Daemon;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{seal_request, wait_for_health};

/// A tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed: this test needs root (CI runs as root)"
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 64 << 10];
    loop {
        if file.write_all(&block).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_closed_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("small-disk");
    let _tmpfs = Tmpfs::mount(&mount, "8m");
    let data = mount.join("data");
    let mut daemon = Daemon::start_dev(&data);
    let mut handler = daemon.dev_client("dev-handler").await;

    // Some records while there is space.
    let mut acknowledged = Vec::new();
    for i in 0..20u64 {
        let number = valid_number(5000 + i);
        let handle = handler
            .locker
            .seal(seal_request(
                "dev",
                &format!("A{i}"),
                &number,
                &["STAFF_WITHHOLDING"],
            ))
            .await
            .expect("seal before the disk is full")
            .into_inner()
            .handle;
        acknowledged.push((handle, number));
    }

    // Fill the disk; seal until the store cannot commit.
    let filler = mount.join("filler");
    fill(&filler);
    let mut failed = None;
    for i in 0..5000u64 {
        let number = valid_number(6000 + i);
        match handler
            .locker
            .seal(seal_request(
                "dev",
                &format!("F{i}"),
                &number,
                &["STAFF_WITHHOLDING"],
            ))
            .await
        {
            Ok(response) => acknowledged.push((response.into_inner().handle, number)),
            Err(status) => {
                failed = Some(status);
                break;
            }
        }
    }
    let failed = failed.expect("no seal failed on a full disk");
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    assert!(
        failed.message().contains("nothing was released"),
        "{failed:?}"
    );
    wait_for_health(&daemon, ServingStatus::NotServing).await;
    // Still refused while the disk is full, promptly (not after the commit timeout).
    let started = Instant::now();
    let refused = handler
        .locker
        .unseal(pb::UnsealRequest {
            handle: acknowledged[0].0.clone(),
            purpose: "STAFF_WITHHOLDING".into(),
        })
        .await
        .expect_err("no number without its audit entry");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // Space again: the same daemon serves within seconds.
    std::fs::remove_file(&filler).expect("free space");
    wait_for_health(&daemon, ServingStatus::Serving).await;
    let number = valid_number(9000);
    let handle = handler
        .locker
        .seal(seal_request(
            "dev",
            "after",
            &number,
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect("seal after space was freed")
        .into_inner()
        .handle;
    acknowledged.push((handle, number));

    // Nothing acknowledged is lost; the chain verifies; the daemon never restarted.
    for (handle, number) in &acknowledged {
        let released = handler
            .locker
            .unseal(pb::UnsealRequest {
                handle: handle.clone(),
                purpose: "STAFF_WITHHOLDING".into(),
            })
            .await
            .expect("acknowledged record")
            .into_inner()
            .number;
        assert_eq!(&released, number);
    }
    let mut auditor = daemon.dev_client("dev-auditor").await;
    vault_tests::rpc::assert_log_verifies(&mut auditor).await;
    let log = daemon.log();
    assert!(
        log.contains("audit store cannot commit") && log.contains("audit store commits again"),
        "the state changes are logged:\n{log}"
    );
    assert!(
        log.matches("audit store cannot commit").count() <= 2,
        "failures are logged once per state change, not per call:\n{log}"
    );
    drop((handler, auditor));
    assert!(daemon.stop().success());
}
