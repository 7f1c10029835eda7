//! The command-line grammar, and the dispatch of each command to its family in `commands`
//! (records, lifecycle, reports, disclosure, tenants, operators, tokens, purposes, audit, keys,
//! requests).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use vault_client::{Client, ClientError};
use zeroize::Zeroizing;

use crate::commands::Outcome;
use crate::commands::audit::AuditCommand;
use crate::commands::disclosure::DisclosureCommand;
use crate::commands::keys::KeysCommand;
use crate::commands::lifecycle::{CertificateCommand, CorrectCommand};
use crate::commands::operators::{GrantArgs, OperatorCommand};
use crate::commands::purposes::PurposesCommand;
use crate::commands::records::{SealArgs, UnsealArgs};
use crate::commands::reports::{LedgerFormat, ReportCommand};
use crate::commands::requests::RequestsCommand;
use crate::commands::tenants::TenantCommand;
use crate::commands::tokens::TokenCommand;
use crate::commands::{
    audit, disclosure, keys, lifecycle, operators, purposes, records, reports, requests, tenants,
    tokens,
};
use crate::output::Format;

/// MyNumber Locker client: seal and unseal individual numbers, administer operators, audit.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Daemon endpoint.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "LOCKER_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,
    /// File holding the bearer token (else the LOCKER_TOKEN environment variable).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "LOCKER_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) of the daemon's TLS certificate.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "LOCKER_CA",
        value_name = "PEM"
    )]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "LOCKER_CLIENT_CERT",
        value_name = "PEM",
        requires = "key"
    )]
    pub cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "LOCKER_CLIENT_KEY",
        value_name = "PEM",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true,
        help_heading = "Global options", value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a number read from stdin; prints the handle.
    Seal(SealArgs),
    /// Print the number of HANDLE for one purpose.
    Unseal(UnsealArgs),
    /// Find the handle of a number (read from stdin) within a tenant.
    Lookup {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
    },
    /// Show a record's metadata (never the number).
    Describe {
        /// Record handle.
        handle: String,
    },
    /// Dispose of a record (managers): ciphertext and key deleted, tombstone kept.
    Dispose {
        /// Record handle.
        handle: String,
        /// Why (kept in the tombstone and audit log).
        #[arg(long)]
        reason: String,
    },
    /// Stop a record's use at the person's request (第49条; managers): unseal is refused until
    /// `resume`.
    Suspend {
        /// Record handle.
        handle: String,
        /// Why (kept with the record and in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Allow a suspended record's use again (managers).
    Resume {
        /// Record handle.
        handle: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Record that the person left (退職): the record stays usable for the purposes whose
    /// retention runs and is disposed of on its disposal date (shown by `describe`).
    Retire {
        /// Record handle.
        handle: String,
        /// The day the person left, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD")]
        left_on: String,
    },
    /// Set the acquisition date (取得日) of a record migrated from paper or another system
    /// (managers): the 台帳 and describe show it, and a handler may then record a departure
    /// back to it.
    Acquired {
        /// Record handle (or --batch FILE).
        #[arg(required_unless_present = "batch", conflicts_with = "batch")]
        handle: Option<String>,
        /// The day the number was acquired, YYYY-MM-DD (Japan); with --batch, for the rows
        /// without an acquired_on (取得日) cell of their own.
        #[arg(
            long = "on",
            value_name = "YYYY-MM-DD",
            required_unless_present = "batch"
        )]
        on: Option<String>,
        /// Why (e.g. 紙の台帳から移行); never a number.
        #[arg(long)]
        reason: String,
        /// Every handle of FILE (one per line, or a handle column: a seal batch's output),
        /// each with --on or its own acquired_on (取得日) cell; a result row per handle on
        /// standard output.
        #[arg(long, value_name = "FILE")]
        batch: Option<std::path::PathBuf>,
        /// With --batch: a BOM and CRLF line ends, for Japanese Excel.
        #[arg(long, requires = "batch")]
        excel: bool,
    },
    /// Undo a retirement before the disposal date (re-hired; managers).
    Unretire {
        /// Record handle.
        handle: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// 特定個人情報管理台帳 (第16条): per tenant, the file, who is responsible, purposes,
    /// records by status, deletions and who has access. Never a number.
    Ledger {
        /// Only this tenant.
        #[arg(long, default_value = "")]
        tenant: String,
        /// Table, CSV, JSON (default: JSON with `--output json`, else a table), or PDF to
        /// print and file (needs --out).
        #[arg(long, value_enum)]
        format: Option<LedgerFormat>,
        /// The PDF file to write (a new file).
        #[arg(long, value_name = "FILE.pdf")]
        out: Option<PathBuf>,
        /// A Japanese TrueType/OpenType font for the PDF (default: IPAex or Noto CJK from the
        /// system, or LOCKER_PDF_FONT).
        #[arg(long, value_name = "FILE")]
        font: Option<PathBuf>,
    },
    /// Reports from the audit log.
    #[command(subcommand)]
    Report(ReportCommand),
    /// 本人開示 (第45・46条): one person's record and its uses as a signed notice (managers),
    /// and its offline verification.
    #[command(subcommand)]
    Disclosure(DisclosureCommand),
    /// Alerts of the log monitor (ログ監視).
    Alerts {
        /// Keep listening for new alerts.
        #[arg(long)]
        follow: bool,
        /// Only alerts after this audit sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Corrections of a stored number (訂正, 第47・48条): requested by a handler, decided by a
    /// different manager.
    #[command(subcommand)]
    Correct(CorrectCommand),
    /// Deletion certificates (削除証明書) of disposed records.
    #[command(subcommand)]
    Certificate(CertificateCommand),
    /// Run the disposal scheduler now (admins): disposes of the records past their date.
    DisposeDue,
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Operators.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Grant purposes on a tenant to an operator.
    Grant(GrantArgs),
    /// Revoke purposes on a tenant from an operator.
    Revoke(GrantArgs),
    /// Tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The purpose catalogue (第4条), and purposes added to a record.
    Purposes {
        /// `list` (the default) or `add`.
        #[command(subcommand)]
        command: Option<PurposesCommand>,
    },
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Online backup (admins): a consistent snapshot of the store, streamed while the daemon
    /// serves, written to FILE (mode 0600). Restore with `vault-daemon --restore-from FILE`.
    Backup {
        /// Where to write the snapshot (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Tenant keys: versions, rotation.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Who your token authenticates: operator, role, grants, token id and expiry.
    Whoami,
    /// Whether the daemon serves (gRPC health; no token needed): SERVING exits 0, anything
    /// else 6 (no daemon at all: 1).
    Health {
        /// Ask again until it serves or this much time has passed (`10s`, `2m`).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        wait: Option<std::time::Duration>,
    },
    /// Dual control: changes held for other admins' approval.
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Approve a change request (an admin other than the requester, admin since before it).
    Approve {
        /// Request ids (16 hex digits each, from `requests list`), approved in the order given.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// When this approval applies a token for another operator, write its second share to
        /// this new file (mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        share_out: Option<std::path::PathBuf>,
    },
    /// Deny a change request (or withdraw your own).
    Deny {
        /// Request id.
        id: String,
        /// Why (required; never an individual number).
        #[arg(long)]
        reason: String,
    },
    /// Load a running daemon and report requests/s, latency and errors.
    Bench(crate::bench::BenchArgs),
    /// Print a shell completion script (e.g. `vault-client completion bash > /etc/bash_completion.d/vault-client`).
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs the commands that need no daemon (offline verification, combining token shares);
/// `None` for every other.
pub fn offline(command: &Command, format: Format) -> Option<Result<(), String>> {
    if let Command::Disclosure(DisclosureCommand::Verify {
        file,
        public_key,
        export,
    }) = command
    {
        return Some(disclosure::verify(
            file,
            public_key,
            export.as_deref(),
            format,
        ));
    }
    if let Command::Token(TokenCommand::Combine { first, second, out }) = command {
        return Some(
            tokens::combine(first, second, out.as_deref(), format).map_err(|e| e.to_string()),
        );
    }
    match command {
        Command::Certificate(CertificateCommand::Verify { file, public_key }) => {
            Some(lifecycle::verify_certificate(file, public_key, format))
        }
        Command::Audit(AuditCommand::Verify {
            offline: Some(file),
            public_key,
            pin,
        }) => Some(audit::verify_offline(
            file,
            public_key.as_deref(),
            pin.as_deref(),
            format,
        )),
        _ => None,
    }
}

/// Runs one command against the daemon; `number` is what `seal`, `lookup`, `correct request`
/// and `disclosure notice` read from standard input.
pub async fn execute(
    mut client: Client,
    command: Command,
    format: Format,
    number: Option<Zeroizing<String>>,
) -> Result<Outcome, ClientError> {
    let done = |result: Result<(), ClientError>| result.map(|()| Outcome::Done);
    let number = number.unwrap_or_default();
    let client = &mut client;
    match command {
        Command::Seal(a) => done(records::seal(client, a, format, &number).await),
        Command::Unseal(a) => done(records::unseal(client, a, format).await),
        Command::Lookup { tenant } => done(records::lookup(client, tenant, format, &number).await),
        Command::Describe { handle } => done(records::describe(client, handle, format).await),
        Command::Dispose { handle, reason } => {
            done(records::dispose(client, handle, reason, format).await)
        }
        Command::Suspend { handle, reason } => {
            done(records::set_suspended(client, handle, reason, true, format).await)
        }
        Command::Resume { handle, reason } => {
            done(records::set_suspended(client, handle, reason, false, format).await)
        }
        Command::Retire { handle, left_on } => {
            done(lifecycle::retire(client, handle, left_on, format).await)
        }
        Command::Acquired {
            handle,
            on,
            reason,
            batch,
            excel,
        } => match batch {
            Some(file) => {
                done(lifecycle::acquired_batch(client, &file, on, reason, format, excel).await)
            }
            None => done(
                lifecycle::acquired(
                    client,
                    handle.unwrap_or_default(),
                    on.unwrap_or_default(),
                    reason,
                    format,
                )
                .await,
            ),
        },
        Command::Unretire { handle, reason } => {
            done(lifecycle::unretire(client, handle, reason, format).await)
        }
        Command::DisposeDue => done(lifecycle::dispose_due(client, format).await),
        Command::Correct(c) => done(lifecycle::correct(client, c, format, &number).await),
        Command::Certificate(c) => done(lifecycle::certificate(client, c, format).await),
        Command::Ledger {
            tenant,
            format: chosen,
            out,
            font,
        } => done(reports::ledger(client, tenant, chosen, out, font, format).await),
        Command::Report(c) => done(reports::report(client, c, format).await),
        Command::Disclosure(c) => done(disclosure::run(client, c, format, &number).await),
        Command::Alerts { follow, after } => {
            done(reports::alerts(client, format, after, follow).await)
        }
        Command::Tenant(c) => done(tenants::run(client, c, format).await),
        Command::Operator(c) => operators::run(client, c, format).await,
        Command::Grant(a) => operators::grants(client, a, false, format).await,
        Command::Revoke(a) => operators::grants(client, a, true, format).await,
        Command::Whoami => done(operators::whoami(client, format).await),
        Command::Token(c) => tokens::run(client, c, format).await,
        Command::Purposes { command } => done(purposes::run(client, command, format).await),
        Command::Audit(c) => done(audit::run(client, c, format).await),
        Command::Backup { out } => done(audit::backup(client, out, format).await),
        Command::Keys(c) => done(keys::run(client, c, format).await),
        Command::Requests(c) => requests::run(client, c, format).await,
        Command::Approve { ids, share_out } => {
            done(requests::approve(client, &ids, share_out.as_deref(), format).await)
        }
        Command::Deny { id, reason } => done(requests::deny(client, id, reason, format).await),
        Command::Bench(_) | Command::Health { .. } | Command::Completion { .. } => Err(
            ClientError::Usage("runs from main, without a daemon".into()),
        ),
    }
}
