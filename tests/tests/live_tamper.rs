//! The store's writer works while the daemons run: a DBA of the cluster's PostgreSQL, or
//! someone with write access to a stopped daemon's redb file, rewrites, re-chains or cuts the
//! audit log. Every attack here worked before audit entries carried a MAC under the log key and
//! before each daemon checked the log against what it had verified; each is refused now, by
//! every daemon, and nothing is released over it.

use std::path::Path;
use std::time::{Duration, Instant};

use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use vault_client::{Client, pb};
use vault_daemon::audit::entry::ChainedEntry;
use vault_daemon::store::redb::RECORDS;
use vault_tests::numbers::valid_number;
use vault_tests::postgres::Postgres;
use vault_tests::rpc::{seal_request, wait_for_health};
use vault_tests::{Daemon, DaemonOptions, store_edit};

const W: &str = "STAFF_WITHHOLDING";

fn unseal_request(handle: &str) -> pb::UnsealRequest {
    pb::UnsealRequest {
        handle: handle.to_owned(),
        purpose: W.into(),
    }
}

/// Seals one number and unseals it once: the UNSEAL entry an attacker wants gone.
async fn released(handler: &mut Client, subject: &str, seed: u64) -> (String, String) {
    let number = valid_number(seed);
    let handle = handler
        .locker
        .seal(seal_request("dev", subject, &number, &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    handler
        .locker
        .unseal(unseal_request(&handle))
        .await
        .expect("unseal");
    (handle, number)
}

/// `entry` turned from the UNSEAL it was into a harmless DESCRIBE, and every entry after it
/// re-chained (SHA-256 needs no key), their MACs left as they were (the attacker has no log
/// key): what a DBA or a writer of the file can do. Returns the rows to write back.
fn rewrite_unseal(rows: &[(u64, Vec<u8>)], handle: &str) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut prev: Option<[u8; 32]> = None;
    for (seq, row) in rows {
        let stored = ChainedEntry::from_row(row).expect("row");
        let target = stored.entry.action == "UNSEAL" && stored.entry.handle == handle;
        if prev.is_none() && !target {
            continue;
        }
        let mut entry = stored.entry.clone();
        if target {
            entry.action = "DESCRIBE".into();
            entry.purpose.clear();
            entry.reason = "metadata read".into();
        }
        let mut rechained = ChainedEntry::new(entry, prev.unwrap_or(stored.prev_hash));
        rechained.mac = stored.mac;
        prev = Some(rechained.hash);
        out.push((*seq, rechained.to_row()));
    }
    assert!(!out.is_empty(), "the UNSEAL entry was found");
    out
}

fn assert_refused_without_number(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    number: &str,
) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(!status.message().contains(number));
}

/// A dev daemon on the embedded store (this suite is not run with `VAULT_TEST_STORE`).
fn redb_daemon(dir: &Path) -> Daemon {
    Daemon::start(dir, DaemonOptions::default())
}

fn kill(daemon: Daemon) {
    let pid = daemon.pid();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_tail_rewritten_after_sigkill_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let daemon = redb_daemon(&data);
    let mut handler = daemon.dev_client("dev-handler").await;
    let (handle, _) = released(&mut handler, "K1", 11).await;
    drop(handler);
    // Killed before any checkpoint covers the UNSEAL: it sits in the unanchored tail.
    kill(daemon);
    let rows = store_edit::audit_rows(&data);
    let rewritten = rewrite_unseal(&rows, &handle);
    store_edit::rewrite_audit(&data, |rows| {
        for (seq, row) in &rewritten {
            let at = rows.iter().position(|(s, _)| s == seq).expect("entry");
            rows[at].1 = row.clone();
        }
    });
    let said = Daemon::refusal(&data, DaemonOptions::default());
    assert!(
        said.contains("not authenticated by the log key"),
        "refused, naming the forged entry: {said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_tail_cut_after_sigkill_is_refused_by_the_witness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let daemon = redb_daemon(&data);
    let mut handler = daemon.dev_client("dev-handler").await;
    released(&mut handler, "K2", 12).await;
    drop(handler);
    // The daemon's log check runs every 500 ms and keeps its witness at what it verified.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(daemon);
    let rows = store_edit::audit_rows(&data);
    let (last, _) = *rows.last().expect("entries");
    // The two newest entries (the UNSEAL among them) vanish: the chain that is left is
    // genuine, every MAC holds, nothing anchors the cut-off tail.
    store_edit::rewrite_audit(&data, |rows| rows.truncate(rows.len() - 2));
    let said = Daemon::refusal(&data, DaemonOptions::default());
    assert!(
        said.contains(&format!("ends at entry {}", last - 2))
            && said.contains(&format!("verified entry {last}")),
        "refused, naming both positions: {said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_tail_torn_to_look_like_a_crash_is_refused_by_the_witness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let daemon = redb_daemon(&data);
    let mut handler = daemon.dev_client("dev-handler").await;
    released(&mut handler, "K3", 13).await;
    drop(handler);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(daemon);
    // The newest entry's frame half zeroed, as a write cut off by a crash leaves it: the
    // daemon cuts such a tail off, since nobody can have been answered for it — unless the
    // witness says the entry was verified, and then it is not a crash.
    let rows = store_edit::audit_rows(&data);
    let (last, row) = rows.last().expect("entries").clone();
    let segment = std::fs::read_dir(data.join("audit"))
        .expect("segments")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read");
    let at = bytes
        .windows(row.len())
        .rposition(|w| w == row.as_slice())
        .expect("the newest frame");
    bytes[at + row.len() / 2..at + row.len()].fill(0);
    std::fs::write(&segment, &bytes).expect("tear");
    let said = Daemon::refusal(&data, DaemonOptions::default());
    assert!(
        said.contains(&format!("ends at entry {}", last - 1))
            && said.contains(&format!("verified entry {last}")),
        "refused, naming both positions: {said}"
    );
    let kept = std::fs::read_dir(data.join("audit"))
        .expect("segments")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().contains(".torn-"))
        })
        .count();
    assert_eq!(kept, 1, "the torn bytes are kept beside the segment");
}

