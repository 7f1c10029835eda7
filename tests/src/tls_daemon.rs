//! A daemon with TLS and optional client certificates, configured from a file, and clients
//! that connect to it with or without a client certificate.

use std::path::Path;

use secrecy::SecretString;
use vault_client::{Client, ClientConfig};

use vault_daemon::devkit::swtpm::Swtpm;

use crate::daemon::{Daemon, DaemonOptions, backend_under_test};
use crate::pki::Pki;
use crate::softhsm::SoftHsmToken;

/// A TLS daemon and its PKI, on the backend under test (`VAULT_TEST_BACKEND`).
pub struct TlsDaemon {
    /// The daemon process.
    pub daemon: Daemon,
    /// Certificates.
    pub pki: Pki,
    /// The config file text, to start a daemon on a copy of the data directory.
    config_text: String,
    /// The swtpm, when the backend under test is `tpm` (stopped on drop, after the daemon).
    _tpm: Option<Swtpm>,
}

/// The `[backend]` section for the backend under test, the environment it needs, and the
/// swtpm it runs on.
fn backend_section(dir: &Path, extra: &str) -> (String, Vec<(String, String)>, Option<Swtpm>) {
    match backend_under_test().as_str() {
        "softhsm" => {
            let token = SoftHsmToken::create(dir, "tls-suite");
            (
                format!(
                    "[backend]\nkind = \"pkcs11\"\n{extra}\n[backend.pkcs11]\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_file = \"{}\"\n",
                    token.module.display(),
                    token.label,
                    token.pin_file.display()
                ),
                vec![("SOFTHSM2_CONF".into(), token.conf.display().to_string())],
                None,
            )
        }
        "tpm" => {
            let tpm = Swtpm::start(&dir.join("tpm"), None)
                .expect("swtpm is required (Debian package swtpm)");
            let auth = vault_daemon::devkit::swtpm::auth_file(&dir.join("tpm")).expect("auth");
            (
                format!(
                    "[backend]\nkind = \"tpm\"\n{extra}\n[backend.tpm]\ntcti = \"{}\"\nauth_file = \"{}\"\n",
                    tpm.tcti(),
                    auth.display()
                ),
                Vec::new(),
                Some(tpm),
            )
        }
        _ => (
            format!(
                "[backend]\nkind = \"sim\"\nallow_insecure = true\nsim_fault_control_file = true\n{extra}\n"
            ),
            Vec::new(),
            None,
        ),
    }
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
        let (backend, env, tpm) = backend_section(dir, backend_extra);
        let data_dir = dir.join("data");
        let config = dir.join("locker.toml");
        let config_text = format!(
            r#"[server]
listen = "127.0.0.1:0"

[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"
require_client_cert = false

[store]
data_dir = "{data}"

{backend}
"#,
            cert = pki.server.0.display(),
            key = pki.server.1.display(),
            ca = pki.ca.display(),
            data = data_dir.display(),
        );
        std::fs::write(&config, &config_text).expect("write config");
        let daemon = Daemon::start(
            &data_dir,
            DaemonOptions {
                config: Some(config),
                env,
                ..DaemonOptions::default()
            },
        );
        TlsDaemon {
            daemon,
            pki,
            config_text,
            _tpm: tpm,
        }
    }

    /// Starts another daemon with the same configuration on `data_dir` (a copy of the data
    /// directory), with the same backend. Stop the first one before, when the backend serves
    /// one client at a time (swtpm).
    pub fn start_on(&self, data_dir: &Path) -> Daemon {
        Daemon::start(data_dir, self.options_on(data_dir))
    }

    /// Accepts a store restored into `data_dir` on purpose (`vault-daemon --reanchor`).
    pub fn reanchor_on(&self, data_dir: &Path) -> String {
        crate::daemon::reanchor(data_dir, &self.options_on(data_dir))
    }

    /// This daemon's options with its config pointed at `data_dir`.
    fn options_on(&self, data_dir: &Path) -> DaemonOptions {
        let original = self.daemon.data_dir.display().to_string();
        let text = self.config_text.replace(
            &format!("data_dir = \"{original}\""),
            &format!("data_dir = \"{}\"", data_dir.display()),
        );
        let config = data_dir.with_extension("toml");
        std::fs::write(&config, text).expect("write config");
        DaemonOptions {
            config: Some(config),
            ..self.daemon.options().clone()
        }
    }

    /// The first admin's token (written at first start).
    pub fn admin_token(&self) -> SecretString {
        vault_client::read_token_file(&self.daemon.data_dir.join("initial-admin.token"))
            .expect("initial admin token")
    }

    /// The second admin's token (it approves the first admin's change requests).
    pub fn approver_token(&self) -> SecretString {
        vault_client::read_token_file(&self.daemon.data_dir.join("initial-admin2.token"))
            .expect("second admin token")
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
