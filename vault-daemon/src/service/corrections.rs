//! Corrections (訂正, 規程第47・48条): a handler or service requests one with the new number;
//! a manager who is not the requester approves or rejects it. Every step is audited; the
//! correction record (reason, requester, date, approver, what changed — never a number) is kept
//! one year after the decision and then purged by the scheduler.

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use super::invalid;
use crate::audit::entry::{AuditEntry, EntryOutcome};
use crate::domain::correction::{Correction, CorrectionState, PendingNumber};
use crate::domain::handle::Handle;
use crate::domain::number::IndividualNumber;
use crate::domain::operator::Role;
use crate::domain::policy::Action;
use crate::domain::record::RecordStatus;
use crate::domain::text;
use crate::error::{Error, Result};
use crate::keys::envelope;
use crate::service::rate_limit::Metered;
use crate::service::{Caller, Locker, RequestContext};
use crate::store::corrections::Decision;
use crate::store::mutation::{Mutation, MutationOutcome};

fn correction_outcome(outcome: ((), MutationOutcome)) -> Result<Correction> {
    match outcome {
        ((), MutationOutcome::Correction(correction)) => Ok(*correction),
        (_, other) => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
    }
}

impl Locker {
    /// Requests a correction of `handle` to `number`.
    pub async fn request_correction(
        &self,
        ctx: &RequestContext,
        handle: &str,
        number: &Zeroizing<String>,
        reason: &str,
        asked_by: &str,
    ) -> Result<Correction> {
        let (caller, entry) = self.begin(ctx, Action::CorrectionRequest).await?;
        // Its answer says whether the tenant holds a number: it draws from the lookup budget.
        let mut entry = self.meter(&caller, Metered::Lookup, entry).await?;
        let body = self
            .request_correction_body(&caller, &mut entry, handle, number, reason, asked_by)
            .await;
        let asked_about_unheld = body.is_ok();
        let outcome = correction_outcome(self.finish(entry, body).await?);
        if asked_about_unheld {
            // A number the tenant does not hold: what a prober's misses look like.
            self.watch_lookup_miss(&caller).await?;
        }
        outcome
    }

