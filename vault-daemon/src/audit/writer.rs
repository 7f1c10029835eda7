//! The one writer: every state change and every audit entry goes through it.
//!
//! A request hands the writer a unit — a [`Mutation`] and its [`AuditEntry`] — and waits. The
//! writer thread takes whatever units are queued, applies them in order in one transaction,
//! chains and appends their audit entries, commits once (one fsync), and only then answers each
//! unit. So a change and its audit entry land together or not at all, and throughput grows with
//! load instead of paying one fsync per call.
//!
//! A caller waits at most the commit timeout; past it the call fails `UNAVAILABLE` and releases
//! nothing (fail closed, never hang). If a transaction fails, every unit in it is refused and
//! the writer rereads the chain head from the store before going on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::audit::entry::EntryOutcome;
use crate::audit::entry::{AuditEntry, ChainedEntry, GENESIS_HASH};
use crate::clock::Clock;
use crate::error::Error;
use crate::store::mutation::{Mutation, MutationOutcome};
use crate::store::{AuthorityState, Store, StoreError};

/// Tuning of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Units waiting at most; senders wait (within the commit timeout) beyond it.
    pub queue_capacity: usize,
    /// Units committed in one transaction at most.
    pub max_batch: usize,
    /// How long a caller waits for its unit to be committed.
    pub commit_timeout: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: 4096,
            max_batch: 512,
            commit_timeout: Duration::from_secs(5),
        }
    }
}

struct Unit {
    mutation: Mutation,
    /// `None` only for the writer's own bookkeeping (checkpoints), which is not a call.
    entry: Option<AuditEntry>,
    reply: oneshot::Sender<Result<MutationOutcome, Error>>,
}

// `Stop` is sent once per process life; boxing every unit to shrink it would cost an
// allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
enum Message {
    Unit(Unit),
    /// Commit what was queued before this message, then stop.
    Stop,
}

/// Handle for submitting units to the writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Message>,
    commit_timeout: Duration,
}

/// The writer thread; [`WriterThread::join`] waits until it stops: after
/// [`AuditWriter::shutdown`], or once every [`AuditWriter`] clone is dropped.
pub struct WriterThread(std::thread::JoinHandle<()>);

impl WriterThread {
    /// Waits for the writer to drain its queue and stop.
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("audit writer thread panicked");
        }
    }
}

#[derive(Clone, Copy)]
struct ChainHead {
    seq: u64,
    hash: [u8; 32],
    time_ms: i64,
}

fn read_head(store: &dyn Store) -> Result<ChainHead, StoreError> {
    match store.reader()?.audit_last()? {
        None => Ok(ChainHead {
            seq: 0,
            hash: GENESIS_HASH,
            time_ms: 0,
        }),
        Some((seq, row)) => {
            let chained = ChainedEntry::from_row(&row)
                .map_err(|e| StoreError::Corrupt(format!("last audit entry {seq}: {e}")))?;
            let recomputed = ChainedEntry::new(chained.entry.clone(), chained.prev_hash);
            if recomputed.hash != chained.hash || chained.entry.seq != seq {
                return Err(StoreError::Corrupt(format!(
                    "last audit entry {seq} fails its hash check"
                )));
            }
            Ok(ChainHead {
                seq,
                hash: chained.hash,
                time_ms: chained.entry.time_ms,
            })
        }
    }
}

