//! Durability under load: a daemon serving mixed seals and unseals at 32 in flight is killed
//! with SIGKILL at a random moment, 20 times. After each restart every seal a client saw
//! acknowledged is present and unseals to its number, every number a client received has a
//! committed audit entry, and the chain verifies. And a disk frozen under a serving daemon.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Mutex;
use vault_client::{Client, pb};
use vault_tests::Daemon;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{export_audit, seal_many, seal_request, with_id};

const W: &str = "STAFF_WITHHOLDING";
const IN_FLIGHT: u64 = 32;
const KILLS: u64 = 20;

#[derive(Default)]
struct Observed {
    /// (request id, handle, number) of every seal answered OK.
    sealed: Vec<(String, String, String)>,
    /// (request id, number) of every unseal answered OK.
    released: Vec<(String, String)>,
}

fn random_below(rng: &SystemRandom, bound: u64) -> u64 {
    let mut bytes = [0u8; 8];
    rng.fill(&mut bytes).expect("rng");
    u64::from_le_bytes(bytes) % bound
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_mixed_load_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut daemon = Daemon::start_dev(&dir.path().join("data"));
    let rng = SystemRandom::new();
    let known = {
        let mut handler = daemon.dev_client("dev-handler").await;
        Arc::new(seal_many(&mut handler, "dev", 16, 10_000).await)
    };
    let observed = Arc::new(Mutex::new(Observed::default()));
    let counter = Arc::new(AtomicU64::new(0));

    for round in 0..KILLS {
        let handler: Client = daemon.dev_client("dev-handler").await;
        let mut tasks = Vec::new();
        for worker in 0..IN_FLIGHT {
            let (mut client, observed, counter, known) = (
                handler.clone(),
                Arc::clone(&observed),
                Arc::clone(&counter),
                Arc::clone(&known),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let id = format!("d{round}-{worker}-{n}");
                    if n % 2 == 0 {
                        let number = valid_number(100_000 + n);
                        match client
                            .locker
                            .seal(with_id(
                                seal_request("dev", &format!("S{n}"), &number, &[W]),
                                &id,
                            ))
                            .await
                        {
                            Ok(response) => observed.lock().await.sealed.push((
                                id,
                                response.into_inner().handle,
                                number,
                            )),
                            Err(_) => return,
                        }
                    } else {
                        let (handle, number) = &known[(n as usize / 2) % known.len()];
                        match client
                            .locker
                            .unseal(with_id(
                                pb::UnsealRequest {
                                    handle: handle.clone(),
                                    purpose: W.into(),
                                },
                                &id,
                            ))
                            .await
                        {
                            Ok(response) => {
                                let got = response.into_inner().number;
                                assert_eq!(&got, number, "a wrong number was released");
                                observed.lock().await.released.push((id, got));
                            }
                            Err(_) => return,
                        }
                    }
                }
            }));
        }
        // Let the load run a random while, then pull the plug.
        tokio::time::sleep(Duration::from_millis(100 + random_below(&rng, 400))).await;
        daemon = daemon.kill_and_restart();
        for task in tasks {
            task.await.expect("load task");
        }

        // Everything acknowledged so far survived this kill.
        let mut handler = daemon.dev_client("dev-handler").await;
        let seen = observed.lock().await;
        for (_, handle, number) in seen.sealed.iter().rev().take(40) {
            let back = handler
                .locker
                .unseal(pb::UnsealRequest {
                    handle: handle.clone(),
                    purpose: W.into(),
                })
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged seal {handle} lost: {e}"))
                .into_inner()
                .number;
            assert_eq!(&back, number);
        }
    }

    // Every acknowledged seal, every released number: committed and audited; the chain holds.
    let seen = observed.lock().await;
    assert!(
        seen.sealed.len() > 100 && seen.released.len() > 100,
        "too little load: {} seals, {} unseals",
        seen.sealed.len(),
        seen.released.len()
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    for (_, handle, number) in &seen.sealed {
        let found = handler
            .locker
            .lookup(pb::LookupRequest {
                tenant: "dev".into(),
                number: number.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("acknowledged seal {handle} lost: {e}"))
            .into_inner()
            .handle;
        assert_eq!(&found, handle);
    }
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    let allowed: std::collections::HashMap<&str, &pb::AuditEntry> = entries
        .iter()
        .filter(|e| e.outcome == "ALLOWED")
        .map(|e| (e.request_id.as_str(), e))
        .collect();
    for (id, _) in &seen.released {
        let entry = allowed
            .get(id.as_str())
            .unwrap_or_else(|| panic!("number released without a committed audit entry ({id})"));
        assert_eq!(entry.action, "UNSEAL");
    }
    for (id, handle, _) in &seen.sealed {
        let entry = allowed
            .get(id.as_str())
            .unwrap_or_else(|| panic!("seal acknowledged without a committed audit entry ({id})"));
        assert_eq!(&entry.handle, handle);
    }
    vault_tests::rpc::assert_log_verifies(&mut auditor).await;
}

/// An ext4 file system in a file, loop-mounted (CI runs as root), that the test can freeze as
/// `fsfreeze` does for a snapshot; thawed and unmounted on drop, whatever happened.
struct FreezableDisk {
    mount: std::path::PathBuf,
}

impl FreezableDisk {
    fn new(dir: &std::path::Path) -> FreezableDisk {
        let image = dir.join("disk.img");
        let mount = dir.join("disk");
        std::fs::create_dir_all(&mount).expect("mount point");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(128 << 20))
            .expect("image");
        let run = |program: &str, args: &[&std::ffi::OsStr]| {
            let status = std::process::Command::new(program)
                .args(args)
                .status()
                .unwrap_or_else(|e| panic!("run {program}: {e}"));
            assert!(status.success(), "{program} failed: this test needs root");
        };
        run(
            "mkfs.ext4",
            &["-q".as_ref(), "-F".as_ref(), image.as_os_str()],
        );
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                mount.as_os_str(),
            ],
        );
        FreezableDisk { mount }
    }

    fn freeze(&self, frozen: bool) {
        let status = std::process::Command::new("fsfreeze")
            .arg(if frozen { "-f" } else { "-u" })
            .arg(&self.mount)
            .status()
            .expect("run fsfreeze");
        assert!(status.success(), "fsfreeze failed");
    }
}

