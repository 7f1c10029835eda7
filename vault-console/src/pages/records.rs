//! The records the handling rules ask for, as pages and as files to file: the 管理台帳, the
//! usage report, the carry-out record and the incident investigation (each a table, a PDF and a
//! CSV), and the 削除証明書 (list, page, PDF, signed JSON).
//! None holds a number: the daemon builds them from metadata and the audit log.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures::StreamExt;
use vault_client::ledger::{
    CARRY_OUT_COLUMNS, INCIDENT_COLUMNS, LEDGER_COLUMNS, USAGE_COLUMNS, carry_out_rows,
    incident_rows, is_carry_out, ledger_rows, usage_rows,
};
use vault_client::pb;
use vault_client::pdf::{Report, usage_report};

use super::{App, Chrome, Failure, Shared, SignedIn, download, page};
use crate::views;

/// The ledger's columns as the rules name them, in [`LEDGER_COLUMNS`] order.
const LEDGER_LABELS: [&str; 15] = [
    "事業者ID",
    "事業者名",
    "特定個人情報ファイルの種類",
    "特定個人情報ファイルの名称",
    "責任者",
    "取扱部署",
    "管理区域",
    "取扱区域",
    "利用目的",
    "保管中",
    "利用停止中",
    "退職等（廃棄待ち）",
    "削除済み",
    "最終削除日時",
    "アクセスできる者",
];

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Lays out a PDF off the request's worker (fonts are parsed, glyphs embedded).
async fn render_pdf(
    app: &App,
    lay_out: impl FnOnce(krilla::text::Font) -> Result<Vec<u8>, vault_client::ClientError>
    + Send
    + 'static,
) -> Result<Vec<u8>, Failure> {
    let font_path = app.font.clone();
    tokio::task::spawn_blocking(move || {
        let font = vault_client::pdf::find_font(font_path.as_deref())?;
        lay_out(font)
    })
    .await
    .map_err(|e| Failure::Internal(e.to_string()))?
    .map_err(|e| Failure::Internal(format!("the PDF could not be made: {e}")))
}

fn csv_bytes(header: &[&str], rows: &[Vec<String>]) -> Result<Vec<u8>, Failure> {
    // A byte-order mark: spreadsheet programs in Japanese offices then read UTF-8 as UTF-8.
    let mut writer = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    writer
        .write_record(header)
        .map_err(|e| Failure::Internal(e.to_string()))?;
    for row in rows {
        writer
            .write_record(row)
            .map_err(|e| Failure::Internal(e.to_string()))?;
    }
    writer
        .into_inner()
        .map_err(|e| Failure::Internal(e.to_string()))
}

async fn fetch_ledger(app: &App, signed: &mut SignedIn) -> Result<pb::LedgerResponse, Failure> {
    let answer = signed
        .client
        .admin
        .ledger(pb::LedgerRequest {
            tenant: String::new(),
        })
        .await;
    signed.answer(app, answer)
}

struct TenantSection {
    title: String,
    fields: Vec<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "ledger.html")]
struct LedgerPage {
    chrome: Chrome,
    tenants: Vec<TenantSection>,
}

/// The 管理台帳 as a page.
pub async fn ledger(State(app): State<Shared>, mut signed: SignedIn) -> Result<Response, Failure> {
    let ledger = fetch_ledger(&app, &mut signed).await?;
    let rows = ledger_rows(&ledger);
    let tenants = ledger
        .entries
        .iter()
        .zip(rows)
        .map(|(entry, row)| {
            let mut fields: Vec<(&'static str, String)> =
                LEDGER_LABELS.iter().copied().zip(row).collect();
            // The page shows Japan's time; the CSV keeps RFC 3339 for programs.
            if let Some(field) = fields
                .iter_mut()
                .find(|(label, _)| *label == "最終削除日時")
            {
                field.1 = views::jst(entry.last_disposal_unix);
            }
            TenantSection {
                title: if entry.tenant_name.is_empty() {
                    entry.tenant.clone()
                } else {
                    format!("{}（{}）", entry.tenant_name, entry.tenant)
                },
                fields,
            }
        })
        .collect();
    page(&LedgerPage {
        chrome: Chrome::of(&signed.session, "特定個人情報管理台帳"),
        tenants,
    })
}

/// The 管理台帳 as CSV (the CLI's columns).
pub async fn ledger_csv(
    State(app): State<Shared>,
    mut signed: SignedIn,
) -> Result<Response, Failure> {
    let ledger = fetch_ledger(&app, &mut signed).await?;
    let bytes = csv_bytes(&LEDGER_COLUMNS, &ledger_rows(&ledger))?;
    Ok(download(bytes, "text/csv; charset=utf-8", "ledger.csv"))
}

/// The 管理台帳 as PDF, for filing.
pub async fn ledger_pdf(
    State(app): State<Shared>,
    mut signed: SignedIn,
) -> Result<Response, Failure> {
    let ledger = fetch_ledger(&app, &mut signed).await?;
    let bytes = render_pdf(&app, move |font| {
        vault_client::pdf::ledger_pdf(&ledger, font, now_ms())
    })
    .await?;
    Ok(download(bytes, "application/pdf", "ledger.pdf"))
}

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
    let bytes = csv_bytes(&USAGE_COLUMNS, &usage_rows(&report))?;
    Ok(download(
        bytes,
        "text/csv; charset=utf-8",
        &format!("usage-{from}-{to}.csv"),
    ))
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
    let bytes = render_pdf(&app, move |font| {
        vault_client::pdf::report_pdf(&usage_report(&report, span), font, now_ms())
    })
    .await?;
    Ok(download(
        bytes,
        "application/pdf",
        &format!("usage-{from}-{to}.pdf"),
    ))
}

