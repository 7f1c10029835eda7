//! Printable records: the 削除証明書, the 特定個人情報管理台帳, the 開示通知書 and the reports
//! (usage, carry-outs, incidents) as PDF, in Japanese, laid out on A4 to be printed, stamped and
//! filed. Fonts come from the system (IPAex or Noto CJK from Debian packages) or `--font`;
//! krilla embeds only the glyphs used.
//!
//! `fonts` finds the font, `page` writes text and rules on pages, `certificate`, `ledger` and
//! `disclosure` lay out the three records, `report` any report that is a table.

mod certificate;
mod disclosure;
mod fonts;
mod ledger;
mod page;
mod report;

pub use certificate::certificate_pdf;
pub use disclosure::disclosure_pdf;
pub use fonts::find_font;
pub use ledger::ledger_pdf;
pub use report::{Report, carry_out_report, incident_report, report_pdf, usage_report};

/// `ms` since the epoch as a time in Japan (JST, UTC+9 all year).
pub fn jst_at(ms: i64) -> Option<time::OffsetDateTime> {
    let at = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?;
    Some(at.to_offset(time::UtcOffset::from_hms(9, 0, 0).ok()?))
}

/// `2026年11月30日 21:05:00 JST` for milliseconds since the epoch.
fn jst(ms: i64) -> String {
    let Some(at) = jst_at(ms) else {
        return String::new();
    };
    format!(
        "{:04}年{:02}月{:02}日 {:02}:{:02}:{:02} JST",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// A role as the handling rules name it.
fn role_ja(role: &str) -> &str {
    match role {
        "admin" => "システム管理者 (admin)",
        "manager" => "事務取扱責任者 (manager)",
        "handler" => "事務取扱担当者 (handler)",
        "service" => "システム (service)",
        "auditor" => "監査責任者 (auditor)",
        "system" => "システム（自動処理）",
        other => other,
    }
}

/// Hex in groups of eight, for people to read and compare.
fn grouped_hex(hex: &str) -> String {
    hex.as_bytes()
        .chunks(8)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
