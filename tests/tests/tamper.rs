//! Tampering with a copy of the store: edited or swapped records fail to open (DATA_LOSS,
//! nothing released, audited as an integrity failure); an edited audit entry is named by
//! verification; a damaged chain head stops the daemon from starting.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable};
use vault_client::pb;
use vault_daemon::domain::record::Record;
use vault_daemon::store::codec::{decode, encode};
use vault_daemon::store::redb::{DB_FILE_NAME, RECORDS};
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{copy_dir, seal_request};
use vault_tests::{Daemon, DaemonOptions};

const W: &str = "STAFF_WITHHOLDING";
const H: &str = "STAFF_HEALTH_PENSION";

fn edit_records(data_dir: &Path, edit: impl FnOnce(&mut Vec<Record>)) {
    let db = Database::open(data_dir.join(DB_FILE_NAME)).expect("open store copy");
    let mut records: Vec<Record> = {
        let txn = db.begin_read().expect("read");
        let table = txn.open_table(RECORDS).expect("records");
        table
            .iter()
            .expect("iter")
            .map(|row| decode("record", row.expect("row").1.value()).expect("decode"))
            .collect()
    };
    edit(&mut records);
    let txn = db.begin_write().expect("write");
    {
        let mut table = txn.open_table(RECORDS).expect("records");
        for record in &records {
            table
                .insert(
                    record.handle.as_str(),
                    encode(record).expect("encode").as_slice(),
                )
                .expect("insert");
        }
    }
    txn.commit().expect("commit");
}

fn flip_audit_byte(data_dir: &Path, seq: u64) {
    vault_tests::store_edit::rewrite_audit(data_dir, |rows| {
        let (_, row) = rows
            .iter_mut()
            .find(|(s, _)| *s == seq)
            .expect("entry exists");
        let last = row.len() - 1;
        row[last] ^= 0x01; // a byte of the entry's last text field
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_purposes_and_swapped_ciphertexts_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("data");
    let mut daemon = Daemon::start_dev(&original);
    let mut handler = daemon.dev_client("dev-handler").await;
    let a = handler
        .locker
        .seal(seal_request("dev", "A", &valid_number(11), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let b = handler
        .locker
        .seal(seal_request("dev", "B", &valid_number(12), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    let c = handler
        .locker
        .seal(seal_request("dev", "C", &valid_number(13), &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    drop(handler);
    assert!(daemon.stop().success());

    let copy = dir.path().join("copy");
    copy_dir(&original, &copy);
    edit_records(&copy, |records| {
        let (mut sealed_a, mut sealed_b) = (None, None);
        for record in records.iter_mut() {
            if record.handle.as_str() == a {
                // Widen the permitted purposes behind the locker's back.
                record.purposes = vec![H.to_owned(), W.to_owned()];
            }
            if record.handle.as_str() == b {
                sealed_a = record.sealed.clone();
            }
            if record.handle.as_str() == c {
                sealed_b = record.sealed.clone();
            }
        }
        for record in records.iter_mut() {
            if record.handle.as_str() == b {
                record.sealed = sealed_b.clone();
            }
            if record.handle.as_str() == c {
                record.sealed = sealed_a.clone();
            }
        }
    });

    // Each record's version is named, tagged, in the authenticated log: the edited rows do
    // not hash to the records digest the log vouches for, so the copy does not even start
    // (the associated data of each row would refuse them too, one call at a time, DATA_LOSS).
    let said = Daemon::refusal(&copy, DaemonOptions::default());
    assert!(said.contains("record digest"), "{said}");
    for n in 11..=13 {
        assert!(!said.contains(&valid_number(n)));
    }

    // The untouched original still opens.
    let daemon = Daemon::start_dev(&original);
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = handler
        .locker
        .unseal(pb::UnsealRequest {
            handle: a,
            purpose: W.into(),
        })
        .await
        .expect("original opens")
        .into_inner()
        .number;
    assert_eq!(number, valid_number(11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_audit_byte_is_named_and_a_broken_head_refuses_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("data");
    let mut daemon = Daemon::start_dev(&original);
    let mut handler = daemon.dev_client("dev-handler").await;
    for i in 0..5 {
        handler
            .locker
            .seal(seal_request(
                "dev",
                &format!("E{i}"),
                &valid_number(20 + i),
                &[W],
            ))
            .await
            .expect("seal");
    }
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let clean = auditor
        .admin
        .audit_verify(pb::AuditVerifyRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(clean.ok);
    let victim = clean.entries_checked / 2;
    drop((handler, auditor));
    assert!(daemon.stop().success());

    let copy = dir.path().join("copy");
    copy_dir(&original, &copy);
    flip_audit_byte(&copy, victim);
    let daemon = Daemon::start_dev(&copy);
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let report = auditor
        .admin
        .audit_verify(pb::AuditVerifyRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, victim, "{}", report.message);
    assert!(
        report.message.contains(&format!("entry {victim}")),
        "{}",
        report.message
    );
    drop(auditor);
    drop(daemon);

    // Damage the newest entry: the daemon refuses to extend a chain whose head does not verify.
    let broken = dir.path().join("broken");
    copy_dir(&original, &broken);
    let (last, _) = *vault_tests::store_edit::audit_rows(&broken)
        .last()
        .expect("entries");
    flip_audit_byte(&broken, last);
    let refusal = match Daemon::try_start(&broken, Default::default()) {
        Ok(_) => panic!("the daemon served a store whose newest audit entry was altered"),
        Err(refusal) => refusal,
    };
    assert!(
        refusal.contains(&format!("audit entry {last} fails its hash check")),
        "{refusal}"
    );
}
