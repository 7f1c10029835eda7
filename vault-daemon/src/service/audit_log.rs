//! Reading the audit log: tail, export and chain verification. Managers see only the entries
//! of tenants they hold grants on; admins and auditors see everything.

use std::sync::Arc;

use vault_audit::checkpoint::Checkpoint;
use vault_audit::statement::AnchorStatement;

use crate::audit::checkpointer::key_note;
use crate::audit::entry::ChainedEntry;
use crate::audit::entry::EntryOutcome;
use crate::audit::verify::{ChainVerifier, VerifyReport};
use crate::domain::audit_key::AuditKeyRecord;
use crate::domain::operator::Role;
use crate::domain::policy::Action;
use crate::error::{Error, Result};
use crate::service::{Caller, Locker, RequestContext, invalid};
use crate::store::Store;
use crate::store::mutation::Mutation;

const PAGE: usize = 1000;
const MAX_TAIL: usize = 10_000;

/// Which entries a caller may read.
#[derive(Clone)]
pub(super) enum Visibility {
    All,
    Tenants(Vec<String>),
}

impl Visibility {
    pub(super) fn of(caller: &Caller) -> Visibility {
        if caller.operator.role == Role::Manager {
            let mut tenants: Vec<String> = caller
                .operator
                .grants
                .iter()
                .map(|g| g.tenant.clone())
                .collect();
            tenants.dedup();
            Visibility::Tenants(tenants)
        } else {
            Visibility::All
        }
    }

    /// Whether the caller may see `tenant`'s records.
    pub(super) fn shows_tenant(&self, tenant: &str) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Tenants(tenants) => tenants.iter().any(|t| t == tenant),
        }
    }

    fn shows(&self, entry: &ChainedEntry) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Tenants(tenants) => tenants.contains(&entry.entry.tenant),
        }
    }
}

