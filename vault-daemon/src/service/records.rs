//! Record operations: seal (取得), unseal (利用), lookup, describe, dispose (廃棄).

use std::sync::Arc;

use zeroize::Zeroizing;

use super::input::{check_tenant_id, parse_handle, parse_number, purpose_error};
use super::invalid;
use crate::audit::entry::AuditEntry;
use crate::audit::entry::EntryOutcome;
use crate::domain::handle::Handle;
use crate::domain::identity::IdentityVerification;
use crate::domain::lifecycle::Suspension;
use crate::domain::number::IndividualNumber;
use crate::domain::operator::{Role, Tenant, TenantKeys};
use crate::domain::policy::Action;
use crate::domain::record::{self, Record, RecordStatus, SubjectKind, Tombstone};
use crate::domain::text;
use crate::error::{Error, Reason, Result};
use crate::keys::envelope;
use crate::service::rate_limit::Metered;
use crate::service::record_purposes::SealDifferences;
use crate::service::{Caller, Locker, RequestContext};
use crate::store::StoreError;
use crate::store::mutation::Expected;
use crate::store::mutation::{Mutation, MutationOutcome};
use crate::store::view::View;

/// What a caller asks to seal.
pub struct SealRequest {
    /// Tenant id.
    pub tenant: String,
    /// The caller's reference for the person.
    pub subject_ref: String,
    /// Whose number; `None` when the caller did not say.
    pub subject_kind: Option<SubjectKind>,
    /// Purpose codes.
    pub purposes: Vec<String>,
    /// The number as typed (validated here).
    pub number: Zeroizing<String>,
    /// Verification kinds as sent (validated here).
    pub verification: (String, String, String),
}

/// What a seal asked for, kept to say how an existing record differs.
struct SealEcho {
    purposes: Vec<String>,
    subject_ref: String,
    subject_kind: Option<SubjectKind>,
}

/// The answer to a seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealResult {
    /// The record's handle.
    pub handle: Handle,
    /// True when the tenant already held the number.
    pub existing: bool,
    /// For an existing record: what the seal asked for that the record does not have.
    pub differences: SealDifferences,
}

fn active_keys(tenant: &Tenant) -> Result<&TenantKeys> {
    tenant
        .active_keys()
        .ok_or_else(|| Error::Internal(format!("tenant {} has no keys", tenant.id)))
}

/// A number released by an unseal, with whose it is.
pub struct Unsealed {
    /// The number.
    pub number: Zeroizing<String>,
    /// The caller's reference for the person, as sealed.
    pub subject_ref: String,
    /// Who the person is to the office.
    pub subject_kind: SubjectKind,
}

impl Locker {
    pub(super) async fn load_tenant(&self, id: &str) -> Result<Arc<Tenant>> {
        if !self.shares_store() {
            return self.logged_tenant(id);
        }
        self.load_tenant_in(&self.store.view()?, id).await
    }

    /// The tenant as the authority view holds it. On a daemon alone with its store the view
    /// takes in every commit before the commit is answered, so this is the tenant the log
    /// names now, and no row needs reading (the tables are hashed against the view every few
    /// hundred milliseconds in any case).
    fn logged_tenant(&self, id: &str) -> Result<Arc<Tenant>> {
        self.writer
            .authority()
            .snapshot()
            .shared_tenant(id)
            .ok_or_else(|| Error::NotFound(format!("no tenant {id}")))
    }