/// The carry-out entries of the audit log in `[from_unix, to_unix)`, oldest first.
async fn fetch_carry_outs(
    app: &App,
    signed: &mut SignedIn,
    from_unix: i64,
    to_unix: i64,
) -> Result<Vec<pb::AuditEntry>, Failure> {
    let answer = signed
        .client
        .admin
        .audit_export(pb::AuditExportRequest { after_seq: 0 })
        .await;
    let mut stream = signed.answer(app, answer)?;
    let (from_ms, to_ms) = (from_unix * 1000, to_unix * 1000);
    let mut entries = Vec::new();
    while let Some(entry) = stream.next().await {
        let entry = entry.map_err(Failure::from)?;
        if is_carry_out(&entry) && (from_ms..to_ms).contains(&entry.time_unix_ms) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// A carry-out as the page shows it.
struct CarryOutRow {
    time: String,
    operator: String,
    tenant: String,
    purpose: String,
    outcome: String,
    record: String,
}

#[derive(Template)]
#[template(path = "carry_outs.html")]
struct CarryOutsPage {
    chrome: Chrome,
    from: String,
    to: String,
    rows: Vec<CarryOutRow>,
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
    let rows = entries
        .into_iter()
        .map(|entry| CarryOutRow {
            time: views::jst_ms(entry.time_unix_ms),
            operator: entry.operator_id,
            tenant: entry.tenant,
            purpose: entry.purpose,
            outcome: views::outcome_ja(&entry.outcome),
            record: entry.reason,
        })
        .collect();
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
    let bytes = csv_bytes(&CARRY_OUT_COLUMNS, &carry_out_rows(&entries))?;
    Ok(download(
        bytes,
        "text/csv; charset=utf-8",
        &format!("carry-outs-{from}-{to}.csv"),
    ))
}

/// The carry-out record as PDF, to print and file.
pub async fn carry_outs_pdf(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Query(period): Query<Period>,
) -> Result<Response, Failure> {
    let (from, to, from_unix, to_unix) = period.range()?;
    let entries = fetch_carry_outs(&app, &mut signed, from_unix, to_unix).await?;
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|entry| {
            vec![
                views::jst_ms(entry.time_unix_ms),
                entry.operator_id.clone(),
                entry.tenant.clone(),
                entry.purpose.clone(),
                views::outcome_ja(&entry.outcome),
                entry.reason.clone(),
            ]
        })
        .collect();
    let span = format!("{from} 〜 {to}");
    let bytes = render_pdf(&app, move |font| {
        let report = Report {
            title: "特定個人情報の持出し記録",
            facts: vec![("期間", span), ("件数", format!("{} 件", rows.len()))],
            columns: &["日時", "操作者", "事業者", "利用目的", "結果", "記録"],
            shares: &[1.3, 1.3, 0.7, 1.7, 0.5, 2.5],
            rows,
            empty: "この期間の持出しはありません。",
        };
        vault_client::pdf::report_pdf(&report, font, now_ms())
    })
    .await?;
    Ok(download(
        bytes,
        "application/pdf",
        &format!("carry-outs-{from}-{to}.pdf"),
    ))
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
    let bytes = csv_bytes(&INCIDENT_COLUMNS, &incident_rows(&report))?;
    Ok(download(
        bytes,
        "text/csv; charset=utf-8",
        &format!("incident-{operator}-{from}-{to}.csv"),
    ))
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
    let bytes = render_pdf(&app, move |font| {
        let rows = report
            .handles
            .iter()
            .enumerate()
            .map(|(i, handle)| vec![(i + 1).to_string(), handle.clone()])
            .collect();
        let layout = Report {
            title: "漏えい等の調査記録",
            facts: vec![
                ("対象の操作者", report.operator_id.clone()),
                ("期間", span),
                ("番号の取出し", format!("{} 回", report.unseals)),
                ("対象となった本人", format!("{} 人", report.subjects)),
                ("拒否された試行", format!("{} 回", report.denied)),
                ("事業者", report.tenants.join("、")),
            ],
            columns: &["#", "記録のハンドル"],
            shares: &[0.4, 4.0],
            rows,
            empty: "この期間に取り出された記録はありません。",
        };
        vault_client::pdf::report_pdf(&layout, font, now_ms())
    })
    .await?;
    Ok(download(bytes, "application/pdf", &name))
}

struct DisposalRow {
    time: String,
    handle: String,
    tenant: String,
    by: String,
}

#[derive(Template)]
#[template(path = "certificates.html")]
struct CertificatesPage {
    chrome: Chrome,
    rows: Vec<DisposalRow>,
}

/// Every disposed record (from the audit log), newest first, with its certificate's links.
pub async fn certificates(
    State(app): State<Shared>,
    mut signed: SignedIn,
) -> Result<Response, Failure> {
    let answer = signed
        .client
        .admin
        .audit_export(pb::AuditExportRequest { after_seq: 0 })
        .await;
    let mut stream = signed.answer(&app, answer)?;
    let mut rows = Vec::new();
    while let Some(entry) = stream.next().await {
        let entry = entry.map_err(Failure::from)?;
        let disposal = entry.action == "DISPOSE" || entry.action == "SCHEDULED_DISPOSE";
        if disposal && entry.outcome == "ALLOWED" && !entry.handle.is_empty() {
            rows.push(DisposalRow {
                time: views::jst_ms(entry.time_unix_ms),
                handle: entry.handle,
                tenant: entry.tenant,
                by: entry.operator_id,
            });
        }
    }
    rows.reverse();
    page(&CertificatesPage {
        chrome: Chrome::of(&signed.session, "削除証明書"),
        rows,
    })
}

/// A handle as the daemon issues them (`mnh_` and hex): anything else is refused before a
/// call, and never lands in a header or a file name.
fn checked_handle(handle: &str) -> Result<&str, Failure> {
    let hex = handle.strip_prefix("mnh_").unwrap_or("");
    if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::BadInput(
            "ハンドルの形式が正しくありません。".into(),
        ));
    }
    Ok(handle)
}

