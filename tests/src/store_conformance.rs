//! One conformance suite for every store (as iox_catalog keeps one for its repositories): what
//! the locker relies on from `vault_daemon::store::Store`, checked through the trait alone, so
//! the embedded redb store and a server database are held to the same contract. Each check
//! starts from an empty store.
//!
//! The contract: a write transaction is invisible until committed and gone if dropped; a
//! reader sees one snapshot, taken no later than its first read; every kind of row reads back
//! as written; lists come in key order and pages never repeat or skip; the authority digest
//! moves with authority rows and only with them; a lease has one holder, or (on a store one
//! process owns) every holder; an online snapshot carries every row as stored. A view (the request path's asynchronous
//! reads) reads what the synchronous reader reads, a blind index entry together with its
//! record, and never serves a row it read ahead staler than the row asked for.

use std::sync::Arc;

use ring::hmac;
use vault_audit::certificate::DeletionCertificate;
use vault_audit::checkpoint::Checkpoint;
use vault_daemon::domain::approval::{Approval, ChangeRequest, ChangeState, GatedChange};
use vault_daemon::domain::audit_key::AuditKeyRecord;
use vault_daemon::domain::correction::{Correction, CorrectionState};
use vault_daemon::domain::handle::Handle;
use vault_daemon::domain::identity::IdentityVerification;
use vault_daemon::domain::lifecycle::{DisposalQueueEntry, EpochKey};
use vault_daemon::domain::operator::{Grant, KeyState, Operator, Role, Tenant, TenantKeys};
use vault_daemon::domain::record::{Record, RecordStatus, SealedNumber, SubjectKind};
use vault_daemon::domain::rotation::{DestructionRequest, DestructionState, RewrapJob};
use vault_daemon::domain::tenant_info::TenantInfo;
use vault_daemon::domain::token::TokenRecord;
use vault_daemon::store::sealing::{RowAuthenticator, RowSealer};
use vault_daemon::store::{AuthorityState, CheckpointState, Store, StoreError};

/// Row tags under a software key: the suite tests the store, not the key backend.
struct SoftwareMac(hmac::Key);

impl RowAuthenticator for SoftwareMac {
    fn tag(&self, message: &[u8]) -> Result<[u8; 32], StoreError> {
        let tag = hmac::sign(&self.0, message);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }
}

/// A sealer for stores under test.
pub fn test_sealer() -> Arc<RowSealer> {
    Arc::new(RowSealer::new(Arc::new(SoftwareMac(hmac::Key::new(
        hmac::HMAC_SHA256,
        b"store conformance suite, not a secret",
    )))))
}

/// One check of the contract, on an empty store.
type Check = fn(&dyn Store);

/// One check of a view, on an empty store, its reads awaited on the runtime given.
type ViewCheck = fn(&dyn Store, &tokio::runtime::Runtime);

/// Every check, each on a fresh store from `fresh`; views are read on `runtime` (the one a
/// server store's connections live on).
pub fn run(fresh: &mut dyn FnMut() -> Arc<dyn Store>, runtime: &tokio::runtime::Runtime) {
    let view_checks: [(&str, ViewCheck); 3] = [
        ("views read what readers read", views_read_rows),
        ("views list what readers list", views_list_rows),
        (
            "views read ahead nothing stale",
            views_read_ahead_fresh_rows,
        ),
    ];
    for (name, check) in view_checks {
        let store = fresh();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&*store, runtime)));
        if let Err(panic) = outcome {
            eprintln!("store conformance: {name} failed");
            std::panic::resume_unwind(panic);
        }
    }
    let checks: [(&str, Check); 13] = [
        ("records and the blind index", records_and_index),
        ("record pages", record_pages),
        ("tenants, operators, tokens", principals),
        ("the audit chain and checkpoints", audit_and_checkpoints),
        ("key state", key_state),
        ("life cycle rows", lifecycle_rows),
        ("transactions", transactions),
        ("snapshots", snapshot_isolation),
        ("the authority digest", authority_digest),
        ("optimistic writers", optimistic_writers),
        ("certificates, audit keys and state", signed_rows_and_state),
        ("leases", leases),
        ("online snapshots", online_snapshot),
    ];
    for (name, check) in checks {
        let store = fresh();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&*store)));
        if let Err(panic) = outcome {
            eprintln!("store conformance: {name} failed");
            std::panic::resume_unwind(panic);
        }
    }
}

