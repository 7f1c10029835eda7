//! Retirement (規程第32条): the person left, the record is kept for the purposes whose retention
//! runs, re-sealed under the disposal-epoch key of its disposal date, and queued for the
//! disposal scheduler (`disposal`); re-hire undoes it before the date.
//!
//! Lifecycle dates come from the locker's lifecycle clock (the system clock in production; a
//! test clock under `--dev --lifecycle-clock-file`), so tests run years in milliseconds.

use std::sync::Arc;

use super::invalid;
use crate::audit::entry::{AuditEntry, EntryOutcome};
use crate::domain::handle::Handle;
use crate::domain::lifecycle::{
    self, EpochKey, Retirement, epoch_label, epoch_of, format_date, jst_today,
};
use crate::domain::number::IndividualNumber;
use crate::domain::operator::{Role, Tenant};
use crate::domain::policy::Action;
use crate::domain::record::{Record, RecordStatus, SealedNumber};
use crate::domain::text;
use crate::error::{Error, Reason, Result};
use crate::keys::KeyUse;
use crate::keys::envelope::{self, FORMAT_EPOCH, Wrapping};
use crate::service::{Caller, Locker, RequestContext};
use crate::store::codec::epoch_key_id;
use crate::store::lease::{CallLease, EPOCH_KEYS};
use crate::store::mutation::{Mutation, MutationOutcome};

