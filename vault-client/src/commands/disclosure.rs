//! 本人開示 (規程第45・46条): a manager answers a person's disclosure request with a notice the
//! locker signs — the record and every audited use of it — filed as JSON (the signed
//! original), CSV (the uses, for a spreadsheet) and a 開示通知書 PDF to send; and anyone
//! verifies a filed notice offline with the audit public key.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use vault_audit::disclosure::DisclosureNotice;
use vault_client::{Client, ClientError, pb};
use zeroize::Zeroizing;

use crate::output::{self, Format};
use crate::reports::jst_day_start;

/// How the notice names who handled the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HandlersArg {
    /// Display names (operator ids where none is set).
    Name,
    /// Roles only (事務取扱担当者, …).
    Role,
}

/// Disclosure commands.
#[derive(Debug, Subcommand)]
pub enum DisclosureCommand {
    /// Answer a disclosure request (managers): the record of the person whose number is read
    /// from standard input (or of --handle) and its uses, as a signed notice.
    Notice {
        /// The tenant (事業所) answering.
        #[arg(long)]
        tenant: String,
        /// The record's handle (else the person's number is read from standard input).
        #[arg(long)]
        handle: Option<String>,
        /// The office's reference for the request (受付番号); never a number.
        #[arg(long)]
        reference: String,
        /// First day of uses to list, YYYY-MM-DD (JST; default: from the start).
        #[arg(long)]
        from: Option<String>,
        /// Last day of uses to list, YYYY-MM-DD (JST), included (default: until now).
        #[arg(long)]
        to: Option<String>,
        /// How uses name who handled the number.
        #[arg(long, value_enum, default_value_t = HandlersArg::Name)]
        handlers: HandlersArg,
        /// An item not disclosed (第45条2): `record`, `uses` or `handlers`, the ground (1–3)
        /// and the reason given to the person, as ITEM:GROUND:REASON. Repeatable.
        #[arg(long = "withhold", value_name = "ITEM:GROUND:REASON")]
        withhold: Vec<String>,
        /// Write the signed notice (JSON) to this new file.
        #[arg(long, value_name = "FILE.json")]
        json: Option<PathBuf>,
        /// Write the uses as CSV to this new file.
        #[arg(long, value_name = "FILE.csv")]
        csv: Option<PathBuf>,
        /// Write the 開示通知書 (A4, Japanese) to this new PDF file.
        #[arg(long, value_name = "FILE.pdf")]
        pdf: Option<PathBuf>,
        /// A Japanese TrueType/OpenType font for the PDF (default: IPAex or Noto CJK from the
        /// system, or LOCKER_PDF_FONT).
        #[arg(long, value_name = "FILE")]
        font: Option<PathBuf>,
    },
    /// Write a filed notice (JSON) as a 開示通知書 PDF.
    Pdf {
        /// The signed notice (JSON).
        file: PathBuf,
        /// The PDF file to write (a new file).
        #[arg(long, value_name = "FILE.pdf")]
        out: PathBuf,
        /// A Japanese TrueType/OpenType font.
        #[arg(long, value_name = "FILE")]
        font: Option<PathBuf>,
    },
    /// Verify a filed notice offline with the audit public key(s) (no daemon); with
    /// --export, also hold its uses against an auditor's export of the log.
    Verify {
        /// The signed notice (JSON).
        file: PathBuf,
        /// PEM file of audit public keys (`vault-client audit public-key`).
        #[arg(long, value_name = "PEM")]
        public_key: PathBuf,
        /// An export of the whole log (`vault-client audit export`, by an auditor) made after
        /// the notice: it must verify through the notice's checkpoint, and the record's
        /// entries in it must be exactly the notice's uses.
        #[arg(long, value_name = "FILE.jsonl")]
        export: Option<PathBuf>,
    },
}

/// Whether `command` reads the person's number from standard input.
pub fn reads_number(command: &DisclosureCommand) -> bool {
    matches!(command, DisclosureCommand::Notice { handle: None, .. })
}

/// Parses `ITEM:GROUND:REASON`.
fn withholding(text: &str) -> Result<pb::Withholding, ClientError> {
    let usage = || {
        ClientError::Usage(format!(
            "--withhold {text:?}: give ITEM:GROUND:REASON, e.g. handlers:2:業務の適正な実施に著しい支障"
        ))
    };
    let (item, rest) = text.split_once(':').ok_or_else(usage)?;
    let (ground, reason) = rest.split_once(':').ok_or_else(usage)?;
    Ok(pb::Withholding {
        item: item.to_owned(),
        ground: ground.parse().map_err(|_| usage())?,
        reason: reason.to_owned(),
    })
}

