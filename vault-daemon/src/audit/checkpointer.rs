//! Signed checkpoints of the audit chain: every `every` entries or `interval`, and at shutdown,
//! the chain head (sequence number, hash) is signed with the active audit key in the key
//! backend and stored, numbered and linked to the checkpoint before; then the freshness anchor
//! in the backend is advanced to it. Before signing, the entries since the last verified point
//! are checked: the checkpointer never signs over a break (it stops, and health reports
//! NOT_SERVING). Also creates the first audit key and rotates it, each new version endorsed by
//! the one before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vault_audit::checkpoint::{
    Checkpoint, CheckpointBody, FIRST_PREV, endorsement_payload, key_id,
};

use vault_audit::statement::AnchorStatement;

use crate::audit::entry::{AuditEntry, EntryOutcome};
use crate::audit::integrity::{self, ChainPosition, Verified};
use crate::audit::writer::AuditWriter;
use crate::clock::Clock;
use crate::domain::audit_key::AuditKeyRecord;
use crate::error::{Error, Result};
use crate::keys::anchor::Anchor;
use crate::keys::{KeyRef, KeyService, KeyUse};
use crate::store::lease::{self, DutyLease, LeaseState};
use crate::store::mutation::Mutation;
use crate::store::{CheckpointState, Store};

/// When to checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// After this many new entries.
    pub every: u64,
    /// Or after this long, if there is any new entry.
    pub interval: Duration,
}

/// What the checkpointer has verified: the chain up to `verified`, the newest checkpoint, and
/// the anchor it last wrote.
#[derive(Debug, Clone)]
struct Progress {
    verified: ChainPosition,
    last: Option<Checkpoint>,
    anchor: Option<Anchor>,
    /// What the entries verified since the last checkpoint name.
    named: integrity::Named,
}

