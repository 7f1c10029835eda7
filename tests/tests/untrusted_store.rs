//! The store is untrusted: an attacker who can write the data directory, but not use the key
//! backend, edits a stopped daemon's store with redb directly (`vault_tests::store_edit`). Every
//! attack is refused: the daemon will not start on the store (a row fails its MAC, the
//! authority rows do not match the authenticated state, the history does not reach the anchor),
//! or the affected call fails (DATA_LOSS or UNAUTHENTICATED) with its audit entry and releases
//! nothing. Runs on the backend under test (sim, SoftHSM, swtpm).

use std::path::Path;

use redb::ReadableTable;
use tonic::Code;
use vault_client::pb;
use vault_daemon::domain::operator::{Operator, Role};
use vault_daemon::domain::record::{Record, RecordStatus};
use vault_daemon::domain::token::TokenRecord;
use vault_daemon::store::codec::{decode, encode};
use vault_daemon::store::redb::{AUDIT_KEYS, CHECKPOINTS, OPERATORS, RECORDS, TOKENS};
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{copy_dir, export_audit, seal_request, with_id};
use vault_tests::{Daemon, DaemonOptions, store_edit};

const W: &str = "STAFF_WITHHOLDING";

/// A dev daemon with one sealed record; returns it (stopped) and the record's handle.
async fn prepared(dir: &Path) -> String {
    let mut daemon = Daemon::start_dev(dir);
    let mut handler = daemon.dev_client("dev-handler").await;
    let handle = handler
        .locker
        .seal(seal_request("dev", "E1", &valid_number(31), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    drop(handler);
    let stopped = daemon.stop();
    assert!(stopped.success(), "{stopped:?}\n{}", daemon.log());
    handle
}

async fn unseal(
    client: &mut vault_client::Client,
    handle: &str,
    id: &str,
) -> Result<String, tonic::Status> {
    client
        .locker
        .unseal(with_id(
            pb::UnsealRequest {
                handle: handle.into(),
                purpose: W.into(),
            },
            id,
        ))
        .await
        .map(|r| r.into_inner().number)
}

/// A second token for `dev-handler`, issued by an admin and approved by the other.
async fn issue_handler_token(daemon: &Daemon) -> pb::IssueTokenResponse {
    let mut admin = daemon.dev_client("dev-admin").await;
    let mut approver = daemon.dev_client("dev-admin2").await;
    use secrecy::ExposeSecret;
    let (mut issued, token) = vault_tests::rpc::split_token(
        &mut admin,
        &mut approver,
        pb::IssueTokenRequest {
            operator_id: "dev-handler".into(),
            ttl_seconds: 3600,
            ..Default::default()
        },
    )
    .await;
    // The shares combined: what the operator's holder uses.
    issued.token = token.expose_secret().to_owned();
    issued
}

async fn revoke(admin: &mut vault_client::Client, token_id: &str) {
    admin
        .admin
        .revoke_token(pb::RevokeTokenRequest {
            token_id: token_id.into(),
        })
        .await
        .expect("revoke");
}

/// The dev token of `operator` in the data directory `dir`.
fn dev_token(dir: &Path, operator: &str) -> secrecy::SecretString {
    vault_client::read_token_file(&dir.join("tokens").join(format!("{operator}.token")))
        .expect("dev token file")
}

/// The daemon refuses the store, or serves it and refuses the attacker's call with an audit
/// entry; never releases the number.
async fn refused_or_denied(dir: &Path, token: secrecy::SecretString, handle: &str, id: &str) {
    match Daemon::try_start(dir, DaemonOptions::default()) {
        Err(refusal) => {
            eprintln!("{id}: the daemon refused the store");
            assert!(
                refusal.contains("fails its integrity check")
                    || refusal.contains(
                        "authority rows (operators, grants, tokens, tenants, keys) do not match"
                    ),
                "{id}: refused for another reason: {refusal}"
            )
        }
        Ok(mut daemon) => {
            eprintln!("{id}: the daemon served; the call must be refused");
            let mut attacker = daemon.client(Some(token)).await;
            let status = unseal(&mut attacker, handle, id)
                .await
                .expect_err("an attacker's call must not release the number");
            assert!(
                matches!(status.code(), Code::DataLoss | Code::Unauthenticated),
                "{id}: {status:?}"
            );
            let mut auditor = daemon.dev_client("dev-auditor").await;
            let entries = export_audit(&mut auditor).await;
            let entry = entries
                .iter()
                .find(|e| e.request_id == id)
                .unwrap_or_else(|| panic!("{id}: the refused call has no audit entry"));
            assert_ne!(entry.outcome, "ALLOWED", "{id}: {entry:?}");
            let stopped = daemon.stop();
            assert!(stopped.success(), "{id}: {stopped:?}\n{}", daemon.log());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_edited_authority_rows_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("data");
    let handle = prepared(&original).await;
    let handler_row = store_edit::get(&original, OPERATORS, "dev-handler").expect("row");
    let handler: Operator = store_edit::decode(&handler_row);
    let minted = |operator: &str| {
        vault_daemon::domain::token::mint(
            &ring::rand::SystemRandom::new(),
            operator,
            0,
            i64::MAX / 2,
            None,
        )
        .expect("mint")
    };

    // 1. An operator and its token inserted: forged tags, and tags copied from real rows.
    for (n, copy_tags) in [(1, false), (2, true)] {
        let copy = dir.path().join(format!("insert-{n}"));
        copy_dir(&original, &copy);
        let mallory = Operator {
            id: "mallory".into(),
            ..handler.clone()
        };
        let token = minted("mallory");
        let (operator_row, token_row) = if copy_tags {
            let tag = store_edit::split(&handler_row).0;
            (
                store_edit::with_tag(&tag, &mallory),
                store_edit::with_tag(&tag, &token.record),
            )
        } else {
            (
                store_edit::forged(&mallory),
                store_edit::forged(&token.record),
            )
        };
        store_edit::put(&copy, OPERATORS, "mallory", &operator_row);
        store_edit::put(&copy, TOKENS, &token.record.id, &token_row);
        refused_or_denied(&copy, token.secret, &handle, &format!("attack-insert-{n}")).await;
    }

    // 2. The auditor made a handler with a grant, the old tag kept.
    let copy = dir.path().join("role");
    copy_dir(&original, &copy);
    let auditor_row = store_edit::get(&copy, OPERATORS, "dev-auditor").expect("row");
    let mut auditor: Operator = store_edit::decode(&auditor_row);
    auditor.role = Role::Handler;
    auditor.grants = handler.grants.clone();
    store_edit::put(
        &copy,
        OPERATORS,
        "dev-auditor",
        &store_edit::edited(&auditor_row, &auditor),
    );
    let auditor_token = dev_token(&copy, "dev-auditor");
    refused_or_denied(&copy, auditor_token, &handle, "attack-role").await;

    // 3. A row moved under another key: the handler's row stored as the auditor's.
    let copy = dir.path().join("moved");
    copy_dir(&original, &copy);
    let mut moved: Operator = store_edit::decode(&handler_row);
    moved.id = "dev-auditor".into();
    store_edit::put(
        &copy,
        OPERATORS,
        "dev-auditor",
        &store_edit::edited(&handler_row, &moved),
    );
    let auditor_token = dev_token(&copy, "dev-auditor");
    refused_or_denied(&copy, auditor_token, &handle, "attack-moved").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_and_a_suspended_record_stay_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("data");
    let handle = prepared(&original).await;
    // A second handler token, then revoked; the record suspended.
    let mut daemon = Daemon::start_dev(&original);
    let mut admin = daemon.dev_client("dev-admin").await;
    let issued = issue_handler_token(&daemon).await;
    let revoked_id = issued.token_id.clone();
    revoke(&mut admin, &revoked_id).await;
    let mut manager = daemon.dev_client("dev-manager").await;
    manager
        .locker
        .suspend(pb::SuspendRequest {
            handle: handle.clone(),
            reason: "本人の求め".into(),
        })
        .await
        .expect("suspend");
    drop((admin, manager));
    assert!(daemon.stop().success());

    // The token row un-revoked, its tag kept.
    let copy = dir.path().join("unrevoked");
    copy_dir(&original, &copy);
    let row = store_edit::get(&copy, TOKENS, &revoked_id).expect("token row");
    let mut token: TokenRecord = store_edit::decode(&row);
    assert!(token.revoked);
    token.revoked = false;
    store_edit::put(
        &copy,
        TOKENS,
        &revoked_id,
        &store_edit::edited(&row, &token),
    );
    let secret = secrecy::SecretString::from(issued.token.clone());
    refused_or_denied(&copy, secret, &handle, "attack-unrevoke").await;

    // The record's suspension lifted in the store: its DEK is bound to the suspended state.
    let copy = dir.path().join("unsuspended");
    copy_dir(&original, &copy);
    store_edit::edit(&copy, |txn| {
        let mut table = txn.open_table(RECORDS).expect("records");
        let mut record: Record = decode(
            "record",
            table
                .get(handle.as_str())
                .expect("get")
                .expect("row")
                .value(),
        )
        .expect("decode");
        assert!(matches!(record.status, RecordStatus::Suspended(_)));
        record.status = RecordStatus::Active;
        table
            .insert(handle.as_str(), encode(&record).expect("encode").as_slice())
            .expect("insert");
    });
    // The record's version is named in the log, so the copy does not start (and were it to,
    // the DEK bound to the suspended state would refuse to open: tamper.rs, the live tests).
    let said = Daemon::refusal(&copy, DaemonOptions::default());
    assert!(said.contains("record digest"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_history_and_old_or_missing_stores_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("data");
    let handle = prepared(&original).await;
    // An older copy of the store, then more history (each stop signs a checkpoint).
    let old_store = dir.path().join("old-store");
    store_edit::save_store(&original, &old_store);
    for round in 0..2 {
        let mut daemon = Daemon::start_dev(&original);
        let mut handler = daemon.dev_client("dev-handler").await;
        unseal(&mut handler, &handle, &format!("round-{round}"))
            .await
            .expect("unseal");
        drop(handler);
        assert!(daemon.stop().success());
    }
    let checkpoints = store_edit::rows_u64(&original, CHECKPOINTS);
    assert!(checkpoints.len() >= 3, "{} checkpoints", checkpoints.len());

    // One audit entry deleted, the chain re-hashed, every checkpoint deleted.
    let copy = dir.path().join("rewritten");
    copy_dir(&original, &copy);
    store_edit::rewrite_audit(&copy, |entries| {
        use vault_daemon::audit::entry::{ChainedEntry, GENESIS_HASH};
        let mut prev = GENESIS_HASH;
        let mut seq = 0u64;
        let mut rewritten = Vec::new();
        for (n, (_, row)) in entries.iter().enumerate() {
            if n == 3 {
                continue; // the entry that vanishes
            }
            let mut entry = ChainedEntry::from_row(row).expect("row").entry;
            seq += 1;
            entry.seq = seq;
            let chained = ChainedEntry::new(entry, prev);
            prev = chained.hash;
            rewritten.push((seq, chained.to_row()));
        }
        *entries = rewritten;
    });
    store_edit::edit(&copy, |txn| {
        let mut checkpoints = txn.open_table(CHECKPOINTS).expect("checkpoints");
        let keys: Vec<u64> = checkpoints
            .iter()
            .expect("iter")
            .map(|r| r.expect("row").0.value())
            .collect();
        for key in keys {
            checkpoints.remove(key).expect("remove");
        }
    });
    let said = Daemon::refusal(&copy, DaemonOptions::default());
    assert!(said.contains("anchor"), "{said}");

    // One checkpoint deleted from the middle.
    let copy = dir.path().join("gap");
    copy_dir(&original, &copy);
    store_edit::edit(&copy, |txn| {
        let mut table = txn.open_table(CHECKPOINTS).expect("checkpoints");
        table.remove(checkpoints[1].0).expect("remove");
    });
    let said = Daemon::refusal(&copy, DaemonOptions::default());
    assert!(said.contains("checkpoint 2 is missing"), "{said}");

    // An audit key injected (a version the first never endorsed).
    let copy = dir.path().join("injected-key");
    copy_dir(&original, &copy);
    store_edit::edit(&copy, |txn| {
        let mut table = txn.open_table(AUDIT_KEYS).expect("audit keys");
        let first = table.get(1u32).expect("get").expect("v1").value().to_vec();
        table.insert(0u32, first.as_slice()).expect("insert");
        table.insert(2u32, first.as_slice()).expect("insert");
    });
    let said = Daemon::refusal(&copy, DaemonOptions::default());
    assert!(
        said.contains("integrity") || said.contains("audit key"),
        "{said}"
    );

    // The older copy put back.
    let copy = dir.path().join("rolled-back");
    copy_dir(&original, &copy);
    store_edit::put_back_store(&old_store, &copy);
    let said = Daemon::refusal(&copy, DaemonOptions::default());
    assert!(
        said.contains("older") && said.contains("anchored checkpoint"),
        "{said}"
    );
    // Restoring it on purpose is an explicit, audited act.
    let output = std::process::Command::new(vault_tests::binary_path("vault-daemon"))
        .args([
            "--dev",
            "--backend",
            &vault_tests::daemon::backend_under_test(),
        ])
        .arg("--data-dir")
        .arg(&copy)
        .arg("--reanchor")
        .env("TSS2_LOG", "all+NONE")
        .output()
        .expect("run --reanchor");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("re-anchored"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let daemon = Daemon::start_dev(&copy);
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let entries = export_audit(&mut auditor).await;
    assert!(
        entries.iter().any(|e| e.action == "ANCHOR_RESET"),
        "the re-anchoring is audited"
    );
    drop(auditor);
    drop(daemon);

    // The store deleted, or emptied, while the backend keeps its keys and anchor.
    let copy = dir.path().join("deleted");
    copy_dir(&original, &copy);
    std::fs::remove_file(copy.join("locker.redb")).expect("delete store");
    std::fs::remove_dir_all(copy.join("audit")).expect("delete the log");
    let said = Daemon::refusal(&copy, DaemonOptions::default());
    assert!(said.contains("anchor"), "{said}");
}

/// A small deterministic generator, so a failing seed can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_byte_flips_are_refused_or_fail_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("data");
    let mut daemon = Daemon::start_dev(&original);
    let mut handler = daemon.dev_client("dev-handler").await;
    let records = vault_tests::rpc::seal_many(&mut handler, "dev", 30, 400).await;
    drop(handler);
    assert!(daemon.stop().success());
    let size = std::fs::metadata(original.join("locker.redb"))
        .expect("store")
        .len();

    let (mut refused, mut served) = (0, 0);
    for seed in 1..=12u64 {
        let copy = dir.path().join(format!("flipped-{seed}"));
        copy_dir(&original, &copy);
        let mut bytes = std::fs::read(copy.join("locker.redb")).expect("read store");
        let mut random = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for _ in 0..(seed % 3 + 1) {
            let at = (random.next() % size) as usize;
            bytes[at] ^= 1 << (random.next() % 8);
        }
        std::fs::write(copy.join("locker.redb"), &bytes).expect("write store");
        let mut daemon = match Daemon::try_start(&copy, DaemonOptions::default()) {
            Err(refusal) => {
                // A refusal is the daemon's own: exit status 1 and an error line naming the
                // store (redb may panic while opening a damaged file; that is caught).
                let said = refusal
                    .lines()
                    .rfind(|l| l.starts_with("error: "))
                    .unwrap_or("");
                eprintln!("seed {seed}: {said}");
                assert!(
                    refusal.contains("unix_wait_status(256)") && said.contains("store"),
                    "seed {seed}: the daemon did not refuse cleanly: {refusal}"
                );
                refused += 1;
                continue;
            }
            Ok(daemon) => daemon,
        };
        served += 1;
        let mut handler = daemon.dev_client("dev-handler").await;
        let mut answered = Vec::new();
        let mut released_any = false;
        for (i, (handle, number)) in records.iter().enumerate() {
            let id = format!("flip-{seed}-{i}");
            match unseal(&mut handler, handle, &id).await {
                Ok(released) => {
                    assert_eq!(
                        &released, number,
                        "seed {seed}: a wrong number was released"
                    );
                    released_any = true;
                    answered.push(id);
                }
                Err(status) => {
                    assert!(
                        matches!(
                            status.code(),
                            Code::DataLoss | Code::Unavailable | Code::NotFound
                        ),
                        "seed {seed}: {status:?}"
                    );
                    answered.push(id);
                }
            }
        }
        // Every answered call left its entry. A store too damaged to read its own log back may
        // refuse the tail, but then it must not have released anything.
        let mut auditor = daemon.dev_client("dev-auditor").await;
        match auditor
            .admin
            .audit_tail(pb::AuditTailRequest { limit: 1000 })
            .await
        {
            Ok(response) => {
                let entries = response.into_inner().entries;
                for id in &answered {
                    assert!(
                        entries.iter().any(|e| &e.request_id == id),
                        "seed {seed}: call {id} was answered without an audit entry"
                    );
                }
            }
            Err(status) => assert!(
                !released_any,
                "seed {seed}: numbers were released but the audit log cannot be read: {status:?}"
            ),
        }
        drop((handler, auditor));
        daemon.stop();
    }
    eprintln!("byte flips: {refused} stores refused at start, {served} served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genuine_old_authority_rows_put_back_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("data");
    prepared(&original).await;
    // A second handler token; the rows as they are before any revocation.
    let mut daemon = Daemon::start_dev(&original);
    let issued = issue_handler_token(&daemon).await;
    assert!(daemon.stop().success());
    let old_token = store_edit::get(&original, TOKENS, &issued.token_id).expect("token row");
    let old_handler = store_edit::get(&original, OPERATORS, "dev-handler").expect("operator");

    // Revoked, disabled — then, many checkpoints later, the old rows put back from a backup.
    let mut daemon = Daemon::start_dev(&original);
    let mut admin = daemon.dev_client("dev-admin").await;
    revoke(&mut admin, &issued.token_id).await;
    admin
        .admin
        .disable_operator(pb::DisableOperatorRequest {
            operator_id: "dev-handler".into(),
        })
        .await
        .expect("disable");
    drop(admin);
    assert!(daemon.stop().success());
    for _ in 0..2 {
        let mut daemon = Daemon::start_dev(&original);
        let mut auditor = daemon.dev_client("dev-auditor").await;
        export_audit(&mut auditor).await;
        drop(auditor);
        assert!(daemon.stop().success());
    }

    for (name, table, key, row) in [
        ("token", TOKENS, issued.token_id.as_str(), &old_token),
        ("operator", OPERATORS, "dev-handler", &old_handler),
    ] {
        let copy = dir.path().join(format!("restored-{name}"));
        copy_dir(&original, &copy);
        store_edit::put(&copy, table, key, row);
        let said = Daemon::refusal(&copy, DaemonOptions::default());
        assert!(
            said.contains("do not match the state signed by checkpoint"),
            "restored {name} row: {said}"
        );
    }
    // A row deleted: the same.
    let copy = dir.path().join("deleted-token");
    copy_dir(&original, &copy);
    store_edit::edit(&copy, |txn| {
        txn.open_table(TOKENS)
            .expect("tokens")
            .remove(issued.token_id.as_str())
            .expect("remove");
    });
    let said = Daemon::refusal(&copy, DaemonOptions::default());
    assert!(said.contains("do not match"), "deleted token row: {said}");
}

/// The record row of `handle` in the store of `dir`.
fn record_row(dir: &Path, handle: &str) -> Record {
    let row = store_edit::get(dir, RECORDS, handle).expect("record row");
    decode("record", &row).expect("decode record")
}

fn put_record(dir: &Path, record: &Record) {
    store_edit::put(
        dir,
        RECORDS,
        record.handle.as_str(),
        &encode(record).expect("encode record"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_state_edits_and_an_emptied_store_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("data");
    let retired = prepared(&original).await;
    let mut daemon = Daemon::start_dev(&original);
    let mut handler = daemon.dev_client("dev-handler").await;
    let disposed = handler
        .locker
        .seal(seal_request("dev", "E2", &valid_number(32), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    drop(handler);
    assert!(daemon.stop().success());
    let before_disposal = record_row(&original, &disposed);

    let mut daemon = Daemon::start_dev(&original);
    let mut manager = daemon.dev_client("dev-manager").await;
    // Dated before the record's acquisition: a manager's call.
    manager
        .locker
        .retire(pb::RetireRequest {
            handle: retired.clone(),
            left_on: "2026-11-01".into(),
        })
        .await
        .expect("retire");
    manager
        .locker
        .dispose(pb::DisposeRequest {
            handle: disposed.clone(),
            reason: "保存期間経過".into(),
        })
        .await
        .expect("dispose");
    drop(manager);
    assert!(daemon.stop().success());

    // A retirement undone in the store: the DEK is bound to the retired state.
    let copy = dir.path().join("unretired");
    copy_dir(&original, &copy);
    let mut record = record_row(&copy, &retired);
    assert!(matches!(record.status, RecordStatus::Retired(_)));
    record.status = RecordStatus::Active;
    put_record(&copy, &record);
    // The disposed record's wrapped DEK and index put back into its tombstone.
    let mut tombstone = record_row(&copy, &disposed);
    assert!(matches!(tombstone.status, RecordStatus::Disposed(_)));
    tombstone.sealed = before_disposal.sealed.clone();
    tombstone.blind_index = before_disposal.blind_index;
    put_record(&copy, &tombstone);
    // Neither version is the one the log names: the copy does not start.
    let said = Daemon::refusal(&copy, DaemonOptions::default());
    assert!(said.contains("record digest"), "{said}");

    // The store emptied: a fresh, empty database file where the store was.
    let copy = dir.path().join("emptied");
    copy_dir(&original, &copy);
    std::fs::remove_file(copy.join("locker.redb")).expect("remove");
    std::fs::remove_dir_all(copy.join("audit")).expect("remove the log");
    drop(redb::Database::create(copy.join("locker.redb")).expect("empty store"));
    let said = Daemon::refusal(&copy, DaemonOptions::default());
    assert!(said.contains("holds no state MAC key"), "{said}");
}
