//! Records: seal (取得), unseal (利用), lookup, describe, dispose (廃棄), suspend and resume
//! (第49条). Definitions and the calls; printing is in `output`, batches in `batch`.

use std::path::PathBuf;

use clap::{Args as ClapArgs, ValueEnum};
use vault_client::{Client, ClientError, pb};
use zeroize::Zeroizing;

use crate::output::{self, Format};

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

/// `seal` arguments.
#[derive(Debug, ClapArgs)]
pub struct SealArgs {
    /// Tenant id.
    #[arg(long)]
    pub tenant: String,
    /// Your reference for the person (employee or payee ID), never the number. Ignored with
    /// --batch (each row has its own).
    #[arg(long, required_unless_present = "batch")]
    pub subject: Option<String>,
    /// Whose number.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Purpose codes the number may be used for (repeat or comma-separate).
    #[arg(long = "purpose", required = true, value_delimiter = ',')]
    pub purposes: Vec<String>,
    /// 番号確認 kind (MNC, NTC, JRC, PRIOR_FILE).
    #[arg(long)]
    pub number_check: Option<String>,
    /// 身元確認 kind (MNC, DL, PP, ZRC, EMPLOYEE_KNOWN, ...).
    #[arg(long)]
    pub identity_check: Option<String>,
    /// Agent's proof of authority (LEGAL_REPRESENTATIVE, POWER_OF_ATTORNEY).
    #[arg(long)]
    pub agent_authority: Option<String>,
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

/// `unseal` arguments.
#[derive(Debug, ClapArgs)]
pub struct UnsealArgs {
    /// Record handle.
    #[arg(required_unless_present = "batch")]
    pub handle: Option<String>,
    /// Purpose code.
    #[arg(long)]
    pub purpose: String,
    /// Unseal every handle of this file (one per line, or a `handle` column under a header,
    /// such as `seal --batch` output) for year-end runs: per handle, in order, `row`, the
    /// file's own columns, then `subject_ref,subject_kind,number,error`. To standard output only if it is a terminal or a pipe; a file
    /// needs --zip (第35条) or --plaintext-out.
    #[arg(long, value_name = "FILE", conflicts_with = "handle")]
    pub batch: Option<PathBuf>,
    /// Carry-out (持出し, 第35条): write the results only into this new AES-256 encrypted,
    /// password-protected ZIP (7-Zip opens it), recorded in the audit log with its digest.
    #[arg(long, value_name = "FILE.zip", requires = "batch")]
    pub zip: Option<PathBuf>,
    /// The ZIP password: the first line of this file (at least 12 characters). Without it
    /// the password is asked for on the terminal; never on the command line.
    #[arg(long, value_name = "FILE", requires = "zip")]
    pub password_file: Option<PathBuf>,
    /// Write the results in plain text to this new file (mode 0600), recorded as an
    /// unencrypted carry-out. Prefer --zip.
    #[arg(long, value_name = "FILE", requires = "batch", conflicts_with = "zip")]
    pub plaintext_out: Option<PathBuf>,
    /// Write the results for Japanese Excel: a BOM and CRLF line ends.
    #[arg(long, requires = "batch")]
    pub excel: bool,
}

pub fn kind_to_wire(kind: Kind) -> pb::SubjectKind {
    match kind {
        Kind::Staff => pb::SubjectKind::Staff,
        Kind::NonStaffPayee => pb::SubjectKind::NonStaffPayee,
        Kind::Dependent => pb::SubjectKind::Dependent,
        Kind::EntrustedEmployee => pb::SubjectKind::EntrustedEmployee,
    }
}

/// Where `unseal --batch` may write numbers (see `batch::carry_out`).
pub fn unseal_destination(
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
pub fn batch_outcome(failures: crate::batch::Failures) -> Result<(), ClientError> {
    failures.outcome().map_err(ClientError::Status)
}

/// `seal`: one number from stdin, or a CSV batch.
pub async fn seal(
    client: &mut Client,
    a: SealArgs,
    format: Format,
    number: &Zeroizing<String>,
) -> Result<(), ClientError> {
    let request = pb::SealRequest {
        tenant: a.tenant,
        subject_ref: a.subject.unwrap_or_default(),
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
        let failures = crate::batch::seal(client, request, &file, format, a.excel).await?;
        return batch_outcome(failures);
    }
    let response = client.locker.seal(request).await?.into_inner();
    output::sealed(format, &response);
    Ok(())
}

/// `unseal`: one handle, or a batch written where 第35条 allows.
pub async fn unseal(client: &mut Client, a: UnsealArgs, format: Format) -> Result<(), ClientError> {
    if let Some(file) = a.batch {
        let destination = unseal_destination(a.zip, a.password_file.as_deref(), a.plaintext_out)?;
        let batch = crate::batch::UnsealBatch {
            purpose: &a.purpose,
            file: &file,
            destination,
            format,
            excel: a.excel,
        };
        let failures = crate::batch::unseal(client, batch).await?;
        return batch_outcome(failures);
    }
    let response = client
        .locker
        .unseal(pb::UnsealRequest {
            handle: a.handle.unwrap_or_default(),
            purpose: a.purpose,
        })
        .await?
        .into_inner();
    let number = Zeroizing::new(response.number);
    output::number(format, &number);
    Ok(())
}

/// `lookup`: the handle of the number read from stdin.
pub async fn lookup(
    client: &mut Client,
    tenant: String,
    format: Format,
    number: &Zeroizing<String>,
) -> Result<(), ClientError> {
    let response = client
        .locker
        .lookup(pb::LookupRequest {
            tenant,
            number: number.to_string(),
        })
        .await?
        .into_inner();
    output::handle(format, &response.handle);
    Ok(())
}

/// `describe`.
pub async fn describe(
    client: &mut Client,
    handle: String,
    format: Format,
) -> Result<(), ClientError> {
    let record = client
        .locker
        .describe(pb::DescribeRequest { handle })
        .await?
        .into_inner();
    output::record(format, &record);
    Ok(())
}

/// `dispose` (managers).
pub async fn dispose(
    client: &mut Client,
    handle: String,
    reason: String,
    format: Format,
) -> Result<(), ClientError> {
    let record = client
        .locker
        .dispose(pb::DisposeRequest { handle, reason })
        .await?
        .into_inner();
    output::record(format, &record);
    Ok(())
}

/// `suspend` (`stop` true) or `resume` (managers).
pub async fn set_suspended(
    client: &mut Client,
    handle: String,
    reason: String,
    stop: bool,
    format: Format,
) -> Result<(), ClientError> {
    let request = pb::SuspendRequest { handle, reason };
    let record = if stop {
        client.locker.suspend(request).await?
    } else {
        client.locker.resume(request).await?
    }
    .into_inner();
    output::record(format, &record);
    Ok(())
}
