//! The life cycle of the handling rules: retire (退職), unretire, dispose-due, corrections
//! (訂正, 第47・48条) and deletion certificates (削除証明書). Definitions and the calls;
//! printing is in `output` and `pdf`.

use std::path::PathBuf;

use clap::Subcommand;
use vault_client::{Client, ClientError, pb};
use zeroize::Zeroizing;

use crate::output::{self, Format};

/// Correction commands.
#[derive(Debug, Subcommand)]
pub enum CorrectCommand {
    /// Request a correction of HANDLE to the number read from stdin (handlers, services,
    /// managers);
    /// prints the correction id.
    Request {
        /// Record handle.
        handle: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Who asked for it (本人, 代理人, ...).
        #[arg(long)]
        asked_by: String,
    },
    /// Apply a pending correction (managers other than the requester).
    Approve {
        /// Correction id.
        id: String,
        /// A note for the record.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Refuse a pending correction (managers other than the requester).
    Reject {
        /// Correction id.
        id: String,
        /// Why.
        #[arg(long)]
        note: String,
    },
    /// List the correction records kept (one year after their decision).
    List {
        /// Only this tenant.
        #[arg(long, default_value = "")]
        tenant: String,
    },
}

/// Deletion certificate commands.
#[derive(Debug, Subcommand)]
pub enum CertificateCommand {
    /// Show the certificate of a disposed record.
    Show {
        /// Record handle.
        handle: String,
    },
    /// Print the certificate as JSON, for filing and for `certificate verify`.
    Export {
        /// Record handle.
        handle: String,
    },
    /// Write the certificate as a PDF (削除証明書, A4, Japanese) to print, stamp and file.
    Pdf {
        /// Record handle.
        handle: String,
        /// The PDF file to write (a new file).
        #[arg(long, value_name = "FILE.pdf")]
        out: PathBuf,
        /// A Japanese TrueType/OpenType font (default: IPAex or Noto CJK from the system, or
        /// LOCKER_PDF_FONT).
        #[arg(long, value_name = "FILE")]
        font: Option<PathBuf>,
    },
    /// Verify an exported certificate offline with the audit public key(s) (no daemon).
    Verify {
        /// The exported certificate (JSON).
        file: PathBuf,
        /// PEM file of audit public keys (`vault-client audit public-key`).
        #[arg(long, value_name = "PEM")]
        public_key: PathBuf,
    },
}

/// Verifies an exported deletion certificate offline (no daemon).
pub fn verify_certificate(
    file: &std::path::Path,
    pem: &std::path::Path,
    format: Format,
) -> Result<(), String> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let keys = vault_audit::checkpoint::parse_public_keys_pem(&read(pem)?)
        .map_err(|e| format!("{}: {e}", pem.display()))?;
    let certificate: vault_audit::certificate::DeletionCertificate =
        serde_json::from_str(&read(file)?)
            .map_err(|e| format!("{} is not a deletion certificate: {e}", file.display()))?;
    let ok = certificate.verify_with_any(&keys);
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"ok": ok, "handle": certificate.handle, "key_version": certificate.key_version})
        ),
        Format::Text if ok => println!(
            "certificate OK: {} disposed of, signed by audit key v{}",
            certificate.handle, certificate.key_version
        ),
        Format::Text => {}
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "certificate for {} does NOT verify with the given public key(s)",
            certificate.handle
        ))
    }
}

/// Now, in milliseconds since the epoch (a printed record's issue time).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `retire`: the person left on `left_on`.
pub async fn retire(
    client: &mut Client,
    handle: String,
    left_on: String,
    format: Format,
) -> Result<(), ClientError> {
    let record = client
        .locker
        .retire(pb::RetireRequest { handle, left_on })
        .await?
        .into_inner();
    output::record(format, &record);
    Ok(())
}

/// `unretire` (managers).
pub async fn unretire(
    client: &mut Client,
    handle: String,
    reason: String,
    format: Format,
) -> Result<(), ClientError> {
    let record = client
        .locker
        .unretire(pb::UnretireRequest { handle, reason })
        .await?
        .into_inner();
    output::record(format, &record);
    Ok(())
}

