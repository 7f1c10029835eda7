//! Tenants (事業所) and their 管理台帳 details. Definitions and the calls; printing is in
//! `output`.

use clap::{Args as ClapArgs, Subcommand};
use vault_client::{Client, ClientError, pb};

use crate::output::{self, Format};

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
    /// A tenant's 管理台帳 details (admins): change those given, show them all without any.
    Info(TenantInfoArgs),
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

/// A `tenant` command.
pub async fn run(
    client: &mut Client,
    command: TenantCommand,
    format: Format,
) -> Result<(), ClientError> {
    match command {
        TenantCommand::Add { id, name } => {
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
        TenantCommand::List => {
            let response = client
                .admin
                .list_tenants(pb::ListTenantsRequest {})
                .await?
                .into_inner();
            output::tenants(format, &response.tenants);
        }
        TenantCommand::Info(a) => {
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
    }
    Ok(())
}
