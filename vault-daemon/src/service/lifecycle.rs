//! The end of a record's life (規程第32・36条): retirement with its disposal date, the disposal
//! scheduler with its signed deletion certificates (削除証明書), and the monthly disposal-epoch
//! keys that are destroyed once their records are gone.
//!
//! Lifecycle dates come from the locker's lifecycle clock (the system clock in production; a
//! test clock under `--dev --lifecycle-clock-file`), so tests run years in milliseconds.

use vault_audit::certificate::DeletionCertificate;

use super::invalid;
use crate::audit::entry::{AuditEntry, EntryOutcome};
use crate::domain::handle::Handle;
use crate::domain::lifecycle::{
    self, DisposalQueueEntry, EpochKey, Retirement, epoch_label, epoch_of, format_date, jst_today,
};
use crate::domain::number::IndividualNumber;
use crate::domain::operator::Tenant;
use crate::domain::policy::Action;
use crate::domain::record::{Record, RecordStatus, SealedNumber, Tombstone};
use crate::domain::text;
use crate::error::{Error, Result};
use crate::keys::envelope::{self, FORMAT_EPOCH, Wrapping};
use crate::keys::{KeyError, KeyRef, KeyUse};
use crate::service::{Caller, Locker, RequestContext};
use crate::store::mutation::{Mutation, MutationOutcome};

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

fn record_outcome(outcome: ((), MutationOutcome)) -> Result<Record> {
    match outcome {
        ((), MutationOutcome::Record(record)) => Ok(*record),
        (_, other) => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
    }
}

impl Locker {
    /// Now, on the lifecycle clock.
    pub(super) fn lifecycle_now_ms(&self) -> i64 {
        self.lifecycle_clock.now_ms()
    }

    /// The backend reference of the key that wraps `sealed`: a tenant key version, or a
    /// disposal-epoch key (refused once destroyed).
    pub(super) fn record_kek(&self, tenant: &Tenant, sealed: &SealedNumber) -> Result<Vec<u8>> {
        if sealed.format == FORMAT_EPOCH {
            let key = self
                .store
                .reader()?
                .epoch_key(&tenant.id, sealed.key_version)?
                .ok_or_else(|| {
                    Error::Integrity("record names a disposal-epoch key that does not exist".into())
                })?;
            if key.destroyed_at_ms.is_some() {
                return Err(Error::FailedPrecondition(format!(
                    "the disposal-epoch key {} protecting this record has been destroyed",
                    epoch_label(key.epoch)
                )));
            }
            return Ok(key.kek);
        }
        tenant
            .keys_of(sealed.key_version)
            .map(|keys| keys.kek.clone())
            .ok_or_else(|| {
                Error::Integrity(format!(
                    "record names key version {} which the tenant does not have",
                    sealed.key_version
                ))
            })
    }

    /// A retired record may still be used for `purpose` until that purpose's retention ends.
    pub(super) fn check_retained_use(&self, retirement: &Retirement, purpose: &str) -> Result<()> {
        if let Some(suspension) = &retirement.suspension {
            return Err(Error::FailedPrecondition(format!(
                "record is suspended (規程第49条): {}",
                suspension.reason
            )));
        }
        let left = lifecycle::parse_date("left_on", &retirement.left_on)
            .map_err(|_| Error::Integrity("stored retirement date is unreadable".into()))?;
        let years = self.purposes.get(purpose).map_or(0, |p| p.retention_years);
        let end = lifecycle::retention_end(left, years);
        if jst_today(self.lifecycle_now_ms()) >= end {
            return Err(Error::FailedPrecondition(format!(
                "the retention for {purpose} ended on {}; the record is kept only for its other purposes until {}",
                format_date(end),
                retirement.dispose_on
            )));
        }
        Ok(())
    }

    /// The number of `record`, opened under whatever key wraps it now.
    pub(super) async fn reopen(
        &self,
        tenant: &Tenant,
        record: &Record,
        sealed: &SealedNumber,
    ) -> Result<IndividualNumber> {
        let kek = self.record_kek(tenant, sealed)?;
        let digits = envelope::open_with(
            &self.keys,
            &kek,
            &record.handle,
            &record.tenant,
            &record.purposes,
            sealed,
        )
        .await?;
        IndividualNumber::parse(&digits).map_err(|_| {
            Error::Integrity(format!(
                "record {} does not hold a valid number",
                record.handle
            ))
        })
    }