    /// [`Locker::load_tenant`]: on a daemon alone with its store, the tenant the log names
    /// (the authority view), read from memory; in a cluster, read through the call's `view` and
    /// checked against that tenant: a row put back from an older copy — a key
    /// version made active again, say — decides nothing. A row that differs from the view
    /// may be newer than it (a rotation on another daemon a moment ago): the view catches up
    /// with the log and the row is read again; one that still differs is tampering, refused
    /// DATA_LOSS and reported (every call refused until it is right).
    pub(super) async fn load_tenant_in(&self, view: &View<'_>, id: &str) -> Result<Arc<Tenant>> {
        if !self.shares_store() {
            return self.logged_tenant(id);
        }
        let mut read = view.tenants().get(id).await?;
        for attempt in 0..2 {
            let logged = self.writer.authority().snapshot();
            if read.as_ref() == logged.tenant(id) {
                return read
                    .map(Arc::new)
                    .ok_or_else(|| Error::NotFound(format!("no tenant {id}")));
            }
            if attempt == 0 {
                self.writer.check().await?;
                read = self.store.view()?.tenants().get(id).await?;
            }
        }
        let error = StoreError::Tampered {
            table: "authority rows".into(),
            key: format!(
                "tenant {id}: not the row the audit log names as current (put back from an older copy, or edited)"
            ),
        };
        self.writer.report_tampering(error.clone()).await;
        Err(Error::from(error))
    }

    /// The record `handle`, if the caller's scope reaches it. A record of another tenant is
    /// answered exactly like one that does not exist, so a handle is no oracle for what other
    /// tenants hold (the audit entry still names the tenant).
    pub(super) async fn record_in_scope(
        &self,
        caller: &Caller,
        handle: &Handle,
        entry: &mut AuditEntry,
    ) -> Result<Record> {
        self.record_in_scope_in(&self.store.view()?, caller, handle, entry)
            .await
    }

    /// [`Locker::record_in_scope`], read through the call's `view`.
    pub(super) async fn record_in_scope_in(
        &self,
        view: &View<'_>,
        caller: &Caller,
        handle: &Handle,
        entry: &mut AuditEntry,
    ) -> Result<Record> {
        let missing = || format!("no record {handle}");
        let record = view
            .records()
            .get(handle)
            .await?
            .ok_or_else(|| Error::NotFound(missing()))?;
        entry.tenant = record.tenant.clone();
        if let Err(denied) = super::require_scope(caller, &record.tenant) {
            return Err(Error::Concealed {
                shown: missing(),
                cause: denied.to_string(),
            });
        }
        Ok(record)
    }

    /// The handle of `number` in `tenant`. While a rotation runs, records not yet rewrapped are
    /// indexed under an older MAC key, so every live version is tried, newest first.
    pub(super) async fn find_by_number(
        &self,
        tenant: &Tenant,
        number: &IndividualNumber,
    ) -> Result<Option<Handle>> {
        Ok(self
            .find_record_by_number(tenant, number)
            .await?
            .map(|record| record.handle))
    }

    /// The record holding `number` in `tenant`, as [`Locker::find_by_number`] finds it.
    pub(super) async fn find_record_by_number(
        &self,
        tenant: &Tenant,
        number: &IndividualNumber,
    ) -> Result<Option<Record>> {
        Ok(self.find_number_read(tenant, number).await?.0)
    }

    /// [`Locker::find_record_by_number`], with what it read: the record found, or each blind
    /// index that held nothing — for the call's entry to check where it lands in the log.
    pub(super) async fn find_number_read(
        &self,
        tenant: &Tenant,
        number: &IndividualNumber,
    ) -> Result<(Option<Record>, Vec<Expected>)> {
        let mut read = Vec::new();
        let records = self.writer.records();
        for keys in tenant.index_keys() {
            let index = envelope::blind_index(&self.keys, keys, number).await?;
            // One daemon writes this store, and its view takes in each commit before the
            // commit is answered: an entry the view lacks is one the log never named, so no
            // read is needed to know it is absent (the writer checks it again in any case).
            if !self.shares_store()
                && !records.indexed(records.tagger().index_fingerprint(&tenant.id, &index))
            {
                read.push(Expected::Unindexed {
                    tenant: tenant.id.clone(),
                    index,
                });
                continue;
            }
            let found = self
                .store
                .view()?
                .records()
                .by_index(&tenant.id, &index)
                .await?;
            if let Some((handle, record)) = found {
                // The index is not authenticated by itself: the record it names must carry
                // this very index in this tenant (an entry swapped in the store is caught).
                return match record {
                    Some(record)
                        if record.tenant == tenant.id && record.blind_index == Some(index) =>
                    {
                        read.push(self.record_read(record.clone())?);
                        Ok((Some(record), read))
                    }
                    _ => Err(Error::Integrity(format!(
                        "blind index entry of tenant {} names record {handle}, which does not carry it",
                        tenant.id
                    ))),
                };
            }
            read.push(Expected::Unindexed {
                tenant: tenant.id.clone(),
                index,
            });
        }
        Ok((None, read))
    }

