//! Command-line grammar and the execution of each command.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};
use vault_client::{Client, ClientError, certificate_fingerprint, pb};
use zeroize::Zeroizing;

use crate::lifecycle_cli;
pub use crate::lifecycle_cli::{CertificateCommand, CorrectCommand, ReportCommand, TenantInfoArgs};
use crate::output::{self, Format};
use crate::requests_cli;
pub use crate::requests_cli::RequestsCommand;

/// MyNumber Locker client: seal and unseal individual numbers, administer operators, audit.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Daemon endpoint.
    #[arg(
        long,
        global = true,
        env = "VAULT_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,
    /// File holding the bearer token (else the VAULT_TOKEN environment variable).
    #[arg(long, global = true, env = "VAULT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) of the daemon's TLS certificate.
    #[arg(long, global = true, env = "VAULT_CA", value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(
        long,
        global = true,
        env = "VAULT_CLIENT_CERT",
        value_name = "PEM",
        requires = "key"
    )]
    pub cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(
        long,
        global = true,
        env = "VAULT_CLIENT_KEY",
        value_name = "PEM",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Whose number.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// 職員.
    Staff,
    /// 職員以外の個人 (fees, rent).
    NonStaffPayee,
    /// 扶養親族 / 第3号被保険者.
    Dependent,
    /// An entrusting employer's employee.
    EntrustedEmployee,
}

/// Operator role.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// 特定個人情報管理責任者.
    Admin,
    /// 事務取扱責任者.
    Manager,
    /// 事務取扱担当者.
    Handler,
    /// A payroll or insurance system.
    Service,
    /// 監査責任者.
    Auditor,
}