fn handle(n: u8) -> Handle {
    Handle::parse(&format!("mnh_{}", hex::encode([n; 16]))).expect("handle")
}

fn sealed(n: u8) -> SealedNumber {
    SealedNumber {
        format: 1,
        key_version: 1,
        wrapped_dek: vec![n; 40],
        nonce: [n; 12],
        ciphertext: vec![n; 28],
    }
}

fn record(n: u8, tenant: &str) -> Record {
    Record {
        handle: handle(n),
        tenant: tenant.into(),
        subject_ref: format!("E-{n}"),
        subject_kind: SubjectKind::Staff,
        purposes: vec!["STAFF_WITHHOLDING".into()],
        verification: IdentityVerification::default(),
        acquired_at_ms: 1_000 + i64::from(n),
        acquired_by: "clerk".into(),
        status: RecordStatus::Active,
        sealed: Some(sealed(n)),
        blind_index: Some([n; 32]),
    }
}

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: format!("{id} 株式会社"),
        created_at_ms: 5,
        keys: vec![TenantKeys {
            version: 1,
            kek: b"kek-ref".to_vec(),
            mac: b"mac-ref".to_vec(),
            state: KeyState::Active,
        }],
    }
}

fn operator(id: &str) -> Operator {
    Operator {
        id: id.into(),
        role: Role::Handler,
        display_name: "担当者".into(),
        disabled: false,
        grants: vec![Grant {
            tenant: "acme".into(),
            purpose: "STAFF_WITHHOLDING".into(),
        }],
        created_at_ms: 7,
    }
}

fn token(id: &str, operator: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        hash: [9; 32],
        operator_id: operator.into(),
        issued_at_ms: 1,
        expires_at_ms: 2,
        revoked: false,
        cert_fingerprint: None,
    }
}

fn write(store: &dyn Store, change: impl FnOnce(&mut dyn vault_daemon::store::StoreWrite)) {
    let mut txn = store.writer().expect("writer");
    change(&mut *txn);
    txn.commit().expect("commit");
}

fn records_and_index(store: &dyn Store) {
    write(store, |txn| {
        txn.put_record(&record(1, "acme")).expect("put");
        txn.put_index("acme", &[1; 32], &handle(1)).expect("index");
    });
    let reader = store.reader().expect("reader");
    assert_eq!(
        reader.record(&handle(1)).expect("read"),
        Some(record(1, "acme"))
    );
    assert_eq!(reader.record(&handle(2)).expect("read"), None);
    assert_eq!(
        reader.index_lookup("acme", &[1; 32]).expect("lookup"),
        Some(handle(1))
    );
    // The index is per tenant.
    assert_eq!(
        reader.index_lookup("other", &[1; 32]).expect("lookup"),
        None
    );
    drop(reader);
    // A record replaced in place; an index entry removed.
    let mut disposed = record(1, "acme");
    disposed.sealed = None;
    disposed.blind_index = None;
    write(store, |txn| {
        txn.put_record(&disposed).expect("put");
        txn.remove_index("acme", &[1; 32]).expect("remove");
    });
    let reader = store.reader().expect("reader");
    assert_eq!(reader.record(&handle(1)).expect("read"), Some(disposed));
    assert_eq!(reader.index_lookup("acme", &[1; 32]).expect("lookup"), None);
}

fn views_read_rows(store: &dyn Store, runtime: &tokio::runtime::Runtime) {
    write(store, |txn| {
        txn.put_record(&record(1, "acme")).expect("put");
        txn.put_index("acme", &[1; 32], &handle(1)).expect("index");
        // An entry naming a record that is not there (the caller decides what that means).
        txn.put_index("acme", &[2; 32], &handle(2)).expect("index");
        txn.put_tenant(&tenant("acme")).expect("tenant");
        txn.put_operator(&operator("clerk")).expect("operator");
        txn.put_token(&token("t1", "clerk")).expect("token");
    });
    runtime.block_on(async {
        let view = store.view().expect("view");
        let records = view.records();
        assert_eq!(
            records.get(&handle(1)).await.expect("read"),
            Some(record(1, "acme"))
        );
        assert_eq!(records.get(&handle(3)).await.expect("read"), None);
        assert_eq!(
            records.by_index("acme", &[1; 32]).await.expect("index"),
            Some((handle(1), Some(record(1, "acme"))))
        );
        assert_eq!(
            records.by_index("acme", &[2; 32]).await.expect("index"),
            Some((handle(2), None))
        );
        assert_eq!(
            records.by_index("other", &[1; 32]).await.expect("index"),
            None
        );
        assert_eq!(
            view.tenants().get("acme").await.expect("tenant"),
            Some(tenant("acme"))
        );
        assert_eq!(view.tenants().get("zeta").await.expect("tenant"), None);
        assert_eq!(
            view.operators().get("clerk").await.expect("operator"),
            Some(operator("clerk"))
        );
        assert_eq!(
            view.tokens().get("t1").await.expect("token"),
            Some(token("t1", "clerk"))
        );
        assert_eq!(view.tokens().get("t9").await.expect("token"), None);
    });
}