    /// What a call read of `record`, checked again where its entry lands in the log (the
    /// record must still be the version read, and that version the one the log names).
    pub(super) fn record_read(&self, record: Record) -> Result<Expected> {
        Ok(Expected::Record {
            handle: record.handle.clone(),
            tag: Some(self.writer.records().tagger().tag(&record)?),
            read: Some(Box::new(record)),
        })
    }

    /// Seals a number and returns its handle (or the existing record's, if the tenant holds
    /// the number already).
    pub async fn seal(&self, ctx: &RequestContext, request: SealRequest) -> Result<SealResult> {
        let (caller, entry) = self.begin(ctx, Action::Seal).await?;
        let entry = self.meter(&caller, Metered::Seal, entry).await?;
        // "Already held" answers whether the tenant holds the number, as a lookup does.
        let mut entry = self.meter_existence(&caller, entry).await?;
        let request_echo = SealEcho {
            purposes: request.purposes.clone(),
            subject_ref: request.subject_ref.clone(),
            subject_kind: request.subject_kind,
        };
        let body = self.seal_body(&caller, &mut entry, request).await;
        let (existing_hint, outcome) = self.finish(entry, body).await?;
        match (existing_hint, outcome) {
            (Some((handle, differences)), _) => Ok(SealResult {
                handle,
                existing: true,
                differences,
            }),
            // Another call sealed the number between our look-up and our commit.
            (None, MutationOutcome::Existing(handle)) => {
                self.charge_lookup(&caller);
                Ok(SealResult {
                    differences: self.differences_from(&handle, &request_echo).await?,
                    handle,
                    existing: true,
                })
            }
            (None, MutationOutcome::Inserted(handle)) => Ok(SealResult {
                handle,
                existing: false,
                differences: SealDifferences::default(),
            }),
            (None, other) => Err(Error::Internal(format!(
                "unexpected seal outcome {other:?}"
            ))),
        }
    }

    /// How the record `handle` differs from what a seal asked for.
    async fn differences_from(&self, handle: &Handle, echo: &SealEcho) -> Result<SealDifferences> {
        let record = self
            .store
            .view()?
            .records()
            .get(handle)
            .await?
            .ok_or_else(|| Error::Internal(format!("record {handle} vanished after its seal")))?;
        let mut purposes = echo.purposes.clone();
        purposes.sort();
        purposes.dedup();
        Ok(SealDifferences::between(
            &record,
            &purposes,
            &echo.subject_ref,
            echo.subject_kind.unwrap_or(record.subject_kind),
        ))
    }

