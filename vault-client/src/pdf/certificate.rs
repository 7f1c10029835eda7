//! The 削除証明書 (規程: 削除・廃棄の記録) of one disposed record, on one A4 page: what was
//! deleted, when, how and by whom, the signature that proves it, and boxes for the seals of
//! who checked and who approved. Never the number (the locker no longer has it).

use crate::{ClientError, pb};

use super::page::{A4, MARGIN, Pages};
use super::{grouped_hex, jst};

/// The certificate as a PDF.
pub fn certificate_pdf(
    certificate: &pb::DeletionCertificate,
    font: krilla::text::Font,
    issued_ms: i64,
) -> Result<Vec<u8>, ClientError> {
    let mut pages = Pages::new(font, A4);
    pages.skip(20.0);
    pages.centred(24.0, "削除証明書");
    pages.centred(10.0, "特定個人情報の削除・廃棄の記録");
    pages.skip(24.0);
    pages.paragraph(
        MARGIN,
        10.5,
        "下記の特定個人情報（個人番号）について、MyNumber Locker において復元できない方法で削除したことを証明します。",
    );
    pages.skip(16.0);
    let label_width = 150.0;
    let responsible = if certificate.responsible == "scheduler" {
        "scheduler（保存期間経過による自動廃棄）".to_owned()
    } else {
        certificate.responsible.clone()
    };
    // The office by its name (the id in brackets, as the locker knows it).
    let office = if certificate.tenant_name.is_empty() {
        certificate.tenant.clone()
    } else {
        format!("{}（{}）", certificate.tenant_name, certificate.tenant)
    };
    // What the handling rules ask a deletion record to name (規程第36条2): the file's kind and
    // name, its responsible person and department, and the state of the deletion. The details
    // are the office's as the locker holds them now (not signed); a slot left unset says so.
    let detail = |value: &str| {
        if value.is_empty() {
            "（未設定: vault-client tenant info で設定）".to_owned()
        } else {
            value.to_owned()
        }
    };
    for (label, value) in [
        ("事業所", office),
        ("特定個人情報ファイルの種類", detail(&certificate.file_kind)),
        ("特定個人情報ファイルの名称", detail(&certificate.file_name)),
        ("責任者", detail(&certificate.responsible_person)),
        ("取扱部署", detail(&certificate.responsible_department)),
        (
            "削除・廃棄状況",
            "削除済み（個人番号は復元できない）".to_owned(),
        ),
        ("対象者の管理番号", certificate.subject_ref.clone()),
        ("記録のハンドル", certificate.handle.clone()),
        ("削除日時", jst(certificate.disposed_at_ms)),
        ("削除方法", certificate.method.clone()),
        ("削除実施者", responsible),
        ("鍵バージョン", certificate.key_version.to_string()),
    ] {
        pages.field(label, &value, 10.5, label_width);
    }
    pages.skip(14.0);
    pages.paragraph(MARGIN, 9.0, "電子署名 (ECDSA P-256, 監査鍵)");
    pages.field(
        "署名鍵 ID",
        &grouped_hex(&certificate.key_id),
        8.5,
        label_width,
    );
    pages.field(
        "署名",
        &grouped_hex(&certificate.signature),
        8.5,
        label_width,
    );
    pages.paragraph(
        MARGIN,
        8.5,
        "この証明書の電子版 (vault-client certificate export) は vault-client certificate verify と監査公開鍵で、ロッカーなしに検証できます。",
    );
    // Seals of who checked and who approved (確認印・承認印).
    pages.skip(30.0);
    pages.stamp_boxes(&format!("発行日時: {}", jst(issued_ms)));
    pages
        .finish(&format!("削除証明書 {}", certificate.handle))
        .map_err(ClientError::Usage)
}
