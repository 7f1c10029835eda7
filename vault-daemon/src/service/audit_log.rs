//! Reading the audit log: tail, export and chain verification. Managers see only the entries
//! of tenants they hold grants on; admins and auditors see everything.

use std::sync::Arc;

use crate::audit::entry::ChainedEntry;
use crate::audit::entry::EntryOutcome;
use crate::audit::verify::{ChainVerifier, VerifyReport};
use crate::domain::operator::Role;
use crate::domain::policy::Action;
use crate::error::{Error, Result};
use crate::service::{Caller, Locker, RequestContext};
use crate::store::Store;
use crate::store::mutation::Mutation;

const PAGE: usize = 1000;
const MAX_TAIL: usize = 10_000;

/// Which entries a caller may read.
#[derive(Clone)]
enum Visibility {
    All,
    Tenants(Vec<String>),
}

impl Visibility {
    fn of(caller: &Caller) -> Visibility {
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

    fn shows(&self, entry: &ChainedEntry) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Tenants(tenants) => tenants.contains(&entry.entry.tenant),
        }
    }
}

fn parse_rows(rows: Vec<(u64, Vec<u8>)>, visibility: &Visibility) -> Result<Vec<ChainedEntry>> {
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

/// Pages of an export, read after the export call itself was audited.
pub struct AuditPages {
    store: Arc<dyn Store>,
    after: u64,
    visibility: Visibility,
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
            let page = parse_rows(rows, &self.visibility)?;
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

    /// Starts an export of entries after `after_seq`.
    pub async fn audit_export(&self, ctx: &RequestContext, after_seq: u64) -> Result<AuditPages> {
        let (caller, entry) = self.begin(ctx, Action::AuditExport).await?;
        let pages = AuditPages {
            store: Arc::clone(&self.store),
            after: after_seq,
            visibility: Visibility::of(&caller),
            done: false,
        };
        self.finish(entry, Ok((pages, Mutation::None)))
            .await
            .map(|(p, _)| p)
    }

    /// Verifies the whole chain as stored.
    pub async fn audit_verify(&self, ctx: &RequestContext) -> Result<VerifyReport> {
        let (_caller, mut entry) = self.begin(ctx, Action::AuditVerify).await?;
        let store = Arc::clone(&self.store);
        let report = tokio::task::spawn_blocking(move || verify_store(store.as_ref()))
            .await
            .map_err(|_| Error::Internal("verification task failed".into()))
            .and_then(|r| r);
        if let Ok(report) = &report {
            entry.allow(report.message.clone());
        }
        self.finish(entry, report.map(|r| (r, Mutation::None)))
            .await
            .map(|(r, _)| r)
    }
}

/// Verifies every stored audit row in order.
pub fn verify_store(store: &dyn Store) -> Result<VerifyReport> {
    let mut verifier = ChainVerifier::default();
    let mut after = 0;
    loop {
        let rows = store.reader()?.audit_after(after, PAGE)?;
        let full = rows.len() == PAGE;
        for (seq, row) in &rows {
            if !verifier.feed(*seq, row) {
                return Ok(verifier.finish());
            }
            after = *seq;
        }
        if !full {
            return Ok(verifier.finish());
        }
    }
}
