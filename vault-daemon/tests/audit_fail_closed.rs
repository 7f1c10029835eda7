//! Fail closed on the audit side: when the audit log cannot be committed (the store fails or
//! stalls), unseal answers UNAVAILABLE within the commit timeout and returns no number; when
//! the store recovers, the chain goes on and verifies.
//!
//! The store is the real redb store behind the guard that turns storage-engine panics into
//! errors; faults are injected through that guard (a real disk cannot be made to fail on
//! demand here), so the failing commit and the damaged read take the path a panicking engine
//! would.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use vault_daemon::audit::checkpointer::CheckpointPolicy;
use vault_daemon::audit::integrity::ChainPosition;
use vault_daemon::audit::records::{RecordTagger, RecordView};
use vault_daemon::audit::writer::{AuditWriter, WriterConfig, WriterThread};
use vault_daemon::clock::SystemClock;
use vault_daemon::domain::purpose::PurposeCatalogue;
use vault_daemon::domain::record::SubjectKind;
use vault_daemon::error::Error;
use vault_daemon::keys::KeyService;
use vault_daemon::keys::sim::SimBackend;
use vault_daemon::service::{Locker, RequestContext, SealRequest, TokenPolicy};
use vault_daemon::store::Store;
use zeroize::Zeroizing;

const HEALTHY: u8 = 0;
/// The audit writer's commit fails (the engine panics in it, as on a damaged page).
const FAILING: u8 = 1;
/// The commit takes 3 s, then fails (a stalled disk).
const STALLED: u8 = 2;
/// Reading a record panics (a damaged page under the record).
const RECORD_PANICS: u8 = 3;
/// Commits take 1.5 s, then succeed (a slow disk).
const SLOW_COMMIT: u8 = 4;
/// Like [`SLOW_COMMIT`], once the first slow commit has begun.
const SLOW_COMMIT_STARTED: u8 = 5;

/// The embedded store in `dir` with a small page cache.
fn embedded(dir: &Path) -> vault_daemon::trust::StoreLocation {
    vault_daemon::trust::StoreLocation::Redb {
        data_dir: dir.to_owned(),
        cache_bytes: 8 << 20,
    }
}

/// The real store, verified against the sim's anchor, with faults injected by `mode` inside
/// the same guard that catches the storage engine's panics.
async fn faulty_store(dir: &Path, keys: &KeyService, mode: &Arc<AtomicU8>) -> Arc<dyn Store> {
    let mode = Arc::clone(mode);
    let fault: vault_daemon::store::guard::FaultHook =
        Arc::new(
            move |operation| match (mode.load(Ordering::SeqCst), operation) {
                (FAILING, "commit") => panic!("injected: commit failed"),
                (STALLED, "commit") => {
                    std::thread::sleep(Duration::from_secs(3));
                    panic!("injected: disk stalled")
                }
                (RECORD_PANICS, "records") => panic!("injected: damaged record page"),
                (SLOW_COMMIT | SLOW_COMMIT_STARTED, "commit") => {
                    mode.store(SLOW_COMMIT_STARTED, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(1500))
                }
                _ => {}
            },
        );
    vault_daemon::trust::open_store_with_fault(&embedded(dir), keys, Some(fault))
        .await
        .expect("store")
        .0
}

/// Where the writer starts on `store`, which these tests open without the start-up check (some
/// on purpose, to see what the running locker finds): its head, and its records as they are.
fn trusted_start(store: &Arc<dyn Store>) -> (ChainPosition, Option<[u8; 32]>) {
    let reader = store.reader().expect("reader");
    let head = match reader.audit_last().expect("head") {
        Some((seq, row)) => ChainPosition {
            seq,
            hash: vault_daemon::audit::entry::ChainedEntry::from_row(&row)
                .expect("entry")
                .hash,
        },
        None => ChainPosition::GENESIS,
    };
    let tagger = RecordTagger::new(store.sealer().log_key().expect("log key"));
    let digest = RecordView::digest_of(reader.as_ref(), &tagger).expect("records");
    (head, Some(digest))
}

