//! Several daemons on one PostgreSQL: one audit chain for the cluster, surviving a daemon's
//! death and stall. Every daemon is the real binary on its own loopback port and data
//! directory; all share one PostgreSQL 15 (its own port, run as `postgres`) and one key
//! token (SoftHSM, or the simulated token) through `--dev-keys`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vault_client::{Client, pb};
use vault_tests::cli::vault_cli;
use vault_tests::numbers::valid_number;
use vault_tests::postgres::Postgres;
use vault_tests::rpc::{export_audit, seal_request, unseal_all, wait_for_health, with_id};
use vault_tests::{Daemon, DaemonOptions};

const W: &str = "STAFF_WITHHOLDING";

/// A cluster of dev daemons on one database and one key directory.
struct Cluster {
    root: PathBuf,
    url: String,
    backend: String,
    daemons: Vec<Option<Daemon>>,
    /// A lifecycle clock file every daemon reads (days forward).
    clock: Option<PathBuf>,
    /// More arguments for every daemon.
    extra_args: Vec<String>,
}

impl Cluster {
    /// Starts `n` daemons one after another (the first provisions the dev tenant, its
    /// operators and the keys; the others find them).
    fn start(root: &Path, postgres: &Postgres, backend: &str, n: usize) -> Cluster {
        Cluster::start_with_clock(root, postgres, backend, n, None)
    }

    /// Like [`Cluster::start`], every daemon reading its lifecycle clock from `clock`.
    fn start_with_clock(
        root: &Path,
        postgres: &Postgres,
        backend: &str,
        n: usize,
        clock: Option<&Path>,
    ) -> Cluster {
        postgres.create_database("locker");
        let mut cluster = Cluster {
            root: root.to_owned(),
            url: postgres.url_of("locker"),
            backend: backend.to_owned(),
            daemons: Vec::new(),
            clock: clock.map(Path::to_owned),
            extra_args: Vec::new(),
        };
        cluster.spawn(n);
        cluster
    }

    fn spawn(&mut self, n: usize) {
        for i in 0..n {
            let daemon = self.launch(i);
            self.daemons.push(Some(daemon));
        }
    }

    fn options(&self) -> DaemonOptions {
        DaemonOptions {
            backend: Some(self.backend.clone()),
            args: vec![
                "--store-url".into(),
                self.url.clone(),
                "--dev-keys".into(),
                self.root.join("keys").display().to_string(),
            ]
            .into_iter()
            .chain(self.extra_args.iter().cloned())
            .collect(),
            lifecycle_clock_file: self.clock.clone(),
            ..DaemonOptions::default()
        }
    }

    fn launch(&self, i: usize) -> Daemon {
        Daemon::start(&self.root.join(format!("daemon{i}")), self.options())
    }

    fn daemon(&self, i: usize) -> &Daemon {
        self.daemons[i].as_ref().expect("daemon running")
    }

    fn endpoints(&self) -> Vec<String> {
        self.daemons
            .iter()
            .map(|d| d.as_ref().expect("running").endpoint())
            .collect()
    }
}

async fn client(endpoint: &str, token: &secrecy::SecretString) -> Client {
    Client::connect(&vault_client::ClientConfig::new(
        endpoint.to_owned(),
        Some(token.clone()),
    ))
    .await
    .expect("connect")
}

/// The chain as exported: every sequence number once, 1..=n, each entry linked to the one
/// before (checked by the daemon's own online verification and by `audit verify --offline`).
async fn assert_one_chain(daemon: &Daemon, dir: &Path) -> Vec<pb::AuditEntry> {
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let online = auditor
        .admin
        .audit_verify(pb::AuditVerifyRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(online.ok, "online verification: {}", online.message);
    let entries = export_audit(&mut auditor).await;
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=entries.len() as u64).collect();
    assert_eq!(seqs, expected, "one chain, without fork or gap");

    let keys = dir.join("audit-keys.pem");
    let export = dir.join("audit.jsonl");
    for args in [
        ["audit", "public-key", "--out", keys.to_str().expect("utf8")],
        ["audit", "export", "--out", export.to_str().expect("utf8")],
    ] {
        let (ok, _, stderr) = vault_cli(daemon, "dev-auditor", &args, "");
        assert!(ok, "vault-client {args:?}: {stderr}");
    }
    let offline = std::process::Command::new(vault_tests::binary_path("vault-client"))
        .args(["audit", "verify", "--offline"])
        .arg(&export)
        .arg("--public-key")
        .arg(&keys)
        .output()
        .expect("vault-client");
    assert!(
        offline.status.success(),
        "offline verification: {}{}",
        String::from_utf8_lossy(&offline.stdout),
        String::from_utf8_lossy(&offline.stderr)
    );
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_on_one_database_serve_one_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let cluster = Cluster::start(dir.path(), &postgres, "softhsm", 3);
    let handler_token = cluster.daemon(0).dev_token("dev-handler");
    let endpoints = cluster.endpoints();

    // Sealed on A, opened on B and on C.
    let mut a = client(&endpoints[0], &handler_token).await;
    let mut sealed = Vec::new();
    for i in 0..10 {
        let number = valid_number(7_000 + i);
        let handle = a
            .locker
            .seal(seal_request("dev", &format!("S{i}"), &number, &[W]))
            .await
            .expect("seal on A")
            .into_inner()
            .handle;
        sealed.push((handle, number));
    }
    for endpoint in &endpoints[1..] {
        let mut other = client(endpoint, &handler_token).await;
        unseal_all(&mut other, &sealed).await;
        // The same number sealed on another daemon is the same record.
        let again = other
            .locker
            .seal(seal_request("dev", "S0", &sealed[0].1, &[W]))
            .await
            .expect("re-seal")
            .into_inner();
        assert_eq!(again.handle, sealed[0].0);
    }
    let entries = assert_one_chain(cluster.daemon(2), dir.path()).await;
    let unseals = entries.iter().filter(|e| e.action == "UNSEAL").count();
    assert_eq!(unseals, 20, "every unseal on B and C is in the one chain");
}

/// What the load saw: acknowledged seals and the request ids of unseals that returned a
/// number.
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, String>,
    unsealed: Vec<(String, String)>,
    failures: u64,
}

