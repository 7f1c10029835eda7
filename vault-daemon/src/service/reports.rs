//! The records the handling rules ask for, computed from the store and the audit log — never
//! containing a number: the 管理台帳 (第16条), the 運用状況の記録 (第15条) and, for 漏えい等
//! (第12–14条), what one operator's unseals touched.

use std::collections::{BTreeMap, BTreeSet};

use vault_audit::entry::AuditEntry as Entry;

use super::invalid;
use crate::audit::entry::{AuditEntry, EntryOutcome};
use crate::domain::operator::Role;
use crate::domain::policy::Action;
use crate::domain::purpose::Purpose;
use crate::domain::record::RecordStatus;
use crate::domain::tenant_info::{TenantInfo, TenantInfoPatch};
use crate::domain::text;
use crate::error::{Error, Result};
use crate::service::audit_log::Visibility;
use crate::service::{Caller, Locker, RequestContext};
use crate::store::mutation::{Mutation, MutationOutcome};

const SCAN_PAGE: usize = 1000;

/// One operator's access to a tenant, for the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerAccess {
    /// Operator id.
    pub operator: String,
    /// The operator's name, as the admin gave it (may be empty).
    pub display_name: String,
    /// Role name.
    pub role: &'static str,
    /// Whether the operator is disabled.
    pub disabled: bool,
    /// Purposes granted on the tenant.
    pub purposes: Vec<String>,
}

/// One tenant's page of the 管理台帳.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Tenant id.
    pub tenant: String,
    /// Tenant name.
    pub tenant_name: String,
    /// Details set by an admin.
    pub info: TenantInfo,
    /// Purposes the tenant's records and grants use.
    pub purposes: Vec<Purpose>,
    /// Records by status.
    pub active: u64,
    /// Suspended records.
    pub suspended: u64,
    /// Retired records (awaiting disposal).
    pub retired: u64,
    /// Disposed records (tombstones).
    pub disposed: u64,
    /// Latest disposal, ms since the Unix epoch.
    pub last_disposal_ms: Option<i64>,
    /// Who has access.
    pub access: Vec<LedgerAccess>,
}

/// A count of audit entries of one kind over the report's period.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UsageRow {
    /// acquisition, purpose_change, use, carry_out, disposal, correction, retirement, suspension,
    /// token_issue, alert, denial.
    pub category: &'static str,
    /// Audit action.
    pub action: String,
    /// Purpose (uses).
    pub purpose: String,
    /// Operator.
    pub operator: String,
    /// Tenant.
    pub tenant: String,
    /// How many.
    pub count: u64,
}

/// What one operator's unseals touched over a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentReport {
    /// Numbers released to the operator.
    pub unseals: u64,
    /// Distinct handles those unseals touched.
    pub handles: Vec<String>,
    /// Refused attempts.
    pub denied: u64,
    /// Tenants touched.
    pub tenants: Vec<String>,
}

/// The usage category of an audit entry, if it counts in the 運用状況の記録: every refusal, and
/// the allowed calls of the actions [`Action::usage_category`] counts.
fn category(entry: &Entry) -> Option<&'static str> {
    if entry.outcome == "DENIED" {
        return Some("denial");
    }
    if entry.outcome != "ALLOWED" {
        return None;
    }
    Action::from_name(&entry.action).and_then(Action::usage_category)
}

/// The sort key of a 第4条 item such as `1-④` or `10-②`: its section as a number, then the
/// rest (circled numbers sort in order as characters).
fn article_order(article: &str) -> (u32, String) {
    let digits: String = article.chars().take_while(char::is_ascii_digit).collect();
    (
        digits.parse().unwrap_or(u32::MAX),
        article[digits.len()..].to_owned(),
    )
}

impl Locker {
    /// Reads every audit entry in `[from_ms, to_ms)` the visibility shows.
    fn scan_audit(
        &self,
        visibility: &Visibility,
        from_ms: i64,
        to_ms: i64,
        each: impl FnMut(&Entry),
    ) -> Result<u64> {
        super::off_the_worker(|| self.scan_audit_here(visibility, from_ms, to_ms, each))
    }

    /// [`Locker::scan_audit`] on the calling thread.
    fn scan_audit_here(
        &self,
        visibility: &Visibility,
        from_ms: i64,
        to_ms: i64,
        mut each: impl FnMut(&Entry),
    ) -> Result<u64> {
        let mut after = 0;
        let mut scanned = 0;
        loop {
            let rows = self.store.reader()?.audit_after(after, SCAN_PAGE)?;
            let Some((last, _)) = rows.last() else {
                return Ok(scanned);
            };
            after = *last;
            for chained in super::audit_log::parse_rows(rows, visibility)? {
                let entry = &chained.entry;
                if entry.time_ms >= from_ms && entry.time_ms < to_ms {
                    scanned += 1;
                    each(entry);
                }
            }
        }
    }