pub(super) fn parse_rows(
    rows: Vec<(u64, Vec<u8>)>,
    visibility: &Visibility,
) -> Result<Vec<ChainedEntry>> {
    let mut out = Vec::with_capacity(rows.len());
    for (seq, row) in rows {
        let entry = ChainedEntry::from_row(&row)
            .map_err(|e| Error::Integrity(format!("audit entry {seq} is unreadable: {e}")))?;
        if visibility.shows(&entry) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Which entries an export sends (beyond what the caller may see at all).
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Only these actions; all when empty.
    pub actions: Vec<Action>,
    /// Only entries at or after this time (ms); 0 for no bound.
    pub from_ms: i64,
    /// Only entries before this time (ms); 0 for no bound.
    pub to_ms: i64,
}

impl ExportFilter {
    /// The filter of a request: action names as in entries, times in ms since the epoch.
    pub fn parse(actions: &[String], from_ms: i64, to_ms: i64) -> Result<ExportFilter> {
        let actions = actions
            .iter()
            .map(|name| {
                Action::from_name(name)
                    .ok_or_else(|| invalid(format!("actions: {name:?} is not an audit action")))
            })
            .collect::<Result<Vec<_>>>()?;
        if from_ms < 0 || to_ms < 0 {
            return Err(invalid(
                "from_unix_ms and to_unix_ms must be 0 or after the epoch",
            ));
        }
        if from_ms > 0 && to_ms > 0 && from_ms >= to_ms {
            return Err(invalid(
                "the period is empty: from_unix_ms must be before to_unix_ms",
            ));
        }
        Ok(ExportFilter {
            actions,
            from_ms,
            to_ms,
        })
    }

    /// Whether the export sends `entry`.
    fn passes(&self, entry: &ChainedEntry) -> bool {
        let entry = &entry.entry;
        (self.actions.is_empty() || self.actions.iter().any(|a| a.as_str() == entry.action))
            && (self.from_ms == 0 || entry.time_ms >= self.from_ms)
            && (self.to_ms == 0 || entry.time_ms < self.to_ms)
    }

    /// Whether it leaves anything out.
    fn is_filtering(&self) -> bool {
        !self.actions.is_empty() || self.from_ms != 0 || self.to_ms != 0
    }
}

/// Pages of an export, read after the export call itself was audited.
pub struct AuditPages {
    store: Arc<dyn Store>,
    after: u64,
    visibility: Visibility,
    filter: ExportFilter,
    done: bool,
}

impl AuditPages {
    /// The next page of visible entries, or an empty page at the end.
    pub fn next_page(&mut self) -> Result<Vec<ChainedEntry>> {
        while !self.done {
            let rows = self.store.reader()?.audit_after(self.after, PAGE)?;
            if rows.len() < PAGE {
                self.done = true;
            }
            let Some((last, _)) = rows.last() else {
                break;
            };
            self.after = *last;
            let mut page = parse_rows(rows, &self.visibility)?;
            page.retain(|entry| self.filter.passes(entry));
            if !page.is_empty() {
                return Ok(page);
            }
        }
        Ok(Vec::new())
    }
}

impl Locker {
    /// The newest `limit` entries the caller may see (before this call's own entry).
    pub async fn audit_tail(&self, ctx: &RequestContext, limit: u32) -> Result<Vec<ChainedEntry>> {
        let (caller, entry) = self.begin(ctx, Action::AuditTail).await?;
        let limit = (limit as usize).clamp(1, MAX_TAIL);
        let visibility = Visibility::of(&caller);
        let body = (|| {
            let rows = self.store.reader()?.audit_tail(match visibility {
                Visibility::All => limit,
                Visibility::Tenants(_) => MAX_TAIL,
            })?;
            let mut entries = parse_rows(rows, &visibility)?;
            let skip = entries.len().saturating_sub(limit);
            entries.drain(..skip);
            Ok((entries, Mutation::None))
        })();
        self.finish(entry, body).await.map(|(e, _)| e)
    }

    /// Starts an export of entries after `after_seq`; `filter` (checked here, refused as
    /// invalid input before anything is read) narrows it to some actions or a period.
    pub async fn audit_export(
        &self,
        ctx: &RequestContext,
        after_seq: u64,
        filter: Result<ExportFilter>,
    ) -> Result<AuditPages> {
        let (caller, mut entry) = self.begin(ctx, Action::AuditExport).await?;
        let body = filter.map(|filter| {
            if filter.is_filtering() {
                let actions: Vec<&str> = filter.actions.iter().map(|a| a.as_str()).collect();
                entry.allow(format!(
                    "export after entry {after_seq}, filtered: actions [{}], from {} to {} (ms)",
                    actions.join(" "),
                    filter.from_ms,
                    filter.to_ms
                ));
            }
            let pages = AuditPages {
                store: Arc::clone(&self.store),
                after: after_seq,
                visibility: Visibility::of(&caller),
                filter,
                done: false,
            };
            (pages, Mutation::None)
        });
        self.finish(entry, body).await.map(|(p, _)| p)
    }

    /// Starts an online backup (admins): the call is audited first, so the snapshot, taken
    /// right after, holds its own BACKUP entry. The snapshot is read on a blocking thread and
    /// handed out in chunks of at most [`BACKUP_CHUNK`] bytes, as fast as they are taken.
    pub async fn backup(&self, ctx: &RequestContext) -> Result<BackupChunks> {
        let (_caller, mut entry) = self.begin(ctx, Action::Backup).await?;
        entry.allow("online backup: every row, from one read transaction");
        let taken_at_ms = self.now_ms();
        self.finish(entry, Ok(((), Mutation::None))).await?;
        // A checkpoint over the BACKUP entry first, so the snapshot carries its own anchor
        // point; if none can be signed now, the snapshot is still taken (its restore signs one).
        if let Err(error) = self.checkpointer.checkpoint_now().await {
            tracing::warn!(%error, "no checkpoint before the backup; the snapshot ends unanchored");
        }
        Ok(stream_snapshot(Arc::clone(&self.store), taken_at_ms))
    }

    /// Verifies the whole chain and its checkpoints as stored.
    pub async fn audit_verify(&self, ctx: &RequestContext) -> Result<StoreVerification> {
        let (_caller, mut entry) = self.begin(ctx, Action::AuditVerify).await?;
        let store = Arc::clone(&self.store);
        let report = tokio::task::spawn_blocking(move || verify_store(store.as_ref()))
            .await
            .map_err(|_| Error::Internal("verification task failed".into()))
            .and_then(|r| r);
        if let Ok(report) = &report {
            entry.allow(report.chain.message.clone());
        }
        self.finish(entry, report.map(|r| (r, Mutation::None)))
            .await
            .map(|(r, _)| r)
    }
}

/// The chain report plus what the signed checkpoints anchor.
#[derive(Debug, Clone)]
pub struct StoreVerification {
    /// The hash chain.
    pub chain: VerifyReport,
    /// Checkpoints whose signature and hash verified.
    pub checkpoints_verified: u64,
    /// Highest entry anchored by a verified checkpoint.
    pub anchored_through: u64,
}

impl Locker {
    /// Every audit signing key version (public parts).
    pub async fn audit_public_keys(&self, ctx: &RequestContext) -> Result<Vec<AuditKeyRecord>> {
        let (_caller, entry) = self.begin(ctx, Action::AuditKeys).await?;
        let body = self
            .store
            .reader()
            .and_then(|r| r.audit_keys())
            .map_err(Error::from);
        self.finish(entry, body.map(|k| (k, Mutation::None)))
            .await
            .map(|(k, _)| k)
    }

    /// Rotates the audit signing key: a new version signs checkpoints from now on; old
    /// versions stay, so history signed with them stays verifiable.
    pub async fn rotate_audit_key(&self, ctx: &RequestContext) -> Result<AuditKeyRecord> {
        let (_caller, mut entry) = self.begin(ctx, Action::AuditKeyRotate).await?;
        // Anchor what the old key covers before the new one takes over.
        let body = match self.checkpointer.checkpoint_now().await {
            Ok(_) => self.checkpointer.prepare_key().await,
            Err(error) => Err(error),
        }
        .map(|record| {
            entry.allow(key_note("audit key rotated", &record));
            (record.clone(), Mutation::AddAuditKey(record))
        });
        self.finish(entry, body).await.map(|(record, _)| record)
    }

    /// All checkpoints after `after_seq` (an export takes them with the entries).
    pub async fn audit_checkpoints(
        &self,
        ctx: &RequestContext,
        after_seq: u64,
    ) -> Result<(Vec<Checkpoint>, Option<AnchorStatement>)> {
        let (_caller, entry) = self.begin(ctx, Action::AuditCheckpoints).await?;
        // Read before the list: the checkpoint it names is stored before it is anchored, so
        // the list holds it unless the store lost it.
        let statement = match self.checkpointer.anchor_statement().await {
            Ok(statement) => statement,
            Err(error) => return Err(self.refuse(entry, error).await),
        };
        let body = (|| {
            let mut out = Vec::new();
            let mut after = after_seq;
            loop {
                let page = self.store.reader()?.checkpoints_after(after, PAGE)?;
                let done = page.len() < PAGE;
                if let Some(last) = page.last() {
                    after = last.seq;
                }
                out.extend(page);
                if done {
                    return Ok((out, Mutation::None));
                }
            }
        })();
        self.finish(entry, body)
            .await
            .map(|(checkpoints, _)| (checkpoints, statement))
    }
}

/// Verifies every stored audit row in order, then the audit keys (each endorsed by the one
/// before), then every checkpoint: that it follows the one before (numbered, linked), its
/// signature under the audit key it names, and that it matches the stored entry it covers.
/// Entries of the authenticated format must carry a MAC under the log key.
pub fn verify_store(store: &dyn Store) -> Result<StoreVerification> {
    let mut verifier = ChainVerifier::with_log_key(store.sealer().log_key()?);
    let mut after = 0;
    let chain = loop {
        let rows = store.reader()?.audit_after(after, PAGE)?;
        let full = rows.len() == PAGE;
        let mut broken = false;
        for (seq, row) in &rows {
            if !verifier.feed(*seq, row) {
                broken = true;
                break;
            }
            after = *seq;
        }
        if broken || !full {
            break verifier.finish();
        }
    };
    let mut result = StoreVerification {
        chain,
        checkpoints_verified: 0,
        anchored_through: 0,
    };
    if !result.chain.ok {
        return Ok(result);
    }
    let keys = store.reader()?.audit_keys()?;
    if let Err(error) = crate::audit::integrity::verify_key_chain(&keys) {
        result.chain.ok = false;
        result.chain.message = error.to_string();
        return Ok(result);
    }
    let mut after = 0;
    let mut previous: Option<vault_audit::checkpoint::Checkpoint> = None;
    loop {
        let checkpoints = store.reader()?.checkpoints_after(after, PAGE)?;
        for checkpoint in &checkpoints {
            after = checkpoint.seq;
            if !checkpoint.follows(previous.as_ref()) {
                result.chain.ok = false;
                result.chain.first_bad_seq = Some(checkpoint.seq);
                result.chain.message = format!(
                    "checkpoint {} is missing, reordered or replaced (found checkpoint {} at entry {})",
                    previous.as_ref().map_or(1, |p| p.number + 1),
                    checkpoint.number,
                    checkpoint.seq
                );
                return Ok(result);
            }
            previous = Some(checkpoint.clone());
            let key = keys
                .iter()
                .find(|k| hex::encode(k.key_id) == checkpoint.key_id);
            let signed = key.is_some_and(|k| checkpoint.verify_signature(&k.public_point));
            let stored = store
                .reader()?
                .audit_after(checkpoint.seq - 1, 1)?
                .into_iter()
                .next()
                .filter(|(seq, _)| *seq == checkpoint.seq)
                .and_then(|(_, row)| ChainedEntry::from_row(&row).ok());
            let matches = stored.is_some_and(|e| hex::encode(e.hash) == checkpoint.chain_hash);
            if !(signed && matches) {
                result.chain.ok = false;
                result.chain.first_bad_seq = Some(checkpoint.seq);
                result.chain.message = if signed {
                    format!(
                        "checkpoint {} does not match entry {}",
                        checkpoint.seq, checkpoint.seq
                    )
                } else {
                    format!("checkpoint {}: signature does not verify", checkpoint.seq)
                };
                return Ok(result);
            }
            result.checkpoints_verified += 1;
            result.anchored_through = checkpoint.seq;
        }
        if checkpoints.len() < PAGE {
            break;
        }
    }
    result.chain.message = format!(
        "{}; {} checkpoints verified, anchored through entry {}",
        result.chain.message, result.checkpoints_verified, result.anchored_through
    );
    Ok(result)
}

/// Largest chunk of a backup stream (under the default 64 KiB message limit).
pub const BACKUP_CHUNK: usize = 60 << 10;

/// The chunks of an online backup as the snapshot is read; an error ends it.
pub type BackupChunks = tokio::sync::mpsc::Receiver<Result<Vec<u8>>>;

/// Reads a snapshot of `store` on a blocking thread into chunks; stops when the receiver goes.
fn stream_snapshot(store: Arc<dyn Store>, taken_at_ms: i64) -> BackupChunks {
    let (sender, receiver) = tokio::sync::mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut pending: Vec<u8> = Vec::with_capacity(2 * BACKUP_CHUNK);
        let result = {
            let mut sink = |bytes: &[u8]| {
                pending.extend_from_slice(bytes);
                while pending.len() >= BACKUP_CHUNK {
                    let data: Vec<u8> = pending.drain(..BACKUP_CHUNK).collect();
                    if sender.blocking_send(Ok(data)).is_err() {
                        return false;
                    }
                }
                true
            };
            store.snapshot(&mut sink, taken_at_ms)
        };
        match result {
            Ok(summary) => {
                if !pending.is_empty() {
                    let _ = sender.blocking_send(Ok(pending));
                }
                tracing::info!(
                    rows = summary.rows,
                    bytes = summary.bytes,
                    head = summary.header.head_seq,
                    sha256 = %hex::encode(summary.digest),
                    "online backup streamed"
                );
            }
            Err(error) => {
                tracing::error!(%error, "online backup failed");
                let _ = sender.blocking_send(Err(error.into()));
            }
        }
    });
    receiver
}