/// A locker on `store` with a 500 ms commit timeout, provisioned for dev.
async fn start_locker(
    dir: &Path,
    keys: KeyService,
    store: &Arc<dyn Store>,
) -> (Locker, WriterThread) {
    let (head, records) = trusted_start(store);
    let (writer, writer_thread) = AuditWriter::start(
        Arc::clone(store),
        Arc::new(SystemClock),
        WriterConfig {
            commit_timeout: Duration::from_millis(500),
            // Long enough that "refused at once while recovering" holds on a loaded machine.
            recovery_pause: Duration::from_secs(2),
            ..WriterConfig::default()
        },
        head,
        records,
    )
    .expect("writer");
    let locker = Locker::new(
        Arc::clone(store),
        writer,
        keys,
        PurposeCatalogue::default(),
        Arc::new(SystemClock),
        TokenPolicy {
            default_ttl_ms: 3_600_000,
            max_ttl_ms: 3_600_000,
        },
        CheckpointPolicy {
            every: 1000,
            interval: Duration::from_secs(60),
        },
    );
    locker.checkpointer().ensure_key().await.expect("audit key");
    locker.provision_dev(dir).await.expect("provision");
    (locker, writer_thread)
}

async fn seal_one(locker: &Locker, handler: &RequestContext) -> String {
    locker
        .seal(
            handler,
            SealRequest {
                tenant: "dev".into(),
                subject_ref: "A1".into(),
                subject_kind: Some(SubjectKind::Staff),
                purposes: vec!["STAFF_WITHHOLDING".into()],
                number: Zeroizing::new("123456789018".into()),
                verification: Default::default(),
            },
        )
        .await
        .expect("seal")
        .handle
        .to_string()
}

fn sim_keys(dir: &Path) -> KeyService {
    KeyService::new(
        vault_daemon::keys::OpenedKeys::self_anchored(SimBackend::open(dir, false).expect("sim")),
        8,
        Duration::from_secs(2),
    )
}

fn context(token: SecretString) -> RequestContext {
    RequestContext {
        token: Some(token),
        peer_addr: None,
        cert_fingerprint: None,
        request_id: "test".into(),
        session: None,
    }
}

