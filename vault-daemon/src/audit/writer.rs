//! The one writer: every state change and every audit entry goes through it.
//!
//! A request hands the writer a unit — a [`Mutation`] and its [`AuditEntry`] — and waits. The
//! writer thread takes whatever units are queued, applies them in order in one transaction,
//! chains and appends their audit entries, commits once (one fsync), and only then answers each
//! unit. So a change and its audit entry land together or not at all, and throughput grows with
//! load instead of paying one fsync per call.
//!
//! A caller waits at most the commit timeout; past it the call fails `UNAVAILABLE` and releases
//! nothing (fail closed, never hang). If a transaction fails (a full disk, say), every unit in
//! it is refused, the writer reports itself unhealthy, and before the next batch it recovers the
//! store (redb is reopened) and rereads the chain head from it, with a growing pause between
//! attempts; calls that arrive during the pause are refused at once. The first commit that
//! succeeds makes it healthy again: no restart is needed.
//!
//! The writer believes nothing of the store it has not verified. It knows the newest position
//! it verified (its own commits, and what it checked since); when the head has moved on (other
//! daemons of a cluster appended) it verifies every entry since — links from the hash it knew,
//! hashes, MACs under the log key — before chaining onto it, and [`AuditWriter::check`] does
//! the same between calls. A head behind that position, a changed hash or an entry that fails
//! is [`StoreError::Behind`] or [`StoreError::Rewritten`]: every call is refused `DATA_LOSS`
//! and health says NOT_SERVING for as long as the store stays so. Every entry it appends
//! carries a MAC under the log key.
//!
//! The last entry of a commit that changes an authority row names their digest after it, and
//! the writer keeps the daemon's [`AuthorityView`] current with what it commits and verifies;
//! authority rows that differ from the digest the log names are [`StoreError::Tampered`],
//! refused like a rewritten log. Likewise every entry names the record versions and blind-index
//! entries its call changed, the last of a commit the digest of all records, and the writer
//! keeps the daemon's [`RecordView`] current: its transaction reads records and the index
//! through [`CheckedTxn`], and a call's [`Mutation::Expect`] — what it read and decided on — is
//! checked where its entry lands in the log.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use vault_audit::entry::LogKey;
use vault_audit::state::StateField;

use crate::audit::authority::{AuthoritySnapshot, AuthorityView, NamedDigest};
use crate::audit::checked_txn::CheckedTxn;
use crate::audit::records::{RecordTagger, RecordView, Suspect};
use crate::domain::handle::Handle;
use crate::domain::policy::Action;

use crate::audit::entry::{AuditEntry, ChainedEntry, EntryOutcome, GENESIS_HASH, undelivered};
use crate::audit::integrity::{ChainPosition, check_entry, walk_chain};
use crate::clock::Clock;
use crate::error::{Error, Outcome, Reason};
use crate::store::mutation::{Mutation, MutationOutcome};
use crate::store::{AuthorityState, Store, StoreError, StoreRead, StoreWrite};

/// Tuning of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Units waiting at most; senders wait (within the commit timeout) beyond it.
    pub queue_capacity: usize,
    /// Units committed in one transaction at most.
    pub max_batch: usize,
    /// How long a caller waits for its unit to be committed.
    pub commit_timeout: Duration,
    /// The first pause after a failed commit before the writer tries to recover; it doubles
    /// with each failure, up to 2 s.
    pub recovery_pause: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: 4096,
            max_batch: 512,
            commit_timeout: Duration::from_secs(5),
            recovery_pause: Duration::from_millis(250),
        }
    }
}

/// The authority a call decided on: the snapshot of the authority view it took its token and
/// operator from. Checked again where the call's entry lands in the log.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The snapshot.
    pub authority: Arc<AuthoritySnapshot>,
    /// The caller's token.
    pub token_id: String,
    /// The caller's operator.
    pub operator_id: String,
}

impl Decided {
    /// Whether the call may still be committed as decided, with `now` the authority as the log
    /// says it is where its entry lands: the same token and operator rows, or rows that still
    /// let it through unchanged. A token revoked or an operator disabled meanwhile refuses it
    /// as authentication would now; any other change (grants, role) asks for a retry.
    fn still_holds(&self, now: &AuthoritySnapshot) -> Result<(), Error> {
        if now.same_caller(&self.authority, &self.token_id, &self.operator_id) {
            return Ok(());
        }
        match (now.token(&self.token_id), now.operator(&self.operator_id)) {
            (Some(token), _) if token.revoked => Err(Error::Unauthenticated(
                "token has been revoked".into(),
            )
            .because(Reason::TokenRevoked)),
            (_, Some(operator)) if operator.disabled => Err(Error::Unauthenticated(
                "operator is disabled".into(),
            )
            .because(Reason::OperatorDisabled)),
            (None, _) | (_, None) => Err(Error::Unauthenticated(
                "unknown bearer token".into(),
            )
            .because(Reason::TokenUnknown)),
            _ => Err(Error::Aborted(
                "the caller's token or operator changed while this call ran; nothing was done; try again"
                    .into(),
            )),
        }
    }
}