/// Two dev daemons on one PostgreSQL database and one key directory.
struct Pair {
    daemons: Vec<Daemon>,
}

impl Pair {
    fn start(root: &Path, postgres: &Postgres) -> Pair {
        Pair::start_with(root, postgres, &[])
    }

    /// Two daemons, each with `extra` arguments.
    fn start_with(root: &Path, postgres: &Postgres, extra: &[&str]) -> Pair {
        postgres.create_database("locker");
        let mut args = vec![
            "--store-url".into(),
            postgres.url_of("locker"),
            "--dev-keys".into(),
            root.join("keys").display().to_string(),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let options = DaemonOptions {
            backend: Some("sim".into()),
            args,
            ..DaemonOptions::default()
        };
        let daemons = (0..2)
            .map(|i| Daemon::start(&root.join(format!("daemon{i}")), options.clone()))
            .collect();
        Pair { daemons }
    }
}

/// The audit rows of the cluster's database, as the DBA reads them.
fn pg_audit_rows(postgres: &Postgres) -> Vec<(u64, Vec<u8>)> {
    postgres
        .sql(
            "locker",
            "SELECT key || ' ' || encode(value, 'hex') FROM locker.audit ORDER BY key",
        )
        .lines()
        .map(|line| {
            let (key, hex_row) = line.split_once(' ').expect("key and row");
            (
                key.parse().expect("key"),
                hex::decode(hex_row).expect("hex"),
            )
        })
        .collect()
}

async fn refuses_within_a_second(daemon: &Daemon, handle: &str, number: &str) {
    let started = Instant::now();
    wait_for_health(daemon, ServingStatus::NotServing).await;
    let took = started.elapsed();
    assert!(
        took <= Duration::from_millis(1500),
        "NOT_SERVING after {took:?}"
    );
    let mut handler = daemon.dev_client("dev-handler").await;
    assert_refused_without_number(handler.locker.unseal(unseal_request(handle)).await, number);
    let mut auditor = daemon.dev_client("dev-auditor").await;
    assert!(
        auditor
            .admin
            .audit_verify(pb::AuditVerifyRequest {})
            .await
            .is_err_and(|s| s.code() == Code::DataLoss),
        "online verification says nothing is OK"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dba_rechaining_an_unseal_with_a_filler_is_refused_by_every_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let pair = Pair::start(dir.path(), &postgres);
    let mut handler = pair.daemons[0].dev_client("dev-handler").await;
    let (handle, number) = released(&mut handler, "P1", 21).await;
    // Both daemons have seen the UNSEAL (each checks the log every 500 ms).
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // In one transaction: the UNSEAL becomes a DESCRIBE, the later entries are re-chained, a
    // filler entry is appended and the head moved, as the attack on the running cluster did.
    let rows = pg_audit_rows(&postgres);
    let mut rewritten = rewrite_unseal(&rows, &handle);
    let (last_seq, last_row) = rewritten.last().cloned().expect("rows");
    let last = ChainedEntry::from_row(&last_row).expect("row");
    let mut filler_entry = last.entry.clone();
    filler_entry.seq = last_seq + 1;
    filler_entry.action = "PING".into();
    let mut filler = ChainedEntry::new(filler_entry, last.hash);
    filler.mac = last.mac;
    rewritten.push((last_seq + 1, filler.to_row()));
    let checkpoints_before =
        postgres.sql("locker", "SELECT count(*) FROM locker.audit_checkpoints");
    let mut sql = String::from("BEGIN;");
    for (seq, row) in &rewritten {
        sql.push_str(&format!(
            "INSERT INTO locker.audit (key, value) VALUES ({seq}, decode('{}', 'hex')) ON CONFLICT (key) DO UPDATE SET value = excluded.value;",
            hex::encode(row)
        ));
    }
    sql.push_str(&format!(
        "UPDATE locker.chain_head SET seq = {} WHERE id = 1; COMMIT;",
        last_seq + 1
    ));
    postgres.sql("locker", &sql);

    for daemon in &pair.daemons {
        refuses_within_a_second(daemon, &handle, &number).await;
    }
    // Never signed: no checkpoint was added over the forgery (the checkpoint interval of a
    // daemon, 10 s, has passed by now).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let checkpoints_after = postgres.sql("locker", "SELECT count(*) FROM locker.audit_checkpoints");
    assert_eq!(
        checkpoints_after, checkpoints_before,
        "a checkpoint was signed over the forgery"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dba_cutting_the_tail_is_refused_live_by_every_daemon_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let mut pair = Pair::start(dir.path(), &postgres);
    let mut handler = pair.daemons[0].dev_client("dev-handler").await;
    let (handle, number) = released(&mut handler, "P2", 22).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    postgres.sql(
        "locker",
        "BEGIN; DELETE FROM locker.audit WHERE key > (SELECT max(key) - 2 FROM locker.audit); UPDATE locker.chain_head SET seq = (SELECT max(key) FROM locker.audit) WHERE id = 1; COMMIT;",
    );
    for daemon in &pair.daemons {
        refuses_within_a_second(daemon, &handle, &number).await;
    }
    // Restarted, the daemon that did not write the cut entries still refuses: its witness.
    let second = pair.daemons.pop().expect("daemon");
    let (data_dir, options) = (second.data_dir.clone(), second.options().clone());
    kill(second);
    let said = match Daemon::try_start(&data_dir, options) {
        Ok(mut daemon) => {
            daemon.stop();
            panic!("a restarted daemon accepted the cut chain");
        }
        Err(said) => said,
    };
    assert!(said.contains("cut back"), "{said}");
}

/// The stored row of `key` in `table`, hex, as the DBA reads it.
fn pg_row(postgres: &Postgres, table: &str, key: &str) -> String {
    let row = postgres.sql(
        "locker",
        &format!("SELECT encode(value, 'hex') FROM locker.{table} WHERE key = '{key}'"),
    );
    assert!(!row.trim().is_empty(), "{table}/{key} is stored");
    row.trim().to_owned()
}

/// The DBA's one UPDATE: `key` of `table` back to the bytes it had.
fn pg_put_back(postgres: &Postgres, table: &str, key: &str, hex_row: &str) {
    postgres.sql(
        "locker",
        &format!(
            "UPDATE locker.{table} SET value = decode('{hex_row}', 'hex') WHERE key = '{key}'"
        ),
    );
}

/// A second token of the dev handler, its two shares issued and approved on daemon 0.
async fn second_handler_token(
    pair: &Pair,
    admin: &mut Client,
) -> (pb::IssueTokenResponse, secrecy::SecretString) {
    let mut approver = pair.daemons[0].dev_client("dev-admin2").await;
    vault_tests::rpc::split_token(
        admin,
        &mut approver,
        pb::IssueTokenRequest {
            operator_id: "dev-handler".into(),
            ttl_seconds: 3600,
            cert_fingerprint: String::new(),
        },
    )
    .await
}

/// Waits until `client`'s daemon answers calls again (DATA_LOSS meanwhile): it recovers by
/// itself once the rows are right (a refused commit retries after a pause).
async fn until_it_answers(client: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(status) = client.admin.list_purposes(pb::ListPurposesRequest {}).await {
        assert_eq!(status.code(), Code::DataLoss, "{status:?}");
        assert!(Instant::now() < deadline, "no recovery: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After a row was put back: each daemon refuses the next call with `token` (an authority row
/// decides nothing: the call is refused on the log's rows; a record row read is refused
/// DATA_LOSS), releasing nothing; within a second each goes NOT_SERVING and refuses every call
/// DATA_LOSS, and the refusals are in the log; once the DBA undoes it, each serves again by
/// itself.
async fn put_back_is_refused_everywhere(
    postgres: &Postgres,
    pair: &Pair,
    token: &secrecy::SecretString,
    (handle, number): (&str, &str),
    alert_names: &str,
    undo: impl Fn(),
) {
    for daemon in &pair.daemons {
        let mut client = daemon.client(Some(token.clone())).await;
        let status = client
            .locker
            .unseal(unseal_request(handle))
            .await
            .expect_err("refused");
        assert!(
            matches!(status.code(), Code::DataLoss | Code::Unauthenticated),
            "{status:?}"
        );
        assert!(!status.message().contains(number));
    }
    let started = Instant::now();
    for daemon in &pair.daemons {
        wait_for_health(daemon, ServingStatus::NotServing).await;
        let mut handler = daemon.dev_client("dev-auditor").await;
        let status = handler
            .admin
            .list_purposes(pb::ListPurposesRequest {})
            .await
            .expect_err("every call is refused meanwhile");
        assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    }
    let took = started.elapsed();
    assert!(
        took <= Duration::from_millis(1500),
        "NOT_SERVING after {took:?}"
    );
    // The log itself is intact: each daemon records what it found as an ALERT.
    let alerts = pg_audit_rows(postgres)
        .iter()
        .map(|(_, row)| ChainedEntry::from_row(row).expect("row").entry)
        .filter(|entry| {
            entry.action == "ALERT"
                && entry.code == "DATA_LOSS"
                && entry.reason.contains(alert_names)
        })
        .count();
    assert!(alerts >= 2, "each daemon recorded the tampering: {alerts}");
    undo();
    for daemon in &pair.daemons {
        wait_for_health(daemon, ServingStatus::Serving).await;
    }
}

/// Each daemon refuses `token`'s unseal of `handle` with `code` (UNAUTHENTICATED: revoked or
/// disabled; FAILED_PRECONDITION: disposed).
async fn every_daemon_refuses(
    pair: &Pair,
    token: &secrecy::SecretString,
    handle: &str,
    code: Code,
) {
    for daemon in &pair.daemons {
        let mut client = daemon.client(Some(token.clone())).await;
        let status = client
            .locker
            .unseal(unseal_request(handle))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code, "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_put_back_is_refused_by_every_daemon_on_its_next_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let pair = Pair::start(dir.path(), &postgres);
    let mut admin = pair.daemons[0].dev_client("dev-admin").await;
    let (issued, token) = second_handler_token(&pair, &mut admin).await;
    let mut handler = pair.daemons[0].dev_client("dev-handler").await;
    let (handle, number) = released(&mut handler, "T1", 41).await;
    for daemon in &pair.daemons {
        let mut client = daemon.client(Some(token.clone())).await;
        client
            .locker
            .unseal(unseal_request(&handle))
            .await
            .expect("the token works on every daemon");
    }
    let before = pg_row(&postgres, "tokens", &issued.token_id);
    admin
        .admin
        .revoke_token(pb::RevokeTokenRequest {
            token_id: issued.token_id.clone(),
        })
        .await
        .expect("revoke");
    // The other daemon learns it from the log on its very next call.
    every_daemon_refuses(&pair, &token, &handle, Code::Unauthenticated).await;
    let revoked = pg_row(&postgres, "tokens", &issued.token_id);
    pg_put_back(&postgres, "tokens", &issued.token_id, &before);
    put_back_is_refused_everywhere(
        &postgres,
        &pair,
        &token,
        (&handle, &number),
        "authority rows",
        || pg_put_back(&postgres, "tokens", &issued.token_id, &revoked),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_operator_put_back_is_refused_by_every_daemon_on_its_next_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let pair = Pair::start(dir.path(), &postgres);
    let mut admin = pair.daemons[1].dev_client("dev-admin").await;
    let mut handler = pair.daemons[0].dev_client("dev-handler").await;
    let (handle, number) = released(&mut handler, "O1", 42).await;
    let token = pair.daemons[0].dev_token("dev-handler");
    let before = pg_row(&postgres, "operators", "dev-handler");
    admin
        .admin
        .disable_operator(pb::DisableOperatorRequest {
            operator_id: "dev-handler".into(),
        })
        .await
        .expect("disable");
    every_daemon_refuses(&pair, &token, &handle, Code::Unauthenticated).await;
    let disabled = pg_row(&postgres, "operators", "dev-handler");
    pg_put_back(&postgres, "operators", "dev-handler", &before);
    put_back_is_refused_everywhere(
        &postgres,
        &pair,
        &token,
        (&handle, &number),
        "authority rows",
        || pg_put_back(&postgres, "operators", "dev-handler", &disabled),
    )
    .await;
}

/// The DBA puts back a revoked token's row and an admin changes an authority row a moment
/// later, inside the window before the periodic check. The commit of that change must not hash
/// the put-back row into the digest it names (the log would make the revoked token current
/// again, and every later check agree): the writer checks the tables before the change, so
/// the change is refused DATA_LOSS, the token stays refused everywhere, and once the DBA undoes
/// the row both daemons serve again (they would not, had the log taken it in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_put_back_is_never_laundered_by_the_next_authority_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let pair = Pair::start(dir.path(), &postgres);
    let mut admin = pair.daemons[0].dev_client("dev-admin").await;
    let (issued, token) = second_handler_token(&pair, &mut admin).await;
    let mut handler = pair.daemons[0].dev_client("dev-handler").await;
    let (handle, number) = released(&mut handler, "L1", 43).await;
    let before = pg_row(&postgres, "tokens", &issued.token_id);
    admin
        .admin
        .revoke_token(pb::RevokeTokenRequest {
            token_id: issued.token_id.clone(),
        })
        .await
        .expect("revoke");
    let revoked = pg_row(&postgres, "tokens", &issued.token_id);
    for round in 0..3 {
        // The put-back and, milliseconds later, a routine change of an authority row.
        pg_put_back(&postgres, "tokens", &issued.token_id, &before);
        let changed = admin
            .admin
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: format!("later-{round}"),
                name: String::new(),
            })
            .await;
        let status = changed.expect_err("a change over a put-back row is refused");
        assert_eq!(status.code(), Code::DataLoss, "{status:?}");
        for daemon in &pair.daemons {
            let mut client = daemon.client(Some(token.clone())).await;
            let status = client
                .locker
                .unseal(unseal_request(&handle))
                .await
                .expect_err("the revoked token stays refused");
            assert!(!status.message().contains(&number), "{status:?}");
        }
        pg_put_back(&postgres, "tokens", &issued.token_id, &revoked);
        // Each daemon recovers by itself (a refused commit retries after a pause): its calls
        // are answered again, and the token is refused as revoked.
        for daemon in &pair.daemons {
            until_it_answers(&mut daemon.dev_client("dev-auditor").await).await;
            wait_for_health(daemon, ServingStatus::Serving).await;
        }
        every_daemon_refuses(&pair, &token, &handle, Code::Unauthenticated).await;
    }
    // Nothing of it reached the log but the refusals and alerts: no tenant was created.
    let tenants = admin
        .admin
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .expect("tenants")
        .into_inner()
        .tenants;
    assert!(
        tenants.iter().all(|t| !t.tenant_id.starts_with("later-")),
        "{tenants:?}"
    );
}

/// Nothing undoes a key destroyed in the backend. A DBA puts back the row of a destruction
/// that was approved and then cancelled: the daemon must not destroy the key when the waiting
/// period ends. It checks the request against the log before asking the backend, finds the
/// row is not what the log names, and refuses (DATA_LOSS, an ALERT, NOT_SERVING); once the
/// row is undone it serves again and the key version was never destroyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_key_destruction_put_back_destroys_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    postgres.create_database("locker");
    let data = dir.path().join("daemon");
    let (daemon, mut admin, mut approver) = vault_tests::rpc::start_from_config(
        &data,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\nbackend = \"postgres\"\nurl = \"{}\"\n\
             [backend]\nkind = \"sim\"\nallow_insecure = true\n\
             [keys]\ndestroy_wait_secs = 1\nallow_short_destroy_wait = true\n",
            data.display(),
            postgres.url_of("locker"),
        ),
        DaemonOptions::default(),
    )
    .await;
    admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "t1".into(),
            name: String::new(),
        })
        .await
        .expect("tenant");
    admin
        .admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "t1".into(),
        })
        .await
        .expect("rotate");
    vault_tests::rpc::wait_for_rewrap(&mut admin, "t1", 1).await;
    let request = admin
        .admin
        .request_key_destruction(pb::RequestKeyDestructionRequest {
            tenant: "t1".into(),
            version: 1,
        })
        .await
        .expect("request")
        .into_inner();
    let id = pb::KeyDestructionIdRequest {
        id: request.id.clone(),
    };
    approver
        .admin
        .approve_key_destruction(id.clone())
        .await
        .expect("approve");
    let approved = pg_row(&postgres, "key_destructions", &request.id);
    admin
        .admin
        .cancel_key_destruction(id)
        .await
        .expect("cancel within the waiting period");
    let cancelled = pg_row(&postgres, "key_destructions", &request.id);
    // Past the waiting period, the approval is put back, again and again: the destruction task
    // looks every half second and races the periodic check of the rows.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..4 {
        pg_put_back(&postgres, "key_destructions", &request.id, &approved);
        tokio::time::sleep(Duration::from_millis(700)).await;
        pg_put_back(&postgres, "key_destructions", &request.id, &cancelled);
        until_it_answers(&mut admin).await;
    }
    wait_for_health(&daemon, ServingStatus::Serving).await;

    let versions = admin
        .admin
        .key_status(pb::KeyStatusRequest {
            tenant: "t1".into(),
        })
        .await
        .expect("status")
        .into_inner()
        .tenants
        .remove(0)
        .versions;
    let first = versions.iter().find(|v| v.version == 1).expect("version 1");
    assert_ne!(first.state, "destroyed", "{versions:?}");
    // And in the key backend itself (the simulated token's key file): the key of version 1
    // still has its material.
    let keys: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("hsm-sim").join("hsm-sim.keys.json")).expect("key file"),
    )
    .expect("json");
    let kek = keys["keys"]
        .as_object()
        .expect("keys")
        .values()
        .find(|key| key["label"] == "kek/t1/1")
        .expect("the key of version 1");
    assert!(
        !kek["material_hex"].is_null(),
        "the key of a cancelled destruction was destroyed in the backend"
    );
    let entries: Vec<_> = pg_audit_rows(&postgres)
        .iter()
        .map(|(_, row)| ChainedEntry::from_row(row).expect("row").entry)
        .collect();
    assert!(
        !entries
            .iter()
            .any(|e| e.action == "KEY_DESTROY" && e.reason.contains("destroyed")),
        "a key was destroyed: {entries:?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.action == "ALERT" && e.code == "DATA_LOSS"),
        "the put-back row was recorded as tampering"
    );
}

