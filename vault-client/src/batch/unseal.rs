//! `unseal --batch FILE`: every handle unsealed through one UnsealBatch stream, the numbers
//! written where `carry_out` allows, and a file that leaves the locker recorded as a carry-out.

use std::path::Path;

use futures::StreamExt;
use serde_json::json;
use vault_client::{Client, ClientError, pb};
use zeroize::Zeroizing;

use super::carry_out::{CarriedOut, Destination, Sink, ZIP_ENTRY_CSV, ZIP_ENTRY_JSON};
use super::input::{HandleRows, handle_rows};
use super::report::{Failures, RowWriter, error_cell, error_json};
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

/// Unseals every handle of the batch; returns the items that failed.
pub async fn unseal(client: &mut Client, batch: UnsealBatch<'_>) -> Result<Failures, ClientError> {
    let rows = handle_rows(batch.file)?;
    let entry = match batch.format {
        Format::Json => ZIP_ENTRY_JSON,
        Format::Text => ZIP_ENTRY_CSV,
    };
    // The file is created before anything is unsealed: one that exists already stops the run.
    let sink = Sink::open(&batch.destination, entry)?;
    // One request id for the unseals and the carry-out that names their file: the audit log
    // then ties each record's use to the file it went into (本人開示 names it).
    let request_id = new_request_id();
    let (sink, failed, released) = match stream(client, &batch, rows, sink, &request_id).await {
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
        record(
            client,
            batch.purpose,
            released,
            carried,
            batch.format,
            &request_id,
        )
        .await?;
    }
    Ok(failed)
}

/// A fresh `x-request-id` (16 hex digits).
fn new_request_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    // On the (practically impossible) rng failure the ids are zeros: the carry-out is still
    // recorded, only its tie to the unseals is weaker.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    hex::encode(bytes)
}

/// `message` as a request carrying `request_id` as its `x-request-id`.
fn with_request_id<T>(message: T, request_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = request_id.parse() {
        request.metadata_mut().insert("x-request-id", value);
    }
    request
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

/// Columns the output writes itself, after the input's own.
const LOCKER_COLUMNS: [&str; 4] = ["subject_ref", "subject_kind", "number", "error"];

/// Which input columns the output keeps: all of a named file's but those the output writes
/// itself (a seal batch's `row` and `error` are stale, its `subject_ref` is the locker's
/// anyway); for a bare list of handles, the handle.
fn kept_columns(header: Option<&[String]>) -> (Vec<String>, Vec<usize>) {
    match header {
        None => (vec!["handle".into()], vec![0]),
        Some(header) => header
            .iter()
            .enumerate()
            .filter(|(_, name)| {
                let name = name.to_lowercase();
                name != "row" && !LOCKER_COLUMNS.contains(&name.as_str())
            })
            .map(|(i, name)| (name.clone(), i))
            .unzip(),
    }
}

/// Streams the unseals into `sink`; returns it with the failures and the count released.
async fn stream(
    client: &mut Client,
    batch: &UnsealBatch<'_>,
    input: HandleRows,
    sink: Sink,
    request_id: &str,
) -> Result<(Sink, Failures, u64), ClientError> {
    let (names, kept) = kept_columns(input.header.as_deref());
    let header: Vec<&str> = std::iter::once("row")
        .chain(names.iter().map(String::as_str))
        .chain(LOCKER_COLUMNS)
        .collect();
    let mut writer = RowWriter::new(sink, batch.format, &header, batch.excel)?;
    let purpose = batch.purpose.to_owned();
    let progress = super::bar(input.rows.len() as u64, "unsealing");
    let requests: Vec<pb::UnsealRequest> = input
        .rows
        .iter()
        .map(|row| pb::UnsealRequest {
            handle: row.handle.clone(),
            purpose: purpose.clone(),
        })
        .collect();
    let mut results = client
        .locker
        .unseal_batch(with_request_id(futures::stream::iter(requests), request_id))
        .await?
        .into_inner();
    let (mut failures, mut released) = (Failures::default(), 0u64);
    while let Some(result) = results.next().await {
        let result = result?;
        progress.inc(1);
        let Some(row) = input.rows.get(result.index as usize) else {
            return Err(ClientError::Usage(format!(
                "the daemon answered item {} of a batch of {}",
                result.index,
                input.rows.len()
            )));
        };
        let number = Zeroizing::new(result.number);
        failures.note(&result.error);
        released += u64::from(result.error.is_none());
        if result.error.is_some() && !matches!(batch.destination, Destination::Stdout) {
            progress.suspend(|| output::batch_item_failed(row.line, &result.handle, &result.error));
        }
        let kind = if result.error.is_none() {
            output::kind_name(result.subject_kind)
        } else {
            ""
        };
        let line_text = row.line.to_string();
        let kept_cells: Vec<&str> = kept
            .iter()
            .map(|&i| row.cells.get(i).map_or("", String::as_str))
            .collect();
        let error_text = error_cell(&result.error);
        let cells: Vec<&str> = std::iter::once(line_text.as_str())
            .chain(kept_cells.iter().copied())
            .chain([
                result.subject_ref.as_str(),
                kind,
                number.as_str(),
                error_text.as_str(),
            ])
            .collect();
        let columns: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(&kept_cells)
            .map(|(name, cell)| (name.clone(), json!(cell)))
            .collect();
        progress.suspend(|| {
            writer.row(
                &cells,
                &json!({
                    "row": row.line, "handle": result.handle,
                    "columns": columns,
                    "subject_ref": (result.error.is_none()).then_some(&result.subject_ref),
                    "subject_kind": (result.error.is_none()).then_some(kind),
                    "number": (!number.is_empty()).then_some(number.as_str()),
                    "error": error_json(&result.error),
                }),
            )
        })?;
    }
    progress.finish_and_clear();
    Ok((writer.finish()?, failures, released))
}

/// Records the file as a carry-out; a file that cannot be recorded is deleted, so no file of
/// numbers leaves unrecorded.
async fn record(
    client: &mut Client,
    purpose: &str,
    released: u64,
    carried: CarriedOut,
    format: Format,
    request_id: &str,
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
    match client
        .locker
        .record_carry_out(with_request_id(request, request_id))
        .await
    {
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