struct Unit {
    mutation: Mutation,
    /// The authority the call decided on (`None`: not a call by a token).
    decided: Option<Decided>,
    /// `None` only for the writer's own bookkeeping (checkpoints), which is not a call.
    entry: Option<AuditEntry>,
    reply: oneshot::Sender<Result<MutationOutcome, Error>>,
    /// Who decides the unit's fate: the writer takes it ([`TAKEN`]) or the caller, giving up
    /// first, abandons it ([`ABANDONED`]); never both.
    state: Arc<AtomicU8>,
}

/// Waiting in the queue.
const PENDING: u8 = 0;
/// Taken into a transaction by the writer: its outcome is the transaction's.
const TAKEN: u8 = 1;
/// Given up by its caller before the writer took it: not applied, recorded as abandoned.
const ABANDONED: u8 = 2;

impl Unit {
    /// Takes the unit for a transaction; false if its caller has already given up (or gone).
    fn take(&self) -> bool {
        if self.state.load(Ordering::SeqCst) == TAKEN {
            return true;
        }
        if self.reply.is_closed() {
            self.state.store(ABANDONED, Ordering::SeqCst);
            return false;
        }
        match self
            .state
            .compare_exchange(PENDING, TAKEN, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(state) => state != ABANDONED,
        }
    }
}

// `Stop` is sent once per process life; boxing every unit to shrink it would cost an
// allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
enum Message {
    Unit(Unit),
    /// Verify the store's head against what this writer verified last (no commit).
    Check(oneshot::Sender<Result<(), StoreError>>),
    /// A call found the store not what the log says (an authority row put back): refuse
    /// everything until a check finds it right again.
    Broken(StoreError),
    /// Commit what was queued before this message, then stop.
    Stop,
}

/// Handle for submitting units to the writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Message>,
    commit_timeout: Duration,
    healthy: Arc<AtomicBool>,
    committing: Committing,
    verified: Arc<Mutex<ChainPosition>>,
    authority: Arc<AuthorityView>,
    records: Arc<RecordView>,
    breach: Breach,
}

/// When the commit under way began (`None`: none is): a commit that takes longer than the
/// commit timeout (a frozen or hung file system, a database that stopped answering) makes the
/// writer unhealthy although nothing failed yet.
type Committing = Arc<Mutex<Option<Instant>>>;

/// Set while the store is found behind the key backend's anchor (a database that lost
/// commits): every call is refused with it, health says NOT_SERVING.
type Breach = Arc<Mutex<Option<StoreError>>>;

fn breach_of(breach: &Breach) -> Option<StoreError> {
    breach.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

impl ChainHead {
    fn position(&self) -> ChainPosition {
        ChainPosition {
            seq: self.seq,
            hash: self.hash,
        }
    }
}

/// The head as `reader` holds it, its last entry checked (hash and MAC).
fn head_of(reader: &dyn StoreRead, key: &LogKey) -> Result<ChainHead, StoreError> {
    match reader.audit_last()? {
        None => Ok(ChainHead {
            seq: 0,
            hash: GENESIS_HASH,
            time_ms: 0,
        }),
        Some((seq, row)) => {
            let chained = check_entry(seq, &row, key, true)?;
            Ok(ChainHead {
                seq,
                hash: chained.hash,
                time_ms: chained.entry.time_ms,
            })
        }
    }
}

/// The head to extend, read inside the writer's transaction (never taken from memory: other
/// daemons on a shared store append too), and verified from `known`, the newest position this
/// writer verified: a head behind it, at it with another hash, or entries since that do not
/// follow it or fail their MAC mean the store lost or rewrote history. The entries since
/// `known` are followed by the record view; also returned: the newest authority digest they
/// name, at its entry.
fn head_in(
    txn: &dyn StoreRead,
    known: ChainHead,
    key: &LogKey,
    records: &RecordView,
) -> Result<(ChainHead, Option<NamedDigest>), StoreError> {
    let stored = head_of(txn, key)?;
    if stored.seq < known.seq {
        return Err(StoreError::Behind {
            found: stored.seq,
            committed: known.seq,
        });
    }
    if stored.seq == known.seq && stored.hash != known.hash {
        return Err(StoreError::Rewritten(format!(
            "audit entry {} in the store is not the one this daemon verified",
            stored.seq
        )));
    }
    let mut named = None;
    if stored.seq > known.seq {
        let mut followed = Ok(());
        let reached = walk_chain(txn, known.position(), key, false, &mut |position, entry| {
            let state = StateField::parse(entry.state);
            if let Some(digest) = state.authority {
                named = Some((position.seq, digest));
            }
            if followed.is_ok() {
                followed = records.follow(position.seq, &state);
            }
            // Another daemon found this record's row tampered with: this one checks it too
            // before it serves again, whether or not a call of its own reads it.
            if entry.action == Action::Alert.as_str()
                && entry.operator == "system"
                && entry.code == "DATA_LOSS"
                && let Ok(handle) = Handle::parse(entry.handle)
            {
                records.suspect(Suspect::Record(handle));
            }
        })?;
        followed?;
        if reached != stored.position() {
            return Err(StoreError::Rewritten(format!(
                "the audit log changed while it was being verified (reached entry {}, head {})",
                reached.seq, stored.seq
            )));
        }
    }
    Ok((
        ChainHead {
            time_ms: stored.time_ms.max(known.time_ms),
            ..stored
        },
        named,
    ))
}

/// Whether `error` says the store's history is not what this daemon verified (as opposed to a
/// fault that passes).
fn history_lost(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Behind { .. } | StoreError::Tampered { .. } | StoreError::Rewritten(_)
    )
}

