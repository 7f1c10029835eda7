//! The 開示通知書 (規程第45・46条) as PDF: the office's answer to a person's disclosure
//! request — whether it holds their number (shown by its last four digits only), the record's
//! facts, every use in the period with who, for which 第4条 purpose and with what result, the
//! items withheld and why, the stretch of the audit log it covers and the signature that lets
//! anyone check it offline. Boxes for the seals of who checked and who approved.

use crate::ClientError;
use vault_audit::disclosure::{DisclosedRecord, DisclosedUse, DisclosureNotice, NoticeBody};

use super::page::{A4, MARGIN, Pages};
use super::{grouped_hex, jst, role_ja};

const LABEL_WIDTH: f32 = 130.0;
/// 日時, 区分, 取扱者, 利用目的, 結果, 備考: 483 points, the width between the margins.
const USE_COLUMNS: [f32; 6] = [96.0, 56.0, 92.0, 126.0, 38.0, 75.0];

/// What a use was, as the person reads it.
fn category_ja(category: &str) -> &str {
    match category {
        "acquisition" => "取得",
        "use" => "利用",
        "lookup" => "検索",
        "reading" => "参照",
        "purpose_change" => "利用目的の追加",
        "correction" => "訂正",
        "suspension" => "利用停止・再開",
        "retirement" => "退職・取消",
        "acquisition_date" => "取得日の記録",
        "disposal" => "廃棄",
        "disclosure" => "開示",
        "key_maintenance" => "鍵の更新",
        _ => "その他",
    }
}

fn outcome_ja(outcome: &str) -> &str {
    match outcome {
        "ALLOWED" => "実施",
        "DENIED" => "拒否",
        _ => "不成立",
    }
}

fn item_ja(item: &str) -> &str {
    match item {
        "record" => "保有する記録の内容",
        "uses" => "利用の記録",
        "handlers" => "取扱者",
        other => other,
    }
}

fn ground_ja(ground: u8) -> &'static str {
    match ground {
        1 => "第45条2① 本人又は第三者の生命、身体、財産その他の権利利益を害するおそれ",
        2 => "第45条2② 業務の適正な実施に著しい支障を及ぼすおそれ",
        3 => "第45条2③ 他の法令に違反することとなる",
        _ => "第45条2",
    }
}

fn kind_ja(kind: &str) -> &str {
    match kind {
        "staff" => "職員",
        "non_staff_payee" => "職員以外の個人（報酬・料金等の支払先）",
        "dependent" => "扶養親族等",
        "entrusted_employee" => "委託元の従業員",
        other => other,
    }
}

fn status_ja(record: &DisclosedRecord) -> String {
    match record.status.as_str() {
        "active" => "利用中".into(),
        "suspended" => format!("利用停止中（理由: {}）", record.suspension),
        "retired" => {
            let mut text = format!(
                "退職（退職日 {}、廃棄予定日 {}）",
                record.left_on, record.dispose_on
            );
            if !record.suspension.is_empty() {
                text.push_str(&format!("・利用停止中（理由: {}）", record.suspension));
            }
            text
        }
        "disposed" => "廃棄済み（個人番号は削除され、復元できない）".into(),
        other => other.into(),
    }
}

/// `2026年12月07日 (JST)`: a day of the period, in Japan.
fn jst_day(ms: i64) -> String {
    let full = jst(ms);
    full.split(' ').next().unwrap_or_default().to_owned()
}

/// Who handled the number, as the notice names them.
fn handler_cell(body: &NoticeBody, used: &DisclosedUse) -> String {
    if used.handler.is_empty() && used.role.is_empty() {
        return "（不開示）".into();
    }
    match body.handlers_shown_as.as_str() {
        "role" => role_ja(&used.role).to_owned(),
        _ => format!("{}\n{}", used.handler, role_ja(&used.role)),
    }
}

/// The purpose as the rules list it (第4条 item and label).
fn purpose_cell(body: &NoticeBody, code: &str) -> String {
    if code.is_empty() {
        return String::new();
    }
    body.purposes
        .iter()
        .find(|p| p.code == code && !p.label_ja.is_empty())
        .map_or_else(
            || code.to_owned(),
            |p| format!("第4条 {} {}", p.article, p.label_ja),
        )
}

fn remark_cell(used: &DisclosedUse) -> String {
    if used.carried_out.is_empty() {
        return String::new();
    }
    let form = if used.carried_out.contains("ZIP") {
        "暗号化ZIP"
    } else {
        "平文ファイル"
    };
    // The digest's first group: enough to match the filed CSV or JSON, which hold it whole.
    let digest = used
        .carried_out
        .split("sha256 ")
        .nth(1)
        .and_then(|d| d.split(':').next())
        .unwrap_or_default();
    format!("持出し（{form}）\nSHA-256 {digest}…")
}