/// `seal` arguments.
#[derive(Debug, ClapArgs)]
pub struct SealArgs {
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// Your reference for the person (employee or payee ID), never the number. Ignored with
    /// --batch (each row has its own).
    #[arg(long, default_value = "")]
    subject: String,
    /// Whose number.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Purpose codes the number may be used for (repeat or comma-separate).
    #[arg(long = "purpose", required = true, value_delimiter = ',')]
    purposes: Vec<String>,
    /// 番号確認 kind (MNC, NTC, JRC, PRIOR_FILE).
    #[arg(long)]
    number_check: Option<String>,
    /// 身元確認 kind (MNC, DL, PP, ZRC, EMPLOYEE_KNOWN, ...).
    #[arg(long)]
    identity_check: Option<String>,
    /// Agent's proof of authority (LEGAL_REPRESENTATIVE, POWER_OF_ATTORNEY).
    #[arg(long)]
    agent_authority: Option<String>,
    /// Seal every row of this CSV file (migrations) instead of one number from stdin: columns
    /// `subject_ref,number`, or named by a header (`subject_ref,number`, `社員番号,個人番号`, in
    /// any order), UTF-8 with or without BOM. Prints
    /// `row,subject_ref,handle,existing,purposes_not_on_record,error` per row, in order (`row`
    /// is the line in FILE).
    #[arg(long, value_name = "FILE.csv")]
    pub batch: Option<PathBuf>,
    /// Write the batch results for Japanese Excel: a BOM and CRLF line ends.
    #[arg(long, requires = "batch")]
    pub excel: bool,
}

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

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a number read from stdin; prints the handle.
    Seal(SealArgs),
    /// Print the number of HANDLE for one purpose.
    Unseal {
        /// Record handle.
        #[arg(required_unless_present = "batch")]
        handle: Option<String>,
        /// Purpose code.
        #[arg(long)]
        purpose: String,
        /// Unseal every handle of this file (one per line, or a `handle` column under a header,
        /// such as `seal --batch` output) for year-end runs: `row,handle,number,error` per
        /// handle, in order. To standard output only if it is a terminal or a pipe; a file
        /// needs --zip (第35条) or --plaintext-out.
        #[arg(long, value_name = "FILE", conflicts_with = "handle")]
        batch: Option<PathBuf>,
        /// Carry-out (持出し, 第35条): write the results only into this new AES-256 encrypted,
        /// password-protected ZIP (7-Zip opens it), recorded in the audit log with its digest.
        #[arg(long, value_name = "FILE.zip", requires = "batch")]
        zip: Option<PathBuf>,
        /// The ZIP password: the first line of this file (at least 12 characters). Without it
        /// the password is asked for on the terminal; never on the command line.
        #[arg(long, value_name = "FILE", requires = "zip")]
        password_file: Option<PathBuf>,
        /// Write the results in plain text to this new file (mode 0600), recorded as an
        /// unencrypted carry-out. Prefer --zip.
        #[arg(long, value_name = "FILE", requires = "batch", conflicts_with = "zip")]
        plaintext_out: Option<PathBuf>,
        /// Write the results for Japanese Excel: a BOM and CRLF line ends.
        #[arg(long, requires = "batch")]
        excel: bool,
    },
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
        /// system, or VAULT_PDF_FONT).
        #[arg(long, value_name = "FILE")]
        font: Option<PathBuf>,
    },
    /// Reports from the audit log.
    #[command(subcommand)]
    Report(ReportCommand),
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
        command: Option<crate::purposes_cli::PurposesCommand>,
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
    /// Dual control: changes held for other admins' approval.
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Approve a change request (an admin other than the requester, admin since before it).
    Approve {
        /// Request id (16 hex digits, from `requests list`).
        id: String,
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

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Rotate a tenant's keys: a new version seals from now on; existing records are rewrapped
    /// in the background while this shows progress.
    Rotate {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Return once the rotation has started instead of following the rewrap.
        #[arg(long)]
        no_wait: bool,
    },
    /// Key versions, their states, the records each protects, and rotation progress.
    #[command(alias = "list")]
    Status {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Ask for a key version's destruction (refused while any record uses it); a second admin
    /// must approve.
    Destroy {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Key version.
        #[arg(long)]
        version: u32,
    },
    /// Approve a destruction request (not your own); destruction follows the waiting period.
    Approve {
        /// Request id.
        id: String,
    },
    /// Cancel a destruction request before the key is destroyed.
    Cancel {
        /// Request id.
        id: String,
    },
    /// List destruction requests.
    Requests,
}

/// `grant` / `revoke` arguments.
#[derive(Debug, ClapArgs)]
pub struct GrantArgs {
    /// Operator id.
    operator: String,
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// Purpose codes (repeat or comma-separate).
    #[arg(long = "purpose", required = true, value_delimiter = ',')]
    purposes: Vec<String>,
}

/// Tenant commands.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (and its keys in the backend).
    Add {
        /// Tenant id (a-z, 0-9, '-', '_', '.').
        id: String,
        /// Name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tenants.
    List,
    /// Set a tenant's 管理台帳 details (admins); omitted fields become empty.
    Info(TenantInfoArgs),
}

/// Operator commands.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Ask for an operator to be created (held until another admin approves).
    Add {
        /// Operator id.
        id: String,
        /// Role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List operators and their grants.
    List,
    /// Disable an operator (its tokens stop working).
    Disable {
        /// Operator id.
        id: String,
    },
    /// Ask for a disabled operator to be enabled again (held until another admin approves).
    Enable {
        /// Operator id.
        id: String,
    },
}

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; the secret is shown once. A token for another operator works only once
    /// another admin approves its request.
    Issue {
        /// Operator id.
        operator: String,
        /// Lifetime: seconds, or a duration such as `12h` or `30d` (server default if omitted).
        #[arg(long, value_parser = parse_seconds)]
        ttl: Option<u64>,
        /// Bind to a client certificate by its SHA-256 fingerprint (hex).
        #[arg(long, conflicts_with = "cert_file")]
        cert_fingerprint: Option<String>,
        /// Bind to the client certificate in this PEM file.
        #[arg(long, value_name = "PEM")]
        cert_file: Option<PathBuf>,
        /// Write the token to this file (mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Revoke a token by id.
    Revoke {
        /// Token id.
        id: String,
    },
    /// List tokens (never secrets).
    List {
        /// Only this operator's tokens.
        #[arg(long)]
        operator: Option<String>,
    },
}

/// Audit log commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest entries.
    Tail {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Export entries and signed checkpoints as JSON lines.
    Export {
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Only entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Verify the chain and its signed checkpoints: in the daemon's store, or offline in an
    /// export file with the audit public keys or a pinned first-key fingerprint (no daemon, no
    /// token needed).
    Verify {
        /// An export file (from `audit export`) to verify offline.
        #[arg(long, value_name = "FILE")]
        offline: Option<PathBuf>,
        /// PEM file with the audit public keys (from `audit public-key`).
        #[arg(long, value_name = "PEM", requires = "offline", conflicts_with = "pin")]
        public_key: Option<PathBuf>,
        /// The first audit key's fingerprint (hex, printed by `audit public-key`): trust only
        /// keys the export chains from it, version by version.
        #[arg(long, value_name = "FINGERPRINT", requires = "offline")]
        pin: Option<String>,
    },
    /// Print the audit public keys (PEM, every version).
    PublicKey {
        /// Write them to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Rotate the audit signing key (admins); old keys stay for old checkpoints.
    RotateKey,
}

fn kind_to_wire(kind: Kind) -> pb::SubjectKind {
    match kind {
        Kind::Staff => pb::SubjectKind::Staff,
        Kind::NonStaffPayee => pb::SubjectKind::NonStaffPayee,
        Kind::Dependent => pb::SubjectKind::Dependent,
        Kind::EntrustedEmployee => pb::SubjectKind::EntrustedEmployee,
    }
}

fn role_to_wire(role: RoleArg) -> pb::Role {
    match role {
        RoleArg::Admin => pb::Role::Admin,
        RoleArg::Manager => pb::Role::Manager,
        RoleArg::Handler => pb::Role::Handler,
        RoleArg::Service => pb::Role::Service,
        RoleArg::Auditor => pb::Role::Auditor,
    }
}

/// Where `unseal --batch` may write numbers (see `batch::carry_out`).
fn unseal_destination(
    zip: Option<PathBuf>,
    password_file: Option<&std::path::Path>,
    plaintext_out: Option<PathBuf>,
) -> Result<crate::batch::carry_out::Destination, ClientError> {
    use crate::batch::carry_out::{self, Destination};
    match (zip, plaintext_out) {
        (Some(path), _) => Ok(Destination::Zip {
            password: carry_out::password(password_file)?,
            path,
        }),
        (None, Some(path)) => Ok(Destination::PlaintextFile(path)),
        (None, None) if carry_out::stdout_is_a_file() => Err(ClientError::Usage(
            "standard output is a file: numbers leave the locker only encrypted (規程第35条): use --zip FILE.zip, or --plaintext-out FILE to say a plaintext file is meant"
                .into(),
        )),
        (None, None) => Ok(Destination::Stdout),
    }
}

/// A batch with failed items exits non-zero (the items are reported one by one).
fn batch_outcome(failed: u64) -> Result<(), ClientError> {
    if failed == 0 {
        Ok(())
    } else {
        Err(ClientError::Status(tonic::Status::aborted(format!(
            "{failed} items of the batch failed (see their lines)"
        ))))
    }
}

/// Offline verification never reaches `execute` (it needs no daemon); see [`offline`].
fn unreachable_offline() -> Result<(), ClientError> {
    Err(ClientError::Status(tonic::Status::internal(
        "offline verification is run without connecting",
    )))
}

/// Runs the commands that need no daemon: offline verification. `None` for every other command.
pub fn offline(command: &Command, format: Format) -> Option<Result<(), String>> {
    if let Command::Certificate(CertificateCommand::Verify { file, public_key }) = command {
        return Some(lifecycle_cli::verify_certificate(file, public_key, format));
    }
    let Command::Audit(AuditCommand::Verify {
        offline: Some(file),
        public_key,
        pin,
    }) = command
    else {
        return None;
    };
    Some(verify_offline(
        file,
        public_key.as_deref(),
        pin.as_deref(),
        format,
    ))
}

fn verify_offline(
    file: &std::path::Path,
    pem: Option<&std::path::Path>,
    pin: Option<&str>,
    format: Format,
) -> Result<(), String> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let lines = vault_audit::offline::parse_export(&read(file)?)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let report = match (pem, pin) {
        (_, Some(pin)) => {
            let pin = hex::decode(pin.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or("--pin takes the 64-hex-digit fingerprint printed by `audit public-key`")?;
            vault_audit::offline::verify_pinned(&lines, &pin)
        }
        (Some(pem), None) => {
            let keys = vault_audit::checkpoint::parse_public_keys_pem(&read(pem)?)
                .map_err(|e| format!("{}: {e}", pem.display()))?;
            vault_audit::offline::verify(&lines, &keys)
        }
        (None, None) => {
            return Err("offline verification needs --public-key PEM or --pin FINGERPRINT".into());
        }
    };
    output::offline_report(format, &report);
    if report.ok {
        Ok(())
    } else {
        Err(format!(
            "audit export does not verify: first bad entry {}",
            report
                .first_bad_seq
                .map_or_else(|| "unknown".into(), |s| s.to_string())
        ))
    }
}

async fn change_grants(
    client: &mut Client,
    a: GrantArgs,
    revoke: bool,
) -> Result<pb::Operator, ClientError> {
    let request = pb::GrantRequest {
        operator_id: a.operator,
        tenant: a.tenant,
        purposes: a.purposes,
    };
    let response = if revoke {
        client.admin.revoke_purposes(request).await?
    } else {
        client.admin.grant_purposes(request).await?
    };
    Ok(response.into_inner())
}

/// Runs one command.
pub async fn execute(
    mut client: Client,
    command: Command,
    format: Format,
    number: Option<Zeroizing<String>>,
) -> Result<(), ClientError> {
    let number = number.unwrap_or_default();
    match command {
        Command::Seal(a) => {
            let request = pb::SealRequest {
                tenant: a.tenant,
                subject_ref: a.subject,
                subject_kind: kind_to_wire(a.kind) as i32,
                purposes: a.purposes,
                number: number.to_string(),
                verification: Some(pb::IdentityVerification {
                    number_check: a.number_check.unwrap_or_default(),
                    identity_check: a.identity_check.unwrap_or_default(),
                    agent_authority: a.agent_authority.unwrap_or_default(),
                }),
            };
            if let Some(file) = a.batch {
                let failed =
                    crate::batch::seal(&mut client, request, &file, format, a.excel).await?;
                return batch_outcome(failed);
            }
            let response = client.locker.seal(request).await?.into_inner();
            output::sealed(format, &response);
        }
        Command::Unseal {
            batch: Some(file),
            purpose,
            zip,
            password_file,
            plaintext_out,
            excel,
            ..
        } => {
            let destination = unseal_destination(zip, password_file.as_deref(), plaintext_out)?;
            let batch = crate::batch::UnsealBatch {
                purpose: &purpose,
                file: &file,
                destination,
                format,
                excel,
            };
            let failed = crate::batch::unseal(&mut client, batch).await?;
            return batch_outcome(failed);
        }
        Command::Unseal {
            handle, purpose, ..
        } => {
            let handle = handle.unwrap_or_default();
            let response = client
                .locker
                .unseal(pb::UnsealRequest { handle, purpose })
                .await?
                .into_inner();
            let number = Zeroizing::new(response.number);
            output::number(format, &number);
        }
        Command::Lookup { tenant } => {
            let response = client
                .locker
                .lookup(pb::LookupRequest {
                    tenant,
                    number: number.to_string(),
                })
                .await?
                .into_inner();
            output::handle(format, &response.handle);
        }
        Command::Describe { handle } => {
            let record = client
                .locker
                .describe(pb::DescribeRequest { handle })
                .await?
                .into_inner();
            output::record(format, &record);
        }
        Command::Dispose { handle, reason } => {
            let record = client
                .locker
                .dispose(pb::DisposeRequest { handle, reason })
                .await?
                .into_inner();
            output::record(format, &record);
        }
        Command::Suspend { handle, reason } => {
            let record = client
                .locker
                .suspend(pb::SuspendRequest { handle, reason })
                .await?
                .into_inner();
            output::record(format, &record);
        }
        Command::Resume { handle, reason } => {
            let record = client
                .locker
                .resume(pb::SuspendRequest { handle, reason })
                .await?
                .into_inner();
            output::record(format, &record);
        }
        command @ (Command::Retire { .. }
        | Command::Unretire { .. }
        | Command::Tenant(TenantCommand::Info(_))
        | Command::Ledger { .. }
        | Command::Report(_)
        | Command::Alerts { .. }
        | Command::Correct(_)
        | Command::Certificate(_)
        | Command::DisposeDue) => {
            lifecycle_cli::run(&mut client, command, format, &number).await?;
        }
        Command::Whoami => {
            let me = client
                .admin
                .who_am_i(pb::WhoAmIRequest {})
                .await?
                .into_inner();
            output::whoami(format, &me);
        }
        command @ (Command::Requests(_) | Command::Approve { .. } | Command::Deny { .. }) => {
            requests_cli::run(&mut client, command, format).await?;
        }
        Command::Tenant(TenantCommand::Add { id, name }) => {
            let tenant = client
                .admin
                .create_tenant(pb::CreateTenantRequest {
                    tenant_id: id,
                    name,
                })
                .await?
                .into_inner();
            output::tenants(format, &[tenant]);
        }
        Command::Tenant(TenantCommand::List) => {
            let response = client
                .admin
                .list_tenants(pb::ListTenantsRequest {})
                .await?
                .into_inner();
            output::tenants(format, &response.tenants);
        }
        Command::Operator(OperatorCommand::Add { id, role, name }) => {
            let operator = client
                .admin
                .create_operator(pb::CreateOperatorRequest {
                    operator_id: id,
                    role: role_to_wire(role) as i32,
                    display_name: name,
                })
                .await?
                .into_inner();
            output::operators(format, &[operator]);
        }
        Command::Operator(OperatorCommand::List) => {
            let response = client
                .admin
                .list_operators(pb::ListOperatorsRequest {})
                .await?
                .into_inner();
            output::operators(format, &response.operators);
        }
        Command::Operator(OperatorCommand::Disable { id }) => {
            let operator = client
                .admin
                .disable_operator(pb::DisableOperatorRequest { operator_id: id })
                .await?
                .into_inner();
            output::operators(format, &[operator]);
        }
        Command::Operator(OperatorCommand::Enable { id }) => {
            let operator = client
                .admin
                .enable_operator(pb::DisableOperatorRequest { operator_id: id })
                .await?
                .into_inner();
            output::operators(format, &[operator]);
        }
        Command::Grant(a) => {
            output::operators(format, &[change_grants(&mut client, a, false).await?])
        }
        Command::Revoke(a) => {
            output::operators(format, &[change_grants(&mut client, a, true).await?])
        }
        Command::Token(TokenCommand::Issue {
            operator,
            ttl,
            cert_fingerprint,
            cert_file,
            out,
        }) => {
            let fingerprint = match (cert_fingerprint, cert_file) {
                (Some(fp), _) => fp,
                (None, Some(path)) => certificate_fingerprint(&path)?,
                (None, None) => String::new(),
            };
            let response = client
                .admin
                .issue_token(pb::IssueTokenRequest {
                    operator_id: operator,
                    ttl_seconds: ttl.unwrap_or(0),
                    cert_fingerprint: fingerprint,
                })
                .await?
                .into_inner();
            output::issued_token(format, response, out.as_deref())?;
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            let token = client
                .admin
                .revoke_token(pb::RevokeTokenRequest { token_id: id })
                .await?
                .into_inner();
            output::tokens(format, &[token]);
        }
        Command::Token(TokenCommand::List { operator }) => {
            let response = client
                .admin
                .list_tokens(pb::ListTokensRequest {
                    operator_id: operator.unwrap_or_default(),
                })
                .await?
                .into_inner();
            output::tokens(format, &response.tokens);
        }
        Command::Purposes { command } => {
            crate::purposes_cli::run(&mut client, command, format).await?;
        }
        Command::Audit(AuditCommand::Tail { limit }) => {
            let response = client
                .admin
                .audit_tail(pb::AuditTailRequest { limit })
                .await?
                .into_inner();
            output::audit_entries(format, &response.entries);
        }
        Command::Audit(AuditCommand::Export { out, after }) => {
            let stream = client
                .admin
                .audit_export(pb::AuditExportRequest { after_seq: after })
                .await?
                .into_inner();
            // Checkpoints are read after the entries, so every one names an exported entry or
            // one committed later (which a verifier reports as beyond the export).
            let export = output::audit_export(stream, out.as_deref()).await?;
            let checkpoints = client
                .admin
                .audit_checkpoints(pb::AuditCheckpointsRequest { after_seq: after })
                .await?
                .into_inner()
                .checkpoints;
            let keys = client
                .admin
                .audit_public_keys(pb::AuditPublicKeysRequest {})
                .await?
                .into_inner()
                .keys;
            output::append_checkpoints(export, &checkpoints, &keys, out.as_deref())?;
        }
        Command::Keys(KeysCommand::Rotate { tenant, no_wait }) => {
            let job = client
                .admin
                .rotate_tenant_keys(pb::RotateTenantKeysRequest {
                    tenant: tenant.clone(),
                })
                .await?
                .into_inner();
            if no_wait {
                output::rewrap_progress(format, &job, None);
            } else {
                output::follow_rewrap(&mut client, format, job).await?;
            }
        }
        Command::Bench(_) | Command::Completion { .. } => {
            return Err(ClientError::Usage(
                "runs from main, without a daemon".into(),
            ));
        }
        Command::Keys(KeysCommand::Destroy { tenant, version }) => {
            let r = client
                .admin
                .request_key_destruction(pb::RequestKeyDestructionRequest { tenant, version })
                .await?
                .into_inner();
            output::destructions(format, &[r]);
        }
        Command::Keys(KeysCommand::Approve { id }) => {
            let r = client
                .admin
                .approve_key_destruction(pb::KeyDestructionIdRequest { id })
                .await?
                .into_inner();
            output::destructions(format, &[r]);
        }
        Command::Keys(KeysCommand::Cancel { id }) => {
            let r = client
                .admin
                .cancel_key_destruction(pb::KeyDestructionIdRequest { id })
                .await?
                .into_inner();
            output::destructions(format, &[r]);
        }
        Command::Keys(KeysCommand::Requests) => {
            let list = client
                .admin
                .list_key_destructions(pb::ListKeyDestructionsRequest {})
                .await?
                .into_inner();
            output::destructions(format, &list.requests);
        }
        Command::Keys(KeysCommand::Status { tenant }) => {
            let status = client
                .admin
                .key_status(pb::KeyStatusRequest {
                    tenant: tenant.unwrap_or_default(),
                })
                .await?
                .into_inner();
            output::key_status(format, &status.tenants);
        }
        Command::Backup { out } => {
            let stream = client
                .admin
                .backup(pb::BackupRequest {})
                .await?
                .into_inner();
            output::backup(format, stream, &out).await?;
        }
        Command::Audit(AuditCommand::PublicKey { out }) => {
            let keys = client
                .admin
                .audit_public_keys(pb::AuditPublicKeysRequest {})
                .await?
                .into_inner()
                .keys;
            output::public_keys(format, &keys, out.as_deref())?;
        }
        Command::Audit(AuditCommand::RotateKey) => {
            let key = client
                .admin
                .rotate_audit_key(pb::RotateAuditKeyRequest {})
                .await?
                .into_inner();
            output::public_keys(format, &[key], None)?;
        }
        Command::Audit(AuditCommand::Verify {
            offline: Some(_), ..
        }) => {
            unreachable_offline()?;
        }
        Command::Audit(AuditCommand::Verify { offline: None, .. }) => {
            let report = client
                .admin
                .audit_verify(pb::AuditVerifyRequest {})
                .await?
                .into_inner();
            output::verify_report(format, &report);
            if !report.ok {
                return Err(ClientError::Status(tonic::Status::data_loss(format!(
                    "audit chain broken at entry {}: {}",
                    report.first_bad_seq, report.message
                ))));
            }
        }
    }
    Ok(())
}

/// A duration on the command line: whole seconds (`3600`) or humantime (`1h`, `30d`, `5s`).
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    humantime::parse_duration(text)
        .map(|d| d.as_secs())
        .map_err(|e| format!("{text:?} is not a duration (seconds, or e.g. 90s, 12h, 30d): {e}"))
}
