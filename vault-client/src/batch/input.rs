//! Reading batch input files as offices write them: UTF-8 with or without a BOM (Excel's "CSV
//! UTF-8" adds one) or Shift_JIS (its plain "CSV"), with an English or Japanese header row or
//! none, columns in any order when named. Every row keeps its line number, so a failed row can be found in the file.

use std::path::Path;

use vault_client::ClientError;
use zeroize::Zeroizing;

/// Header names of the subject column.
const SUBJECT_HEADERS: &[&str] = &[
    "subject_ref",
    "subject",
    "employee_id",
    "社員番号",
    "従業員番号",
    "職員番号",
    "社員コード",
    "管理番号",
];
/// Header names of the number column.
const NUMBER_HEADERS: &[&str] = &[
    "number",
    "individual_number",
    "my_number",
    "個人番号",
    "マイナンバー",
];
/// Header names of the handle column.
const HANDLE_HEADERS: &[&str] = &["handle", "ハンドル"];

/// One row to seal.
pub struct SealRow {
    /// Line number in the file (1 is the first line, a header included).
    pub line: u64,
    /// The caller's reference for the person.
    pub subject_ref: String,
    /// The number as written.
    pub number: Zeroizing<String>,
    /// Its 取得日 as the file gives it (an `acquired_on` / `取得日` column), for a manager to
    /// set afterwards (`acquired --batch`): a migration's date is proposed at seal, applied by
    /// a manager.
    pub acquired_on: Option<String>,
}

/// Names of a column that gives a row's acquisition date (取得日).
pub const ACQUIRED_HEADERS: &[&str] = &["acquired_on", "取得日"];

/// One handle to unseal.
pub struct HandleRow {
    /// Line number in the file.
    pub line: u64,
    /// The handle as written.
    pub handle: String,
    /// Every cell of the row, as written (kept beside the number in the output).
    pub cells: Vec<String>,
}

/// The rows of an unseal batch, with the file's header row if it had one.
pub struct HandleRows {
    /// The header's cells as written (trimmed), if the file named its columns.
    pub header: Option<Vec<String>>,
    /// The rows.
    pub rows: Vec<HandleRow>,
}

/// Reads a file as text: UTF-8 (its BOM removed), or else Shift_JIS (CP932), which Japanese
/// Excel writes for plain "CSV" — said on standard error, so nobody wonders. Bytes that are
/// neither are refused with the way out, never read as mojibake.
pub fn read_utf8(path: &Path) -> Result<Zeroizing<String>, ClientError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| ClientError::ReadFile {
        path: path.display().to_string(),
        source,
    })?);
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    if let Ok(text) = std::str::from_utf8(body) {
        return Ok(Zeroizing::new(text.to_owned()));
    }
    let (text, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(body);
    if had_errors {
        return Err(ClientError::Usage(format!(
            "{} is neither UTF-8 nor Shift_JIS: save it as \"CSV UTF-8\" (Excel) or convert it, e.g. iconv -t UTF-8",
            path.display()
        )));
    }
    crate::output::note(&format!("{} read as Shift_JIS (CP932)", path.display()));
    Ok(Zeroizing::new(text.into_owned()))
}

fn normalise(cell: &str) -> String {
    cell.trim().trim_matches('"').trim().to_lowercase()
}

fn column(header: &[String], names: &[&str]) -> Option<usize> {
    header
        .iter()
        .position(|cell| names.contains(&cell.as_str()))
}

/// The non-blank lines of `text` as CSV records, each with its line number (1-based). One row
/// per line: a quoted cell may hold commas, not line breaks. A row of empty cells (`,,`, which
/// Excel writes for a row left empty inside the range) is blank too.
fn records(text: &str) -> impl Iterator<Item = (u64, Result<csv::StringRecord, csv::Error>)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .trim(csv::Trim::All)
                .from_reader(line.as_bytes());
            let mut record = csv::StringRecord::new();
            let read = reader.read_record(&mut record).map(|_| record);
            (index as u64 + 1, read)
        })
        .filter(|(_, read)| {
            !read
                .as_ref()
                .is_ok_and(|record| record.iter().all(|cell| cell.trim().is_empty()))
        })
}