impl AuditWriter {
    /// Starts the writer thread on `store`. Fails if the chain head cannot be read or its last
    /// entry does not check out: the locker does not run on an audit log it cannot extend.
    pub fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: WriterConfig,
    ) -> Result<(AuditWriter, WriterThread), StoreError> {
        let head = read_head(store.as_ref())?;
        let (queue, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let max_batch = config.max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run(store, clock, receiver, head, max_batch))
            .map_err(|e| StoreError::Io(format!("cannot start audit writer: {e}")))?;
        Ok((
            AuditWriter {
                queue,
                commit_timeout: config.commit_timeout,
            },
            WriterThread(thread),
        ))
    }

    /// Asks the writer to commit everything queued so far and stop. Units submitted later fail
    /// `UNAVAILABLE`: a request still running after shutdown releases nothing.
    pub async fn shutdown(&self) {
        let _ = self.queue.send(Message::Stop).await;
    }

    /// Commits `mutation` with `entry` (seq and time are assigned here) and returns what the
    /// mutation did. Errors: the mutation's own refusal (its entry records it), or
    /// `Unavailable` when the unit could not be committed in time.
    pub async fn submit(
        &self,
        mutation: Mutation,
        entry: AuditEntry,
    ) -> Result<MutationOutcome, Error> {
        self.send(mutation, Some(entry)).await
    }

    /// Commits a mutation that is not a call and has no audit entry of its own: storing a
    /// checkpoint (an entry about it would itself be left unanchored).
    pub async fn submit_unaudited(&self, mutation: Mutation) -> Result<MutationOutcome, Error> {
        self.send(mutation, None).await
    }

    async fn send(
        &self,
        mutation: Mutation,
        entry: Option<AuditEntry>,
    ) -> Result<MutationOutcome, Error> {
        let (reply, answer) = oneshot::channel();
        let unit = Unit {
            mutation,
            entry,
            reply,
        };
        let wait = async {
            self.queue
                .send(Message::Unit(unit))
                .await
                .map_err(|_| Error::Unavailable("audit log unavailable: writer stopped".into()))?;
            answer
                .await
                .map_err(|_| Error::Unavailable("audit log unavailable: writer stopped".into()))?
        };
        match tokio::time::timeout(self.commit_timeout, wait).await {
            Ok(result) => result,
            Err(_) => Err(Error::Unavailable(format!(
                "audit log unavailable: entry not committed within {} ms; nothing was released",
                self.commit_timeout.as_millis()
            ))),
        }
    }
}

fn run(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    mut receiver: mpsc::Receiver<Message>,
    mut head: ChainHead,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut stopping = false;
    while !stopping {
        match receiver.blocking_recv() {
            Some(Message::Unit(unit)) => batch.push(unit),
            Some(Message::Stop) | None => break,
        }
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(Message::Unit(unit)) => batch.push(unit),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // A panic while applying a mutation refuses the batch like a failed commit: the writer,
        // and with it the locker, stays up.
        let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit_batch(store.as_ref(), clock.as_ref(), head, &mut batch)
        }))
        .unwrap_or_else(|_| {
            Err(StoreError::Corrupt(
                "the audit writer failed while applying the batch (panic)".into(),
            ))
        });
        match committed {
            Ok((new_head, results)) => {
                head = new_head;
                for (unit, result) in batch.drain(..).zip(results) {
                    // A caller that timed out has gone; its entry is committed regardless.
                    let _ = unit.reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, units = batch.len(), "audit commit failed; refusing the batch");
                for unit in batch.drain(..) {
                    let _ = unit.reply.send(Err(Error::Unavailable(format!(
                        "audit log unavailable: {error}; nothing was released"
                    ))));
                }
                match read_head(store.as_ref()) {
                    Ok(reread) => head = reread,
                    Err(error) => tracing::error!(%error, "cannot reread audit chain head"),
                }
            }
        }
    }
    // Closing the queue makes every later submit fail at once instead of waiting its timeout.
    receiver.close();
    tracing::debug!("audit writer drained and stopped");
}

fn commit_batch(
    store: &dyn Store,
    clock: &dyn Clock,
    mut head: ChainHead,
    batch: &mut [Unit],
) -> Result<(ChainHead, Vec<Result<MutationOutcome, Error>>), StoreError> {
    let mut txn = store.writer()?;
    let mut results = Vec::with_capacity(batch.len());
    for unit in batch.iter_mut() {
        let mutation = std::mem::replace(&mut unit.mutation, Mutation::None);
        let result = mutation.apply(txn.as_mut())?;
        let Some(mut entry) = unit.entry.take() else {
            results.push(result);
            continue;
        };
        match &result {
            Ok(MutationOutcome::Existing(handle)) => {
                entry.handle = handle.to_string();
                entry.reason =
                    "number already held by this tenant: existing handle returned".into();
            }
            Ok(MutationOutcome::Inserted(handle)) => entry.handle = handle.to_string(),
            Ok(_) => {}
            Err(error) => entry.fail(error),
        }
        // Wall clocks step backwards; the log's times never do.
        head.time_ms = clock.now_ms().max(head.time_ms);
        head.seq += 1;
        entry.seq = head.seq;
        entry.time_ms = head.time_ms;
        let chained = ChainedEntry::new(entry, head.hash);
        txn.append_audit(head.seq, &chained.to_row())?;
        head.hash = chained.hash;
        results.push(result);
    }
    // Every commit that changes an authority row records the authority state as of its last
    // entry, authenticated: a row later restored from an older copy no longer matches it.
    if txn.authority_changed() {
        let digest = txn.authority_digest()?;
        txn.put_authority_state(&AuthorityState {
            seq: head.seq,
            hash: head.hash,
            digest,
        })?;
    }
    txn.commit()?;
    Ok((head, results))
}