/// The notice as a PDF.
pub fn disclosure_pdf(
    notice: &DisclosureNotice,
    font: krilla::text::Font,
) -> Result<Vec<u8>, ClientError> {
    let body = &notice.body;
    let mut pages = Pages::new(font, A4);
    pages.skip(10.0);
    pages.centred(22.0, "開示通知書");
    pages.centred(10.0, "保有個人情報（特定個人情報等）の開示について");
    pages.skip(12.0);
    let office = if body.office.is_empty() {
        body.tenant.clone()
    } else {
        format!("{}（{}）", body.office, body.tenant)
    };
    pages.paragraph(
        MARGIN,
        10.0,
        &format!(
            "{office} は、受付番号 {} の開示請求について、特定個人情報取扱規程第45条及び第46条に基づき、下記のとおり通知します。",
            body.reference
        ),
    );
    pages.skip(10.0);
    pages.continued = Some(format!("開示通知書 {}", body.reference));
    let period = format!(
        "{} から {} まで",
        if body.period_from_ms == 0 {
            "記録の開始".to_owned()
        } else {
            jst_day(body.period_from_ms)
        },
        jst_day(body.period_to_ms - 1)
    );
    let set_or_not = |value: &str| {
        if value.is_empty() {
            "（未設定）".to_owned()
        } else {
            value.to_owned()
        }
    };
    for (label, value) in [
        ("事業所", office.clone()),
        ("責任者", set_or_not(&body.office_responsible)),
        ("取扱部署", set_or_not(&body.office_department)),
        ("受付番号", body.reference.clone()),
        ("通知日時", jst(body.issued_at_ms)),
        ("対象者の個人番号", body.number_masked.clone()),
        (
            "保有の有無",
            if body.held {
                "保有しています".to_owned()
            } else {
                "請求に係る特定個人情報等は保有していません".to_owned()
            },
        ),
        ("利用の記録の対象期間", period),
    ] {
        pages.field(label, &value, 10.0, LABEL_WIDTH);
    }
    if let Some(record) = &body.record {
        pages.skip(10.0);
        pages.paragraph(MARGIN, 11.0, "保有する記録");
        let purposes: Vec<String> = record
            .purposes
            .iter()
            .map(|p| {
                format!(
                    "第4条 {} {}（保存期間 {}年）",
                    p.article, p.label_ja, p.retention_years
                )
            })
            .collect();
        let verification = [
            ("番号確認", &record.number_check),
            ("身元確認", &record.identity_check),
            ("代理権確認", &record.agent_authority),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("\n");
        for (label, value) in [
            ("管理番号", record.subject_ref.clone()),
            ("区分", kind_ja(&record.subject_kind).to_owned()),
            ("利用目的", purposes.join("\n")),
            ("取得日時", jst(record.acquired_at_ms)),
            (
                "取得者",
                if record.acquired_by.is_empty() {
                    "（不開示）".to_owned()
                } else {
                    record.acquired_by.clone()
                },
            ),
            (
                "本人確認",
                if verification.is_empty() {
                    "記録なし".to_owned()
                } else {
                    verification
                },
            ),
            ("状態", status_ja(record)),
            ("訂正", format!("{} 件", record.corrections)),
        ] {
            pages.field(label, &value, 10.0, LABEL_WIDTH);
        }
    }
    let uses_withheld = body.withheld.iter().any(|w| w.item == "uses");
    if body.held && !uses_withheld {
        pages.skip(10.0);
        pages.paragraph(
            MARGIN,
            11.0,
            &format!("利用の記録（{} 件）", body.uses.len()),
        );
        pages.table_row(
            &USE_COLUMNS,
            &["日時 (JST)", "区分", "取扱者", "利用目的", "結果", "備考"],
            8.5,
        );
        for used in &body.uses {
            let time = jst(used.time_ms).replace(" JST", "");
            pages.table_row(
                &USE_COLUMNS,
                &[
                    &time,
                    category_ja(&used.category),
                    &handler_cell(body, used),
                    &purpose_cell(body, &used.purpose),
                    outcome_ja(&used.outcome),
                    &remark_cell(used),
                ],
                8.5,
            );
        }
    }
    if !body.withheld.is_empty() {
        pages.skip(10.0);
        pages.paragraph(MARGIN, 11.0, "不開示とした事項（規程第45条2）");
        for withheld in &body.withheld {
            pages.field(
                item_ja(&withheld.item),
                &format!("{}\n理由: {}", ground_ja(withheld.ground), withheld.reason),
                9.5,
                LABEL_WIDTH,
            );
        }
    }
    pages.skip(10.0);
    let coverage = &body.coverage;
    pages.paragraph(
        MARGIN,
        8.5,
        &format!(
            "記録の範囲: 監査ログの第{}件から第{}件まで（署名付きチェックポイント第{}号、監査鍵 v{}）。チェーンハッシュ {}",
            coverage.first_seq,
            coverage.last_seq,
            coverage.checkpoint,
            coverage.checkpoint_key_version,
            grouped_hex(&coverage.chain_hash)
        ),
    );
    pages.field("署名鍵 ID", &grouped_hex(&notice.key_id), 8.5, LABEL_WIDTH);
    pages.field("署名", &grouped_hex(&notice.signature), 8.5, LABEL_WIDTH);
    pages.paragraph(
        MARGIN,
        8.5,
        "この通知の電子版 (JSON) は vault-client disclosure verify と監査公開鍵で、ロッカーなしに検証できます。",
    );
    pages.skip(20.0);
    pages.continued = None;
    pages.stamp_boxes(&format!("通知日時: {}", jst(body.issued_at_ms)));
    pages
        .finish(&format!("開示通知書 {}", body.reference))
        .map_err(ClientError::Usage)
}