fn token_of(dir: &Path, operator: &str) -> SecretString {
    let text = std::fs::read_to_string(dir.join("tokens").join(format!("{operator}.token")))
        .expect("token file");
    SecretString::from(text.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_fails_closed_when_the_audit_log_cannot_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let keys = sim_keys(dir.path());
    let store = faulty_store(dir.path(), &keys, &mode).await;
    let (locker, writer_thread) = start_locker(dir.path(), keys, &store).await;
    let handler = context(token_of(dir.path(), "dev-handler"));
    let handle = seal_one(&locker, &handler).await;

    mode.store(FAILING, Ordering::SeqCst);
    let refused = locker.unseal(&handler, &handle, "STAFF_WITHHOLDING").await;
    assert!(
        matches!(&refused, Err(Error::Unavailable(m)) if m.contains("audit log unavailable")),
        "{refused:?}"
    );

    // Right after a failure the writer refuses at once while it waits to recover.
    let refused = locker.unseal(&handler, &handle, "STAFF_WITHHOLDING").await;
    assert!(
        matches!(&refused, Err(Error::Unavailable(m)) if m.contains("recovering")),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await; // past the first recovery pause

    mode.store(STALLED, Ordering::SeqCst);
    let started = Instant::now();
    let refused = locker.unseal(&handler, &handle, "STAFF_WITHHOLDING").await;
    assert!(
        matches!(&refused, Err(Error::Unavailable(m)) if m.contains("outcome unknown")),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "waited {:?}",
        started.elapsed()
    );
    // Let the stalled commit give up, and the writer pass its next recovery pause (4 s).
    tokio::time::sleep(Duration::from_secs(7)).await;

    mode.store(HEALTHY, Ordering::SeqCst);
    let number = locker
        .unseal(&handler, &handle, "STAFF_WITHHOLDING")
        .await
        .expect("unseal after recovery");
    assert_eq!(number.as_str(), "123456789018");
    let report = vault_daemon::service::verify_store(store.as_ref()).expect("verify");
    assert!(report.chain.ok, "{}", report.chain.message);
    drop(locker);
    writer_thread.join();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_engine_panic_is_an_audited_data_loss_and_the_locker_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let keys = sim_keys(dir.path());
    let store = faulty_store(dir.path(), &keys, &mode).await;
    let (locker, writer_thread) = start_locker(dir.path(), keys, &store).await;
    let mut handler = context(token_of(dir.path(), "dev-handler"));
    let handle = seal_one(&locker, &handler).await;

    mode.store(RECORD_PANICS, Ordering::SeqCst);
    handler.request_id = "damaged-read".into();
    let refused = locker.unseal(&handler, &handle, "STAFF_WITHHOLDING").await;
    assert!(
        matches!(&refused, Err(Error::Integrity(m)) if m.contains("storage engine failed")),
        "{refused:?}"
    );
    let last = store.reader().expect("read").audit_tail(1).expect("tail");
    let entry = vault_daemon::audit::entry::ChainedEntry::from_row(&last[0].1)
        .expect("entry")
        .entry;
    assert_eq!(
        (
            entry.request_id.as_str(),
            entry.action.as_str(),
            entry.code.as_str()
        ),
        ("damaged-read", "UNSEAL", "DATA_LOSS"),
        "{entry:?}"
    );

    mode.store(HEALTHY, Ordering::SeqCst);
    handler.request_id = "after".into();
    let number = locker
        .unseal(&handler, &handle, "STAFF_WITHHOLDING")
        .await
        .expect("the locker serves again");
    assert_eq!(number.as_str(), "123456789018");
    drop(locker);
    writer_thread.join();
}

/// Rewrites audit entry `seq` with another reason and a hash recomputed over it, as someone
/// with write access to the database would: the entry after it no longer follows.
fn rewrite_entry(dir: &Path, seq: u64) {
    use vault_daemon::audit::entry::ChainedEntry;
    use vault_daemon::store::audit_segments::{AUDIT_DIR, AuditSegments};
    let segments = AuditSegments::open(dir).expect("open the segments");
    let mut rows = segments
        .read(1, segments.published())
        .expect("read the segments");
    drop(segments);
    let (_, row) = rows.iter_mut().find(|(s, _)| *s == seq).expect("entry");
    let chained = ChainedEntry::from_row(row).expect("row");
    let mut entry = chained.entry;
    entry.reason = "nothing happened".into();
    *row = ChainedEntry::new(entry, chained.prev_hash).to_row();
    std::fs::remove_dir_all(dir.join(AUDIT_DIR)).expect("remove the segments");
    AuditSegments::create(dir, &rows).expect("write the segments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_never_signs_over_a_broken_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let keys = sim_keys(dir.path());
    let store = faulty_store(dir.path(), &keys, &mode).await;
    let (locker, writer_thread) = start_locker(dir.path(), keys.clone(), &store).await;
    let handler = context(token_of(dir.path(), "dev-handler"));
    let handle = seal_one(&locker, &handler).await;
    let anchored = locker
        .checkpointer()
        .checkpoint_now()
        .await
        .expect("checkpoint")
        .expect("a new checkpoint");
    for _ in 0..3 {
        locker
            .unseal(&handler, &handle, "STAFF_WITHHOLDING")
            .await
            .expect("unseal");
    }
    drop(locker);
    writer_thread.join();
    drop(store);

    // An entry after the newest checkpoint rewritten behind the locker's back, and the store
    // opened without the start-up check (which refuses it; see below): the checkpointer finds
    // the break itself.
    rewrite_entry(dir.path(), anchored.seq + 1);
    let database = vault_daemon::store::redb::RedbDatabase::open(dir.path()).expect("open");
    let state_key = database
        .meta(vault_daemon::trust::STATE_KEY_META)
        .expect("meta")
        .expect("state key");
    let mac = vault_daemon::keys::state_mac::StateMac::new(
        keys.backend(),
        vault_daemon::keys::KeyRef(state_key),
        Duration::from_secs(2),
    );
    let store: Arc<dyn Store> = Arc::new(database.authenticated(Arc::new(
        vault_daemon::store::sealing::RowSealer::new(Arc::new(mac)),
    )));
    let (locker, writer_thread) = start_locker(dir.path(), keys.clone(), &store).await;
    let refused = locker.checkpointer().checkpoint_now().await;
    assert!(
        matches!(&refused, Err(Error::Integrity(m)) if m.contains("not authenticated by the log key")),
        "{refused:?}"
    );
    assert!(!locker.checkpointer().intact());
    let last_checkpoint = store
        .reader()
        .expect("read")
        .last_checkpoint()
        .expect("last");
    assert_eq!(
        last_checkpoint.as_ref(),
        Some(&anchored),
        "nothing signed over the break"
    );
    let last = store.reader().expect("read").audit_tail(1).expect("tail");
    let alert = vault_daemon::audit::entry::ChainedEntry::from_row(&last[0].1)
        .expect("entry")
        .entry;
    assert!(
        alert.action == "ALERT" && alert.reason.contains("audit chain broken"),
        "{alert:?}"
    );
    // Still refused on the next try.
    assert!(locker.checkpointer().checkpoint_now().await.is_err());
    drop(locker);
    writer_thread.join();
    drop(store);

    // The start-up check refuses the same store.
    let refused = vault_daemon::trust::open_store(&embedded(dir.path()), &keys).await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("not authenticated by the log key")),
        "{:?}",
        refused.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_is_never_recorded_as_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let keys = sim_keys(dir.path());
    let store = faulty_store(dir.path(), &keys, &mode).await;
    let (locker, writer_thread) = start_locker(dir.path(), keys, &store).await;
    let handler = context(token_of(dir.path(), "dev-handler"));
    let handle = seal_one(&locker, &handler).await;

    // A is taken into a slow commit; B waits behind it. Both callers give up after 500 ms.
    mode.store(SLOW_COMMIT, Ordering::SeqCst);
    let a = RequestContext {
        request_id: "gave-up-during-commit".into(),
        ..context(token_of(dir.path(), "dev-handler"))
    };
    let b = RequestContext {
        request_id: "gave-up-in-queue".into(),
        ..context(token_of(dir.path(), "dev-handler"))
    };
    let (during, queued) = tokio::join!(locker.unseal(&a, &handle, "STAFF_WITHHOLDING"), async {
        // B only once A's commit has begun, so B waits in the queue behind it.
        while mode.load(Ordering::SeqCst) != SLOW_COMMIT_STARTED {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        locker.unseal(&b, &handle, "STAFF_WITHHOLDING").await
    });
    assert!(
        matches!(&during, Err(Error::Unavailable(m)) if m.contains("outcome unknown")),
        "{during:?}"
    );
    assert!(
        matches!(&queued, Err(Error::Unavailable(m)) if m.contains("abandoned")),
        "{queued:?}"
    );
    mode.store(HEALTHY, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    locker
        .unseal(&handler, &handle, "STAFF_WITHHOLDING")
        .await
        .expect("serves again");

    let rows = store.reader().expect("read").audit_tail(50).expect("tail");
    let entries: Vec<_> = rows
        .iter()
        .map(|(_, row)| {
            vault_daemon::audit::entry::ChainedEntry::from_row(row)
                .expect("entry")
                .entry
        })
        .collect();
    let of = |id: &str| -> Vec<(String, String)> {
        entries
            .iter()
            .filter(|e| e.request_id == id)
            .map(|e| (e.outcome.clone(), e.code.clone()))
            .collect()
    };
    // B: abandoned, never applied nor released.
    assert_eq!(
        of("gave-up-in-queue"),
        vec![("ABANDONED".to_owned(), "DEADLINE_EXCEEDED".to_owned())]
    );
    // A: committed as released, then the note that the number never reached the caller.
    assert_eq!(
        of("gave-up-during-commit"),
        vec![
            ("ALLOWED".to_owned(), "OK".to_owned()),
            ("UNDELIVERED".to_owned(), "CANCELLED".to_owned())
        ]
    );
    drop(locker);
    writer_thread.join();
}