impl AuditWriter {
    /// Starts the writer thread on `store`, verified at start up to `verified`, where the log
    /// vouched for the records digest `records` (`None`: none was ever named). The store's
    /// records must hash to it, or to the newest digest the entries appended since name (other
    /// daemons of a cluster write on). Fails if the chain head cannot be read or its last entry
    /// does not check out, or the records are not the ones the log names: the locker does not
    /// run on an audit log it cannot extend, nor on rows it does not vouch for.
    pub fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: WriterConfig,
        verified: ChainPosition,
        records: Option<[u8; 32]>,
    ) -> Result<(AuditWriter, WriterThread), StoreError> {
        let key = store.sealer().log_key()?;
        let (head, authority, records) = {
            let reader = store.reader()?;
            let head = head_of(reader.as_ref(), &key)?;
            let (reached, named) =
                crate::audit::integrity::verify_chain_named(reader.as_ref(), verified, &key)
                    .map_err(|error| StoreError::Rewritten(error.to_string()))?;
            if reached != head.position() {
                return Err(StoreError::Rewritten(format!(
                    "the audit log changed while the writer started (reached entry {}, head {})",
                    reached.seq, head.seq
                )));
            }
            let records = named.records.map(|(_, digest)| digest).or(records);
            let view = AuthorityView::load(reader.as_ref(), head.position())?;
            let records = RecordView::load(
                reader.as_ref(),
                RecordTagger::new(key.clone()),
                head.seq,
                records,
            )?;
            (head, Arc::new(view), Arc::new(records))
        };
        let (queue, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let max_batch = config.max_batch.max(1);
        let healthy = Arc::new(AtomicBool::new(true));
        let committing: Committing = Arc::new(Mutex::new(None));
        let verified = Arc::new(Mutex::new(head.position()));
        let breach: Breach = Arc::new(Mutex::new(None));
        let shared = Shared {
            breach: Arc::clone(&breach),
            healthy: Arc::clone(&healthy),
            committing: Arc::clone(&committing),
            verified: Arc::clone(&verified),
            authority: Arc::clone(&authority),
            records: Arc::clone(&records),
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                run(
                    Writing {
                        store,
                        clock,
                        key,
                        max_batch,
                    },
                    receiver,
                    head,
                    shared,
                    config.recovery_pause,
                )
            })
            .map_err(|e| StoreError::Io(format!("cannot start audit writer: {e}")))?;
        Ok((
            AuditWriter {
                queue,
                commit_timeout: config.commit_timeout,
                healthy,
                committing,
                verified,
                authority,
                records,
                breach,
            },
            WriterThread(thread),
        ))
    }

    /// The authority rows as the log says they are now (kept current by this writer).
    pub fn authority(&self) -> &Arc<AuthorityView> {
        &self.authority
    }

    /// The records and blind-index entries as the log says they are now (kept current by this
    /// writer).
    pub fn records(&self) -> &Arc<RecordView> {
        &self.records
    }

    /// The newest audit position this writer verified (its own commits and what it checked
    /// since): what the witness records.
    pub fn verified_position(&self) -> ChainPosition {
        *self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Verifies the store's head against the newest position this writer verified, without a
    /// commit: an idle daemon finds a rewritten, cut or rolled-back log this way. `Err` once
    /// the store's history is not what was verified (calls are refused meanwhile) or the store
    /// cannot be read.
    pub async fn check(&self) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        let unavailable = || Error::Unavailable("audit log unavailable: writer stopped".into());
        // Queueing counts against the deadline too: a writer stuck on its store with a full
        // queue must not hold the call.
        let asked = async {
            self.queue
                .send(Message::Check(reply))
                .await
                .map_err(|_| unavailable())?;
            answer.await.map_err(|_| unavailable())
        };
        match tokio::time::timeout(self.commit_timeout, asked).await {
            Ok(Ok(result)) => result.map_err(Error::from),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::Unavailable(
                "audit log check did not finish in time".into(),
            )),
        }
    }

    /// Says whether the store is behind the key backend's anchor (`Some`: why): while it is,
    /// every call is refused with it and health says NOT_SERVING; the first check or commit
    /// after it is cleared serves again.
    pub fn set_anchor_breach(&self, breach: Option<StoreError>) {
        let mut current = self.breach.lock().unwrap_or_else(|e| e.into_inner());
        if breach.is_some() && current.is_none() {
            crate::metrics::metrics().audit_log_breaks.inc();
        }
        *current = breach;
    }

    /// Reports that a call found the store's rows not what the authenticated log names: the
    /// writer refuses every call, as for a rewritten log, until the rows are right again.
    pub async fn report_tampering(&self, error: StoreError) {
        // Bounded like a commit: a stuck writer must not hold the refused call (its periodic
        // check finds the rows again).
        let _ = tokio::time::timeout(self.commit_timeout, self.queue.send(Message::Broken(error)))
            .await;
    }

    /// Whether the store commits: false from a failed commit until one succeeds again, and
    /// while a commit has been under way for longer than the commit timeout (health reports
    /// NOT_SERVING meanwhile).
    pub fn healthy(&self) -> bool {
        let stuck = self
            .committing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|since| since.elapsed() > self.commit_timeout);
        self.healthy.load(Ordering::SeqCst) && !stuck
    }

    /// Makes the writer try the store (an empty commit, or recovery first when it is failing):
    /// the health check calls this while the writer is unhealthy, so the locker serves again
    /// once the cause is gone even when no call arrives.
    pub async fn probe(&self) {
        let _ = self.send(Mutation::None, None, None).await;
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
        self.send(mutation, Some(entry), None).await
    }

    /// [`AuditWriter::submit`] for a call that decided on `decided`: refused where its entry
    /// lands if the caller's token or operator is no longer what it decided on.
    pub async fn submit_decided(
        &self,
        mutation: Mutation,
        entry: AuditEntry,
        decided: Decided,
    ) -> Result<MutationOutcome, Error> {
        self.send(mutation, Some(entry), Some(decided)).await
    }

    /// Commits a mutation that is not a call and has no audit entry of its own: storing a
    /// checkpoint (an entry about it would itself be left unanchored).
    pub async fn submit_unaudited(&self, mutation: Mutation) -> Result<MutationOutcome, Error> {
        self.send(mutation, None, None).await
    }

    async fn send(
        &self,
        mutation: Mutation,
        entry: Option<AuditEntry>,
        decided: Option<Decided>,
    ) -> Result<MutationOutcome, Error> {
        let (reply, answer) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(PENDING));
        let unit = Unit {
            mutation,
            decided,
            entry,
            reply,
            state: Arc::clone(&state),
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
            // The writer and this caller agree on one outcome: abandoned before the writer
            // took it (then the writer applies nothing and records it so), or under way.
            Err(_) => {
                match state.compare_exchange(PENDING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                {
                    Ok(_) => Err(Error::Unavailable(format!(
                        "audit log unavailable: not committed within {} ms; the call was abandoned, nothing was applied or released",
                        self.commit_timeout.as_millis()
                    ))),
                    Err(_) => Err(Error::Unavailable(format!(
                        "audit log unavailable: the commit was still under way after {} ms; outcome unknown, nothing was released to this caller (retrying is safe: a seal of the same number returns the same handle)",
                        self.commit_timeout.as_millis()
                    ))),
                }
            }
        }
    }
}