/// `acquired HANDLE --on DATE --reason TEXT` (managers): a migrated record's 取得日.
pub async fn acquired(
    client: &mut Client,
    handle: String,
    acquired_on: String,
    reason: String,
    format: Format,
) -> Result<(), ClientError> {
    let record = client
        .locker
        .set_acquisition_date(pb::SetAcquisitionDateRequest {
            handle,
            acquired_on,
            reason,
        })
        .await?
        .into_inner();
    output::record(format, &record);
    Ok(())
}

/// `acquired --batch FILE` (managers): the 取得日 of every handle of a migration's file; exits
/// with the class of the most serious refused row, as the other batches do.
pub async fn acquired_batch(
    client: &mut Client,
    file: &std::path::Path,
    on: Option<String>,
    reason: String,
    format: Format,
    excel: bool,
) -> Result<(), ClientError> {
    let failures = crate::batch::set_acquisition_dates(
        client,
        crate::batch::AcquiredBatch {
            file,
            on: on.as_deref(),
            reason: &reason,
            format,
            excel,
        },
    )
    .await?;
    failures.outcome().map_err(ClientError::Status)
}

/// `dispose-due` (admins): the disposal scheduler, now.
pub async fn dispose_due(client: &mut Client, format: Format) -> Result<(), ClientError> {
    let report = client
        .admin
        .run_disposal(pb::RunDisposalRequest {})
        .await?
        .into_inner();
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"disposed": report.disposed, "epoch_keys_destroyed": report.epoch_keys_destroyed})
        ),
        Format::Text => println!(
            "{} records disposed; epoch keys destroyed: {}",
            report.disposed,
            if report.epoch_keys_destroyed.is_empty() {
                "none".to_owned()
            } else {
                report.epoch_keys_destroyed.join(", ")
            }
        ),
    }
    Ok(())
}

/// A `correct` command; `number` is the new number (for `request`).
pub async fn correct(
    client: &mut Client,
    command: CorrectCommand,
    format: Format,
    number: &Zeroizing<String>,
) -> Result<(), ClientError> {
    match command {
        CorrectCommand::Request {
            handle,
            reason,
            asked_by,
        } => {
            let correction = client
                .locker
                .request_correction(pb::CorrectionRequest {
                    handle,
                    number: number.to_string(),
                    reason,
                    asked_by,
                })
                .await?
                .into_inner();
            // Text mode prints only the id, for `ID=$(vault-client correct request ...)`.
            match format {
                Format::Text => println!("{}", correction.id),
                Format::Json => output::corrections(format, &[correction]),
            }
        }
        CorrectCommand::Approve { id, note } => {
            let correction = client
                .locker
                .approve_correction(pb::CorrectionDecision { id, note })
                .await?
                .into_inner();
            output::corrections(format, &[correction]);
        }
        CorrectCommand::Reject { id, note } => {
            let correction = client
                .locker
                .reject_correction(pb::CorrectionDecision { id, note })
                .await?
                .into_inner();
            output::corrections(format, &[correction]);
        }
        CorrectCommand::List { tenant } => {
            let list = client
                .locker
                .list_corrections(pb::ListCorrectionsRequest { tenant })
                .await?
                .into_inner();
            output::corrections(format, &list.corrections);
        }
    }
    Ok(())
}

/// A `certificate` command.
pub async fn certificate(
    client: &mut Client,
    command: CertificateCommand,
    format: Format,
) -> Result<(), ClientError> {
    match command {
        CertificateCommand::Pdf { handle, out, font } => {
            let font = vault_client::pdf::find_font(font.as_deref())?;
            let certificate = client
                .locker
                .get_deletion_certificate(pb::CertificateRequest { handle })
                .await?
                .into_inner();
            let bytes = vault_client::pdf::certificate_pdf(&certificate, font, now_ms())?;
            crate::output::write_new(&out, &bytes)?;
            output::written(format, &out, bytes.len());
        }
        CertificateCommand::Show { handle } => {
            let certificate = client
                .locker
                .get_deletion_certificate(pb::CertificateRequest { handle })
                .await?
                .into_inner();
            output::certificate(format, &certificate);
        }
        CertificateCommand::Export { handle } => {
            let certificate = client
                .locker
                .get_deletion_certificate(pb::CertificateRequest { handle })
                .await?
                .into_inner();
            output::certificate(Format::Json, &certificate);
        }
        CertificateCommand::Verify { .. } => {
            return Err(ClientError::Usage(
                "offline verification runs without connecting".into(),
            ));
        }
    }
    Ok(())
}
