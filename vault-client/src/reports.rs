//! `ledger`, `report usage`, `report incident` and `alerts`: the records the handling rules ask
//! for, as a table for people, CSV for spreadsheets or JSON for programs. They never contain a
//! number: the daemon builds them from metadata and the audit log.

use clap::ValueEnum;
use serde_json::{Value, json};
use vault_proto::v1 as pb;

use vault_client::ClientError;
use vault_client::ledger::unix_time;

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON document.
    Json,
}

/// `YYYY-MM-DD` → the Unix time of 00:00 JST that day; `end` gives the next day's (so `--to`
/// includes its whole day).
pub fn jst_day_start(text: &str, end: bool) -> Result<i64, ClientError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format)
        .map_err(|_| ClientError::Usage(format!("{text:?} is not a date as YYYY-MM-DD")))?;
    let date = if end {
        date.next_day().unwrap_or(date)
    } else {
        date
    };
    let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC);
    Ok(date.midnight().assume_offset(jst).unix_timestamp())
}

/// Prints rows (the first is the header) in `format`; `json` is the JSON form.
fn print(
    format: ReportFormat,
    header: &[&str],
    rows: &[Vec<String>],
    json: Value,
) -> Result<(), ClientError> {
    match format {
        ReportFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        }
        ReportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(std::io::stdout());
            let fail = |e: csv::Error| ClientError::Usage(format!("cannot write CSV: {e}"));
            writer.write_record(header).map_err(fail)?;
            for row in rows {
                writer.write_record(row).map_err(fail)?;
            }
            writer
                .flush()
                .map_err(|e| ClientError::Usage(format!("cannot write CSV: {e}")))?;
        }
        ReportFormat::Table => {
            let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for row in rows {
                for (i, cell) in row.iter().enumerate() {
                    widths[i] = widths[i].max(cell.chars().count());
                }
            }
            let line = |cells: Vec<&str>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            println!("{}", line(header.to_vec()));
            for row in rows {
                println!("{}", line(row.iter().map(String::as_str).collect()));
            }
        }
    }
    Ok(())
}

/// Prints the 管理台帳: one row per tenant.
pub fn ledger(format: ReportFormat, ledger: &pb::LedgerResponse) -> Result<(), ClientError> {
    let header = vault_client::ledger::LEDGER_COLUMNS;
    let rows = vault_client::ledger::ledger_rows(ledger);
    let mut json = Vec::new();
    for e in &ledger.entries {
        let info = e.info.clone().unwrap_or_default();
        json.push(json!({
            "tenant": e.tenant, "tenant_name": e.tenant_name,
            "file_kind": info.file_kind, "file_name": info.file_name,
            "responsible_person": info.responsible_person,
            "responsible_department": info.responsible_department,
            "management_area": info.management_area, "handling_area": info.handling_area,
            "purposes": e.purposes.iter().map(|p| json!({
                "code": p.code, "article": p.article, "label_ja": p.label_ja,
                "retention_years": p.retention_years,
            })).collect::<Vec<_>>(),
            "records": {"active": e.active, "suspended": e.suspended, "retired": e.retired, "disposed": e.disposed},
            "last_disposal": unix_time(e.last_disposal_unix),
            "access": e.access.iter().map(|a| json!({
                "operator_id": a.operator_id, "role": a.role, "disabled": a.disabled, "purposes": a.purposes,
            })).collect::<Vec<_>>(),
        }));
    }
    if format == ReportFormat::Table {
        ledger_pages(ledger);
        return Ok(());
    }
    print(format, &header, &rows, json!({ "ledger": json }))
}

/// Columns a terminal gives `text` (East Asian characters take two).
fn columns(text: &str) -> usize {
    text.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum()
}

/// `items` joined by ", " in lines of at most `width` columns, each after `indent`.
fn wrapped(items: &[String], indent: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for item in items {
        let candidate = if line.is_empty() {
            item.clone()
        } else {
            format!("{line}, {item}")
        };
        if !line.is_empty() && columns(indent) + columns(&candidate) > width {
            lines.push(format!("{indent}{line},"));
            line = item.clone();
        } else {
            line = candidate;
        }
    }
    if !line.is_empty() {
        lines.push(format!("{indent}{line}"));
    }
    lines
}

