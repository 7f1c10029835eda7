//! `seal --batch FILE.csv`: every row sealed through one SealBatch stream.

use std::path::Path;

use futures::StreamExt;
use serde_json::json;
use vault_client::{Client, ClientError, pb};

use super::input::{SealRow, in_exponent_form, seal_rows};
use super::report::{Failures, RowWriter, error_cell, error_json, may_hold_number};
use crate::output::Format;

/// Said beside the refusal of a number Excel turned into `1.23457E+11`.
pub const EXPONENT_HINT: &str = " (the cell is in Excel's exponent form, which has lost the last digits: format the column as text (文字列) and enter or import the numbers again)";

/// Seals every row of a CSV file with the template's tenant, kind, purposes and verification.
/// Prints `row,subject_ref,handle,existing,purposes_not_on_record,error` per row, in order —
/// and `acquired_on` when the file gives each row its 取得日, which the locker does not take
/// from a handler: a manager applies the file with `acquired --batch`. Returns the rows that
/// failed.
pub async fn seal(
    client: &mut Client,
    template: pb::SealRequest,
    file: &Path,
    format: Format,
    excel: bool,
) -> Result<Failures, ClientError> {
    let rows = seal_rows(file)?;
    let dated = rows.iter().any(|r| r.acquired_on.is_some());
    let keys: Vec<(u64, String, bool, String)> = rows
        .iter()
        .map(|r| {
            (
                r.line,
                r.subject_ref.clone(),
                in_exponent_form(&r.number),
                // A 取得日 cell is echoed into the results, which are kept less carefully than
                // the input: never a cell that may hold a number put in the wrong column.
                match r.acquired_on.as_deref() {
                    Some(cell) if may_hold_number(cell) => {
                        "(withheld: it may hold a number)".to_owned()
                    }
                    other => other.unwrap_or_default().to_owned(),
                },
            )
        })
        .collect();
    let progress = super::bar(rows.len() as u64, "sealing");
    let requests =
        futures::stream::iter(rows.into_iter().map(move |row: SealRow| pb::SealRequest {
            subject_ref: row.subject_ref,
            number: row.number.to_string(),
            ..template.clone()
        }));
    let mut header = vec![
        "row",
        "subject_ref",
        "handle",
        "existing",
        "purposes_not_on_record",
        "error",
    ];
    if dated {
        header.push("acquired_on");
    }
    let mut writer = RowWriter::new(std::io::stdout(), format, &header, excel)?;
    let mut results = client.locker.seal_batch(requests).await?.into_inner();
    let mut failures = Failures::default();
    while let Some(result) = results.next().await {
        let result = result?;
        progress.inc(1);
        let (line, subject, exponent, acquired_on) =
            keys.get(result.index as usize).cloned().unwrap_or_default();
        let mut result = result;
        if exponent && let Some(error) = result.error.as_mut() {
            error.message.push_str(EXPONENT_HINT);
        }
        let subject = if result.error.is_some() && may_hold_number(&subject) {
            "(withheld: it may hold a number)".to_owned()
        } else {
            subject
        };
        let sealed = result.sealed.clone().unwrap_or_default();
        let lacking = sealed.purposes_not_on_record.join(" ");
        failures.note(&result.error);
        let line_text = line.to_string();
        let existing = if result.error.is_some() {
            String::new()
        } else {
            sealed.existing.to_string()
        };
        let error = error_cell(&result.error);
        let mut cells = vec![
            line_text.as_str(),
            subject.as_str(),
            sealed.handle.as_str(),
            existing.as_str(),
            lacking.as_str(),
            error.as_str(),
        ];
        let mut object = json!({
            "row": line, "subject_ref": subject, "handle": sealed.handle,
            "existing": sealed.existing,
            "purposes_not_on_record": sealed.purposes_not_on_record,
            "error": error_json(&result.error),
        });
        if dated {
            cells.push(&acquired_on);
            object["acquired_on"] = json!(acquired_on);
        }
        progress.suspend(|| writer.row(&cells, &object))?;
    }
    writer.finish()?;
    progress.finish_and_clear();
    if dated {
        eprintln!(
            "the rows' 取得日 are in the acquired_on column: a manager sets them with vault-client acquired --batch FILE --reason …"
        );
    }
    Ok(failures)
}
