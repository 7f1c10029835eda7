//! The metrics endpoint's listener. Metrics name tenants, refusal reasons and the alert rules
//! that fired, which is feedback for a prober: off loopback they are served over TLS (and,
//! with a bearer token file, only to a scraper that presents it), or in plaintext only when
//! the configuration says `public = true`, with a warning at every start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use zeroize::Zeroizing;

/// How long a client has to finish its TLS handshake: a stalled one holds nothing longer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes done but not yet served, at most.
const ACCEPTED_BACKLOG: usize = 64;

/// Why the metrics listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsTlsError {
    /// A certificate, key or token file could not be read or parsed.
    #[error("metrics {what} {path}: {reason}")]
    File {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> MetricsTlsError {
    MetricsTlsError::File {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A TLS acceptor for the certificate chain and key in these PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, MetricsTlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error("tls_cert", cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("tls_cert", cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("tls_key", key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| file_error("tls_cert", cert, e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| file_error("tls_cert", cert, e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Reads the bearer token a scraper must present (one line; surrounding blanks ignored).
pub fn read_bearer_token(path: &Path) -> Result<Zeroizing<String>, MetricsTlsError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| file_error("bearer_token_file", path, e))?,
    );
    let token = Zeroizing::new(text.trim().to_owned());
    if token.len() < 16 {
        return Err(file_error(
            "bearer_token_file",
            path,
            "the token must be at least 16 characters",
        ));
    }
    Ok(token)
}

/// A listener that hands axum only connections whose TLS handshake finished. Handshakes run
/// in their own tasks, each bounded by [`HANDSHAKE_TIMEOUT`], so a client that stalls one
/// delays no other scraper.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `acceptor`.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let accept_task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "metrics listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %peer, "metrics TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "metrics TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            accepted,
            local,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept task never ends on its own; if it did, serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Answers 401 to a request without `Authorization: Bearer <token>` (compared in constant
/// time).
pub async fn require_bearer(
    token: Arc<Zeroizing<String>>,
    request: Request,
    next: Next,
) -> Result<Response, StatusCode> {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = token.as_bytes();
    let same_length = presented.len() == expected.len();
    let differs = presented
        .bytes()
        .zip(expected.iter().cycle())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if same_length && differs == 0 {
        Ok(next.run(request).await)
    } else {
        Err(StatusCode::UNAUTHORIZED)
    }
}
