//! The records the handling rules ask for, as pages and as files to file: the 管理台帳 (table,
//! PDF, CSV) and the 削除証明書 (list, page, PDF, signed JSON). None holds a number: the
//! daemon builds them from metadata and the audit log.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use vault_client::ledger::{LEDGER_COLUMNS, ledger_rows};
use vault_client::pb;

use super::files::{csv_download, now_ms, pdf_download};
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
    csv_download(&LEDGER_COLUMNS, &ledger_rows(&ledger), "ledger.csv")
}

/// The 管理台帳 as PDF, for filing.
pub async fn ledger_pdf(
    State(app): State<Shared>,
    mut signed: SignedIn,
) -> Result<Response, Failure> {
    let ledger = fetch_ledger(&app, &mut signed).await?;
    pdf_download(&app, "ledger.pdf", move |font| {
        vault_client::pdf::ledger_pdf(&ledger, font, now_ms())
    })
    .await
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
    let entries = signed
        .export(
            &app,
            pb::AuditExportRequest {
                after_seq: 0,
                // The daemon sends the disposals only, not the whole log.
                actions: vec!["DISPOSE".into(), "SCHEDULED_DISPOSE".into()],
                ..Default::default()
            },
        )
        .await?;
    let mut rows = Vec::new();
    for entry in entries {
        if entry.outcome == "ALLOWED" && !entry.handle.is_empty() {
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
    pdf_download(&app, &name, move |font| {
        vault_client::pdf::certificate_pdf(&c, font, now_ms())
    })
    .await
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
