//! Purposes change over a record's life: an employee first registered for withholding later
//! needs 健康保険. The purposes are bound into the record's associated data, so adding one
//! re-seals the number (a fresh data key, under the same key version) with the longer list.

use super::input::{parse_handle, purpose_error};
use crate::audit::entry::AuditEntry;
use crate::audit::entry::EntryOutcome;
use crate::domain::number::IndividualNumber;
use crate::domain::policy::Action;
use crate::domain::record::{Record, RecordStatus, SubjectKind};
use crate::error::{Error, Reason, Result};
use crate::keys::envelope::{self, Wrapping};
use crate::service::rate_limit::Metered;
use crate::service::{Caller, Locker, RequestContext};
use crate::store::mutation::{Mutation, MutationOutcome};

/// What a seal asked for that the record the tenant already holds does not have. A seal never
/// changes an existing record; this tells the caller what to do instead of silently keeping it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealDifferences {
    /// Purposes asked for that the record does not carry (add them with AddPurposes).
    pub purposes_not_on_record: Vec<String>,
    /// The record was sealed under another subject reference.
    pub subject_ref_differs: bool,
    /// The record was sealed for another kind of subject.
    pub subject_kind_differs: bool,
}

impl SealDifferences {
    /// How `record` differs from a seal of `purposes` (canonical), `subject_ref` and `kind`.
    pub fn between(
        record: &Record,
        purposes: &[String],
        subject_ref: &str,
        kind: SubjectKind,
    ) -> SealDifferences {
        SealDifferences {
            purposes_not_on_record: purposes
                .iter()
                .filter(|p| !record.purposes.contains(p))
                .cloned()
                .collect(),
            subject_ref_differs: record.subject_ref != subject_ref,
            subject_kind_differs: record.subject_kind != kind,
        }
    }

    /// Whether the seal asked for exactly what the record holds.
    pub fn is_empty(&self) -> bool {
        self.purposes_not_on_record.is_empty()
            && !self.subject_ref_differs
            && !self.subject_kind_differs
    }

    /// For the audit entry and the log: what differs, never a value of the record.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.purposes_not_on_record.is_empty() {
            parts.push(format!(
                "purposes not on the record: {}",
                self.purposes_not_on_record.join(",")
            ));
        }
        if self.subject_ref_differs {
            parts.push("subject_ref differs".to_owned());
        }
        if self.subject_kind_differs {
            parts.push("subject_kind differs".to_owned());
        }
        parts.join("; ")
    }
}

impl Locker {
    /// Adds `purposes` to the record `handle`: the caller must be granted each of them on the
    /// record's tenant, and the record must be in use (active). Purposes already on the record
    /// are no error; asking only for those changes nothing.
    pub async fn add_purposes(
        &self,
        ctx: &RequestContext,
        handle: &str,
        purposes: &[String],
    ) -> Result<Record> {
        let (caller, entry) = self.begin(ctx, Action::PurposesAdd).await?;
        // A re-seal costs what a seal costs: the same bucket.
        let mut entry = self.meter(&caller, Metered::Seal, entry).await?;
        let body = self
            .add_purposes_body(&caller, &mut entry, handle, purposes)
            .await;
        match self.finish(entry, body).await? {
            (Some(unchanged), MutationOutcome::Done) => Ok(unchanged),
            (None, MutationOutcome::Record(record)) => Ok(*record),
            (_, other) => Err(Error::Internal(format!(
                "unexpected outcome of adding purposes {other:?}"
            ))),
        }
    }

