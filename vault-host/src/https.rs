//! HTTPS for the locker's web listeners (the daemon's metrics, the console): a rustls
//! acceptor for a PEM certificate chain and key, and a listener that hands axum only
//! connections whose handshake finished. Each handshake runs in its own task under a deadline,
//! so a client that connects and stalls delays nobody and holds nothing for long.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes done but not yet taken by the server, at most; more wait in their tasks.
const ACCEPTED_BACKLOG: usize = 64;

/// Which file of the pair could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemFile {
    /// The certificate chain.
    Certificate,
    /// The private key.
    Key,
}

/// Why an acceptor could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct HttpsError {
    /// The file at fault.
    pub file: PemFile,
    /// Its path, as configured.
    pub path: PathBuf,
    /// What was wrong with it (never its contents).
    pub reason: String,
}

fn error(file: PemFile, path: &Path, reason: impl ToString) -> HttpsError {
    HttpsError {
        file,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// An acceptor for the PEM certificate chain in `cert` and the private key in `key`, TLS 1.2
/// and 1.3 with rustls' safe defaults, no client certificates.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, HttpsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| error(PemFile::Certificate, cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(PemFile::Certificate, cert, e))?;
    if chain.is_empty() {
        return Err(error(PemFile::Certificate, cert, "no certificate in it"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| error(PemFile::Key, key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(PemFile::Certificate, cert, e))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| error(PemFile::Key, key, e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Connections whose TLS handshake finished, for `axum::serve`.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener`, each handshake with `acceptor` given `handshake_timeout`;
    /// `name` (say "metrics") labels its log lines.
    pub fn new(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        handshake_timeout: Duration,
        name: &'static str,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let accept_task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors, say: back off rather than spin.
                        tracing::warn!(listener = name, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(listener = name, %error, %peer, "TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                        }
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
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept task never ends on its own; dropped, nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path) -> (PathBuf, PathBuf) {
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, issued.cert.pem()).expect("write");
        std::fs::write(&key, issued.signing_key.serialize_pem()).expect("write");
        (cert, key)
    }

    #[test]
    fn a_pair_that_belongs_together_makes_an_acceptor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = pair(dir.path());
        acceptor(&cert, &key).expect("acceptor");
    }

    #[test]
    fn each_bad_file_is_named_and_its_contents_are_not_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = pair(dir.path());
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not-a-pem-secret-material").expect("write");

        let refused = acceptor(&missing, &key).err().expect("missing cert");
        assert_eq!(refused.file, PemFile::Certificate);
        let refused = acceptor(&garbage, &key).err().expect("no certificate");
        assert_eq!(refused.file, PemFile::Certificate);
        assert!(refused.to_string().contains("no certificate"), "{refused}");
        let refused = acceptor(&cert, &garbage).err().expect("no key");
        assert_eq!(refused.file, PemFile::Key);
        assert!(
            !refused.to_string().contains("secret-material"),
            "{refused}"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, _) = pair(dir.path());
        let other = dir.path().join("other");
        std::fs::create_dir(&other).expect("mkdir");
        let (_, other_key) = pair(&other);
        let refused = acceptor(&cert, &other_key).err().expect("mismatched pair");
        assert_eq!(refused.file, PemFile::Key, "{refused}");
    }
}
