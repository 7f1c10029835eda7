//! A daemon with TLS and optional client certificates, configured from a file, and clients
//! that connect to it with or without a client certificate.

use std::path::Path;

use secrecy::SecretString;
use vault_client::{Client, ClientConfig};

use crate::daemon::{Daemon, DaemonOptions};
use crate::pki::Pki;

/// A TLS daemon and its PKI.
pub struct TlsDaemon {
    /// The daemon process.
    pub daemon: Daemon,
    /// Certificates.
    pub pki: Pki,
}

/// Which client certificate a connection presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    /// None.
    None,
    /// Certificate "a".
    A,
    /// Certificate "b".
    B,
}

impl TlsDaemon {
    /// Starts a daemon with TLS (client certificates optional) in `dir`, with extra config
    /// lines appended to `[backend]`.
    pub fn start(dir: &Path, backend_extra: &str) -> TlsDaemon {
        let pki = Pki::create(dir);
        let data_dir = dir.join("data");
        let config = dir.join("vault-daemon.toml");
        std::fs::write(
            &config,
            format!(
                r#"[server]
listen = "127.0.0.1:0"

[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"
require_client_cert = false

[store]
data_dir = "{data}"

[backend]
kind = "sim"
allow_insecure = true
sim_fault_control_file = true
{backend_extra}
"#,
                cert = pki.server.0.display(),
                key = pki.server.1.display(),
                ca = pki.ca.display(),
                data = data_dir.display(),
            ),
        )
        .expect("write config");
        let daemon = Daemon::start(
            &data_dir,
            DaemonOptions {
                config: Some(config),
                log: None,
                backend: None,
            },
        );
        TlsDaemon { daemon, pki }
    }

    /// The first admin's token (written at first start).
    pub fn admin_token(&self) -> SecretString {
        vault_client::read_token_file(&self.daemon.data_dir.join("initial-admin.token"))
            .expect("initial admin token")
    }

    /// A client over TLS with `token` and the chosen client certificate.
    pub async fn client(&self, token: Option<SecretString>, cert: ClientCert) -> Client {
        let mut config = ClientConfig::new(format!("https://{}", self.daemon.addr), token);
        config.ca = Some(self.pki.ca.clone());
        let pair = match cert {
            ClientCert::None => None,
            ClientCert::A => Some(&self.pki.client_a),
            ClientCert::B => Some(&self.pki.client_b),
        };
        if let Some((cert, key)) = pair {
            config.cert = Some(cert.clone());
            config.key = Some(key.clone());
        }
        Client::connect(&config).await.expect("connect over TLS")
    }
}