/// The rows of a seal batch: `subject_ref,number` by position, or by name under a header
/// (`subject_ref,number`, `社員番号,個人番号`, ...). Blank lines are skipped.
pub fn seal_rows(path: &Path) -> Result<Vec<SealRow>, ClientError> {
    let text = read_utf8(path)?;
    let mut rows = Vec::new();
    let mut columns = (0, 1);
    let mut acquired = None;
    for (index, (line, record)) in records(&text).enumerate() {
        let record = record.map_err(|e| {
            ClientError::Usage(format!("{}: line {line}: not CSV: {e}", path.display()))
        })?;
        if index == 0 {
            let header: Vec<String> = record.iter().map(normalise).collect();
            let subject = column(&header, SUBJECT_HEADERS);
            let number = column(&header, NUMBER_HEADERS);
            match (subject, number) {
                (Some(subject), Some(number)) => {
                    columns = (subject, number);
                    acquired = column(&header, ACQUIRED_HEADERS);
                    continue;
                }
                (None, None) => {}
                _ => {
                    return Err(ClientError::Usage(format!(
                        "{}: the header names {} but not both columns: name the subject column one of {} and the number column one of {}",
                        path.display(),
                        header.join(","),
                        SUBJECT_HEADERS.join("/"),
                        NUMBER_HEADERS.join("/")
                    )));
                }
            }
        }
        let cell = |i: usize| record.get(i).unwrap_or_default().to_owned();
        rows.push(SealRow {
            line,
            subject_ref: cell(columns.0),
            number: Zeroizing::new(cell(columns.1)),
            acquired_on: acquired.map(cell),
        });
    }
    Ok(rows)
}

/// The handles of an unseal batch: one per line, or a `handle` column under a header (other
/// columns, such as a seal batch's output or the office's own 社員番号 and 氏名, are kept for
/// the output).
pub fn handle_rows(path: &Path) -> Result<HandleRows, ClientError> {
    let text = read_utf8(path)?;
    let mut rows = Vec::new();
    let mut header = None;
    let mut column_index = 0;
    for (index, (line, record)) in records(&text).enumerate() {
        let record = record.map_err(|e| {
            ClientError::Usage(format!("{}: line {line}: not CSV: {e}", path.display()))
        })?;
        if index == 0 {
            let names: Vec<String> = record.iter().map(normalise).collect();
            if let Some(i) = column(&names, HANDLE_HEADERS) {
                column_index = i;
                header = Some(record.iter().map(|cell| cell.trim().to_owned()).collect());
                continue;
            }
        }
        rows.push(HandleRow {
            line,
            handle: record.get(column_index).unwrap_or_default().to_owned(),
            cells: record.iter().map(str::to_owned).collect(),
        });
    }
    Ok(HandleRows { header, rows })
}