/// Every entity a view reads, listed and by id, as the synchronous reader has it (after the
/// rows of three other checks are written).
fn views_list_rows(store: &dyn Store, runtime: &tokio::runtime::Runtime) {
    principals(store);
    key_state(store);
    lifecycle_rows(store);
    let reader = store.reader().expect("reader");
    runtime.block_on(async {
        let view = store.view().expect("view");
        let tenants = reader.tenants().expect("tenants");
        assert_eq!(view.tenants().list().await.expect("list"), tenants);
        for tenant in &tenants {
            assert_eq!(
                view.tenant_info().get(&tenant.id).await.expect("info"),
                reader.tenant_info(&tenant.id).expect("info")
            );
        }
        assert_eq!(
            view.operators().list().await.expect("list"),
            reader.operators().expect("operators")
        );
        assert_eq!(
            view.tokens().list().await.expect("list"),
            reader.tokens().expect("tokens")
        );
        let jobs = reader.jobs().expect("jobs");
        assert!(!jobs.is_empty());
        assert_eq!(view.jobs().list().await.expect("list"), jobs);
        assert_eq!(
            view.jobs().get("acme").await.expect("job"),
            reader.job("acme").expect("job")
        );
        assert_eq!(
            view.destructions().list().await.expect("list"),
            reader.destructions().expect("destructions")
        );
        let requests = reader.change_requests().expect("requests");
        assert!(!requests.is_empty());
        assert_eq!(view.change_requests().list().await.expect("list"), requests);
        for request in &requests {
            assert_eq!(
                view.change_requests().get(&request.id).await.expect("get"),
                Some(request.clone())
            );
        }
        let epochs = reader.epoch_keys().expect("epoch keys");
        assert!(!epochs.is_empty());
        assert_eq!(view.epoch_keys().list().await.expect("list"), epochs);
        for epoch in &epochs {
            let id = vault_daemon::store::codec::epoch_key_id(&epoch.tenant, epoch.epoch);
            assert_eq!(
                view.epoch_keys().get(&id).await.expect("get"),
                Some(epoch.clone())
            );
        }
        let queue = reader.disposal_queue().expect("queue");
        assert!(!queue.is_empty());
        assert_eq!(view.disposal_queue().list().await.expect("list"), queue);
        assert_eq!(
            view.corrections().list().await.expect("list"),
            reader.corrections().expect("corrections")
        );
    });
}

/// A view that read a token and then its operator reads them together next time; the
/// operator so read is the one committed now, and a token that names another operator gets
/// that one.
fn views_read_ahead_fresh_rows(store: &dyn Store, runtime: &tokio::runtime::Runtime) {
    write(store, |txn| {
        txn.put_operator(&operator("clerk")).expect("operator");
        txn.put_operator(&operator("other")).expect("operator");
        txn.put_token(&token("t1", "clerk")).expect("token");
    });
    let token_then_operator = || {
        runtime.block_on(async {
            let view = store.view().expect("view");
            let token = view.tokens().get("t1").await.expect("token").expect("t1");
            view.operators()
                .get(&token.operator_id)
                .await
                .expect("operator")
                .expect("its operator")
        })
    };
    assert_eq!(token_then_operator(), operator("clerk"));
    assert_eq!(token_then_operator(), operator("clerk"));
    let mut disabled = operator("clerk");
    disabled.disabled = true;
    write(store, |txn| txn.put_operator(&disabled).expect("put"));
    assert_eq!(
        token_then_operator(),
        disabled,
        "a stale operator was served"
    );
    write(store, |txn| {
        txn.put_token(&token("t1", "other")).expect("token")
    });
    assert_eq!(token_then_operator(), operator("other"));
    assert_eq!(token_then_operator(), operator("other"));
}