    /// Returns `Some(handle, differences)` when the number is already held (nothing to write),
    /// else the insert mutation.
    async fn seal_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        request: SealRequest,
    ) -> Result<(Option<(Handle, SealDifferences)>, Mutation)> {
        check_tenant_id(&request.tenant, entry)?;
        text::free_text("subject_ref", &request.subject_ref, 128, true).map_err(invalid)?;
        let subject_kind = request
            .subject_kind
            .ok_or_else(|| invalid("subject_kind is required"))?;
        let purposes = self
            .purposes
            .canonical_list(&request.purposes)
            .map_err(purpose_error)?;
        let (number_check, identity_check, agent) = &request.verification;
        let verification = IdentityVerification::from_codes(number_check, identity_check, agent)
            .map_err(invalid)?;
        let number = parse_number(&request.number)?;
        // Scope before existence: an unknown tenant answers like one without a grant.
        super::require_scope(caller, &request.tenant)?;
        let tenant = self.load_tenant(&request.tenant).await?;
        super::require_grants(caller, &tenant.id, purposes.iter().map(String::as_str))?;
        let keys = active_keys(&tenant)?;
        let (found, read) = self.find_number_read(&tenant, &number).await?;
        if let Some(record) = found {
            self.charge_lookup(caller);
            let existing = record.handle.clone();
            entry.handle = existing.to_string();
            let differences =
                SealDifferences::between(&record, &purposes, &request.subject_ref, subject_kind);
            if differences.is_empty() {
                entry.allow("number already held by this tenant: existing handle returned");
            } else {
                entry.allow(format!(
                    "number already held by this tenant: existing handle returned, unchanged ({})",
                    differences.describe()
                ));
            }
            return Ok((Some((existing, differences)), Mutation::Expect(read)));
        }
        // The look-up above already computed the index under the newest keys, which are the
        // active ones but during a rotation's first instants: one backend MAC, not two.
        let newest = tenant.index_keys().next().map(|k| k.version);
        let index = match read.first() {
            Some(Expected::Unindexed { index, .. }) if newest == Some(keys.version) => *index,
            _ => envelope::blind_index(&self.keys, keys, &number).await?,
        };
        let handle = Handle::generate(&self.rng)
            .map_err(|_| Error::Internal("random generator failed".into()))?;
        let sealed = envelope::seal(
            &self.keys,
            &self.rng,
            keys,
            &handle,
            &tenant.id,
            &purposes,
            &number,
            &RecordStatus::Active,
        )
        .await?;
        entry.allow(format!("sealed for {}", purposes.join(",")));
        let record = Record {
            handle,
            tenant: tenant.id.clone(),
            subject_ref: request.subject_ref,
            subject_kind,
            purposes,
            verification,
            acquired_at_ms: self.now_ms(),
            acquired_by: caller.operator.id.clone(),
            status: RecordStatus::Active,
            sealed: Some(sealed),
            blind_index: Some(index),
        };
        Ok((None, Mutation::InsertRecord(Box::new(record))))
    }

    /// Returns the number of `handle` for `purpose`, after its audit entry is committed.
    pub async fn unseal(
        &self,
        ctx: &RequestContext,
        handle: &str,
        purpose: &str,
    ) -> Result<Zeroizing<String>> {
        Ok(self.unseal_for(ctx, handle, purpose).await?.number)
    }

    /// [`Locker::unseal`], with whose number it is.
    pub async fn unseal_for(
        &self,
        ctx: &RequestContext,
        handle: &str,
        purpose: &str,
    ) -> Result<Unsealed> {
        let (caller, entry) = self.begin(ctx, Action::Unseal).await?;
        let mut entry = self.meter(&caller, Metered::Unseal, entry).await?;
        let body = self.unseal_body(&caller, &mut entry, handle, purpose).await;
        let unsealed = self
            .finish(entry, body)
            .await
            .map(|(unsealed, _)| unsealed)?;
        // Alerts are committed before the number goes out, so an auto-suspension stops the
        // very next call; if the alert cannot be committed, the number is not released.
        self.watch_unseal(&caller, handle).await?;
        Ok(unsealed)
    }

    async fn unseal_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        handle: &str,
        purpose: &str,
    ) -> Result<(Unsealed, Mutation)> {
        let handle = parse_handle(handle, entry)?;
        self.purposes.check(purpose).map_err(purpose_error)?;
        entry.purpose = purpose.to_owned();
        let view = self.store.view()?;
        let record = self
            .record_in_scope_in(&view, caller, &handle, entry)
            .await?;
        // The grant first: a record's state (disposed, suspended, retired) is nothing for a
        // caller who may not use it.
        super::require_grants(caller, &record.tenant, [purpose])?;
        if !record.purposes.iter().any(|p| p == purpose) {
            return Err(Error::PermissionDenied(format!(
                "purpose {purpose} is not among the record's permitted purposes"
            ))
            .because(Reason::PurposeNotOnRecord));
        }
        let sealed = match (&record.status, &record.sealed) {
            (RecordStatus::Disposed(_), _) => {
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} has been disposed"
                ))
                .because(Reason::RecordDisposed));
            }
            (RecordStatus::Suspended(suspension), _) => {
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} is suspended (規程第49条): {}",
                    suspension.reason
                ))
                .because(Reason::RecordSuspended));
            }
            (RecordStatus::Retired(retirement), Some(sealed)) => {
                self.check_retained_use(retirement, purpose)?;
                sealed
            }
            (RecordStatus::Active, Some(sealed)) => sealed,
            (RecordStatus::Active | RecordStatus::Retired(_), None) => {
                return Err(Error::Integrity(format!(
                    "record {handle} has no ciphertext"
                )));
            }
        };
        let tenant = self.load_tenant_in(&view, &record.tenant).await?;
        drop(view);
        let kek = self.record_kek(&tenant, sealed).await?;
        let number = envelope::open_with(
            &self.keys,
            &kek,
            &handle,
            &record.tenant,
            &record.purposes,
            sealed,
            &record.status,
        )
        .await?;
        entry.allow("number released");
        let unsealed = Unsealed {
            number,
            subject_ref: record.subject_ref.clone(),
            subject_kind: record.subject_kind,
        };
        // Released only if the record read is still the one the log names as current where
        // this entry lands (a row put back from an older copy is refused there).
        Ok((unsealed, Mutation::Expect(vec![self.record_read(record)?])))
    }

    /// Finds the handle of a number within a tenant.
    pub async fn lookup(&self, ctx: &RequestContext, tenant: &str, number: &str) -> Result<Handle> {
        let (caller, entry) = self.begin(ctx, Action::Lookup).await?;
        let mut entry = self.meter(&caller, Metered::Lookup, entry).await?;
        let body = self.lookup_body(&caller, &mut entry, tenant, number).await;
        let missed = matches!(body, Ok((None, _)) | Err(Error::NotFound(_)));
        let found = self
            .finish(entry, body)
            .await
            .and_then(|(handle, _)| handle.ok_or_else(|| missing_number(tenant)));
        if missed {
            // Numbers probed and not found: the log monitor's view of an oracle.
            self.watch_lookup_miss(&caller).await?;
        }
        found
    }

    async fn lookup_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        tenant: &str,
        number: &str,
    ) -> Result<(Option<Handle>, Mutation)> {
        check_tenant_id(tenant, entry)?;
        let number = parse_number(number)?;
        // Scope before existence: an unknown tenant answers like one without a grant.
        super::require_scope(caller, tenant)?;
        let tenant = self.load_tenant(tenant).await?;
        let (found, read) = self.find_number_read(&tenant, &number).await?;
        let Some(record) = found else {
            // A miss is checked too, where its entry lands (an index entry deleted from the
            // store is tampering, not "no such number").
            entry.fail(&missing_number(&tenant.id));
            return Ok((None, Mutation::Expect(read)));
        };
        entry.handle = record.handle.to_string();
        entry.allow("handle found");
        Ok((Some(record.handle), Mutation::Expect(read)))
    }

    /// Record metadata.
    pub async fn describe(&self, ctx: &RequestContext, handle: &str) -> Result<Record> {
        let (caller, mut entry) = self.begin(ctx, Action::Describe).await?;
        let body = self.describe_body(&caller, &mut entry, handle).await;
        self.finish(entry, body).await.map(|(record, _)| record)
    }

    async fn describe_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        handle: &str,
    ) -> Result<(Record, Mutation)> {
        let handle = parse_handle(handle, entry)?;
        let record = self.record_in_scope(caller, &handle, entry).await?;
        let read = self.record_read(record.clone())?;
        Ok((record, Mutation::Expect(vec![read])))
    }

    /// Suspends (`suspend` true) or resumes a record's use (managers, 規程第49条).
    pub async fn set_suspended(
        &self,
        ctx: &RequestContext,
        handle: &str,
        reason: &str,
        suspend: bool,
    ) -> Result<Record> {
        let action = if suspend {
            Action::Suspend
        } else {
            Action::Resume
        };
        let (caller, mut entry) = self.begin(ctx, action).await?;
        let body = async {
            let handle = parse_handle(handle, &mut entry)?;
            text::free_text("reason", reason, 1024, true).map_err(invalid)?;
            let record = self.record_in_scope(&caller, &handle, &mut entry).await?;
            let suspension = suspend.then(|| Suspension {
                reason: reason.to_owned(),
                by: caller.operator.id.clone(),
                at_ms: self.now_ms(),
            });
            let status = record::status_after_suspension(&handle, &record.status, suspension)?;
            let Some(sealed) = &record.sealed else {
                return Err(Error::Integrity(format!(
                    "record {handle} has no ciphertext"
                )));
            };
            // The state is bound to the DEK: a new state means the DEK wrapped anew.
            let tenant = self.load_tenant(&record.tenant).await?;
            let kek = self.record_kek(&tenant, sealed).await?;
            let rebound = envelope::rebind(
                &self.keys,
                &kek,
                &handle,
                &record.tenant,
                &record.purposes,
                sealed,
                &record.status,
                &status,
            )
            .await?;
            let verb = if suspend { "suspended" } else { "resumed" };
            entry.allow(format!("{verb}: {reason}"));
            let mut updated = record.clone();
            updated.status = status;
            updated.sealed = Some(rebound);
            Ok((
                (),
                Mutation::SetRecordState {
                    expected: sealed.clone(),
                    updated: Box::new(updated),
                },
            ))
        }
        .await;
        match self.finish(entry, body).await? {
            ((), MutationOutcome::Record(record)) => Ok(*record),
            (_, other) => Err(Error::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Disposes of a record (managers): ciphertext, wrapped key and index entry deleted.
    pub async fn dispose(
        &self,
        ctx: &RequestContext,
        handle: &str,
        reason: &str,
    ) -> Result<Record> {
        let (caller, mut entry) = self.begin(ctx, Action::Dispose).await?;
        let body = self.dispose_body(&caller, &mut entry, handle, reason).await;
        match self.finish(entry, body).await? {
            ((), MutationOutcome::Record(record)) => Ok(*record),
            (_, other) => Err(Error::Internal(format!(
                "unexpected dispose outcome {other:?}"
            ))),
        }
    }

    async fn dispose_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        handle: &str,
        reason: &str,
    ) -> Result<((), Mutation)> {
        debug_assert_eq!(caller.operator.role, Role::Manager);
        let handle = parse_handle(handle, entry)?;
        text::free_text("reason", reason, 1024, true).map_err(invalid)?;
        let record = self.record_in_scope(caller, &handle, entry).await?;
        if let RecordStatus::Disposed(_) = record.status {
            return Err(Error::FailedPrecondition(format!(
                "record {handle} is already disposed"
            )));
        }
        let now = self.lifecycle_now_ms();
        let certificate = self
            .certify_disposal(
                &record,
                now,
                format!(
                    "管理責任者の指示により暗号文・ラップされたデータ鍵・ブラインドインデックスを削除（理由: {reason}）"
                ),
                &caller.operator.id,
            )
            .await?;
        entry.allow(format!("disposed: {reason}"));
        let tombstone = Tombstone {
            disposed_at_ms: now,
            disposed_by: caller.operator.id.clone(),
            reason: reason.to_owned(),
        };
        Ok((
            (),
            Mutation::DisposeRecord {
                handle,
                tombstone,
                certificate: Box::new(certificate),
            },
        ))
    }
}

/// A lookup's answer for a number the tenant does not hold.
fn missing_number(tenant: &str) -> Error {
    Error::NotFound(format!("tenant {tenant} holds no such number"))
}
