//! 本人開示 (規程第45・46条): when a person or their agent asks what the office holds about
//! them, the 特定個人情報管理責任者 (a manager of the tenant) asks the locker by the person's
//! number or the record's handle; the locker answers with the record's facts and every audited
//! use of it, read from the audit log up to a checkpoint signed for the purpose, as a notice
//! signed by the audit key (`vault_audit::disclosure`). Items the manager withholds under
//! 第45条2 are left out, and the notice says which and why.
//!
//! Never the number: the notice shows it masked to its last four digits; the audit entry
//! (DISCLOSURE) names the request's reference and the handle, not the number. A disclosure by
//! number answers whether the office holds it, so it draws on the caller's lookup rate.

use std::collections::HashMap;

use vault_audit::chain::ChainVerifier;
use vault_audit::checkpoint::Checkpoint;
use vault_audit::disclosure::{
    Coverage, DisclosedPurpose, DisclosedRecord, DisclosedUse, DisclosureNotice, FORMAT,
    NoticeBody, Withholding, mask_number, signed_payload,
};
use vault_audit::entry::{AuditEntry as LoggedEntry, RowRef};
use zeroize::Zeroizing;

use super::carry_out::carried_file;
use super::input::{check_tenant_id, parse_handle, parse_number};
use super::rate_limit::Metered;
use super::{CallEntry, Caller, Locker, RequestContext, invalid};
use crate::audit::entry::EntryOutcome;
use crate::domain::policy::Action;
use crate::domain::record::{Record, RecordStatus, SubjectKind};
use crate::domain::text;
use crate::error::{Error, Result};
use crate::keys::KeyRef;
use crate::store::StoreError;
use crate::store::mutation::{Expected, Mutation};

const SCAN_PAGE: usize = 1000;
/// Items a manager may withhold (第45条2).
const WITHHOLDABLE: [&str; 3] = ["record", "uses", "handlers"];

/// Whose record is asked for.
pub enum Subject {
    /// The record's handle.
    Handle(String),
    /// The person's number (as the person gave it; never logged).
    Number(Zeroizing<String>),
}

/// How the uses name who handled the number (the office's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlersShown {
    /// The operator's display name (its id when it has none).
    Name,
    /// The operator's role only.
    Role,
}

/// A disclosure request as the manager makes it.
pub struct DisclosureRequest {
    /// The tenant answering.
    pub tenant: String,
    /// Whose record (`None`: not said).
    pub subject: Option<Subject>,
    /// The office's reference for the request (受付番号).
    pub reference: String,
    /// Uses from (ms since the Unix epoch, inclusive).
    pub from_ms: i64,
    /// Uses until (exclusive); 0 for now.
    pub to_ms: i64,
    /// How uses name who handled the number (`None`: a mode this build does not know).
    pub handlers: Option<HandlersShown>,
    /// Items not disclosed, each with its ground and reason.
    pub withheld: Vec<Withholding>,
}

/// The record found, and what was read to find it (checked where the entry lands).
struct Found {
    record: Option<Record>,
    masked: String,
    read: Vec<Expected>,
}

/// What the log says of one record.
#[derive(Default)]
struct LogFindings {
    uses: Vec<(LoggedEntry, String)>,
    corrections: u64,
    head: Option<(u64, [u8; 32])>,
}

impl Locker {
    /// Answers a disclosure request with a signed notice (managers of the tenant).
    pub async fn disclose(
        &self,
        ctx: &RequestContext,
        request: DisclosureRequest,
    ) -> Result<DisclosureNotice> {
        let (caller, entry) = self.begin(ctx, Action::Disclosure).await?;
        let mut entry = self.meter(&caller, Metered::Lookup, entry).await?;
        let body = self.disclosure_body(&caller, &mut entry, request).await;
        self.finish(entry, body).await.map(|(notice, _)| notice)
    }

