//! Files to download: a PDF laid out off the request's worker with the system's Japanese font,
//! and a CSV that spreadsheet programs in Japanese offices open as UTF-8.

use axum::response::Response;

use super::{App, Failure, download};

/// Milliseconds since the epoch: when a PDF was made.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A PDF laid out by `lay_out` off the request's worker (fonts are parsed, glyphs embedded),
/// as a download named `name`.
pub async fn pdf_download(
    app: &App,
    name: &str,
    lay_out: impl FnOnce(krilla::text::Font) -> Result<Vec<u8>, vault_client::ClientError>
    + Send
    + 'static,
) -> Result<Response, Failure> {
    let font_path = app.font.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        let font = vault_client::pdf::find_font(font_path.as_deref())?;
        lay_out(font)
    })
    .await
    .map_err(|e| Failure::Internal(e.to_string()))?
    .map_err(|e| Failure::Internal(format!("the PDF could not be made: {e}")))?;
    Ok(download(bytes, "application/pdf", name))
}

/// `rows` under `header` as a CSV download named `name`.
pub fn csv_download(
    header: &[&str],
    rows: &[Vec<String>],
    name: &str,
) -> Result<Response, Failure> {
    // A byte-order mark: spreadsheet programs in Japanese offices then read UTF-8 as UTF-8.
    let mut writer = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    writer
        .write_record(header)
        .map_err(|e| Failure::Internal(e.to_string()))?;
    for row in rows {
        writer
            .write_record(row)
            .map_err(|e| Failure::Internal(e.to_string()))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Failure::Internal(e.to_string()))?;
    Ok(download(bytes, "text/csv; charset=utf-8", name))
}
