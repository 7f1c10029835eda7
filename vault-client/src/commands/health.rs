//! `health`: whether the daemon serves, from the standard gRPC health service (no token
//! needed), with `--wait` for scripts and units that start the daemon and go on once it
//! serves.

use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use vault_client::{Client, ClientConfig, ClientError};

use crate::output::{self, Format};

/// How often `--wait` asks again.
const POLL: Duration = Duration::from_millis(200);

/// Asks once, or with `wait` until the daemon serves or the time is up. Not serving at the
/// end is UNAVAILABLE (exit 6); no daemon at all is the connection error (exit 1).
pub async fn run(
    config: &ClientConfig,
    wait: Option<Duration>,
    format: Format,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + wait.unwrap_or_default();
    loop {
        let status = check(config).await;
        let serving = matches!(status, Ok(ServingStatus::Serving));
        if serving || Instant::now() >= deadline {
            return match status {
                Ok(status) => {
                    output::health(format, status.as_str_name());
                    if serving {
                        Ok(())
                    } else {
                        Err(ClientError::Status(tonic::Status::unavailable(format!(
                            "the daemon at {} answers {}",
                            config.endpoint,
                            status.as_str_name()
                        ))))
                    }
                }
                Err(error) => Err(error),
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn check(config: &ClientConfig) -> Result<ServingStatus, ClientError> {
    let client = Client::connect(config).await?;
    let answer = HealthClient::new(client.channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    Ok(ServingStatus::try_from(answer.status).unwrap_or(ServingStatus::Unknown))
}