/// Signs and stores checkpoints.
#[derive(Clone)]
pub struct Checkpointer {
    store: Arc<dyn Store>,
    writer: AuditWriter,
    keys: KeyService,
    clock: Arc<dyn Clock>,
    policy: CheckpointPolicy,
    /// `None` until verified (at start, or lazily on the first checkpoint).
    progress: Arc<tokio::sync::Mutex<Option<Progress>>>,
    /// False once a break was found: nothing is signed any more, health says NOT_SERVING.
    intact: Arc<AtomicBool>,
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
            progress: Arc::new(tokio::sync::Mutex::new(None)),
            intact: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Starts from what start-up verification established (else the first checkpoint
    /// verifies the store itself).
    pub async fn resume(&self, verified: &Verified) {
        *self.progress.lock().await = Some(Progress {
            verified: verified.head,
            last: verified.last_checkpoint.clone(),
            anchor: verified.advance.or(verified.anchor),
            named: verified.named,
        });
    }

    /// Whether the audit chain is intact as far as verified (false after a break was found).
    pub fn intact(&self) -> bool {
        self.intact.load(Ordering::SeqCst)
    }

    /// Stops signing, turns health NOT_SERVING, logs, and records an `ALERT` entry (auditors
    /// see it in `vault-client alerts`) — if the log still takes one.
    async fn break_found(&self, error: &Error) {
        if self.intact.swap(false, Ordering::SeqCst) {
            tracing::error!(%error, "ALERT: the audit chain is broken; no checkpoint will be signed over it; health NOT_SERVING");
            let mut entry = AuditEntry {
                operator: "system".into(),
                role: "system".into(),
                action: "ALERT".into(),
                ..AuditEntry::default()
            };
            entry.allow(format!("audit chain broken, checkpoints stopped: {error}"));
            if let Err(error) = self.writer.submit(Mutation::None, entry).await {
                tracing::error!(%error, "the chain-break alert could not be recorded");
            }
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
        let id = key_id(&public_point);
        let previous = self.store.reader()?.audit_keys()?.pop();
        let endorsement = match previous {
            Some(previous) => {
                self.keys
                    .sign(KeyRef(previous.key_ref), endorsement_payload(version, &id))
                    .await?
            }
            None => Vec::new(),
        };
        Ok(AuditKeyRecord {
            version,
            key_id: id,
            key_ref: key_ref.0,
            public_point,
            created_at_ms: self.clock.now_ms(),
            endorsement,
        })
    }

    /// Signs the current chain head unless the newest checkpoint covers it already, after
    /// verifying the entries since the last verified point; then advances the anchor.
    pub async fn checkpoint_now(&self) -> Result<Option<Checkpoint>> {
        if !self.intact() {
            return Err(Error::Integrity(
                "the audit chain is broken: no checkpoint is signed over it".into(),
            ));
        }
        let mut guard = self.progress.lock().await;
        // The newest stored checkpoint must still be the one this process knows, unless
        // another daemon of a cluster signed newer ones meanwhile: then this one verifies
        // afresh, from the anchor, before it signs on (removed or replaced ones fail there).
        let stored_last = self.store.reader()?.last_checkpoint()?;
        let known = guard.as_ref().map(|p| p.last.clone());
        let moved_on = match (&known, &stored_last) {
            (Some(Some(known)), Some(stored)) => stored.number > known.number,
            (Some(None), Some(_)) => true,
            _ => false,
        };
        if moved_on {
            *guard = None;
        }
        let progress = match guard.as_mut() {
            Some(progress) => progress,
            None => {
                let anchor = self.keys.read_anchor().await?;
                let verified = match integrity::verify_store_at_start(self.store.as_ref(), anchor) {
                    Ok(verified) => verified,
                    Err(error) => {
                        self.break_found(&error).await;
                        return Err(error);
                    }
                };
                guard.insert(Progress {
                    verified: verified.head,
                    last: verified.last_checkpoint,
                    anchor: verified.anchor,
                    named: verified.named,
                })
            }
        };
        let stored_last = self.store.reader()?.last_checkpoint()?;
        if stored_last != progress.last {
            let error = Error::Integrity(
                "the stored checkpoints changed under the checkpointer (removed or replaced)"
                    .into(),
            );
            self.break_found(&error).await;
            return Err(error);
        }
        // The head and the state it signs come from one snapshot.
        let read = {
            let log_key = self.store.sealer().log_key()?;
            let snapshot = self.store.reader()?;
            integrity::verify_chain_named(snapshot.as_ref(), progress.verified, &log_key).and_then(
                |(head, named)| {
                    // Nor over authority rows the log does not vouch for.
                    let named = progress.named.then(named);
                    let signed = integrity::verify_checkpoint_state(
                        snapshot.as_ref(),
                        progress.last.as_ref(),
                    )?;
                    let authority = integrity::verify_authority(
                        snapshot.as_ref(),
                        progress.last.as_ref(),
                        head,
                        &log_key,
                        named.authority,
                        signed.as_ref(),
                    )?;
                    let state = CheckpointState {
                        seq: head.seq,
                        authority,
                        records: integrity::records_vouched(named, signed.as_ref()),
                    };
                    Ok((head, state, named))
                },
            )
        };
        let (head, state, named) = match read {
            Ok(read) => read,
            Err(error @ Error::Integrity(_)) => {
                self.break_found(&error).await;
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        progress.verified = head;
        progress.named = named;
        if head.seq == 0 || progress.last.as_ref().is_some_and(|c| c.seq >= head.seq) {
            return Ok(None);
        }
        let key = self.signing_key()?;
        let body = CheckpointBody {
            number: progress.last.as_ref().map_or(1, |c| c.number + 1),
            seq: head.seq,
            chain_hash: head.hash,
            time_ms: self.clock.now_ms(),
            key_version: key.version,
            key_id: key.key_id,
            prev: match &progress.last {
                Some(last) => last
                    .hash()
                    .ok_or_else(|| Error::Integrity("stored checkpoint is malformed".into()))?,
                None => FIRST_PREV,
            },
            state: integrity::checkpoint_state(state.authority, state.records),
        };
        let signature = self
            .keys
            .sign(KeyRef(key.key_ref.clone()), body.signed_payload())
            .await?;
        let checkpoint = body.into_checkpoint(&signature);
        if let Err(error) = self
            .writer
            .submit_unaudited(Mutation::PutCheckpoint(checkpoint.clone(), state))
            .await
        {
            // Another daemon stored one first (its lease ran out under this one's feet):
            // verify afresh next time rather than trust what this process remembers.
            *guard = None;
            return Err(error);
        }
        progress.last = Some(checkpoint.clone());
        // What the entries name is now signed by the checkpoint.
        progress.named = integrity::Named::default();
        // Stored first, anchored second: a crash between leaves the store one checkpoint
        // ahead of the anchor, which start-up accepts and anchors.
        let anchor = Anchor::next(progress.anchor.as_ref(), body.number, body.hash());
        match self.keys.write_anchor(anchor).await {
            Ok(()) => progress.anchor = Some(anchor),
            Err(error) => {
                tracing::warn!(%error, number = body.number, "cannot advance the anchor; retried at the next checkpoint")
            }
        }
        Ok(Some(checkpoint))
    }

    /// A signed checkpoint over the whole log as it stands now: a new one, or the newest one
    /// when it covers the head already (just verified against the store by
    /// [`Checkpointer::checkpoint_now`]). What a record drawn from the log cites as its anchor.
    pub async fn covering_checkpoint(&self) -> Result<Checkpoint> {
        if let Some(checkpoint) = self.checkpoint_now().await? {
            return Ok(checkpoint);
        }
        self.progress
            .lock()
            .await
            .as_ref()
            .and_then(|progress| progress.last.clone())
            .ok_or_else(|| Error::Unavailable("the audit log has no checkpoint yet".into()))
    }

    /// The audit key version that signs now (the newest).
    fn signing_key(&self) -> Result<AuditKeyRecord> {
        self.store
            .reader()?
            .audit_keys()?
            .pop()
            .ok_or_else(|| Error::Internal("no audit signing key".into()))
    }

    /// The key backend's anchor, signed now with the active audit key: the statement an export
    /// carries so that an auditor can tell it complete (`vault_audit::statement`). Before the
    /// first checkpoint was anchored it names checkpoint 0: nothing to reach yet, said and
    /// signed, so that an export without any statement stays suspect.
    pub async fn anchor_statement(&self) -> Result<Option<AnchorStatement>> {
        let anchor = self.keys.read_anchor().await?.unwrap_or(Anchor {
            counter: 0,
            checkpoint: 0,
            hash: [0u8; 32],
        });
        let key = self.signing_key()?;
        let time_ms = self.clock.now_ms();
        let payload = vault_audit::statement::signed_payload(
            anchor.checkpoint,
            &anchor.hash,
            anchor.counter,
            time_ms,
        );
        let signature = self.keys.sign(KeyRef(key.key_ref.clone()), payload).await?;
        Ok(Some(AnchorStatement {
            checkpoint: anchor.checkpoint,
            checkpoint_hash: hex::encode(anchor.hash),
            counter: anchor.counter,
            time_ms,
            key_version: key.version,
            key_id: hex::encode(key.key_id),
            signature: hex::encode(signature),
        }))
    }

    /// The checkpoint at a clean stop: signed by this daemon when it holds (or can take) the
    /// checkpoint lease; on a shared store whose lease another daemon holds, that daemon
    /// anchors the cluster's head and this one signs nothing (`Ok(None)`).
    pub async fn checkpoint_final(&self) -> Result<Option<Checkpoint>> {
        let lease = DutyLease::new(Arc::clone(&self.store), lease::CHECKPOINTS);
        match lease.check() {
            LeaseState::Elsewhere => {
                tracing::info!("another daemon holds the checkpoint lease: it anchors the log");
                Ok(None)
            }
            LeaseState::Held { .. } => self.checkpoint_now().await,
        }
    }

    /// Checkpoints by the policy until the task is aborted. Failures (backend down) are logged
    /// and retried at the next tick: entries meanwhile stay chained, only unanchored.
    pub async fn run(self) {
        let mut last_time = Instant::now();
        let lease = DutyLease::new(Arc::clone(&self.store), lease::CHECKPOINTS);
        // Looked at twice a second, or as often as the interval asks for.
        let tick = self.policy.interval.min(Duration::from_millis(500));
        loop {
            tokio::time::sleep(tick).await;
            // One daemon of a cluster signs checkpoints; one that takes the duty over starts
            // from what the store holds now (other daemons signed meanwhile), verified anew.
            match lease.check() {
                LeaseState::Elsewhere => continue,
                LeaseState::Held { gained: true } => *self.progress.lock().await = None,
                LeaseState::Held { gained: false } => {}
            }
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