async fn fetch_certificate(
    app: &App,
    signed: &mut SignedIn,
    handle: &str,
) -> Result<pb::DeletionCertificate, Failure> {
    let handle = checked_handle(handle)?.to_owned();
    let answer = signed
        .client
        .locker
        .get_deletion_certificate(pb::CertificateRequest { handle })
        .await;
    signed.answer(app, answer)
}

#[derive(Template)]
#[template(path = "certificate.html")]
struct CertificatePage {
    chrome: Chrome,
    handle: String,
    key_id: String,
    fields: Vec<(&'static str, String)>,
}

/// One deletion certificate, with how to verify it offline.
pub async fn certificate(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Path(handle): Path<String>,
) -> Result<Response, Failure> {
    let c = fetch_certificate(&app, &mut signed, &handle).await?;
    let office = if c.tenant_name.is_empty() {
        c.tenant.clone()
    } else {
        format!("{}（{}）", c.tenant_name, c.tenant)
    };
    let responsible = if c.responsible == "scheduler" {
        "scheduler（保存期間経過による自動廃棄）".to_owned()
    } else {
        c.responsible.clone()
    };
    page(&CertificatePage {
        chrome: Chrome::of(&signed.session, "削除証明書"),
        handle: c.handle.clone(),
        key_id: c.key_id.clone(),
        fields: vec![
            ("事業者", office),
            ("特定個人情報ファイルの種類", c.file_kind.clone()),
            ("特定個人情報ファイルの名称", c.file_name.clone()),
            ("ハンドル", c.handle.clone()),
            ("本人の参照番号", c.subject_ref.clone()),
            ("削除日時", views::jst_ms(c.disposed_at_ms)),
            ("削除の方法", c.method.clone()),
            ("実施者", responsible),
            ("責任者", c.responsible_person.clone()),
            ("取扱部署", c.responsible_department.clone()),
            ("署名鍵", format!("監査鍵 v{}", c.key_version)),
        ],
    })
}

/// The certificate as a one-page PDF with seal boxes.
pub async fn certificate_pdf(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Path(handle): Path<String>,
) -> Result<Response, Failure> {
    let c = fetch_certificate(&app, &mut signed, &handle).await?;
    let name = format!("certificate-{}.pdf", c.handle);
    let bytes = render_pdf(&app, move |font| {
        vault_client::pdf::certificate_pdf(&c, font, now_ms())
    })
    .await?;
    Ok(download(bytes, "application/pdf", &name))
}

/// The certificate's signed fields as JSON, for `vault-client certificate verify`.
pub async fn certificate_json(
    State(app): State<Shared>,
    mut signed: SignedIn,
    Path(handle): Path<String>,
) -> Result<Response, Failure> {
    let c = fetch_certificate(&app, &mut signed, &handle).await?;
    let json = vault_client::certificate::certificate_json(&c);
    let bytes = serde_json::to_vec_pretty(&json).map_err(|e| Failure::Internal(e.to_string()))?;
    Ok(download(
        bytes,
        "application/json",
        &format!("{}.json", c.handle),
    ))
}