fn record_pages(store: &dyn Store) {
    write(store, |txn| {
        for n in [5u8, 1, 9, 3, 7] {
            txn.put_record(&record(n, "acme")).expect("put");
        }
    });
    let reader = store.reader().expect("reader");
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = reader.records_after(after.as_ref(), 2).expect("page");
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|r| r.handle.clone()));
        match page.last() {
            Some(last) if page.len() == 2 => after = Some(last.handle.clone()),
            _ => break,
        }
    }
    // Handle order, each record once: pages neither repeat nor skip.
    assert_eq!(seen, [1u8, 3, 5, 7, 9].map(handle).to_vec());
}

fn principals(store: &dyn Store) {
    write(store, |txn| {
        txn.put_tenant(&tenant("zeta")).expect("tenant");
        txn.put_tenant(&tenant("acme")).expect("tenant");
        txn.put_operator(&operator("b-clerk")).expect("operator");
        txn.put_operator(&operator("a-clerk")).expect("operator");
        txn.put_token(&token("t2", "a-clerk")).expect("token");
        txn.put_token(&token("t1", "b-clerk")).expect("token");
    });
    let reader = store.reader().expect("reader");
    assert_eq!(reader.tenant("acme").expect("tenant"), Some(tenant("acme")));
    assert_eq!(reader.tenant("nobody").expect("tenant"), None);
    let ids: Vec<String> = reader
        .tenants()
        .expect("tenants")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["acme", "zeta"]);
    assert_eq!(
        reader.operator("a-clerk").expect("operator"),
        Some(operator("a-clerk"))
    );
    let ids: Vec<String> = reader
        .operators()
        .expect("operators")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(ids, ["a-clerk", "b-clerk"]);
    assert_eq!(
        reader.token("t1").expect("token"),
        Some(token("t1", "b-clerk"))
    );
    let ids: Vec<String> = reader
        .tokens()
        .expect("tokens")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["t1", "t2"]);
}

fn checkpoint(number: u64, seq: u64) -> Checkpoint {
    Checkpoint {
        number,
        seq,
        chain_hash: format!("{seq:064x}"),
        time_ms: 1,
        key_version: 1,
        key_id: "ab".repeat(32),
        prev: String::new(),
        state: String::new(),
        signature: "cd".repeat(64),
    }
}

fn audit_and_checkpoints(store: &dyn Store) {
    {
        let reader = store.reader().expect("reader");
        assert_eq!(reader.audit_last().expect("last"), None);
        assert_eq!(reader.last_checkpoint().expect("checkpoint"), None);
    }
    write(store, |txn| {
        for seq in 1..=5u64 {
            txn.append_audit(seq, format!("entry {seq}").as_bytes())
                .expect("append");
        }
        txn.put_checkpoint(&checkpoint(1, 2)).expect("checkpoint");
        txn.put_checkpoint(&checkpoint(2, 4)).expect("checkpoint");
    });
    let reader = store.reader().expect("reader");
    let row = |seq: u64| (seq, format!("entry {seq}").into_bytes());
    assert_eq!(reader.audit_last().expect("last"), Some(row(5)));
    assert_eq!(
        reader.audit_after(2, 2).expect("after"),
        vec![row(3), row(4)]
    );
    assert_eq!(reader.audit_after(5, 10).expect("after"), vec![]);
    // The newest entries, oldest first.
    assert_eq!(reader.audit_tail(2).expect("tail"), vec![row(4), row(5)]);
    assert_eq!(
        reader.last_checkpoint().expect("last"),
        Some(checkpoint(2, 4))
    );
    assert_eq!(
        reader.checkpoints_after(2, 10).expect("after"),
        vec![checkpoint(2, 4)]
    );
}