    /// Sets all of a tenant's ledger details (admins): a change of every field.
    pub async fn set_tenant_info(
        &self,
        ctx: &RequestContext,
        info: TenantInfo,
    ) -> Result<TenantInfo> {
        self.update_tenant_info(ctx, TenantInfoPatch::from(info))
            .await
    }

    /// Changes the ledger details given in `patch`, keeping the others (admins).
    pub async fn update_tenant_info(
        &self,
        ctx: &RequestContext,
        patch: TenantInfoPatch,
    ) -> Result<TenantInfo> {
        let (_caller, mut entry) = self.begin(ctx, Action::TenantInfoSet).await?;
        let body = (|| {
            text::identifier("tenant", &patch.tenant).map_err(invalid)?;
            entry.tenant = patch.tenant.clone();
            let given = patch.given();
            if given.is_empty() {
                return Err(invalid("no field to change"));
            }
            for (name, value) in &given {
                text::free_text(name, value, 256, false).map_err(invalid)?;
            }
            let names: Vec<&str> = given.iter().map(|(name, _)| *name).collect();
            entry.allow(format!("ledger details changed: {}", names.join(",")));
            Ok(((), Mutation::UpdateTenantInfo(Box::new(patch.clone()))))
        })();
        match self.finish(entry, body).await? {
            ((), MutationOutcome::TenantInfo(info)) => Ok(*info),
            (_, other) => Err(Error::Internal(format!(
                "unexpected outcome of a ledger change {other:?}"
            ))),
        }
    }

    /// The 管理台帳 of the tenants in the caller's scope (or just `tenant`).
    pub async fn ledger(&self, ctx: &RequestContext, tenant: &str) -> Result<Vec<LedgerEntry>> {
        let (caller, mut entry) = self.begin(ctx, Action::LedgerRead).await?;
        let body = self.ledger_body(&caller, &mut entry, tenant).await;
        self.finish(entry, body).await.map(|(ledger, _)| ledger)
    }

    async fn ledger_body(
        &self,
        caller: &Caller,
        entry: &mut AuditEntry,
        tenant: &str,
    ) -> Result<(Vec<LedgerEntry>, Mutation)> {
        if !tenant.is_empty() {
            text::identifier("tenant", tenant).map_err(invalid)?;
            entry.tenant = tenant.to_owned();
        }
        let visibility = Visibility::of(caller);
        let reader = self.store.reader()?;
        let mut ledger: BTreeMap<String, LedgerEntry> = BTreeMap::new();
        let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for t in reader.tenants()? {
            if (!tenant.is_empty() && t.id != tenant) || !visibility.shows_tenant(&t.id) {
                continue;
            }
            let info = reader.tenant_info(&t.id)?.unwrap_or_else(|| TenantInfo {
                tenant: t.id.clone(),
                ..TenantInfo::default()
            });
            ledger.insert(
                t.id.clone(),
                LedgerEntry {
                    tenant: t.id.clone(),
                    tenant_name: t.name.clone(),
                    info,
                    purposes: Vec::new(),
                    active: 0,
                    suspended: 0,
                    retired: 0,
                    disposed: 0,
                    last_disposal_ms: None,
                    access: Vec::new(),
                },
            );
        }
        if !tenant.is_empty() && ledger.is_empty() {
            return Err(Error::NotFound(format!("no tenant {tenant} in your scope")));
        }
        // Every row counted is a version the authenticated log names (see `scan`).
        let mut scan = super::scan::RecordScan::default();
        scan.read_all(self, |record| {
            let Some(page) = ledger.get_mut(&record.tenant) else {
                return;
            };
            used.entry(record.tenant.clone())
                .or_default()
                .extend(record.purposes.iter().cloned());
            match &record.status {
                RecordStatus::Active => page.active += 1,
                RecordStatus::Suspended(_) => page.suspended += 1,
                RecordStatus::Retired(_) => page.retired += 1,
                RecordStatus::Disposed(tombstone) => {
                    page.disposed += 1;
                    page.last_disposal_ms =
                        page.last_disposal_ms.max(Some(tombstone.disposed_at_ms));
                }
            }
        })?;
        drop(reader);
        scan.settle(self).await?;
        // Operators as the authenticated log names them (the daemon's authority view).
        let authority = self.writer.authority().snapshot();
        for operator in authority.operators() {
            for (tenant_id, page) in ledger.iter_mut() {
                let purposes: Vec<String> = operator
                    .grants
                    .iter()
                    .filter(|g| &g.tenant == tenant_id)
                    .map(|g| g.purpose.clone())
                    .collect();
                let global = matches!(operator.role, Role::Admin | Role::Auditor);
                if purposes.is_empty() && !global {
                    continue;
                }
                used.entry(tenant_id.clone())
                    .or_default()
                    .extend(purposes.iter().cloned());
                page.access.push(LedgerAccess {
                    operator: operator.id.clone(),
                    display_name: operator.display_name.clone(),
                    role: operator.role.as_str(),
                    disabled: operator.disabled,
                    purposes,
                });
            }
        }
        for (tenant_id, page) in ledger.iter_mut() {
            page.purposes = used
                .get(tenant_id)
                .into_iter()
                .flatten()
                .filter_map(|code| self.purposes.get(code).cloned())
                .collect();
            // In the order of 第4条's list (1-①, 1-②, …, 2-①), as the rules print it.
            page.purposes
                .sort_by_cached_key(|purpose| article_order(&purpose.article));
        }
        let ledger: Vec<LedgerEntry> = ledger.into_values().collect();
        entry.allow(format!("ledger of {} tenants", ledger.len()));
        Ok((ledger, Mutation::None))
    }

