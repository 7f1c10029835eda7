//! The CLI of purposes: list the catalogue (第4条), add purposes to a record. Definitions and
//! dispatch; printing is in `output`.

use clap::Subcommand;
use vault_client::{Client, ClientError, pb};

use crate::output::{self, Format};

/// Purpose commands (`vault-client purposes` alone lists the catalogue).
#[derive(Debug, Subcommand)]
pub enum PurposesCommand {
    /// List the purpose catalogue (第4条).
    List,
    /// Add purposes to a record (e.g. 健康保険 for an employee first registered for
    /// withholding): you must be granted each on the record's tenant. Prints the record.
    Add {
        /// Record handle.
        handle: String,
        /// Purpose codes to add (repeat or comma-separate).
        #[arg(long = "purpose", required = true, value_delimiter = ',')]
        purposes: Vec<String>,
    },
}

/// Runs a purposes command (`None`: list).
pub async fn run(
    client: &mut Client,
    command: Option<PurposesCommand>,
    format: Format,
) -> Result<(), ClientError> {
    match command.unwrap_or(PurposesCommand::List) {
        PurposesCommand::List => {
            let response = client
                .admin
                .list_purposes(pb::ListPurposesRequest {})
                .await?
                .into_inner();
            output::purposes(format, &response.purposes);
        }
        PurposesCommand::Add { handle, purposes } => {
            let record = client
                .locker
                .add_purposes(pb::AddPurposesRequest { handle, purposes })
                .await?
                .into_inner();
            output::record(format, &record);
        }
    }
    Ok(())
}