fn key_state(store: &dyn Store) {
    let job = RewrapJob {
        tenant: "acme".into(),
        target_version: 2,
        cursor: Some(handle(3)),
        total: 10,
        done: 4,
        started_at_ms: 1,
        finished_at_ms: None,
        requested_by: "admin".into(),
        counted: true,
    };
    let destruction = DestructionRequest {
        id: "d1".into(),
        tenant: "acme".into(),
        version: 1,
        requested_by: "admin".into(),
        requested_at_ms: 2,
        state: DestructionState::Approving {
            approvals: vec![Approval {
                by: "admin2".into(),
                at_ms: 3,
            }],
        },
    };
    let epoch = EpochKey {
        tenant: "acme".into(),
        epoch: 202_611,
        months: 84,
        kek: b"epoch-kek-ref".to_vec(),
        created_at_ms: 4,
        destroyed_at_ms: None,
    };
    write(store, |txn| {
        txn.put_job(&job).expect("job");
        txn.put_destruction(&destruction).expect("destruction");
        txn.put_epoch_key(&epoch).expect("epoch key");
    });
    let reader = store.reader().expect("reader");
    assert_eq!(reader.job("acme").expect("job"), Some(job.clone()));
    assert_eq!(reader.jobs().expect("jobs"), vec![job]);
    assert_eq!(
        reader.destructions().expect("destructions"),
        vec![destruction]
    );
    assert_eq!(
        reader.epoch_key("acme", 202_611).expect("epoch"),
        Some(epoch.clone())
    );
    assert_eq!(reader.epoch_key("acme", 202_612).expect("epoch"), None);
    assert_eq!(reader.epoch_keys().expect("epochs"), vec![epoch]);
}

fn lifecycle_rows(store: &dyn Store) {
    let queued = |day: &str, n: u8| DisposalQueueEntry {
        dispose_on: day.into(),
        handle: handle(n).to_string(),
        tenant: "acme".into(),
        epoch: 202_611,
    };
    let correction = Correction {
        id: "c1".into(),
        handle: handle(1).to_string(),
        tenant: "acme".into(),
        requested_by: "clerk".into(),
        requested_at_ms: 1,
        reason: "番号の誤り".into(),
        asked_by: "本人".into(),
        state: CorrectionState::Pending,
        decided_by: None,
        decided_at_ms: None,
        decision_note: String::new(),
        change: String::new(),
        pending: None,
    };
    let request = ChangeRequest {
        id: "0123456789abcdef".into(),
        change: GatedChange::EnableOperator("clerk".into()),
        requested_by: "admin".into(),
        requested_at_ms: 1,
        expires_at_ms: 2,
        approvals: Vec::new(),
        required: 1,
        state: ChangeState::Pending,
    };
    let info = TenantInfo {
        tenant: "acme".into(),
        file_kind: "給与".into(),
        ..TenantInfo::default()
    };
    write(store, |txn| {
        txn.queue_disposal(&queued("2033-04-01", 2)).expect("queue");
        txn.queue_disposal(&queued("2031-04-01", 3)).expect("queue");
        txn.queue_disposal(&queued("2031-04-01", 1)).expect("queue");
        txn.put_correction(&correction).expect("correction");
        txn.put_change_request(&request).expect("change request");
        txn.put_tenant_info(&info).expect("info");
    });
    {
        let reader = store.reader().expect("reader");
        // By date, then handle: the scheduler takes the queue in this order.
        assert_eq!(
            reader.disposal_queue().expect("queue"),
            vec![
                queued("2031-04-01", 1),
                queued("2031-04-01", 3),
                queued("2033-04-01", 2)
            ]
        );
        assert_eq!(
            reader.correction("c1").expect("correction"),
            Some(correction.clone())
        );
        assert_eq!(reader.corrections().expect("corrections"), vec![correction]);
        assert_eq!(
            reader.change_request("0123456789abcdef").expect("request"),
            Some(request.clone())
        );
        assert_eq!(reader.change_requests().expect("requests"), vec![request]);
        assert_eq!(reader.tenant_info("acme").expect("info"), Some(info));
    }
    write(store, |txn| {
        txn.unqueue_disposal("2031-04-01", &handle(3))
            .expect("unqueue");
        txn.remove_correction("c1").expect("remove");
    });
    let reader = store.reader().expect("reader");
    assert_eq!(
        reader.disposal_queue().expect("queue"),
        vec![queued("2031-04-01", 1), queued("2033-04-01", 2)]
    );
    assert_eq!(reader.corrections().expect("corrections"), vec![]);
}

