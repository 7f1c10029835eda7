//! Disposal (廃棄, 規程第32・36条): the scheduler that disposes of retired records on their
//! date, each with a deletion certificate (削除証明書) signed by the audit key, and destroys the
//! disposal-epoch keys whose period is over and whose records are all gone.

use std::collections::BTreeMap;

use vault_audit::certificate::DeletionCertificate;

use crate::audit::entry::{AuditEntry, EntryOutcome};
use crate::domain::handle::Handle;
use crate::domain::lifecycle::{
    self, DisposalQueueEntry, EpochKey, Retirement, epoch_label, format_date, jst_today,
};
use crate::domain::operator::Role;
use crate::domain::policy::Action;
use crate::domain::record::{Record, RecordStatus, Tombstone};
use crate::domain::tenant_info::TenantInfo;
use crate::error::{Error, Result};
use crate::keys::envelope;
use crate::keys::{KeyError, KeyRef};
use crate::service::{Locker, RequestContext};
use crate::store::mutation::{Expected, Mutation};

use super::invalid;

/// What one run of the disposal scheduler did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DisposalReport {
    /// Records disposed of.
    pub disposed: u64,
    /// Correction records purged after their year.
    pub corrections_purged: u64,
    /// Epoch keys destroyed, as `tenant/YYYY-MM`.
    pub epoch_keys_destroyed: Vec<String>,
}

impl Locker {
    /// Signs a deletion certificate for `record` with the active audit key.
    pub(super) async fn certify_disposal(
        &self,
        record: &Record,
        at_ms: i64,
        method: String,
        responsible: &str,
    ) -> Result<DeletionCertificate> {
        let key = self.store.reader()?.audit_keys()?.pop().ok_or_else(|| {
            Error::Unavailable("no audit signing key yet; nothing was disposed".into())
        })?;
        let mut certificate = DeletionCertificate {
            handle: record.handle.to_string(),
            tenant: record.tenant.clone(),
            subject_ref: record.subject_ref.clone(),
            disposed_at_ms: at_ms,
            method,
            responsible: responsible.to_owned(),
            key_version: key.version,
            key_id: hex::encode(key.key_id),
            signature: String::new(),
        };
        let payload = certificate.signed_payload(&key.key_id);
        let signature = self.keys.sign(KeyRef(key.key_ref.clone()), payload).await?;
        certificate.signature = hex::encode(signature);
        Ok(certificate)
    }

    /// Tenant `id`'s name and details (file kind and name, responsible person and
    /// department) as held now, for printing beside a signed record, which names the office
    /// rather than its id; empty when none were set or they cannot be read (the signed record
    /// stands without them).
    pub async fn tenant_for_print(&self, id: &str) -> (String, TenantInfo) {
        let empty = || TenantInfo {
            tenant: id.to_owned(),
            ..TenantInfo::default()
        };
        let Ok(view) = self.store.view() else {
            return (String::new(), empty());
        };
        let name = view.tenants().get(id).await.ok().flatten().map(|t| t.name);
        let info = view.tenant_info().get(id).await.ok().flatten();
        (name.unwrap_or_default(), info.unwrap_or_else(empty))
    }

