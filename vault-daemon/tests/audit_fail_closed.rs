//! Fail closed on the audit side: when the audit log cannot be committed (the store fails or
//! stalls), unseal answers UNAVAILABLE within the commit timeout and returns no number; when
//! the store recovers, the chain goes on and verifies.
//!
//! The store is the real redb store; only its commit is wrapped so a failure can be switched on
//! (a real disk cannot be made to fail on demand here).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use vault_audit::certificate::DeletionCertificate;
use vault_audit::checkpoint::Checkpoint;
use vault_daemon::audit::checkpointer::CheckpointPolicy;
use vault_daemon::audit::keys::AuditKeyRecord;
use vault_daemon::audit::writer::{AuditWriter, WriterConfig};
use vault_daemon::clock::SystemClock;
use vault_daemon::domain::correction::Correction;
use vault_daemon::domain::handle::Handle;
use vault_daemon::domain::lifecycle::{DisposalQueueEntry, EpochKey};
use vault_daemon::domain::operator::{Operator, Tenant};
use vault_daemon::domain::purpose::PurposeCatalogue;
use vault_daemon::domain::record::{Record, SubjectKind};
use vault_daemon::domain::tenant_info::TenantInfo;
use vault_daemon::domain::token::TokenRecord;
use vault_daemon::error::Error;
use vault_daemon::keys::KeyService;
use vault_daemon::keys::rotation::{DestructionRequest, RewrapJob};
use vault_daemon::keys::sim::SimBackend;
use vault_daemon::service::{Locker, RequestContext, SealRequest, TokenPolicy};
use vault_daemon::store::redb::RedbStore;
use vault_daemon::store::{Store, StoreError, StoreRead, StoreWrite};
use zeroize::Zeroizing;

const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const STALLED: u8 = 2;

struct FlakyStore {
    inner: Arc<RedbStore>,
    mode: Arc<AtomicU8>,
}

struct FlakyWrite<'a> {
    inner: Box<dyn StoreWrite + 'a>,
    mode: Arc<AtomicU8>,
}

impl Store for FlakyStore {
    fn reader(&self) -> Result<Box<dyn StoreRead + '_>, StoreError> {
        self.inner.reader()
    }
    fn writer(&self) -> Result<Box<dyn StoreWrite + '_>, StoreError> {
        Ok(Box::new(FlakyWrite {
            inner: self.inner.writer()?,
            mode: Arc::clone(&self.mode),
        }))
    }
}

impl StoreRead for FlakyWrite<'_> {
    fn record(&self, handle: &Handle) -> Result<Option<Record>, StoreError> {
        self.inner.record(handle)
    }
    fn epoch_key(&self, tenant: &str, epoch: u32) -> Result<Option<EpochKey>, StoreError> {
        self.inner.epoch_key(tenant, epoch)
    }
    fn epoch_keys(&self) -> Result<Vec<EpochKey>, StoreError> {
        self.inner.epoch_keys()
    }
    fn disposal_queue(&self) -> Result<Vec<DisposalQueueEntry>, StoreError> {
        self.inner.disposal_queue()
    }
    fn certificate(&self, handle: &Handle) -> Result<Option<DeletionCertificate>, StoreError> {
        self.inner.certificate(handle)
    }
    fn correction(&self, id: &str) -> Result<Option<Correction>, StoreError> {
        self.inner.correction(id)
    }
    fn corrections(&self) -> Result<Vec<Correction>, StoreError> {
        self.inner.corrections()
    }
    fn tenant_info(&self, tenant: &str) -> Result<Option<TenantInfo>, StoreError> {
        self.inner.tenant_info(tenant)
    }
    fn index_lookup(&self, tenant: &str, index: &[u8; 32]) -> Result<Option<Handle>, StoreError> {
        self.inner.index_lookup(tenant, index)
    }
    fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        self.inner.tenant(id)
    }
    fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.inner.tenants()
    }
    fn operator(&self, id: &str) -> Result<Option<Operator>, StoreError> {
        self.inner.operator(id)
    }
    fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        self.inner.operators()
    }
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.token(id)
    }
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.tokens()
    }
    fn audit_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.inner.audit_last()
    }
    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.audit_after(after, limit)
    }
    fn audit_tail(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.audit_tail(limit)
    }
    fn checkpoints_after(&self, after: u64, limit: usize) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.checkpoints_after(after, limit)
    }
    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.last_checkpoint()
    }
    fn audit_keys(&self) -> Result<Vec<AuditKeyRecord>, StoreError> {
        self.inner.audit_keys()
    }
    fn records_after(
        &self,
        after: Option<&Handle>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.inner.records_after(after, limit)
    }
    fn job(&self, tenant: &str) -> Result<Option<RewrapJob>, StoreError> {
        self.inner.job(tenant)
    }
    fn jobs(&self) -> Result<Vec<RewrapJob>, StoreError> {
        self.inner.jobs()
    }
    fn destructions(&self) -> Result<Vec<DestructionRequest>, StoreError> {
        self.inner.destructions()
    }
}