/// One client of the load: seals new numbers and unseals acknowledged ones, on whichever
/// daemon answers; a daemon that fails is left for the next one.
async fn load_worker(
    worker: u64,
    endpoints: Arc<Mutex<Vec<String>>>,
    token: secrecy::SecretString,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut target = worker as usize;
    let mut connection: Option<Client> = None;
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if connection.is_none() {
            let endpoint = {
                let endpoints = endpoints.lock().expect("endpoints");
                endpoints[target % endpoints.len()].clone()
            };
            match Client::connect(&vault_client::ClientConfig::new(
                endpoint,
                Some(token.clone()),
            ))
            .await
            {
                Ok(client) => connection = Some(client),
                Err(_) => {
                    target += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(client) = connection.as_mut() else {
            continue;
        };
        i += 1;
        let request_id = format!("w{worker}-{i}");
        let known = {
            let ledger = ledger.lock().expect("ledger");
            i.is_multiple_of(2)
                .then(|| {
                    ledger
                        .acked
                        .iter()
                        .nth((i as usize * 7) % ledger.acked.len().max(1))
                })
                .flatten()
                .map(|(n, h)| (n.clone(), h.clone()))
        };
        let outcome = match known {
            Some((number, handle)) => client
                .locker
                .unseal(with_id(
                    pb::UnsealRequest {
                        handle,
                        purpose: W.into(),
                    },
                    &request_id,
                ))
                .await
                .map(|reply| {
                    let reply = reply.into_inner();
                    assert_eq!(reply.number, number, "an unseal returned another number");
                    ledger
                        .lock()
                        .expect("ledger")
                        .unsealed
                        .push((request_id.clone(), reply.number));
                }),
            None => {
                let number = valid_number(1_000_000 + worker * 100_000 + i);
                client
                    .locker
                    .seal(with_id(
                        seal_request("dev", &format!("K{worker}-{i}"), &number, &[W]),
                        &request_id,
                    ))
                    .await
                    .map(|reply| {
                        ledger
                            .lock()
                            .expect("ledger")
                            .acked
                            .insert(number, reply.into_inner().handle);
                    })
            }
        };
        if outcome.is_err() {
            ledger.lock().expect("ledger").failures += 1;
            connection = None;
            target += 1;
        }
    }
}

/// Load on a cluster: `load_worker`s spread over its daemons until stopped.
struct Load {
    endpoints: Arc<Mutex<Vec<String>>>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` workers on the dev handler's token.
    fn start(cluster: &Cluster, clients: u64) -> Load {
        Load::start_on(cluster, clients, cluster.endpoints())
    }

    /// Starts `clients` workers on the dev handler's token, calling only `endpoints`.
    fn start_on(cluster: &Cluster, clients: u64, endpoints: Vec<String>) -> Load {
        let token = cluster.daemon(0).dev_token("dev-handler");
        let endpoints = Arc::new(Mutex::new(endpoints));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = (0..clients)
            .map(|w| {
                tokio::spawn(load_worker(
                    w,
                    Arc::clone(&endpoints),
                    token.clone(),
                    Arc::clone(&ledger),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        Load {
            endpoints,
            ledger,
            stop,
            workers,
        }
    }

    /// Seals acknowledged so far.
    fn acked(&self) -> usize {
        self.ledger.lock().expect("ledger").acked.len()
    }

    /// Points the workers at daemon `at`'s new endpoint (after a restart).
    fn moved(&self, at: usize, endpoint: String) {
        self.endpoints.lock().expect("endpoints")[at] = endpoint;
    }

    /// Stops the workers and returns what they saw.
    async fn stop(self) -> Ledger {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for worker in self.workers {
            worker.await.expect("worker");
        }
        std::mem::take(&mut *self.ledger.lock().expect("ledger"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_ten_times_under_load_loses_nothing_and_forks_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let mut cluster = Cluster::start(dir.path(), &postgres, "softhsm", 3);
    let token = cluster.daemon(0).dev_token("dev-handler");
    let load = Load::start(&cluster, 32);
    for kill in 0..10 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let victim = kill % 3;
        let daemon = cluster.daemons[victim].take().expect("running");
        let started = std::time::Instant::now();
        let restarted = tokio::task::spawn_blocking(move || daemon.kill_and_restart())
            .await
            .expect("restart");
        eprintln!(
            "kill {kill}: daemon {victim} serves again after {:?}",
            started.elapsed()
        );
        load.moved(victim, restarted.endpoint());
        cluster.daemons[victim] = Some(restarted);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ledger = load.stop().await;
    assert!(
        ledger.acked.len() > 100,
        "the load ran: {} seals",
        ledger.acked.len()
    );
    assert!(ledger.failures > 0, "the kills cut calls short");

    // 0 acknowledged seals lost: each opens to its number (on one daemon: they share the
    // database), and a sample of them on each of the others.
    for (at, endpoint) in cluster.endpoints().iter().enumerate() {
        let mut check = client(endpoint, &token).await;
        let sample = if at == 0 { usize::MAX } else { 100 };
        for (number, handle) in ledger.acked.iter().take(sample) {
            let opened = check
                .locker
                .unseal(pb::UnsealRequest {
                    handle: handle.clone(),
                    purpose: W.into(),
                })
                .await
                .unwrap_or_else(|status| panic!("acknowledged seal {handle} lost: {status}"))
                .into_inner();
            assert_eq!(&opened.number, number);
        }
    }
    // 0 numbers received without a committed audit entry, in one chain without fork or gap.
    let entries = assert_one_chain(cluster.daemon(1), dir.path()).await;
    let audited: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.action == "UNSEAL" && e.outcome == "ALLOWED")
        .map(|e| e.request_id.as_str())
        .collect();
    let unaudited: Vec<&str> = ledger
        .unsealed
        .iter()
        .map(|(id, _)| id.as_str())
        .filter(|id| !audited.contains(id))
        .collect();
    assert!(
        unaudited.is_empty(),
        "{} numbers received without an entry, e.g. {:?}",
        unaudited.len(),
        &unaudited[..unaudited.len().min(5)]
    );
    eprintln!(
        "cluster under SIGKILL: {} seals acknowledged, {} unseals received and audited, {} calls cut short, {} entries",
        ledger.acked.len(),
        ledger.unsealed.len(),
        ledger.failures,
        entries.len()
    );
}

/// A daemon starting while another signs and anchors a checkpoint every few milliseconds: its
/// snapshot of the store may run a checkpoint past the anchor it read, and by the time it
/// would anchor that checkpoint the other daemon has. It verifies again against the newer
/// anchor and serves, rather than refusing to start over an anchor that only moved forward.
/// The key token takes 100 ms an operation (a slow network HSM): the starting daemon checks
/// rows' MACs in it while its read snapshot is open, past the server's one-second
/// idle-in-transaction limit meant for a stalled writer, and must not have the snapshot cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_starting_on_a_slow_backend_while_another_anchors_checkpoints_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    postgres.create_database("locker");
    let mut cluster = Cluster {
        root: dir.path().to_owned(),
        url: postgres.url_of("locker"),
        backend: "sim".into(),
        daemons: Vec::new(),
        clock: None,
        extra_args: vec![
            "--checkpoint-interval-ms".into(),
            "50".into(),
            "--sim-faults".into(),
        ],
    };
    cluster.spawn(2);
    // Daemon 0, the first, holds the checkpoint lease; the load on it keeps the head moving,
    // so it signs a checkpoint every 50 ms. The slow key token holds each one stored but not
    // yet anchored for a while, which is when a starting daemon's snapshot runs past the
    // anchor it read.
    let load = Load::start_on(&cluster, 8, vec![cluster.daemon(0).endpoint()]);
    let fault = dir
        .path()
        .join("keys")
        .join("hsm-sim")
        .join(hsm_sim::FAULT_FILE_NAME);
    std::fs::write(&fault, "delay 100").expect("slow token");
    // About two starts in three meet the race here: eight leave no room for chance.
    const STARTS: usize = 8;
    let (mut refusals, mut verified_again) = (Vec::new(), 0);
    for _ in 0..STARTS {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let daemon = cluster.daemons[1].take().expect("running");
        let data_dir = daemon.data_dir.clone();
        drop(daemon);
        let options = cluster.options();
        let started = tokio::task::spawn_blocking(move || {
            // A refused start is counted, then the daemon is started again to go on.
            let first = Daemon::try_start(&data_dir, options.clone());
            let refusal = first
                .as_ref()
                .err()
                .map(|r| r.lines().next().unwrap_or_default().to_owned());
            (
                first.unwrap_or_else(|_| Daemon::start(&data_dir, options)),
                refusal,
            )
        })
        .await
        .expect("start");
        if started
            .0
            .log()
            .contains("anchored a newer checkpoint meanwhile")
        {
            verified_again += 1;
        }
        cluster.daemons[1] = Some(started.0);
        refusals.extend(started.1);
    }
    std::fs::remove_file(&fault).expect("healthy token");
    let ledger = load.stop().await;
    assert!(
        ledger.acked.len() > 20,
        "the load ran: {}",
        ledger.acked.len()
    );
    assert!(
        refusals.is_empty(),
        "{} starts refused: {refusals:?}",
        refusals.len()
    );
    eprintln!("{STARTS} starts, {verified_again} verified again against a newer anchor");
    assert!(
        verified_again > 0,
        "the race this test is about never happened"
    );
    // Both daemons serve one chain that verifies.
    assert_one_chain(cluster.daemon(0), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_daemon_does_not_hold_the_chain_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let cluster = Cluster::start(dir.path(), &postgres, "sim", 3);
    let token = cluster.daemon(0).dev_token("dev-handler");
    // The batch: 24 clients over A (which will stall), B and C.
    let load = Load::start(&cluster, 24);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(load.acked() > 0, "the batch is running");

    // SIGSTOP A in the middle of the batch: it stalls wherever it is, perhaps holding the
    // chain-head lock inside its group commit.
    let pid = cluster.daemon(0).pid().to_string();
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
    };
    signal("-STOP");
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Past lock_timeout and idle_in_transaction_session_timeout: B and C commit on.
    let mark = load.acked();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let during = load.acked() - mark;
    assert!(stopped_at.elapsed() >= Duration::from_secs(10));
    signal("-CONT");
    assert!(
        during > 100,
        "B and C committed only {during} seals in the 7 s after A stalled"
    );

    // A recovers by itself: its stale transaction was ended by the server.
    let mut a = client(&cluster.endpoints()[0], &token).await;
    let mut last_error = None;
    for attempt in 0..50 {
        let number = valid_number(500 + attempt);
        match a
            .locker
            .seal(seal_request("dev", "after-stall", &number, &[W]))
            .await
        {
            Ok(_) => {
                last_error = None;
                break;
            }
            Err(status) => last_error = Some(status),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        last_error.is_none(),
        "A serves again after SIGCONT: {last_error:?}\n{}",
        cluster.daemon(0).log()
    );
    load.stop().await;
    assert_one_chain(cluster.daemon(1), dir.path()).await;
    eprintln!("while A was stopped, B and C committed {during} seals in 7 s");
}

/// What a failover cost.
struct Failover {
    /// Seals acknowledged before the failover.
    acknowledged: usize,
    /// Of those, records the promoted standby does not hold.
    lost: usize,
    /// Whether the daemons served seals again on the promoted standby.
    served_after: bool,
    /// What a daemon answered on the promoted standby when it did not serve.
    refusal: String,
    /// What the daemon that no load reached answered on the promoted standby: a seal, an
    /// unseal of an acknowledged handle the standby does not hold (or any, if none was lost),
    /// and its health.
    idle: (Result<(), tonic::Status>, Result<(), tonic::Status>, i32),
}

/// A primary with a standby; daemons on both hosts (read-write session wanted); a batch of
/// seals; the standby stopped (so commits from then on reach it only if the primary waits
/// for it, which it cannot); the primary stopped at once; the standby started again and
/// promoted. `synchronous` sets `synchronous_commit` on the primary to `on`, else `local`.
async fn failover(dir: &Path, synchronous: bool) -> Failover {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).expect("mode");
    let primary = Postgres::start(&dir.join("primary"));
    primary.create_database("locker");
    let standby = primary.start_standby(&dir.join("replica"));
    primary.sql(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
    );
    primary.sql(
        "postgres",
        &format!(
            "ALTER SYSTEM SET synchronous_commit = '{}'",
            if synchronous { "on" } else { "local" }
        ),
    );
    primary.sql("postgres", "SELECT pg_reload_conf()");
    for _ in 0..100 {
        if primary.sql(
            "postgres",
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        ) == "1"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/locker",
        primary.port, standby.port
    );
    let mut cluster = Cluster {
        root: dir.to_owned(),
        url,
        backend: "sim".into(),
        daemons: Vec::new(),
        clock: None,
        extra_args: Vec::new(),
    };
    // Two daemons under load; a third idle through the lost window, as a balancer's spare.
    cluster.spawn(3);
    let token = cluster.daemon(0).dev_token("dev-handler");
    let load = Load::start_on(&cluster, 16, cluster.endpoints()[..2].to_vec());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    standby.stop_immediate();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    primary.stop_immediate();
    let acked = load.stop().await.acked;
    standby.start_again();
    standby.promote();

    // Which acknowledged seals the promoted standby holds, read from the database itself.
    let held: BTreeSet<String> = standby
        .sql("locker", "SELECT key FROM locker.records")
        .lines()
        .map(str::to_owned)
        .collect();
    let lost = acked.values().filter(|h| !held.contains(*h)).count();
    let lost_handle = acked
        .values()
        .find(|h| !held.contains(*h))
        .or_else(|| acked.values().next())
        .cloned()
        .unwrap_or_default();

    // The daemons reconnect by themselves (or refuse the database that lost commits).
    let mut served_after = false;
    let mut refusal = String::new();
    let mut probe = client(&cluster.endpoints()[0], &token).await;
    for attempt in 0..60 {
        match probe
            .locker
            .seal(seal_request(
                "dev",
                "after",
                &valid_number(600 + attempt),
                &[W],
            ))
            .await
        {
            Ok(_) => {
                served_after = true;
                break;
            }
            Err(status) => refusal = format!("{:?}: {}", status.code(), status.message()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The idle daemon, asked after the busy ones: a balancer sends it everything now.
    let mut idle = client(&cluster.endpoints()[2], &token).await;
    // Past its recovery pause (the store was down meanwhile: UNAVAILABLE), what it says.
    let mut sealed = Ok(());
    for attempt in 0..60 {
        sealed = idle
            .locker
            .seal(seal_request("dev", "idle", &valid_number(700), &[W]))
            .await
            .map(drop);
        match &sealed {
            Err(status) if status.code() == tonic::Code::Unavailable && attempt < 59 => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ => break,
        }
    }
    let unsealed = idle
        .locker
        .unseal(pb::UnsealRequest {
            handle: lost_handle,
            purpose: W.into(),
        })
        .await
        .map(drop);
    let health = vault_tests::rpc::health_of(cluster.daemon(2)).await;
    drop(standby);
    Failover {
        acknowledged: acked.len(),
        lost,
        served_after,
        refusal,
        idle: (sealed, unsealed, health),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_synchronous_standby_loses_no_acknowledged_seal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outcome = failover(dir.path(), true).await;
    assert!(outcome.acknowledged > 50, "the batch ran");
    assert_eq!(outcome.lost, 0, "acknowledged seals lost in the failover");
    assert!(
        outcome.served_after,
        "the daemons did not reconnect to the promoted standby: {}",
        outcome.refusal
    );
    let (sealed, unsealed, _) = &outcome.idle;
    assert!(
        sealed.is_ok() && unsealed.is_ok(),
        "the idle daemon serves too: {:?} {:?}",
        sealed,
        unsealed
    );
    eprintln!(
        "synchronous failover: {} acknowledged, 0 lost, serving again",
        outcome.acknowledged
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failover_harness_detects_loss_with_synchronous_commit_local() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outcome = failover(dir.path(), false).await;
    // The negative control: the same harness, only the primary does not wait for the standby.
    assert!(
        outcome.lost > 0,
        "with synchronous_commit = local the paused standby should miss acknowledged seals"
    );
    // And the daemons notice: the promoted database's chain ends before what they committed.
    assert!(
        !outcome.served_after && outcome.refusal.contains("lost commits"),
        "the daemons should refuse the database that lost commits: {}",
        outcome.refusal
    );
    // So does the daemon that was idle through the lost window: it verified the head every
    // half second, so it knows the entries the promoted standby lacks. Nothing is released,
    // an acknowledged handle is not answered NOT_FOUND, and health agrees with the calls.
    let (sealed, unsealed, health) = &outcome.idle;
    for (what, answer) in [("seal", sealed), ("unseal", unsealed)] {
        let status = answer.as_ref().expect_err("the idle daemon refuses");
        assert_eq!(status.code(), tonic::Code::DataLoss, "{what}: {status:?}");
    }
    assert_eq!(
        *health,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32,
        "health agrees with the calls"
    );
    eprintln!(
        "asynchronous failover: {} acknowledged, {} lost; daemons refuse: {}",
        outcome.acknowledged, outcome.lost, outcome.refusal
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unseal_burst_spread_over_three_daemons_raises_one_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let cluster = Cluster::start(dir.path(), &postgres, "sim", 3);
    let token = cluster.daemon(0).dev_token("dev-handler");
    let endpoints = cluster.endpoints();
    let mut a = client(&endpoints[0], &token).await;
    let mut handles = Vec::new();
    for i in 0..10 {
        let number = valid_number(3_000 + i);
        handles.push(
            a.locker
                .seal(seal_request("dev", &format!("B{i}"), &number, &[W]))
                .await
                .expect("seal")
                .into_inner()
                .handle,
        );
    }
    // The dev threshold is 1,000 unseals an hour per handler: 1,050 spread over three
    // daemons is 350 on each, under it on every one, over it for the cluster.
    let mut tasks = Vec::new();
    for (at, endpoint) in endpoints.iter().enumerate() {
        for lane in 0..5 {
            let (endpoint, token, handles) = (endpoint.clone(), token.clone(), handles.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = client(&endpoint, &token).await;
                for i in 0..70 {
                    c.locker
                        .unseal(pb::UnsealRequest {
                            handle: handles[(at + lane + i) % handles.len()].clone(),
                            purpose: W.into(),
                        })
                        .await
                        .expect("unseal");
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("burst");
    }
    let alerts = |entries: &[pb::AuditEntry]| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e.action == "ALERT")
            .map(|e| e.reason.clone())
            .collect()
    };
    let mut auditor = cluster.daemon(1).dev_client("dev-auditor").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while alerts(&export_audit(&mut auditor).await).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Time for a second (wrong) alert from another daemon to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let raised = alerts(&export_audit(&mut auditor).await);
    assert_eq!(
        raised.len(),
        1,
        "one alert for the burst: {raised:?}\n{}\n{}",
        cluster.daemon(0).log(),
        cluster.daemon(1).log()
    );
    assert!(raised[0].contains("unseals_per_hour"), "{raised:?}");
}

/// The index of the daemon holding `duty`'s lease (holders are named `pid<PID>-…`).
fn lease_holder(postgres: &Postgres, cluster: &Cluster, duty: &str) -> Option<usize> {
    let holder = postgres.sql(
        "locker",
        &format!("SELECT holder FROM locker.leases WHERE name = '{duty}' AND expires_at > now()"),
    );
    let pid: u32 = holder
        .strip_prefix("pid")?
        .split('-')
        .next()?
        .parse()
        .ok()?;
    cluster
        .daemons
        .iter()
        .position(|d| d.as_ref().is_some_and(|d| d.pid() == pid))
}

/// Seals `count` numbers over the cluster's daemons, 16 at a time; returns (handle, number).
async fn seal_spread(cluster: &Cluster, count: u64, base: u64) -> Vec<(String, String)> {
    let token = cluster.daemon(0).dev_token("dev-handler");
    let endpoints = cluster.endpoints();
    let mut tasks = Vec::new();
    for lane in 0..16u64 {
        let endpoint = endpoints[lane as usize % endpoints.len()].clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = client(&endpoint, &token).await;
            let mut out = Vec::new();
            for i in (lane..count).step_by(16) {
                let number = valid_number(base + i);
                let handle = c
                    .locker
                    .seal(seal_request("dev", &format!("L{i}"), &number, &[W]))
                    .await
                    .expect("seal")
                    .into_inner()
                    .handle;
                out.push((handle, number));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("sealer"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrap_whose_lease_holder_dies_finishes_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let mut cluster = Cluster::start(dir.path(), &postgres, "sim", 3);
    let records = seal_spread(&cluster, 3000, 20_000).await;
    let holder = lease_holder(&postgres, &cluster, "rewrap").expect("a rewrap lease holder");
    let other = (holder + 1) % 3;
    let mut admin = cluster.daemon(other).dev_client("dev-admin").await;
    admin
        .admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "dev".into(),
        })
        .await
        .expect("rotate");
    let job = |status: pb::KeyStatusResponse| status.tenants.into_iter().find_map(|t| t.job);
    // Kill the holder as soon as its first batch is in.
    loop {
        let status = admin
            .admin
            .key_status(pb::KeyStatusRequest {
                tenant: "dev".into(),
            })
            .await
            .expect("key status")
            .into_inner();
        let job = job(status).expect("a job");
        assert_eq!(
            job.finished_at_unix_ms, 0,
            "the rewrap finished before the kill"
        );
        if job.done > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = cluster.daemons[holder].take().expect("holder");
    drop(killed);
    // Another daemon takes the lease when it runs out and finishes the job.
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = loop {
        let job = job(admin
            .admin
            .key_status(pb::KeyStatusRequest {
                tenant: "dev".into(),
            })
            .await
            .expect("key status")
            .into_inner())
        .expect("a job");
        if job.finished_at_unix_ms != 0 {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the rewrap did not finish: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((finished.done, finished.total), (3000, 3000));
    let mut auditor = cluster.daemon(other).dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    let batches: Vec<&pb::AuditEntry> = entries
        .iter()
        .filter(|e| e.action == "KEY_REWRAP" && e.outcome == "ALLOWED")
        .collect();
    let rewrapped: u64 = batches
        .iter()
        .map(|e| {
            e.reason
                .split(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("a count")
        })
        .sum();
    assert_eq!(rewrapped, 3000, "every record rewrapped exactly once");
    assert_eq!(
        batches
            .iter()
            .filter(|e| e.reason.contains("rotation complete"))
            .count(),
        1
    );
    let mut handler = client(
        &cluster.daemon(other).endpoint(),
        &cluster.daemon(other).dev_token("dev-handler"),
    )
    .await;
    let sample: Vec<(String, String)> = records.iter().step_by(10).cloned().collect();
    unseal_all(&mut handler, &sample).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disposal_whose_lease_holder_dies_disposes_each_record_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let clock = dir.path().join("clock-days");
    std::fs::write(&clock, "0").expect("clock");
    let mut cluster = Cluster::start_with_clock(dir.path(), &postgres, "sim", 3, Some(&clock));
    let records = seal_spread(&cluster, 400, 40_000).await;
    let token = cluster.daemon(0).dev_token("dev-handler");
    let mut handler = client(&cluster.endpoints()[1], &token).await;
    let left_on = vault_tests::rpc::jst_date_in(0);
    for (handle, _) in &records {
        handler
            .locker
            .retire(pb::RetireRequest {
                handle: handle.clone(),
                left_on: left_on.clone(),
            })
            .await
            .expect("retire");
    }
    // Seven years and a month on, every record is due.
    std::fs::write(&clock, (7 * 366 + 40).to_string()).expect("clock");
    // An admin asking a daemon that does not hold the lease is told where disposal runs.
    let holder = lease_holder(&postgres, &cluster, "disposal").expect("a disposal lease holder");
    let mut admin = cluster
        .daemon((holder + 1) % 3)
        .dev_client("dev-admin")
        .await;
    let elsewhere = admin
        .admin
        .run_disposal(pb::RunDisposalRequest {})
        .await
        .expect_err("disposal runs on the lease holder");
    assert_eq!(elsewhere.code(), tonic::Code::Unavailable, "{elsewhere:?}");
    assert_eq!(
        postgres.sql("locker", "SELECT count(*) FROM locker.certificates"),
        "0"
    );
    // The schedule ran on its holder at start and waits an hour: kill the holder, and the
    // daemon taking the lease over runs it at once; kill that one in the middle of the run.
    for round in 0..2 {
        let holder =
            lease_holder(&postgres, &cluster, "disposal").expect("a disposal lease holder");
        let killed = cluster.daemons[holder].take().expect("holder");
        drop(killed);
        if round == 1 {
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while postgres.sql("locker", "SELECT count(*) FROM locker.certificates") == "0" {
            assert!(
                Instant::now() < deadline,
                "no daemon took the disposal over"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let disposed_so_far: usize = postgres
        .sql("locker", "SELECT count(*) FROM locker.certificates")
        .parse()
        .expect("count");
    assert!(
        disposed_so_far < records.len(),
        "the second holder finished before its kill"
    );
    // The last daemon takes over and finishes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while postgres.sql("locker", "SELECT count(*) FROM locker.certificates")
        != records.len().to_string()
    {
        assert!(Instant::now() < deadline, "the disposal did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let survivor = cluster
        .daemons
        .iter()
        .position(Option::is_some)
        .expect("one daemon left");
    let mut auditor = cluster.daemon(survivor).dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    let mut per_handle: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in entries
        .iter()
        .filter(|e| e.action == "SCHEDULED_DISPOSE" && e.outcome == "ALLOWED")
    {
        *per_handle.entry(entry.handle.as_str()).or_default() += 1;
    }
    assert_eq!(per_handle.len(), records.len(), "every record disposed");
    assert!(
        per_handle.values().all(|&n| n == 1),
        "a record disposed twice: {:?}",
        per_handle
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect::<Vec<_>>()
    );
    eprintln!(
        "disposal across two killed lease holders: {} records, each disposed once ({} before the second kill)",
        records.len(),
        disposed_so_far
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dba_can_neither_mint_authority_nor_rewrite_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let mut cluster = Cluster::start(dir.path(), &postgres, "sim", 1);
    let token = cluster.daemon(0).dev_token("dev-handler");
    let mut handler = client(&cluster.endpoints()[0], &token).await;
    let number = valid_number(77);
    let handle = handler
        .locker
        .seal(seal_request("dev", "D77", &number, &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;

    // The DBA copies the admin's operator row over the handler's, hoping for an admin.
    let saved = postgres.sql(
        "locker",
        "SELECT encode(value, 'hex') FROM locker.operators WHERE key = 'dev-handler'",
    );
    postgres.sql(
        "locker",
        "UPDATE locker.operators SET value = (SELECT value FROM locker.operators WHERE key = 'dev-admin') WHERE key = 'dev-handler'",
    );
    // Calls authenticate on the rows the log names (in memory): the forged row grants
    // nothing, and the daemon's periodic hash of the tables finds it within a second, after
    // which every call is refused.
    let refused = handler
        .admin
        .list_operators(pb::ListOperatorsRequest {})
        .await
        .expect_err("a forged row grants nothing");
    assert!(
        matches!(
            refused.code(),
            tonic::Code::PermissionDenied | tonic::Code::DataLoss
        ),
        "{refused:?}"
    );
    wait_for_health(
        cluster.daemon(0),
        tonic_health::pb::health_check_response::ServingStatus::NotServing,
    )
    .await;
    let refused = handler
        .locker
        .unseal(pb::UnsealRequest {
            handle: handle.clone(),
            purpose: W.into(),
        })
        .await
        .expect_err("nor does it keep the handler's own rights");
    assert_eq!(refused.code(), tonic::Code::DataLoss, "{refused:?}");
    assert!(!refused.message().contains(&number));
    postgres.sql(
        "locker",
        &format!(
            "UPDATE locker.operators SET value = decode('{saved}', 'hex') WHERE key = 'dev-handler'"
        ),
    );
    // Served again once the periodic check finds the genuine row.
    let mut served = false;
    for _ in 0..40 {
        let again = pb::UnsealRequest {
            handle: handle.clone(),
            purpose: W.into(),
        };
        if handler.locker.unseal(again).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the genuine row works again");

    // The DBA deletes the newest audit entries: the running daemon takes no more entries on
    // that chain (and releases nothing) until they are back.
    postgres.sql(
        "locker",
        "CREATE TABLE public.cut AS SELECT * FROM locker.audit WHERE key > (SELECT max(key) - 3 FROM locker.audit)",
    );
    postgres.sql(
        "locker",
        "DELETE FROM locker.audit WHERE key IN (SELECT key FROM public.cut)",
    );
    let unseal = pb::UnsealRequest {
        handle: handle.clone(),
        purpose: W.into(),
    };
    let refused = handler
        .locker
        .unseal(unseal.clone())
        .await
        .expect_err("a cut chain takes no more entries");
    assert_eq!(refused.code(), tonic::Code::DataLoss, "{refused:?}");
    assert!(!refused.message().contains(&number));
    postgres.sql(
        "locker",
        "INSERT INTO locker.audit SELECT * FROM public.cut",
    );
    let mut served = false;
    for _ in 0..40 {
        if handler.locker.unseal(unseal.clone()).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the daemon serves again once the entries are back");

    // A clean stop anchors the head in the key backend; then the DBA cuts the chain's tail
    // and moves the head row to match, as a rollback would. The next start refuses it.
    let mut daemon = cluster.daemons[0].take().expect("daemon");
    assert!(daemon.stop().success());
    postgres.sql(
        "locker",
        "DELETE FROM locker.audit WHERE key > (SELECT max(key) - 3 FROM locker.audit)",
    );
    postgres.sql(
        "locker",
        "UPDATE locker.chain_head SET seq = (SELECT max(key) FROM locker.audit)",
    );
    let restart = Daemon::try_start(&daemon.data_dir.clone(), daemon.options().clone());
    let refusal = restart
        .err()
        .expect("a daemon started on a rolled-back chain");
    assert!(refusal.contains("refused"), "{refusal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_the_cluster_restores_into_an_empty_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let mut cluster = Cluster::start(dir.path(), &postgres, "sim", 2);
    let records = seal_spread(&cluster, 40, 60_000).await;
    let snapshot = dir.path().join("cluster.snapshot");
    let (ok, _, stderr) = vault_cli(
        cluster.daemon(1),
        "dev-admin",
        &["backup", "--out", snapshot.to_str().expect("utf8")],
        "",
    );
    assert!(ok, "backup: {stderr}");
    for daemon in &mut cluster.daemons {
        assert!(daemon.take().expect("daemon").stop().success());
    }

    // Into a database that holds data: refused, nothing written.
    let restorer = |database: &str| DaemonOptions {
        backend: Some("sim".into()),
        args: vec![
            "--store-url".into(),
            postgres.url_of(database),
            "--dev-keys".into(),
            dir.path().join("keys").display().to_string(),
        ],
        ..DaemonOptions::default()
    };
    let snapshot_arg = snapshot.to_str().expect("utf8");
    let refused = vault_tests::daemon::run_once(
        &dir.path().join("restorer-a"),
        &restorer("locker"),
        &["--restore-from", snapshot_arg],
    );
    assert!(
        !refused.status.success(),
        "restored over a database with data"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("holds data already"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Into an empty one: verified, loaded, re-anchored; a daemon on it opens every record.
    postgres.create_database("restored");
    let restored = vault_tests::daemon::run_once(
        &dir.path().join("restorer-b"),
        &restorer("restored"),
        &["--restore-from", snapshot_arg],
    );
    assert!(
        restored.status.success(),
        "restore: {}{}",
        String::from_utf8_lossy(&restored.stdout),
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(String::from_utf8_lossy(&restored.stdout).contains("re-anchored"));
    let daemon = Daemon::start(&dir.path().join("after"), restorer("restored"));
    let mut handler = daemon.dev_client("dev-handler").await;
    unseal_all(&mut handler, &records).await;
    assert_one_chain(&daemon, dir.path()).await;
}

/// Copies a simulated token's key file from one daemon's key directory to another's, as an
/// HSM cluster replicates a new key: written aside and renamed, so the reader sees it whole.
fn replicate_keys(from: &Path, to: &Path) {
    let file = |dir: &Path| dir.join("hsm-sim").join(hsm_sim::KEY_FILE_NAME);
    let staged = to.join("hsm-sim").join("replicating.tmp");
    std::fs::copy(file(from), &staged).expect("copy the key file");
    std::fs::rename(&staged, file(to)).expect("put it in place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_not_yet_on_this_daemons_hsm_answers_unavailable_then_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    postgres.create_database("locker");
    let (keys_a, keys_b) = (dir.path().join("keys-a"), dir.path().join("keys-b"));
    let options = |keys: &Path| DaemonOptions {
        backend: Some("sim".into()),
        args: vec![
            "--store-url".into(),
            postgres.url_of("locker"),
            "--dev-keys".into(),
            keys.display().to_string(),
        ],
        ..DaemonOptions::default()
    };
    let a = Daemon::start(&dir.path().join("a"), options(&keys_a));
    // B's "HSM" holds what A's held when B joined.
    std::fs::create_dir_all(keys_b.join("hsm-sim")).expect("keys b");
    replicate_keys(&keys_a, &keys_b);
    let b = Daemon::start(&dir.path().join("b"), options(&keys_b));

    // A rotates the tenant key: the new version exists on A's HSM only, for now.
    let mut admin = a.dev_client("dev-admin").await;
    admin
        .admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "dev".into(),
        })
        .await
        .expect("rotate");
    let token = a.dev_token("dev-handler");
    let mut on_a = client(&a.endpoint(), &token).await;
    let number = valid_number(8_800);
    let handle = on_a
        .locker
        .seal(seal_request("dev", "N1", &number, &[W]))
        .await
        .expect("seal under the new version")
        .into_inner()
        .handle;
    let unseal = pb::UnsealRequest {
        handle: handle.clone(),
        purpose: W.into(),
    };
    let mut on_b = client(&b.endpoint(), &token).await;
    let refused = on_b
        .locker
        .unseal(unseal.clone())
        .await
        .expect_err("B's HSM does not have the key yet");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("not (yet) visible"),
        "{refused:?}"
    );
    assert!(!refused.message().contains(&number));

    // The key reaches B's HSM: the same call succeeds, nothing restarted.
    replicate_keys(&keys_a, &keys_b);
    let opened = on_b
        .locker
        .unseal(unseal)
        .await
        .expect("served once the key is there")
        .into_inner();
    assert_eq!(opened.number, number);
}

/// Two daemons retiring records into a month no key exists for yet, at the same instant:
/// the cluster's lease on creating epoch keys makes one create it and the other use it, so
/// both succeed and each month gets one key (before, one of the two was refused ABORTED and
/// its new HSM key left unused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retirements_on_two_daemons_into_a_new_month_share_one_epoch_key() {
    const ROUNDS: usize = 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let cluster = Cluster::start(dir.path(), &postgres, "sim", 2);
    let records = seal_spread(&cluster, 2 * ROUNDS as u64, 30_000).await;
    let token = cluster.daemon(0).dev_token("dev-handler");
    let endpoints = cluster.endpoints();
    let mut on_a = client(&endpoints[0], &token).await;
    let mut on_b = client(&endpoints[1], &token).await;
    for round in 0..ROUNDS {
        // 31 days apart: every round leaves in (and so is disposed of in) a month of its own.
        let left_on = vault_tests::rpc::jst_date_in(31 * round as i64);
        let retire = |handle: &str| pb::RetireRequest {
            handle: handle.to_owned(),
            left_on: left_on.clone(),
        };
        let (first, second) = tokio::join!(
            on_a.locker.retire(retire(&records[2 * round].0)),
            on_b.locker.retire(retire(&records[2 * round + 1].0))
        );
        first.unwrap_or_else(|e| panic!("round {round}, daemon A: {e:?}"));
        second.unwrap_or_else(|e| panic!("round {round}, daemon B: {e:?}"));
    }
    let keys = postgres.sql("locker", "SELECT count(*) FROM locker.epoch_keys");
    assert_eq!(keys, ROUNDS.to_string(), "one key per month");
    // Nothing holds the lease once the calls are done.
    let held = postgres.sql(
        "locker",
        "SELECT count(*) FROM locker.leases WHERE name = 'epoch-keys' AND expires_at > now()",
    );
    assert_eq!(held, "0");
}

/// Daemons starting together on an empty database provision it once. The state MAC key is
/// made under an advisory lock the others wait for (before, each could create one in the HSM,
/// all but one left unused); the first audit key and the first operators under a lease
/// (before, the second daemon died: "audit key version 1 exists already"). The test holds the
/// lock itself for a while, as a daemon provisioning slowly would: no daemon gets past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_starting_together_on_an_empty_database_provision_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let cluster = Cluster::start(dir.path(), &postgres, "sim", 0);
    // The schema exists once the migrations ran; take the lock in the same database.
    let holder =
        postgres.hold_advisory_lock("locker", vault_daemon::store::postgres::FIRST_START_LOCK);
    let starts: Vec<_> = (0..2)
        .map(|i| {
            let data_dir = dir.path().join(format!("daemon{i}"));
            let options = cluster.options();
            std::thread::spawn(move || Daemon::try_start(&data_dir, options))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        starts.iter().all(|start| !start.is_finished()),
        "a daemon provisioned the database while another held the lock"
    );
    holder.release();
    let daemons: Vec<Daemon> = starts
        .into_iter()
        .map(|start| start.join().expect("thread").expect("daemon started"))
        .collect();
    let created: usize = daemons
        .iter()
        .map(|d| d.log().matches("state MAC key created").count())
        .sum();
    assert_eq!(created, 1, "one state MAC key for the cluster");
    // Both serve, on one store: sealed on one, opened on the other.
    let token = daemons[0].dev_token("dev-handler");
    let mut on_a = client(&daemons[0].endpoint(), &token).await;
    let mut on_b = client(&daemons[1].endpoint(), &token).await;
    let number = valid_number(4242);
    let handle = on_a
        .locker
        .seal(seal_request("dev", "S1", &number, &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    unseal_all(&mut on_b, &[(handle, number)]).await;
}

/// A daemon that waits on another's provisioning for longer than its statement timeout stops
/// with a message saying so, rather than a bare "statement canceled".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_waits_too_long_on_provisioning_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let cluster = Cluster::start(dir.path(), &postgres, "sim", 0);
    let _holder =
        postgres.hold_advisory_lock("locker", vault_daemon::store::postgres::FIRST_START_LOCK);
    let refused = Daemon::try_start(&dir.path().join("daemon0"), cluster.options())
        .err()
        .expect("no start while another daemon provisions");
    assert!(
        refused.contains("another daemon has been provisioning this new database"),
        "{refused}"
    );
}

/// Three daemons under round-robin load — every call to the next daemon, so the head moves
/// under every daemon's optimistic commits all the time — answer every call: a group commit
/// whose one-round-trip head check fails is redone the long way, never answered UNAVAILABLE
/// while the database is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_load_over_three_daemons_fails_no_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let cluster = Cluster::start(dir.path(), &postgres, "sim", 3);
    let token = cluster.daemon(0).dev_token("dev-handler");
    let endpoints = cluster.endpoints();
    let mut clients = Vec::new();
    for endpoint in &endpoints {
        clients.push(client(endpoint, &token).await);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..24u64 {
        let clients = clients.clone();
        let stop = Arc::clone(&stop);
        workers.spawn(async move {
            let (mut calls, mut failures) = (0u64, Vec::new());
            let mut sealed: Vec<(String, String)> = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let mut client = clients[(worker + i) as usize % clients.len()].clone();
                i += 1;
                let outcome = if i % 2 == 1 || sealed.is_empty() {
                    let number = valid_number(2_000_000 + worker * 100_000 + i);
                    client
                        .locker
                        .seal(seal_request(
                            "dev",
                            &format!("R{worker}-{i}"),
                            &number,
                            &[W],
                        ))
                        .await
                        .map(|reply| sealed.push((reply.into_inner().handle, number)))
                } else {
                    let (handle, number) = sealed[(i as usize / 2) % sealed.len()].clone();
                    client
                        .locker
                        .unseal(pb::UnsealRequest {
                            handle,
                            purpose: W.into(),
                        })
                        .await
                        .map(|reply| assert_eq!(reply.into_inner().number, number))
                };
                calls += 1;
                if let Err(status) = outcome {
                    failures.push(format!("{:?}: {}", status.code(), status.message()));
                }
            }
            (calls, failures)
        });
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut calls, mut failures) = (0, Vec::new());
    while let Some(result) = workers.join_next().await {
        let (n, failed) = result.expect("worker");
        calls += n;
        failures.extend(failed);
    }
    assert!(calls >= 1_000, "the load ran: {calls} calls");
    eprintln!("{calls} calls over three daemons, round robin");
    // What the daemons said about it (warnings and errors), so a rare failure explains
    // itself in CI's summary.
    let said: String = cluster
        .daemons
        .iter()
        .flatten()
        .enumerate()
        .flat_map(|(n, daemon)| {
            daemon
                .log()
                .lines()
                .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
                .map(|line| format!("daemon {n}: {line}\n"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed, e.g. {:?}\nthe daemons' warnings and errors:\n{said}",
        failures.len(),
        failures.first()
    );
}

/// A daemon stopped cleanly hands its duties over at once: another daemon holds the
/// checkpoint lease within a few seconds, not after the ten the lease would take to run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_hands_the_duties_over_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let mut cluster = Cluster::start(dir.path(), &postgres, "sim", 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    let holder = loop {
        if let Some(holder) = lease_holder(&postgres, &cluster, "checkpoints") {
            break holder;
        }
        assert!(
            Instant::now() < deadline,
            "nobody took the checkpoint lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stopped = cluster.daemons[holder].take().expect("running");
    let stopped_pid = stopped.pid();
    assert!(stopped.stop().success(), "a clean stop");
    let stopped_at = Instant::now();
    let other = 1 - holder;
    loop {
        if lease_holder(&postgres, &cluster, "checkpoints") == Some(other) {
            break;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(4),
            "the other daemon waited for the lease to run out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for duty in ["rewrap", "disposal"] {
        let held = postgres.sql(
            "locker",
            &format!(
                "SELECT count(*) FROM locker.leases WHERE name = '{duty}' AND expires_at > now() AND holder LIKE 'pid{stopped_pid}-%'"
            ),
        );
        assert_eq!(
            held.trim(),
            "0",
            "{duty} is still leased to the stopped daemon"
        );
    }
}

/// A second daemon started on the cluster's database without the first one's key backend (with
/// `--dev`, a forgotten `--dev-keys`) is refused with the way out, not "key not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_without_the_stores_key_backend_is_told_which_one_it_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let cluster = Cluster::start(dir.path(), &postgres, "sim", 1);
    let mut options = cluster.options();
    options.args = vec!["--store-url".into(), cluster.url.clone()];
    let refused = Daemon::try_start(&dir.path().join("stray"), options)
        .err()
        .expect("refused without the store's key backend");
    assert!(
        refused.contains("not in this key backend") && refused.contains("--dev-keys"),
        "{refused}"
    );
}
