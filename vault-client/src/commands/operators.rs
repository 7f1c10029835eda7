//! Operators, their grants, and who a token is. Definitions and the calls; printing is in
//! `output`. Creating, enabling and granting are held for another admin's approval.

use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use vault_client::{Client, ClientError, pb};

use crate::commands::Outcome;
use crate::output::{self, Format};

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

/// `grant` / `revoke` arguments.
#[derive(Debug, ClapArgs)]
pub struct GrantArgs {
    /// Operator id.
    pub operator: String,
    /// Tenant id.
    #[arg(long)]
    pub tenant: String,
    /// Purpose codes (repeat or comma-separate).
    #[arg(long = "purpose", required = true, value_delimiter = ',')]
    pub purposes: Vec<String>,
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

/// `grant` (`revoke` false) or `revoke`.
pub async fn grants(
    client: &mut Client,
    a: GrantArgs,
    revoke: bool,
    format: Format,
) -> Result<Outcome, ClientError> {
    let operator = change_grants(client, a, revoke).await?;
    output::operators(format, std::slice::from_ref(&operator));
    Ok(Outcome::of(operator.pending_request.as_ref()))
}

/// `whoami`.
pub async fn whoami(client: &mut Client, format: Format) -> Result<(), ClientError> {
    let me = client
        .admin
        .who_am_i(pb::WhoAmIRequest {})
        .await?
        .into_inner();
    output::whoami(format, &me);
    Ok(())
}

/// An `operator` command.
pub async fn run(
    client: &mut Client,
    command: OperatorCommand,
    format: Format,
) -> Result<Outcome, ClientError> {
    let operator = match command {
        OperatorCommand::Add { id, role, name } => client
            .admin
            .create_operator(pb::CreateOperatorRequest {
                operator_id: id,
                role: role_to_wire(role) as i32,
                display_name: name,
            })
            .await?
            .into_inner(),
        OperatorCommand::List => {
            let response = client
                .admin
                .list_operators(pb::ListOperatorsRequest {})
                .await?
                .into_inner();
            output::operators(format, &response.operators);
            return Ok(Outcome::Done);
        }
        OperatorCommand::Disable { id } => client
            .admin
            .disable_operator(pb::DisableOperatorRequest { operator_id: id })
            .await?
            .into_inner(),
        OperatorCommand::Enable { id } => client
            .admin
            .enable_operator(pb::DisableOperatorRequest { operator_id: id })
            .await?
            .into_inner(),
    };
    output::operators(format, std::slice::from_ref(&operator));
    Ok(Outcome::of(operator.pending_request.as_ref()))
}
