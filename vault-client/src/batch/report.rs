//! Writing batch results: one CSV row (with a header row) or one JSON object per item, in input
//! order, each with the line of the input it came from. `--excel` adds the BOM and CRLF line
//! ends that Japanese Excel needs to read UTF-8 correctly.

use std::io::Write;

use serde_json::json;
use vault_client::{ClientError, pb};

use crate::output::Format;

/// The byte order mark that tells Excel a CSV file is UTF-8.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Rows of results, as CSV or JSON lines, to any writer.
pub struct RowWriter<W: Write> {
    format: Format,
    csv: Option<csv::Writer<W>>,
    json: Option<W>,
}

fn write_failed(e: impl std::fmt::Display) -> ClientError {
    ClientError::Usage(format!("cannot write the results: {e}"))
}

impl<W: Write> RowWriter<W> {
    /// Starts the output with `header` (CSV only); `excel` adds a BOM and CRLF line ends.
    pub fn new(
        mut out: W,
        format: Format,
        header: &[&str],
        excel: bool,
    ) -> Result<Self, ClientError> {
        if format == Format::Json {
            return Ok(RowWriter {
                format,
                csv: None,
                json: Some(out),
            });
        }
        if excel {
            out.write_all(BOM).map_err(write_failed)?;
        }
        let terminator = if excel {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        };
        let mut writer = csv::WriterBuilder::new()
            .terminator(terminator)
            .from_writer(out);
        writer.write_record(header).map_err(write_failed)?;
        Ok(RowWriter {
            format,
            csv: Some(writer),
            json: None,
        })
    }

    /// Writes one row: `cells` for CSV, `object` for JSON.
    pub fn row(&mut self, cells: &[&str], object: &serde_json::Value) -> Result<(), ClientError> {
        match (self.format, &mut self.csv, &mut self.json) {
            (Format::Text, Some(writer), _) => {
                writer.write_record(cells).map_err(write_failed)?;
                // Lines reach a pipe as they come, not when a buffer fills.
                writer.flush().map_err(write_failed)
            }
            (_, _, Some(out)) => writeln!(out, "{object}").map_err(write_failed),
            _ => Err(write_failed("no writer")),
        }
    }

    /// Flushes and returns the writer.
    pub fn finish(self) -> Result<W, ClientError> {
        match (self.csv, self.json) {
            (Some(writer), _) => writer.into_inner().map_err(write_failed),
            (_, Some(mut out)) => {
                out.flush().map_err(write_failed)?;
                Ok(out)
            }
            (None, None) => Err(write_failed("no writer")),
        }
    }
}

/// An item's error as `CODE: message` for a CSV cell.
pub fn error_cell(error: &Option<pb::BatchError>) -> String {
    error
        .as_ref()
        .map(|e| format!("{}: {}", e.code, e.message))
        .unwrap_or_default()
}

/// The items of a batch that failed, and how.
#[derive(Debug, Default)]
pub struct Failures {
    count: u64,
    codes: std::collections::BTreeSet<String>,
}

/// Codes a retry cannot mend, most serious first; then those it can.
const BY_SERIOUSNESS: [tonic::Code; 17] = {
    use tonic::Code::*;
    [
        DataLoss,
        Internal,
        Unknown,
        Unimplemented,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        InvalidArgument,
        FailedPrecondition,
        AlreadyExists,
        OutOfRange,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Aborted,
        Cancelled,
        Ok,
    ]
};

impl Failures {
    /// Notes one item's outcome.
    pub fn note(&mut self, error: &Option<pb::BatchError>) {
        if let Some(error) = error {
            self.count += 1;
            self.codes.insert(error.code.clone());
        }
    }

    /// How the whole run ends: `Ok` when no item failed; else with the class of the most
    /// serious failure, so that "try again" (UNAVAILABLE, ABORTED) is said only when a retry
    /// can mend every failed item — a cron job must not retry a check-digit error forever.
    pub fn outcome(&self) -> Result<(), tonic::Status> {
        if self.count == 0 {
            return Ok(());
        }
        let code = BY_SERIOUSNESS
            .into_iter()
            .find(|code| self.codes.contains(vault_client::code_name(*code)))
            .unwrap_or(tonic::Code::Unknown);
        let retry = if matches!(
            code,
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted
                | tonic::Code::Cancelled
                | tonic::Code::ResourceExhausted
        ) {
            "; running the batch again may mend them"
        } else {
            "; mend them before running the batch again"
        };
        let codes: Vec<&str> = self.codes.iter().map(String::as_str).collect();
        Err(tonic::Status::new(
            code,
            format!(
                "{} items of the batch failed ({}; see their lines){retry}",
                self.count,
                codes.join(", ")
            ),
        ))
    }
}

/// An item's error as a JSON value.
pub fn error_json(error: &Option<pb::BatchError>) -> serde_json::Value {
    error.as_ref().map_or(
        serde_json::Value::Null,
        |e| json!({"code": e.code, "message": e.message, "reason": e.reason}),
    )
}

/// Whether a cell could hold an individual number (twelve digits or more, ASCII or
/// full-width): a refused row's subject is then not echoed, since a number in the wrong column
/// is a common mistake and the results file is kept less carefully than the input.
pub fn may_hold_number(cell: &str) -> bool {
    cell.chars()
        .filter(|c| c.is_ascii_digit() || ('０'..='９').contains(c))
        .count()
        >= 12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_output_starts_with_a_bom_and_ends_lines_with_crlf() {
        let mut writer =
            RowWriter::new(Vec::new(), Format::Text, &["row", "社員番号"], true).expect("writer");
        writer
            .row(&["2", "山田, 太郎"], &serde_json::Value::Null)
            .expect("row");
        let bytes = writer.finish().expect("finish");
        assert!(bytes.starts_with(BOM));
        assert_eq!(
            String::from_utf8_lossy(&bytes[3..]),
            "row,社員番号\r\n2,\"山田, 太郎\"\r\n"
        );
    }

    #[test]
    fn numbers_in_any_width_are_suspected() {
        assert!(may_hold_number("1234 5678 9018"));
        assert!(may_hold_number("１２３４５６７８９０１８"));
        assert!(!may_hold_number("E-2024-0042"));
    }
}
