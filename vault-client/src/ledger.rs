//! The 管理台帳, the usage report, the carry-out record and the incident investigation as rows
//! of text: what the CLI prints as CSV and the console shows and downloads, so both say the
//! same. Never a number: all are metadata and audit entries.

use crate::pb;

/// Column names of [`ledger_rows`], in order.
pub const LEDGER_COLUMNS: [&str; 15] = [
    "tenant",
    "tenant_name",
    "file_kind",
    "file_name",
    "responsible_person",
    "responsible_department",
    "management_area",
    "handling_area",
    "purposes",
    "active",
    "suspended",
    "retired",
    "disposed",
    "last_disposal",
    "access",
];

/// One row per tenant, in [`LEDGER_COLUMNS`] order; times in RFC 3339 (UTC), empty for never.
pub fn ledger_rows(ledger: &pb::LedgerResponse) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for e in &ledger.entries {
        let info = e.info.clone().unwrap_or_default();
        let purposes: Vec<String> = e
            .purposes
            .iter()
            .map(|p| {
                format!(
                    "{} ({} {}, {} years)",
                    p.code, p.article, p.label_ja, p.retention_years
                )
            })
            .collect();
        let access: Vec<String> = e
            .access
            .iter()
            .map(|a| {
                format!(
                    "{} [{}{}]{}",
                    a.operator_id,
                    a.role,
                    if a.disabled { ", disabled" } else { "" },
                    if a.purposes.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", a.purposes.join("/"))
                    }
                )
            })
            .collect();
        rows.push(vec![
            e.tenant.clone(),
            e.tenant_name.clone(),
            info.file_kind.clone(),
            info.file_name.clone(),
            info.responsible_person.clone(),
            info.responsible_department.clone(),
            info.management_area.clone(),
            info.handling_area.clone(),
            purposes.join("; "),
            e.active.to_string(),
            e.suspended.to_string(),
            e.retired.to_string(),
            e.disposed.to_string(),
            unix_time(e.last_disposal_unix),
            access.join("; "),
        ]);
    }
    rows
}

/// `unix` seconds as RFC 3339, empty for 0 (never).
pub fn unix_time(unix: i64) -> String {
    if unix == 0 {
        return String::new();
    }
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Column names of [`usage_rows`], in order.
pub const USAGE_COLUMNS: [&str; 6] = [
    "category", "action", "purpose", "operator", "tenant", "count",
];

/// One row per (category, action, purpose, operator, tenant) of a usage report.
pub fn usage_rows(report: &pb::UsageReportResponse) -> Vec<Vec<String>> {
    report
        .rows
        .iter()
        .map(|r| {
            vec![
                r.category.clone(),
                r.action.clone(),
                r.purpose.clone(),
                r.operator_id.clone(),
                r.tenant.clone(),
                r.count.to_string(),
            ]
        })
        .collect()
}

/// Column names of [`carry_out_rows`], in order.
pub const CARRY_OUT_COLUMNS: [&str; 7] = [
    "seq", "time", "operator", "tenant", "purpose", "outcome", "record",
];

/// Whether `entry` records a carry-out (持出し), allowed or refused.
pub fn is_carry_out(entry: &pb::AuditEntry) -> bool {
    entry.action == "CARRY_OUT"
}

/// One row per carry-out entry of the audit log, in [`CARRY_OUT_COLUMNS`] order: when (RFC
/// 3339, UTC), who, for which tenant and purpose, the outcome and what the daemon recorded
/// (how many numbers, in which form, the file's SHA-256). Never a number: the entry has none.
pub fn carry_out_rows<'a>(
    entries: impl IntoIterator<Item = &'a pb::AuditEntry>,
) -> Vec<Vec<String>> {
    entries
        .into_iter()
        .filter(|entry| is_carry_out(entry))
        .map(|entry| {
            vec![
                entry.seq.to_string(),
                unix_time(entry.time_unix_ms.div_euclid(1000)),
                entry.operator_id.clone(),
                entry.tenant.clone(),
                entry.purpose.clone(),
                entry.outcome.clone(),
                entry.reason.clone(),
            ]
        })
        .collect()
}

/// Column names of [`incident_rows`], in order.
pub const INCIDENT_COLUMNS: [&str; 2] = ["operator", "handle"];

/// One row per record an operator's unseals touched (an incident report), in
/// [`INCIDENT_COLUMNS`] order.
pub fn incident_rows(report: &pb::IncidentReportResponse) -> Vec<Vec<String>> {
    report
        .handles
        .iter()
        .map(|handle| vec![report.operator_id.clone(), handle.clone()])
        .collect()
}