    /// The 運用状況の記録 over `[from_ms, to_ms)`, from the audit log.
    pub async fn usage_report(
        &self,
        ctx: &RequestContext,
        from_ms: i64,
        to_ms: i64,
        tenant: &str,
    ) -> Result<(Vec<UsageRow>, u64)> {
        let (caller, mut entry) = self.begin(ctx, Action::UsageReport).await?;
        let body = (|| {
            if from_ms >= to_ms {
                return Err(invalid("the period is empty: from must be before to"));
            }
            if !tenant.is_empty() {
                text::identifier("tenant", tenant).map_err(invalid)?;
                entry.tenant = tenant.to_owned();
            }
            let visibility = Visibility::of(&caller);
            let mut counts: BTreeMap<(&'static str, String, String, String, String), u64> =
                BTreeMap::new();
            let scanned = self.scan_audit(&visibility, from_ms, to_ms, |e| {
                if !tenant.is_empty() && e.tenant != tenant {
                    return;
                }
                if let Some(category) = category(e) {
                    let purpose = if category == "use" {
                        e.purpose.clone()
                    } else {
                        String::new()
                    };
                    *counts
                        .entry((
                            category,
                            e.action.clone(),
                            purpose,
                            e.operator.clone(),
                            e.tenant.clone(),
                        ))
                        .or_default() += 1;
                }
            })?;
            let rows: Vec<UsageRow> = counts
                .into_iter()
                .map(
                    |((category, action, purpose, operator, tenant), count)| UsageRow {
                        category,
                        action,
                        purpose,
                        operator,
                        tenant,
                        count,
                    },
                )
                .collect();
            entry.allow(format!(
                "usage report: {scanned} entries, {} rows",
                rows.len()
            ));
            Ok(((rows, scanned), Mutation::None))
        })();
        self.finish(entry, body).await.map(|(report, _)| report)
    }

    /// What `operator`'s unseals touched over `[from_ms, to_ms)` (admins, auditors).
    pub async fn incident_report(
        &self,
        ctx: &RequestContext,
        operator: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<IncidentReport> {
        let (_caller, mut entry) = self.begin(ctx, Action::IncidentReport).await?;
        let body = (|| {
            text::identifier("operator_id", operator).map_err(invalid)?;
            if from_ms >= to_ms {
                return Err(invalid("the period is empty: from must be before to"));
            }
            let mut report = IncidentReport::default();
            let mut handles = BTreeSet::new();
            let mut tenants = BTreeSet::new();
            self.scan_audit(&Visibility::All, from_ms, to_ms, |e| {
                if e.operator != operator || e.action != "UNSEAL" {
                    return;
                }
                match e.outcome.as_str() {
                    "ALLOWED" => {
                        report.unseals += 1;
                        handles.insert(e.handle.clone());
                        tenants.insert(e.tenant.clone());
                    }
                    "DENIED" => report.denied += 1,
                    _ => {}
                }
            })?;
            report.handles = handles.into_iter().collect();
            report.tenants = tenants.into_iter().collect();
            entry.allow(format!(
                "incident report on {operator}: {} unseals of {} records",
                report.unseals,
                report.handles.len()
            ));
            Ok((report, Mutation::None))
        })();
        self.finish(entry, body).await.map(|(report, _)| report)
    }
}