    /// The deletion certificate of a disposed record.
    pub async fn deletion_certificate(
        &self,
        ctx: &RequestContext,
        handle: &str,
    ) -> Result<DeletionCertificate> {
        let (caller, mut entry) = self.begin(ctx, Action::CertificateRead).await?;
        let body = async {
            let handle = Handle::parse(handle).map_err(|e| invalid(e.to_string()))?;
            entry.handle = handle.to_string();
            self.record_in_scope(&caller, &handle, &mut entry).await?;
            let certificate = self
                .store
                .view()?
                .certificates()
                .get(handle.as_str())
                .await?
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "record {handle} has no deletion certificate (not disposed)"
                    ))
                })?;
            entry.allow("certificate read");
            Ok((certificate, Mutation::None))
        }
        .await;
        self.finish(entry, body)
            .await
            .map(|(certificate, _)| certificate)
    }

    /// Runs the disposal scheduler at an admin's request. In a cluster it runs where the
    /// disposal lease is (taking it if nobody holds it): two daemons never dispose at once.
    pub async fn run_disposal_now(&self, ctx: &RequestContext) -> Result<DisposalReport> {
        use crate::store::lease::{DISPOSAL, LEASE_TTL, holder_id};
        let (_caller, entry) = self.begin(ctx, Action::DisposalRun).await?;
        let body = match self.store.hold_lease(DISPOSAL, holder_id(), LEASE_TTL) {
            Ok(true) => self
                .run_disposal()
                .await
                .map(|report| (report, Mutation::None)),
            Ok(false) => Err(Error::Unavailable(
                "another daemon of the cluster holds the disposal lease and runs the disposal; ask that daemon, or let its schedule run".into(),
            )),
            Err(error) => Err(error.into()),
        };
        let mut entry = entry;
        if let Ok((report, _)) = &body {
            entry.allow(format!(
                "{} records disposed, {} epoch keys destroyed",
                report.disposed,
                report.epoch_keys_destroyed.len()
            ));
        }
        self.finish(entry, body).await.map(|(report, _)| report)
    }

    /// Disposes of every retired record whose date has come (each audited, each with a signed
    /// certificate), then destroys the epoch keys of months that are over and fully disposed.
    pub async fn run_disposal(&self) -> Result<DisposalReport> {
        let _one_at_a_time = self.disposal_lock.lock().await;
        let now = self.lifecycle_now_ms();
        let today = jst_today(now);
        let today_text = format_date(today);
        let mut report = DisposalReport::default();
        let due: Vec<DisposalQueueEntry> = self
            .store
            .reader()?
            .disposal_queue()?
            .into_iter()
            .filter(|e| e.dispose_on <= today_text)
            .collect();
        for item in due {
            if self.dispose_due(&item, now).await? {
                report.disposed += 1;
            }
        }
        report.corrections_purged = self.purge_corrections().await?;
        let queue = self.store.reader()?.disposal_queue()?;
        let due_keys: Vec<EpochKey> = self
            .store
            .reader()?
            .epoch_keys()?
            .into_iter()
            .filter(|key| {
                key.destroyed_at_ms.is_none()
                    && lifecycle::epoch_is_over(key.epoch, key.months, today)
                    && !queue
                        .iter()
                        .any(|q| q.tenant == key.tenant && q.epoch == key.epoch)
            })
            .collect();
        // The queue is only the scheduler's to-do list, and not authenticated: a key is
        // destroyed only when no record row, each checked against the log, is still sealed
        // under it (a record retired and held for a manager, say).
        let still_sealed = if due_keys.is_empty() {
            BTreeMap::new()
        } else {
            self.count_by_epoch().await?
        };
        for key in due_keys {
            if still_sealed.contains_key(&(key.tenant.clone(), key.epoch)) {
                continue;
            }
            if !self.destroy_epoch_key(&key, now).await? {
                continue;
            }
            report
                .epoch_keys_destroyed
                .push(format!("{}/{}", key.tenant, epoch_label(key.epoch)));
        }
        Ok(report)
    }

    async fn dispose_due(&self, item: &DisposalQueueEntry, now: i64) -> Result<bool> {
        let handle = Handle::parse(&item.handle)
            .map_err(|_| Error::Integrity("disposal queue holds a malformed handle".into()))?;
        let Some(record) = self.store.reader()?.record(&handle)? else {
            return Ok(false);
        };
        let RecordStatus::Retired(retirement) = &record.status else {
            return Ok(false);
        };
        if self.held_for_a_manager(retirement)? {
            tracing::warn!(
                handle = %handle,
                retired_by = %retirement.by,
                "record was past its disposal date when retired by a non-manager: not disposed until a manager disposes of it or unretires it"
            );
            return Ok(false);
        }
        let mut entry = AuditEntry {
            operator: "scheduler".into(),
            role: "system".into(),
            action: Action::ScheduledDispose.as_str().into(),
            tenant: record.tenant.clone(),
            handle: handle.to_string(),
            ..AuditEntry::default()
        };
        let reason = format!(
            "保存期間経過: left on {}, retention ended {}",
            retirement.left_on, retirement.dispose_on
        );
        let method = format!(
            "保存期間の経過により廃棄スケジューラが暗号文・ラップされたデータ鍵・ブラインドインデックスを削除（退職日 {}、保存期間満了 {}）。当月の記録がすべて廃棄された後、その月の廃棄鍵を破棄する",
            retirement.left_on, retirement.dispose_on
        );
        let certificate = self
            .certify_disposal(&record, now, method, "scheduler")
            .await?;
        entry.allow(format!("disposed: {reason}"));
        self.writer
            .submit(
                Mutation::DisposeRecord {
                    handle,
                    tombstone: Tombstone {
                        disposed_at_ms: now,
                        disposed_by: "scheduler".into(),
                        reason,
                    },
                    certificate: Box::new(certificate),
                },
                entry,
            )
            .await?;
        Ok(true)
    }

    /// Whether a retirement was already past its disposal date when made, by someone other
    /// than a manager: the scheduler never disposes of such a record by itself (a retirement
    /// must not be a way to destroy at once); a manager disposes of it or unretires it.
    fn held_for_a_manager(&self, retirement: &Retirement) -> Result<bool> {
        let due_at_retirement = format_date(jst_today(retirement.at_ms)) >= retirement.dispose_on;
        if !due_at_retirement {
            return Ok(false);
        }
        // The role as the log says it is (an operator row put back from an older copy, a
        // handler's made a manager's, decides nothing).
        let authority = self.writer.authority().snapshot();
        let role = authority.operator(&retirement.by).map(|op| op.role);
        Ok(role != Some(Role::Manager))
    }

    /// Records still sealed under each disposal-epoch key, by (tenant, epoch): every record
    /// row read and checked against the log.
    async fn count_by_epoch(&self) -> Result<BTreeMap<(String, u32), u64>> {
        let mut counts = BTreeMap::new();
        let mut scan = super::scan::RecordScan::default();
        scan.read_all(self, |record| {
            if let Some(sealed) = &record.sealed
                && sealed.format == envelope::FORMAT_EPOCH
            {
                *counts
                    .entry((record.tenant.clone(), sealed.key_version))
                    .or_insert(0) += 1;
            }
        })?;
        scan.settle(self).await?;
        Ok(counts)
    }

    /// Destroys `key` in the backend and records it; `false` when its row changed meanwhile
    /// (left for the next run).
    async fn destroy_epoch_key(&self, key: &EpochKey, now: i64) -> Result<bool> {
        // Nothing undoes a destroyed key: its row must be the one the log names.
        match self
            .writer
            .submit_unaudited(Mutation::Expect(vec![Expected::EpochKey(Box::new(
                key.clone(),
            ))]))
            .await
        {
            Ok(_) => {}
            Err(Error::Aborted(message)) => {
                tracing::info!(tenant = %key.tenant, epoch = key.epoch, %message, "epoch key destruction deferred");
                return Ok(false);
            }
            Err(error) => return Err(error),
        }
        match self.keys.destroy_key(KeyRef(key.kek.clone())).await {
            Ok(()) | Err(KeyError::Destroyed | KeyError::NotFound) => {}
            Err(error) => return Err(error.into()),
        }
        let mut entry = AuditEntry {
            operator: "scheduler".into(),
            role: "system".into(),
            action: Action::EpochKeyDestroy.as_str().into(),
            tenant: key.tenant.clone(),
            ..AuditEntry::default()
        };
        entry.allow(format!(
            "disposal-epoch key {} destroyed: its month is over and all its records are disposed of",
            epoch_label(key.epoch)
        ));
        self.writer
            .submit(
                Mutation::DestroyEpochKey {
                    tenant: key.tenant.clone(),
                    epoch: key.epoch,
                    now_ms: now,
                },
                entry,
            )
            .await?;
        Ok(true)
    }
}

