//! The reports of a period, each a page, a CSV and a PDF to file: the usage report
//! (運用状況の記録), the carry-out record (持出し記録) and the incident investigation (漏えい等).
//! None holds a number: the daemon builds them from the audit log.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use vault_client::ledger::{
    CARRY_OUT_COLUMNS, INCIDENT_COLUMNS, USAGE_COLUMNS, carry_out_rows, incident_rows,
    is_carry_out, usage_rows,
};
use vault_client::pb;
use vault_client::pdf::{carry_out_report, incident_report, usage_report};

use super::files::{csv_download, now_ms, pdf_download};
use super::{App, Chrome, Failure, Shared, SignedIn, page};
use crate::views;

/// A report period: `YYYY-MM-DD` days in Japan, `to` included.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Period {
    from: Option<String>,
    to: Option<String>,
}

/// Midnight in Japan at the start of `day` (`YYYY-MM-DD`), as Unix seconds.
fn jst_midnight(day: &str) -> Result<(time::Date, i64), Failure> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day, &format)
        .map_err(|_| Failure::BadInput(format!("日付は YYYY-MM-DD で指定してください: {day}")))?;
    let at = date
        .midnight()
        .assume_offset(time::macros::offset!(+9))
        .unix_timestamp();
    Ok((date, at))
}

impl Period {
    /// The days and the Unix range (`to` exclusive: the day after the last); this month so
    /// far by default.
    fn range(&self) -> Result<(String, String, i64, i64), Failure> {
        let today = time::OffsetDateTime::now_utc()
            .to_offset(time::macros::offset!(+9))
            .date();
        let first = today.replace_day(1).unwrap_or(today);
        let from = self
            .from
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| first.to_string());
        let to = self
            .to
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| today.to_string());
        let (from_date, from_unix) = jst_midnight(&from)?;
        let (to_date, to_unix) = jst_midnight(&to)?;
        if to_date < from_date {
            return Err(Failure::BadInput("期間の終わりが始まりより前です。".into()));
        }
        Ok((from, to, from_unix, to_unix + 86_400))
    }
}

async fn fetch_usage(
    app: &App,
    signed: &mut SignedIn,
    from_unix: i64,
    to_unix: i64,
) -> Result<pb::UsageReportResponse, Failure> {
    let answer = signed
        .client
        .admin
        .usage_report(pb::UsageReportRequest {
            from_unix,
            to_unix,
            tenant: String::new(),
        })
        .await;
    signed.answer(app, answer)
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    chrome: Chrome,
    from: String,
    to: String,
    scanned: u64,
    rows: Vec<pb::UsageRow>,
}

/// The usage report (利用実績) of a period.
pub async fn usage(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Query(period): Query<Period>,
) -> Result<Response, Failure> {
    let (from, to, from_unix, to_unix) = period.range()?;
    let report = fetch_usage(&app, &mut signed, from_unix, to_unix).await?;
    page(&UsagePage {
        chrome: Chrome::of(&signed.session, "利用状況"),
        from,
        to,
        scanned: report.entries_scanned,
        rows: report.rows,
    })
}

/// The usage report as CSV.
pub async fn usage_csv(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Query(period): Query<Period>,
) -> Result<Response, Failure> {
    let (from, to, from_unix, to_unix) = period.range()?;
    let report = fetch_usage(&app, &mut signed, from_unix, to_unix).await?;
    csv_download(
        &USAGE_COLUMNS,
        &usage_rows(&report),
        &format!("usage-{from}-{to}.csv"),
    )
}

/// The usage report as PDF, to print and file.
pub async fn usage_pdf(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Query(period): Query<Period>,
) -> Result<Response, Failure> {
    let (from, to, from_unix, to_unix) = period.range()?;
    let report = fetch_usage(&app, &mut signed, from_unix, to_unix).await?;
    let span = format!("{from} 〜 {to}");
    pdf_download(&app, &format!("usage-{from}-{to}.pdf"), move |font| {
        vault_client::pdf::report_pdf(&usage_report(&report, span), font, now_ms())
    })
    .await
}

/// The carry-out entries of the audit log in `[from_unix, to_unix)`, oldest first.
async fn fetch_carry_outs(
    app: &App,
    signed: &mut SignedIn,
    from_unix: i64,
    to_unix: i64,
) -> Result<Vec<pb::AuditEntry>, Failure> {
    let mut entries = signed
        .export(
            app,
            pb::AuditExportRequest {
                after_seq: 0,
                // The daemon sends the period's carry-outs only, not the whole log.
                actions: vec!["CARRY_OUT".into()],
                from_unix_ms: from_unix * 1000,
                to_unix_ms: to_unix * 1000,
            },
        )
        .await?;
    // What was asked for, whatever the daemon sent.
    entries.retain(is_carry_out);
    Ok(entries)
}

/// A carry-out's cells as the page and the PDF show them (日時, 操作者, 事業者, 利用目的, 結果,
/// 記録).
fn carry_out_cells(entry: pb::AuditEntry) -> Vec<String> {
    vec![
        views::jst_ms(entry.time_unix_ms),
        entry.operator_id,
        entry.tenant,
        entry.purpose,
        views::outcome_ja(&entry.outcome),
        entry.reason,
    ]
}