/// Runs a disclosure command that needs the daemon.
pub async fn run(
    client: &mut Client,
    command: DisclosureCommand,
    format: Format,
    number: &Zeroizing<String>,
) -> Result<(), ClientError> {
    match command {
        DisclosureCommand::Notice {
            tenant,
            handle,
            reference,
            from,
            to,
            handlers,
            withhold,
            json,
            csv,
            pdf,
            font,
        } => {
            let withheld = withhold
                .iter()
                .map(|w| withholding(w))
                .collect::<Result<Vec<_>, _>>()?;
            // Files and font are checked before the call: a mistake costs no audit entry.
            for path in [&json, &csv, &pdf].into_iter().flatten() {
                if path.exists() {
                    return Err(ClientError::Usage(format!(
                        "{} exists already: a notice is never written over a file",
                        path.display()
                    )));
                }
            }
            let font = match &pdf {
                Some(_) => Some(vault_client::pdf::find_font(font.as_deref())?),
                None => None,
            };
            let subject = match handle {
                Some(handle) => pb::disclosure_request::Subject::Handle(handle),
                None => pb::disclosure_request::Subject::Number(number.to_string()),
            };
            let answer = client
                .admin
                .disclose(pb::DisclosureRequest {
                    tenant,
                    subject: Some(subject),
                    reference,
                    from_unix: from.map_or(Ok(0), |d| jst_day_start(&d, false))?,
                    to_unix: to.map_or(Ok(0), |d| jst_day_start(&d, true))?,
                    handlers: match handlers {
                        HandlersArg::Name => pb::HandlersShown::Name,
                        HandlersArg::Role => pb::HandlersShown::Role,
                    } as i32,
                    withheld,
                })
                .await?
                .into_inner();
            let notice = DisclosureNotice::from_json(&answer.notice_json).map_err(|e| {
                ClientError::Usage(format!("the daemon answered an unreadable notice: {e}"))
            })?;
            if let Some(path) = &json {
                crate::output::write_new(path, answer.notice_json.as_bytes())?;
            }
            if let Some(path) = &csv {
                crate::output::write_new(path, &uses_csv(&notice)?)?;
            }
            if let (Some(path), Some(font)) = (&pdf, font) {
                let bytes = vault_client::pdf::disclosure_pdf(&notice, font)?;
                crate::output::write_new(path, &bytes)?;
            }
            summary(format, &notice, &answer.notice_json, [&json, &csv, &pdf]);
            Ok(())
        }
        DisclosureCommand::Pdf { file, out, font } => {
            let font = vault_client::pdf::find_font(font.as_deref())?;
            let notice = read_notice(&file).map_err(ClientError::Usage)?;
            let bytes = vault_client::pdf::disclosure_pdf(&notice, font)?;
            crate::output::write_new(&out, &bytes)?;
            output::written(format, &out, bytes.len());
            Ok(())
        }
        DisclosureCommand::Verify { .. } => Err(ClientError::Usage(
            "disclosure verify runs without a daemon".into(),
        )),
    }
}

/// What was answered, on standard output: the notice itself with `--output json` when no
/// file was asked for, else a summary.
fn summary(format: Format, notice: &DisclosureNotice, json: &str, files: [&Option<PathBuf>; 3]) {
    let written: Vec<String> = files
        .into_iter()
        .flatten()
        .map(|p| p.display().to_string())
        .collect();
    let body = &notice.body;
    match format {
        Format::Json if written.is_empty() => println!("{json}"),
        Format::Json => output::print_json(&serde_json::json!({
            "reference": body.reference,
            "held": body.held,
            "uses": body.uses.len(),
            "withheld": body.withheld.len(),
            "files": written,
        })),
        Format::Text => {
            println!(
                "disclosure {}: {}; {} uses listed, {} items withheld; log 1..={} (checkpoint {})",
                body.reference,
                if body.held {
                    "a record is held"
                } else {
                    "nothing is held"
                },
                body.uses.len(),
                body.withheld.len(),
                body.coverage.last_seq,
                body.coverage.checkpoint
            );
            for path in written {
                println!("{path} written");
            }
        }
    }
}

