//! The CLI of the life cycle and the records of the handling rules: retire, unretire,
//! dispose-due, certificates, corrections, tenant ledger details, the ledger, reports and
//! alerts. Definitions and dispatch; the report tables live in `reports`.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};
use vault_client::{Client, ClientError, pb};
use zeroize::Zeroizing;

use crate::cli::{Command, TenantCommand};
use crate::output::{self, Format};
use crate::reports::{self, ReportFormat, jst_day_start};

/// The format of a ledger or report: the one asked for, else JSON with `--output json`, else a
/// table.
/// Now, in milliseconds since the epoch (a printed record's issue time).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn report_format(chosen: Option<ReportFormat>, output: Format) -> ReportFormat {
    chosen.unwrap_or(match output {
        Format::Json => ReportFormat::Json,
        Format::Text => ReportFormat::Table,
    })
}

/// A tenant's 管理台帳 details.
#[derive(Debug, ClapArgs)]
pub struct TenantInfoArgs {
    /// Tenant id.
    pub id: String,
    /// 特定個人情報ファイルの種類.
    #[arg(long)]
    pub file_kind: Option<String>,
    /// 特定個人情報ファイルの名称.
    #[arg(long)]
    pub file_name: Option<String>,
    /// 責任者.
    #[arg(long)]
    pub responsible_person: Option<String>,
    /// 取扱部署.
    #[arg(long)]
    pub responsible_department: Option<String>,
    /// 管理区域.
    #[arg(long)]
    pub management_area: Option<String>,
    /// 取扱区域.
    #[arg(long)]
    pub handling_area: Option<String>,
}

impl TenantInfoArgs {
    fn changes_anything(&self) -> bool {
        [
            &self.file_kind,
            &self.file_name,
            &self.responsible_person,
            &self.responsible_department,
            &self.management_area,
            &self.handling_area,
        ]
        .iter()
        .any(|field| field.is_some())
    }
}

/// Report commands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// 運用状況の記録 (第15条): acquisitions, uses by purpose and operator, disposals,
    /// corrections, token issues and denials over a period, from the audit log.
    Usage {
        /// First day, YYYY-MM-DD (JST).
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD (JST), included.
        #[arg(long)]
        to: String,
        /// Only this tenant.
        #[arg(long, default_value = "")]
        tenant: String,
        /// Table, CSV or JSON (default: JSON with `--output json`, else a table).
        #[arg(long, value_enum)]
        format: Option<ReportFormat>,
    },
    /// 漏えい等 (第12–14条): how many records and which handles an operator's unseals touched.
    Incident {
        /// The operator.
        #[arg(long)]
        operator: String,
        /// First day, YYYY-MM-DD (JST).
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD (JST), included.
        #[arg(long)]
        to: String,
        /// Table, CSV or JSON (default: JSON with `--output json`, else a table).
        #[arg(long, value_enum)]
        format: Option<ReportFormat>,
    },
}

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
        /// VAULT_PDF_FONT).
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