/// How long a retirement waits for another daemon to finish creating an epoch key: longer
/// than a lease lasts, so a holder that died does not fail the call.
const EPOCH_KEYS_WAIT: std::time::Duration = std::time::Duration::from_secs(12);

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
    pub(super) async fn record_kek(
        &self,
        tenant: &Tenant,
        sealed: &SealedNumber,
    ) -> Result<Vec<u8>> {
        if sealed.format == FORMAT_EPOCH {
            let key = self
                .store
                .view()?
                .epoch_keys()
                .get(&epoch_key_id(&tenant.id, sealed.key_version))
                .await?
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
            ))
            .because(Reason::RecordSuspended));
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
            ))
            .because(Reason::RetentionEnded));
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
        let kek = self.record_kek(tenant, sealed).await?;
        let digits = envelope::open_with(
            &self.keys,
            &kek,
            &record.handle,
            &record.tenant,
            &record.purposes,
            sealed,
            &record.status,
        )
        .await?;
        IndividualNumber::parse(&digits).map_err(|_| {
            Error::Integrity(format!(
                "record {} does not hold a valid number",
                record.handle
            ))
        })
    }

    /// Retirement starts the countdown to disposal, so a handler or service must not be able
    /// to destroy records through it: it retires only records whose every purpose it holds,
    /// dated neither before their acquisition nor more than `retire_backdate_days` in the past.
    /// A manager may (that is the manager's approval the rules ask for).
    fn check_retirement_authority(
        &self,
        caller: &Caller,
        record: &Record,
        left: time::Date,
        today: time::Date,
    ) -> Result<()> {
        if caller.operator.role == Role::Manager {
            return Ok(());
        }
        let missing: Vec<&str> = record
            .purposes
            .iter()
            .filter(|p| !caller.operator.has_grant(&record.tenant, p))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(Error::PermissionDenied(format!(
                "operator {} may retire only records whose every purpose it holds; this one also serves {}: a manager may retire it",
                caller.operator.id,
                missing.join(",")
            )));
        }
        let acquired = jst_today(record.acquired_at_ms);
        if left < acquired {
            return Err(Error::FailedPrecondition(format!(
                "left_on precedes the record's acquisition on {}: a manager may retire it",
                format_date(acquired)
            )));
        }
        let earliest =
            today.saturating_sub(time::Duration::days(i64::from(self.retire_backdate_days)));
        if left < earliest {
            return Err(Error::FailedPrecondition(format!(
                "left_on lies more than {} days in the past: a manager may retire it",
                self.retire_backdate_days
            )));
        }
        Ok(())
    }

    /// Sets the acquisition date (取得日) of a record migrated from paper or another system
    /// (managers, with a reason): the day the number was acquired, from 2015-10-05 (the first
    /// numbers) to today. The 台帳 and describe show it, and a handler's retirement may then
    /// go back to it.
    pub async fn set_acquisition_date(
        &self,
        ctx: &RequestContext,
        handle: &str,
        acquired_on: &str,
        reason: &str,
    ) -> Result<Record> {
        let (caller, mut entry) = self.begin(ctx, Action::AcquisitionDate).await?;
        let body = async {
            let handle = Handle::parse(handle).map_err(|e| invalid(e.to_string()))?;
            entry.handle = handle.to_string();
            text::free_text("reason", reason, 1024, true).map_err(invalid)?;
            let acquired = lifecycle::parse_date("acquired_on", acquired_on)
                .map_err(|e| invalid(e.to_string()))?;
            let record = self.record_in_scope(&caller, &handle, &mut entry).await?;
            let Some(sealed) = &record.sealed else {
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} has been disposed"
                )));
            };
            if acquired < lifecycle::FIRST_ACQUISITION {
                return Err(invalid(format!(
                    "acquired_on {} precedes the first individual numbers ({})",
                    format_date(acquired),
                    format_date(lifecycle::FIRST_ACQUISITION)
                )));
            }
            let today = jst_today(self.lifecycle_now_ms());
            if acquired > today {
                return Err(invalid(format!(
                    "acquired_on {} is in the future (today is {} in Japan)",
                    format_date(acquired),
                    format_date(today)
                )));
            }
            let before = format_date(jst_today(record.acquired_at_ms));
            entry.allow(format!(
                "acquisition date {} (was {before}): {reason}",
                format_date(acquired)
            ));
            let mut updated = record.clone();
            updated.acquired_at_ms = lifecycle::jst_midnight_ms(acquired);
            Ok((
                (),
                Mutation::SetRecordState {
                    expected: sealed.clone(),
                    updated: Box::new(updated),
                },
            ))
        }
        .await;
        record_outcome(self.finish(entry, body).await?)
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
        // Any lease on creating epoch keys is given up once the new key is committed.
        let (_lease, outcome) = self.finish(entry, body).await?;
        record_outcome(((), outcome))
    }

    /// The cluster's lease on creating epoch keys (see [`EPOCH_KEYS`]), waited for while
    /// another daemon holds it.
    async fn epoch_keys_lease(&self) -> Result<CallLease> {
        CallLease::take(Arc::clone(&self.store), EPOCH_KEYS, EPOCH_KEYS_WAIT)
            .await?
            .ok_or_else(|| {
                Error::Unavailable(
                    "another daemon of the cluster is creating a disposal-epoch key; retry".into(),
                )
            })
    }

    async fn retire_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        handle: &str,
        left_on: &str,
    ) -> Result<(Option<CallLease>, Mutation)> {
        let handle = Handle::parse(handle).map_err(|e| invalid(e.to_string()))?;
        entry.handle = handle.to_string();
        let left = lifecycle::parse_date("left_on", left_on).map_err(|e| invalid(e.to_string()))?;
        let record = self.record_in_scope(caller, &handle, entry).await?;
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
        self.check_retirement_authority(caller, &record, left, today)?;
        let dispose_on = lifecycle::disposal_date(left, &record.purposes, &self.purposes);
        let tenant = self.load_tenant(&record.tenant).await?;
        let number = self.reopen(&tenant, &record, &sealed).await?;
        // A record already past its date is due at once: it goes under this month's key,
        // never under a month whose key may be destroyed already.
        let epoch =
            lifecycle::epoch_start(epoch_of(dispose_on).max(epoch_of(today)), self.epoch_months);
        let mut lease = None;
        let epoch_id = epoch_key_id(&tenant.id, epoch);
        let mut existing = self.store.view()?.epoch_keys().get(&epoch_id).await?;
        if existing.is_none() {
            // Another daemon may be creating this very key: look again under the lease.
            lease = Some(self.epoch_keys_lease().await?);
            existing = self.store.view()?.epoch_keys().get(&epoch_id).await?;
        }
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
        let status = RecordStatus::Retired(Retirement {
            left_on: format_date(left),
            dispose_on: format_date(dispose_on),
            by: caller.operator.id.clone(),
            at_ms: now,
            suspension: None,
        });
        let resealed = envelope::seal_with(
            &self.keys,
            &self.rng,
            Wrapping::epoch(&epoch_key),
            &record.handle,
            &record.tenant,
            &record.purposes,
            &number,
            &status,
        )
        .await?;
        let mut updated = record.clone();
        updated.sealed = Some(resealed);
        updated.status = status;
        entry.allow(format!(
            "retired: left on {}, disposal on {} under epoch key {}",
            format_date(left),
            format_date(dispose_on),
            epoch_label(epoch)
        ));
        Ok((
            lease,
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
        let record = self.record_in_scope(caller, &handle, entry).await?;
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
        let tenant = self.load_tenant(&record.tenant).await?;
        let number = self.reopen(&tenant, &record, sealed).await?;
        let active = tenant
            .active_keys()
            .ok_or_else(|| Error::Internal(format!("tenant {} has no active key", tenant.id)))?;
        let status = match &retirement.suspension {
            Some(suspension) => RecordStatus::Suspended(suspension.clone()),
            None => RecordStatus::Active,
        };
        let resealed = envelope::seal(
            &self.keys,
            &self.rng,
            active,
            &record.handle,
            &record.tenant,
            &record.purposes,
            &number,
            &status,
        )
        .await?;
        let mut updated = record.clone();
        updated.sealed = Some(resealed);
        updated.status = status;
        entry.allow(format!("retirement undone: {reason}"));
        Ok((
            (),
            Mutation::UnretireRecord {
                expected: sealed.clone(),
                updated: Box::new(updated),
            },
        ))
    }
}