/// What the writer knows about the store's health: failing since when, how many calls it has
/// refused meanwhile, when to try recovering next. Logs once per change of state, and a
/// summary every [`SUMMARY_EVERY`] while failing.
struct Recovery {
    healthy: Arc<AtomicBool>,
    first_backoff: Duration,
    failing_since: Option<Instant>,
    refused: u64,
    next_attempt: Instant,
    backoff: Duration,
    last_summary: Instant,
    /// Why the last attempt failed: what calls refused meanwhile are told.
    last_error: Option<StoreError>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(2);
const SUMMARY_EVERY: Duration = Duration::from_secs(30);

impl Recovery {
    fn new(healthy: Arc<AtomicBool>, first_backoff: Duration) -> Recovery {
        Recovery {
            healthy,
            first_backoff,
            failing_since: None,
            refused: 0,
            next_attempt: Instant::now(),
            backoff: first_backoff,
            last_summary: Instant::now(),
            last_error: None,
        }
    }

    fn failed(&mut self, error: &StoreError, refused: usize) {
        self.refused += refused as u64;
        self.last_error = Some(error.clone());
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            self.last_summary = Instant::now();
            self.healthy.store(false, Ordering::SeqCst);
            if history_lost(error) {
                crate::metrics::metrics().audit_log_breaks.inc();
                tracing::error!(%error, "ALERT: the audit log in the store is not the one this daemon verified: every call is refused DATA_LOSS, health NOT_SERVING");
            } else {
                tracing::error!(%error, "audit store cannot commit: calls fail UNAVAILABLE, health NOT_SERVING; recovering");
            }
        } else if self.last_summary.elapsed() >= SUMMARY_EVERY {
            self.last_summary = Instant::now();
            tracing::error!(%error, refused = self.refused, "audit store still cannot commit");
        }
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF.max(self.first_backoff));
    }

    fn succeeded(&mut self) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                after_ms = since.elapsed().as_millis() as u64,
                refused = self.refused,
                "audit store commits again: SERVING"
            );
            self.healthy.store(true, Ordering::SeqCst);
        }
        self.last_error = None;
        self.refused = 0;
        self.backoff = self.first_backoff;
    }
}

