//! Tenant keys: rotation (following the rewrap), status, destruction with a second admin's
//! approval. Definitions and the calls; printing is in `output`.

use clap::Subcommand;
use vault_client::{Client, ClientError, pb};

use crate::output::{self, Format};

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
    Requests {
        /// Only the ids of those waiting for approval, one per line: for scripts, as in
        /// `vault-client keys approve $(vault-client keys requests --ids)`.
        #[arg(long)]
        ids: bool,
    },
}

/// Polls the rewrap of a rotation until it finishes, showing its progress.
async fn follow_rewrap(
    client: &mut Client,
    format: Format,
    job: pb::RewrapJob,
) -> Result<(), ClientError> {
    let progress = output::RewrapProgress::start(format, &job);
    let mut current = job;
    loop {
        progress.show(&current);
        if current.finished_at_unix_ms != 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let status = client
            .admin
            .key_status(pb::KeyStatusRequest {
                tenant: current.tenant.clone(),
            })
            .await?
            .into_inner();
        match status.tenants.into_iter().next().and_then(|t| t.job) {
            Some(job) if job.target_version == current.target_version => current = job,
            _ => break,
        }
    }
    progress.finish(&current);
    Ok(())
}

/// A `keys` command.
pub async fn run(
    client: &mut Client,
    command: KeysCommand,
    format: Format,
) -> Result<(), ClientError> {
    match command {
        KeysCommand::Rotate { tenant, no_wait } => {
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
                follow_rewrap(client, format, job).await?;
            }
        }
        KeysCommand::Destroy { tenant, version } => {
            let r = client
                .admin
                .request_key_destruction(pb::RequestKeyDestructionRequest { tenant, version })
                .await?
                .into_inner();
            output::destructions(format, &[r]);
        }
        KeysCommand::Approve { id } => {
            let r = client
                .admin
                .approve_key_destruction(pb::KeyDestructionIdRequest { id })
                .await?
                .into_inner();
            output::destructions(format, &[r]);
        }
        KeysCommand::Cancel { id } => {
            let r = client
                .admin
                .cancel_key_destruction(pb::KeyDestructionIdRequest { id })
                .await?
                .into_inner();
            output::destructions(format, &[r]);
        }
        KeysCommand::Requests { ids } => {
            let list = client
                .admin
                .list_key_destructions(pb::ListKeyDestructionsRequest {})
                .await?
                .into_inner();
            if ids {
                list.requests
                    .iter()
                    .filter(|r| r.state == "pending")
                    .for_each(|r| println!("{}", r.id));
            } else {
                output::destructions(format, &list.requests);
            }
        }
        KeysCommand::Status { tenant } => {
            let status = client
                .admin
                .key_status(pb::KeyStatusRequest {
                    tenant: tenant.unwrap_or_default(),
                })
                .await?
                .into_inner();
            output::key_status(format, &status.tenants);
        }
    }
    Ok(())
}
