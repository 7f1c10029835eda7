//! The records the handling rules ask for, as pages and as files to file: the 管理台帳 (table,
//! PDF, CSV), the usage report (table, CSV) and the 削除証明書 (list, page, PDF, signed JSON).
//! None holds a number: the daemon builds them from metadata and the audit log.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures::StreamExt;
use vault_client::ledger::{LEDGER_COLUMNS, USAGE_COLUMNS, ledger_rows, usage_rows};
use vault_client::pb;

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
