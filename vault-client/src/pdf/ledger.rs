//! The 特定個人情報管理台帳 (規程第16条) as PDF: one section per tenant with the file, who is
//! responsible, where it is kept and handled, the purposes, records by state, the last
//! disposal and who has access — the same content as `vault-client ledger`, for filing.

use crate::{ClientError, pb};

use super::page::{A4, MARGIN, Pages, wrap};
use super::{jst, role_ja};

/// The ledger as a PDF.
pub fn ledger_pdf(
    ledger: &pb::LedgerResponse,
    font: krilla::text::Font,
    issued_ms: i64,
) -> Result<Vec<u8>, ClientError> {
    let mut pages = Pages::new(font, A4);
    // Wide enough for the longest label (特定個人情報ファイルの種類) on one line.
    let label_width = 150.0;
    for (i, entry) in ledger.entries.iter().enumerate() {
        if i > 0 {
            pages.continued = None;
            pages.new_page();
        }
        pages.centred(18.0, "特定個人情報管理台帳");
        pages.centred(9.0, &format!("作成日時 {}", jst(issued_ms)));
        pages.skip(10.0);
        let info = entry.info.clone().unwrap_or_default();
        let last_disposal = if entry.last_disposal_unix == 0 {
            "なし".to_owned()
        } else {
            jst(entry.last_disposal_unix.saturating_mul(1000))
        };
        let office = if entry.tenant_name.is_empty() {
            entry.tenant.clone()
        } else {
            format!("{}（{}）", entry.tenant_name, entry.tenant)
        };
        // A page this tenant's section runs onto says whose it is.
        pages.continued = Some(format!("特定個人情報管理台帳・{office}"));
        for (label, value) in [
            ("事業所", office.clone()),
            ("特定個人情報ファイルの種類", info.file_kind),
            ("特定個人情報ファイルの名称", info.file_name),
            ("責任者", info.responsible_person),
            ("取扱部署", info.responsible_department),
            ("管理区域", info.management_area),
            ("取扱区域", info.handling_area),
            (
                "記録件数",
                format!(
                    "利用中 {} 件 / 利用停止 {} 件\n退職（廃棄待ち）{} 件",
                    entry.active, entry.suspended, entry.retired
                ),
            ),
            // 規程第16条④.
            (
                "削除・廃棄状況",
                format!("廃棄済 {} 件\n最終廃棄 {last_disposal}", entry.disposed),
            ),
        ] {
            pages.field(label, &value, 10.0, label_width);
        }
        pages.skip(12.0);
        pages.paragraph(MARGIN, 11.0, "利用目的（規程第4条）と保存期間");
        for purpose in &entry.purposes {
            pages.field(
                &format!("第4条 {}", purpose.article),
                &format!(
                    "{}\n{}・保存期間 {}年",
                    purpose.label_ja, purpose.code, purpose.retention_years
                ),
                9.5,
                label_width,
            );
        }
        pages.skip(12.0);
        pages.paragraph(MARGIN, 11.0, "アクセス権を有する者（取扱者）");
        for access in &entry.access {
            let mut value = role_ja(&access.role).to_owned();
            if access.disabled {
                value.push_str("（無効）");
            }
            if !access.purposes.is_empty() {
                value.push('\n');
                value.push_str(&access.purposes.join(", "));
            }
            let who = if access.display_name.is_empty() {
                access.operator_id.clone()
            } else {
                format!("{}\n{}", access.display_name, access.operator_id)
            };
            pages.field(&who, &value, 9.5, label_width);
        }
        pages.skip(16.0);
        pages.stamp_boxes(&format!("作成日時: {}", jst(issued_ms)));
    }
    pages.continued = None;
    if ledger.entries.is_empty() {
        pages.centred(18.0, "特定個人情報管理台帳");
        for line in wrap("対象の事業所はありません。", 10.0, A4.0 - 2.0 * MARGIN) {
            pages.paragraph(MARGIN, 10.0, &line);
        }
    }
    pages
        .finish("特定個人情報管理台帳")
        .map_err(ClientError::Usage)
}