    async fn disclosure_body(
        &self,
        caller: &Caller,
        entry: &mut CallEntry,
        request: DisclosureRequest,
    ) -> Result<(DisclosureNotice, Mutation)> {
        check_tenant_id(&request.tenant, entry)?;
        text::free_text("reference", &request.reference, 128, true).map_err(invalid)?;
        check_withheld(&request.withheld)?;
        let Some(handlers) = request.handlers else {
            return Err(invalid("handlers must be NAME or ROLE"));
        };
        let Some(subject) = &request.subject else {
            return Err(invalid(
                "a disclosure names the person: their number or the record's handle",
            ));
        };
        let now = self.now_ms();
        let to_ms = if request.to_ms == 0 {
            now + 1
        } else {
            request.to_ms
        };
        if request.from_ms < 0 || request.from_ms >= to_ms {
            return Err(invalid("the period is empty: from must be before to"));
        }
        // Scope before existence: a tenant the manager does not hold answers nothing.
        super::require_scope(caller, &request.tenant)?;
        let found = self
            .find_subject(caller, entry, &request.tenant, subject)
            .await?;
        let withholds = |item: &str| request.withheld.iter().any(|w| w.item == item);
        let checkpoint = self.checkpointer().covering_checkpoint().await?;
        let handle = found.record.as_ref().map(|r| r.handle.to_string());
        let findings = match super::off_the_worker(|| {
            self.read_log(&checkpoint, handle.as_deref(), &request.tenant)
        }) {
            Ok(findings) => findings,
            Err(Error::Integrity(message)) => {
                // A break behind the point the daemon had verified (an old entry edited in
                // place): evidence gone, so every call stops, as for any tampering found.
                let error = StoreError::Tampered {
                    table: "audit".into(),
                    key: message,
                };
                self.writer.report_tampering(error.clone()).await;
                return Err(Error::from(error));
            }
            Err(error) => return Err(error),
        };
        let authority = self.writer.authority().snapshot();
        let who = |operator: &str, role: &str| -> String {
            if withholds("handlers") {
                return String::new();
            }
            match handlers {
                HandlersShown::Role => role.to_owned(),
                HandlersShown::Name => authority
                    .operator(operator)
                    .map(|op| op.display_name.clone())
                    .filter(|name| !name.is_empty())
                    .unwrap_or_else(|| operator.to_owned()),
            }
        };
        let uses: Vec<DisclosedUse> = if withholds("uses") {
            Vec::new()
        } else {
            findings
                .uses
                .iter()
                .filter(|(e, _)| e.time_ms >= request.from_ms && e.time_ms < to_ms)
                .map(|(e, carried)| DisclosedUse {
                    seq: e.seq,
                    time_ms: e.time_ms,
                    category: Action::from_name(&e.action)
                        .map_or("other", Action::record_use)
                        .into(),
                    action: e.action.clone(),
                    handler: who(&e.operator, &e.role),
                    role: if withholds("handlers") {
                        String::new()
                    } else {
                        e.role.clone()
                    },
                    purpose: e.purpose.clone(),
                    outcome: e.outcome.clone(),
                    carried_out: carried.clone(),
                })
                .collect()
        };
        let record = match &found.record {
            Some(record) if !withholds("record") => Some(self.disclosed_record(
                record,
                findings.corrections,
                who(&record.acquired_by, acquirer_role(&findings)),
            )),
            _ => None,
        };
        // The labels of what the notice shows: a withheld record's purposes are not named.
        let mut named: Vec<&str> = record
            .iter()
            .flat_map(|r| r.purposes.iter().map(|p| p.code.as_str()))
            .chain(uses.iter().map(|u| u.purpose.as_str()))
            .filter(|code| !code.is_empty())
            .collect();
        named.sort_unstable();
        named.dedup();
        let purposes = named
            .into_iter()
            .map(|code| self.disclosed_purpose(code))
            .collect();
        let (office, details) = self.tenant_for_print(&request.tenant).await;
        let coverage = Coverage {
            first_seq: 1,
            last_seq: checkpoint.seq,
            chain_hash: checkpoint.chain_hash.clone(),
            checkpoint: checkpoint.number,
            checkpoint_key_version: checkpoint.key_version,
        };
        let body = NoticeBody {
            reference: request.reference.clone(),
            tenant: request.tenant.clone(),
            office,
            office_responsible: details.responsible_person,
            office_department: details.responsible_department,
            issued_at_ms: now,
            issued_by: caller.operator.id.clone(),
            period_from_ms: request.from_ms,
            period_to_ms: to_ms,
            held: found.record.is_some(),
            number_masked: found.masked,
            record,
            uses,
            purposes,
            handlers_shown_as: match handlers {
                HandlersShown::Name => "name",
                HandlersShown::Role => "role",
            }
            .into(),
            withheld: request.withheld.clone(),
            coverage,
        };
        let notice = self.sign_notice(body).await?;
        entry.allow(format!(
            "disclosure {}: {}, {} uses listed, {} items withheld, log 1..={} (checkpoint {})",
            request.reference,
            if notice.body.held {
                "record held"
            } else {
                "nothing held"
            },
            notice.body.uses.len(),
            notice.body.withheld.len(),
            checkpoint.seq,
            checkpoint.number
        ));
        Ok((notice, Mutation::Expect(found.read)))
    }