/// A record row put back is found by the one daemon that reads it. The other daemon never
/// reads that record, yet stops too: the first names the record in its ALERT entry, and every
/// daemon that verifies the log checks the row itself — so within a second both refuse every
/// call, a balancer can send nothing to a daemon serving a store known to be tampered with,
/// and both serve again by themselves once the row is undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_record_found_by_one_daemon_stops_every_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let pair = Pair::start(dir.path(), &postgres);
    let mut handler = pair.daemons[0].dev_client("dev-handler").await;
    let (handle, number) = released(&mut handler, "S1", 44).await;
    let (other, _) = released(&mut handler, "S2", 45).await;
    let active = pg_row(&postgres, "records", &handle);
    dispose(&pair.daemons[0], &handle).await;
    let disposed = pg_row(&postgres, "records", &handle);
    pg_put_back(&postgres, "records", &handle, &active);
    // Daemon 0 reads it: refused, never the number.
    let status = handler
        .locker
        .unseal(unseal_request(&handle))
        .await
        .expect_err("tampered");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(!status.message().contains(&number));
    // Daemon 1 stops without reading it: health and a call of another record agree.
    let started = Instant::now();
    wait_for_health(&pair.daemons[1], ServingStatus::NotServing).await;
    let mut elsewhere = pair.daemons[1].dev_client("dev-handler").await;
    let status = elsewhere
        .locker
        .unseal(unseal_request(&other))
        .await
        .expect_err("every call refused while the store is known tampered");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    let took = started.elapsed();
    assert!(
        took <= Duration::from_millis(1500),
        "stopped after {took:?}"
    );
    let alert = pg_audit_rows(&postgres)
        .iter()
        .map(|(_, row)| ChainedEntry::from_row(row).expect("row").entry)
        .find(|entry| entry.action == "ALERT" && entry.code == "DATA_LOSS")
        .expect("the alert");
    assert_eq!(alert.handle, handle, "the alert names the record");
    pg_put_back(&postgres, "records", &handle, &disposed);
    for daemon in &pair.daemons {
        wait_for_health(daemon, ServingStatus::Serving).await;
    }
    let mut elsewhere = pair.daemons[1].dev_client("dev-handler").await;
    elsewhere
        .locker
        .unseal(unseal_request(&other))
        .await
        .expect("serves again");
}