/// Runs one lifecycle or records command.
pub async fn run(
    client: &mut Client,
    command: Command,
    format: Format,
    number: &Zeroizing<String>,
) -> Result<(), ClientError> {
    match command {
        Command::Retire { handle, left_on } => {
            let record = client
                .locker
                .retire(pb::RetireRequest { handle, left_on })
                .await?
                .into_inner();
            output::record(format, &record);
        }
        Command::Unretire { handle, reason } => {
            let record = client
                .locker
                .unretire(pb::UnretireRequest { handle, reason })
                .await?
                .into_inner();
            output::record(format, &record);
        }
        Command::Tenant(TenantCommand::Info(a)) => {
            let info = if a.changes_anything() {
                client
                    .admin
                    .update_tenant_info(pb::UpdateTenantInfoRequest {
                        tenant: a.id,
                        file_kind: a.file_kind,
                        file_name: a.file_name,
                        responsible_person: a.responsible_person,
                        responsible_department: a.responsible_department,
                        management_area: a.management_area,
                        handling_area: a.handling_area,
                    })
                    .await?
                    .into_inner()
            } else {
                // No field given: show them.
                client
                    .admin
                    .ledger(pb::LedgerRequest {
                        tenant: a.id.clone(),
                    })
                    .await?
                    .into_inner()
                    .entries
                    .into_iter()
                    .find_map(|entry| entry.info)
                    .unwrap_or(pb::TenantInfo {
                        tenant: a.id,
                        ..pb::TenantInfo::default()
                    })
            };
            output::tenant_info(format, &info);
        }
        Command::Ledger {
            tenant,
            format: chosen,
            out,
            font,
        } => {
            use crate::cli::LedgerFormat;
            let pdf_out = match (chosen, out) {
                (Some(LedgerFormat::Pdf), Some(out)) => Some(out),
                (Some(LedgerFormat::Pdf), None) => {
                    return Err(ClientError::Usage(
                        "--format pdf needs --out FILE.pdf".into(),
                    ));
                }
                (_, Some(_)) => {
                    return Err(ClientError::Usage("--out is for --format pdf".into()));
                }
                _ => None,
            };
            // The font is found before the ledger is read: a missing font costs no audit entry.
            let font = match &pdf_out {
                Some(_) => Some(crate::pdf::find_font(font.as_deref())?),
                None => None,
            };
            let ledger = client
                .admin
                .ledger(pb::LedgerRequest { tenant })
                .await?
                .into_inner();
            match (pdf_out, font) {
                (Some(out), Some(font)) => {
                    let bytes = crate::pdf::ledger_pdf(&ledger, font, now_ms())?;
                    crate::pdf::write_new(&out, &bytes)?;
                    output::written(format, &out, bytes.len());
                }
                _ => {
                    let chosen = chosen.map(|f| match f {
                        LedgerFormat::Csv => ReportFormat::Csv,
                        LedgerFormat::Json => ReportFormat::Json,
                        LedgerFormat::Table | LedgerFormat::Pdf => ReportFormat::Table,
                    });
                    reports::ledger(report_format(chosen, format), &ledger)?;
                }
            }
        }
        Command::Report(ReportCommand::Usage {
            from,
            to,
            tenant,
            format: chosen,
        }) => {
            let report = client
                .admin
                .usage_report(pb::UsageReportRequest {
                    from_unix: jst_day_start(&from, false)?,
                    to_unix: jst_day_start(&to, true)?,
                    tenant,
                })
                .await?
                .into_inner();
            reports::usage(report_format(chosen, format), &report)?;
        }
        Command::Report(ReportCommand::Incident {
            operator,
            from,
            to,
            format: chosen,
        }) => {
            let report = client
                .admin
                .incident_report(pb::IncidentReportRequest {
                    operator_id: operator,
                    from_unix: jst_day_start(&from, false)?,
                    to_unix: jst_day_start(&to, true)?,
                })
                .await?
                .into_inner();
            reports::incident(report_format(chosen, format), &report)?;
        }
        Command::Alerts { follow, after } => {
            reports::alerts(client, format, after, follow).await?;
        }
        Command::Correct(CorrectCommand::Request {
            handle,
            reason,
            asked_by,
        }) => {
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
        Command::Correct(CorrectCommand::Approve { id, note }) => {
            let correction = client
                .locker
                .approve_correction(pb::CorrectionDecision { id, note })
                .await?
                .into_inner();
            output::corrections(format, &[correction]);
        }
        Command::Correct(CorrectCommand::Reject { id, note }) => {
            let correction = client
                .locker
                .reject_correction(pb::CorrectionDecision { id, note })
                .await?
                .into_inner();
            output::corrections(format, &[correction]);
        }
        Command::Correct(CorrectCommand::List { tenant }) => {
            let list = client
                .locker
                .list_corrections(pb::ListCorrectionsRequest { tenant })
                .await?
                .into_inner();
            output::corrections(format, &list.corrections);
        }
        Command::Certificate(CertificateCommand::Pdf { handle, out, font }) => {
            let font = crate::pdf::find_font(font.as_deref())?;
            let certificate = client
                .locker
                .get_deletion_certificate(pb::CertificateRequest { handle })
                .await?
                .into_inner();
            let bytes = crate::pdf::certificate_pdf(&certificate, font, now_ms())?;
            crate::pdf::write_new(&out, &bytes)?;
            output::written(format, &out, bytes.len());
        }
        Command::Certificate(CertificateCommand::Show { handle }) => {
            let certificate = client
                .locker
                .get_deletion_certificate(pb::CertificateRequest { handle })
                .await?
                .into_inner();
            output::certificate(format, &certificate);
        }
        Command::Certificate(CertificateCommand::Export { handle }) => {
            let certificate = client
                .locker
                .get_deletion_certificate(pb::CertificateRequest { handle })
                .await?
                .into_inner();
            output::certificate(Format::Json, &certificate);
        }
        Command::Certificate(CertificateCommand::Verify { .. }) => {
            return Err(ClientError::Usage(
                "offline verification runs without connecting".into(),
            ));
        }
        Command::DisposeDue => {
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
        }
        other => {
            return Err(ClientError::Usage(format!(
                "not a lifecycle command: {other:?}"
            )));
        }
    }
    Ok(())
}