    /// Records that the person of `handle` left on `left_on` (`YYYY-MM-DD`).
    pub async fn retire(
        &self,
        ctx: &RequestContext,
        handle: &str,
        left_on: &str,
    ) -> Result<Record> {
        let (caller, mut entry) = self.begin(ctx, Action::Retire).await?;
        // Serialises the get-or-create of epoch keys until the commit, so two retirements in
        // the same month never create two keys.
        let _epoch_guard = self.epoch_lock.lock().await;
        let body = self.retire_body(&caller, &mut entry, handle, left_on).await;
        record_outcome(self.finish(entry, body).await?)
    }

    async fn retire_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        handle: &str,
        left_on: &str,
    ) -> Result<((), Mutation)> {
        let handle = Handle::parse(handle).map_err(|e| invalid(e.to_string()))?;
        entry.handle = handle.to_string();
        let left = lifecycle::parse_date("left_on", left_on).map_err(|e| invalid(e.to_string()))?;
        let record = self.record_in_scope(caller, &handle, entry)?;
        let sealed = match (&record.status, &record.sealed) {
            (RecordStatus::Active, Some(sealed)) => sealed.clone(),
            (RecordStatus::Retired(r), _) => {
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} is already retired (left on {})",
                    r.left_on
                )));
            }
            (RecordStatus::Suspended(_), _) => {
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} is suspended; resume it before retiring it"
                )));
            }
            (RecordStatus::Disposed(_), _) => {
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} has been disposed"
                )));
            }
            (RecordStatus::Active, None) => {
                return Err(Error::Integrity(format!(
                    "record {handle} has no ciphertext"
                )));
            }
        };
        let now = self.lifecycle_now_ms();
        let today = jst_today(now);
        if left > lifecycle::add_years(today, 1) {
            return Err(invalid("left_on is more than a year ahead"));
        }
        let dispose_on = lifecycle::disposal_date(left, &record.purposes, &self.purposes);
        let tenant = self.load_tenant(&record.tenant)?;
        let number = self.reopen(&tenant, &record, &sealed).await?;
        // A record already past its date is due at once: it goes under this month's key,
        // never under a month whose key may be destroyed already.
        let epoch =
            lifecycle::epoch_start(epoch_of(dispose_on).max(epoch_of(today)), self.epoch_months);
        let existing = self.store.reader()?.epoch_key(&tenant.id, epoch)?;
        let (epoch_key, new_epoch_key) = match existing {
            Some(key) if key.destroyed_at_ms.is_none() => (key, None),
            Some(_) => {
                return Err(Error::Internal(format!(
                    "disposal epoch {} of tenant {} is closed",
                    epoch_label(epoch),
                    tenant.id
                )));
            }
            None => {
                let kek = self
                    .keys
                    .create_key(
                        KeyUse::Wrap,
                        format!("epoch/{}/{}", tenant.id, epoch_label(epoch)),
                    )
                    .await?;
                let key = EpochKey {
                    tenant: tenant.id.clone(),
                    epoch,
                    months: self.epoch_months,
                    kek: kek.0,
                    created_at_ms: now,
                    destroyed_at_ms: None,
                };
                (key.clone(), Some(key))
            }
        };
        let resealed = envelope::seal_with(
            &self.keys,
            &self.rng,
            Wrapping::epoch(&epoch_key),
            &record.handle,
            &record.tenant,
            &record.purposes,
            &number,
        )
        .await?;
        let mut updated = record.clone();
        updated.sealed = Some(resealed);
        updated.status = RecordStatus::Retired(Retirement {
            left_on: format_date(left),
            dispose_on: format_date(dispose_on),
            by: caller.operator.id.clone(),
            at_ms: now,
            suspension: None,
        });
        entry.allow(format!(
            "retired: left on {}, disposal on {} under epoch key {}",
            format_date(left),
            format_date(dispose_on),
            epoch_label(epoch)
        ));
        Ok((
            (),
            Mutation::RetireRecord {
                expected: sealed,
                updated: Box::new(updated),
                new_epoch_key,
            },
        ))
    }

    /// Undoes a retirement before the disposal date (managers; re-hired).
    pub async fn unretire(
        &self,
        ctx: &RequestContext,
        handle: &str,
        reason: &str,
    ) -> Result<Record> {
        let (caller, mut entry) = self.begin(ctx, Action::Unretire).await?;
        let body = self
            .unretire_body(&caller, &mut entry, handle, reason)
            .await;
        record_outcome(self.finish(entry, body).await?)
    }

    async fn unretire_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        handle: &str,
        reason: &str,
    ) -> Result<((), Mutation)> {
        let handle = Handle::parse(handle).map_err(|e| invalid(e.to_string()))?;
        entry.handle = handle.to_string();
        text::free_text("reason", reason, 1024, true).map_err(invalid)?;
        let record = self.record_in_scope(caller, &handle, entry)?;
        let (RecordStatus::Retired(retirement), Some(sealed)) = (&record.status, &record.sealed)
        else {
            return Err(Error::FailedPrecondition(format!(
                "record {handle} is not retired"
            )));
        };
        if format_date(jst_today(self.lifecycle_now_ms())) >= retirement.dispose_on {
            return Err(Error::FailedPrecondition(format!(
                "record {handle} reached its disposal date {}; it can no longer be reinstated",
                retirement.dispose_on
            )));
        }
        let tenant = self.load_tenant(&record.tenant)?;
        let number = self.reopen(&tenant, &record, sealed).await?;
        let active = tenant
            .active_keys()
            .ok_or_else(|| Error::Internal(format!("tenant {} has no active key", tenant.id)))?;
        let resealed = envelope::seal(
            &self.keys,
            &self.rng,
            active,
            &record.handle,
            &record.tenant,
            &record.purposes,
            &number,
        )
        .await?;
        let mut updated = record.clone();
        updated.sealed = Some(resealed);
        updated.status = match &retirement.suspension {
            Some(suspension) => RecordStatus::Suspended(suspension.clone()),
            None => RecordStatus::Active,
        };
        entry.allow(format!("retirement undone: {reason}"));
        Ok((
            (),
            Mutation::UnretireRecord {
                expected: sealed.clone(),
                updated: Box::new(updated),
            },
        ))
    }

    fn record_in_scope(
        &self,
        caller: &Caller,
        handle: &Handle,
        entry: &mut AuditEntry,
    ) -> Result<Record> {
        let record = self
            .store
            .reader()?
            .record(handle)?
            .ok_or_else(|| Error::NotFound(format!("no record {handle}")))?;
        entry.tenant = record.tenant.clone();
        super::require_scope(caller, &record.tenant)?;
        Ok(record)
    }

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

    /// The deletion certificate of a disposed record.
    pub async fn deletion_certificate(
        &self,
        ctx: &RequestContext,
        handle: &str,
    ) -> Result<DeletionCertificate> {
        let (caller, mut entry) = self.begin(ctx, Action::CertificateRead).await?;
        let body = (|| {
            let handle = Handle::parse(handle).map_err(|e| invalid(e.to_string()))?;
            entry.handle = handle.to_string();
            self.record_in_scope(&caller, &handle, &mut entry)?;
            let certificate = self.store.reader()?.certificate(&handle)?.ok_or_else(|| {
                Error::NotFound(format!(
                    "record {handle} has no deletion certificate (not disposed)"
                ))
            })?;
            entry.allow("certificate read");
            Ok((certificate, Mutation::None))
        })();
        self.finish(entry, body)
            .await
            .map(|(certificate, _)| certificate)
    }

    /// Runs the disposal scheduler at an admin's request.
    pub async fn run_disposal_now(&self, ctx: &RequestContext) -> Result<DisposalReport> {
        let (_caller, entry) = self.begin(ctx, Action::DisposalRun).await?;
        let body = self
            .run_disposal()
            .await
            .map(|report| (report, Mutation::None));
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
        let epoch_keys = self.store.reader()?.epoch_keys()?;
        for key in epoch_keys {
            let pending = queue
                .iter()
                .any(|q| q.tenant == key.tenant && q.epoch == key.epoch);
            if key.destroyed_at_ms.is_some()
                || pending
                || !lifecycle::epoch_is_over(key.epoch, key.months, today)
            {
                continue;
            }
            self.destroy_epoch_key(&key, now).await?;
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
            "ciphertext, wrapped data key and blind-index entry deleted by the disposal scheduler ({reason}); the disposal-epoch key is destroyed once its month's records are all disposed of"
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

    async fn destroy_epoch_key(&self, key: &EpochKey, now: i64) -> Result<()> {
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
        Ok(())
    }
}

/// Runs the disposal scheduler every `interval` until aborted. Failures (backend or audit down)
/// are logged and retried at the next tick: a record is disposed of late, never early and
/// never unaudited.
pub async fn run_disposal_schedule(locker: std::sync::Arc<Locker>, interval: std::time::Duration) {
    loop {
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
        tokio::time::sleep(interval).await;
    }
}