#[derive(Template)]
#[template(path = "carry_outs.html")]
struct CarryOutsPage {
    chrome: Chrome,
    from: String,
    to: String,
    rows: Vec<Vec<String>>,
}

/// The carry-out record (持出し記録) of a period: every file of numbers taken out of the
/// locker, by whom, for what, how many and in which form.
pub async fn carry_outs(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Query(period): Query<Period>,
) -> Result<Response, Failure> {
    let (from, to, from_unix, to_unix) = period.range()?;
    let entries = fetch_carry_outs(&app, &mut signed, from_unix, to_unix).await?;
    let rows = entries.into_iter().map(carry_out_cells).collect();
    page(&CarryOutsPage {
        chrome: Chrome::of(&signed.session, "持出し記録"),
        from,
        to,
        rows,
    })
}

/// The carry-out record as CSV (RFC 3339 times, the CLI's conventions).
pub async fn carry_outs_csv(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Query(period): Query<Period>,
) -> Result<Response, Failure> {
    let (from, to, from_unix, to_unix) = period.range()?;
    let entries = fetch_carry_outs(&app, &mut signed, from_unix, to_unix).await?;
    csv_download(
        &CARRY_OUT_COLUMNS,
        &carry_out_rows(&entries),
        &format!("carry-outs-{from}-{to}.csv"),
    )
}

/// The carry-out record as PDF, to print and file.
pub async fn carry_outs_pdf(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Query(period): Query<Period>,
) -> Result<Response, Failure> {
    let (from, to, from_unix, to_unix) = period.range()?;
    let entries = fetch_carry_outs(&app, &mut signed, from_unix, to_unix).await?;
    let rows = entries.into_iter().map(carry_out_cells).collect();
    let span = format!("{from} 〜 {to}");
    pdf_download(&app, &format!("carry-outs-{from}-{to}.pdf"), move |font| {
        vault_client::pdf::report_pdf(&carry_out_report(rows, span), font, now_ms())
    })
    .await
}

/// An incident investigation's query: one operator over a period.
#[derive(Debug, Default, serde::Deserialize)]
pub struct IncidentQuery {
    operator: Option<String>,
    #[serde(flatten)]
    period: Period,
}

/// The operator asked about, checked before any call: an operator id's characters only.
fn checked_operator(query: &IncidentQuery) -> Result<Option<String>, Failure> {
    let operator = query.operator.as_deref().unwrap_or("").trim();
    if operator.is_empty() {
        return Ok(None);
    }
    let valid = operator.len() <= 64
        && operator
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        return Err(Failure::BadInput(
            "操作者IDの形式が正しくありません。".into(),
        ));
    }
    Ok(Some(operator.to_owned()))
}

async fn fetch_incident(
    app: &App,
    signed: &mut SignedIn,
    operator_id: String,
    from_unix: i64,
    to_unix: i64,
) -> Result<pb::IncidentReportResponse, Failure> {
    let answer = signed
        .client
        .admin
        .incident_report(pb::IncidentReportRequest {
            operator_id,
            from_unix,
            to_unix,
        })
        .await;
    signed.answer(app, answer)
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    chrome: Chrome,
    operator: String,
    from: String,
    to: String,
    report: Option<pb::IncidentReportResponse>,
}

/// The incident investigation (漏えい等, 第12–14条): which records one operator's unseals
/// touched over a period, how often, and the refused attempts.
pub async fn incident(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Query(query): Query<IncidentQuery>,
) -> Result<Response, Failure> {
    let (from, to, from_unix, to_unix) = query.period.range()?;
    let operator = checked_operator(&query)?;
    let report = match &operator {
        Some(operator) => {
            Some(fetch_incident(&app, &mut signed, operator.clone(), from_unix, to_unix).await?)
        }
        None => None,
    };
    page(&IncidentPage {
        chrome: Chrome::of(&signed.session, "漏えい等の調査"),
        operator: operator.unwrap_or_default(),
        from,
        to,
        report,
    })
}

/// The incident investigation as CSV (one row per record touched).
pub async fn incident_csv(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Query(query): Query<IncidentQuery>,
) -> Result<Response, Failure> {
    let (from, to, from_unix, to_unix) = query.period.range()?;
    let operator = checked_operator(&query)?
        .ok_or_else(|| Failure::BadInput("操作者IDを指定してください。".into()))?;
    let report = fetch_incident(&app, &mut signed, operator.clone(), from_unix, to_unix).await?;
    csv_download(
        &INCIDENT_COLUMNS,
        &incident_rows(&report),
        &format!("incident-{operator}-{from}-{to}.csv"),
    )
}

/// The incident investigation as PDF, to print and file.
pub async fn incident_pdf(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Query(query): Query<IncidentQuery>,
) -> Result<Response, Failure> {
    let (from, to, from_unix, to_unix) = query.period.range()?;
    let operator = checked_operator(&query)?
        .ok_or_else(|| Failure::BadInput("操作者IDを指定してください。".into()))?;
    let report = fetch_incident(&app, &mut signed, operator.clone(), from_unix, to_unix).await?;
    let span = format!("{from} 〜 {to}");
    let name = format!("incident-{operator}-{from}-{to}.pdf");
    pdf_download(&app, &name, move |font| {
        vault_client::pdf::report_pdf(&incident_report(&report, span), font, now_ms())
    })
    .await
}