/// The 管理台帳 for a terminal: one block per tenant, one field per line, no line wider than
/// 100 columns (one row per tenant does not fit any screen).
fn ledger_pages(ledger: &pb::LedgerResponse) {
    const WIDTH: usize = 100;
    for (i, e) in ledger.entries.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let info = e.info.clone().unwrap_or_default();
        println!("== {} {}", e.tenant, e.tenant_name);
        for (name, value) in [
            ("file_kind", info.file_kind),
            ("file_name", info.file_name),
            ("responsible_person", info.responsible_person),
            ("responsible_department", info.responsible_department),
            ("management_area", info.management_area),
            ("handling_area", info.handling_area),
            (
                "records",
                format!(
                    "active {}, suspended {}, retired {}, disposed {}",
                    e.active, e.suspended, e.retired, e.disposed
                ),
            ),
            ("last_disposal", unix_time(e.last_disposal_unix)),
        ] {
            println!("{name:<24}{value}");
        }
        println!("purposes");
        for p in &e.purposes {
            println!(
                "  {:<28}{} {} ({} years)",
                p.code, p.article, p.label_ja, p.retention_years
            );
        }
        println!("access");
        for a in &e.access {
            let role = format!("{}{}", a.role, if a.disabled { ", disabled" } else { "" });
            println!("  {:<28}{role}", a.operator_id);
            for line in wrapped(&a.purposes, "      ", WIDTH) {
                println!("{line}");
            }
        }
    }
}

/// Prints the usage report: one row per (category, action, purpose, operator, tenant).
pub fn usage(format: ReportFormat, report: &pb::UsageReportResponse) -> Result<(), ClientError> {
    let header = vault_client::ledger::USAGE_COLUMNS;
    let rows = vault_client::ledger::usage_rows(report);
    let json = json!({
        "entries_scanned": report.entries_scanned,
        "rows": report.rows.iter().map(|r| json!({
            "category": r.category, "action": r.action, "purpose": r.purpose,
            "operator": r.operator_id, "tenant": r.tenant, "count": r.count,
        })).collect::<Vec<_>>(),
    });
    print(format, &header, &rows, json)
}

/// Prints an incident report: counts, then one row per handle.
pub fn incident(
    format: ReportFormat,
    report: &pb::IncidentReportResponse,
) -> Result<(), ClientError> {
    let json = json!({
        "operator": report.operator_id, "unseals": report.unseals, "subjects": report.subjects,
        "denied": report.denied, "tenants": report.tenants, "handles": report.handles,
    });
    if format == ReportFormat::Json {
        return print(format, &[], &[], json);
    }
    eprintln!(
        "operator {}: {} unseals of {} records ({} refused) in tenants {}",
        report.operator_id,
        report.unseals,
        report.subjects,
        report.denied,
        report.tenants.join(", ")
    );
    let rows = vault_client::ledger::incident_rows(report);
    print(format, &vault_client::ledger::INCIDENT_COLUMNS, &rows, json)
}

/// Prints the carry-outs (持出し記録): one row per carry-out entry of the period.
pub fn carry_outs(format: ReportFormat, entries: &[pb::AuditEntry]) -> Result<(), ClientError> {
    let rows = vault_client::ledger::carry_out_rows(entries);
    let json = json!({
        "carry_outs": rows.iter().map(|row| {
            vault_client::ledger::CARRY_OUT_COLUMNS
                .iter()
                .zip(row)
                .map(|(column, cell)| ((*column).to_owned(), Value::String(cell.clone())))
                .collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
    });
    print(
        format,
        &vault_client::ledger::CARRY_OUT_COLUMNS,
        &rows,
        json,
    )
}

/// One alert, as a line of text or a JSON object.
pub fn print_alert(format: crate::output::Format, alert: &pb::AuditEntry) {
    match format {
        crate::output::Format::Json => println!(
            "{}",
            json!({"seq": alert.seq, "time_ms": alert.time_unix_ms, "operator": alert.operator_id, "reason": alert.reason})
        ),
        crate::output::Format::Text => println!(
            "{}\t{}\t{}",
            unix_time(alert.time_unix_ms.div_euclid(1000)),
            alert.operator_id,
            alert.reason
        ),
    }
}