/// Runs the disposal scheduler every `interval` until aborted. Failures (backend or audit down)
/// are logged and retried at the next tick: a record is disposed of late, never early and
/// never unaudited.
pub async fn run_disposal_schedule(locker: std::sync::Arc<Locker>, interval: std::time::Duration) {
    use crate::store::lease::{self, DutyLease, LeaseState};
    use tokio::time::{Instant, sleep};
    let lease = DutyLease::new(std::sync::Arc::clone(&locker.store), lease::DISPOSAL);
    let second = std::time::Duration::from_secs(1);
    let mut due = Instant::now();
    loop {
        // One daemon of a cluster runs the schedule. The lease is checked every second, so it
        // stays held through a long interval and a daemon taking it over runs at once.
        let state = lease.check();
        let taken_over = state == (LeaseState::Held { gained: true });
        if state == LeaseState::Elsewhere || (!taken_over && Instant::now() < due) {
            sleep(second).await;
            continue;
        }
        match locker.run_disposal().await {
            Ok(report) if report.disposed > 0 || !report.epoch_keys_destroyed.is_empty() => {
                tracing::info!(
                    disposed = report.disposed,
                    epoch_keys_destroyed = report.epoch_keys_destroyed.len(),
                    "disposal scheduler ran"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "disposal scheduler failed; will retry"),
        }
        due = Instant::now() + interval;
    }
}