fn transactions(store: &dyn Store) {
    // Dropped without commit: nothing happened.
    {
        let mut txn = store.writer().expect("writer");
        txn.put_record(&record(1, "acme")).expect("put");
        txn.append_audit(1, b"entry").expect("append");
        // A transaction reads its own writes.
        assert_eq!(
            txn.record(&handle(1)).expect("read"),
            Some(record(1, "acme"))
        );
    }
    let reader = store.reader().expect("reader");
    assert_eq!(reader.record(&handle(1)).expect("read"), None);
    assert_eq!(reader.audit_last().expect("last"), None);
    drop(reader);
    // Committed: all of it, together.
    write(store, |txn| {
        txn.put_record(&record(1, "acme")).expect("put");
        txn.append_audit(1, b"entry").expect("append");
    });
    let reader = store.reader().expect("reader");
    assert!(reader.record(&handle(1)).expect("read").is_some());
    assert_eq!(
        reader.audit_last().expect("last").map(|(seq, _)| seq),
        Some(1)
    );
    drop(reader);
    // A group commit's entries in one call: stored in order, as one by one.
    let rows = vec![(2, b"second".to_vec()), (3, b"third".to_vec())];
    write(store, |txn| txn.append_audit_rows(&rows).expect("append"));
    assert_eq!(
        store
            .reader()
            .expect("reader")
            .audit_after(1, 10)
            .expect("after"),
        rows
    );
    // One of them already stored: the call fails, and nothing of it is committed.
    let mut txn = store.writer().expect("writer");
    let refused = txn.append_audit_rows(&[(4, b"fourth".to_vec()), (3, b"again".to_vec())]);
    if refused.is_ok() {
        // An engine that checks at commit (PostgreSQL's pending inserts) refuses it there.
        assert!(txn.commit().is_err(), "entry 3 appended twice");
    } else {
        drop(txn);
    }
    assert_eq!(
        store
            .reader()
            .expect("reader")
            .audit_last()
            .expect("last")
            .map(|(seq, _)| seq),
        Some(3)
    );
}

/// An audit row as the writer stores it: previous hash ‖ hash (here `n` repeated) ‖ body.
fn audit_row(n: u8, body: &[u8]) -> Vec<u8> {
    let mut row = vec![0u8; 32];
    row.extend_from_slice(&[n; 32]);
    row.extend_from_slice(body);
    row
}

/// A store that offers optimistic write transactions commits one whose head is right, and
/// refuses one whose head moved or whose head entry no longer has the hash it expects
/// (`HeadMoved`), writing nothing of it.
fn optimistic_writers(store: &dyn Store) {
    write(store, |txn| {
        txn.append_audit(1, &audit_row(1, b"first"))
            .expect("append")
    });
    let Some(mut txn) = store
        .optimistic_writer(1, &[1; 32])
        .expect("optimistic writer")
    else {
        return;
    };
    txn.put_record(&record(2, "acme")).expect("put");
    txn.append_audit(2, &audit_row(2, b"second"))
        .expect("append");
    txn.commit().expect("the head was where it expected");
    // Another writer appended entry 3; a writer still expecting 2 is refused.
    write(store, |txn| {
        txn.append_audit(3, &audit_row(3, b"third"))
            .expect("append")
    });
    let mut stale = store
        .optimistic_writer(2, &[2; 32])
        .expect("optimistic writer")
        .expect("offered before, offered now");
    stale.put_record(&record(4, "acme")).expect("put");
    stale
        .append_audit(3, &audit_row(3, b"fork"))
        .expect("queued");
    assert_eq!(stale.commit(), Err(StoreError::HeadMoved));
    // Entry 3 as expected by count, but not the entry this writer knows (rewritten).
    let mut rewritten = store
        .optimistic_writer(3, &[9; 32])
        .expect("optimistic writer")
        .expect("offered");
    rewritten
        .append_audit(4, &audit_row(4, b"onto a rewrite"))
        .expect("queued");
    assert_eq!(rewritten.commit(), Err(StoreError::HeadMoved));
    let reader = store.reader().expect("reader");
    assert_eq!(reader.record(&handle(4)).expect("read"), None);
    assert_eq!(
        reader.audit_tail(5).expect("tail"),
        vec![
            (1, audit_row(1, b"first")),
            (2, audit_row(2, b"second")),
            (3, audit_row(3, b"third"))
        ]
    );
}