/// A unit that only commits `entry` (nobody waits for it).
fn note_unit(entry: AuditEntry) -> Unit {
    let (reply, _) = oneshot::channel();
    Unit {
        mutation: Mutation::None,
        decided: None,
        entry: Some(entry),
        reply,
        state: Arc::new(AtomicU8::new(TAKEN)),
    }
}

fn refuse_all(batch: &mut Vec<Unit>, error: &StoreError) {
    for unit in batch.drain(..) {
        let message = format!("audit log unavailable: {error}; nothing was released");
        // History lost or rewritten is DATA_LOSS, not a fault to wait out.
        let refusal = if history_lost(error) {
            Error::Integrity(message)
        } else {
            Error::Unavailable(message)
        };
        let _ = unit.reply.send(Err(refusal));
    }
}

/// What the writer thread writes with.
struct Writing {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    key: LogKey,
    max_batch: usize,
}

/// What the writer thread shares with its handles.
struct Shared {
    healthy: Arc<AtomicBool>,
    committing: Committing,
    verified: Arc<Mutex<ChainPosition>>,
    authority: Arc<AuthorityView>,
    records: Arc<RecordView>,
    breach: Breach,
}

impl Shared {
    fn verified(&self, head: ChainHead) {
        *self.verified.lock().unwrap_or_else(|e| e.into_inner()) = head.position();
    }
}

/// Answers a [`Message::Check`]: verifies the store's head from `head`. While the writer waits
/// to retry after a failure, the answer is that failure.
fn check_head(
    writing: &Writing,
    head: &mut ChainHead,
    recovery: &mut Recovery,
    shared: &Shared,
) -> Result<(), StoreError> {
    if let Some(error) = breach_of(&shared.breach) {
        recovery.failed(&error, 0);
        return Err(error);
    }
    if recovery.failing_since.is_some() && Instant::now() < recovery.next_attempt {
        return Err(recovery
            .last_error
            .clone()
            .unwrap_or_else(|| StoreError::Io("recovering from an earlier error".into())));
    }
    let verified = writing.store.reader().and_then(|reader| {
        let (reread, named) = head_in(reader.as_ref(), *head, &writing.key, &shared.records)?;
        Ok((reader, reread, named))
    });
    let (reader, reread, named) = match verified {
        Ok(verified) => verified,
        Err(error) => {
            recovery.failed(&error, 0);
            return Err(error);
        }
    };
    *head = reread;
    shared.verified(reread);
    // The same state: the rows must be what the log names (hashed again now and then even
    // when it names no change, so a row put back is found without a call; always while a
    // failure is to be cleared).
    let force = recovery.failing_since.is_some();
    let refreshed = shared
        .authority
        .refresh(reader.as_ref(), &writing.key, named, force)
        .and_then(|_| shared.records.check_suspects(reader.as_ref()));
    drop(reader);
    if let Err(error) = refreshed {
        broken(writing, head, shared, &error, recovery);
        return Err(error);
    }
    // A store that reads well again but could not commit is left to the next commit.
    if recovery.last_error.as_ref().is_none_or(history_lost) {
        recovery.succeeded();
    }
    Ok(())
}

/// Keeps the authority view current after a commit from `before` to `after`: advanced when the
/// log names no change since, else refreshed from the store (whose rows must hash to what the
/// log names).
fn follow_authority(
    writing: &Writing,
    shared: &Shared,
    before: ChainPosition,
    after: ChainPosition,
    named: Option<NamedDigest>,
) -> Result<(), StoreError> {
    if named.is_none() && shared.authority.advance(before, after) {
        return Ok(());
    }
    let reader = writing.store.reader()?;
    shared
        .authority
        .refresh(reader.as_ref(), &writing.key, named, false)
        .map(|_| ())
}