impl Drop for FreezableDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.mount)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .status();
    }
}

/// Thaws the disk when dropped: declared after the daemon, so it is dropped first (a daemon
/// blocked in a write on a frozen file system cannot exit until it is thawed).
struct Thaw<'a>(&'a FreezableDisk);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.0.mount)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The data directory's file system frozen under a serving daemon (a snapshot tool, a hung
/// disk): writes block in the kernel. Calls are refused UNAVAILABLE within the commit timeout
/// (5 s), nothing is released unaudited, health turns NOT_SERVING while the commit hangs; once
/// thawed, the same daemon serves again, nothing acknowledged is lost and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_file_system_fails_closed_within_the_deadline_and_recovers() {
    use std::time::Instant;
    use tonic::Code;
    use tonic_health::pb::health_check_response::ServingStatus;
    use vault_tests::rpc::{unseal, wait_for_health};
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FreezableDisk::new(dir.path());
    // The store on the disk that freezes; the daemon's log (beside its data directory's path)
    // off it, as the journal is under systemd.
    std::fs::create_dir(disk.mount.join("data")).expect("data dir");
    let data = dir.path().join("data");
    std::os::unix::fs::symlink(disk.mount.join("data"), &data).expect("link");
    let mut daemon = Daemon::start_dev(&data);
    let _thaw = Thaw(&disk);
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut acknowledged = Vec::new();
    for i in 0..5u64 {
        let number = valid_number(7000 + i);
        let handle = handler
            .locker
            .seal(seal_request("dev", &format!("Z{i}"), &number, &[W]))
            .await
            .expect("seal")
            .into_inner()
            .handle;
        acknowledged.push((handle, number));
    }

    disk.freeze(true);
    let started = Instant::now();
    let refused = unseal(&mut handler, &acknowledged[0].0, W)
        .await
        .expect_err("no number while its entry cannot be written");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "refused after {:?}",
        started.elapsed()
    );
    let refused = handler
        .locker
        .seal(seal_request("dev", "frozen", &valid_number(7100), &[W]))
        .await
        .expect_err("no seal while the disk is frozen");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    wait_for_health(&daemon, ServingStatus::NotServing).await;

    disk.freeze(false);
    wait_for_health(&daemon, ServingStatus::Serving).await;
    let number = valid_number(7200);
    let handle = handler
        .locker
        .seal(seal_request("dev", "thawed", &number, &[W]))
        .await
        .expect("seal after the thaw")
        .into_inner()
        .handle;
    acknowledged.push((handle, number));
    for (handle, number) in &acknowledged {
        assert_eq!(
            &unseal(&mut handler, handle, W).await.expect("unseal"),
            number
        );
    }
    let mut auditor = daemon.dev_client("dev-auditor").await;
    vault_tests::rpc::assert_log_verifies(&mut auditor).await;
    drop((handler, auditor));
    assert!(daemon.stop().success());
}
