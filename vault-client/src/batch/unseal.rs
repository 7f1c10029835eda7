//! `unseal --batch FILE`: every handle unsealed through one UnsealBatch stream, the numbers
//! written where `carry_out` allows, and a file that leaves the locker recorded as a carry-out.

use std::path::Path;

use futures::StreamExt;
use serde_json::json;
use vault_client::{Client, ClientError, pb};
use zeroize::Zeroizing;

use super::carry_out::{CarriedOut, Destination, Sink, ZIP_ENTRY_CSV, ZIP_ENTRY_JSON};
use super::input::handle_rows;
use super::report::{RowWriter, error_cell, error_json};
use crate::output::{self, Format};

/// What to unseal and where the numbers go.
pub struct UnsealBatch<'a> {
    /// Purpose of every unseal.
    pub purpose: &'a str,
    /// The handles (one per line, or a `handle` column).
    pub file: &'a Path,
    /// Where the numbers go.
    pub destination: Destination,
    /// CSV or JSON lines.
    pub format: Format,
    /// A BOM and CRLF for Excel.
    pub excel: bool,
}

/// Unseals every handle of the batch; returns how many failed.
pub async fn unseal(client: &mut Client, batch: UnsealBatch<'_>) -> Result<u64, ClientError> {
    let rows = handle_rows(batch.file)?;
    let entry = match batch.format {
        Format::Json => ZIP_ENTRY_JSON,
        Format::Text => ZIP_ENTRY_CSV,
    };
    // The file is created before anything is unsealed: one that exists already stops the run.
    let sink = Sink::open(&batch.destination, entry)?;
    let (sink, failed, released) = match stream(client, &batch, rows, sink).await {
        Ok(done) => done,
        Err(error) => {
            // A run cut short (the daemon gone, a write failed) leaves no partial file of
            // numbers behind, recorded or not.
            discard(&batch.destination);
            return Err(error);
        }
    };
    let carried = match sink.finish() {
        Ok(carried) => carried,
        Err(error) => {
            discard(&batch.destination);
            return Err(error);
        }
    };
    if let Some(carried) = carried {
        record(client, batch.purpose, released, carried, batch.format).await?;
    }
    Ok(failed)
}

/// Deletes the file a cut-short run was writing.
fn discard(destination: &Destination) {
    if let Destination::PlaintextFile(path) | Destination::Zip { path, .. } = destination
        && std::fs::remove_file(path).is_err()
        && path.exists()
    {
        output::note(&format!(
            "{} could NOT be deleted: delete it yourself",
            path.display()
        ));
    }
}

/// Streams the unseals into `sink`; returns it with the counts of failed and released items.
async fn stream(
    client: &mut Client,
    batch: &UnsealBatch<'_>,
    rows: Vec<super::input::HandleRow>,
    sink: Sink,
) -> Result<(Sink, u64, u64), ClientError> {
    let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
    let mut writer = RowWriter::new(
        sink,
        batch.format,
        &["row", "handle", "number", "error"],
        batch.excel,
    )?;
    let purpose = batch.purpose.to_owned();
    let progress = super::bar(rows.len() as u64, "unsealing");
    let requests = futures::stream::iter(rows.into_iter().map(move |row| pb::UnsealRequest {
        handle: row.handle,
        purpose: purpose.clone(),
    }));
    let mut results = client.locker.unseal_batch(requests).await?.into_inner();
    let (mut failed, mut released) = (0u64, 0u64);
    while let Some(result) = results.next().await {
        let result = result?;
        progress.inc(1);
        let line = lines
            .get(result.index as usize)
            .copied()
            .unwrap_or_default();
        let number = Zeroizing::new(result.number);
        failed += u64::from(result.error.is_some());
        released += u64::from(result.error.is_none());
        if result.error.is_some() && !matches!(batch.destination, Destination::Stdout) {
            progress.suspend(|| output::batch_item_failed(line, &result.handle, &result.error));
        }
        let line_text = line.to_string();
        progress.suspend(|| {
            writer.row(
                &[
                    &line_text,
                    &result.handle,
                    number.as_str(),
                    &error_cell(&result.error),
                ],
                &json!({
                    "row": line, "handle": result.handle,
                    "number": (!number.is_empty()).then_some(number.as_str()),
                    "error": error_json(&result.error),
                }),
            )
        })?;
    }
    progress.finish_and_clear();
    Ok((writer.finish()?, failed, released))
}

/// Records the file as a carry-out; a file that cannot be recorded is deleted, so no file of
/// numbers leaves unrecorded.
async fn record(
    client: &mut Client,
    purpose: &str,
    released: u64,
    carried: CarriedOut,
    format: Format,
) -> Result<(), ClientError> {
    let remove = |why: String| {
        let removed = std::fs::remove_file(&carried.path);
        ClientError::Usage(format!(
            "{why}; {} {}",
            carried.path.display(),
            if removed.is_ok() {
                "was deleted"
            } else {
                "could NOT be deleted: delete it yourself"
            }
        ))
    };
    if released == 0 {
        return Err(remove("no number was unsealed".into()));
    }
    let request = pb::CarryOutRequest {
        purpose: purpose.to_owned(),
        count: released,
        format: carried.format as i32,
        file_sha256: carried.sha256.clone(),
    };
    match client.locker.record_carry_out(request).await {
        Ok(_) => {
            output::carried_out(
                format,
                &carried.path,
                carried.format,
                released,
                &carried.sha256,
            );
            Ok(())
        }
        Err(status) => Err(remove(format!(
            "the carry-out could not be recorded ({}: {})",
            vault_client::code_name(status.code()),
            status.message()
        ))),
    }
}