    /// The record asked for, if the tenant holds it, and the number as the notice shows it.
    async fn find_subject(
        &self,
        caller: &Caller,
        entry: &mut CallEntry,
        tenant: &str,
        subject: &Subject,
    ) -> Result<Found> {
        let tenant = self.load_tenant(tenant).await?;
        match subject {
            Subject::Number(digits) => {
                let number = parse_number(digits)?;
                let masked = mask_number(number.digits());
                let (record, read) = self.find_number_read(&tenant, &number).await?;
                if let Some(record) = &record {
                    entry.handle = record.handle.to_string();
                }
                Ok(Found {
                    record,
                    masked,
                    read,
                })
            }
            Subject::Handle(handle) => {
                let handle = parse_handle(handle, entry)?;
                let record = self.record_in_scope(caller, &handle, entry).await?;
                if record.tenant != tenant.id {
                    return Err(Error::NotFound(format!(
                        "tenant {} holds no record {handle}",
                        tenant.id
                    )));
                }
                // The notice identifies the person by the last digits of their number: read
                // inside the locker, never returned whole.
                let masked = match &record.sealed {
                    Some(sealed) => {
                        mask_number(self.reopen(&tenant, &record, sealed).await?.digits())
                    }
                    None => String::new(),
                };
                let read = vec![self.record_read(record.clone())?];
                Ok(Found {
                    record: Some(record),
                    masked,
                    read,
                })
            }
        }
    }

