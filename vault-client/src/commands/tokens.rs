//! Tokens: issue (held for approval, in two shares, when for another operator), combine the
//! shares, revoke, list. Definitions and the calls; printing is in `output`.

use std::path::PathBuf;

use clap::Subcommand;
use vault_client::{Client, ClientError, certificate_fingerprint, pb};

use crate::args::parse_seconds;
use crate::commands::Outcome;
use crate::output::{self, Format};

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; the secret is shown once. A token for another operator comes in two
    /// shares: you get share 1 now, the admin whose approval applies the request gets share 2,
    /// and only both combined (`token combine`) work — no single admin holds it.
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
    /// Combine the two shares of a token issued for another operator into the token (for
    /// the operator who will use it). Shares are read from files, never the command line.
    Combine {
        /// File holding one share (`mns_<id>_1_…` or `mns_<id>_2_…`).
        #[arg(value_name = "SHARE_FILE")]
        first: PathBuf,
        /// File holding the other share.
        #[arg(value_name = "SHARE_FILE")]
        second: PathBuf,
        /// Write the token to this new file (mode 0600) instead of standard output.
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

/// A `token` command.
pub async fn run(
    client: &mut Client,
    command: TokenCommand,
    format: Format,
) -> Result<Outcome, ClientError> {
    match command {
        TokenCommand::Issue {
            operator,
            ttl,
            cert_fingerprint,
            cert_file,
            out,
        } => {
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
            let outcome = Outcome::of(response.pending_request.as_ref());
            output::issued_token(format, response, out.as_deref())?;
            return Ok(outcome);
        }
        TokenCommand::Combine { first, second, out } => {
            combine(&first, &second, out.as_deref(), format)?;
        }
        TokenCommand::Revoke { id } => {
            let token = client
                .admin
                .revoke_token(pb::RevokeTokenRequest { token_id: id })
                .await?
                .into_inner();
            output::tokens(format, &[token]);
        }
        TokenCommand::List { operator } => {
            let response = client
                .admin
                .list_tokens(pb::ListTokensRequest {
                    operator_id: operator.unwrap_or_default(),
                })
                .await?
                .into_inner();
            output::tokens(format, &response.tokens);
        }
    }
    Ok(Outcome::Done)
}

/// `token combine`: the token from its two shares (no daemon involved).
pub fn combine(
    first: &std::path::Path,
    second: &std::path::Path,
    out: Option<&std::path::Path>,
    format: Format,
) -> Result<(), ClientError> {
    let token = vault_client::combine_token_shares(
        &vault_client::read_token_file(first)?,
        &vault_client::read_token_file(second)?,
    )?;
    output::combined_token(format, &token, out)
}
