//! Signed checkpoints of the audit chain: every `every` entries or `interval`, and at shutdown,
//! the chain head (sequence number, hash) is signed with the active audit key in the key
//! backend and stored. Also creates the first audit key and rotates it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vault_audit::checkpoint::{Checkpoint, key_id, signed_payload};

use crate::audit::entry::{AuditEntry, ChainedEntry, EntryOutcome};
use crate::audit::keys::AuditKeyRecord;
use crate::audit::writer::AuditWriter;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::keys::{KeyRef, KeyService, KeyUse};
use crate::store::Store;
use crate::store::mutation::Mutation;

/// When to checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// After this many new entries.
    pub every: u64,
    /// Or after this long, if there is any new entry.
    pub interval: Duration,
}

/// Signs and stores checkpoints.
#[derive(Clone)]
pub struct Checkpointer {
    store: Arc<dyn Store>,
    writer: AuditWriter,
    keys: KeyService,
    clock: Arc<dyn Clock>,
    policy: CheckpointPolicy,
}

impl Checkpointer {
    /// Assembles the checkpointer.
    pub fn new(
        store: Arc<dyn Store>,
        writer: AuditWriter,
        keys: KeyService,
        clock: Arc<dyn Clock>,
        policy: CheckpointPolicy,
    ) -> Checkpointer {
        Checkpointer {
            store,
            writer,
            keys,
            clock,
            policy,
        }
    }

    /// Creates audit key version 1 in the backend if the store has none.
    pub async fn ensure_key(&self) -> Result<()> {
        if self.store.reader()?.audit_keys()?.is_empty() {
            let record = self.prepare_key().await?;
            let mut entry = AuditEntry {
                operator: "system".into(),
                role: "system".into(),
                action: "AUDIT_KEY_ROTATE".into(),
                ..AuditEntry::default()
            };
            entry.allow(key_note("first audit signing key created", &record));
            self.writer
                .submit(Mutation::AddAuditKey(record), entry)
                .await?;
        }
        Ok(())
    }

    /// Creates the next audit key version in the backend. Nothing is stored: the caller commits
    /// `Mutation::AddAuditKey` with its own audit entry, after which checkpoints use the key.
    pub async fn prepare_key(&self) -> Result<AuditKeyRecord> {
        let version = self
            .store
            .reader()?
            .audit_keys()?
            .last()
            .map_or(1, |k| k.version + 1);
        let key_ref = self
            .keys
            .create_key(KeyUse::Sign, format!("audit/{version}"))
            .await?;
        let public_point = self.keys.public_key(key_ref.clone()).await?;
        Ok(AuditKeyRecord {
            version,
            key_id: key_id(&public_point),
            key_ref: key_ref.0,
            public_point,
            created_at_ms: self.clock.now_ms(),
        })
    }

    /// Signs the current chain head unless the newest checkpoint covers it already.
    pub async fn checkpoint_now(&self) -> Result<Option<Checkpoint>> {
        let (head, last) = {
            let reader = self.store.reader()?;
            (reader.audit_last()?, reader.last_checkpoint()?)
        };
        let Some((seq, row)) = head else {
            return Ok(None);
        };
        if last.as_ref().is_some_and(|c| c.seq >= seq) {
            return Ok(None);
        }
        let chained = ChainedEntry::from_row(&row)
            .map_err(|e| Error::Integrity(format!("audit entry {seq} is unreadable: {e}")))?;
        let key = self
            .store
            .reader()?
            .audit_keys()?
            .pop()
            .ok_or_else(|| Error::Internal("no audit signing key".into()))?;
        let time_ms = self.clock.now_ms();
        let payload = signed_payload(seq, &chained.hash, time_ms, key.version, &key.key_id);
        let signature = self.keys.sign(KeyRef(key.key_ref.clone()), payload).await?;
        let checkpoint = Checkpoint {
            seq,
            chain_hash: hex::encode(chained.hash),
            time_ms,
            key_version: key.version,
            key_id: hex::encode(key.key_id),
            signature: hex::encode(signature),
        };
        self.writer
            .submit_unaudited(Mutation::PutCheckpoint(checkpoint.clone()))
            .await?;
        Ok(Some(checkpoint))
    }

    /// Checkpoints by the policy until the task is aborted. Failures (backend down) are logged
    /// and retried at the next tick: entries meanwhile stay chained, only unanchored.
    pub async fn run(self) {
        let mut last_time = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let due = match self.pending() {
                Ok(pending) => {
                    pending >= self.policy.every
                        || (pending > 0 && last_time.elapsed() >= self.policy.interval)
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the audit chain head");
                    false
                }
            };
            if !due {
                continue;
            }
            match self.checkpoint_now().await {
                Ok(Some(checkpoint)) => {
                    tracing::debug!(
                        seq = checkpoint.seq,
                        key_version = checkpoint.key_version,
                        "audit checkpoint signed"
                    );
                    last_time = Instant::now();
                }
                Ok(None) => last_time = Instant::now(),
                Err(error) => tracing::warn!(%error, "audit checkpoint failed; will retry"),
            }
        }
    }

    /// Entries not covered by the newest checkpoint.
    fn pending(&self) -> Result<u64> {
        let reader = self.store.reader()?;
        let head = reader.audit_last()?.map_or(0, |(seq, _)| seq);
        let covered = reader.last_checkpoint()?.map_or(0, |c| c.seq);
        Ok(head.saturating_sub(covered))
    }
}

/// The audit note of a new key version.
pub fn key_note(what: &str, record: &AuditKeyRecord) -> String {
    format!(
        "{what}: version {}, key id {}",
        record.version,
        hex::encode(record.key_id)
    )
}