    /// Reads the log from its first entry to `checkpoint`, checking that the chain read is
    /// the one the checkpoint signs (so no entry was left out, added or changed), and keeps
    /// the entries naming `handle` in `tenant`.
    fn read_log(
        &self,
        checkpoint: &Checkpoint,
        handle: Option<&str>,
        tenant: &str,
    ) -> Result<LogFindings> {
        let mut verifier = ChainVerifier::default();
        let mut findings = LogFindings::default();
        // A file that left the locker, by who recorded it and the request that did.
        let mut carried: HashMap<(String, String), String> = HashMap::new();
        let mut after = 0;
        'pages: loop {
            let rows = self.store.reader()?.audit_after(after, SCAN_PAGE)?;
            if rows.is_empty() {
                break;
            }
            for (seq, row) in rows {
                if seq > checkpoint.seq {
                    break 'pages;
                }
                after = seq;
                if !verifier.feed(seq, &row) {
                    break 'pages;
                }
                // Read in place: only the entries kept are copied out of their rows.
                let chained = RowRef::parse(&row).map_err(|e| {
                    Error::Integrity(format!("audit entry {seq} is unreadable: {e}"))
                })?;
                findings.head = Some((seq, chained.hash));
                let logged = chained.entry;
                if logged.action == Action::CarryOut.as_str()
                    && logged.outcome == "ALLOWED"
                    && let Some(file) = carried_file(logged.reason)
                {
                    carried.insert(
                        (logged.operator.to_owned(), logged.request_id.to_owned()),
                        file.to_owned(),
                    );
                }
                if handle.is_some_and(|h| h == logged.handle) && logged.tenant == tenant {
                    if logged.action == Action::CorrectionApprove.as_str()
                        && logged.outcome == "ALLOWED"
                    {
                        findings.corrections += 1;
                    }
                    findings.uses.push((logged.to_entry(), String::new()));
                }
            }
        }
        let report = verifier.finish();
        let signed = hex::decode(&checkpoint.chain_hash).ok();
        let complete = report.ok
            && findings.head.is_some_and(|(seq, hash)| {
                seq == checkpoint.seq && signed.as_deref() == Some(&hash[..])
            });
        if !complete {
            return Err(Error::Integrity(format!(
                "the audit log read does not end in checkpoint {} ({}): no notice is issued over an incomplete log",
                checkpoint.number, report.message
            )));
        }
        // An unseal whose numbers went into a file: the file named by the carry-out its
        // caller recorded under the same request id (the client sends one id for both; a
        // batch's items carry it as `ID.index`, and an id sent in metadata has no dot).
        for (logged, file) in &mut findings.uses {
            let request = logged
                .request_id
                .split_once('.')
                .map_or(logged.request_id.as_str(), |(base, _)| base);
            if logged.action == Action::Unseal.as_str()
                && logged.outcome == "ALLOWED"
                && let Some(named) = carried.get(&(logged.operator.clone(), request.to_owned()))
            {
                file.clone_from(named);
            }
        }
        Ok(findings)
    }

    fn disclosed_record(
        &self,
        record: &Record,
        corrections: u64,
        acquirer: String,
    ) -> DisclosedRecord {
        let purposes = record
            .purposes
            .iter()
            .map(|code| self.disclosed_purpose(code))
            .collect();
        let (status, left_on, dispose_on, suspension) = match &record.status {
            RecordStatus::Active => ("active", "", "", String::new()),
            RecordStatus::Suspended(s) => ("suspended", "", "", s.reason.clone()),
            RecordStatus::Retired(r) => (
                "retired",
                r.left_on.as_str(),
                r.dispose_on.as_str(),
                r.suspension
                    .as_ref()
                    .map(|s| s.reason.clone())
                    .unwrap_or_default(),
            ),
            RecordStatus::Disposed(_) => ("disposed", "", "", String::new()),
        };
        let verification = &record.verification;
        DisclosedRecord {
            handle: record.handle.to_string(),
            subject_ref: record.subject_ref.clone(),
            subject_kind: subject_kind_code(record.subject_kind).into(),
            purposes,
            acquired_at_ms: record.acquired_at_ms,
            acquired_by: acquirer,
            number_check: verification.number_check.clone().unwrap_or_default(),
            identity_check: verification.identity_check.clone().unwrap_or_default(),
            agent_authority: verification.agent_authority.clone().unwrap_or_default(),
            status: status.into(),
            left_on: left_on.into(),
            dispose_on: dispose_on.into(),
            suspension,
            corrections,
        }
    }

    /// A purpose with its 第4条 item and label (a code the catalogue no longer has, bare).
    fn disclosed_purpose(&self, code: &str) -> DisclosedPurpose {
        match self.purposes.get(code) {
            Some(p) => DisclosedPurpose {
                code: p.code.clone(),
                article: p.article.clone(),
                label_ja: p.label_ja.clone(),
                retention_years: p.retention_years,
            },
            None => DisclosedPurpose {
                code: code.to_owned(),
                article: String::new(),
                label_ja: String::new(),
                retention_years: 0,
            },
        }
    }

    /// Signs `body` with the active audit key.
    async fn sign_notice(&self, body: NoticeBody) -> Result<DisclosureNotice> {
        let key = self.store.reader()?.audit_keys()?.pop().ok_or_else(|| {
            Error::Unavailable("no audit signing key yet; no notice was issued".into())
        })?;
        let payload = signed_payload(&body, key.version, &key.key_id);
        let signature = self.keys.sign(KeyRef(key.key_ref.clone()), payload).await?;
        Ok(DisclosureNotice {
            format: FORMAT.into(),
            body,
            key_version: key.version,
            key_id: hex::encode(key.key_id),
            signature: hex::encode(signature),
        })
    }
}

/// The role of whoever sealed the record, from its SEAL entry (`handler` if none is found).
fn acquirer_role(findings: &LogFindings) -> &str {
    findings
        .uses
        .iter()
        .find(|(e, _)| e.action == Action::Seal.as_str() && e.outcome == "ALLOWED")
        .map_or("handler", |(e, _)| e.role.as_str())
}

fn check_withheld(withheld: &[Withholding]) -> Result<()> {
    for (i, item) in withheld.iter().enumerate() {
        if !WITHHOLDABLE.contains(&item.item.as_str()) {
            return Err(invalid(format!(
                "withheld item {:?} is unknown: one of {}",
                item.item,
                WITHHOLDABLE.join(", ")
            )));
        }
        if withheld[..i].iter().any(|w| w.item == item.item) {
            return Err(invalid(format!("item {} is withheld twice", item.item)));
        }
        if !(1..=3).contains(&item.ground) {
            return Err(invalid(format!(
                "the ground for withholding {} must be 1, 2 or 3 (第45条2①–③)",
                item.item
            )));
        }
        text::free_text("withholding reason", &item.reason, 512, true).map_err(invalid)?;
    }
    Ok(())
}

fn subject_kind_code(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::Staff => "staff",
        SubjectKind::NonStaffPayee => "non_staff_payee",
        SubjectKind::Dependent => "dependent",
        SubjectKind::EntrustedEmployee => "entrusted_employee",
    }
}
