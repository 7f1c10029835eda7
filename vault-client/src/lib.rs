//! Typed async client for MyNumber Locker: connects (plaintext on loopback, or TLS with an
//! optional client certificate), attaches the bearer token to every call, and exposes the
//! generated `Locker` and `Admin` clients.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vault_proto::v1::admin_client::AdminClient;
use vault_proto::v1::locker_client::LockerClient;

pub use vault_proto::v1 as pb;

pub mod certificate;
pub mod ledger;
pub mod pdf;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not a valid URI or the connection failed.
    #[error("cannot connect to {endpoint}: {message}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// A TLS file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    WriteFile {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The token is not usable as a header value.
    #[error("the token contains characters that cannot be sent in a header")]
    BadToken,
    /// The command line asked for something that cannot be done (a malformed date, say).
    #[error("{0}")]
    Usage(String),
    /// `bench` could not seal the records it measures.
    #[error("bench setup: {0}")]
    BenchSetup(String),
    /// The server answered with an error.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(#[from] tonic::Status),
}

/// Upper-case name of a gRPC code (`PERMISSION_DENIED`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The stable reason of a refusal (`CHECK_DIGIT_MISMATCH`), from the google.rpc.ErrorInfo the
/// daemon attaches to every error; empty when there is none.
pub fn reason_of(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

/// How to reach the daemon.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port` (loopback plaintext) or `https://host:port`.
    pub endpoint: String,
    /// Bearer token.
    pub token: Option<SecretString>,
    /// CA certificate (PEM) that signed the server's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Client key (PEM), for mutual TLS.
    pub key: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl ClientConfig {
    /// A config for `endpoint` with a token and no TLS files.
    pub fn new(endpoint: impl Into<String>, token: Option<SecretString>) -> ClientConfig {
        ClientConfig {
            endpoint: endpoint.into(),
            token,
            ca: None,
            cert: None,
            key: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Adds `authorization: Bearer <token>` to every request, marked sensitive so it is never
/// logged by the transport.
#[derive(Clone)]
pub struct BearerAuth {
    header: Option<MetadataValue<Ascii>>,
}

impl Interceptor for BearerAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// The locker client.
pub type Locker = LockerClient<InterceptedService<Channel, BearerAuth>>;
/// The admin client.
pub type Admin = AdminClient<InterceptedService<Channel, BearerAuth>>;

/// A connected client.
#[derive(Clone)]
pub struct Client {
    /// Locker service.
    pub locker: Locker,
    /// Admin service.
    pub admin: Admin,
    /// Channel, for health checks.
    pub channel: Channel,
}

fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::ReadFile {
        path: path.display().to_string(),
        source,
    })
}

impl Client {
    /// Connects and checks the connection.
    pub async fn connect(config: &ClientConfig) -> Result<Client, ClientError> {
        let channel = endpoint(config)?
            .connect()
            .await
            .map_err(|e| connect_error(config, error_chain(&e)))?;
        Client::on_channel(channel, config.token.as_ref())
    }

    /// A client on an open `channel` (shared: a channel multiplexes many callers) that sends
    /// `token`: one connection serves every person signed in to the web console, each call
    /// carrying its own person's token.
    pub fn on_channel(
        channel: Channel,
        token: Option<&SecretString>,
    ) -> Result<Client, ClientError> {
        let header = match token {
            Some(token) => {
                let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.expose_secret())
                    .parse()
                    .map_err(|_| ClientError::BadToken)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let auth = BearerAuth { header };
        Ok(Client {
            locker: LockerClient::with_interceptor(channel.clone(), auth.clone()),
            admin: AdminClient::with_interceptor(channel.clone(), auth),
            channel,
        })
    }
}

fn connect_error(config: &ClientConfig, message: String) -> ClientError {
    ClientError::Connect {
        endpoint: config.endpoint.clone(),
        message,
    }
}

/// The endpoint `config` names, with its TLS settings.
fn endpoint(config: &ClientConfig) -> Result<Endpoint, ClientError> {
    let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
        .map_err(|e| connect_error(config, e.to_string()))?
        .timeout(config.timeout)
        .connect_timeout(Duration::from_secs(10));
    if config.endpoint.starts_with("https://") || config.ca.is_some() {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &config.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| connect_error(config, e.to_string()))?;
    }
    Ok(endpoint)
}

/// A channel to the daemon `config` names that connects on first use and again after a lost
/// connection: a long-running client (the web console) starts and serves while the daemon
/// restarts. Its files (CA, client certificate) are read now.
pub fn lazy_channel(config: &ClientConfig) -> Result<Channel, ClientError> {
    Ok(endpoint(config)?.connect_lazy())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Reads a token file (surrounding whitespace trimmed).
pub fn read_token_file(path: &Path) -> Result<SecretString, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    Ok(SecretString::from(text.trim().to_owned()))
}

/// Combines the two shares of a token issued for another operator (`mns_<id>_1_…` from the
/// requesting admin, `mns_<id>_2_…` from the approving one, in either order) into the token.
/// Refuses shares of different tokens, two copies of one share, and anything else.
pub fn combine_token_shares(
    a: &SecretString,
    b: &SecretString,
) -> Result<SecretString, ClientError> {
    use secrecy::ExposeSecret;
    let parse =
        |share: &SecretString| -> Result<(String, u8, zeroize::Zeroizing<String>), ClientError> {
            let bad = || {
                ClientError::Usage(
                "a token share has the form mns_<16 hex>_<1 or 2>_<64 hex>, as printed when the token was requested and when its request was approved".into(),
            )
            };
            let rest = share
                .expose_secret()
                .trim()
                .strip_prefix("mns_")
                .ok_or_else(bad)?;
            let mut parts = rest.split('_');
            let (Some(id), Some(number), Some(secret), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let hex = |s: &str, len: usize| {
                s.len() == len
                    && s.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            };
            let number = match number {
                "1" => 1,
                "2" => 2,
                _ => return Err(bad()),
            };
            if !hex(id, 16) || !hex(secret, 64) {
                return Err(bad());
            }
            Ok((
                id.to_owned(),
                number,
                zeroize::Zeroizing::new(secret.to_owned()),
            ))
        };
    let (first, second) = (parse(a)?, parse(b)?);
    if first.0 != second.0 {
        return Err(ClientError::Usage(format!(
            "the shares belong to two tokens ({} and {}): combine share 1 and share 2 of one token",
            first.0, second.0
        )));
    }
    let (one, two) = match (first.1, second.1) {
        (1, 2) => (first, second),
        (2, 1) => (second, first),
        _ => {
            return Err(ClientError::Usage(
                "both shares are the same half: combine share 1 (from the requesting admin) with share 2 (from the approving admin)".into(),
            ));
        }
    };
    Ok(SecretString::from(format!(
        "mnt_{}_{}{}",
        one.0,
        one.2.as_str(),
        two.2.as_str()
    )))
}

/// Lowercase hex SHA-256 of the first certificate (DER) in a PEM file: the fingerprint a token
/// can be bound to.
pub fn certificate_fingerprint(pem_path: &Path) -> Result<String, ClientError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(pem_path).map_err(|e| ClientError::ReadFile {
        path: pem_path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        der.as_ref(),
    )))
}
