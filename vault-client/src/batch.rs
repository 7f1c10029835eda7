//! `seal --batch` and `unseal --batch`: stream many items through one call, with a progress bar
//! on standard error and one result line per item, in input order, on standard output.

use std::path::Path;

use futures::StreamExt;
use serde_json::json;
use vault_client::{Client, ClientError, pb};
use zeroize::Zeroizing;

use crate::output::Format;

fn read(path: &Path) -> Result<Zeroizing<String>, ClientError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| ClientError::ReadFile {
            path: path.display().to_string(),
            source,
        })
}

fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len}  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    bar
}

fn error_text(error: &Option<pb::BatchError>) -> String {
    error
        .as_ref()
        .map(|e| format!("{}: {}", e.code, e.message))
        .unwrap_or_default()
}

/// Seals every `subject_ref,number` row of a CSV file (a header row is skipped) with the
/// template's tenant, kind, purposes and verification. Output lines follow the input rows;
/// a failed row has an empty subject and its error.
pub async fn seal(
    client: &mut Client,
    template: pb::SealRequest,
    file: &Path,
    format: Format,
) -> Result<u64, ClientError> {
    let text = read(file)?;
    let rows: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.eq_ignore_ascii_case("subject_ref,number"))
        .map(|line| {
            let (subject, number) = line.split_once(',').unwrap_or((line, ""));
            (subject.trim().to_owned(), number.trim().to_owned())
        })
        .collect();
    let subjects: Vec<String> = rows.iter().map(|(s, _)| s.clone()).collect();
    let requests =
        futures::stream::iter(
            rows.into_iter()
                .map(move |(subject_ref, number)| pb::SealRequest {
                    subject_ref,
                    number,
                    ..template.clone()
                }),
        );
    let progress = bar(subjects.len() as u64, "sealing");
    let mut results = client.locker.seal_batch(requests).await?.into_inner();
    let mut failed = 0;
    while let Some(result) = results.next().await {
        let result = result?;
        progress.inc(1);
        // A refused row's subject may be exactly what was refused (a number in the wrong
        // column): only rows the server accepted have their subject echoed.
        let subject = if result.error.is_none() {
            subjects
                .get(result.index as usize)
                .cloned()
                .unwrap_or_default()
        } else {
            String::new()
        };
        let (handle, existing) = result
            .sealed
            .as_ref()
            .map(|s| (s.handle.clone(), s.existing))
            .unwrap_or_default();
        failed += u64::from(result.error.is_some());
        progress.suspend(|| match format {
            Format::Json => println!(
                "{}",
                json!({"index": result.index, "subject_ref": subject, "handle": handle, "existing": existing,
                       "error": result.error.as_ref().map(|e| json!({"code": e.code, "message": e.message}))})
            ),
            Format::Text => println!("{subject},{handle},{existing},{}", error_text(&result.error)),
        });
    }
    progress.finish_and_clear();
    Ok(failed)
}

/// Unseals every handle (one per line) of a file for `purpose`.
pub async fn unseal(
    client: &mut Client,
    purpose: &str,
    file: &Path,
    format: Format,
) -> Result<u64, ClientError> {
    let text = read(file)?;
    let handles: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let purpose = purpose.to_owned();
    let progress = bar(handles.len() as u64, "unsealing");
    let requests =
        futures::stream::iter(handles.into_iter().map(move |handle| pb::UnsealRequest {
            handle,
            purpose: purpose.clone(),
        }));
    let mut results = client.locker.unseal_batch(requests).await?.into_inner();
    let mut failed = 0;
    while let Some(result) = results.next().await {
        let result = result?;
        progress.inc(1);
        failed += u64::from(result.error.is_some());
        let number = Zeroizing::new(result.number);
        progress.suspend(|| match format {
            Format::Json => println!(
                "{}",
                json!({"index": result.index, "handle": result.handle, "number": (!number.is_empty()).then_some(number.as_str()),
                       "error": result.error.as_ref().map(|e| json!({"code": e.code, "message": e.message}))})
            ),
            Format::Text => println!("{},{},{}", result.handle, number.as_str(), error_text(&result.error)),
        });
    }
    progress.finish_and_clear();
    Ok(failed)
}
