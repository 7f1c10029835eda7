//! `seal --batch FILE.csv`: every row sealed through one SealBatch stream.

use std::path::Path;

use futures::StreamExt;
use serde_json::json;
use vault_client::{Client, ClientError, pb};

use super::input::{SealRow, seal_rows};
use super::report::{RowWriter, error_cell, error_json, may_hold_number};
use crate::output::Format;

/// Seals every row of a CSV file with the template's tenant, kind, purposes and verification.
/// Prints `row,subject_ref,handle,existing,purposes_not_on_record,error` per row, in order;
/// returns how many rows failed.
pub async fn seal(
    client: &mut Client,
    template: pb::SealRequest,
    file: &Path,
    format: Format,
    excel: bool,
) -> Result<u64, ClientError> {
    let rows = seal_rows(file)?;
    let keys: Vec<(u64, String)> = rows
        .iter()
        .map(|r| (r.line, r.subject_ref.clone()))
        .collect();
    let progress = super::bar(rows.len() as u64, "sealing");
    let requests =
        futures::stream::iter(rows.into_iter().map(move |row: SealRow| pb::SealRequest {
            subject_ref: row.subject_ref,
            number: row.number.to_string(),
            ..template.clone()
        }));
    let mut writer = RowWriter::new(
        std::io::stdout(),
        format,
        &[
            "row",
            "subject_ref",
            "handle",
            "existing",
            "purposes_not_on_record",
            "error",
        ],
        excel,
    )?;
    let mut results = client.locker.seal_batch(requests).await?.into_inner();
    let mut failed = 0;
    while let Some(result) = results.next().await {
        let result = result?;
        progress.inc(1);
        let (line, subject) = keys.get(result.index as usize).cloned().unwrap_or_default();
        let subject = if result.error.is_some() && may_hold_number(&subject) {
            "(withheld: it may hold a number)".to_owned()
        } else {
            subject
        };
        let sealed = result.sealed.clone().unwrap_or_default();
        let lacking = sealed.purposes_not_on_record.join(" ");
        failed += u64::from(result.error.is_some());
        let line_text = line.to_string();
        let existing = if result.error.is_some() {
            String::new()
        } else {
            sealed.existing.to_string()
        };
        progress.suspend(|| {
            writer.row(
                &[
                    &line_text,
                    &subject,
                    &sealed.handle,
                    &existing,
                    &lacking,
                    &error_cell(&result.error),
                ],
                &json!({
                    "row": line, "subject_ref": subject, "handle": sealed.handle,
                    "existing": sealed.existing,
                    "purposes_not_on_record": sealed.purposes_not_on_record,
                    "error": error_json(&result.error),
                }),
            )
        })?;
    }
    writer.finish()?;
    progress.finish_and_clear();
    Ok(failed)
}