/// Puts the writer in the failed state for `error` (a store found tampered with by a call or a
/// check): every call is refused with it and health says NOT_SERVING until a check passes.
/// Rows that are not what the log names leave the log itself intact, so an `ALERT` entry
/// records it first (a log that was rewritten takes none: it would chain onto the forgery).
fn broken(
    writing: &Writing,
    head: &mut ChainHead,
    shared: &Shared,
    error: &StoreError,
    recovery: &mut Recovery,
) {
    if recovery.failing_since.is_none() && matches!(error, StoreError::Tampered { .. }) {
        let mut entry = AuditEntry {
            operator: "system".into(),
            role: "system".into(),
            action: Action::Alert.as_str().into(),
            ..AuditEntry::default()
        };
        entry.fail(&Error::from(error.clone()));
        // A record found tampered with is named, so every daemon checks it (see `head_in`).
        if let Some(handle) = crate::audit::records::tampered_record(error) {
            entry.handle = handle.to_string();
        }
        let mut alert = vec![note_unit(entry)];
        let mut optimistic = false;
        match commit_batch(
            writing.store.as_ref(),
            writing.clock.as_ref(),
            &writing.key,
            *head,
            &mut alert,
            &mut optimistic,
            shared,
        ) {
            Ok((new_head, _, _)) => {
                *head = new_head;
                shared.verified(new_head);
            }
            Err(failure) => tracing::error!(%failure, "the tampering alert could not be recorded"),
        }
    }
    recovery.failed(error, 0);
}

fn answer_checks(
    checks: &mut Vec<oneshot::Sender<Result<(), StoreError>>>,
    result: Result<(), StoreError>,
) {
    for reply in checks.drain(..) {
        let _ = reply.send(result.clone());
    }
}

fn run(
    writing: Writing,
    mut receiver: mpsc::Receiver<Message>,
    mut head: ChainHead,
    shared: Shared,
    recovery_pause: Duration,
) {
    let Writing {
        ref store,
        ref clock,
        ref key,
        max_batch,
    } = writing;
    let mut batch = Vec::with_capacity(max_batch);
    let mut checks: Vec<oneshot::Sender<Result<(), StoreError>>> = Vec::new();
    let mut stopping = false;
    let mut recovery = Recovery::new(Arc::clone(&shared.healthy), recovery_pause);
    // Whether the next batch may assume the head is where this writer left it.
    let mut optimistic = true;
    // Notes that a committed result never reached its caller, committed with the next batch.
    let mut notes: Vec<Unit> = Vec::new();
    while !stopping {
        if notes.is_empty() {
            match receiver.blocking_recv() {
                Some(Message::Unit(unit)) => batch.push(unit),
                Some(Message::Check(reply)) => {
                    let _ = reply.send(check_head(&writing, &mut head, &mut recovery, &shared));
                    continue;
                }
                Some(Message::Broken(error)) => {
                    broken(&writing, &mut head, &shared, &error, &mut recovery);
                    continue;
                }
                Some(Message::Stop) | None => break,
            }
        } else {
            batch.append(&mut notes);
        }
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(Message::Unit(unit)) => batch.push(unit),
                // Answered by this batch's commit, which verifies the head as much.
                Ok(Message::Check(reply)) => checks.push(reply),
                Ok(Message::Broken(error)) => {
                    broken(&writing, &mut head, &shared, &error, &mut recovery);
                }
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if let Some(error) = breach_of(&shared.breach) {
            let refused = batch.len();
            refuse_all(&mut batch, &error);
            answer_checks(&mut checks, Err(error.clone()));
            recovery.failed(&error, refused);
            continue;
        }
        if recovery.failing_since.is_some() {
            // Calls that arrive before the next attempt are refused at once rather than left
            // to wait out their timeout.
            if Instant::now() < recovery.next_attempt {
                let error = match &recovery.last_error {
                    // A store that lost or rewrote history stays that: say so, not "busy".
                    Some(error) if history_lost(error) => error.clone(),
                    _ => StoreError::Io("recovering from an earlier error".into()),
                };
                recovery.refused += batch.len() as u64;
                refuse_all(&mut batch, &error);
                answer_checks(&mut checks, Err(error));
                continue;
            }
            // Reopen the store and read the head again (it is what the store holds, not what
            // this thread remembers), verified from what this writer verified last.
            match store.recover().and_then(|()| {
                let reader = store.reader()?;
                let (reread, named) = head_in(reader.as_ref(), head, key, &shared.records)?;
                shared
                    .authority
                    .refresh(reader.as_ref(), key, named, true)?;
                shared.records.check_suspects(reader.as_ref())?;
                Ok(reread)
            }) {
                Ok(reread) => {
                    head = reread;
                    shared.verified(head);
                }
                Err(error) => {
                    let refused = batch.len();
                    refuse_all(&mut batch, &error);
                    answer_checks(&mut checks, Err(error.clone()));
                    recovery.failed(&error, refused);
                    continue;
                }
            }
        }
        // A panic while applying a mutation refuses the batch like a failed commit: the writer,
        // and with it the locker, stays up.
        let metrics = crate::metrics::metrics();
        metrics.writer_queue.set(receiver.len() as i64);
        metrics.commit_batch.observe(batch.len() as f64);
        let started = Instant::now();
        *shared.committing.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
        let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit_batch(
                store.as_ref(),
                clock.as_ref(),
                key,
                head,
                &mut batch,
                &mut optimistic,
                &shared,
            )
        }))
        .unwrap_or_else(|_| {
            Err(StoreError::Corrupt(
                "the audit writer failed while applying the batch (panic)".into(),
            ))
        });
        *shared.committing.lock().unwrap_or_else(|e| e.into_inner()) = None;
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match committed {
            Ok((new_head, results, named)) => {
                let before = head.position();
                head = new_head;
                shared.verified(head);
                match follow_authority(&writing, &shared, before, head.position(), named) {
                    Ok(()) => {
                        recovery.succeeded();
                        answer_checks(&mut checks, Ok(()));
                    }
                    // Committed, and answered below; every later call is refused.
                    Err(error) => {
                        answer_checks(&mut checks, Err(error.clone()));
                        broken(&writing, &mut head, &shared, &error, &mut recovery);
                    }
                }
                for (unit, (result, committed)) in batch.drain(..).zip(results) {
                    // A caller gone since the writer took its unit: the entry stands, and a
                    // note says its result was not delivered.
                    // Only a result that was applied can go undelivered (not an abandoned
                    // call, nor a note itself).
                    let applied = committed.as_ref().is_some_and(|(_, entry)| {
                        entry.outcome != Outcome::Undelivered.as_str()
                            && entry.outcome != Outcome::Abandoned.as_str()
                    });
                    if unit.reply.send(result).is_err()
                        && applied
                        && let Some((seq, entry)) = committed
                    {
                        notes.push(note_unit(undelivered(&entry, seq)));
                    }
                }
            }
            Err(error) => {
                let refused = batch.len();
                refuse_all(&mut batch, &error);
                answer_checks(&mut checks, Err(error.clone()));
                if matches!(error, StoreError::Tampered { .. }) {
                    // A row read in the transaction is not what the log names: recorded as
                    // an ALERT, and every call refused until it is right again.
                    recovery.refused += refused as u64;
                    broken(&writing, &mut head, &shared, &error, &mut recovery);
                } else {
                    recovery.failed(&error, refused);
                }
            }
        }
    }
    answer_checks(&mut checks, Ok(()));
    // Closing the queue makes every later submit fail at once instead of waiting its timeout.
    receiver.close();
    tracing::debug!("audit writer drained and stopped");
}

