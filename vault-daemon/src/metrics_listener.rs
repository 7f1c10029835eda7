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
use tokio::net::TcpListener;
use vault_host::https::{self, PemFile, TlsListener};
use zeroize::Zeroizing;

/// How long a client has to finish its TLS handshake: a stalled one holds nothing longer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The metrics listener over TLS with the certificate chain and key in these PEM files.
pub fn tls_listener(
    listener: TcpListener,
    cert: &Path,
    key: &Path,
) -> Result<TlsListener, MetricsTlsError> {
    let acceptor = https::acceptor(cert, key).map_err(|e| {
        let what = match e.file {
            PemFile::Certificate => "tls_cert",
            PemFile::Key => "tls_key",
        };
        file_error(what, &e.path, e.reason)
    })?;
    TlsListener::new(listener, acceptor, HANDSHAKE_TIMEOUT, "metrics")
        .map_err(|e| file_error("listen", Path::new("address"), e))
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