    async fn request_correction_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        handle: &str,
        number: &Zeroizing<String>,
        reason: &str,
        asked_by: &str,
    ) -> Result<((), Mutation)> {
        let handle = Handle::parse(handle).map_err(|e| invalid(e.to_string()))?;
        entry.handle = handle.to_string();
        text::free_text("reason", reason, 1024, true).map_err(invalid)?;
        text::free_text("asked_by", asked_by, 128, true).map_err(invalid)?;
        let number = IndividualNumber::parse(number).map_err(|e| invalid(e.to_string()))?;
        let record = self.record_in_scope(caller, &handle, entry).await?;
        let replaces = match (&record.status, &record.sealed) {
            (RecordStatus::Active | RecordStatus::Suspended(_), Some(sealed)) => sealed.clone(),
            (RecordStatus::Retired(_), _) => {
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} is retired; unretire it before correcting it"
                )));
            }
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} has been disposed"
                )));
            }
        };
        // Before any look-up by number, so that a record with a pending correction answers
        // every number alike.
        if self
            .store
            .view()?
            .corrections()
            .list()
            .await?
            .iter()
            .any(|c| c.handle == record.handle.to_string() && c.state == CorrectionState::Pending)
        {
            return Err(Error::FailedPrecondition(format!(
                "record {handle} already has a pending correction"
            )));
        }
        let tenant = self.load_tenant(&record.tenant).await?;
        let active = tenant
            .active_keys()
            .ok_or_else(|| Error::Internal(format!("tenant {} has no active key", tenant.id)))?;
        // Every live MAC version, as seal's de-duplication does: during a rotation a record not
        // yet rewrapped is indexed under the older one.
        match self.find_by_number(&tenant, &number).await? {
            Some(found) if found == handle => {
                return Err(invalid("the corrected number is the number already stored"));
            }
            Some(_) => {
                return Err(Error::AlreadyExists(
                    "the tenant already holds the corrected number".into(),
                ));
            }
            None => {}
        }
        let blind_index = envelope::blind_index(&self.keys, active, &number).await?;
        let sealed = envelope::seal(
            &self.keys,
            &self.rng,
            active,
            &record.handle,
            &record.tenant,
            &record.purposes,
            &number,
            &record.status,
        )
        .await?;
        let mut id = [0u8; 8];
        self.rng
            .fill(&mut id)
            .map_err(|_| Error::Internal("random generator failed".into()))?;
        let correction = Correction {
            id: hex::encode(id),
            handle: handle.to_string(),
            tenant: record.tenant.clone(),
            requested_by: caller.operator.id.clone(),
            requested_at_ms: self.lifecycle_now_ms(),
            reason: reason.to_owned(),
            asked_by: asked_by.to_owned(),
            state: CorrectionState::Pending,
            decided_by: None,
            decided_at_ms: None,
            decision_note: String::new(),
            change: String::new(),
            pending: Some(PendingNumber {
                replaces,
                sealed,
                blind_index,
            }),
        };
        entry.allow(format!(
            "correction {} requested (asked by {asked_by}): {reason}",
            correction.id
        ));
        Ok(((), Mutation::RequestCorrection(Box::new(correction))))
    }

    /// Approves (`approve`) or rejects a pending correction.
    pub async fn decide_correction(
        &self,
        ctx: &RequestContext,
        id: &str,
        note: &str,
        approve: bool,
    ) -> Result<Correction> {
        let action = if approve {
            Action::CorrectionApprove
        } else {
            Action::CorrectionReject
        };
        let (caller, mut entry) = self.begin(ctx, action).await?;
        let body = async {
            text::hex_id("correction id", id).map_err(invalid)?;
            text::free_text("note", note, 1024, !approve).map_err(invalid)?;
            let correction = self
                .store
                .view()?
                .corrections()
                .get(id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no correction {id}")))?;
            entry.handle = correction.handle.clone();
            entry.tenant = correction.tenant.clone();
            super::require_scope(&caller, &correction.tenant)?;
            if correction.requested_by == caller.operator.id {
                return Err(Error::PermissionDenied(
                    "a correction is decided by someone other than its requester".into(),
                ));
            }
            entry.allow(format!(
                "correction {id} {}: {note}",
                if approve { "approved" } else { "rejected" }
            ));
            Ok((
                (),
                Mutation::DecideCorrection(Decision {
                    id: id.to_owned(),
                    approve,
                    by: caller.operator.id.clone(),
                    at_ms: self.lifecycle_now_ms(),
                    note: note.to_owned(),
                }),
            ))
        }
        .await;
        correction_outcome(self.finish(entry, body).await?)
    }

    /// Correction records in the caller's scope (all tenants for admins and auditors).
    pub async fn list_corrections(
        &self,
        ctx: &RequestContext,
        tenant: &str,
    ) -> Result<Vec<Correction>> {
        let (caller, mut entry) = self.begin(ctx, Action::CorrectionList).await?;
        let body = async {
            if !tenant.is_empty() {
                text::identifier("tenant", tenant).map_err(invalid)?;
                entry.tenant = tenant.to_owned();
            }
            let global = matches!(caller.operator.role, Role::Admin | Role::Auditor);
            let mut list: Vec<Correction> = self
                .store
                .view()?
                .corrections()
                .list()
                .await?
                .into_iter()
                .filter(|c| tenant.is_empty() || c.tenant == tenant)
                .filter(|c| global || caller.operator.has_tenant(&c.tenant))
                .map(|mut c| {
                    c.pending = None;
                    c
                })
                .collect();
            list.sort_by_key(|c| c.requested_at_ms);
            entry.allow(format!("{} correction records", list.len()));
            Ok((list, Mutation::None))
        }
        .await;
        self.finish(entry, body).await.map(|(list, _)| list)
    }

    /// Pending corrections whose new number is sealed under `tenant`'s key `version`: that
    /// version must outlive them.
    pub(super) async fn pending_corrections_under(
        &self,
        tenant: &str,
        version: u32,
    ) -> Result<u64> {
        Ok(self
            .store
            .view()?
            .corrections()
            .list()
            .await?
            .iter()
            .filter(|c| c.tenant == tenant)
            .filter_map(|c| c.pending.as_ref())
            .filter(|p| p.sealed.key_version == version)
            .count() as u64)
    }

    /// Purges correction records decided more than a year ago (scheduler); returns how many.
    pub(super) async fn purge_corrections(&self) -> Result<u64> {
        let now = self.lifecycle_now_ms();
        let ids: Vec<String> = self
            .store
            .view()?
            .corrections()
            .list()
            .await?
            .into_iter()
            .filter(|c| c.purgeable(now))
            .map(|c| c.id)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let mut entry = AuditEntry {
            operator: "scheduler".into(),
            role: "system".into(),
            action: Action::CorrectionPurge.as_str().into(),
            ..AuditEntry::default()
        };
        entry.allow(format!(
            "{} correction records purged after their year: {}",
            ids.len(),
            ids.join(", ")
        ));
        let count = ids.len() as u64;
        self.writer
            .submit(Mutation::PurgeCorrections(ids), entry)
            .await?;
        Ok(count)
    }
}