/// What a unit's commit produced: its result for the caller, and its committed entry (with
/// its sequence number) if it had one.
type Committed = (Result<MutationOutcome, Error>, Option<(u64, AuditEntry)>);

/// A batch committed: the new head, each unit's result, and the newest authority digest the
/// entries verified or committed name (with its entry).
type BatchCommitted = (ChainHead, Vec<Committed>, Option<NamedDigest>);

/// Commits `batch` after entry `known`, the last this writer committed. Where the store offers
/// it and nobody else appended lately (`optimistic`), the transaction assumes the head is still
/// `known` and the store checks that on its first contact — one round trip for the batch on a
/// server database; if another daemon moved the head, the batch is applied again in a
/// transaction that locks and reads the head first.
fn commit_batch(
    store: &dyn Store,
    clock: &dyn Clock,
    key: &LogKey,
    known: ChainHead,
    batch: &mut [Unit],
    optimistic: &mut bool,
    shared: &Shared,
) -> Result<BatchCommitted, StoreError> {
    let (authority, records) = (shared.authority.as_ref(), shared.records.as_ref());
    if *optimistic && let Some(txn) = store.optimistic_writer(known.seq, &known.hash)? {
        let saved: Vec<(Mutation, Option<AuditEntry>)> = batch
            .iter()
            .map(|unit| (unit.mutation.clone(), unit.entry.clone()))
            .collect();
        match apply_batch(txn, clock, key, known, batch, authority, records) {
            Err(StoreError::HeadMoved) => {
                *optimistic = false;
                for (unit, (mutation, entry)) in batch.iter_mut().zip(saved) {
                    unit.mutation = mutation;
                    unit.entry = entry;
                }
            }
            other => return other,
        }
    }
    let txn = store.writer()?;
    let (head, others) = head_in(txn.as_ref(), known, key, records)?;
    // Nobody else appended since this writer's last commit: try the short way next time.
    *optimistic = head.seq == known.seq;
    // Another daemon changed authority rows: the calls of this batch are checked against
    // them, so the view takes them in first (rows read in this transaction, which must hash
    // to the digest the entries name).
    if others.is_some() {
        authority.refresh(txn.as_ref(), key, others, false)?;
    }
    let (head, results, own) = apply_batch(txn, clock, key, head, batch, authority, records)?;
    Ok((head, results, own.or(others)))
}