fn snapshot_isolation(store: &dyn Store) {
    write(store, |txn| {
        txn.put_operator(&operator("clerk")).expect("put")
    });
    let before = store.reader().expect("reader");
    // The snapshot is taken no later than the first read (PostgreSQL's REPEATABLE READ takes
    // it there; redb when the reader is made).
    assert_eq!(
        before.operator("clerk").expect("read"),
        Some(operator("clerk"))
    );
    let mut disabled = operator("clerk");
    disabled.disabled = true;
    write(store, |txn| txn.put_operator(&disabled).expect("put"));
    // The older reader keeps its snapshot; a new one sees the commit.
    assert_eq!(
        before.operator("clerk").expect("read"),
        Some(operator("clerk"))
    );
    assert_eq!(
        store
            .reader()
            .expect("reader")
            .operator("clerk")
            .expect("read"),
        Some(disabled)
    );
}

fn authority_digest(store: &dyn Store) {
    let digest = || {
        store
            .reader()
            .expect("reader")
            .authority_digest()
            .expect("digest")
    };
    let empty = digest();
    // A record is no authority row: the digest does not move.
    let mut txn = store.writer().expect("writer");
    txn.put_record(&record(1, "acme")).expect("put");
    assert!(!txn.authority_changed(), "a record is not an authority row");
    txn.commit().expect("commit");
    assert_eq!(digest(), empty);
    // An operator is: it moves, and the transaction says so.
    let mut txn = store.writer().expect("writer");
    txn.put_operator(&operator("clerk")).expect("put");
    assert!(txn.authority_changed());
    txn.commit().expect("commit");
    let with_clerk = digest();
    assert_ne!(with_clerk, empty);
    // Any change of an authority row moves it again; the same rows give the same digest.
    let mut granted = operator("clerk");
    granted.grants.push(Grant {
        tenant: "acme".into(),
        purpose: "STAFF_HEALTH_PENSION".into(),
    });
    write(store, |txn| txn.put_operator(&granted).expect("put"));
    assert_ne!(digest(), with_clerk);
    write(store, |txn| {
        txn.put_operator(&operator("clerk")).expect("put")
    });
    assert_eq!(digest(), with_clerk);
    for change in [
        |txn: &mut dyn vault_daemon::store::StoreWrite| {
            txn.put_token(&token("t1", "clerk")).expect("token")
        },
        |txn: &mut dyn vault_daemon::store::StoreWrite| {
            txn.put_tenant(&tenant("acme")).expect("tenant")
        },
        |txn: &mut dyn vault_daemon::store::StoreWrite| {
            txn.put_tenant_info(&TenantInfo {
                tenant: "acme".into(),
                ..TenantInfo::default()
            })
            .expect("info")
        },
    ] {
        let before = digest();
        write(store, change);
        assert_ne!(
            digest(),
            before,
            "an authority row that does not move the digest"
        );
    }
}

fn certificate(n: u8) -> DeletionCertificate {
    DeletionCertificate {
        handle: handle(n).to_string(),
        tenant: "acme".into(),
        subject_ref: format!("employee-{n}"),
        disposed_at_ms: i64::from(n),
        method: "crypto-shredding".into(),
        responsible: "scheduler".into(),
        key_version: 1,
        key_id: "00".repeat(32),
        signature: "11".repeat(64),
    }
}

fn audit_key(version: u32) -> AuditKeyRecord {
    AuditKeyRecord {
        version,
        key_ref: format!("key-{version}").into_bytes(),
        public_point: vec![4; 65],
        key_id: [version as u8; 32],
        created_at_ms: i64::from(version),
        endorsement: Vec::new(),
    }
}