impl StoreWrite for FlakyWrite<'_> {
    fn put_record(&mut self, record: &Record) -> Result<(), StoreError> {
        self.inner.put_record(record)
    }
    fn put_epoch_key(&mut self, key: &EpochKey) -> Result<(), StoreError> {
        self.inner.put_epoch_key(key)
    }
    fn queue_disposal(&mut self, entry: &DisposalQueueEntry) -> Result<(), StoreError> {
        self.inner.queue_disposal(entry)
    }
    fn unqueue_disposal(&mut self, dispose_on: &str, handle: &Handle) -> Result<(), StoreError> {
        self.inner.unqueue_disposal(dispose_on, handle)
    }
    fn put_certificate(&mut self, certificate: &DeletionCertificate) -> Result<(), StoreError> {
        self.inner.put_certificate(certificate)
    }
    fn put_correction(&mut self, correction: &Correction) -> Result<(), StoreError> {
        self.inner.put_correction(correction)
    }
    fn remove_correction(&mut self, id: &str) -> Result<(), StoreError> {
        self.inner.remove_correction(id)
    }
    fn put_tenant_info(&mut self, info: &TenantInfo) -> Result<(), StoreError> {
        self.inner.put_tenant_info(info)
    }
    fn put_index(
        &mut self,
        tenant: &str,
        index: &[u8; 32],
        handle: &Handle,
    ) -> Result<(), StoreError> {
        self.inner.put_index(tenant, index, handle)
    }
    fn remove_index(&mut self, tenant: &str, index: &[u8; 32]) -> Result<(), StoreError> {
        self.inner.remove_index(tenant, index)
    }
    fn put_tenant(&mut self, tenant: &Tenant) -> Result<(), StoreError> {
        self.inner.put_tenant(tenant)
    }
    fn put_operator(&mut self, operator: &Operator) -> Result<(), StoreError> {
        self.inner.put_operator(operator)
    }
    fn put_token(&mut self, token: &TokenRecord) -> Result<(), StoreError> {
        self.inner.put_token(token)
    }
    fn append_audit(&mut self, seq: u64, row: &[u8]) -> Result<(), StoreError> {
        self.inner.append_audit(seq, row)
    }
    fn put_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.inner.put_checkpoint(checkpoint)
    }
    fn put_audit_key(&mut self, key: &AuditKeyRecord) -> Result<(), StoreError> {
        self.inner.put_audit_key(key)
    }
    fn put_job(&mut self, job: &RewrapJob) -> Result<(), StoreError> {
        self.inner.put_job(job)
    }
    fn put_destruction(&mut self, request: &DestructionRequest) -> Result<(), StoreError> {
        self.inner.put_destruction(request)
    }
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        match self.mode.load(Ordering::SeqCst) {
            FAILING => Err(StoreError::Io("injected: disk unavailable".into())),
            STALLED => {
                std::thread::sleep(Duration::from_secs(3));
                Err(StoreError::Io("injected: disk stalled".into()))
            }
            _ => self.inner.commit(),
        }
    }
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
    let keys = KeyService::new(
        Arc::new(SimBackend::open(dir.path(), false).expect("sim")),
        8,
        Duration::from_secs(2),
    );
    let (inner, _) = vault_daemon::trust::open_store(dir.path(), 8 << 20, &keys)
        .await
        .expect("store");
    let store: Arc<dyn Store> = Arc::new(FlakyStore {
        inner,
        mode: Arc::clone(&mode),
    });
    let commit_timeout = Duration::from_millis(500);
    let (writer, writer_thread) = AuditWriter::start(
        Arc::clone(&store),
        Arc::new(SystemClock),
        WriterConfig {
            commit_timeout,
            ..WriterConfig::default()
        },
    )
    .expect("writer");
    let locker = Locker::new(
        Arc::clone(&store),
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
    locker.provision_dev(dir.path()).await.expect("provision");
    let handler = context(token_of(dir.path(), "dev-handler"));
    let sealed = locker
        .seal(
            &handler,
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
        .expect("seal");
    let handle = sealed.handle.to_string();

    mode.store(FAILING, Ordering::SeqCst);
    let refused = locker.unseal(&handler, &handle, "STAFF_WITHHOLDING").await;
    assert!(
        matches!(&refused, Err(Error::Unavailable(m)) if m.contains("audit log unavailable")),
        "{refused:?}"
    );

    mode.store(STALLED, Ordering::SeqCst);
    let started = Instant::now();
    let refused = locker.unseal(&handler, &handle, "STAFF_WITHHOLDING").await;
    assert!(
        matches!(&refused, Err(Error::Unavailable(m)) if m.contains("not committed within")),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "waited {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // let the stalled commit give up

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
