//! The CLI of dual control: list change requests, approve or deny one, ask for a different
//! quorum. Definitions and dispatch; printing is in `output`.

use clap::Subcommand;
use vault_client::{Client, ClientError, pb};

use crate::commands::Outcome;
use crate::output::{self, Format};

/// Change request commands.
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List change requests (admins and auditors), newest last.
    List {
        /// Only those still waiting for approval.
        #[arg(long)]
        pending: bool,
        /// Only the ids, one per line, oldest first: for scripts, as in
        /// `vault-client approve $(vault-client requests list --pending --ids)`.
        #[arg(long)]
        ids: bool,
    },
    /// Ask for every later change to need N approvals (1–5), itself approved under the
    /// current quorum.
    Quorum {
        /// Approvals besides the requester's.
        approvals: u32,
    },
}

/// A `requests` command. Asking for a quorum is itself a change: held (exit 9) until approved.
pub async fn run(
    client: &mut Client,
    command: RequestsCommand,
    format: Format,
) -> Result<Outcome, ClientError> {
    match command {
        RequestsCommand::List { pending, ids } => {
            let list = client
                .admin
                .list_change_requests(pb::ListChangeRequestsRequest {
                    pending_only: pending,
                })
                .await?
                .into_inner();
            if ids {
                list.requests.iter().for_each(|r| println!("{}", r.id));
            } else {
                output::change_requests(format, &list.requests, Some(list.quorum));
            }
        }
        RequestsCommand::Quorum { approvals } => {
            let request = client
                .admin
                .request_quorum(pb::RequestQuorumRequest { approvals })
                .await?
                .into_inner();
            output::change_requests(format, std::slice::from_ref(&request), None);
            if request.state == "pending" {
                output::held_quorum(format, &request);
                return Ok(Outcome::Held);
            }
        }
    }
    Ok(Outcome::Done)
}

/// `approve ID…`: other admins' change requests applied, in the order given; a token's second
/// share, when an approval applied one, shown once or written to `share_out` (one id only, so
/// that no share lands in a file meant for another). Every id is tried; the first failure is
/// the command's.
pub async fn approve(
    client: &mut Client,
    ids: &[String],
    share_out: Option<&std::path::Path>,
    format: Format,
) -> Result<(), ClientError> {
    if share_out.is_some() && ids.len() > 1 {
        return Err(ClientError::Usage(
            "--share-out takes one request id: approve token requests one at a time".into(),
        ));
    }
    let mut first_failure = None;
    for id in ids {
        let approved = client
            .admin
            .approve_change_request(pb::ChangeRequestIdRequest { id: id.clone() })
            .await;
        match approved {
            Ok(request) => output::approved(format, request.into_inner(), share_out)?,
            Err(status) => {
                if ids.len() > 1 {
                    output::note(&format!(
                        "request {id} not approved: {}: {}",
                        vault_client::code_name(status.code()),
                        status.message()
                    ));
                }
                first_failure.get_or_insert(ClientError::Status(status));
            }
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// `deny ID --reason`: a change request refused (or one's own withdrawn).
pub async fn deny(
    client: &mut Client,
    id: String,
    reason: String,
    format: Format,
) -> Result<(), ClientError> {
    let request = client
        .admin
        .deny_change_request(pb::DenyChangeRequestRequest { id, reason })
        .await?
        .into_inner();
    output::change_requests(format, &[request], None);
    Ok(())
}
