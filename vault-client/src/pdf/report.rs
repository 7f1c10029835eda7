//! A report of the handling rules as a table on A4, to print, seal and file: the usage report
//! (運用状況の記録, 第15条), the carry-out record (持出し記録) and the incident investigation
//! (漏えい等, 第12–14条). A title, the facts that frame it (period, who, when made), the table
//! (a page it runs onto says whose it is), and the seal boxes.

use crate::{ClientError, pb};

use super::jst;
use super::page::{A4, MARGIN, Pages};

/// A report to lay out.
pub struct Report<'a> {
    /// The title, e.g. 運用状況の記録.
    pub title: &'a str,
    /// Label–value lines above the table (期間, 対象の操作者, …).
    pub facts: Vec<(&'a str, String)>,
    /// The columns' headings.
    pub columns: &'a [&'a str],
    /// Each column's share of the page's width (they need not sum to 1).
    pub shares: &'a [f32],
    /// The rows, each as many cells as columns.
    pub rows: Vec<Vec<String>>,
    /// Said when there are no rows.
    pub empty: &'a str,
}

/// The report as a PDF, made at `issued_ms`.
pub fn report_pdf(
    report: &Report<'_>,
    font: krilla::text::Font,
    issued_ms: i64,
) -> Result<Vec<u8>, ClientError> {
    let mut pages = Pages::new(font, A4);
    let total: f32 = report.shares.iter().sum::<f32>().max(f32::EPSILON);
    let usable = A4.0 - 2.0 * MARGIN;
    let widths: Vec<f32> = report
        .shares
        .iter()
        .map(|share| share / total * usable)
        .collect();
    pages.centred(18.0, report.title);
    pages.centred(9.0, &format!("作成日時 {}", jst(issued_ms)));
    pages.skip(10.0);
    for (label, value) in &report.facts {
        pages.field(label, value, 10.0, 110.0);
    }
    pages.skip(10.0);
    pages.continued = Some(format!("{}（続き）", report.title));
    pages.table_row(&widths, report.columns, 9.0);
    if report.rows.is_empty() {
        pages.paragraph(MARGIN, 10.0, report.empty);
    }
    for row in &report.rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        pages.table_row(&widths, &cells, 9.0);
    }
    pages.continued = None;
    pages.skip(16.0);
    pages.stamp_boxes(&format!("作成日時: {}", jst(issued_ms)));
    pages.finish(report.title).map_err(ClientError::Usage)
}

/// The usage report's rows under Japanese headings, for [`report_pdf`].
pub fn usage_report<'a>(report: &pb::UsageReportResponse, period: String) -> Report<'a> {
    Report {
        title: "運用状況の記録",
        facts: vec![
            ("期間", period),
            ("走査した監査ログ", format!("{} 件", report.entries_scanned)),
        ],
        columns: &["区分", "操作", "利用目的", "操作者", "事業者", "件数"],
        shares: &[1.2, 1.6, 1.8, 1.2, 1.0, 0.6],
        rows: crate::ledger::usage_rows(report),
        empty: "この期間の記録はありません。",
    }
}

/// The carry-out record (持出し記録) of a period, its rows already made (日時, 操作者, 事業者,
/// 利用目的, 結果, 記録), for [`report_pdf`].
pub fn carry_out_report<'a>(rows: Vec<Vec<String>>, period: String) -> Report<'a> {
    Report {
        title: "特定個人情報の持出し記録",
        facts: vec![("期間", period), ("件数", format!("{} 件", rows.len()))],
        columns: &["日時", "操作者", "事業者", "利用目的", "結果", "記録"],
        shares: &[1.3, 1.3, 0.7, 1.7, 0.5, 2.5],
        rows,
        empty: "この期間の持出しはありません。",
    }
}

/// The incident investigation (漏えい等の調査記録) of one operator over a period, for
/// [`report_pdf`]: the figures, then the handles of the records touched.
pub fn incident_report<'a>(report: &pb::IncidentReportResponse, period: String) -> Report<'a> {
    Report {
        title: "漏えい等の調査記録",
        facts: vec![
            ("対象の操作者", report.operator_id.clone()),
            ("期間", period),
            ("番号の取出し", format!("{} 回", report.unseals)),
            ("対象となった本人", format!("{} 人", report.subjects)),
            ("拒否された試行", format!("{} 回", report.denied)),
            ("事業者", report.tenants.join("、")),
        ],
        columns: &["#", "記録のハンドル"],
        shares: &[0.4, 4.0],
        rows: report
            .handles
            .iter()
            .enumerate()
            .map(|(i, handle)| vec![(i + 1).to_string(), handle.clone()])
            .collect(),
        empty: "この期間に取り出された記録はありません。",
    }
}