    async fn add_purposes_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        handle: &str,
        purposes: &[String],
    ) -> Result<(Option<Record>, Mutation)> {
        let handle = parse_handle(handle, entry)?;
        let asked = self
            .purposes
            .canonical_list(purposes)
            .map_err(purpose_error)?;
        entry.purpose = asked.join(",");
        let record = self.record_in_scope(caller, &handle, entry).await?;
        super::require_grants(caller, &record.tenant, asked.iter().map(String::as_str))?;
        let sealed = match (&record.status, &record.sealed) {
            (RecordStatus::Active, Some(sealed)) => sealed,
            (RecordStatus::Active, None) => {
                return Err(Error::Integrity(format!(
                    "record {handle} has no ciphertext"
                )));
            }
            (RecordStatus::Disposed(_), _) => {
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} has been disposed"
                ))
                .because(Reason::RecordDisposed));
            }
            (RecordStatus::Suspended(_), _) => {
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} is suspended (規程第49条): resume it before adding purposes"
                ))
                .because(Reason::RecordSuspended));
            }
            (RecordStatus::Retired(_), _) => {
                return Err(Error::FailedPrecondition(format!(
                    "record {handle} is retired: its purposes are those of its retention"
                ))
                .because(Reason::RecordRetired));
            }
        };
        let added: Vec<String> = asked
            .iter()
            .filter(|p| !record.purposes.contains(p))
            .cloned()
            .collect();
        if added.is_empty() {
            entry.allow("no purpose added: the record carries every one asked for");
            return Ok((Some(record), Mutation::None));
        }
        let mut all = record.purposes.clone();
        all.extend(added.iter().cloned());
        let all = self.purposes.canonical_list(&all).map_err(purpose_error)?;
        let tenant = self.load_tenant(&record.tenant).await?;
        let kek = self.record_kek(&tenant, sealed).await?;
        let digits = envelope::open_with(
            &self.keys,
            &kek,
            &handle,
            &record.tenant,
            &record.purposes,
            sealed,
            &record.status,
        )
        .await?;
        let number = IndividualNumber::parse(&digits)
            .map_err(|_| Error::Integrity(format!("record {handle} holds no valid number")))?;
        // The same key version the record had, so a rotation in progress still finds it where
        // its job expects (its blind index is unchanged too).
        let resealed = envelope::seal_with(
            &self.keys,
            &self.rng,
            Wrapping {
                kek: &kek,
                format: sealed.format,
                key_version: sealed.key_version,
            },
            &handle,
            &record.tenant,
            &all,
            &number,
            &record.status,
        )
        .await?;
        entry.allow(format!(
            "purposes added: {}; the record now carries {}",
            added.join(","),
            all.join(",")
        ));
        let mut updated = record.clone();
        updated.purposes = all;
        updated.sealed = Some(resealed);
        Ok((
            None,
            Mutation::SetRecordState {
                expected: sealed.clone(),
                updated: Box::new(updated),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::handle::Handle;
    use crate::domain::identity::IdentityVerification;

    fn record(purposes: &[&str]) -> Record {
        Record {
            handle: Handle::generate(&ring::rand::SystemRandom::new()).expect("rng"),
            tenant: "acme".into(),
            subject_ref: "E-1".into(),
            subject_kind: SubjectKind::Staff,
            purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
            verification: IdentityVerification::default(),
            acquired_at_ms: 0,
            acquired_by: "clerk".into(),
            status: RecordStatus::Active,
            sealed: None,
            blind_index: None,
        }
    }

    #[test]
    fn differences_name_what_the_record_lacks_and_nothing_it_holds() {
        let held = record(&["STAFF_WITHHOLDING"]);
        let same = SealDifferences::between(
            &held,
            &["STAFF_WITHHOLDING".into()],
            "E-1",
            SubjectKind::Staff,
        );
        assert!(same.is_empty(), "{same:?}");
        let other = SealDifferences::between(
            &held,
            &["STAFF_HEALTH_PENSION".into(), "STAFF_WITHHOLDING".into()],
            "E-2",
            SubjectKind::Dependent,
        );
        assert_eq!(other.purposes_not_on_record, vec!["STAFF_HEALTH_PENSION"]);
        assert!(other.subject_ref_differs && other.subject_kind_differs);
        let text = other.describe();
        assert!(
            text.contains("STAFF_HEALTH_PENSION") && !text.contains("E-1"),
            "{text}"
        );
    }
}