/// Whether `cell` is a number as Excel shows a long one in a General-format column
/// (`1.23457E+11`): its last digits are lost, and only formatting the column as text
/// (文字列) before the numbers are entered or imported keeps them.
pub fn in_exponent_form(cell: &str) -> bool {
    let cell = cell.trim();
    let Some((mantissa, exponent)) = cell.split_once(['E', 'e']) else {
        return false;
    };
    let exponent = exponent.strip_prefix('+').unwrap_or(exponent);
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, "0"));
    !whole.is_empty()
        && !exponent.is_empty()
        && [whole, fraction, exponent]
            .iter()
            .all(|part| part.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp");
        std::io::Write::write_all(&mut f, bytes).expect("write");
        f
    }

    #[test]
    fn japanese_header_with_bom_is_a_header_and_columns_follow_their_names() {
        let f = file(
            "\u{feff}個人番号,社員番号\r\n123456789018,E-1\r\n\r\n123456789018,\"山田, 太郎\"\r\n"
                .as_bytes(),
        );
        let rows = seal_rows(f.path()).expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].line, rows[0].subject_ref.as_str()), (2, "E-1"));
        assert_eq!(rows[0].number.as_str(), "123456789018");
        assert_eq!(
            (rows[1].line, rows[1].subject_ref.as_str()),
            (4, "山田, 太郎")
        );
    }

    #[test]
    fn english_header_without_bom_and_no_header_at_all() {
        let f = file(b"subject_ref,number\nE-1,123456789018\n");
        let rows = seal_rows(f.path()).expect("rows");
        assert_eq!((rows.len(), rows[0].line), (1, 2));
        let f = file(b"E-1,123456789018\nE-2,123456789018\n");
        let rows = seal_rows(f.path()).expect("rows");
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn a_half_header_is_refused_with_the_way_out() {
        let f = file("社員番号,番号\nE-1,123456789018\n".as_bytes());
        let error = seal_rows(f.path()).err().expect("refused").to_string();
        assert!(error.contains("個人番号"), "{error}");
    }

    #[test]
    fn shift_jis_from_excel_is_read_and_garbage_is_refused() {
        // 社員番号,個人番号 / E-1,123456789018 as Japanese Excel saves plain CSV.
        let (sjis, _, _) =
            encoding_rs::SHIFT_JIS.encode("社員番号,個人番号\r\nＥ-１,123456789018\r\n");
        let f = file(&sjis);
        let rows = seal_rows(f.path()).expect("rows");
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].line, rows[0].subject_ref.as_str()), (2, "Ｅ-１"));
        assert_eq!(rows[0].number.as_str(), "123456789018");
        let f = file(b"\xff\xfe\x00\x81\x00garbage");
        let error = seal_rows(f.path()).err().expect("refused").to_string();
        assert!(error.contains("neither UTF-8 nor Shift_JIS"), "{error}");
    }

    #[test]
    fn handles_one_per_line_or_under_a_header() {
        let f = file(b"mnh_a\n\nmnh_b\n");
        let rows = handle_rows(f.path()).expect("rows").rows;
        assert_eq!(
            rows.iter()
                .map(|r| (r.line, r.handle.as_str()))
                .collect::<Vec<_>>(),
            vec![(1, "mnh_a"), (3, "mnh_b")]
        );
        let f = file("\u{feff}row,subject_ref,handle\n2,E-1,mnh_a\n".as_bytes());
        let rows = handle_rows(f.path()).expect("rows");
        assert_eq!(rows.rows[0].handle, "mnh_a");
        assert_eq!(rows.rows[0].cells, vec!["2", "E-1", "mnh_a"]);
        assert_eq!(
            rows.header,
            Some(vec!["row".into(), "subject_ref".into(), "handle".into()])
        );
    }

    #[test]
    fn rows_excel_left_empty_are_blank() {
        let f = file(b"subject_ref,number\r\n,\r\nE-1,123456789018\r\n , ,\r\n");
        let rows = seal_rows(f.path()).expect("rows");
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![3]);
        let f = file(b"handle,name\n,\nmnh_a,x\n");
        assert_eq!(handle_rows(f.path()).expect("rows").rows.len(), 1);
    }

    #[test]
    fn excel_exponent_form_is_recognised() {
        for cell in ["1.23457E+11", "1.2E11", "4E+11", " 1.23457e+11 "] {
            assert!(in_exponent_form(cell), "{cell}");
        }
        for cell in [
            "123456789018",
            "E-1",
            "1.2",
            "E+11",
            "1.2E+",
            "1.2E+1a",
            "x1E5",
        ] {
            assert!(!in_exponent_form(cell), "{cell}");
        }
    }
}