/// Applies the units of `batch` in `txn` (its record and index reads checked against
/// `records`), chains their entries after `head`, and commits. Each entry names the record and
/// index changes of its call; when the batch changed an authority row or a record, its last
/// entry names the digest after it.
fn apply_batch(
    txn: Box<dyn crate::store::StoreWrite + '_>,
    clock: &dyn Clock,
    key: &LogKey,
    mut head: ChainHead,
    batch: &mut [Unit],
    view: &AuthorityView,
    records: &RecordView,
) -> Result<BatchCommitted, StoreError> {
    // The authority as the log says it is where this batch lands (the view follows the
    // entries before it, and this batch's own changes are not yet applied): the tables must
    // hash to its digest before the batch reads or writes a row of them.
    let now = view.snapshot();
    let mut txn = CheckedTxn::new(txn, records, (now.digest, now.changed_at));
    let mut applied = Vec::with_capacity(batch.len());
    // Changes of units without an entry (none today) are named on the batch's last entry.
    let mut unnamed: Vec<std::ops::Range<usize>> = Vec::new();
    for unit in batch.iter_mut() {
        let mutation = std::mem::replace(&mut unit.mutation, Mutation::None);
        let taken = unit.take();
        let still = unit
            .decided
            .as_ref()
            .map_or(Ok(()), |decided| decided.still_holds(&now));
        let result = if !taken {
            Err(Error::Unavailable(
                "the call was abandoned before it was committed".into(),
            ))
        } else if let Err(refusal) = still {
            Err(refusal)
        } else if let Mutation::Expect(expected) = &mutation {
            txn.expect(expected)?.map(|()| MutationOutcome::Done)
        } else {
            mutation.apply(&mut txn)?
        };
        let changes = txn.changes_since_last();
        let entry = unit.entry.take().map(|mut entry| {
            match &result {
                _ if !taken => entry.abandon(),
                Ok(MutationOutcome::Existing(handle)) => {
                    entry.handle = handle.to_string();
                    entry.reason =
                        "number already held by this tenant: existing handle returned".into();
                }
                Ok(MutationOutcome::Inserted(handle)) => entry.handle = handle.to_string(),
                Ok(_) => {}
                Err(error) => entry.fail(error),
            }
            entry
        });
        match entry {
            Some(_) => applied.push((result, entry, changes)),
            None => {
                if !changes.is_empty() {
                    unnamed.push(changes);
                }
                applied.push((result, None, 0..0));
            }
        }
    }
    let authority = if txn.authority_changed() {
        Some(txn.authority_digest()?)
    } else {
        None
    };
    let all_changes = txn.take_all_changes();
    let records_digest = (!all_changes.is_empty()).then(|| records.digest_after(&all_changes));
    let last_entry = applied.iter().rposition(|(_, entry, _)| entry.is_some());
    let mut named = None;
    let mut results = Vec::with_capacity(applied.len());
    let mut rows = Vec::with_capacity(applied.len());
    for (index, (result, entry, changes)) in applied.into_iter().enumerate() {
        let Some(mut entry) = entry else {
            results.push((result, None));
            continue;
        };
        // Wall clocks step backwards; the log's times never do.
        head.time_ms = clock.now_ms().max(head.time_ms);
        head.seq += 1;
        entry.seq = head.seq;
        entry.time_ms = head.time_ms;
        let last = Some(index) == last_entry;
        let mut changes = std::borrow::Cow::Borrowed(&all_changes[changes]);
        if last {
            for range in unnamed.drain(..) {
                changes.to_mut().extend_from_slice(&all_changes[range]);
            }
            if let Some(digest) = authority {
                named = Some((head.seq, digest));
            }
        }
        entry.state = StateField::field_of(
            &changes,
            records_digest.as_ref().filter(|_| last),
            authority.as_ref().filter(|_| last),
        );
        let chained = ChainedEntry::new(entry, head.hash).authenticate(key);
        rows.push((head.seq, chained.to_row()));
        head.hash = chained.hash;
        results.push((result, Some((head.seq, chained.entry))));
    }
    if !unnamed.is_empty() {
        return Err(StoreError::Corrupt(
            "records changed in a commit without an audit entry to name them".into(),
        ));
    }
    txn.append_audit_rows(&rows)?;
    // Every commit that changes an authority row records their state as of its last entry,
    // authenticated: a row later restored from an older copy no longer matches. (Records need
    // no such row: their digest is in the entries, and checkpoints sign it.)
    if let Some(digest) = authority {
        txn.put_authority_state(&AuthorityState {
            seq: head.seq,
            hash: head.hash,
            digest,
        })?;
    }
    Box::new(txn).commit()?;
    records.committed(&all_changes, head.seq, records_digest);
    Ok((head, results, named))
}
