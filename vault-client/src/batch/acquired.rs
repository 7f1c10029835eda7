//! `acquired --batch FILE`: the 取得日 of records migrated from paper or another system, set by
//! a manager for every handle of a file — a seal batch's output works as it is — one audited
//! `SetAcquisitionDate` per row. The date is `--on` for every row, or a row's own `acquired_on`
//! (`取得日`) cell, in `YYYY-MM-DD` or Excel's `YYYY/M/D`.

use std::path::Path;

use serde_json::json;
use vault_client::{Client, ClientError, pb};

use super::input::{ACQUIRED_HEADERS, handle_rows};
use super::report::{Failures, RowWriter, error_cell, error_json};
use crate::output::Format;

/// What to set.
pub struct AcquiredBatch<'a> {
    /// The handles (one per line, or a `handle` column).
    pub file: &'a Path,
    /// The date of rows without one of their own.
    pub on: Option<&'a str>,
    /// Why (e.g. 紙の台帳から移行); never a number.
    pub reason: &'a str,
    /// CSV or JSON lines.
    pub format: Format,
    /// A BOM and CRLF for Excel.
    pub excel: bool,
}

/// `2019/4/1` (how Excel shows a date in Japan) as `2019-04-01`; anything else as written, for
/// the daemon to accept or refuse with its reason.
pub fn normalise_date(cell: &str) -> String {
    let cell = cell.trim();
    let parts: Vec<&str> = cell.split('/').collect();
    match parts.as_slice() {
        [year, month, day]
            if year.len() == 4
                && [year, month, day]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            format!("{year}-{month:0>2}-{day:0>2}")
        }
        _ => cell.to_owned(),
    }
}

/// Sets the date of every handle of the batch, writing one result row each to standard
/// output; returns the rows that failed.
pub async fn set_all(
    client: &mut Client,
    batch: AcquiredBatch<'_>,
) -> Result<Failures, ClientError> {
    let rows = handle_rows(batch.file)?;
    let date_column = rows.header.as_ref().and_then(|header| {
        header
            .iter()
            .position(|cell| ACQUIRED_HEADERS.contains(&cell.trim().to_lowercase().as_str()))
    });
    if date_column.is_none() && batch.on.is_none() {
        return Err(ClientError::Usage(format!(
            "{} has no acquired_on (取得日) column: give --on YYYY-MM-DD for every row",
            batch.file.display()
        )));
    }
    let mut out = RowWriter::new(
        std::io::stdout().lock(),
        batch.format,
        &["row", "handle", "acquired_on", "error"],
        batch.excel,
    )?;
    let mut failures = Failures::default();
    for row in rows.rows.iter().filter(|row| !row.handle.trim().is_empty()) {
        let own = date_column
            .and_then(|i| row.cells.get(i))
            .map(|cell| cell.trim())
            .filter(|cell| !cell.is_empty());
        let acquired_on = normalise_date(own.or(batch.on).unwrap_or_default());
        let error = match client
            .locker
            .set_acquisition_date(pb::SetAcquisitionDateRequest {
                handle: row.handle.trim().to_owned(),
                acquired_on: acquired_on.clone(),
                reason: batch.reason.to_owned(),
            })
            .await
        {
            Ok(_) => None,
            Err(status) => Some(batch_error(&status)),
        };
        failures.note(&error);
        let line = row.line.to_string();
        out.row(
            &[&line, row.handle.trim(), &acquired_on, &error_cell(&error)],
            &json!({
                "row": row.line,
                "handle": row.handle.trim(),
                "acquired_on": acquired_on,
                "error": error_json(&error),
            }),
        )?;
    }
    drop(out.finish()?);
    Ok(failures)
}

/// A refused row's error as a batch item's.
fn batch_error(status: &tonic::Status) -> pb::BatchError {
    pb::BatchError {
        code: vault_client::code_name(status.code()).to_owned(),
        message: status.message().to_owned(),
        reason: vault_client::reason_of(status),
    }
}

#[cfg(test)]
mod tests {
    use super::normalise_date;

    #[test]
    fn excel_dates_are_read_as_iso_and_others_left_for_the_daemon() {
        assert_eq!(normalise_date("2019/4/1"), "2019-04-01");
        assert_eq!(normalise_date(" 2019/04/01 "), "2019-04-01");
        assert_eq!(normalise_date("2019-04-01"), "2019-04-01");
        assert_eq!(normalise_date("H31/4/1"), "H31/4/1");
        assert_eq!(normalise_date("2019/4"), "2019/4");
    }
}