fn signed_rows_and_state(store: &dyn Store) {
    let authority = AuthorityState {
        seq: 7,
        hash: [7; 32],
        digest: [8; 32],
    };
    let checkpoint = CheckpointState {
        seq: 5,
        authority: [5; 32],
        records: Some((3, [3; 32])),
    };
    {
        let reader = store.reader().expect("reader");
        assert_eq!(reader.authority_state().expect("state"), None);
        assert_eq!(reader.checkpoint_state().expect("state"), None);
        assert_eq!(reader.certificate(&handle(1)).expect("certificate"), None);
    }
    write(store, |txn| {
        txn.put_certificate(&certificate(2)).expect("certificate");
        txn.put_certificate(&certificate(1)).expect("certificate");
        // Versions sort as numbers, not as text: 10 after 9.
        for version in [10, 1, 9] {
            txn.put_audit_key(&audit_key(version)).expect("audit key");
        }
        assert!(txn.authority_changed(), "an audit key is authority");
        txn.put_authority_state(&authority).expect("state");
        txn.put_checkpoint_state(&checkpoint).expect("state");
    });
    let reader = store.reader().expect("reader");
    assert_eq!(
        reader.certificate(&handle(1)).expect("certificate"),
        Some(certificate(1))
    );
    assert_eq!(
        reader
            .audit_keys()
            .expect("audit keys")
            .iter()
            .map(|key| key.version)
            .collect::<Vec<_>>(),
        vec![1, 9, 10]
    );
    assert_eq!(reader.audit_keys().expect("audit keys")[2], audit_key(10));
    assert_eq!(reader.authority_state().expect("state"), Some(authority));
    assert_eq!(reader.checkpoint_state().expect("state"), Some(checkpoint));
    // State rows are not authority: writing them alone leaves the flag down.
    let mut txn = store.writer().expect("writer");
    txn.put_checkpoint_state(&CheckpointState {
        seq: 6,
        authority: [6; 32],
        records: None,
    })
    .expect("state");
    assert!(!txn.authority_changed());
}

fn leases(store: &dyn Store) {
    let ttl = std::time::Duration::from_secs(60);
    assert!(store.hold_lease("checkpoints", "a", ttl).expect("hold"));
    assert!(store.hold_lease("checkpoints", "a", ttl).expect("renew"));
    let shared = !store.hold_lease("checkpoints", "b", ttl).expect("hold");
    if shared {
        // One holder at a time: another duty is free, and a released lease passes on.
        assert!(store.hold_lease("rewrap", "b", ttl).expect("other duty"));
        store
            .release_lease("checkpoints", "b")
            .expect("not b's to release");
        assert!(
            !store
                .hold_lease("checkpoints", "b", ttl)
                .expect("still a's")
        );
        store.release_lease("checkpoints", "a").expect("release");
        assert!(
            store
                .hold_lease("checkpoints", "b", ttl)
                .expect("passed on")
        );
        assert!(!store.hold_lease("checkpoints", "a", ttl).expect("now b's"));
    } else {
        // A store one process owns: that process holds every duty.
        store.release_lease("checkpoints", "a").expect("release");
        assert!(store.hold_lease("checkpoints", "a", ttl).expect("hold"));
    }
}

fn online_snapshot(store: &dyn Store) {
    write(store, |txn| {
        txn.put_record(&record(1, "acme")).expect("record");
        txn.put_index("acme", &[1; 32], &handle(1)).expect("index");
        txn.put_operator(&operator("clerk")).expect("operator");
        txn.put_audit_key(&audit_key(1)).expect("audit key");
        txn.append_audit(1, &audit_row(1, b"first"))
            .expect("append");
        txn.put_checkpoint(&checkpoint(1, 1)).expect("checkpoint");
    });
    let mut bytes = Vec::new();
    let summary = store
        .snapshot(
            &mut |chunk| {
                bytes.extend_from_slice(chunk);
                true
            },
            42,
        )
        .expect("snapshot");
    let (header, rows) = vault_daemon::store::snapshot::read(&bytes).expect("reads back");
    assert_eq!(header, summary.header);
    assert_eq!((header.head_seq, header.checkpoint), (1, Some((1, 1))));
    assert_eq!(summary.rows, rows.len() as u64);
    let tables: Vec<&str> = rows.iter().map(|row| row.table.as_str()).collect();
    for table in [
        "records",
        "blind_index",
        "operators",
        "audit",
        "audit_checkpoints",
        "audit_keys",
    ] {
        assert!(tables.contains(&table), "{table} missing from {tables:?}");
    }
    // Rows as stored: the audit row's bytes, under its number big-endian.
    let audit = rows.iter().find(|row| row.table == "audit").expect("audit");
    assert_eq!(
        (audit.key.as_slice(), audit.value.clone()),
        (1u64.to_be_bytes().as_slice(), audit_row(1, b"first"))
    );
    let index = rows
        .iter()
        .find(|row| row.table == "blind_index")
        .expect("index");
    assert_eq!(index.value, handle(1).to_string().into_bytes());
}
