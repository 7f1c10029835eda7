//! The console's one link to the daemon: a shared gRPC channel, and a client per call that
//! carries the signed-in person's own token, so the daemon checks, limits and audits every
//! action as that person's. The console holds no power of its own.

use secrecy::SecretString;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use vault_client::{Client, ClientConfig, ClientError};

/// The daemon, as this console reaches it.
#[derive(Clone)]
pub struct DaemonLink {
    channel: Channel,
    endpoint: String,
}

impl DaemonLink {
    /// A link that connects on first use (the console serves its sign-in page while the
    /// daemon starts or restarts).
    pub fn new(config: &ClientConfig) -> Result<DaemonLink, ClientError> {
        Ok(DaemonLink {
            channel: vault_client::lazy_channel(config)?,
            endpoint: config.endpoint.clone(),
        })
    }

    /// A client whose calls carry `token`.
    pub fn client(&self, token: &SecretString) -> Result<Client, ClientError> {
        Client::on_channel(self.channel.clone(), Some(token))
    }

    /// The daemon's endpoint (for the health page).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The daemon's health (`SERVING`, `NOT_SERVING`), or why it could not be asked.
    pub async fn health(&self) -> String {
        let answer = HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        match answer {
            Ok(answer) => ServingStatus::try_from(answer.into_inner().status)
                .unwrap_or(ServingStatus::Unknown)
                .as_str_name()
                .to_owned(),
            Err(status) => format!(
                "{}: {}",
                vault_client::code_name(status.code()),
                status.message()
            ),
        }
    }
}