/// A tenant's row put back from before a rotation would make the old key version active
/// again: a seal a moment later would seal under it (a version on its way to destruction).
/// The seal checks the tenant row it read against the log's and refuses DATA_LOSS; the record
/// is never written, both daemons stop within a second, and serve again once the row is
/// undone, sealing under the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_row_put_back_seals_nothing_under_the_old_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let pair = Pair::start(dir.path(), &postgres);
    let mut admin = pair.daemons[0].dev_client("dev-admin").await;
    let before = pg_row(&postgres, "tenants", "dev");
    admin
        .admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "dev".into(),
        })
        .await
        .expect("rotate");
    vault_tests::rpc::wait_for_rewrap(&mut admin, "dev", 1).await;
    let rotated = pg_row(&postgres, "tenants", "dev");
    let mut handler = pair.daemons[1].dev_client("dev-handler").await;
    // The second daemon has taken the rotation in (a call of its own, then its log check), so
    // its next commit reads no new authority entry that would show the rows again.
    until_it_answers(&mut pair.daemons[1].dev_client("dev-auditor").await).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    pg_put_back(&postgres, "tenants", "dev", &before);
    let refused = handler
        .locker
        .seal(seal_request(
            "dev",
            "K1",
            &valid_number(46),
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect_err("a seal on a put-back tenant row is refused");
    assert_eq!(refused.code(), Code::DataLoss, "{refused:?}");
    for daemon in &pair.daemons {
        wait_for_health(daemon, ServingStatus::NotServing).await;
    }
    pg_put_back(&postgres, "tenants", "dev", &rotated);
    for daemon in &pair.daemons {
        until_it_answers(&mut daemon.dev_client("dev-auditor").await).await;
    }
    let handle = handler
        .locker
        .seal(seal_request(
            "dev",
            "K1",
            &valid_number(46),
            &["STAFF_WITHHOLDING"],
        ))
        .await
        .expect("serves again")
        .into_inner()
        .handle;
    let record = handler
        .locker
        .describe(pb::DescribeRequest { handle })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(record.key_version, 2, "sealed under the active version");
}

/// Disposes of `handle` as the dev manager.
async fn dispose(daemon: &Daemon, handle: &str) {
    let mut manager = daemon.dev_client("dev-manager").await;
    manager
        .locker
        .dispose(pb::DisposeRequest {
            handle: handle.to_owned(),
            reason: "保存期間経過".into(),
        })
        .await
        .expect("dispose");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disposed_record_put_back_is_refused_by_every_daemon_on_its_next_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let pair = Pair::start(dir.path(), &postgres);
    let mut handler = pair.daemons[0].dev_client("dev-handler").await;
    let (handle, number) = released(&mut handler, "D1", 43).await;
    let handler_token = pair.daemons[0].dev_token("dev-handler");
    let active = pg_row(&postgres, "records", &handle);
    // Disposed on the other daemon: the first learns it from the log.
    dispose(&pair.daemons[1], &handle).await;
    every_daemon_refuses(&pair, &handler_token, &handle, Code::FailedPrecondition).await;
    let disposed = pg_row(&postgres, "records", &handle);
    // The DBA restores the record as it was before its disposal: ciphertext, wrapped key and
    // all, its row MAC intact (it is a genuine old row).
    pg_put_back(&postgres, "records", &handle, &active);
    put_back_is_refused_everywhere(
        &postgres,
        &pair,
        &handler_token,
        (&handle, &number),
        "record rows",
        || pg_put_back(&postgres, "records", &handle, &disposed),
    )
    .await;
    every_daemon_refuses(&pair, &handler_token, &handle, Code::FailedPrecondition).await;
}

/// The auditor's 管理台帳 of tenant `dev` from `daemon`.
async fn ledger(daemon: &Daemon) -> Result<tonic::Response<pb::LedgerResponse>, tonic::Status> {
    let mut auditor = daemon.dev_client("dev-auditor").await;
    auditor
        .admin
        .ledger(pb::LedgerRequest {
            tenant: "dev".into(),
        })
        .await
}

/// Reports that scan every record count only versions the log names: the 管理台帳 and the
/// key status (which decides whether a key version may be destroyed) are refused DATA_LOSS,
/// never computed, over a record row put back from before its disposal or deleted outright.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_over_a_put_back_or_deleted_record_row_are_refused_not_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let pair = Pair::start(dir.path(), &postgres);
    let mut handler = pair.daemons[0].dev_client("dev-handler").await;
    let (handle, _) = released(&mut handler, "R1", 45).await;
    let active = pg_row(&postgres, "records", &handle);
    dispose(&pair.daemons[0], &handle).await;
    let disposed = pg_row(&postgres, "records", &handle);
    let counts = |response: pb::LedgerResponse| {
        let entry = &response.entries[0];
        (entry.active, entry.disposed)
    };
    assert_eq!(
        counts(ledger(&pair.daemons[1]).await.expect("ledger").into_inner()),
        (0, 1)
    );
    let mut admin = pair.daemons[1].dev_client("dev-admin").await;
    let key_status = admin
        .admin
        .key_status(pb::KeyStatusRequest {
            tenant: "dev".into(),
        })
        .await;
    assert!(key_status.is_ok(), "{key_status:?}");

    // Put back as it was before its disposal: the next report is refused, on either daemon.
    pg_put_back(&postgres, "records", &handle, &active);
    let status = ledger(&pair.daemons[1]).await.expect_err("not counted");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(status.message().contains("record rows"), "{status:?}");
    pg_put_back(&postgres, "records", &handle, &disposed);
    for daemon in &pair.daemons {
        wait_for_health(daemon, ServingStatus::Serving).await;
    }

    // Deleted outright: the scan reads fewer rows than the log names.
    postgres.sql(
        "locker",
        &format!("DELETE FROM locker.records WHERE key = '{handle}'"),
    );
    let status = admin
        .admin
        .key_status(pb::KeyStatusRequest {
            tenant: "dev".into(),
        })
        .await
        .expect_err("a key version's records are not counted without the row");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(status.message().contains("missing"), "{status:?}");
    postgres.sql(
        "locker",
        &format!(
            "INSERT INTO locker.records (key, value) VALUES ('{handle}', decode('{disposed}', 'hex'))"
        ),
    );
    // A background scan (disposal, rewrap) that read the row while it was missing raises its
    // own alert, possibly after health already said SERVING again: the daemons must recover
    // by themselves once the row is back, so the report is asked again until a deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    for daemon in &pair.daemons {
        let repaired = loop {
            match ledger(daemon).await {
                Ok(response) => break response.into_inner(),
                Err(status) if status.code() == Code::DataLoss && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => panic!(
                    "ledger once repaired: {status:?}\n--- daemon 0:\n{}\n--- daemon 1:\n{}",
                    pair.daemons[0].log(),
                    pair.daemons[1].log()
                ),
            }
        };
        assert_eq!(counts(repaired), (0, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_blind_index_entry_is_refused_not_answered_unknown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let pair = Pair::start(dir.path(), &postgres);
    let mut handler = pair.daemons[0].dev_client("dev-handler").await;
    let (handle, number) = released(&mut handler, "I1", 44).await;
    let lookup = pb::LookupRequest {
        tenant: "dev".into(),
        number: number.clone(),
    };
    assert_eq!(
        handler
            .locker
            .lookup(lookup.clone())
            .await
            .expect("lookup")
            .into_inner()
            .handle,
        handle
    );
    // Without its index entry the number looks unknown: a lookup would say NOT_FOUND and a
    // seal would store it a second time.
    // The store holds this one record, so its one index entry.
    let index_rows = postgres.sql(
        "locker",
        "SELECT encode(key, 'hex') || ' ' || encode(value, 'hex') FROM locker.blind_index",
    );
    assert_eq!(index_rows.trim().lines().count(), 1, "{index_rows}");
    let (key_hex, value_hex) = index_rows.trim().split_once(' ').expect("the index entry");
    postgres.sql(
        "locker",
        &format!("DELETE FROM locker.blind_index WHERE key = decode('{key_hex}', 'hex')"),
    );
    for daemon in &pair.daemons {
        let mut handler = daemon.dev_client("dev-handler").await;
        let status = handler
            .locker
            .lookup(lookup.clone())
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::DataLoss, "{status:?}");
        assert!(!status.message().contains(&number));
        wait_for_health(daemon, ServingStatus::NotServing).await;
    }
    let mut handler = pair.daemons[1].dev_client("dev-handler").await;
    let status = handler
        .locker
        .seal(seal_request("dev", "I1", &number, &[W]))
        .await
        .expect_err("no second record of the number");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    postgres.sql(
        "locker",
        &format!(
            "INSERT INTO locker.blind_index (key, value) VALUES (decode('{key_hex}', 'hex'), decode('{value_hex}', 'hex'))"
        ),
    );
    for daemon in &pair.daemons {
        wait_for_health(daemon, ServingStatus::Serving).await;
        let mut handler = daemon.dev_client("dev-handler").await;
        assert_eq!(
            handler
                .locker
                .lookup(lookup.clone())
                .await
                .expect("lookup once repaired")
                .into_inner()
                .handle,
            handle
        );
    }
}

/// A dev daemon on `data` stopped cleanly (SIGTERM: it writes its witness and stops).
fn stop(mut daemon: Daemon) {
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disposed_record_restored_at_rest_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let daemon = redb_daemon(&data);
    let mut handler = daemon.dev_client("dev-handler").await;
    let (handle, _) = released(&mut handler, "R1", 45).await;
    let active_row = {
        drop(handler);
        stop(daemon);
        store_edit::get(&data, RECORDS, &handle).expect("record row")
    };
    let daemon = redb_daemon(&data);
    dispose(&daemon, &handle).await;
    stop(daemon);
    store_edit::put(&data, RECORDS, &handle, &active_row);
    let said = Daemon::refusal(&data, DaemonOptions::default());
    assert!(said.contains("record digest"), "refused: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_record_row_rolled_back_at_rest_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let daemon = redb_daemon(&data);
    let mut handler = daemon.dev_client("dev-handler").await;
    // Several records, so that one row among many is what changes.
    for seed in 0..5 {
        released(&mut handler, &format!("S{seed}"), 50 + seed).await;
    }
    let (handle, _) = released(&mut handler, "S9", 59).await;
    drop(handler);
    stop(daemon);
    let before = store_edit::get(&data, RECORDS, &handle).expect("record row");
    let daemon = redb_daemon(&data);
    let mut manager = daemon.dev_client("dev-manager").await;
    manager
        .locker
        .suspend(pb::SuspendRequest {
            handle: handle.clone(),
            reason: "本人からの利用停止請求".into(),
        })
        .await
        .expect("suspend");
    drop(manager);
    stop(daemon);
    // The suspension undone by putting the record's older row back.
    store_edit::put(&data, RECORDS, &handle, &before);
    let said = Daemon::refusal(&data, DaemonOptions::default());
    assert!(said.contains("record digest"), "refused: {said}");
}

/// Sends `signal` (STOP, CONT) to `daemon`'s process.
fn signal(daemon: &Daemon, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &daemon.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_paused_through_lost_commits_refuses_by_the_anchor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let mut pair = Pair::start_with(dir.path(), &postgres, &["--checkpoint-interval-ms", "50"]);
    let mut handler = pair.daemons[1].dev_client("dev-handler").await;
    let (handle, number) = released(&mut handler, "P1", 46).await;
    drop(handler);
    // The second daemon is paused (a frozen VM) before the first commits and anchors more.
    signal(&pair.daemons[1], "STOP");
    let count = |sql: &str| -> u64 {
        postgres
            .sql("locker", sql)
            .trim()
            .parse()
            .expect("a number")
    };
    let head = count("SELECT max(key) FROM locker.audit");
    let checkpoints = count("SELECT coalesce(max(key), 0) FROM locker.audit_checkpoints");
    let mut first = pair.daemons[0].dev_client("dev-handler").await;
    released(&mut first, "P2", 47).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while count("SELECT coalesce(max(key), 0) FROM locker.audit_checkpoints") <= head {
        assert!(
            Instant::now() < deadline,
            "no checkpoint covered the new entries"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stored, then anchored: give the anchor its moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(first);
    kill(pair.daemons.remove(0));
    let newest_checkpoint = postgres
        .sql(
            "locker",
            "SELECT key || ' ' || encode(value, 'hex') FROM locker.audit_checkpoints ORDER BY key DESC LIMIT 1",
        )
        .trim()
        .to_owned();
    // The database that comes back lost everything after the pause (an asynchronous standby
    // promoted): a chain that ends where the paused daemon last verified it, genuine to the
    // last MAC. Only the key backend's anchor knows better.
    postgres.sql(
        "locker",
        &format!("DELETE FROM locker.audit WHERE key > {head}"),
    );
    postgres.sql(
        "locker",
        &format!("DELETE FROM locker.audit_checkpoints WHERE key > {checkpoints}"),
    );
    postgres.sql(
        "locker",
        &format!("UPDATE locker.chain_head SET seq = {head}"),
    );
    // And the newest checkpoint row copied back in, genuine and signed, over entries the
    // database no longer holds: a higher number alone must not pass for the anchor.
    let (key, row) = newest_checkpoint.split_once(' ').expect("key and row");
    postgres.sql(
        "locker",
        &format!(
            "INSERT INTO locker.audit_checkpoints (key, value) VALUES ({key}, decode('{row}', 'hex'))"
        ),
    );
    let paused = &pair.daemons[0];
    signal(paused, "CONT");
    let started = Instant::now();
    wait_for_health(paused, ServingStatus::NotServing).await;
    let took = started.elapsed();
    assert!(
        took <= Duration::from_millis(1500),
        "NOT_SERVING after {took:?}"
    );
    let mut handler = paused.dev_client("dev-handler").await;
    assert_refused_without_number(
        handler.locker.unseal(unseal_request(&handle)).await,
        &number,
    );
    let status = handler
        .locker
        .seal(seal_request("dev", "P3", &valid_number(48), &[W]))
        .await
        .expect_err("nothing is sealed on a database that lost commits");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(
        paused.log().contains("checkpoint the key backend anchored"),
        "{}",
        paused.log()
    );
}

fn disclosure_of(handle: &str) -> pb::DisclosureRequest {
    pb::DisclosureRequest {
        tenant: "dev".into(),
        subject: Some(pb::disclosure_request::Subject::Handle(handle.into())),
        reference: "開示-改ざん".into(),
        ..pb::DisclosureRequest::default()
    }
}

/// How a DBA takes an UNSEAL out of the log before a person asks what was done with their
/// number.
#[derive(Debug, Clone, Copy)]
enum Omission {
    /// The UNSEAL turned into a DESCRIBE, every later entry re-chained.
    Rewritten,
    /// The UNSEAL's row deleted, every other row left authentic.
    Deleted,
}

async fn disclosure_without_the_use_is_never_issued(omission: Omission) {
    let dir = tempfile::tempdir().expect("tempdir");
    let postgres = Postgres::start(dir.path());
    let pair = Pair::start(dir.path(), &postgres);
    let mut handler = pair.daemons[0].dev_client("dev-handler").await;
    let (handle, number) = released(&mut handler, "P9", 29).await;
    let mut manager = pair.daemons[1].dev_client("dev-manager").await;
    let before = manager
        .admin
        .disclose(disclosure_of(&handle))
        .await
        .expect("a disclosure over the intact log")
        .into_inner();
    let notice =
        vault_audit::disclosure::DisclosureNotice::from_json(&before.notice_json).expect("notice");
    assert!(
        notice.body.uses.iter().any(|u| u.action == "UNSEAL"),
        "{:?}",
        notice.body.uses
    );

    let rows = pg_audit_rows(&postgres);
    let sql = match omission {
        Omission::Rewritten => {
            let mut sql = String::from("BEGIN;");
            for (seq, row) in rewrite_unseal(&rows, &handle) {
                sql.push_str(&format!(
                    "UPDATE locker.audit SET value = decode('{}', 'hex') WHERE key = {seq};",
                    hex::encode(row)
                ));
            }
            sql + "COMMIT;"
        }
        Omission::Deleted => {
            let seq = rows
                .iter()
                .find(|(_, row)| {
                    let entry = ChainedEntry::from_row(row).expect("row").entry;
                    entry.action == "UNSEAL" && entry.handle == handle
                })
                .map(|(seq, _)| *seq)
                .expect("the UNSEAL row");
            format!("DELETE FROM locker.audit WHERE key = {seq};")
        }
    };
    postgres.sql("locker", &sql);

    // Asked at once on either daemon: refused, never a notice that leaves the use out.
    for daemon in &pair.daemons {
        let mut manager = daemon.dev_client("dev-manager").await;
        let refused = manager.admin.disclose(disclosure_of(&handle)).await;
        assert_refused_without_number(refused, &number);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disclosure_over_a_rewritten_unseal_is_refused() {
    disclosure_without_the_use_is_never_issued(Omission::Rewritten).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disclosure_over_a_deleted_unseal_is_refused() {
    disclosure_without_the_use_is_never_issued(Omission::Deleted).await;
}
