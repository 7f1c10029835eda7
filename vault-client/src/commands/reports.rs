//! The records of the handling rules read from the locker: the 管理台帳 (第16条), the usage,
//! carry-out and incident reports (第15条, 第12–14条) and the alerts of the log monitor (ログ監視), followed
//! across daemon restarts. Definitions and the calls; tables are printed by `reports`, PDF by
//! `pdf`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use vault_client::{Client, ClientError, pb};

use crate::output::{self, Format};
use crate::reports::{self, ReportFormat, jst_day_start};

/// Forms of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LedgerFormat {
    /// Aligned columns.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON document.
    Json,
    /// A4 pages in Japanese, to print and file.
    Pdf,
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
    /// 持出し記録: every file of numbers carried out over a period — who, for which purpose,
    /// how many, in which form, the file's SHA-256 — from the audit log.
    CarryOuts {
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

/// The format of a ledger or report: the one asked for, else JSON with `--output json`, else a
/// table.
fn report_format(chosen: Option<ReportFormat>, output: Format) -> ReportFormat {
    chosen.unwrap_or(match output {
        Format::Json => ReportFormat::Json,
        Format::Text => ReportFormat::Table,
    })
}

/// `ledger`, as a table, CSV, JSON or a PDF file.
pub async fn ledger(
    client: &mut Client,
    tenant: String,
    chosen: Option<LedgerFormat>,
    out: Option<PathBuf>,
    font: Option<PathBuf>,
    format: Format,
) -> Result<(), ClientError> {
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
        Some(_) => Some(vault_client::pdf::find_font(font.as_deref())?),
        None => None,
    };
    let ledger = client
        .admin
        .ledger(pb::LedgerRequest { tenant })
        .await?
        .into_inner();
    match (pdf_out, font) {
        (Some(out), Some(font)) => {
            let bytes =
                vault_client::pdf::ledger_pdf(&ledger, font, crate::commands::lifecycle::now_ms())?;
            crate::output::write_new(&out, &bytes)?;
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
    Ok(())
}

/// A `report` command.
pub async fn report(
    client: &mut Client,
    command: ReportCommand,
    format: Format,
) -> Result<(), ClientError> {
    match command {
        ReportCommand::Usage {
            from,
            to,
            tenant,
            format: chosen,
        } => {
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
        ReportCommand::CarryOuts {
            from,
            to,
            format: chosen,
        } => {
            let mut stream = client
                .admin
                .audit_export(pb::AuditExportRequest {
                    after_seq: 0,
                    actions: vec!["CARRY_OUT".into()],
                    from_unix_ms: jst_day_start(&from, false)?.saturating_mul(1000),
                    to_unix_ms: jst_day_start(&to, true)?.saturating_mul(1000),
                })
                .await?
                .into_inner();
            let mut entries = Vec::new();
            while let Some(entry) = stream.message().await? {
                entries.push(entry);
            }
            reports::carry_outs(report_format(chosen, format), &entries)?;
        }
        ReportCommand::Incident {
            operator,
            from,
            to,
            format: chosen,
        } => {
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
    }
    Ok(())
}

/// Lists alerts after `after`; with `follow`, keeps polling every two seconds and rides out a
/// daemon restart or a lost connection (retrying with backoff up to 30 s, saying so on
/// standard error), so a watcher left running in a terminal or under systemd keeps watching.
pub async fn alerts(
    client: &mut Client,
    format: Format,
    mut after: u64,
    follow: bool,
) -> Result<(), ClientError> {
    const POLL: Duration = Duration::from_secs(2);
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    let mut backoff = POLL;
    let mut lost = false;
    loop {
        let answer = client
            .admin
            .list_alerts(pb::ListAlertsRequest { after_seq: after })
            .await;
        match answer {
            Ok(response) => {
                if lost {
                    output::note("reconnected; following alerts again");
                    lost = false;
                    backoff = POLL;
                }
                for alert in &response.into_inner().alerts {
                    crate::reports::print_alert(format, alert);
                    after = after.max(alert.seq);
                }
            }
            Err(status) if follow && transient(status.code()) => {
                if !lost {
                    output::note(&format!(
                        "lost the daemon ({}: {}); retrying",
                        vault_client::code_name(status.code()),
                        status.message()
                    ));
                    lost = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(status) => return Err(status.into()),
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether a failed poll may succeed later by itself (the daemon restarting, the network).
fn transient(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
            | tonic::Code::ResourceExhausted
    )
}