/// The uses as CSV: one row per use, times in JST.
fn uses_csv(notice: &DisclosureNotice) -> Result<Vec<u8>, ClientError> {
    let fail = |e: csv::Error| ClientError::Usage(format!("cannot write CSV: {e}"));
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record([
            "seq",
            "time_jst",
            "category",
            "action",
            "handler",
            "role",
            "purpose",
            "outcome",
            "carried_out",
        ])
        .map_err(fail)?;
    for u in &notice.body.uses {
        writer
            .write_record([
                u.seq.to_string().as_str(),
                &jst_time(u.time_ms),
                &u.category,
                &u.action,
                &u.handler,
                &u.role,
                &u.purpose,
                &u.outcome,
                &u.carried_out,
            ])
            .map_err(fail)?;
    }
    writer
        .into_inner()
        .map_err(|e| ClientError::Usage(format!("cannot write CSV: {e}")))
}

/// `2026-12-07 10:05:00` (JST) for milliseconds since the epoch: how a spreadsheet reads a time.
fn jst_time(ms: i64) -> String {
    let Some(at) = vault_client::pdf::jst_at(ms) else {
        return String::new();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn read_notice(file: &Path) -> Result<DisclosureNotice, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    DisclosureNotice::from_json(text.trim_end()).map_err(|e| format!("{}: {e}", file.display()))
}

/// `disclosure verify`: checks a filed notice with the audit public key(s), offline, and with
/// `export` its uses against the log.
pub fn verify(
    file: &Path,
    pem: &Path,
    export: Option<&Path>,
    format: Format,
) -> Result<(), String> {
    let keys = std::fs::read_to_string(pem)
        .map_err(|e| format!("cannot read {}: {e}", pem.display()))
        .and_then(|text| {
            vault_audit::checkpoint::parse_public_keys_pem(&text)
                .map_err(|e| format!("{}: {e}", pem.display()))
        })?;
    let notice = read_notice(file)?;
    let verified = notice.verify_with_any(&keys);
    let body = &notice.body;
    let matched = match (export, &verified) {
        (Some(export), Ok(())) => Some(against_export(&notice, export, &keys)?),
        _ => None,
    };
    match format {
        Format::Json => output::print_json(&serde_json::json!({
            "ok": verified.is_ok(),
            "reference": body.reference,
            "key_version": notice.key_version,
            "checkpoint": body.coverage.checkpoint,
            "last_seq": body.coverage.last_seq,
            "uses_match_export": matched.as_ref().map(|m| m.uses),
        })),
        Format::Text if verified.is_ok() => println!(
            "notice OK: {} of tenant {}, signed by audit key v{}, covering the log to entry {} (checkpoint {})",
            body.reference,
            body.tenant,
            notice.key_version,
            body.coverage.last_seq,
            body.coverage.checkpoint
        ),
        Format::Text => {}
    }
    if let (Format::Text, Some(matched)) = (format, &matched) {
        println!(
            "uses OK: the export's {} entries of the record through checkpoint {} are the notice's, none left out",
            matched.uses, matched.checkpoint
        );
    }
    verified.map_err(|e| format!("notice {} does NOT verify: {e}", body.reference))
}

/// The notice held against an audit export that itself verifies through the notice's entry.
fn against_export(
    notice: &DisclosureNotice,
    export: &Path,
    keys: &[Vec<u8>],
) -> Result<vault_audit::disclosure::ExportMatch, String> {
    let text = std::fs::read_to_string(export)
        .map_err(|e| format!("cannot read {}: {e}", export.display()))?;
    let lines = vault_audit::offline::parse_export(&text)
        .map_err(|e| format!("{}: {e}", export.display()))?;
    let report = vault_audit::offline::verify(&lines, keys);
    let through = notice.body.coverage.last_seq;
    if !report.ok || report.anchored_through < through {
        return Err(format!(
            "{} does not verify through entry {through} (anchored through {}): {}",
            export.display(),
            report.anchored_through,
            report.problems.join("; ")
        ));
    }
    vault_audit::disclosure::check_against_export(notice, &lines).map_err(|e| {
        format!(
            "notice {} does NOT match the audit export: {e}",
            notice.body.reference
        )
    })
}
