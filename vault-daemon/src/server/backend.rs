//! Opening the key backend the configuration names, its secrets read first ([`super::secrets`]).

use crate::config::{Config, KeyStoreConfig};
use crate::keys::OpenedKeys;
use crate::keys::factory::BackendSettings;

use super::DaemonError;
#[cfg(feature = "pkcs11")]
use super::secrets::read_pin;
#[cfg(feature = "tpm")]
use super::secrets::{read_secret_file, tpm_auth_path};

/// Reads the chosen backend's secrets and opens it through the keys factory.
pub(super) fn open_backend(config: &Config) -> Result<OpenedKeys, DaemonError> {
    let settings = match &config.backend.keys {
        #[cfg(feature = "sim")]
        KeyStoreConfig::Sim(sim) => BackendSettings::Sim {
            dir: sim
                .dir
                .clone()
                .unwrap_or_else(|| config.store.data_dir.clone()),
            shared: sim.dir.is_some(),
            fault_control_file: sim.fault_control_file,
        },
        #[cfg(feature = "pkcs11")]
        KeyStoreConfig::Pkcs11(p11) => {
            BackendSettings::Pkcs11(crate::keys::pkcs11::Pkcs11Settings {
                module: p11.module.clone(),
                token_label: p11.token_label.clone(),
                pin: read_pin(p11)?,
                max_sessions: p11.max_sessions,
            })
        }
        #[cfg(feature = "tpm")]
        KeyStoreConfig::Tpm(tpm) => BackendSettings::Tpm(crate::keys::tpm::TpmSettings {
            tcti: tpm.tcti.clone(),
            persistent_base: tpm.persistent_base,
            persistent_count: tpm.persistent_count,
            parameter_encryption: tpm.parameter_encryption,
            auth: tpm_auth_path(tpm)?
                .map(|path| read_secret_file(&path, "TPM auth file"))
                .transpose()?
                .map(|secret| crate::keys::tpm::TpmAuth::from_secret(&secret)),
        }),
        // Refused when the config was checked; kept for a config built in code.
        #[allow(unreachable_patterns)]
        other => {
            return Err(DaemonError::Config(crate::config::ConfigError::Invalid(
                format!(
                    "this vault-daemon was built without the {} backend",
                    other.kind().as_str()
                ),
            )));
        }
    };
    Ok(crate::keys::factory::open(settings)?)
}
